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
#[path = "route_tests.rs"]
mod tests;
