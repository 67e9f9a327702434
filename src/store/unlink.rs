//! Forgetting what an upstream deleted: tag resolutions and repository links.
//!
//! Invariant: nothing here removes a blob file or a manifest record; content that is no
//! longer linked to a repository is simply not served under it (and eviction reclaims files).

use super::{keys, Store, CF_TAGS};
use crate::error::Result;
use crate::oci::Digest;

impl Store {
    pub fn delete_tag(&self, upstream: &str, repo: &str, tag: &str) -> Result<()> {
        let cf = self.cf(CF_TAGS)?;
        self.db.delete_cf(cf, keys::tag_key(upstream, repo, tag))?;
        Ok(())
    }

    /// The tags of `upstream`/`repo` that resolve to `digest`.
    pub fn tags_pointing_at(
        &self,
        upstream: &str,
        repo: &str,
        digest: &Digest,
    ) -> Result<Vec<String>> {
        // Keys are `upstream \0 repo \0 tag`: the tags of one repository share a prefix.
        let prefix = keys::tag_key(upstream, repo, "");
        let mode = rocksdb::IteratorMode::From(&prefix, rocksdb::Direction::Forward);
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_TAGS)?, mode) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            let (Some((_, _, tag)), Some(rec)) = (keys::decode_tag_key(&k), keys::decode_tag(&v))
            else {
                continue;
            };
            if rec.digest == *digest {
                out.push(tag);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::keys::TagRecord;

    #[test]
    fn tags_are_forgotten_per_repository() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path()).expect("open");
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let rec = |digest| TagRecord {
            digest,
            checked_at_ms: 1,
        };
        s.put_tag("u", "org/app", "v1", rec(a)).expect("tag");
        s.put_tag("u", "org/app", "latest", rec(a)).expect("tag");
        s.put_tag("u", "org/app", "v2", rec(b)).expect("tag");
        s.put_tag("u", "org/app-x", "v1", rec(a)).expect("tag");
        s.put_tag("u", "org", "v1", rec(a)).expect("tag");
        let mut tags = s.tags_pointing_at("u", "org/app", &a).expect("scan");
        tags.sort();
        assert_eq!(tags, vec!["latest", "v1"]);
        s.delete_tag("u", "org/app", "v1").expect("delete");
        assert_eq!(s.get_tag("u", "org/app", "v1").expect("get"), None);
        assert_eq!(
            s.get_tag("u", "org/app-x", "v1").expect("get"),
            Some(rec(a))
        );
    }
}
