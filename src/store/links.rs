//! Repository links: which digests may be served under which repository, and as what.
//!
//! Invariants:
//! - A blob link (`blob_links`) lets a digest be served as a blob of (upstream, repo), a
//!   manifest link (`manifest_links`) as a manifest; neither stands in for the other.
//! - Links are written only from what an upstream vouched for in that repository: a blob or
//!   manifest it served there (to a client it authorized), or the references a verified
//!   manifest of the repository makes through the fields its media type defines
//!   ([`crate::oci::manifest::Links`]). A manifest and its links are written in one batch.

use super::{keys, Store, StoredManifest, CF_BLOB_LINKS, CF_MANIFESTS, CF_MANIFEST_LINKS, CF_TAGS};
use crate::error::Result;
use crate::oci::manifest::Links;
use crate::oci::Digest;
use keys::TagRecord;
use rocksdb::WriteBatch;

/// What a link lets a digest be served as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    Blob,
    Manifest,
}

impl LinkKind {
    pub(super) fn cf_name(self) -> &'static str {
        match self {
            LinkKind::Blob => CF_BLOB_LINKS,
            LinkKind::Manifest => CF_MANIFEST_LINKS,
        }
    }
}

impl Store {
    /// Records a verified manifest, its own manifest link, the links its references make
    /// (`links`, from [`crate::oci::manifest::ManifestRefs::links`]) and optionally a tag
    /// resolution, atomically.
    pub fn put_manifest(
        &self,
        upstream: &str,
        repo: &str,
        manifest: &StoredManifest,
        links: &Links,
        tag: Option<(&str, TagRecord)>,
    ) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.cf(CF_MANIFESTS)?,
            manifest.digest.as_bytes(),
            keys::encode_manifest(&manifest.media_type, &manifest.bytes),
        );
        let (blobs, manifests) = (self.cf(CF_BLOB_LINKS)?, self.cf(CF_MANIFEST_LINKS)?);
        let key = |d: &Digest| keys::link_key(upstream, repo, d);
        batch.put_cf(manifests, key(&manifest.digest), []);
        for d in &links.manifests {
            batch.put_cf(manifests, key(d), []);
        }
        for d in &links.blobs {
            batch.put_cf(blobs, key(d), []);
        }
        if let Some((tag, rec)) = tag {
            batch.put_cf(
                self.cf(CF_TAGS)?,
                keys::tag_key(upstream, repo, tag),
                keys::encode_tag(&rec),
            );
        }
        self.db.write(batch)?;
        Ok(())
    }

    pub fn put_link(&self, kind: LinkKind, upstream: &str, repo: &str, d: &Digest) -> Result<()> {
        let cf = self.cf(kind.cf_name())?;
        self.db.put_cf(cf, keys::link_key(upstream, repo, d), [])?;
        Ok(())
    }

    pub fn has_link(&self, kind: LinkKind, upstream: &str, repo: &str, d: &Digest) -> Result<bool> {
        let cf = self.cf(kind.cf_name())?;
        Ok(self
            .db
            .get_pinned_cf(cf, keys::link_key(upstream, repo, d))?
            .is_some())
    }

    /// Removes both kinds of link of `d` in (upstream, repo).
    pub fn delete_link(&self, upstream: &str, repo: &str, d: &Digest) -> Result<()> {
        for kind in [LinkKind::Blob, LinkKind::Manifest] {
            let cf = self.cf(kind.cf_name())?;
            self.db.delete_cf(cf, keys::link_key(upstream, repo, d))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(body: &[u8]) -> StoredManifest {
        StoredManifest {
            digest: Digest::of(body),
            media_type: crate::oci::media::OCI_MANIFEST.to_string(),
            bytes: bytes::Bytes::copy_from_slice(body),
        }
    }

    #[test]
    fn manifests_tags_and_typed_links_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = manifest(b"{\"schemaVersion\":2}");
        let (layer, child) = (Digest::of(b"layer"), Digest::of(b"child"));
        let rec = TagRecord {
            digest: m.digest,
            checked_at_ms: 5,
        };
        let links = Links {
            blobs: vec![layer],
            manifests: vec![child],
        };
        {
            let s = Store::open(dir.path()).expect("open");
            s.put_manifest("docker.io", "library/alpine", &m, &links, Some(("3", rec)))
                .expect("put");
        }
        let s = Store::open(dir.path()).expect("reopen");
        assert_eq!(s.get_manifest(&m.digest).expect("get"), Some(m.clone()));
        assert_eq!(
            s.get_tag("docker.io", "library/alpine", "3").expect("tag"),
            Some(rec)
        );
        let has = |kind, up, repo, d| s.has_link(kind, up, repo, d).expect("link");
        use LinkKind::{Blob, Manifest};
        assert!(has(Blob, "docker.io", "library/alpine", &layer));
        assert!(!has(Manifest, "docker.io", "library/alpine", &layer));
        assert!(has(Manifest, "docker.io", "library/alpine", &child));
        assert!(!has(Blob, "docker.io", "library/alpine", &child));
        assert!(has(Manifest, "docker.io", "library/alpine", &m.digest));
        assert!(!has(Blob, "docker.io", "library/alpine", &m.digest));
        assert!(!has(Blob, "docker.io", "library/other", &layer));
        assert!(!has(Blob, "ghcr.io", "library/alpine", &layer));
        s.delete_link("docker.io", "library/alpine", &layer)
            .expect("unlink");
        assert!(!has(Blob, "docker.io", "library/alpine", &layer));
    }
}
