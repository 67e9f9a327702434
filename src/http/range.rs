//! `Range` request header handling (RFC 9110 §14).
//!
//! Only a single byte range is honoured. Anything else — another unit, several
//! ranges, syntax errors — parses to None, meaning "ignore the header and serve the
//! whole entity", which RFC 9110 permits. Invariant: a range returned by
//! [`ByteRange::resolve`] satisfies `start < end_exclusive <= len`.

/// One parsed byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `first-last`, both inclusive, `first <= last`.
    FromTo(u64, u64),
    /// `first-`: from `first` to the end.
    From(u64),
    /// `-n`: the last `n` bytes.
    Suffix(u64),
}

/// Digits only (no sign, no whitespace inside), fitting in u64.
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl ByteRange {
    /// Parses a `Range` header value; None = ignore the header.
    pub fn parse(header: &str) -> Option<ByteRange> {
        let (unit, set) = header.split_once('=')?;
        if !unit.trim().eq_ignore_ascii_case("bytes") {
            return None;
        }
        // The list rule allows (and recipients ignore) empty elements.
        let mut specs = set.split(',').map(str::trim).filter(|s| !s.is_empty());
        let spec = specs.next()?;
        if specs.next().is_some() {
            return None;
        }
        let (first, last) = spec.split_once('-')?;
        let (first, last) = (first.trim(), last.trim());
        match (first.is_empty(), last.is_empty()) {
            (true, true) => None,
            (true, false) => number(last).map(ByteRange::Suffix),
            (false, true) => number(first).map(ByteRange::From),
            (false, false) => {
                let (a, b) = (number(first)?, number(last)?);
                (a <= b).then_some(ByteRange::FromTo(a, b))
            }
        }
    }

    /// Resolves against an entity of `len` bytes into `(start, end_exclusive)`;
    /// None = unsatisfiable (answer 416).
    pub fn resolve(self, len: u64) -> Option<(u64, u64)> {
        if len == 0 {
            return None;
        }
        match self {
            ByteRange::FromTo(a, b) => (a < len).then(|| (a, b.min(len - 1) + 1)),
            ByteRange::From(a) => (a < len).then_some((a, len)),
            ByteRange::Suffix(0) => None,
            ByteRange::Suffix(n) => Some((len.saturating_sub(n), len)),
        }
    }
}

/// `Content-Range` value of a partial response: `bytes start-last/len`.
pub fn content_range(start: u64, end_exclusive: u64, len: u64) -> String {
    format!("bytes {start}-{}/{len}", end_exclusive.saturating_sub(1))
}

/// `Content-Range` value of a 416 response: `bytes */len`.
pub fn unsatisfied_range(len: u64) -> String {
    format!("bytes */{len}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ByteRange::*;

    #[test]
    fn parses_single_ranges() {
        assert_eq!(ByteRange::parse("bytes=0-499"), Some(FromTo(0, 499)));
        assert_eq!(ByteRange::parse("bytes=500-"), Some(From(500)));
        assert_eq!(ByteRange::parse("bytes=-500"), Some(Suffix(500)));
        assert_eq!(ByteRange::parse("bytes=-0"), Some(Suffix(0)));
        assert_eq!(ByteRange::parse("bytes=5-5"), Some(FromTo(5, 5)));
        assert_eq!(ByteRange::parse("Bytes = 1 - 2 "), Some(FromTo(1, 2)));
        assert_eq!(ByteRange::parse(" bytes=0-1, "), Some(FromTo(0, 1)));
        assert_eq!(
            ByteRange::parse(&format!("bytes=0-{}", u64::MAX)),
            Some(FromTo(0, u64::MAX))
        );
    }

    #[test]
    fn ignores_what_it_cannot_serve() {
        for h in [
            "",
            "bytes",
            "bytes=",
            "bytes=-",
            "items=0-1",
            "bytes=0-1,2-3",
            "bytes=5-4",
            "bytes=a-b",
            "bytes=+1-2",
            "bytes=1-+2",
            "bytes=0x10-",
            "bytes=1 0-20",
            "bytes=18446744073709551616-",
            "bytes=-18446744073709551616",
            "bytes=1-2-3",
            "bytes=١-٢",
        ] {
            assert_eq!(ByteRange::parse(h), None, "{h:?}");
        }
    }

    #[test]
    fn resolves_per_rfc() {
        assert_eq!(FromTo(0, 499).resolve(1000), Some((0, 500)));
        assert_eq!(FromTo(10, 5000).resolve(1000), Some((10, 1000)));
        assert_eq!(FromTo(0, u64::MAX).resolve(u64::MAX), Some((0, u64::MAX)));
        assert_eq!(FromTo(1000, 2000).resolve(1000), None);
        assert_eq!(From(999).resolve(1000), Some((999, 1000)));
        assert_eq!(From(1000).resolve(1000), None);
        assert_eq!(Suffix(10).resolve(1000), Some((990, 1000)));
        assert_eq!(Suffix(5000).resolve(1000), Some((0, 1000)));
        assert_eq!(Suffix(0).resolve(1000), None);
        assert_eq!(From(0).resolve(0), None);
        assert_eq!(Suffix(5).resolve(0), None);
    }

    #[test]
    fn header_values() {
        assert_eq!(content_range(0, 500, 1000), "bytes 0-499/1000");
        assert_eq!(content_range(999, 1000, 1000), "bytes 999-999/1000");
        assert_eq!(unsatisfied_range(1000), "bytes */1000");
    }
}
