//! Content digests.
//!
//! Invariant: a [`Digest`] is always a sha256 digest; its text form is always
//! `sha256:` followed by exactly 64 lowercase hex characters. Digests of other
//! algorithms are recognised (so callers can answer "unsupported" rather than
//! "invalid") but never constructed. [`Digest::parse`] never panics and never echoes
//! more than a short prefix of its input in an error.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Digest as _;

/// A sha256 content digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

/// Why a digest string was rejected.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DigestError {
    /// Not a digest at all per the OCI grammar, or a malformed sha256 digest.
    #[error("invalid digest: {0}")]
    Invalid(String),
    /// A well-formed digest of an algorithm other than sha256.
    #[error("unsupported digest algorithm: {0}")]
    Unsupported(String),
}

/// Longest algorithm name echoed back in an error.
const MAX_ECHO: usize = 32;

fn is_alg_component_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[a-z0-9]+(?:[+._-][a-z0-9]+)*`
fn valid_algorithm(alg: &str) -> bool {
    let mut prev_sep = true; // start behaves like "after a separator"
    for &b in alg.as_bytes() {
        if is_alg_component_byte(b) {
            prev_sep = false;
        } else if matches!(b, b'+' | b'.' | b'_' | b'-') {
            if prev_sep {
                return false;
            }
            prev_sep = true;
        } else {
            return false;
        }
    }
    !prev_sep
}

/// `[a-zA-Z0-9=_-]+`
fn valid_encoded(enc: &str) -> bool {
    !enc.is_empty()
        && enc
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'))
}

fn lower_hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

impl Digest {
    /// Parses `sha256:<64 lowercase hex>`.
    pub fn parse(s: &str) -> Result<Digest, DigestError> {
        let Some((alg, enc)) = s.split_once(':') else {
            return Err(DigestError::Invalid("missing ':' separator".into()));
        };
        if !valid_algorithm(alg) {
            return Err(DigestError::Invalid("malformed algorithm".into()));
        }
        if !valid_encoded(enc) {
            return Err(DigestError::Invalid("malformed encoded part".into()));
        }
        if alg != "sha256" {
            // The algorithm is pure ASCII here, so byte slicing is safe.
            let shown = &alg[..alg.len().min(MAX_ECHO)];
            return Err(DigestError::Unsupported(shown.to_string()));
        }
        if enc.len() != 64 {
            return Err(DigestError::Invalid(format!(
                "sha256 digest must have 64 hex characters, got {}",
                enc.len()
            )));
        }
        let mut out = [0u8; 32];
        for (i, pair) in enc.as_bytes().chunks_exact(2).enumerate() {
            match (lower_hex_value(pair[0]), lower_hex_value(pair[1])) {
                (Some(hi), Some(lo)) => out[i] = (hi << 4) | lo,
                _ => {
                    return Err(DigestError::Invalid(
                        "sha256 digest must be lowercase hex".into(),
                    ))
                }
            }
        }
        Ok(Digest(out))
    }

    /// Wraps raw sha256 output.
    pub fn from_bytes(b: [u8; 32]) -> Digest {
        Digest(b)
    }

    /// The sha256 of `data`.
    pub fn of(data: &[u8]) -> Digest {
        Digest(sha2::Sha256::digest(data).into())
    }

    /// 64 lowercase hex characters.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Incremental sha256.
#[derive(Clone, Default)]
pub struct Hasher(sha2::Sha256);

impl Hasher {
    /// A fresh hasher.
    pub fn new() -> Hasher {
        Hasher(sha2::Sha256::new())
    }

    /// Feeds more data.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The digest of everything fed so far.
    pub fn finish(self) -> Digest {
        Digest(self.0.finalize().into())
    }
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hasher")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_round_trips() {
        let d = Digest::parse(EMPTY).unwrap();
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(format!("{d:?}"), EMPTY);
        assert_eq!(d.hex().len(), 64);
        assert_eq!(d, Digest::of(b""));
        assert_eq!(EMPTY.parse::<Digest>().unwrap(), d);
        assert_eq!(Digest::from_bytes(*d.as_bytes()), d);
    }

    #[test]
    fn hasher_matches_one_shot() {
        let mut h = Hasher::new();
        h.update(b"hello ");
        h.update(b"world");
        assert_eq!(h.finish(), Digest::of(b"hello world"));
        assert_eq!(
            Digest::of(b"hello world").hex(),
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
    }

    #[test]
    fn rejects_malformed() {
        let upper = EMPTY.to_uppercase().replace("SHA256", "sha256");
        for bad in [
            "",
            "sha256",
            "sha256:",
            ":abc",
            "sha256:abc",
            &upper,
            &format!("{EMPTY}0"),
            &format!("{EMPTY}\0"),
            "SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85g",
            "sha256:é3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
            "sha+:abc",
            "+sha:abc",
            "sha256:a/b",
        ] {
            assert!(
                matches!(Digest::parse(bad), Err(DigestError::Invalid(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn recognises_other_algorithms() {
        let sha512 = format!("sha512:{}", "ab".repeat(64));
        assert_eq!(
            Digest::parse(&sha512),
            Err(DigestError::Unsupported("sha512".into()))
        );
        assert_eq!(
            Digest::parse("multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8"),
            Err(DigestError::Unsupported("multihash+base58".into()))
        );
    }

    #[test]
    fn never_panics_on_odd_input() {
        let huge = format!("sha256:{}", "a".repeat(1 << 20));
        assert!(Digest::parse(&huge).is_err());
        let huge_alg = format!("{}:abc", "a".repeat(1 << 20));
        match Digest::parse(&huge_alg) {
            Err(DigestError::Unsupported(a)) => assert!(a.len() <= MAX_ECHO),
            other => panic!("{other:?}"),
        }
        for s in ["\0:\0", "🦀:🦀", "sha256:🦀🦀", ":::", "sha256::"] {
            assert!(Digest::parse(s).is_err());
        }
    }

    #[test]
    fn serde_uses_string_form() {
        let d = Digest::of(b"x");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{d}\""));
        let back: Digest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, d);
        assert!(serde_json::from_str::<Digest>("\"sha256:zz\"").is_err());
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_digest_round_trips_through_text_and_json(bytes in any::<[u8; 32]>()) {
            let d = Digest::from_bytes(bytes);
            let s = d.to_string();
            prop_assert_eq!(Digest::parse(&s), Ok(d));
            prop_assert_eq!(s.parse::<Digest>(), Ok(d));
            let json = serde_json::to_string(&d).unwrap();
            prop_assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
            prop_assert_eq!(Digest::from_bytes(*d.as_bytes()), d);
        }

        #[test]
        fn a_canonical_digest_prints_as_written(s in "sha256:[0-9a-f]{64}") {
            prop_assert_eq!(Digest::parse(&s).unwrap().to_string(), s);
        }

        #[test]
        fn only_canonical_text_parses(s in "\\PC{0,80}|[a-z0-9+._-]{1,12}:[0-9a-fA-F=_-]{0,70}") {
            // Never panics; whatever parses prints back exactly as it was written.
            if let Ok(d) = Digest::parse(&s) {
                prop_assert_eq!(d.to_string(), s);
            }
        }

        #[test]
        fn hashing_in_pieces_is_hashing_at_once(
            data in proptest::collection::vec(any::<u8>(), 0..4096),
            cut in any::<prop::sample::Index>(),
        ) {
            let at = cut.index(data.len() + 1);
            let mut h = Hasher::new();
            h.update(&data[..at]);
            h.update(&data[at..]);
            prop_assert_eq!(h.finish(), Digest::of(&data));
        }
    }
}
