//! `wharf export`: cached images out to an OCI layout (directory or tar).

use super::tar::*;
use super::*;
use crate::error::Result;
use crate::oci::digest::Hasher;
use crate::oci::Digest;
use crate::store::{Store, StoredManifest};
use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------- export

/// What `export` wrote.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ExportSummary {
    pub images: usize,
    pub blobs: usize,
    pub bytes: u64,
}

/// Where an export goes.
pub(super) enum Sink {
    Dir(PathBuf),
    Tar(BufWriter<File>),
}

impl Sink {
    fn open(out: &Path) -> Result<Sink> {
        if out.extension().is_some_and(|e| e == "tar") {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(out)
                .map_err(|e| err(format!("cannot create {}: {e}", out.display())))?;
            let mut w = BufWriter::new(f);
            tar_dir(&mut w, "blobs/")?;
            tar_dir(&mut w, "blobs/sha256/")?;
            Ok(Sink::Tar(w))
        } else {
            if out.exists()
                && std::fs::read_dir(out)
                    .map(|mut d| d.next().is_some())
                    .unwrap_or(true)
            {
                return Err(err(format!(
                    "{} exists and is not an empty directory",
                    out.display()
                )));
            }
            std::fs::create_dir_all(out.join("blobs").join("sha256"))?;
            Ok(Sink::Dir(out.to_path_buf()))
        }
    }

    fn put_bytes(&mut self, name: &str, data: &[u8]) -> Result<()> {
        match self {
            Sink::Dir(root) => std::fs::write(root.join(name), data)?,
            Sink::Tar(w) => {
                tar_header(w, name, data.len() as u64, b'0')?;
                w.write_all(data)?;
                tar_pad(w, data.len() as u64)?;
            }
        }
        Ok(())
    }

