//! Extracting the references a manifest makes, without re-serializing it.
//!
//! Invariants: the manifest bytes are never modified or re-encoded (their digest is
//! what clients verify); descriptors whose digest uses an algorithm other than
//! sha256 are skipped rather than rejected; a malformed digest anywhere is an error,
//! naming the field. References are returned in document order, duplicates kept.

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::digest::{Digest, DigestError};
use super::media;

/// The largest manifest the proxy will accept or store.
pub const MAX_MANIFEST_SIZE: usize = 4 * 1024 * 1024;

/// What a manifest points at.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ManifestRefs {
    /// Top-level `mediaType`, or inferred from the document's shape.
    pub media_type: Option<String>,
    /// Image config blob.
    pub config: Option<Digest>,
    /// Layer blobs (also artifact `blobs` and schema1 `fsLayers`).
    pub layers: Vec<Digest>,
    /// Child manifests of an index or manifest list.
    pub manifests: Vec<Digest>,
    /// The `subject` manifest (referrers API).
    pub subject: Option<Digest>,
}

/// Why a manifest could not be parsed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ManifestError {
    #[error("manifest is {0} bytes; the limit is {MAX_MANIFEST_SIZE}")]
    TooLarge(usize),
    #[error("manifest is not valid JSON: {0}")]
    Json(String),
    #[error("manifest field {field}: {error}")]
    Digest { field: String, error: DigestError },
}

