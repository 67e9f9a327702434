//! The HTTP side of pushes: which requests are pushes, what of them is forwarded upstream,
//! and how the upstream's answer is relayed.
//!
//! Invariants:
//! - A push to an upstream without `allow_push` is answered `405 UNSUPPORTED` before anything
//!   else happens (no authentication, no upstream request).
//! - The upstream's answer is relayed as it is (status, body, headers but hop-by-hop ones),
//!   except: `Location`s on the upstream's origin under `/v2/<repo>/` point back at Wharf
//!   under the name (and `ns=`) the client used, as a relative URL; a `401` carries Wharf's
//!   challenge, not the upstream's (the client authenticates with Wharf).
//! - A cross-repository mount whose `from` names another upstream is forwarded without
//!   `mount`/`from`: the upstream then opens an ordinary upload, as the spec allows.

use super::body::ClientBody;
use super::handlers::Handler;
use super::host::host_of;
use super::observe::Labels;
use super::route::{Query, Route};
use super::RespBody;
use crate::auth::{Client, Presented};
use crate::error::{Error, Result};
use crate::oci::{Digest, ErrorCode, RepoName};
use crate::registry::location::upstream_relative;
use crate::registry::pushes::{Push, PushRequest};
use crate::registry::{Registry, Target};
use crate::upstream::client::BoxError;
use http::header::{
    ACCEPT, CONTENT_RANGE, CONTENT_TYPE, LOCATION, SET_COOKIE, USER_AGENT, WWW_AUTHENTICATE,
};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use http_body_util::BodyExt;
use std::sync::Arc;

/// Request headers worth forwarding (bodies' lengths travel with the bodies).
const FORWARDED: [HeaderName; 4] = [CONTENT_TYPE, CONTENT_RANGE, ACCEPT, USER_AGENT];

/// Response headers that belong to one connection, not to the message.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

impl Handler {
    pub(super) async fn push(
        &self,
        parts: &Parts,
        body: ClientBody,
        route: Route<'_>,
        labels: &mut Labels,
    ) -> Result<Response<RespBody>> {
        let query = Query::parse(parts.uri.query());
        let ns = query.ns.as_deref();
        let name = match &route {
            Route::Upload { name, .. }
            | Route::Manifest { name, .. }
            | Route::Blob { name, .. } => *name,
            _ => return Err(Error::client(ErrorCode::Unsupported, "not a push")),
        };
        let host = host_of(&parts.headers, &parts.uri);
        let t = self.push_target(parts, (host, name, ns), labels)?;
        let client = self.pusher(parts, &t).await?;
        let challenge = self.challenge(&parts.headers, &parts.uri, Some(&route), true);
        let (path_and_query, what) = forwarded(parts, route, &self.registry, &t, (host, ns))?;
        let req = PushRequest {
            method: parts.method.clone(),
            path_and_query,
            headers: forwarded_headers(&parts.headers),
            body: body.map_err(BoxError::from).boxed_unsync(),
            what,
        };
        let resp = self.registry.push(&t, &client, req).await?;
        Ok(relay(resp, &t, name, ns, challenge))
    }

    /// The upstream and repository pushed to (labelled), refused unless pushing to that
    /// upstream is enabled.
    fn push_target(
        &self,
        parts: &Parts,
        (host, name, ns): (Option<&str>, &str, Option<&str>),
        labels: &mut Labels,
    ) -> Result<Target> {
        let t = self.registry.resolve_at(host, name, ns)?;
        labels.upstream = t.upstream.name().to_string();
        labels.repo = t.repo.to_string();
        if !t.upstream.push_enabled() {
            return Err(Error::client(
                ErrorCode::Unsupported,
                format!(
                    "{} is not supported: pushing to upstream {} is not enabled on this mirror",
                    parts.method,
                    t.upstream.name()
                ),
            ));
        }
        Ok(t)
    }

