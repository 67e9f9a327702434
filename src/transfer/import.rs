//! `wharf import`: an OCI layout (directory or tar) into the cache, every blob verified.

use super::tar::*;
use super::*;
use crate::error::Result;
use crate::oci::digest::Hasher;
use crate::oci::manifest::{parse, Links, MAX_MANIFEST_SIZE};
use crate::oci::{Digest, Tag};
use crate::store::keys::TagRecord;
use crate::store::{now_ms, Store, StoredManifest};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------- import

/// Where an import reads from.
pub(super) enum Source {
    Dir(PathBuf),
    Tar {
        file: File,
        members: HashMap<String, (u64, u64)>,
    },
}

impl Source {
    fn open(path: &Path) -> Result<Source> {
        let meta = std::fs::metadata(path)
            .map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
        if meta.is_dir() {
            return Ok(Source::Dir(path.to_path_buf()));
        }
        let mut file = File::open(path)?;
        let members = index_tar(&mut file).map_err(|e| err(format!("{}: {e}", path.display())))?;
        Ok(Source::Tar { file, members })
    }

    /// The member's reader and size, or `None` when absent.
    fn open_member(&self, name: &str) -> Result<Option<(Box<dyn Read + '_>, u64)>> {
        match self {
            Source::Dir(root) => match File::open(root.join(name)) {
                Ok(f) => {
                    let len = f.metadata()?.len();
                    Ok(Some((Box::new(io::BufReader::new(f)), len)))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e.into()),
            },
            Source::Tar { file, members } => {
                let Some(&(offset, size)) = members.get(name) else {
                    return Ok(None);
                };
                let mut f = file.try_clone()?;
                f.seek(SeekFrom::Start(offset))?;
                Ok(Some((Box::new(io::BufReader::new(f).take(size)), size)))
            }
        }
    }

    fn read_small(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        let Some((r, size)) = self.open_member(name)? else {
            return Ok(None);
        };
        if size > limit {
            return Err(err(format!("{name} is {size} bytes; the limit is {limit}")));
        }
        let mut buf = Vec::with_capacity(size as usize);
        r.take(limit + 1).read_to_end(&mut buf)?;
        Ok(Some(buf))
    }

    fn blob_name(d: &Digest) -> String {
        format!("blobs/sha256/{}", d.hex())
    }
}

/// What `import` stored.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ImportSummary {
    pub images: Vec<String>,
    pub manifests: usize,
    pub blobs: usize,
    pub blobs_present: usize,
    pub bytes: u64,
}

