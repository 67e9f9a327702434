//! Wharf's token endpoint (the Docker token spec, `GET /token`, and the OAuth2 form
//! `POST /token` that containerd uses with credentials).
//!
//! The client's credentials (Basic on GET, `username`/`password` in the POST form) are checked
//! with the upstream of every repository scope asked for; a refusal is a 401 here. The token
//! returned is opaque and stands for the client's session (see `crate::auth`). Neither the
//! credentials nor the token are ever logged.

use super::body::ClientBody;
use super::{full, RespBody};
use crate::auth::{self, form, Client, Sessions};
use crate::error::{Error, Result};
use crate::oci::ErrorCode;
use crate::registry::Registry;
use crate::upstream::Credentials;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use std::collections::HashSet;
use std::time::SystemTime;

const MAX_FORM: usize = 64 * 1024;

pub async fn handle(
    registry: &Registry,
    sessions: &Sessions,
    req: Request<ClientBody>,
) -> Result<Response<RespBody>> {
    let (creds, scopes) = match *req.method() {
        Method::GET | Method::HEAD => {
            let pairs = form::parse(req.uri().query().unwrap_or(""));
            let creds = auth::basic_from_headers(req.headers()).unwrap_or(Credentials::Anonymous);
            (creds, scopes_of(&pairs))
        }
        Method::POST => {
            let body = req.into_body().collect_small(MAX_FORM).await.map_err(|e| {
                Error::client(
                    ErrorCode::Unsupported,
                    format!("token form too large or unreadable: {e}"),
                )
            })?;
            let text = std::str::from_utf8(&body)
                .map_err(|_| Error::client(ErrorCode::Unsupported, "token form is not UTF-8"))?;
            let pairs = form::parse(text);
            let get = |k: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| v.as_str())
            };
            let creds = match (get("grant_type"), get("username"), get("password")) {
                (Some("password"), Some(u), Some(p)) if !u.is_empty() => Credentials::basic(u, p),
                (Some("password"), _, _) | (None, _, _) => Credentials::Anonymous,
                (Some(other), _, _) => {
                    return Err(Error::client(
                        ErrorCode::Unsupported,
                        format!("grant_type {other:?} is not supported; use password"),
                    ))
                }
            };
            (creds, scopes_of(&pairs))
        }
        _ => {
            return Err(Error::client(
                ErrorCode::Unsupported,
                "the token endpoint takes GET or POST",
            ))
        }
    };
    if creds != Credentials::Anonymous {
        check_credentials(registry, &creds, &scopes).await?;
    }
    let token = sessions
        .issue(Client::new(creds))
        .await
        .ok_or_else(|| Error::internal("no randomness for a token"))?;
    let issued_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let body = serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": sessions.ttl().as_secs(),
        "issued_at": issued_at,
    })
    .to_string();
    let len = body.len();
    let mut resp = Response::new(full(Bytes::from(body)));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(len));
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    Ok(resp)
}

/// Repository names of `repository:<name>:<actions>` scopes (space-separated lists allowed).
fn scopes_of(pairs: &[(String, String)]) -> Vec<String> {
    pairs
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' '))
        .filter_map(|s| {
            let rest = s.strip_prefix("repository:")?;
            let (name, _actions) = rest.rsplit_once(':')?;
            (!name.is_empty()).then(|| name.to_string())
        })
        .collect()
}

/// Checks `creds` with the upstream of each scope (once per upstream). An upstream that
/// refuses them makes the whole request a 401; one that cannot be reached is skipped (its
/// cached content then stays behind the offline rule for these credentials).
async fn check_credentials(
    registry: &Registry,
    creds: &Credentials,
    names: &[String],
) -> Result<()> {
    let mut seen = HashSet::new();
    for name in names {
        let Ok(t) = registry.resolve(name, None) else {
            continue;
        };
        if !seen.insert(t.upstream.name().to_string()) {
            continue;
        }
        match t.upstream.login(creds, &t.repo).await {
            Ok(()) => {}
            Err(Error::Upstream { status, .. })
                if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN =>
            {
                return Err(Error::client(
                    ErrorCode::Unauthorized,
                    format!(
                        "the upstream {} refused these credentials",
                        t.upstream.name()
                    ),
                ));
            }
            Err(e) => {
                tracing::warn!(upstream = t.upstream.name(), error = %e, "could not check credentials with the upstream");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_extracted_from_repeated_and_space_separated_values() {
        let pairs = form::parse(
            "service=wharf&scope=repository%3Aghcr.io%2Forg%2Fapp%3Apull&scope=repository:a/b:pull,push%20repository:c:pull&scope=registry:catalog:*",
        );
        assert_eq!(scopes_of(&pairs), vec!["ghcr.io/org/app", "a/b", "c"]);
    }
}
