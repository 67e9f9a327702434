//! The admin API's operations that change the cache or ask the upstream (refresh, purge),
//! and the answer helpers the API shares; `admin_api` routes to them.

use crate::oci::{CacheRef, Selector};
use crate::registry::Registry;
use http::StatusCode;
use serde::Serialize;

pub type Answer = (StatusCode, serde_json::Value);

pub fn error(status: StatusCode, message: impl Into<String>) -> Answer {
    (status, serde_json::json!({ "error": message.into() }))
}

pub fn json<T: Serialize>(v: &T) -> Answer {
    match serde_json::to_value(v) {
        Ok(v) => (StatusCode::OK, v),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `POST /admin/v1/refresh?ref=UPSTREAM/REPO:TAG`: the tag revalidated now.
pub async fn refresh(r: &Registry, reference: &str) -> Answer {
    use crate::registry::manifests::refresh::Refreshed;
    let c = match CacheRef::parse(reference) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let Selector::Tag(tag) = &c.selector else {
        return error(
            StatusCode::BAD_REQUEST,
            "refresh UPSTREAM/REPO:TAG (a digest never moves)",
        );
    };
    let t = match r.resolve(c.repo.as_str(), Some(&c.upstream)) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::NOT_FOUND, e.to_string()),
    };
    let name = format!("{}/{}:{}", t.upstream.name(), t.repo.as_str(), tag.as_str());
    let (result, digest, previous) = match r.refresh_tag(&t, tag).await {
        Ok(Refreshed::Unchanged(d)) => ("unchanged", d, Some(d)),
        Ok(Refreshed::Moved { from, to }) => ("moved", to, from),
        Err(e) => {
            let status = match e {
                crate::error::Error::Client { .. } => StatusCode::NOT_FOUND,
                _ => StatusCode::BAD_GATEWAY,
            };
            return error(status, format!("{name}: {e}"));
        }
    };
    json(&serde_json::json!({
        "ref": name,
        "result": result,
        "digest": digest.to_string(),
        "previous": previous.map(|d| d.to_string()),
    }))
}

/// `POST /admin/v1/purge?ref=REF`: what it names removed from the cache.
pub async fn purge(r: &Registry, reference: &str) -> Answer {
    let mut c = match CacheRef::parse(reference) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    c.upstream = match r.upstream_name(&c.upstream) {
        Some(u) => u,
        None => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no upstream {:?} is configured", c.upstream),
            )
        }
    };
    let list = |v: &[crate::oci::Digest]| v.iter().map(|d| d.to_string()).collect::<Vec<_>>();
    match r.purge(&c).await {
        Ok(Some(p)) => json(&serde_json::json!({
            "ref": c.to_string(),
            "tags": p.tags,
            "unlinked_manifests": list(&p.unlinked_manifests),
            "deleted_manifests": list(&p.manifests),
            "deleted_blobs": list(&p.blobs),
            "freed_bytes": p.bytes,
        })),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("{c} is not in the cache")),
        Err(crate::error::Error::Client { code, message }) => {
            let status = match code {
                crate::oci::ErrorCode::Denied => StatusCode::CONFLICT,
                _ => StatusCode::NOT_IMPLEMENTED,
            };
            error(status, message)
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