    /// The pushing client, checked for `t`: a push always needs Wharf's token.
    async fn pusher(&self, parts: &Parts, t: &Target) -> Result<Arc<Client>> {
        match self.sessions.identify(&parts.headers).await {
            Presented::Client(c) => self.checked(&c, t).await,
            Presented::Nothing | Presented::Invalid => Err(Error::client(
                ErrorCode::Unauthorized,
                "authentication required: get a token from the realm in WWW-Authenticate",
            )),
        }
    }
}

/// The upstream path (and query) a push goes to, and what the registry should make of it.
fn forwarded(
    parts: &Parts,
    route: Route<'_>,
    registry: &Registry,
    t: &Target,
    (host, ns): (Option<&str>, Option<&str>),
) -> Result<(String, Push)> {
    let repo = t.repo.as_str();
    Ok(match route {
        Route::Upload { session, .. } => {
            let q = upload_query(parts.uri.query(), registry, t, (host, ns));
            let mut p = format!("/v2/{repo}/blobs/uploads/{}", session.unwrap_or(""));
            if !q.forward.is_empty() {
                p.push('?');
                p.push_str(&q.forward);
            }
            let what = Push::Upload {
                session: session.map(str::to_string),
                digest: q.digest,
                offset: content_range_start(&parts.headers),
                mount: q.mount,
            };
            (p, what)
        }
        Route::Manifest { reference, .. } => {
            let p = format!("/v2/{repo}/manifests/{reference}");
            if parts.method == Method::PUT {
                let content_type = parts
                    .headers
                    .get(CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let what = Push::Manifest {
                    reference,
                    content_type,
                };
                (p, what)
            } else {
                (p, Push::DeleteManifest { reference })
            }
        }
        Route::Blob { digest, .. } => (
            format!("/v2/{repo}/blobs/{digest}"),
            Push::DeleteBlob { digest },
        ),
        _ => return Err(Error::client(ErrorCode::Unsupported, "not a push")),
    })
}

/// The client's request headers worth forwarding ([`FORWARDED`]).
fn forwarded_headers(from: &HeaderMap) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for h in &FORWARDED {
        for v in from.get_all(h) {
            headers.append(h.clone(), v.clone());
        }
    }
    headers
}

/// The upstream's answer for the client.
fn relay(
    resp: crate::registry::pushes::Answer,
    t: &Target,
    name: &str,
    ns: Option<&str>,
    challenge: HeaderValue,
) -> Response<RespBody> {
    let mut out = Response::new(resp.body);
    *out.status_mut() = resp.status;
    let h = out.headers_mut();
    for (k, v) in &resp.headers {
        if HOP_BY_HOP.contains(&k.as_str()) || k == WWW_AUTHENTICATE || k == SET_COOKIE {
            continue;
        }
        if k == LOCATION {
            let rewritten = v
                .to_str()
                .ok()
                .map(|l| rewrite_location(l, &t.upstream.cfg.url, t.repo.as_str(), name, ns));
            if let Some(l) = rewritten.and_then(|l| HeaderValue::from_str(&l).ok()) {
                h.append(LOCATION, l);
            }
            continue;
        }
        h.append(k.clone(), v.clone());
    }
    if resp.status == StatusCode::UNAUTHORIZED {
        h.insert(WWW_AUTHENTICATE, challenge);
    }
    out
}

/// An upstream `Location` as the client should follow it: back to Wharf under the client's
/// name (and `ns=`), relative; other origins unchanged; other upstream paths absolute on the
/// upstream (Wharf could not route them).
fn rewrite_location(
    location: &str,
    upstream: &http::Uri,
    repo: &str,
    name: &str,
    ns: Option<&str>,
) -> String {
    match upstream_relative(location, upstream, repo) {
        Some(rest) => {
            let mut out = format!("/v2/{name}/{rest}");
            if let Some(ns) = ns {
                out.push(if out.contains('?') { '&' } else { '?' });
                out.push_str("ns=");
                out.push_str(&crate::auth::form::encode_value(ns));
            }
            out
        }
        None if location.starts_with('/') && !location.starts_with("//") => {
            let base = upstream.to_string();
            format!("{}{location}", base.trim_end_matches('/'))
        }
        None => location.to_string(),
    }
}

