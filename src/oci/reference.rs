//! Manifest references: a tag or a digest.
//!
//! Invariant: a [`Tag`] always matches `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`, so it
//! never contains ':' and can never be confused with a digest.

use std::fmt;
use std::str::FromStr;

use super::digest::{Digest, DigestError};

/// Maximum tag length.
pub const MAX_TAG_LEN: usize = 128;

/// A validated tag such as `latest` or `3.20`.
#[derive(Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct Tag(String);

/// The reference part of `/v2/<name>/manifests/<reference>`.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

/// Why a reference was rejected.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ReferenceError {
    #[error(transparent)]
    Digest(DigestError),
    #[error("invalid tag: {0}")]
    Tag(String),
}

impl Tag {
    /// Parses and validates a tag.
    pub fn parse(s: &str) -> Result<Tag, ReferenceError> {
        let bytes = s.as_bytes();
        let Some(&first) = bytes.first() else {
            return Err(ReferenceError::Tag("tag is empty".into()));
        };
        if bytes.len() > MAX_TAG_LEN {
            return Err(ReferenceError::Tag(format!(
                "tag is {} bytes long; the limit is {MAX_TAG_LEN}",
                bytes.len()
            )));
        }
        if !(first.is_ascii_alphanumeric() || first == b'_') {
            return Err(ReferenceError::Tag(
                "tag must start with a letter, digit or '_'".into(),
            ));
        }
        if let Some(pos) = bytes
            .iter()
            .position(|&b| !(b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')))
        {
            return Err(ReferenceError::Tag(format!(
                "invalid character at position {pos} (allowed: A-Z, a-z, 0-9, '_', '.', '-')"
            )));
        }
        Ok(Tag(s.to_string()))
    }

    /// The tag as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Tag {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tag::parse(s)
    }
}

impl Reference {
    /// A string containing ':' is a digest, anything else a tag.
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        if s.contains(':') {
            Digest::parse(s)
                .map(Reference::Digest)
                .map_err(ReferenceError::Digest)
        } else {
            Tag::parse(s).map(Reference::Tag)
        }
    }

    /// The digest, if this is a digest reference.
    pub fn as_digest(&self) -> Option<&Digest> {
        match self {
            Reference::Digest(d) => Some(d),
            Reference::Tag(_) => None,
        }
    }

    /// The tag, if this is a tag reference.
    pub fn as_tag(&self) -> Option<&Tag> {
        match self {
            Reference::Tag(t) => Some(t),
            Reference::Digest(_) => None,
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => fmt::Display::fmt(t, f),
            Reference::Digest(d) => fmt::Display::fmt(d, f),
        }
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        for ok in [
            "latest",
            "3.20",
            "_x",
            "v1.2.3-rc.1_b",
            "A",
            &"a".repeat(128),
        ] {
            assert_eq!(Tag::parse(ok).unwrap().as_str(), ok);
        }
        for bad in ["", ".x", "-x", "a:b", "a/b", "a b", "é", &"a".repeat(129)] {
            assert!(
                matches!(Tag::parse(bad), Err(ReferenceError::Tag(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn references() {
        let r = Reference::parse("latest").unwrap();
        assert_eq!(r.as_tag().unwrap().as_str(), "latest");
        assert!(r.as_digest().is_none());
        assert_eq!(r.to_string(), "latest");

        let d = Digest::of(b"m");
        let r = Reference::parse(&d.to_string()).unwrap();
        assert_eq!(r.as_digest(), Some(&d));
        assert!(r.as_tag().is_none());
        assert_eq!(r.to_string(), d.to_string());

        assert!(matches!(
            Reference::parse("sha256:abc"),
            Err(ReferenceError::Digest(DigestError::Invalid(_)))
        ));
        assert!(matches!(
            Reference::parse(&format!("sha512:{}", "a".repeat(128))),
            Err(ReferenceError::Digest(DigestError::Unsupported(_)))
        ));
        assert!(matches!(
            Reference::parse("-bad"),
            Err(ReferenceError::Tag(_))
        ));
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_valid_tag_round_trips(s in "[A-Za-z0-9_][A-Za-z0-9._-]{0,127}") {
            let r = Reference::parse(&s).unwrap();
            prop_assert_eq!(r.as_tag().map(Tag::as_str), Some(s.as_str()));
            prop_assert_eq!(r.to_string(), s.clone());
            prop_assert_eq!(s.parse::<Reference>(), Ok(r));
        }

        #[test]
        fn any_digest_reference_round_trips(bytes in any::<[u8; 32]>()) {
            let d = Digest::from_bytes(bytes);
            let r = Reference::parse(&d.to_string()).unwrap();
            prop_assert_eq!(r.as_digest(), Some(&d));
            prop_assert_eq!(Reference::parse(&r.to_string()), Ok(r));
        }

        #[test]
        fn whatever_parses_prints_back_unchanged(s in "\\PC{0,140}|[A-Za-z0-9._:-]{0,140}") {
            if let Ok(r) = Reference::parse(&s) {
                prop_assert_eq!(r.to_string(), s);
            }
        }

        #[test]
        fn tags_past_128_bytes_are_refused(s in "[a-z]{129,300}") {
            prop_assert!(matches!(Reference::parse(&s), Err(ReferenceError::Tag(_))));
        }
    }
}
