//! One cached image in detail, for `wharf cache inspect`: the manifest as stored, its layers
//! with their sizes, the config's labels, the manifest's annotations, an index's children.

use super::catalog::{platforms, string_map};
use super::Store;
use crate::error::Result;
use crate::oci::{Digest, RepoName, Selector};
use serde::Serialize;
use std::collections::BTreeMap;

/// A descriptor of the manifest (`layers[]`, `config`, `manifests[]`), and whether its
/// content is in the cache.
#[derive(Debug, Clone, Serialize)]
pub struct Descriptor {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    pub cached: bool,
    /// `os/architecture[/variant]`, for an index's children.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageDetail {
    pub upstream: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: String,
    pub media_type: String,
    /// Bytes of the cached blobs it references (children of an index included).
    pub size: u64,
    pub checked_at: Option<String>,
    pub last_pulled: Option<String>,
    pub platforms: Vec<String>,
    pub config: Option<Descriptor>,
    pub layers: Vec<Descriptor>,
    pub manifests: Vec<Descriptor>,
    /// The image config's `config.Labels`.
    pub labels: BTreeMap<String, String>,
    /// The manifest's `annotations` (`org.opencontainers.image.source`, ...).
    pub annotations: BTreeMap<String, String>,
    /// The manifest as stored.
    pub manifest: serde_json::Value,
}

fn rfc3339_s(secs: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    humantime::format_rfc3339_seconds(at).to_string()
}

impl Store {
    fn descriptor(&self, v: &serde_json::Value) -> Result<Option<Descriptor>> {
        let Some(d) = v
            .get("digest")
            .and_then(|d| d.as_str())
            .and_then(|d| Digest::parse(d).ok())
        else {
            return Ok(None);
        };
        let cached = self.files().exists(&d) || self.get_manifest(&d)?.is_some();
        let platform = v.get("platform").map(|p| {
            let one = serde_json::json!({ "manifests": [{ "platform": p }] });
            platforms(&one).pop().unwrap_or_default()
        });
        Ok(Some(Descriptor {
            digest: d.to_string(),
            media_type: v
                .get("mediaType")
                .and_then(|m| m.as_str())
                .unwrap_or("")
                .to_string(),
            size: v.get("size").and_then(|s| s.as_u64()).unwrap_or(0),
            cached,
            platform,
        }))
    }

    fn descriptors(&self, v: Option<&serde_json::Value>) -> Result<Vec<Descriptor>> {
        let mut out = Vec::new();
        for item in v.and_then(|v| v.as_array()).into_iter().flatten() {
            out.extend(self.descriptor(item)?);
        }
        Ok(out)
    }

    /// The image `selector` names in `upstream/repo`; `None` when it is not cached there (an
    /// unknown tag, or a digest without a manifest link to the repository).
    pub fn image_detail(
        &self,
        upstream: &str,
        repo: &RepoName,
        selector: &Selector,
    ) -> Result<Option<ImageDetail>> {
        let (tag, digest, checked) = match selector {
            Selector::Repository => return Ok(None),
            Selector::Tag(t) => match self.get_tag(upstream, repo.as_str(), t.as_str())? {
                Some(rec) => (
                    Some(t.as_str().to_string()),
                    rec.digest,
                    Some(rec.checked_at_ms),
                ),
                None => return Ok(None),
            },
            Selector::Digest(d) => {
                let kind = super::LinkKind::Manifest;
                if !self.has_link(kind, upstream, repo.as_str(), d)? {
                    return Ok(None);
                }
                (None, *d, None)
            }
        };
        let Some(m) = self.get_manifest(&digest)? else {
            return Ok(None);
        };
        let doc: serde_json::Value = serde_json::from_slice(&m.bytes).unwrap_or_default();
        let config = match doc.get("config") {
            Some(c) => self.descriptor(c)?,
            None => None,
        };
        let labels = match config.as_ref().and_then(|c| Digest::parse(&c.digest).ok()) {
            Some(d) => self.config_labels(&d)?,
            None => BTreeMap::new(),
        };
        Ok(Some(ImageDetail {
            upstream: upstream.to_string(),
            repository: repo.as_str().to_string(),
            tag,
            digest: digest.to_string(),
            media_type: m.media_type.clone(),
            size: self.reachable_bytes(digest)?,
            checked_at: checked.map(|ms| rfc3339_s(ms / 1000)),
            last_pulled: self.manifest_last_access(&digest)?.map(rfc3339_s),
            platforms: platforms(&doc),
            layers: self.descriptors(doc.get("layers"))?,
            manifests: self.descriptors(doc.get("manifests"))?,
            config,
            labels,
            annotations: string_map(doc.get("annotations")),
            manifest: doc,
        }))
    }
}
