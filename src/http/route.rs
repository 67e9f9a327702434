//! Parsing a request path into a [`Route`], once, before anything else happens.
//!
//! OCI repository names contain any number of `/`, so the path is split from the right: the
//! last segment is the reference/digest (or `list`), the one before it says what is asked for,
//! and everything before that is the name. The name is validated later, when the upstream is
//! picked (a path prefix may name the upstream). References and digests are validated here:
//! invalid input never reaches the disk or an upstream.

use crate::error::{Error, Result};
use crate::oci::{Digest, DigestError, ErrorCode, Reference, ReferenceError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    /// `/v2/`
    Base,
    Manifest {
        name: &'a str,
        reference: Reference,
    },
    Blob {
        name: &'a str,
        digest: Digest,
    },
    TagsList {
        name: &'a str,
    },
    Referrers {
        name: &'a str,
        digest: Digest,
    },
    /// `/v2/<name>/blobs/uploads/[<session>]` (push): `session` is the upload's id as the
    /// upstream named it (it may contain `/`).
    Upload {
        name: &'a str,
        session: Option<&'a str>,
    },
    /// `/v2/_catalog`
    Catalog,
    /// `/token`: Wharf's own token endpoint (outside `/v2/`).
    Token,
}

impl<'a> Route<'a> {
    /// The repository name the route is about.
    pub fn name(&self) -> Option<&'a str> {
        match self {
            Route::Manifest { name, .. }
            | Route::Blob { name, .. }
            | Route::TagsList { name }
            | Route::Referrers { name, .. }
            | Route::Upload { name, .. } => Some(*name),
            Route::Base | Route::Catalog | Route::Token => None,
        }
    }
}

/// Query parameters Wharf understands.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Query<'a> {
    /// containerd's upstream hint.
    /// Percent-decoded: containerd sends `ns=127.0.0.1%3A5000` for `host:port` registries.
    pub ns: Option<std::borrow::Cow<'a, str>>,
    /// Tag list pagination, passed through.
    pub n: Option<&'a str>,
    pub last: Option<&'a str>,
}

impl<'a> Query<'a> {
    pub fn parse(q: Option<&'a str>) -> Query<'a> {
        let mut out = Query::default();
        for pair in q.unwrap_or("").split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "ns" if !v.is_empty() => out.ns = Some(percent_decode(v)),
                "n" if !v.is_empty() => out.n = Some(v),
                "last" if !v.is_empty() => out.last = Some(v),
                _ => {}
            }
        }
        out
    }

    /// The pagination part to forward upstream: only well-formed values.
    pub fn pagination(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(n) = self
            .n
            .filter(|n| n.len() <= 10 && n.bytes().all(|b| b.is_ascii_digit()))
        {
            parts.push(format!("n={n}"));
        }
        if let Some(l) = self.last.filter(|l| {
            l.len() <= 256
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-%".contains(&b))
        }) {
            parts.push(format!("last={l}"));
        }
        (!parts.is_empty()).then(|| parts.join("&"))
    }
}

/// Decodes `%XX` escapes; no allocation when there are none.
fn percent_decode(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('%') {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(crate::auth::form::decode(s).unwrap_or_else(|| s.to_string()))
}

fn not_found(path: &str) -> Error {
    let shown: String = path.chars().take(200).collect();
    Error::client(ErrorCode::NameUnknown, format!("no such endpoint: {shown}"))
}

/// Parses the path of a request (without the query).
pub fn parse(path: &str) -> Result<Route<'_>> {
    if path == "/v2/" || path == "/v2" {
        return Ok(Route::Base);
    }
    if path == "/token" {
        return Ok(Route::Token);
    }
    let rest = path.strip_prefix("/v2/").ok_or_else(|| not_found(path))?;
    if rest == "_catalog" {
        return Ok(Route::Catalog);
    }
    if let Some(upload) = parse_upload(rest) {
        return upload;
    }
    let mut it = rest.rsplitn(3, '/');
    let (Some(last), Some(kind), Some(name)) = (it.next(), it.next(), it.next()) else {
        return Err(not_found(path));
    };
    if name.is_empty() {
        return Err(not_found(path));
    }
    match kind {
        "manifests" => {
            let reference = Reference::parse(last).map_err(|e| match e {
                ReferenceError::Digest(d) => digest_error(d),
                ReferenceError::Tag(_) => Error::client(
                    ErrorCode::ManifestUnknown,
                    "invalid tag: tags are [A-Za-z0-9_][A-Za-z0-9._-]{0,127}",
                ),
            })?;
            Ok(Route::Manifest { name, reference })
        }
        "blobs" => Ok(Route::Blob {
            name,
            digest: Digest::parse(last).map_err(digest_error)?,
        }),
        "tags" if last == "list" => Ok(Route::TagsList { name }),
        "referrers" => Ok(Route::Referrers {
            name,
            digest: Digest::parse(last).map_err(digest_error)?,
        }),
        _ => Err(not_found(path)),
    }
}