#[derive(serde::Deserialize)]
pub(super) struct RawIndex {
    manifests: Vec<RawDescriptor>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawDescriptor {
    media_type: Option<String>,
    digest: String,
    size: Option<u64>,
    #[serde(default)]
    annotations: HashMap<String, String>,
}

/// Imports the OCI layout at `path` (a directory or a tar archive). `name`
/// (`<upstream>/<repo>`) names entries whose annotations carry only a tag.
/// `upstream_of` maps a registry host or upstream alias written in the layout (`ghcr.io`,
/// `registry-1.docker.io`) to the configured upstream's name; names it does not know are kept
/// as written.
pub fn import(
    store: &Store,
    path: &Path,
    name: Option<&str>,
    upstream_of: &dyn Fn(&str) -> Option<String>,
) -> Result<ImportSummary> {
    let src = Source::open(path)?;
    let index = read_index(&src, path)?;
    let fixed_name = name
        .map(|n| {
            split_name(n).ok_or_else(|| err(format!("--name {n:?}: expected <upstream>/<repo>")))
        })
        .transpose()?;

    // Resolve every target first: a naming problem fails before anything is stored.
    let mut targets = Vec::new();
    for (i, desc) in index.manifests.iter().enumerate() {
        let digest = Digest::parse(&desc.digest)
            .map_err(|e| err(format!("index.json manifests[{i}].digest: {e}")))?;
        let mut target = target_of(i, desc, &digest, fixed_name.as_ref())?;
        if let Some(configured) = upstream_of(&target.upstream) {
            target.upstream = configured;
        }
        targets.push((target, digest, desc));
    }

    let mut summary = ImportSummary::default();
    let mut done_blobs: HashSet<Digest> = HashSet::new();
    for (target, root, desc) in targets {
        let mut ctx = ImportCtx {
            store,
            src: &src,
            target: &target,
            done_blobs: &mut done_blobs,
            summary: &mut summary,
            visiting: HashSet::new(),
        };
        ctx.image(&root, desc)?;
        summary.manifests += 1;
        summary.images.push(target.to_string());
    }
    Ok(summary)
}

/// Checks the layout's `oci-layout` file and reads its `index.json`.
fn read_index(src: &Source, path: &Path) -> Result<RawIndex> {
    let layout = src.read_small("oci-layout", 64 * 1024)?.ok_or_else(|| {
        err(format!(
            "{}: not an OCI layout (no oci-layout file)",
            path.display()
        ))
    })?;
    let layout: serde_json::Value = serde_json::from_slice(&layout)
        .map_err(|e| err(format!("{}: oci-layout: {e}", path.display())))?;
    if layout["imageLayoutVersion"].as_str().is_none() {
        return Err(err(format!(
            "{}: oci-layout has no imageLayoutVersion",
            path.display()
        )));
    }
    let index = src
        .read_small("index.json", MAX_MANIFEST_SIZE as u64)?
        .ok_or_else(|| err(format!("{}: no index.json", path.display())))?;
    serde_json::from_slice(&index).map_err(|e| err(format!("{}: index.json: {e}", path.display())))
}

/// The image `index.json`'s entry `i` (of `digest`) names, as written in the layout: from
/// Wharf's annotation, containerd's, or the OCI ref name (a full reference, or a tag under
/// `fixed_name`).
fn target_of(
    i: usize,
    desc: &RawDescriptor,
    digest: &Digest,
    fixed_name: Option<&(String, String)>,
) -> Result<ImageRef> {
    if let Some(full) = desc.annotations.get(WHARF_REF) {
        return ImageRef::parse(full).map_err(|e| err(format!("{WHARF_REF}: {e}")));
    }
    if let Some(full) = desc
        .annotations
        .get(CONTAINERD_NAME)
        .filter(|n| !n.contains('@'))
    {
        // `docker save` (Docker 25+) and `ctr export` name entries this way (a name by
        // digest has no tag to import it under: the other annotations decide).
        return ImageRef::parse(full).map_err(|e| err(format!("{CONTAINERD_NAME}: {e}")));
    }
    match desc.annotations.get(REF_NAME) {
        Some(r) if looks_like_full_ref(r) && ImageRef::parse(r).is_ok() => {
            ImageRef::parse(r).map_err(err)
        }
        Some(tag) => {
            let Some((upstream, repo)) = fixed_name else {
                return Err(err(format!(
                    "index.json manifests[{i}] is named {tag:?}, not \
                     <upstream>/<repo>:<tag>: give --name <upstream>/<repo>"
                )));
            };
            Tag::parse(tag).map_err(|e| err(format!("manifests[{i}] {tag:?}: {e}")))?;
            Ok(ImageRef {
                upstream: upstream.clone(),
                repo: repo.clone(),
                tag: tag.clone(),
            })
        }
        None => Err(err(format!(
            "index.json manifests[{i}] ({digest}) has no {REF_NAME} annotation: \
             there is no tag to import it under"
        ))),
    }
}

pub(super) struct ImportCtx<'a> {
    store: &'a Store,
    src: &'a Source,
    target: &'a ImageRef,
    done_blobs: &'a mut HashSet<Digest>,
    summary: &'a mut ImportSummary,
    visiting: HashSet<Digest>,
}

