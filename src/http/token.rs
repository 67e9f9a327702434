//! Wharf's token endpoint (the Docker token spec, `GET /token`, and the OAuth2 form
//! `POST /token` that containerd uses with credentials).
//!
//! The client's credentials (Basic on GET, `username`/`password` in the POST form) are checked
//! with the upstream of every repository scope asked for (without a scope: the upstream the
//! request's `Host` routes to, else the default upstream); a refusal is a 401 here, and
//! nothing is stored for refused credentials. The token returned is opaque and stands for the
//! client's credentials at those upstreams only (see `crate::auth`); with no upstream to
//! check them with, it is an anonymous token. Checks are throttled (`auth::checks`). Neither
//! the credentials nor the token are ever logged.

use super::body::ClientBody;
use super::host::host_of;
use super::{full, RespBody};
use crate::auth::checks::Verdict;
use crate::auth::{self, form, Client, Sessions};
use crate::error::{Error, Result};
use crate::oci::ErrorCode;
use crate::oci::RepoName;
use crate::registry::Registry;
use crate::upstream::{Credentials, Upstream};
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use std::time::SystemTime;

const MAX_FORM: usize = 64 * 1024;

pub async fn handle(
    registry: &Registry,
    sessions: &Sessions,
    req: Request<ClientBody>,
) -> Result<Response<RespBody>> {
    let host = host_of(req.headers(), req.uri()).map(str::to_string);
    let (creds, scopes) = read_request(req).await?;
    if let Credentials::Basic { user, password } = &creds {
        if !auth::within_limits(user, password) {
            return Err(Error::client(
                ErrorCode::Unauthorized,
                "the user name or password is too long",
            ));
        }
    }
    let client = match creds {
        Credentials::Anonymous => Client::anonymous(),
        creds => {
            let upstreams = upstreams_of(registry, host.as_deref(), &scopes);
            let names = check_credentials(sessions, &creds, &upstreams).await?;
            if names.is_empty() {
                // Nothing to check them with: not kept (an anonymous token).
                Client::anonymous()
            } else {
                Client::bound(creds, names)
            }
        }
    };
    let token = sessions
        .issue(client)
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

/// The credentials and repository scopes a token request carries.
async fn read_request(req: Request<ClientBody>) -> Result<(Credentials, Vec<String>)> {
    Ok(match *req.method() {
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
    })
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

/// The upstreams a token request is about: those of its scopes (each once), or without a
/// scope the upstream its `Host` routes to, else the default one.
fn upstreams_of(registry: &Registry, host: Option<&str>, names: &[String]) -> Vec<Target> {
    if names.is_empty() {
        return registry
            .default_for(host)
            .map(|upstream| Target {
                upstream,
                repo: None,
            })
            .into_iter()
            .collect();
    }
    let mut out: Vec<Target> = Vec::new();
    for name in names {
        let Ok(t) = registry.resolve_at(host, name, None) else {
            continue;
        };
        if !out.iter().any(|o| o.upstream.name() == t.upstream.name()) {
            out.push(Target {
                upstream: t.upstream,
                repo: Some(t.repo),
            });
        }
    }
    out
}

/// An upstream to check credentials with, and the repository to ask for (none: a login).
struct Target {
    upstream: std::sync::Arc<Upstream>,
    repo: Option<RepoName>,
}

/// Checks `creds` with each upstream; the names of those they stand at. An upstream that
/// refuses them makes the whole request a 401 (and is remembered, `auth::checks`); one that
/// cannot be reached is kept (its cached content then stays behind the offline rule for
/// these credentials).
async fn check_credentials(
    sessions: &Sessions,
    creds: &Credentials,
    targets: &[Target],
) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for t in targets {
        check(sessions, creds, &t.upstream, t.repo.as_ref()).await?;
        names.push(t.upstream.name().to_string());
    }
    Ok(names)
}

/// Checks `creds` with `upstream` (for pulling `repo`; none: a login), throttled by
/// `auth::checks`: `Ok` when the upstream accepted them (now or a moment ago) or could not be
/// asked, a 401 when it refused them, a 429 when this user name is throttled.
pub(super) async fn check(
    sessions: &Sessions,
    creds: &Credentials,
    upstream: &Upstream,
    repo: Option<&RepoName>,
) -> Result<()> {
    let up = upstream.name();
    let attempt = match sessions.checks.verdict(creds, up).await {
        Verdict::Ask(attempt) => attempt,
        Verdict::Accepted => return Ok(()),
        Verdict::Refused => return Err(refused(up)),
        Verdict::Throttled(wait) => {
            return Err(Error::Upstream {
                upstream: up.to_string(),
                status: StatusCode::TOO_MANY_REQUESTS,
                code: ErrorCode::TooManyRequests,
                message: "too many refused logins for this user name; try again later".into(),
                retry_after: Some(wait),
            })
        }
    };
    let res = upstream.login(creds, repo).await;
    let answer = match &res {
        Ok(()) => Some(true),
        Err(Error::Upstream { status, .. })
            if *status == StatusCode::UNAUTHORIZED || *status == StatusCode::FORBIDDEN =>
        {
            Some(false)
        }
        Err(_) => None,
    };
    sessions.checks.done(creds, up, answer, attempt).await;
    match (res, answer) {
        (_, Some(false)) => Err(refused(up)),
        (Err(e), _) => {
            tracing::warn!(upstream = up, error = %e, "could not check credentials with the upstream");
            Ok(())
        }
        (Ok(()), _) => Ok(()),
    }
}

fn refused(upstream: &str) -> Error {
    Error::client(
        ErrorCode::Unauthorized,
        format!("the upstream {upstream} refused these credentials"),
    )
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
