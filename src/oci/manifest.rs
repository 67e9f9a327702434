//! Reading the references a manifest makes, strictly by its media type, without
//! re-serializing it.
//!
//! Invariants (the reason this module exists; see CVE-2021-41190 and the OCI image-spec
//! advisory behind it):
//! - A document has exactly one kind: its declared `mediaType`, else the media type it was
//!   served as, else the one its shape implies. A declared type that disagrees with the type
//!   it was served as is refused ([`ManifestError::Ambiguous`]), and so is a document carrying
//!   a reference field its kind does not define (`manifests` in an image manifest, `layers`
//!   or `blobs` in an index, `fsLayers` anywhere but schema 1, ...): registries validate only
//!   the fields of the declared kind, so such a field names digests nobody vouched for.
//! - References come only from the fields the kind defines: image manifest and Docker
//!   schema 2: `config`, `layers`; index and manifest list: `manifests`; schema 1: `fsLayers`;
//!   the (withdrawn) OCI artifact manifest: `blobs`. A kind Wharf does not know references
//!   nothing. `subject` is read for the referrers API only and is never a link.
//! - [`Links`] keeps blob and manifest references apart: a digest a manifest names as a layer
//!   may be served as a blob of that repository, never as a manifest, and the other way round.
//!   Foreign (non-distributable) layers and descriptors with `urls` are not linked: registries
//!   do not check at push time that those exist in the repository.
//! - The bytes are never modified; descriptors whose digest uses another algorithm than sha256
//!   are skipped; a malformed digest anywhere is an error naming the field.

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::digest::{Digest, DigestError};
use super::media;

/// The largest manifest the proxy will accept or store.
pub const MAX_MANIFEST_SIZE: usize = 4 * 1024 * 1024;

/// What a manifest points at, through the fields its kind defines.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ManifestRefs {
    /// Declared `mediaType`, else the type it was served as, else inferred from the shape.
    pub media_type: Option<String>,
    /// Image config blob.
    pub config: Option<Digest>,
    /// Layer blobs (schema 1 `fsLayers`, artifact `blobs`).
    pub layers: Vec<Digest>,
    /// The layers that are foreign, non-distributable or carry `urls` (also in `layers`).
    pub foreign: Vec<Digest>,
    /// Child manifests of an index or manifest list.
    pub manifests: Vec<Digest>,
    /// The `subject` manifest (referrers API only; grants nothing).
    pub subject: Option<Digest>,
}

/// The digests a manifest links to its repository, by what they may be served as.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Links {
    /// Config and distributable layers: served as blobs.
    pub blobs: Vec<Digest>,
    /// Child manifests: served as manifests.
    pub manifests: Vec<Digest>,
}

impl ManifestRefs {
    /// What this manifest vouches for in its repository (see the module's invariants).
    pub fn links(&self) -> Links {
        let mut blobs: Vec<Digest> = self
            .layers
            .iter()
            .filter(|d| !self.foreign.contains(d))
            .copied()
            .collect();
        blobs.extend(self.config);
        Links {
            blobs,
            manifests: self.manifests.clone(),
        }
    }
}

/// Why a manifest could not be parsed, or is refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ManifestError {
    #[error("manifest is {0} bytes; the limit is {MAX_MANIFEST_SIZE}")]
    TooLarge(usize),
    #[error("manifest is not valid JSON: {0}")]
    Json(String),
    #[error("manifest field {field}: {error}")]
    Digest { field: String, error: DigestError },
    #[error("ambiguous manifest: {0}")]
    Ambiguous(String),
}

#[derive(Deserialize)]
struct RawDescriptor {
    digest: String,
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    urls: Option<Vec<IgnoredAny>>,
}

impl RawDescriptor {
    fn is_foreign(&self) -> bool {
        let mt = self.media_type.as_deref().unwrap_or("");
        self.urls.as_ref().is_some_and(|u| !u.is_empty())
            || mt.contains("foreign")
            || mt.contains("nondistributable")
    }
}