impl ImportCtx<'_> {
    /// Stores the image whose top manifest is `root` (described by `desc`) and records it
    /// under the target's tag.
    fn image(&mut self, root: &Digest, desc: &RawDescriptor) -> Result<()> {
        let target = self.target;
        let top = self.manifest(root, desc.size, desc.media_type.as_deref())?;
        let (top, links) = top.ok_or_else(|| {
            err(format!(
                "{target}: manifest {root} is missing from the layout (blobs/sha256/{})",
                root.hex()
            ))
        })?;
        self.store.put_manifest(
            &target.upstream,
            &target.repo,
            &top,
            &links,
            Some((
                &target.tag,
                TagRecord {
                    digest: *root,
                    checked_at_ms: now_ms(),
                },
            )),
        )?;
        self.store.note_manifest(root, top.bytes.len() as u64)?;
        Ok(())
    }

    /// Reads and verifies manifest `d`, stores everything it references (recording child
    /// manifests), and returns it with its references, unrecorded. `None`: not in the layout.
    fn manifest(
        &mut self,
        d: &Digest,
        size: Option<u64>,
        media_type: Option<&str>,
    ) -> Result<Option<(StoredManifest, Links)>> {
        let target = self.target.clone();
        let Some(bytes) = self
            .src
            .read_small(&Source::blob_name(d), MAX_MANIFEST_SIZE as u64)
            .map_err(|e| err(format!("{target}: manifest {d}: {e}")))?
        else {
            return Ok(None);
        };
        let actual = Digest::of(&bytes);
        if actual != *d {
            return Err(err(format!(
                "{target}: manifest {d} is corrupt: its content hashes to {actual}"
            )));
        }
        if let Some(s) = size {
            if s != bytes.len() as u64 {
                return Err(err(format!(
                    "{target}: manifest {d} is {} bytes, its descriptor says {s}",
                    bytes.len()
                )));
            }
        }
        if !self.visiting.insert(*d) {
            return Err(err(format!("{target}: manifest {d} references itself")));
        }
        // Strictly by its kind (see `oci::manifest`): an ambiguous document is refused.
        let refs =
            parse(&bytes, media_type).map_err(|e| err(format!("{target}: manifest {d}: {e}")))?;
        let media_type = refs
            .media_type
            .clone()
            .unwrap_or_else(|| crate::oci::media::OCI_MANIFEST.to_string());
        let mut referenced = Links::default();
        for child in &refs.manifests {
            if let Some((m, r)) = self.manifest(child, None, None)? {
                self.store
                    .put_manifest(&target.upstream, &target.repo, &m, &r, None)?;
                self.store.note_manifest(child, m.bytes.len() as u64)?;
                self.summary.manifests += 1;
            }
            referenced.manifests.push(*child);
        }
        // Imported content is served to anyone under its repository: exactly what this
        // archive holds and was verified (this manifest, its blobs; children mark themselves
        // above), not whatever else of the repository is cached, nor a child it lacks.
        let mut imported = vec![*d];
        for b in refs.config.iter().chain(refs.layers.iter()) {
            self.blob(b)?;
            referenced.blobs.push(*b);
            imported.push(*b);
        }
        self.store
            .mark_imported(&target.upstream, &target.repo, &imported)?;
        self.visiting.remove(d);
        Ok(Some((
            StoredManifest {
                digest: *d,
                media_type,
                bytes: bytes::Bytes::from(bytes),
            },
            referenced,
        )))
    }

    /// Stores blob `d` from the layout, verified.
    fn blob(&mut self, d: &Digest) -> Result<()> {
        if self.done_blobs.contains(d) {
            return Ok(());
        }
        let target = self.target;
        let Some((mut r, size)) = self.src.open_member(&Source::blob_name(d))? else {
            return Err(err(format!(
                "{target}: blob {d} is missing from the layout (blobs/sha256/{})",
                d.hex()
            )));
        };
        // Already cached: the archive's copy is still what this import vouches for (and opens
        // to anyone), so it is hashed too, just not stored again.
        let present = self.store.files().exists(d) && self.store.blob_record(d)?.is_some();
        let temp = if present {
            None
        } else {
            Some(self.store.create_temp(d)?)
        };
        let mut hasher = Hasher::new();
        let mut copied = 0u64;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            if let Some(t) = &temp {
                (&*t.file).write_all(&buf[..n])?;
            }
            copied += n as u64;
        }
        let actual = hasher.finish();
        if actual != *d || copied != size {
            // Dropping `temp` removes the file: nothing of this blob is stored.
            return Err(err(format!(
                "{target}: blob {d} is corrupt: its content hashes to {actual}; nothing of it \
                 was imported"
            )));
        }
        let Some(temp) = temp else {
            self.done_blobs.insert(*d);
            self.summary.blobs_present += 1;
            return Ok(());
        };
        self.store.commit_blob(&temp, d, copied)?;
        self.done_blobs.insert(*d);
        self.summary.blobs += 1;
        self.summary.bytes += copied;
        Ok(())
    }
}

#[cfg(test)]
#[path = "import_tests.rs"]
mod tests;
