//! How an operator names cached content (`wharf cache`, the admin API): `UPSTREAM/REPO`,
//! `UPSTREAM/REPO:TAG` or `UPSTREAM/REPO@DIGEST`. The upstream is the first segment, as
//! `wharf ls` prints it; the rest is the repository exactly as cached (`library/alpine`).

use super::{Digest, RepoName, Tag};
use std::fmt;

/// What a reference selects in its repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// The whole repository.
    Repository,
    Tag(Tag),
    Digest(Digest),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRef {
    pub upstream: String,
    pub repo: RepoName,
    pub selector: Selector,
}

impl CacheRef {
    pub fn parse(s: &str) -> Result<CacheRef, String> {
        let bad = |why: String| format!("{s:?} is not UPSTREAM/REPO[:TAG|@DIGEST]: {why}");
        let (upstream, rest) = s
            .split_once('/')
            .filter(|(u, r)| !u.is_empty() && !r.is_empty())
            .ok_or_else(|| bad("expected an upstream name, a slash, a repository".into()))?;
        let (name, selector) = if let Some((name, d)) = rest.split_once('@') {
            let d = Digest::parse(d).map_err(|e| bad(e.to_string()))?;
            (name, Selector::Digest(d))
        } else {
            match rest.rsplit_once(':') {
                Some((name, t)) if !t.contains('/') => {
                    let t = Tag::parse(t).map_err(|e| bad(e.to_string()))?;
                    (name, Selector::Tag(t))
                }
                _ => (rest, Selector::Repository),
            }
        };
        let repo = RepoName::parse(name).map_err(|e| bad(e.to_string()))?;
        Ok(CacheRef {
            upstream: upstream.to_string(),
            repo,
            selector,
        })
    }
}

impl fmt::Display for CacheRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.upstream, self.repo.as_str())?;
        match &self.selector {
            Selector::Repository => Ok(()),
            Selector::Tag(t) => write!(f, ":{}", t.as_str()),
            Selector::Digest(d) => write!(f, "@{d}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000001";

    #[test]
    fn the_three_forms_parse_and_print_back() {
        let r = CacheRef::parse("docker.io/library/alpine").unwrap();
        assert_eq!(r.upstream, "docker.io");
        assert_eq!(r.repo.as_str(), "library/alpine");
        assert_eq!(r.selector, Selector::Repository);
        let r = CacheRef::parse("ghcr.io/org/app:v1.2").unwrap();
        assert_eq!(r.repo.as_str(), "org/app");
        assert_eq!(r.selector, Selector::Tag(Tag::parse("v1.2").unwrap()));
        assert_eq!(r.to_string(), "ghcr.io/org/app:v1.2");
        let r = CacheRef::parse(&format!("local/app@{D}")).unwrap();
        assert_eq!(r.selector, Selector::Digest(Digest::parse(D).unwrap()));
        assert_eq!(r.to_string(), format!("local/app@{D}"));
    }

    #[test]
    fn malformed_references_are_refused_with_the_reason() {
        for bad in [
            "",
            "alpine",
            "/alpine",
            "docker.io/",
            "docker.io/Alpine",
            "docker.io/alpine:",
            "docker.io/alpine@sha256:12",
            "docker.io/alpine:bad tag",
        ] {
            let e = CacheRef::parse(bad).unwrap_err();
            assert!(e.contains("UPSTREAM/REPO"), "{bad:?}: {e}");
        }
    }
}
