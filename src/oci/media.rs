//! Manifest media types and `Accept` header matching.
//!
//! Matching follows RFC 9110 content negotiation, simplified: the most specific
//! media range that matches a type decides (exact > `type/*` > `*/*`); a `q=0` on that
//! range refuses the type. An absent or empty header accepts everything, as does a
//! header with no parseable range at all (lenient with broken clients).

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_V1_SIGNED: &str =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";
pub const DOCKER_MANIFEST_V1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const OCI_ARTIFACT: &str = "application/vnd.oci.artifact.manifest.v1+json";

/// The `Accept` value the proxy sends upstream for manifests.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// The `type/subtype` part of a media type, without parameters or whitespace.
fn essence(s: &str) -> &str {
    s.split(';').next().unwrap_or("").trim()
}

/// Specificity of `range` for `media_type` (3 exact, 2 `type/*`, 1 `*/*`), or None.
fn specificity(range: &str, media_type: &str) -> Option<u8> {
    if range == "*/*" {
        return Some(1);
    }
    let (rt, rs) = range.split_once('/')?;
    let (mt, _) = media_type.split_once('/')?;
    if rs == "*" {
        return rt.eq_ignore_ascii_case(mt).then_some(2);
    }
    range.eq_ignore_ascii_case(media_type).then_some(3)
}

/// True when the `q` parameter (if any) of a media range is zero.
fn q_is_zero(params: &str) -> bool {
    params.split(';').any(|p| {
        let Some((k, v)) = p.split_once('=') else {
            return false;
        };
        if !k.trim().eq_ignore_ascii_case("q") {
            return false;
        }
        let v = v.trim();
        // qvalue = "0" [ "." 0*3DIGIT ] / "1" [ "." 0*3("0") ]; zero iff all digits are 0.
        !v.is_empty()
            && v.bytes().all(|b| b == b'0' || b == b'.')
            && v.starts_with('0')
            && v.bytes().filter(|&b| b == b'.').count() <= 1
    })
}

/// Best (specificity, acceptable) over all ranges in `values`; None when no range
/// was parseable at all.
fn negotiate<'a>(values: impl IntoIterator<Item = &'a str>, media_type: &str) -> Option<bool> {
    let target = essence(media_type);
    let mut any_range = false;
    let mut best: Option<(u8, bool)> = None;
    for value in values {
        for item in value.split(',') {
            let (range, params) = item.split_once(';').unwrap_or((item, ""));
            let range = range.trim();
            if range.is_empty() || !range.contains('/') {
                continue;
            }
            any_range = true;
            if let Some(spec) = specificity(range, target) {
                let ok = !q_is_zero(params);
                best = match best {
                    // At equal specificity a refusal wins (stricter reading).
                    Some((s, b)) if s > spec || (s == spec && !b) => Some((s, b)),
                    _ => Some((spec, ok)),
                };
            }
        }
    }
    if !any_range {
        return None;
    }
    Some(best.is_some_and(|(_, ok)| ok))
}

/// Whether an `Accept` header value admits `media_type`.
pub fn accepts(accept: Option<&str>, media_type: &str) -> bool {
    accepts_any(accept, media_type)
}

/// Like [`accepts`] for a request with several `Accept` header lines (equivalent to
/// one comma-joined line). No lines accepts everything.
pub fn accepts_any<'a>(values: impl IntoIterator<Item = &'a str>, media_type: &str) -> bool {
    negotiate(values, media_type).unwrap_or(true)
}

/// OCI index or Docker manifest list.
pub fn is_index(media_type: &str) -> bool {
    let e = essence(media_type);
    e.eq_ignore_ascii_case(OCI_INDEX) || e.eq_ignore_ascii_case(DOCKER_MANIFEST_LIST)
}

