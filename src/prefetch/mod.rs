//! `wharf prefetch`: warm the cache with whole images before anyone pulls them.
//!
//! Invariants:
//! - Prefetch fills the cache only through Wharf's own registry API, as a client: every
//!   manifest and blob goes through the serving path's fills (single-flight, verified before
//!   commit, authorization recorded). With a Wharf running on the `data_dir`, prefetch talks to
//!   it, so its fills coalesce with live pulls; without one, prefetch runs the same server
//!   in-process on a loopback port for the duration of the run.
//! - An image counts as prefetched only when every manifest and every blob of the chosen
//!   platforms arrived in full and prefetch itself checked its digest (and its size against the
//!   descriptor). A reference by digest must resolve to exactly that digest.
//! - One image's failure never stops the others; the caller gets a result per image.
//! - Bounded: at most `concurrency` images are resolved and at most `concurrency` blob
//!   downloads run at once; manifests are read with the registry's 4 MiB limit.

pub mod cli;
pub mod client;
pub mod progress;
pub mod spec;
mod target;

pub use target::{connect, Connection};

use crate::oci::digest::Hasher;
use crate::oci::manifest::MAX_MANIFEST_SIZE;
use crate::oci::{media, Digest};
use client::{read_limited, WharfClient};
use http_body_util::BodyExt;
use progress::{Done, Progress};
use serde::Deserialize;
use spec::{ImageSpec, Platform, Platforms};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// How long a blob body may stall before the download counts as failed.
const BODY_IDLE: Duration = Duration::from_secs(300);
/// Index nesting deeper than this is refused (a loop in a hostile index).
const MAX_DEPTH: usize = 4;

pub struct Options {
    pub platforms: Platforms,
    /// Images resolved at once, and blob downloads at once; at least 1.
    pub concurrency: usize,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: Option<String>,
    digest: String,
    size: Option<u64>,
    platform: Option<RawPlatform>,
    urls: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct RawPlatform {
    os: String,
    architecture: String,
    variant: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    media_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    blobs: Option<Vec<Descriptor>>,
    fs_layers: Option<serde::de::IgnoredAny>,
}

impl Descriptor {
    /// Layers others may not redistribute (Windows base layers) are fetched from their `urls`
    /// by clients, never from a registry; a mirror leaves them alone.
    fn foreign(&self) -> bool {
        self.urls.as_ref().is_some_and(|u| !u.is_empty())
            || self
                .media_type
                .as_deref()
                .is_some_and(|m| m.contains("nondistributable") || m.contains(".foreign."))
    }
}

/// What one image needs: manifests seen, and distinct blobs with their sizes.
#[derive(Default)]
struct Plan {
    manifests: usize,
    blobs: BTreeMap<Digest, u64>,
}

struct Ctx {
    client: Arc<WharfClient>,
    progress: Arc<dyn Progress>,
    platforms: Platforms,
    blob_slots: Arc<Semaphore>,
}

impl Ctx {
    fn path(&self, image: &ImageSpec, kind: &str, reference: &str) -> String {
        format!(
            "/v2/{}/{kind}/{reference}?ns={}",
            image.repo,
            crate::auth::form::encode_value(&image.upstream)
        )
    }

    /// One manifest, its bytes checked against `expect` when the reference was a digest.
    async fn manifest(
        &self,
        image: &ImageSpec,
        reference: &str,
    ) -> Result<(Digest, Document), String> {
        let resp = self
            .client
            .get(
                &self.path(image, "manifests", reference),
                Some(media::MANIFEST_ACCEPT),
            )
            .await
            .map_err(|e| format!("manifest {reference}: {e}"))?;
        let content_type = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = read_limited(resp, MAX_MANIFEST_SIZE)
            .await
            .map_err(|e| format!("manifest {reference}: {e}"))?;
        let digest = Digest::of(&bytes);
        if let Ok(want) = Digest::parse(reference) {
            if want != digest {
                return Err(format!(
                    "manifest {reference}: received bytes hash to {digest}"
                ));
            }
        }
        let mut doc: Document = serde_json::from_slice(&bytes)
            .map_err(|e| format!("manifest {reference}: not a manifest: {e}"))?;
        if doc.media_type.is_none() {
            doc.media_type = content_type;
        }
        Ok((digest, doc))
    }

    /// Walks from `reference` down to blobs, adding what it finds to `plan`; returns the
    /// top digest and a description (`image`, `index: 2 of 5 platforms`).
    async fn resolve(
        &self,
        image: &ImageSpec,
        plan: &mut Plan,
    ) -> Result<(Digest, String), String> {
        let (top, doc) = self.manifest(image, &image.reference).await?;
        plan.manifests += 1;
        let mut stack = vec![(doc, 0usize)];
        let mut what = String::from("image");
        while let Some((doc, depth)) = stack.pop() {
            if doc.fs_layers.is_some() {
                return Err("Docker schema 1 manifests are not supported (deprecated)".into());
            }
            let is_index =
                doc.manifests.is_some() || doc.media_type.as_deref().is_some_and(media::is_index);
            if !is_index {
                let descs = doc.config.iter().chain(doc.layers.iter().flatten());
                for d in descs.chain(doc.blobs.iter().flatten()) {
                    if d.foreign() {
                        continue;
                    }
                    let digest = Digest::parse(&d.digest)
                        .map_err(|e| format!("descriptor {:?}: {e}", d.digest))?;
                    plan.blobs.insert(digest, d.size.unwrap_or(0));
                }
                continue;
            }
            if depth >= MAX_DEPTH {
                return Err(format!("index nested deeper than {MAX_DEPTH} levels"));
            }
            let children = doc.manifests.unwrap_or_default();
            let mut seen = Vec::new();
            let mut chosen = Vec::new();
            for c in &children {
                let p = c.platform.as_ref().map(|p| Platform {
                    os: p.os.to_ascii_lowercase(),
                    architecture: p.architecture.to_ascii_lowercase(),
                    variant: p.variant.as_ref().map(|v| v.to_ascii_lowercase()),
                });
                if let Some(p) = &p {
                    seen.push(p.to_string());
                }
                if self.platforms.wants(p.as_ref()) {
                    // A child is named by digest, never by tag: what is fetched is checked.
                    let d = Digest::parse(&c.digest)
                        .map_err(|e| format!("index entry {:?}: {e}", c.digest))?;
                    chosen.push(d.to_string());
                }
            }
            if chosen.is_empty() {
                return Err(format!(
                    "no manifest for {} in the index (it has: {})",
                    self.platforms,
                    if seen.is_empty() {
                        "none".to_string()
                    } else {
                        seen.join(", ")
                    }
                ));
            }
            if depth == 0 {
                what = format!("index: {} of {} manifests", chosen.len(), children.len());
            }
            for child in chosen {
                let (_, doc) = self.manifest(image, &child).await?;
                plan.manifests += 1;
                stack.push((doc, depth + 1));
            }
        }
        Ok((top, what))
    }