/// The query of an upload request, as forwarded and as understood.
struct UploadQuery {
    forward: String,
    digest: Option<Digest>,
    mount: Option<(Digest, RepoName)>,
}

/// Drops `ns`, maps a mount's `from` (a name as the client writes it) to the upstream's
/// repository; keeps everything else as the client sent it (`_state` and friends).
fn upload_query(
    raw: Option<&str>,
    registry: &Registry,
    t: &Target,
    (host, ns): (Option<&str>, Option<&str>),
) -> UploadQuery {
    let mut forward = Vec::new();
    let (mut mount, mut from, mut digest) = (None, None, None);
    let decode = |v: &str| crate::auth::form::decode(v).unwrap_or_default();
    for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "ns" => {}
            "mount" => mount = Digest::parse(&decode(v)).ok(),
            "from" => from = Some(decode(v)),
            "digest" => {
                digest = Digest::parse(&decode(v)).ok();
                forward.push(pair.to_string());
            }
            _ => forward.push(pair.to_string()),
        }
    }
    let mount = match (mount, from) {
        (Some(d), Some(f)) => match registry.resolve_at(host, &f, ns) {
            Ok(src) if Arc::ptr_eq(&src.upstream, &t.upstream) => Some((d, src.repo)),
            _ => None,
        },
        _ => None,
    };
    if let Some((d, repo)) = &mount {
        forward.push(format!("mount={d}"));
        forward.push(format!("from={repo}"));
    }
    UploadQuery {
        forward: forward.join("&"),
        digest,
        mount,
    }
}

/// Where a chunk's bytes start: `Content-Range: <start>-<end>` (also `bytes <start>-...`).
fn content_range_start(headers: &HeaderMap) -> Option<u64> {
    let v = headers.get(CONTENT_RANGE)?.to_str().ok()?.trim();
    let v = v
        .strip_prefix("bytes")
        .map(|r| r.trim_start_matches([' ', '=']))
        .unwrap_or(v);
    v.split('-').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_point_back_at_the_clients_name() {
        let up: http::Uri = "https://reg.example/".parse().expect("uri");
        let rel = "/v2/library/alpine/blobs/uploads/u1?_state=s%3D";
        assert_eq!(
            rewrite_location(rel, &up, "library/alpine", "docker.io/alpine", None),
            "/v2/docker.io/alpine/blobs/uploads/u1?_state=s%3D"
        );
        let abs = "https://reg.example/v2/library/alpine/blobs/uploads/u1";
        assert_eq!(
            rewrite_location(
                abs,
                &up,
                "library/alpine",
                "library/alpine",
                Some("127.0.0.1:5000")
            ),
            "/v2/library/alpine/blobs/uploads/u1?ns=127.0.0.1:5000"
        );
        assert_eq!(
            rewrite_location(
                "/v2/library/alpine/blobs/sha256:ab",
                &up,
                "library/alpine",
                "alpine",
                Some("docker.io")
            ),
            "/v2/alpine/blobs/sha256:ab?ns=docker.io"
        );
        assert_eq!(
            rewrite_location("https://cdn.example/up?sig=1", &up, "a", "a", None),
            "https://cdn.example/up?sig=1",
            "other origins are the client's business"
        );
        assert_eq!(
            rewrite_location("/uploads/elsewhere", &up, "a", "a", None),
            "https://reg.example/uploads/elsewhere"
        );
    }

    #[test]
    fn content_ranges() {
        let mut h = HeaderMap::new();
        assert_eq!(content_range_start(&h), None);
        for (v, start) in [
            ("0-99", 0),
            ("100-199", 100),
            ("bytes 5-9/*", 5),
            ("bytes=7-8", 7),
        ] {
            h.insert(CONTENT_RANGE, HeaderValue::from_static(v));
            assert_eq!(content_range_start(&h), Some(start), "{v}");
        }
    }
}
