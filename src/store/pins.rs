//! Pins set at run time (`wharf cache pin`), beside `cache.pin` from the config.
//!
//! Invariants:
//! - A pin is a record of the `pins` column family, keyed by the reference's canonical text
//!   (`UPSTREAM/REPO:TAG` or `UPSTREAM/REPO@DIGEST`, the upstream's configured name), valued
//!   by when it was set (ms since the epoch, big-endian). It is written before `pin` returns
//!   and so survives a restart; only `unpin` removes it (never eviction, never a purge of
//!   something else).
//! - Eviction keeps everything reachable from a pinned reference (its manifest, an index's
//!   children, their config and layers), exactly as for `cache.pin`:
//!   [`Store::pinned_digests`] takes its roots from both. A tag pin follows the tag: the
//!   roots are whatever it resolves to at each eviction pass.
//! - Only a cached image can be pinned (the API checks, to catch typos), but a pin whose
//!   image is gone later (purged) stays, pinning nothing, until it is removed.

use super::{Store, CF_PINS};
use crate::error::Result;
use crate::oci::{CacheRef, Digest, Selector};

/// A pin set at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimePin {
    pub reference: CacheRef,
    /// When it was set, ms since the epoch.
    pub since_ms: u64,
}

impl Store {
    /// Pins `r` (a tag or a digest); pinning it again keeps the first time. Returns when it
    /// was pinned.
    pub fn put_pin(&self, r: &CacheRef) -> Result<u64> {
        if let Some(since) = self.pin_of(r)? {
            return Ok(since);
        }
        let now = super::now_ms();
        self.db
            .put_cf(self.cf(CF_PINS)?, r.to_string(), now.to_be_bytes())?;
        Ok(now)
    }

    /// Removes the pin of `r`; whether there was one.
    pub fn delete_pin(&self, r: &CacheRef) -> Result<bool> {
        let had = self.pin_of(r)?.is_some();
        self.db.delete_cf(self.cf(CF_PINS)?, r.to_string())?;
        Ok(had)
    }

    /// When `r` was pinned, if it is.
    pub fn pin_of(&self, r: &CacheRef) -> Result<Option<u64>> {
        let v = self.db.get_pinned_cf(self.cf(CF_PINS)?, r.to_string())?;
        Ok(v.and_then(|v| Some(u64::from_be_bytes(v.as_ref().try_into().ok()?))))
    }

    /// Every pin set at run time, in key order.
    pub fn pins(&self) -> Result<Vec<RuntimePin>> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_PINS)?, rocksdb::IteratorMode::Start)
        {
            let (k, v) = item?;
            let (Ok(text), Ok(at)) = (std::str::from_utf8(&k), <[u8; 8]>::try_from(v.as_ref()))
            else {
                continue;
            };
            if let Ok(reference) = CacheRef::parse(text) {
                out.push(RuntimePin {
                    reference,
                    since_ms: u64::from_be_bytes(at),
                });
            }
        }
        Ok(out)
    }

    /// The manifests the run-time pins name now (their roots for eviction).
    pub(super) fn runtime_pin_roots(&self) -> Result<Vec<Digest>> {
        let mut roots = Vec::new();
        for p in self.pins()? {
            let (up, repo) = (&p.reference.upstream, p.reference.repo.as_str());
            match &p.reference.selector {
                Selector::Tag(t) => {
                    roots.extend(self.get_tag(up, repo, t.as_str())?.map(|r| r.digest))
                }
                Selector::Digest(d) => roots.push(*d),
                Selector::Repository => {}
            }
        }
        Ok(roots)
    }
}

#[cfg(test)]
mod tests {
    use super::super::keys::TagRecord;
    use super::super::{Store, StoredManifest};
    use crate::oci::{CacheRef, Digest};
    use std::collections::HashSet;
    use std::io::Write;

    fn blob(s: &Store, data: &[u8]) -> Digest {
        let d = Digest::of(data);
        let t = s.create_temp(&d).expect("temp");
        (&*t.file).write_all(data).expect("write");
        s.commit_blob(&t, &d, data.len() as u64).expect("commit");
        d
    }

    /// An image `up/app:tag` with one layer; its manifest digest and its layer.
    fn image(s: &Store, tag: &str, layer: &[u8]) -> (Digest, Digest) {
        let l = blob(s, layer);
        let bytes = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{l}","size":{}}},"layers":[]}}"#,
            layer.len()
        );
        let m = StoredManifest {
            digest: Digest::of(bytes.as_bytes()),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            bytes: bytes.into_bytes().into(),
        };
        let links = m.refs().expect("parse").links();
        let rec = TagRecord {
            digest: m.digest,
            checked_at_ms: 1,
        };
        s.put_manifest("up", "app", &m, &links, Some((tag, rec)))
            .expect("put");
        (m.digest, l)
    }

    #[test]
    fn a_pin_survives_reopening_and_keeps_its_image_from_eviction() {
        let dir = tempfile::tempdir().expect("tmp");
        let r = CacheRef::parse("up/app:v1").expect("ref");
        let (m, layer) = {
            let s = Store::open(dir.path()).expect("open");
            let (m, layer) = image(&s, "v1", &[7u8; 100]);
            let since = s.put_pin(&r).expect("pin");
            assert_eq!(s.put_pin(&r).expect("again"), since);
            (m, layer)
        };
        let s = Store::open(dir.path()).expect("reopen");
        assert!(s.pin_of(&r).expect("read").is_some());
        assert_eq!(s.pins().expect("list")[0].reference, r);
        let keep = s.pinned_digests(&[]).expect("pinned");
        assert!(keep.contains(&m) && keep.contains(&layer), "{keep:?}");
        s.evict_to(0, &keep).expect("evict");
        assert!(s.files().exists(&layer));
        assert!(s.delete_pin(&r).expect("unpin"));
        assert!(!s.delete_pin(&r).expect("unpin again"));
        assert_eq!(s.pinned_digests(&[]).expect("pinned"), HashSet::new());
    }
}
