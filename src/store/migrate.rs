//! One-time conversion of a store written before links had kinds (one `links` table for
//! blobs and manifests alike, filled from every reference field of a manifest whatever its
//! media type; see `oci::manifest`).
//!
//! Invariant: a legacy link survives only where the old rules and the new agree, so the
//! migration never keeps a link the injected-field leak could have made:
//! - Stored manifests the strict parser refuses (ambiguous documents) are deleted.
//! - In each repository, a linked manifest is *tainted* when a linked manifest references it
//!   only through a field its kind does not define; tainted manifests vouch for nothing
//!   (computed to a fixed point, since a tainted manifest's references were not vouched for).
//! - A manifest link is kept for a stored, untainted manifest, or a child an untainted index
//!   names; a blob link for a digest no linked manifest references at all (fetched directly
//!   through the repository) or one an untainted manifest references as a blob.
//! - Imported digests keep their links. Everything else is dropped: the next request for it
//!   asks the upstream, with the client's credentials, and links it again if allowed.

use super::links::LinkKind;
use super::{keys, Store, CF_MANIFESTS};
use crate::error::Result;
use crate::oci::manifest::{ManifestError, ManifestRefs};
use crate::oci::Digest;
use rocksdb::{Options, DB};
use std::collections::{HashMap, HashSet};
use std::path::Path;

pub(super) const CF_LEGACY_LINKS: &str = "links";

/// Whether the database at `path` still has the legacy `links` table.
pub(super) fn has_legacy_links(opts: &Options, path: &Path) -> bool {
    DB::list_cf(opts, path).is_ok_and(|cfs| cfs.iter().any(|c| c == CF_LEGACY_LINKS))
}

/// Every digest the old parser linked: any `config`, `layers`, `blobs`, `manifests` or
/// `fsLayers` entry, whatever the media type.
fn loose_refs(bytes: &[u8]) -> Vec<Digest> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Vec::new();
    };
    let digest = |d: &serde_json::Value, key: &str| Digest::parse(d.get(key)?.as_str()?).ok();
    let mut out: Vec<Digest> = v
        .get("config")
        .and_then(|c| digest(c, "digest"))
        .into_iter()
        .collect();
    for (field, key) in [
        ("layers", "digest"),
        ("blobs", "digest"),
        ("manifests", "digest"),
        ("fsLayers", "blobSum"),
    ] {
        if let Some(list) = v.get(field).and_then(|l| l.as_array()) {
            out.extend(list.iter().filter_map(|d| digest(d, key)));
        }
    }
    out
}

/// The manifests linked in one repository, with their strict and loose references.
struct Group {
    manifests: HashMap<Digest, (ManifestRefs, Vec<Digest>)>,
    tainted: HashSet<Digest>,
    blobs: HashSet<Digest>,
    children: HashSet<Digest>,
    loose: HashSet<Digest>,
}

impl Group {
    /// `manifests`: the parseable linked ones; `refused`: what the linked manifests the strict
    /// parser refused referenced (they vouch for nothing, but taint what they name).
    fn new(manifests: HashMap<Digest, (ManifestRefs, Vec<Digest>)>, refused: Vec<Digest>) -> Group {
        let loose = manifests
            .values()
            .flat_map(|(_, l)| l.iter().copied())
            .chain(refused)
            .collect();
        let mut g = Group {
            manifests,
            tainted: HashSet::new(),
            blobs: HashSet::new(),
            children: HashSet::new(),
            loose,
        };
        loop {
            g.vouched();
            let tainted: HashSet<Digest> = g
                .manifests
                .keys()
                .filter(|d| g.loose.contains(d) && !g.children.contains(d))
                .copied()
                .collect();
            if tainted == g.tainted {
                return g;
            }
            g.tainted = tainted;
        }
    }

    /// What the untainted manifests vouch for.
    fn vouched(&mut self) {
        self.blobs.clear();
        self.children.clear();
        for (d, (refs, _)) in &self.manifests {
            if !self.tainted.contains(d) {
                let links = refs.links();
                self.blobs.extend(links.blobs);
                self.children.extend(links.manifests);
            }
        }
    }

