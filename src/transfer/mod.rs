//! `wharf export` and `wharf import`: moving cached images to and from air-gapped sites as OCI
//! image layouts (a directory, or a tar archive of one, as `skopeo copy ... oci-archive:` writes).
//!
//! Invariants:
//! - Every byte that crosses the boundary is verified: export hashes each blob while copying it
//!   out of the cache, import hashes each blob while copying it in, and a mismatch is an error
//!   naming the digest. An imported blob reaches `blobs/` only through the store's temp file and
//!   commit, so a corrupt blob leaves nothing behind.
//! - Import records a manifest only after everything it references (its blobs, and the child
//!   manifests an index lists that the layout holds) was stored, children before parents.
//! - Children of an index that are not cached (platforms nobody pulled) are left out of an
//!   export; an import records the index without them, as a pull-through fill would.
//! - Import opens exactly the digests it stored (each manifest and what it references) to
//!   anyone, under the repository they were imported into ([`crate::store::Store::mark_imported`]);
//!   nothing else cached in that repository changes hands.
//! - Both work on a stopped Wharf's `data_dir` directly, or on a running one through its
//!   control socket ([`control`]: RocksDB allows a single opener).

use crate::error::{Error, Result};
use crate::oci::{RepoName, Tag};
use crate::store::Store;
use std::path::Path;

pub mod control;
mod export;
mod import;
mod tar;

pub use export::{export, ExportSummary};
pub use import::{import, ImportSummary};

/// The annotation carrying the full `<upstream>/<repo>:<tag>` reference.
pub const WHARF_REF: &str = "io.wharf.image.ref";
/// The full reference `docker save` (Docker 25+) and containerd put on layout entries
/// (`docker.io/library/alpine:3.20`).
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The standard OCI annotation for a layout entry's name.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
pub(super) const LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

pub(super) fn err(msg: impl std::fmt::Display) -> Error {
    Error::internal(msg)
}

/// A target image: `<upstream>/<repo>:<tag>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ImageRef {
    pub upstream: String,
    pub repo: String,
    pub tag: String,
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}:{}", self.upstream, self.repo, self.tag)
    }
}

impl ImageRef {
    /// Parses `<upstream>/<repo>:<tag>` (as `wharf ls` prints it).
    pub fn parse(s: &str) -> std::result::Result<ImageRef, String> {
        let (name, tag) = match s.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, t),
            _ => return Err(format!("{s:?}: expected <upstream>/<repo>:<tag>")),
        };
        let (upstream, repo) =
            split_name(name).ok_or_else(|| format!("{s:?}: expected <upstream>/<repo>:<tag>"))?;
        Tag::parse(tag).map_err(|e| format!("{s:?}: {e}"))?;
        Ok(ImageRef {
            upstream,
            repo,
            tag: tag.to_string(),
        })
    }
}

/// `<upstream>/<repo>` → (upstream, repo), validated.
pub(super) fn split_name(s: &str) -> Option<(String, String)> {
    let (upstream, repo) = s.split_once('/')?;
    if upstream.is_empty() {
        return None;
    }
    RepoName::parse(repo).ok()?;
    Some((upstream.to_string(), repo.to_string()))
}

/// True when the first path segment of `s` looks like a registry host.
pub(super) fn looks_like_full_ref(s: &str) -> bool {
    match s.split_once('/') {
        Some((host, _)) => host.contains('.') || host.contains(':') || host == "localhost",
        None => false,
    }
}

/// Whether opening the store failed because another process (a running Wharf) holds it.
pub fn is_locked(e: &Error) -> bool {
    e.to_string().contains("is Wharf running on this data_dir")
}

/// Opens the store for a maintenance command, explaining the lock error.
pub fn open_store(data_dir: &Path) -> Result<Store> {
    Store::open_with(data_dir, false).map_err(|e| {
        let text = e.to_string();
        if text.to_ascii_lowercase().contains("lock") {
            err(format!(
                "cannot open {}: {text} (is Wharf running on this data_dir? stop it first)",
                data_dir.display()
            ))
        } else {
            err(format!("cannot open {}: {text}", data_dir.display()))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::tar::*;
    use super::*;
    use std::fs::File;
    use std::io::Write;

    #[test]
    fn image_refs_parse() {
        let r = ImageRef::parse("docker.io/library/alpine:3.20").expect("parse");
        assert_eq!(
            (r.upstream.as_str(), r.repo.as_str(), r.tag.as_str()),
            ("docker.io", "library/alpine", "3.20")
        );
        assert_eq!(r.to_string(), "docker.io/library/alpine:3.20");
        let r = ImageRef::parse("localhost:5000/app:v1").expect("port");
        assert_eq!(
            (r.upstream.as_str(), r.repo.as_str()),
            ("localhost:5000", "app")
        );
        for bad in [
            "alpine:3",
            "docker.io/alpine",
            "docker.io/Alpine:3",
            ":x",
            "a/b:",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad}");
        }
        assert!(looks_like_full_ref("up.test/org/app:v1"));
        assert!(!looks_like_full_ref("v1"));
        assert!(!looks_like_full_ref("org/app:v1"));
    }

    #[test]
    fn tar_round_trips_through_the_indexer() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("a.tar");
        {
            let mut w = File::create(&path).expect("create");
            tar_dir(&mut w, "blobs/").expect("dir");
            tar_header(&mut w, "oci-layout", 5, b'0').expect("h");
            w.write_all(b"hello").expect("w");
            tar_pad(&mut w, 5).expect("pad");
            let big = vec![7u8; 1024];
            tar_header(&mut w, "blobs/x", big.len() as u64, b'0').expect("h");
            w.write_all(&big).expect("w");
            tar_pad(&mut w, 1024).expect("pad");
            w.write_all(&[0u8; 1024]).expect("end");
        }
        let mut f = File::open(&path).expect("open");
        let m = index_tar(&mut f).expect("index");
        assert_eq!(m.get("oci-layout"), Some(&(1024, 5)));
        assert_eq!(m.get("blobs/x"), Some(&(2048, 1024)));
        assert!(!m.contains_key("blobs/"));
        assert_eq!(
            parse_pax(b"28 path=blobs/sha256/abcdef\n11 size=12\n"),
            vec![
                ("path".to_string(), "blobs/sha256/abcdef".to_string()),
                ("size".to_string(), "12".to_string())
            ]
        );
    }
}
