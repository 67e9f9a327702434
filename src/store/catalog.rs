//! What the admin API reads of the cache: per upstream, per repository, per tag, and one
//! image in detail. Read-only; every figure comes from the records (blob sizes from the
//! `blobs` table, last pulls from the coarse last-access times, written every 30 s or
//! pending in memory).

use super::{keys, Store, CF_BLOB_LINKS, CF_TAGS};
use crate::error::Result;
use crate::oci::Digest;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// The largest config blob read for its labels.
const MAX_CONFIG_BLOB: u64 = 4 << 20;

/// What an upstream has in the cache (a blob shared by two repositories counts once).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Cached {
    pub bytes: u64,
    pub blobs: u64,
    pub repositories: u64,
}

/// One cached repository of an upstream.
#[derive(Debug, Clone, Serialize)]
pub struct RepoEntry {
    pub repository: String,
    pub tags: u64,
    pub blobs: u64,
    pub bytes: u64,
    /// The latest pull of one of its tags (RFC 3339), if any was recorded.
    pub last_pulled: Option<String>,
}

/// One cached tag of a repository.
#[derive(Debug, Clone, Serialize)]
pub struct TagEntry {
    pub tag: String,
    pub digest: String,
    pub media_type: String,
    /// `os/architecture[/variant]` of an index's children; empty for an image.
    pub platforms: Vec<String>,
    /// Bytes of the cached blobs it references (children of an index included).
    pub size: u64,
    /// When the tag was last confirmed upstream (RFC 3339).
    pub checked_at: String,
    pub last_pulled: Option<String>,
}

fn rfc3339_s(secs: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// `os/architecture[/variant]` of each child of an index document.
pub fn platforms(doc: &serde_json::Value) -> Vec<String> {
    let Some(children) = doc.get("manifests").and_then(|m| m.as_array()) else {
        return Vec::new();
    };
    children
        .iter()
        .filter_map(|c| c.get("platform"))
        .map(|p| {
            let f = |k: &str| p.get(k).and_then(|v| v.as_str()).unwrap_or("");
            let mut s = format!("{}/{}", f("os"), f("architecture"));
            if !f("variant").is_empty() {
                s = format!("{s}/{}", f("variant"));
            }
            s
        })
        .collect()
}

impl Store {
    /// Per upstream: distinct cached blobs, their bytes, and repositories with a link or tag.
    pub fn upstream_totals(&self) -> Result<BTreeMap<String, Cached>> {
        let mut blobs: BTreeMap<String, BTreeSet<Digest>> = BTreeMap::new();
        let mut repos: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_BLOB_LINKS)?, rocksdb::IteratorMode::Start)
        {
            let (k, _) = item?;
            if let Some((up, repo, d)) = keys::decode_link_key(&k) {
                repos.entry(up.clone()).or_default().insert(repo);
                blobs.entry(up).or_default().insert(d);
            }
        }
        let mut out: BTreeMap<String, Cached> = BTreeMap::new();
        for (up, set) in blobs {
            let e = out.entry(up).or_default();
            for d in set {
                if let Some(rec) = self.blob_record(&d)? {
                    e.blobs += 1;
                    e.bytes += rec.size;
                }
            }
        }
        for (up, set) in repos {
            out.entry(up).or_default().repositories = set.len() as u64;
        }
        Ok(out)
    }

    /// The cached tags of `upstream/repo`, sorted by tag.
    pub fn tag_entries(&self, upstream: &str, repo: &str) -> Result<Vec<TagEntry>> {
        let prefix = keys::tag_key(upstream, repo, "");
        let mut out = Vec::new();
        for item in self.db.iterator_cf(
            self.cf(CF_TAGS)?,
            rocksdb::IteratorMode::From(&prefix, rocksdb::Direction::Forward),
        ) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            let (Some((u, r, tag)), Some(rec)) = (keys::decode_tag_key(&k), keys::decode_tag(&v))
            else {
                continue;
            };
            if u != upstream || r != repo {
                continue;
            }
            let m = self.get_manifest(&rec.digest)?;
            let doc = m
                .as_ref()
                .and_then(|m| serde_json::from_slice(&m.bytes).ok());
            out.push(TagEntry {
                tag,
                digest: rec.digest.to_string(),
                media_type: m.map(|m| m.media_type).unwrap_or_default(),
                platforms: doc.as_ref().map(platforms).unwrap_or_default(),
                size: self.reachable_bytes(rec.digest)?,
                checked_at: rfc3339_s(rec.checked_at_ms / 1000),
                last_pulled: self.manifest_last_access(&rec.digest)?.map(rfc3339_s),
            });
        }
        Ok(out)
    }

    /// The cached repositories of `upstream` (with a blob link or a tag), sorted.
    pub fn repo_entries(&self, upstream: &str) -> Result<Vec<RepoEntry>> {
        let usage: BTreeMap<String, (u64, u64)> = self
            .usage()?
            .into_iter()
            .filter(|u| u.upstream == upstream)
            .map(|u| (u.repository, (u.blobs, u.bytes)))
            .collect();
        let mut names: BTreeSet<String> = usage.keys().cloned().collect();
        let prefix = [upstream.as_bytes(), &[0]].concat();
        for item in self.db.iterator_cf(
            self.cf(CF_TAGS)?,
            rocksdb::IteratorMode::From(&prefix, rocksdb::Direction::Forward),
        ) {
            let (k, _) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            if let Some((u, r, _)) = keys::decode_tag_key(&k) {
                if u == upstream {
                    names.insert(r);
                }
            }
        }
        let mut out = Vec::new();
        for repository in names {
            let tags = self.tag_entries(upstream, &repository)?;
            let (blobs, bytes) = usage.get(&repository).copied().unwrap_or_default();
            let last_pulled = tags.iter().filter_map(|t| t.last_pulled.clone()).max();
            out.push(RepoEntry {
                tags: tags.len() as u64,
                repository,
                blobs,
                bytes,
                last_pulled,
            });
        }
        Ok(out)
    }

    /// The `config.Labels` of an image config blob that is cached (small ones only).
    pub fn config_labels(&self, config: &Digest) -> Result<BTreeMap<String, String>> {
        let Some((file, len)) = self.open_blob(config)? else {
            return Ok(BTreeMap::new());
        };
        if len > MAX_CONFIG_BLOB {
            return Ok(BTreeMap::new());
        }
        let mut bytes = Vec::with_capacity(len as usize);
        std::io::Read::read_to_end(&mut std::io::Read::take(file, len), &mut bytes)?;
        let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        Ok(string_map(doc.pointer("/config/Labels")))
    }
}

/// A JSON object of strings as a map (other values skipped).
pub fn string_map(v: Option<&serde_json::Value>) -> BTreeMap<String, String> {
    v.and_then(|v| v.as_object())
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}
