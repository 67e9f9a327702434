//! The admin API, `/admin/v1/` on the admin listener (what `wharf cache` talks to).
//!
//! - Off (every path under `/admin/` answers 404, as an unknown path) unless `[admin]
//!   token_file` is set; on, every request needs `Authorization: Bearer <token>`, compared
//!   in constant time (`AdminToken::matches`); anything else is a 401.
//! - JSON in and out (serde); errors are `{"error": "..."}` with a 4xx/5xx status.
//! - Store reads are blocking: they run on the blocking pool.
//!
//! The endpoints and their JSON shapes are documented in the README ("Operator control").

use super::admin_ops::{error, json, purge, refresh, Answer};
use super::{full, RespBody};
use crate::config::{AdminToken, Pin};
use crate::oci::{CacheRef, Selector};
use crate::registry::Registry;
use http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use std::sync::Arc;

/// Every path of the API starts with this.
pub const PREFIX: &str = "/admin/";

/// What the API needs besides the registry.
#[derive(Clone, Debug, Default)]
pub struct Api {
    pub token: Option<AdminToken>,
    /// `cache.pin` from the config.
    pub pins: Vec<Pin>,
}

fn respond((status, body): Answer) -> Response<RespBody> {
    let mut bytes = serde_json::to_vec_pretty(&body).unwrap_or_default();
    bytes.push(b'\n');
    let mut resp = Response::new(full(bytes));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"wharf-admin\""),
        );
    }
    resp
}

/// Whether the request carries the token.
fn authorized<B>(token: &AdminToken, req: &Request<B>) -> bool {
    let Some(v) = req.headers().get(AUTHORIZATION) else {
        return false;
    };
    let v = v.as_bytes();
    let scheme = b"bearer ";
    v.len() > scheme.len()
        && v[..scheme.len()].eq_ignore_ascii_case(scheme)
        && token.matches(&v[scheme.len()..])
}

/// Answers a request under [`PREFIX`].
pub async fn answer<B>(
    registry: Arc<Registry>,
    api: Arc<Api>,
    req: Request<B>,
) -> Response<RespBody> {
    let Some(token) = &api.token else {
        let mut resp = Response::new(full(&b"not found\n"[..]));
        *resp.status_mut() = StatusCode::NOT_FOUND;
        return resp;
    };
    if !authorized(token, &req) {
        return respond(error(
            StatusCode::UNAUTHORIZED,
            "this needs Authorization: Bearer <the token of [admin] token_file>",
        ));
    }
    let path = req.uri().path().to_string();
    let query: Vec<(String, String)> = crate::auth::form::parse(req.uri().query().unwrap_or(""));
    let method = req.method().clone();
    if method == Method::POST && (path == "/admin/v1/refresh" || path == "/admin/v1/purge") {
        let a = match param(&query, "ref") {
            Ok(r) if path.ends_with("refresh") => refresh(&registry, r).await,
            Ok(r) => purge(&registry, r).await,
            Err(e) => e,
        };
        return respond(a);
    }
    let work = move || route(&registry, &api, &method, &path, &query);
    match tokio::task::spawn_blocking(work).await {
        Ok(a) => respond(a),
        Err(e) => respond(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> Result<&'a str, Answer> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| {
            error(
                StatusCode::BAD_REQUEST,
                format!("missing query parameter {name:?}"),
            )
        })
}

fn route(r: &Registry, api: &Api, method: &Method, path: &str, q: &[(String, String)]) -> Answer {
    let read = |f: &dyn Fn() -> Result<Answer, Answer>| f().unwrap_or_else(|e| e);
    match (method, path) {
        (&Method::GET, "/admin/v1/upstreams") => read(&|| {
            let ups = r.upstreams_view().map_err(internal)?;
            Ok(json(&serde_json::json!({ "upstreams": ups })))
        }),
        (&Method::GET, "/admin/v1/repositories") => {
            read(&|| repositories(r, param(q, "upstream")?))
        }
        (&Method::GET, "/admin/v1/tags") => read(&|| tags(r, api, param(q, "repository")?)),
        (&Method::GET, "/admin/v1/image") => read(&|| image(r, api, param(q, "ref")?)),
        (&Method::GET, "/admin/v1/fills") => json(&serde_json::json!({ "fills": r.fills_view() })),
        (&Method::GET, "/admin/v1/pins") => read(&|| pins(r, api)),
        (&Method::PUT, "/admin/v1/pins") => read(&|| pin(r, param(q, "ref")?, true)),
        (&Method::DELETE, "/admin/v1/pins") => read(&|| pin(r, param(q, "ref")?, false)),
        (_, p) if known(p) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed on {p}"),
        ),
        (_, p) => error(StatusCode::NOT_FOUND, format!("no admin endpoint {p}")),
    }
}

fn known(path: &str) -> bool {
    [
        "upstreams",
        "repositories",
        "tags",
        "image",
        "fills",
        "pins",
        "refresh",
        "purge",
    ]
    .iter()
    .any(|e| path.strip_prefix("/admin/v1/") == Some(e))
}

fn internal(e: crate::error::Error) -> Answer {
    error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// The configured name of `name` (or an alias), or a 404 naming it.
fn upstream(r: &Registry, name: &str) -> Result<String, Answer> {
    r.upstream_name(name).ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            format!("no upstream {name:?} is configured"),
        )
    })
}

fn repositories(r: &Registry, name: &str) -> Result<Answer, Answer> {
    let up = upstream(r, name)?;
    let repos = r.store().repo_entries(&up).map_err(internal)?;
    Ok(json(
        &serde_json::json!({ "upstream": up, "repositories": repos }),
    ))
}