    /// Downloads one blob through Wharf, hashing it as it arrives.
    async fn blob(
        &self,
        i: usize,
        image: &ImageSpec,
        digest: Digest,
        size: u64,
    ) -> Result<(), String> {
        let _slot = self.blob_slots.acquire().await.map_err(|e| e.to_string())?;
        let name = digest.to_string();
        let resp = self
            .client
            .get(&self.path(image, "blobs", &name), None)
            .await
            .map_err(|e| format!("blob {name}: {e}"))?;
        let mut body = resp.into_body();
        let mut hasher = Hasher::new();
        let mut got = 0u64;
        loop {
            let frame = tokio::time::timeout(BODY_IDLE, body.frame())
                .await
                .map_err(|_| format!("blob {name}: no data for {BODY_IDLE:?}"))?;
            let Some(frame) = frame else { break };
            let frame =
                frame.map_err(|e| format!("blob {name}: body cut off after {got} bytes: {e}"))?;
            if let Ok(data) = frame.into_data() {
                hasher.update(&data);
                got += data.len() as u64;
                self.progress.bytes(i, data.len() as u64);
            }
        }
        if size != 0 && got != size {
            return Err(format!(
                "blob {name}: got {got} bytes, the manifest says {size}"
            ));
        }
        let actual = hasher.finish();
        if actual != digest {
            return Err(format!("blob {name}: received bytes hash to {actual}"));
        }
        self.progress.blob_done(i, &digest, got);
        Ok(())
    }

    async fn image(self: Arc<Self>, i: usize, image: ImageSpec) -> Result<Done, String> {
        let mut plan = Plan::default();
        let (digest, what) = self.resolve(&image, &mut plan).await?;
        let bytes: u64 = plan.blobs.values().sum();
        self.progress
            .resolved(i, &digest, &what, plan.blobs.len(), bytes);
        let mut tasks = tokio::task::JoinSet::new();
        for (d, size) in plan.blobs.iter() {
            let (ctx, image, d, size) = (self.clone(), image.clone(), *d, *size);
            tasks.spawn(async move { ctx.blob(i, &image, d, size).await });
        }
        while let Some(r) = tasks.join_next().await {
            let r = r.map_err(|e| format!("a download task failed: {e}"))?;
            if let Err(e) = r {
                tasks.abort_all();
                return Err(e);
            }
        }
        Ok(Done {
            digest,
            manifests: plan.manifests,
            blobs: plan.blobs.len(),
            bytes,
        })
    }
}

/// Prefetches `images` through the Wharf that `client` talks to; one result per entry of
/// `images` (an entry that did not parse is passed in as its error).
pub async fn run(
    client: Arc<WharfClient>,
    images: Vec<Result<ImageSpec, String>>,
    options: Options,
    progress: Arc<dyn Progress>,
) -> Vec<Result<Done, String>> {
    let n = options.concurrency.max(1);
    let ctx = Arc::new(Ctx {
        client,
        progress: progress.clone(),
        platforms: options.platforms,
        blob_slots: Arc::new(Semaphore::new(n)),
    });
    let image_slots = Arc::new(Semaphore::new(n));
    let mut results: Vec<Option<Result<Done, String>>> = vec![None; images.len()];
    let mut tasks = tokio::task::JoinSet::new();
    for (i, spec) in images.into_iter().enumerate() {
        let (ctx, slots, progress) = (ctx.clone(), image_slots.clone(), progress.clone());
        tasks.spawn(async move {
            let result = match spec {
                Err(e) => Err(e),
                Ok(spec) => match slots.acquire_owned().await {
                    Err(e) => Err(e.to_string()),
                    Ok(_slot) => {
                        progress.started(i, &spec.to_string());
                        ctx.image(i, spec).await
                    }
                },
            };
            progress.finished(i, &result);
            (i, result)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        if let Ok((i, r)) = joined {
            results[i] = Some(r);
        }
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err("the prefetch task panicked".into())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_layers_are_left_alone() {
        let d: Descriptor = serde_json::from_str(
            r#"{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"sha256:00","size":1}"#,
        )
        .expect("json");
        assert!(d.foreign());
        let d: Descriptor = serde_json::from_str(
            r#"{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:00","urls":["https://x"]}"#,
        )
        .expect("json");
        assert!(d.foreign());
        let d: Descriptor = serde_json::from_str(
            r#"{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:00"}"#,
        )
        .expect("json");
        assert!(!d.foreign());
    }
}