#[derive(Deserialize)]
struct RawFsLayer {
    #[serde(rename = "blobSum")]
    blob_sum: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<serde_json::Value>,
    media_type: Option<String>,
    config: Option<RawDescriptor>,
    layers: Option<Vec<RawDescriptor>>,
    manifests: Option<Vec<RawDescriptor>>,
    blobs: Option<Vec<RawDescriptor>>,
    subject: Option<RawDescriptor>,
    fs_layers: Option<Vec<RawFsLayer>>,
    signatures: Option<IgnoredAny>,
}

/// The kinds of manifest, by the reference fields they define.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Image,
    Index,
    Schema1,
    Artifact,
    Unknown,
}

fn kind_of(media_type: &str) -> Kind {
    let is = |t: &str| media_type.eq_ignore_ascii_case(t);
    if is(media::OCI_MANIFEST) || is(media::DOCKER_MANIFEST_V2) {
        Kind::Image
    } else if is(media::OCI_INDEX) || is(media::DOCKER_MANIFEST_LIST) {
        Kind::Index
    } else if is(media::DOCKER_MANIFEST_V1) || is(media::DOCKER_MANIFEST_V1_SIGNED) {
        Kind::Schema1
    } else if is(media::OCI_ARTIFACT) {
        Kind::Artifact
    } else {
        Kind::Unknown
    }
}

/// Parses a digest field: Ok(None) for an unsupported algorithm.
fn digest_at(field: impl FnOnce() -> String, s: &str) -> Result<Option<Digest>, ManifestError> {
    match Digest::parse(s) {
        Ok(d) => Ok(Some(d)),
        Err(DigestError::Unsupported(_)) => Ok(None),
        Err(error) => Err(ManifestError::Digest {
            field: field(),
            error,
        }),
    }
}

fn push_all<'a>(
    out: &mut Vec<Digest>,
    name: &str,
    digests: impl Iterator<Item = &'a str>,
) -> Result<(), ManifestError> {
    for (i, s) in digests.enumerate() {
        if let Some(d) = digest_at(|| format!("{name}[{i}]"), s)? {
            out.push(d);
        }
    }
    Ok(())
}

/// The type-and-subtype of a `Content-Type`, if it names a manifest type at all (registries
/// answer `application/json` or `text/plain` for documents they do not type).
fn served_manifest_type(content_type: Option<&str>) -> Option<String> {
    let essence = content_type?.split(';').next()?.trim();
    let lower = essence.to_ascii_lowercase();
    (lower.starts_with("application/vnd.oci.") || lower.starts_with("application/vnd.docker."))
        .then_some(lower)
}

/// The document's media type: declared, served, or inferred from its shape.
fn media_type_of(
    raw: &RawManifest,
    served_as: Option<&str>,
) -> Result<Option<String>, ManifestError> {
    let declared = raw.media_type.clone().filter(|m| !m.is_empty());
    let served = served_manifest_type(served_as);
    if let (Some(d), Some(s)) = (&declared, &served) {
        if !d.eq_ignore_ascii_case(s) {
            return Err(ManifestError::Ambiguous(format!(
                "it declares mediaType {d:?} but was served as {s:?}"
            )));
        }
    }
    if declared.is_some() || served.is_some() {
        return Ok(declared.or(served));
    }
    let image_fields = raw.config.is_some() || raw.layers.is_some();
    Ok(match () {
        _ if raw.manifests.is_some() && image_fields => {
            return Err(ManifestError::Ambiguous(
                "it has no mediaType and both manifests and config/layers".into(),
            ))
        }
        _ if raw.manifests.is_some() => Some(media::OCI_INDEX.into()),
        _ if raw.config.is_some() && raw.layers.is_some() => Some(media::OCI_MANIFEST.into()),
        _ if raw.schema_version.as_ref().and_then(|v| v.as_u64()) == Some(1) => {
            Some(if raw.signatures.is_some() {
                media::DOCKER_MANIFEST_V1_SIGNED.into()
            } else {
                media::DOCKER_MANIFEST_V1.into()
            })
        }
        _ => None,
    })
}

/// The reference fields `kind` defines.
fn fields_of(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Image => &["config", "layers"],
        Kind::Index => &["manifests"],
        Kind::Schema1 => &["fsLayers"],
        Kind::Artifact => &["blobs"],
        Kind::Unknown => &[],
    }
}