    /// Copies `size` bytes from `src` as `blobs/sha256/<hex>`, checking they hash to `digest`.
    fn put_blob(&mut self, digest: &Digest, mut src: impl Read, size: u64) -> Result<()> {
        let name = format!("blobs/sha256/{}", digest.hex());
        let mut hasher = Hasher::new();
        let mut copied = 0u64;
        let mut buf = vec![0u8; 256 * 1024];
        let mismatch = |copied: u64| {
            err(format!(
                "cached blob {digest} is corrupt ({copied} bytes read, expected {size}, or its \
                 sha256 differs); run `wharf fsck --repair`"
            ))
        };
        match self {
            Sink::Dir(root) => {
                let path = root.join(&name);
                let mut f = BufWriter::new(File::create(&path)?);
                loop {
                    let n = src.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                    f.write_all(&buf[..n])?;
                    copied += n as u64;
                }
                f.flush()?;
                if copied != size || hasher.finish() != *digest {
                    drop(f);
                    let _ = std::fs::remove_file(&path);
                    return Err(mismatch(copied));
                }
            }
            Sink::Tar(w) => {
                tar_header(w, &name, size, b'0')?;
                let mut limited = src.take(size);
                loop {
                    let n = limited.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                    w.write_all(&buf[..n])?;
                    copied += n as u64;
                }
                if copied != size || hasher.finish() != *digest {
                    return Err(mismatch(copied));
                }
                tar_pad(w, size)?;
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<()> {
        if let Sink::Tar(mut w) = self {
            w.write_all(&[0u8; 1024])?;
            w.flush()?;
            w.get_ref().sync_all()?;
        }
        Ok(())
    }
}

/// Exports `images` (`<upstream>/<repo>:<tag>`; empty with `all`: every cached tag) to `out`:
/// a directory, or a tar archive when `out` ends in `.tar`. `progress` hears of each blob
/// once it is written and verified: (digest, its size, bytes written so far, bytes in all).
pub fn export(
    store: &Store,
    images: &[String],
    all: bool,
    out: &Path,
    progress: &mut dyn FnMut(&Digest, u64, u64, u64),
) -> Result<ExportSummary> {
    let selected = if all {
        select_all(store)?
    } else {
        select(store, images)?
    };
    // Gather everything first, so that a missing blob fails before anything is written.
    let plan = Plan::gather(store, &selected)?;
    let mut sink = Sink::open(out)?;
    match plan.write(store, &mut sink, progress) {
        Ok(s) => {
            sink.finish()?;
            Ok(s)
        }
        Err(e) => {
            drop(sink);
            if out.extension().is_some_and(|e| e == "tar") {
                let _ = std::fs::remove_file(out);
            }
            Err(e)
        }
    }
}

/// Every cached tag, with the digest it points at.
fn select_all(store: &Store) -> Result<Vec<(ImageRef, Digest)>> {
    let mut selected = Vec::new();
    for i in &store.images()? {
        let d = Digest::parse(&i.digest).map_err(|e| err(format!("{}: {e}", i.digest)))?;
        selected.push((
            ImageRef {
                upstream: i.upstream.clone(),
                repo: i.repository.clone(),
                tag: i.tag.clone(),
            },
            d,
        ));
    }
    if selected.is_empty() {
        return Err(err("the cache holds no tagged images"));
    }
    Ok(selected)
}

/// The named images (`<upstream>/<repo>:<tag>`), each with the digest its tag points at.
fn select(store: &Store, images: &[String]) -> Result<Vec<(ImageRef, Digest)>> {
    let mut selected = Vec::new();
    for s in images {
        let r = ImageRef::parse(s).map_err(err)?;
        let rec = store
            .get_tag(&r.upstream, &r.repo, &r.tag)?
            .ok_or_else(|| err(format!("{r} is not cached (see `wharf ls`)")))?;
        selected.push((r, rec.digest));
    }
    Ok(selected)
}

/// Everything an export writes, gathered (and checked to be cached) before writing any of it.
#[derive(Default)]
struct Plan {
    /// The selected images' count.
    images: usize,
    /// Every manifest reachable from the selected ones that is cached, each once.
    manifests: Vec<StoredManifest>,
    /// Every config and layer those reference, each once, with its size.
    blobs: Vec<(Digest, u64)>,
    /// Digests already planned (manifests and blobs).
    seen: HashSet<Digest>,
    /// The entries of `index.json`, one per selected image.
    index: Vec<serde_json::Value>,
}

impl Plan {
    fn gather(store: &Store, selected: &[(ImageRef, Digest)]) -> Result<Plan> {
        let mut plan = Plan {
            images: selected.len(),
            ..Plan::default()
        };
        for (image, root) in selected {
            let top = store
                .get_manifest(root)?
                .ok_or_else(|| err(format!("{image}: manifest {root} is not cached")))?;
            plan.index.push(serde_json::json!({
                "mediaType": top.media_type,
                "digest": root.to_string(),
                "size": top.bytes.len(),
                "annotations": { REF_NAME: image.tag, WHARF_REF: image.to_string() },
            }));
            plan.add_tree(store, image, top)?;
        }
        Ok(plan)
    }

    /// Adds `top` and every cached manifest and blob it reaches.
    fn add_tree(&mut self, store: &Store, image: &ImageRef, top: StoredManifest) -> Result<()> {
        let mut todo = vec![top];
        while let Some(m) = todo.pop() {
            if !self.seen.insert(m.digest) {
                continue;
            }
            let refs = m
                .refs()
                .map_err(|e| err(format!("{image}: manifest {}: {e}", m.digest)))?;
            for child in &refs.manifests {
                // Children nobody pulled (other platforms) are not cached: leave them out.
                if let Some(c) = store.get_manifest(child)? {
                    todo.push(c);
                }
            }
            for d in refs.config.iter().chain(refs.layers.iter()) {
                self.add_blob(store, image, d)?;
            }
            self.manifests.push(m);
        }
        Ok(())
    }

    /// Adds a config or layer, which must be cached.
    fn add_blob(&mut self, store: &Store, image: &ImageRef, d: &Digest) -> Result<()> {
        if self.seen.contains(d) {
            return Ok(());
        }
        // A config or layer may itself be a cached manifest (artifacts); export it as bytes in
        // that case.
        match store.open_blob(d)? {
            Some((_, len)) => {
                self.seen.insert(*d);
                self.blobs.push((*d, len));
                Ok(())
            }
            None => Err(err(format!(
                "{image}: blob {d} is not cached (evicted?); pull the image through Wharf again \
                 before exporting it"
            ))),
        }
    }

    /// Writes the layout: `oci-layout`, the manifests, the blobs, then `index.json`.
    fn write(
        self,
        store: &Store,
        sink: &mut Sink,
        progress: &mut dyn FnMut(&Digest, u64, u64, u64),
    ) -> Result<ExportSummary> {
        let Plan {
            images,
            manifests,
            blobs,
            index,
            ..
        } = self;
        let mut summary = ExportSummary {
            images,
            ..Default::default()
        };
        sink.put_bytes("oci-layout", LAYOUT)?;
        let total: u64 = manifests.iter().map(|m| m.bytes.len() as u64).sum::<u64>()
            + blobs.iter().map(|(_, len)| len).sum::<u64>();
        for m in &manifests {
            sink.put_blob(&m.digest, &m.bytes[..], m.bytes.len() as u64)?;
            summary.blobs += 1;
            summary.bytes += m.bytes.len() as u64;
        }
        for (d, len) in &blobs {
            let (f, _) = store
                .open_blob(d)?
                .ok_or_else(|| err(format!("blob {d} was evicted during the export")))?;
            sink.put_blob(d, io::BufReader::new(f), *len)?;
            summary.blobs += 1;
            summary.bytes += len;
            progress(d, *len, summary.bytes, total);
        }
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": crate::oci::media::OCI_INDEX,
            "manifests": index,
        });
        let text = serde_json::to_vec_pretty(&index).map_err(err)?;
        sink.put_bytes("index.json", &text)?;
        Ok(summary)
    }
}