/// `<name>/blobs/uploads[/<session>]`: the first `/blobs/uploads` splits the name from the
/// session (upstreams may put `/` in session ids; a repository name holding `blobs/uploads`
/// is not routable for uploads). `None` when the path is not an upload.
fn parse_upload(rest: &str) -> Option<Result<Route<'_>>> {
    const MARK: &str = "/blobs/uploads";
    let i = rest.find(MARK)?;
    let (name, tail) = (&rest[..i], &rest[i + MARK.len()..]);
    let session = match tail {
        "" | "/" => None,
        t => Some(t.strip_prefix('/')?),
    };
    if name.is_empty() {
        return Some(Err(not_found(rest)));
    }
    if let Some(s) = session {
        let ok = s.len() <= 512
            && s.split('/')
                .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~=+/".contains(&b));
        if !ok {
            return Some(Err(Error::client(
                ErrorCode::BlobUploadInvalid,
                "invalid upload session id",
            )));
        }
    }
    Some(Ok(Route::Upload { name, session }))
}

fn digest_error(e: DigestError) -> Error {
    match e {
        DigestError::Unsupported(_) => Error::client(ErrorCode::Unsupported, e.to_string()),
        DigestError::Invalid(_) => Error::client(ErrorCode::DigestInvalid, e.to_string()),
    }
}