/// Whether `s` is a plain media type (`type/subtype`, RFC 6838 restricted names, no
/// parameters) that can be stored and sent back as a `Content-Type`: manifests name their
/// own type, and an upstream may put anything there.
pub fn is_valid(s: &str) -> bool {
    let name = |p: &str| {
        (1..=127).contains(&p.len())
            && p.as_bytes()[0].is_ascii_alphanumeric()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    match s.split_once('/') {
        Some((t, sub)) => name(t) && name(sub),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_media_types() {
        for ok in [OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_V1_SIGNED, "a/b"] {
            assert!(is_valid(ok), "{ok}");
        }
        let long = format!("application/{}", "x".repeat(128));
        for bad in [
            "",
            "a",
            "/b",
            "a/",
            "a/b/c",
            "a/b; charset=utf-8",
            "a/b\n",
            "a/b\r\nx-evil: 1",
            "a/\u{0}",
            "tëxt/plain",
            long.as_str(),
        ] {
            assert!(!is_valid(bad), "{bad:?}");
        }
    }

    #[test]
    fn manifest_accept_order() {
        let parts: Vec<&str> = MANIFEST_ACCEPT.split(", ").collect();
        assert_eq!(
            parts,
            [
                OCI_INDEX,
                OCI_MANIFEST,
                DOCKER_MANIFEST_LIST,
                DOCKER_MANIFEST_V2
            ]
        );
    }

    #[test]
    fn absent_empty_and_wildcards_accept() {
        assert!(accepts(None, OCI_MANIFEST));
        assert!(accepts(Some(""), OCI_MANIFEST));
        assert!(accepts(Some("  "), OCI_MANIFEST));
        assert!(accepts(Some("*/*"), OCI_MANIFEST));
        assert!(accepts(Some("text/html, */*;q=0.8"), OCI_MANIFEST));
        assert!(accepts(Some("application/*"), DOCKER_MANIFEST_V2));
        assert!(!accepts(Some("text/*"), DOCKER_MANIFEST_V2));
    }

    #[test]
    fn exact_matching_with_params_and_case() {
        let docker = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json;q=0.9 ,  application/vnd.oci.image.manifest.v1+json ; q=1";
        assert!(accepts(Some(docker), DOCKER_MANIFEST_V2));
        assert!(accepts(Some(docker), DOCKER_MANIFEST_LIST));
        assert!(accepts(Some(docker), OCI_MANIFEST));
        assert!(!accepts(Some(docker), OCI_INDEX));
        assert!(accepts(
            Some("APPLICATION/VND.OCI.IMAGE.INDEX.V1+JSON"),
            OCI_INDEX
        ));
        assert!(accepts(
            Some(OCI_MANIFEST),
            &format!("{OCI_MANIFEST}; charset=utf-8")
        ));
    }

    #[test]
    fn q_zero_refuses() {
        assert!(!accepts(Some(&format!("{OCI_INDEX};q=0")), OCI_INDEX));
        assert!(!accepts(
            Some(&format!("{OCI_INDEX}; Q = 0.000")),
            OCI_INDEX
        ));
        assert!(accepts(Some(&format!("{OCI_INDEX};q=0.001")), OCI_INDEX));
        // A more specific refusal beats a wildcard.
        assert!(!accepts(Some(&format!("*/*, {OCI_INDEX};q=0")), OCI_INDEX));
        assert!(accepts(
            Some(&format!("*/*, {OCI_INDEX};q=0")),
            OCI_MANIFEST
        ));
        // A more specific acceptance beats a refused wildcard.
        assert!(accepts(Some(&format!("*/*;q=0, {OCI_INDEX}")), OCI_INDEX));
        assert!(!accepts(Some("*/*;q=0"), OCI_INDEX));
    }

    #[test]
    fn several_header_lines() {
        assert!(accepts_any([], OCI_INDEX));
        assert!(accepts_any(
            [OCI_MANIFEST, DOCKER_MANIFEST_LIST],
            DOCKER_MANIFEST_LIST
        ));
        assert!(!accepts_any([OCI_MANIFEST, DOCKER_MANIFEST_V2], OCI_INDEX));
        assert!(accepts_any(["", ""], OCI_INDEX));
    }

    #[test]
    fn garbage_is_lenient() {
        assert!(accepts(Some(",,;;"), OCI_INDEX));
        assert!(accepts(Some("garbage"), OCI_INDEX));
        assert!(!accepts(Some("garbage, text/plain"), OCI_INDEX));
    }

    #[test]
    fn index_detection() {
        assert!(is_index(OCI_INDEX));
        assert!(is_index(DOCKER_MANIFEST_LIST));
        assert!(is_index(" application/vnd.oci.image.index.v1+json; x=y"));
        assert!(!is_index(OCI_MANIFEST));
        assert!(!is_index(DOCKER_MANIFEST_V2));
    }
}
