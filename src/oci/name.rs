//! Repository names.
//!
//! Invariant: a [`RepoName`] always matches the OCI distribution grammar
//! `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
//! [`RepoName::parse`] also enforces a total length of at most 255 bytes; names derived
//! with [`RepoName::with_library_prefix`] may exceed it by the prefix's length, which
//! is what an upstream then sees (and may refuse).

use std::fmt;
use std::str::FromStr;

/// Maximum length of a repository name accepted from a client.
pub const MAX_NAME_LEN: usize = 255;

/// A validated repository name such as `library/alpine`.
#[derive(Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct RepoName(String);

/// Why a repository name was rejected.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum NameError {
    #[error("repository name is empty")]
    Empty,
    #[error("repository name is {0} bytes long; the limit is 255")]
    TooLong(usize),
    #[error("repository name has an empty path component at position {0}")]
    EmptyComponent(usize),
    #[error("repository name has invalid character {ch:?} at position {pos} (allowed: a-z, 0-9, '.', '_', '-', '/')")]
    BadChar { pos: usize, ch: char },
    #[error("repository name has invalid separator {sep:?} at position {pos} (allowed: '.', '_', '__' or a run of '-')")]
    BadSeparator { pos: usize, sep: String },
    #[error("repository name component must start and end with a-z or 0-9 (position {0})")]
    SeparatorAtEdge(usize),
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn is_sep(b: u8) -> bool {
    matches!(b, b'.' | b'_' | b'-')
}

/// Validates one path component starting at byte offset `base` of the full name.
fn check_component(comp: &str, base: usize) -> Result<(), NameError> {
    let bytes = comp.as_bytes();
    if bytes.is_empty() {
        return Err(NameError::EmptyComponent(base));
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if is_alnum(b) {
            i += 1;
            continue;
        }
        if !is_sep(b) {
            // Report the full (possibly multi-byte) character.
            let ch = comp[i..].chars().next().unwrap_or('\u{fffd}');
            return Err(NameError::BadChar { pos: base + i, ch });
        }
        let start = i;
        while i < bytes.len() && is_sep(bytes[i]) {
            i += 1;
        }
        let run = &comp[start..i];
        let ok = matches!(run, "." | "_" | "__") || run.bytes().all(|b| b == b'-');
        if !ok {
            return Err(NameError::BadSeparator {
                pos: base + start,
                sep: run.to_string(),
            });
        }
        if start == 0 || i == bytes.len() {
            return Err(NameError::SeparatorAtEdge(base + start));
        }
    }
    Ok(())
}

impl RepoName {
    /// Parses and validates a repository name.
    pub fn parse(s: &str) -> Result<RepoName, NameError> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong(s.len()));
        }
        let mut base = 0;
        for comp in s.split('/') {
            check_component(comp, base)?;
            base += comp.len() + 1;
        }
        Ok(RepoName(s.to_string()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Number of '/'-separated components (at least 1).
    pub fn segment_count(&self) -> usize {
        self.0.split('/').count()
    }

    /// The first component.
    pub fn first_segment(&self) -> &str {
        self.0.split('/').next().unwrap_or(&self.0)
    }

    /// Everything after the first '/', or None for a single-component name.
    pub fn strip_first_segment(&self) -> Option<RepoName> {
        // A suffix of valid components is itself valid.
        self.0
            .split_once('/')
            .map(|(_, rest)| RepoName(rest.to_string()))
    }

    /// `library/<name>` for a single-component name (Docker Hub's official images),
    /// otherwise a clone.
    pub fn with_library_prefix(&self) -> RepoName {
        if self.0.contains('/') {
            self.clone()
        } else {
            RepoName(format!("library/{}", self.0))
        }
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for RepoName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RepoName::parse(s)
    }
}

impl AsRef<str> for RepoName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_names() {
        for ok in [
            "alpine",
            "library/alpine",
            "a",
            "0",
            "foo.bar",
            "foo_bar",
            "foo__bar",
            "foo-bar",
            "foo---bar",
            "a/b/c/d",
            "my-org/my.image_v2/sub__x",
            "quay.io.mirror/x",
        ] {
            assert_eq!(RepoName::parse(ok).unwrap().as_str(), ok, "{ok}");
        }
        assert!(RepoName::parse(&"a".repeat(255)).is_ok());
    }

    #[test]
    fn rejects_invalid_names() {
        assert_eq!(RepoName::parse(""), Err(NameError::Empty));
        assert_eq!(
            RepoName::parse(&"a".repeat(256)),
            Err(NameError::TooLong(256))
        );
        assert_eq!(
            RepoName::parse("Alpine"),
            Err(NameError::BadChar { pos: 0, ch: 'A' })
        );
        assert_eq!(
            RepoName::parse("ab/cé"),
            Err(NameError::BadChar { pos: 4, ch: 'é' })
        );
        assert_eq!(
            RepoName::parse("a..b"),
            Err(NameError::BadSeparator {
                pos: 1,
                sep: "..".into()
            })
        );
        assert!(matches!(
            RepoName::parse("a___b"),
            Err(NameError::BadSeparator { .. })
        ));
        assert!(matches!(
            RepoName::parse("a.-b"),
            Err(NameError::BadSeparator { .. })
        ));
        assert_eq!(RepoName::parse("-a"), Err(NameError::SeparatorAtEdge(0)));
        assert_eq!(RepoName::parse("a/b_"), Err(NameError::SeparatorAtEdge(3)));
        assert_eq!(RepoName::parse("a//b"), Err(NameError::EmptyComponent(2)));
        assert_eq!(RepoName::parse("/a"), Err(NameError::EmptyComponent(0)));
        assert_eq!(RepoName::parse("a/"), Err(NameError::EmptyComponent(2)));
        for bad in ["a b", "a:b", "a\0", "..", "a/../b", "🦀"] {
            assert!(RepoName::parse(bad).is_err(), "{bad:?}");
        }
        let msg = RepoName::parse("a b").unwrap_err().to_string();
        assert!(msg.contains("position 1"), "{msg}");
    }

    #[test]
    fn segments() {
        let n = RepoName::parse("a/b/c").unwrap();
        assert_eq!(n.segment_count(), 3);
        assert_eq!(n.first_segment(), "a");
        assert_eq!(n.strip_first_segment().unwrap().as_str(), "b/c");
        assert_eq!(n.with_library_prefix(), n);

        let s = RepoName::parse("alpine").unwrap();
        assert_eq!(s.segment_count(), 1);
        assert_eq!(s.first_segment(), "alpine");
        assert_eq!(s.strip_first_segment(), None);
        assert_eq!(s.with_library_prefix().as_str(), "library/alpine");
        assert_eq!(s.to_string(), "alpine");
    }
}