/// Whether a request is a push (handled here) rather than a read.
pub fn is_push(method: &http::Method, route: Option<&Route<'_>>) -> bool {
    match route {
        // Upload status (`GET`) belongs to the upload too.
        Some(Route::Upload { .. }) => true,
        Some(Route::Manifest { .. }) => {
            *method == http::Method::PUT || *method == http::Method::DELETE
        }
        Some(Route::Blob { .. }) => *method == http::Method::DELETE,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_endpoint_is_a_route() {
        assert!(matches!(parse("/token"), Ok(Route::Token)));
        assert!(parse("/token/x").is_err());
        assert!(parse("/v2/token").is_err());
    }

    #[test]
    fn pushes_are_told_from_reads() {
        let d = crate::oci::Digest::of(b"x");
        let blob = Route::Blob {
            name: "a",
            digest: d,
        };
        let manifest = Route::Manifest {
            name: "a",
            reference: crate::oci::Reference::Digest(d),
        };
        let upload = Route::Upload {
            name: "a",
            session: None,
        };
        assert!(is_push(&http::Method::GET, Some(&upload)));
        assert!(is_push(&http::Method::PUT, Some(&manifest)));
        assert!(is_push(&http::Method::DELETE, Some(&manifest)));
        assert!(!is_push(&http::Method::GET, Some(&manifest)));
        assert!(!is_push(&http::Method::POST, Some(&manifest)));
        assert!(is_push(&http::Method::DELETE, Some(&blob)));
        assert!(!is_push(&http::Method::PUT, Some(&blob)));
        assert!(!is_push(&http::Method::DELETE, Some(&Route::Catalog)));
        assert!(!is_push(&http::Method::PUT, None));
    }

    const D: &str = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

    fn code(r: Result<Route<'_>>) -> ErrorCode {
        match r {
            Err(Error::Client { code, .. }) => code,
            other => panic!("expected a client error, got {other:?}"),
        }
    }

    #[test]
    fn base() {
        assert_eq!(parse("/v2/").ok(), Some(Route::Base));
        assert_eq!(parse("/v2").ok(), Some(Route::Base));
    }

    #[test]
    fn manifest_with_many_slashes_in_the_name() {
        let r = parse("/v2/ghcr.io/org/team/app/manifests/v1.2.3").expect("route");
        match r {
            Route::Manifest { name, reference } => {
                assert_eq!(name, "ghcr.io/org/team/app");
                assert_eq!(reference.to_string(), "v1.2.3");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn manifest_by_digest_and_blob() {
        let p = format!("/v2/library/alpine/manifests/{D}");
        let r = parse(&p).expect("route");
        assert!(matches!(
            r,
            Route::Manifest {
                name: "library/alpine",
                reference: Reference::Digest(_)
            }
        ));
        let p = format!("/v2/a/b/blobs/{D}");
        let r = parse(&p).expect("route");
        assert_eq!(
            r,
            Route::Blob {
                name: "a/b",
                digest: Digest::parse(D).expect("digest")
            }
        );
    }

    #[test]
    fn a_name_may_contain_the_word_manifests() {
        let p = format!("/v2/x/manifests/y/blobs/{D}");
        let r = parse(&p).expect("route");
        assert!(matches!(
            r,
            Route::Blob {
                name: "x/manifests/y",
                ..
            }
        ));
    }

    #[test]
    fn tags_uploads_referrers_catalog() {
        assert_eq!(
            parse("/v2/a/b/tags/list").ok(),
            Some(Route::TagsList { name: "a/b" })
        );
        assert_eq!(
            parse("/v2/a/blobs/uploads/").ok(),
            Some(Route::Upload {
                name: "a",
                session: None
            })
        );
        assert_eq!(
            parse("/v2/a/blobs/uploads").ok(),
            Some(Route::Upload {
                name: "a",
                session: None
            })
        );
        assert_eq!(
            parse("/v2/a/b/blobs/uploads/123-abc").ok(),
            Some(Route::Upload {
                name: "a/b",
                session: Some("123-abc")
            })
        );
        assert_eq!(
            parse("/v2/a/blobs/uploads/x/y=").ok(),
            Some(Route::Upload {
                name: "a",
                session: Some("x/y=")
            }),
            "session ids may hold '/'"
        );
        assert_eq!(
            code(parse("/v2/a/blobs/uploads/x/../y")),
            ErrorCode::BlobUploadInvalid
        );
        assert_eq!(
            code(parse("/v2/a/blobs/uploads/x%20y")),
            ErrorCode::BlobUploadInvalid
        );
        assert_eq!(
            code(parse("/v2/a/blobs/uploadsx")),
            ErrorCode::DigestInvalid
        );
        assert!(matches!(
            parse(&format!("/v2/a/referrers/{D}")),
            Ok(Route::Referrers { name: "a", .. })
        ));
        assert_eq!(parse("/v2/_catalog").ok(), Some(Route::Catalog));
    }

    #[test]
    fn invalid_input_is_rejected_with_the_right_code() {
        assert_eq!(
            code(parse("/v2/a/blobs/sha256:abc")),
            ErrorCode::DigestInvalid
        );
        assert_eq!(
            code(parse("/v2/a/blobs/..%2f..%2fetc")),
            ErrorCode::DigestInvalid
        );
        assert_eq!(
            code(parse(&format!("/v2/a/blobs/sha512:{}", "a".repeat(128)))),
            ErrorCode::Unsupported
        );
        assert_eq!(
            code(parse("/v2/a/manifests/-bad")),
            ErrorCode::ManifestUnknown
        );
        assert_eq!(code(parse("/v2/a/manifests/")), ErrorCode::ManifestUnknown);
        assert_eq!(code(parse("/v3/a/manifests/x")), ErrorCode::NameUnknown);
        assert_eq!(code(parse("/v2/a/unknown/x")), ErrorCode::NameUnknown);
        assert_eq!(code(parse("/v2//manifests/x")), ErrorCode::NameUnknown);
        assert_eq!(code(parse("/v2/manifests/x")), ErrorCode::NameUnknown);
    }

    #[test]
    fn query_forms() {
        let q = Query::parse(Some("ns=ghcr.io&n=10&last=v1"));
        assert_eq!(q.ns.as_deref(), Some("ghcr.io"));
        assert_eq!(q.pagination().as_deref(), Some("n=10&last=v1"));
        let q = Query::parse(Some("ns=docker.io"));
        assert_eq!(q.ns.as_deref(), Some("docker.io"));
        assert_eq!(q.pagination(), None);
        let q = Query::parse(Some("n=1;rm&last=a&b"));
        assert_eq!(q.pagination().as_deref(), Some("last=a"));
        assert_eq!(Query::parse(None), Query::default());
        assert_eq!(Query::parse(Some("ns=")).ns, None);
        assert_eq!(
            Query::parse(Some("ns=127.0.0.1%3A5000")).ns.as_deref(),
            Some("127.0.0.1:5000"),
            "containerd percent-encodes host:port"
        );
        assert_eq!(Query::parse(Some("ns=a%zz")).ns.as_deref(), Some("a%zz"));
    }
}