/// Refuses a reference field the kind does not define (a kind Wharf does not know is read for
/// nothing, so nothing is refused there).
fn check_fields(raw: &RawManifest, kind: Kind, media_type: &str) -> Result<(), ManifestError> {
    if kind == Kind::Unknown {
        return Ok(());
    }
    let present = [
        ("config", raw.config.is_some()),
        ("layers", raw.layers.is_some()),
        ("manifests", raw.manifests.is_some()),
        ("fsLayers", raw.fs_layers.is_some()),
        ("blobs", raw.blobs.is_some()),
    ];
    let allowed = fields_of(kind);
    match present
        .iter()
        .find(|(f, there)| *there && !allowed.contains(f))
    {
        Some((field, _)) => Err(ManifestError::Ambiguous(format!(
            "a {media_type} document must not carry {field:?}"
        ))),
        None => Ok(()),
    }
}

/// Parses a manifest served (or pushed, or imported) as `served_as` (its `Content-Type` or
/// descriptor media type, if any) and lists what it references; refuses ambiguous documents.
pub fn parse(bytes: &[u8], served_as: Option<&str>) -> Result<ManifestRefs, ManifestError> {
    if bytes.len() > MAX_MANIFEST_SIZE {
        return Err(ManifestError::TooLarge(bytes.len()));
    }
    let raw: RawManifest =
        serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
    let media_type = media_type_of(&raw, served_as)?;
    let kind = media_type.as_deref().map_or(Kind::Unknown, kind_of);
    check_fields(&raw, kind, media_type.as_deref().unwrap_or(""))?;
    let mut refs = ManifestRefs {
        media_type,
        ..ManifestRefs::default()
    };
    if let Some(s) = raw.subject.as_ref().filter(|_| kind != Kind::Unknown) {
        refs.subject = digest_at(|| "subject.digest".into(), &s.digest)?;
    }
    let descriptors = match kind {
        Kind::Image => {
            if let Some(c) = &raw.config {
                refs.config = digest_at(|| "config.digest".into(), &c.digest)?;
            }
            raw.layers.as_deref().map(|l| ("layers", l))
        }
        Kind::Artifact => raw.blobs.as_deref().map(|b| ("blobs", b)),
        Kind::Index => {
            let m = raw.manifests.as_deref().unwrap_or_default();
            push_all(
                &mut refs.manifests,
                "manifests",
                m.iter().map(|d| d.digest.as_str()),
            )?;
            None
        }
        Kind::Schema1 => {
            let fs = raw.fs_layers.as_deref().unwrap_or_default();
            push_all(
                &mut refs.layers,
                "fsLayers",
                fs.iter().map(|l| l.blob_sum.as_str()),
            )?;
            None
        }
        Kind::Unknown => None,
    };
    if let Some((name, descs)) = descriptors {
        push_all(
            &mut refs.layers,
            name,
            descs.iter().map(|d| d.digest.as_str()),
        )?;
        let foreign = descs.iter().filter(|d| d.is_foreign());
        push_all(&mut refs.foreign, name, foreign.map(|d| d.digest.as_str()))?;
    }
    Ok(refs)
}

/// [`parse`] of a manifest already accepted (stored with its media type, or in a layout).
pub fn parse_refs(bytes: &[u8]) -> Result<ManifestRefs, ManifestError> {
    parse(bytes, None)
}

/// Checks a manifest an upstream (or a pushing client) served as `content_type`: it must
/// parse strictly as one kind (see [`parse`]) with a valid media type. Returns the media type
/// to store and serve it with, and what it references.
pub fn accept(
    bytes: &[u8],
    content_type: Option<&str>,
) -> std::result::Result<(String, ManifestRefs), String> {
    let refs = parse(bytes, content_type).map_err(|e| format!("unusable manifest: {e}"))?;
    let Some(media_type) = refs.media_type.clone() else {
        return Err(
            "not a manifest: no mediaType, no manifest media type served, and no manifest fields"
                .into(),
        );
    };
    if !super::media::is_valid(&media_type) {
        return Err("the manifest's mediaType is not a media type".into());
    }
    Ok((media_type, refs))
}

#[cfg(test)]
#[path = "manifest_tests.rs"]
mod tests;