fn rfc3339_ms(ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// Why the image `digest` of `upstream/repo` (under `tags`) is pinned: the matching
/// `cache.pin` entries, and the run-time pins of one of its tags or of the digest.
fn pinned_by(
    r: &Registry,
    api: &Api,
    (upstream, repo): (&str, &str),
    tags: &[String],
    digest: &str,
) -> Result<Vec<String>, Answer> {
    let mut why: Vec<String> = api
        .pins
        .iter()
        .filter(|p| {
            p.upstream == upstream && p.repo == repo && tags.iter().any(|t| p.matches_tag(t))
        })
        .map(|p| format!("cache.pin {}/{}:{}", p.upstream, p.repo, p.tag_glob))
        .collect();
    let named = tags.iter().map(|t| format!("{upstream}/{repo}:{t}"));
    for text in named.chain(std::iter::once(format!("{upstream}/{repo}@{digest}"))) {
        let Ok(c) = CacheRef::parse(&text) else {
            continue;
        };
        if let Some(since) = r.store().pin_of(&c).map_err(internal)? {
            why.push(format!("wharf cache pin {c} (since {})", rfc3339_ms(since)));
        }
    }
    Ok(why)
}

/// `GET /admin/v1/pins`: the run-time pins and `cache.pin`.
fn pins(r: &Registry, api: &Api) -> Result<Answer, Answer> {
    let list: Vec<serde_json::Value> = r
        .store()
        .pins()
        .map_err(internal)?
        .into_iter()
        .map(|p| serde_json::json!({ "ref": p.reference.to_string(), "since": rfc3339_ms(p.since_ms) }))
        .collect();
    let config: Vec<String> = api
        .pins
        .iter()
        .map(|p| format!("{}/{}:{}", p.upstream, p.repo, p.tag_glob))
        .collect();
    Ok(json(&serde_json::json!({ "pins": list, "config": config })))
}

/// `PUT` (`on`) or `DELETE /admin/v1/pins?ref=REF`: a cached tag or digest pinned, or unpinned.
fn pin(r: &Registry, reference: &str, on: bool) -> Result<Answer, Answer> {
    let mut c = CacheRef::parse(reference).map_err(|e| error(StatusCode::BAD_REQUEST, e))?;
    if c.selector == Selector::Repository {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "pin UPSTREAM/REPO:TAG or UPSTREAM/REPO@DIGEST",
        ));
    }
    c.upstream = upstream(r, &c.upstream)?;
    let store = r.store();
    if !on {
        if !store.delete_pin(&c).map_err(internal)? {
            return Err(error(
                StatusCode::NOT_FOUND,
                format!("{c} has no run-time pin (cache.pin entries stay in the config)"),
            ));
        }
        return Ok(json(
            &serde_json::json!({ "ref": c.to_string(), "pinned": false }),
        ));
    }
    if store
        .image_detail(&c.upstream, &c.repo, &c.selector)
        .map_err(internal)?
        .is_none()
    {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!("{c} is not in the cache"),
        ));
    }
    let since = store.put_pin(&c).map_err(internal)?;
    Ok(json(
        &serde_json::json!({ "ref": c.to_string(), "pinned": true, "since": rfc3339_ms(since) }),
    ))
}

fn tags(r: &Registry, api: &Api, repository: &str) -> Result<Answer, Answer> {
    let c = CacheRef::parse(repository).map_err(|e| error(StatusCode::BAD_REQUEST, e))?;
    if c.selector != Selector::Repository {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "expected UPSTREAM/REPO, without a tag or digest",
        ));
    }
    let up = upstream(r, &c.upstream)?;
    let repo = c.repo.as_str();
    let mut tags = Vec::new();
    for t in r.store().tag_entries(&up, repo).map_err(internal)? {
        let why = pinned_by(r, api, (&up, repo), std::slice::from_ref(&t.tag), &t.digest)?;
        let mut v = serde_json::to_value(&t)
            .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        v["pinned"] = serde_json::Value::Bool(!why.is_empty());
        tags.push(v);
    }
    Ok(json(
        &serde_json::json!({ "upstream": up, "repository": repo, "tags": tags }),
    ))
}

fn image(r: &Registry, api: &Api, reference: &str) -> Result<Answer, Answer> {
    let c = CacheRef::parse(reference).map_err(|e| error(StatusCode::BAD_REQUEST, e))?;
    if c.selector == Selector::Repository {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "expected UPSTREAM/REPO:TAG or UPSTREAM/REPO@DIGEST",
        ));
    }
    let up = upstream(r, &c.upstream)?;
    let store = r.store();
    let Some(detail) = store
        .image_detail(&up, &c.repo, &c.selector)
        .map_err(internal)?
    else {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!("{c} is not in the cache"),
        ));
    };
    // A digest is pinned when a tag pointing at it is.
    let tags: Vec<String> = match &detail.tag {
        Some(t) => vec![t.clone()],
        None => store
            .tag_entries(&up, c.repo.as_str())
            .map_err(internal)?
            .into_iter()
            .filter(|t| t.digest == detail.digest)
            .map(|t| t.tag)
            .collect(),
    };
    let why = pinned_by(r, api, (&up, c.repo.as_str()), &tags, &detail.digest)?;
    let mut v = serde_json::to_value(&detail)
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    v["pinned"] = serde_json::Value::Bool(!why.is_empty());
    v["pinned_by"] = serde_json::json!(why);
    Ok(json(&v))
}