#[derive(Deserialize)]
struct RawDescriptor {
    digest: String,
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

/// Parses any kind of JSON manifest and lists the digests it references.
pub fn parse_refs(bytes: &[u8]) -> Result<ManifestRefs, ManifestError> {
    if bytes.len() > MAX_MANIFEST_SIZE {
        return Err(ManifestError::TooLarge(bytes.len()));
    }
    let raw: RawManifest =
        serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;

    let mut refs = ManifestRefs::default();
    if let Some(c) = &raw.config {
        refs.config = digest_at(|| "config.digest".into(), &c.digest)?;
    }
    if let Some(s) = &raw.subject {
        refs.subject = digest_at(|| "subject.digest".into(), &s.digest)?;
    }
    if let Some(layers) = &raw.layers {
        push_all(
            &mut refs.layers,
            "layers",
            layers.iter().map(|d| d.digest.as_str()),
        )?;
    }
    if let Some(blobs) = &raw.blobs {
        push_all(
            &mut refs.layers,
            "blobs",
            blobs.iter().map(|d| d.digest.as_str()),
        )?;
    }
    if let Some(fs) = &raw.fs_layers {
        push_all(
            &mut refs.layers,
            "fsLayers",
            fs.iter().map(|l| l.blob_sum.as_str()),
        )?;
    }
    if let Some(m) = &raw.manifests {
        push_all(
            &mut refs.manifests,
            "manifests",
            m.iter().map(|d| d.digest.as_str()),
        )?;
    }

    refs.media_type = match raw.media_type.filter(|m| !m.is_empty()) {
        Some(m) => Some(m),
        None if raw.manifests.is_some() => Some(media::OCI_INDEX.into()),
        None if raw.config.is_some() && raw.layers.is_some() => Some(media::OCI_MANIFEST.into()),
        None if raw.schema_version.as_ref().and_then(|v| v.as_u64()) == Some(1) => {
            Some(if raw.signatures.is_some() {
                media::DOCKER_MANIFEST_V1_SIGNED.into()
            } else {
                media::DOCKER_MANIFEST_V1.into()
            })
        }
        None => None,
    };
    Ok(refs)
}

/// The manifest's media type (declared or inferred), if it parses at all.
pub fn descriptor_media_type(bytes: &[u8]) -> Option<String> {
    parse_refs(bytes).ok()?.media_type
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Digest {
        Digest::of(s.as_bytes())
    }

    #[test]
    fn oci_image_manifest() {
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":7}},
            "layers":[{{"mediaType":"x","digest":"{}","size":1,"annotations":{{"a":"b"}}}},{{"digest":"{}","size":2}}],
            "subject":{{"digest":"{}","size":3}},"annotations":{{"k":"v"}},"unknownField":[1,2]}}"#,
            media::OCI_MANIFEST,
            d("c"),
            d("l1"),
            d("l2"),
            d("s")
        );
        let r = parse_refs(json.as_bytes()).unwrap();
        assert_eq!(r.media_type.as_deref(), Some(media::OCI_MANIFEST));
        assert_eq!(r.config, Some(d("c")));
        assert_eq!(r.layers, vec![d("l1"), d("l2")]);
        assert!(r.manifests.is_empty());
        assert_eq!(r.subject, Some(d("s")));
    }

    #[test]
    fn index_and_inference() {
        let json = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"digest":"{}","platform":{{"os":"linux"}}}},{{"digest":"sha512:{}"}},{{"digest":"{}"}}]}}"#,
            d("a"),
            "ab".repeat(64),
            d("b")
        );
        let r = parse_refs(json.as_bytes()).unwrap();
        assert_eq!(r.media_type.as_deref(), Some(media::OCI_INDEX));
        assert_eq!(r.manifests, vec![d("a"), d("b")]); // sha512 skipped
        assert_eq!(
            descriptor_media_type(json.as_bytes()).as_deref(),
            Some(media::OCI_INDEX)
        );

        let list = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[]}}"#,
            media::DOCKER_MANIFEST_LIST
        );
        let r = parse_refs(list.as_bytes()).unwrap();
        assert_eq!(r.media_type.as_deref(), Some(media::DOCKER_MANIFEST_LIST));

        let img = format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"{}"}},"layers":[]}}"#,
            d("c")
        );
        assert_eq!(
            descriptor_media_type(img.as_bytes()).as_deref(),
            Some(media::OCI_MANIFEST)
        );
        assert_eq!(descriptor_media_type(br#"{"schemaVersion":2}"#), None);
    }

    #[test]
    fn artifact_manifest() {
        let json = format!(
            r#"{{"mediaType":"{}","artifactType":"x","blobs":[{{"digest":"{}"}}],"subject":{{"digest":"{}"}}}}"#,
            media::OCI_ARTIFACT,
            d("b"),
            d("s")
        );
        let r = parse_refs(json.as_bytes()).unwrap();
        assert_eq!(r.media_type.as_deref(), Some(media::OCI_ARTIFACT));
        assert_eq!(r.layers, vec![d("b")]);
        assert_eq!(r.subject, Some(d("s")));
        assert_eq!(r.config, None);
    }

    #[test]
    fn docker_schema1() {
        let body = |sigs: &str| {
            format!(
                r#"{{"schemaVersion":1,"name":"library/x","tag":"1","fsLayers":[{{"blobSum":"{}"}},{{"blobSum":"{}"}}],"history":[]{sigs}}}"#,
                d("x"),
                d("x")
            )
        };
        let r = parse_refs(body("").as_bytes()).unwrap();
        assert_eq!(r.media_type.as_deref(), Some(media::DOCKER_MANIFEST_V1));
        assert_eq!(r.layers, vec![d("x"), d("x")]); // duplicates kept
        let signed = body(r#","signatures":[{"header":{},"signature":"abc","protected":"p"}]"#);
        let r = parse_refs(signed.as_bytes()).unwrap();
        assert_eq!(
            r.media_type.as_deref(),
            Some(media::DOCKER_MANIFEST_V1_SIGNED)
        );
    }

    #[test]
    fn errors() {
        assert!(matches!(
            parse_refs(b"not json"),
            Err(ManifestError::Json(_))
        ));
        assert!(matches!(parse_refs(b"[]"), Err(ManifestError::Json(_))));
        assert!(matches!(parse_refs(b""), Err(ManifestError::Json(_))));
        assert!(matches!(
            parse_refs(br#"{"layers":[{"size":1}]}"#),
            Err(ManifestError::Json(_))
        ));
        let bad = format!(
            r#"{{"layers":[{{"digest":"{}"}},{{"digest":"sha256:zz"}}]}}"#,
            d("a")
        );
        match parse_refs(bad.as_bytes()) {
            Err(ManifestError::Digest { field, error }) => {
                assert_eq!(field, "layers[1]");
                assert!(matches!(error, DigestError::Invalid(_)));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_refs(br#"{"config":{"digest":"nope"}}"#),
            Err(ManifestError::Digest { .. })
        ));
        let huge = vec![b' '; MAX_MANIFEST_SIZE + 1];
        assert_eq!(
            parse_refs(&huge),
            Err(ManifestError::TooLarge(MAX_MANIFEST_SIZE + 1))
        );
        assert_eq!(descriptor_media_type(b"{"), None);
    }
}