    /// The kind of link the legacy link of `d` becomes, if any.
    fn kind(&self, d: &Digest) -> Option<LinkKind> {
        if self.manifests.contains_key(d) {
            return (!self.tainted.contains(d)).then_some(LinkKind::Manifest);
        }
        if self.children.contains(d) {
            return Some(LinkKind::Manifest);
        }
        (!self.loose.contains(d) || self.blobs.contains(d)).then_some(LinkKind::Blob)
    }
}

impl Store {
    /// Converts the legacy `links` table (see the module docs) and drops it.
    pub(super) fn migrate_links(&mut self) -> Result<()> {
        let ambiguous = self.ambiguous_manifests()?;
        let legacy = self.cf(CF_LEGACY_LINKS)?;
        let mut groups: HashMap<(String, String), Vec<Digest>> = HashMap::new();
        for item in self.db.iterator_cf(legacy, rocksdb::IteratorMode::Start) {
            let (k, _) = item?;
            if let Some((up, repo, d)) = keys::decode_link_key(&k) {
                groups.entry((up, repo)).or_default().push(d);
            }
        }
        let (mut kept, mut dropped) = (0u64, 0u64);
        for ((up, repo), digests) in groups {
            let (mut manifests, mut refused) = (HashMap::new(), Vec::new());
            for d in &digests {
                if let Some(r) = ambiguous.get(d) {
                    refused.extend(r.iter().copied());
                } else if let Some(m) = self.get_manifest(d)? {
                    match m.refs() {
                        Ok(refs) => {
                            manifests.insert(*d, (refs, loose_refs(&m.bytes)));
                        }
                        Err(_) => refused.extend(loose_refs(&m.bytes)),
                    }
                }
            }
            let group = Group::new(manifests, refused);
            for d in digests {
                let kind = if self.is_imported(&up, &repo, &d)? {
                    let stored = self.get_manifest(&d)?.is_some();
                    Some(if stored {
                        LinkKind::Manifest
                    } else {
                        LinkKind::Blob
                    })
                } else if ambiguous.contains_key(&d) {
                    None
                } else {
                    group.kind(&d)
                };
                match kind {
                    Some(k) => {
                        self.put_link(k, &up, &repo, &d)?;
                        kept += 1;
                    }
                    None => dropped += 1,
                }
            }
        }
        // Dropped before the ambiguous manifests are deleted: a crash in between leaves them
        // stored but unlinked (never served without an upstream check), never the legacy
        // table without the manifests that taint what they named.
        self.db.drop_cf(CF_LEGACY_LINKS)?;
        let cf = self.cf(CF_MANIFESTS)?;
        for d in ambiguous.keys() {
            tracing::warn!(digest = %d, "deleting a cached manifest that is ambiguous");
            self.db.delete_cf(cf, d.as_bytes())?;
        }
        tracing::info!(
            kept,
            dropped,
            ambiguous_manifests = ambiguous.len(),
            "repository links converted to blob and manifest links"
        );
        Ok(())
    }

    /// The stored manifests the strict parser refuses, and what they named.
    fn ambiguous_manifests(&self) -> Result<HashMap<Digest, Vec<Digest>>> {
        let cf = self.cf(CF_MANIFESTS)?;
        let mut out = HashMap::new();
        for item in self.db.iterator_cf(cf, rocksdb::IteratorMode::Start) {
            let (k, _) = item?;
            let Ok(bytes) = <[u8; 32]>::try_from(&k[..]) else {
                continue;
            };
            let d = Digest::from_bytes(bytes);
            if let Some(m) = self.get_manifest(&d)? {
                if let Err(ManifestError::Ambiguous(why)) = m.refs() {
                    tracing::info!(digest = %d, why, "a cached manifest is ambiguous");
                    out.insert(d, loose_refs(&m.bytes));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
#[path = "migrate_tests.rs"]
mod tests;
