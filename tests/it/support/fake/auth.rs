//! The fake's token auth, shaped like Docker Hub's: a `/token` service (GET with query and
//! optional Basic credentials, or POST with an OAuth2 password form) that hands out opaque
//! tokens granting `pull` on the requested repositories the caller may pull (and `push`, when
//! asked, to authenticated users on those); registry requests without a valid token get `401`
//! with a `Bearer` challenge naming the scope (`pull,push` for pushes).

use super::serve::{error, full, Body};
use super::{is_private, Ctx};
use base64::Engine as _;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use sha2::{Digest as _, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

const TOKEN_LIFETIME: Duration = Duration::from_secs(300);
const SERVICE: &str = "fake-registry";

struct Issued {
    subject: Option<String>,
    /// Repositories this token may pull.
    repos: HashSet<String>,
    /// Repositories this token may push to.
    push: HashSet<String>,
    expires: Instant,
}

#[derive(Default)]
pub(crate) struct AuthState {
    /// user → (password, may pull private repositories)
    users: HashMap<String, (String, bool)>,
    tokens: HashMap<String, Issued>,
    order: Vec<String>,
    /// user name given (or "" for anonymous) → token requests
    requests: HashMap<String, u64>,
}

impl AuthState {
    pub(crate) fn with_users(users: &[(&str, &str, bool)]) -> AuthState {
        let mut s = AuthState::default();
        for (u, p, private) in users {
            s.add_user(u, p, *private);
        }
        s
    }

    fn add_user(&mut self, user: &str, password: &str, private: bool) {
        self.users
            .insert(user.to_string(), (password.to_string(), private));
    }

    pub(crate) fn set_private_access(&mut self, user: &str, allowed: bool) {
        if let Some(u) = self.users.get_mut(user) {
            u.1 = allowed;
        }
    }

    pub(crate) fn requests(&self, user: Option<&str>) -> u64 {
        *self.requests.get(user.unwrap_or("")).unwrap_or(&0)
    }

    pub(crate) fn issued(&self) -> Vec<String> {
        self.order.clone()
    }

    fn may_pull(&self, subject: Option<&str>, repo: &str) -> bool {
        !is_private(repo) || subject.and_then(|u| self.users.get(u)).is_some_and(|u| u.1)
    }
}

enum Check {
    Ok,
    /// No token, an unknown one or an expired one.
    Missing,
    /// A valid token that does not grant this repository.
    NoAccess,
}

impl Ctx {
    /// The refusal to send when `headers` do not allow pulling `repo` (or pushing to it, with
    /// `push`; `None`: the base endpoint, which any valid token opens).
    pub(crate) fn refusal(
        &self,
        headers: &HeaderMap,
        repo: Option<&str>,
        push: bool,
    ) -> Option<Response<Body>> {
        let token = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let check = {
            let a = self.auth.lock().expect("lock");
            match token.and_then(|t| a.tokens.get(t)) {
                Some(i) if i.expires > Instant::now() => match repo {
                    None => Check::Ok,
                    Some(r)
                        if i.repos.contains(r)
                            && a.may_pull(i.subject.as_deref(), r)
                            && (!push || i.push.contains(r)) =>
                    {
                        Check::Ok
                    }
                    Some(_) => Check::NoAccess,
                },
                _ => Check::Missing,
            }
        };
        let forbid = self.denied_status.load(Ordering::SeqCst) == 403;
        match (check, repo) {
            (Check::Ok, _) => None,
            (Check::NoAccess, Some(r)) if forbid && (push || is_private(r)) => {
                Some(error(StatusCode::FORBIDDEN, "DENIED"))
            }
            (Check::NoAccess, r) => Some(self.challenge(r, true, push)),
            (Check::Missing, r) => Some(self.challenge(r, false, push)),
        }
    }

    fn challenge(&self, repo: Option<&str>, insufficient: bool, push: bool) -> Response<Body> {
        let mut r = error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
        let realm = self.realm.lock().expect("lock").clone();
        let realm = realm.unwrap_or_else(|| format!("http://{}/token", self.addr));
        let mut v = format!("Bearer realm=\"{realm}\",service=\"{SERVICE}\"");
        if let Some(repo) = repo {
            let actions = if push { "pull,push" } else { "pull" };
            v.push_str(&format!(",scope=\"repository:{repo}:{actions}\""));
        }
        if insufficient {
            v.push_str(",error=\"insufficient_scope\"");
        }
        r.headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_str(&v).expect("header"));
        r
    }

    /// The token service.
    pub(crate) async fn token(&self, req: Request<Incoming>) -> Response<Body> {
        let basic = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_basic);
        let mut params = parse_query(req.uri().query().unwrap_or(""));
        if req.method() == http::Method::POST {
            let Ok(body) = req.into_body().collect().await else {
                return error(StatusCode::BAD_REQUEST, "UNSUPPORTED");
            };
            params.extend(parse_query(&String::from_utf8_lossy(&body.to_bytes())));
            let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            if get("grant_type").as_deref() != Some("password") {
                return error(StatusCode::BAD_REQUEST, "UNSUPPORTED");
            }
        }
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let creds = basic.or_else(|| get("username").zip(get("password")));
        let asked: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| k == "scope")
            .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
            .filter_map(|s| {
                let (name, actions) = s.strip_prefix("repository:")?.rsplit_once(':')?;
                Some((name.to_string(), actions.to_string()))
            })
            .collect();
        let wants = |action: &str| -> Vec<String> {
            asked
                .iter()
                .filter(|(_, a)| a.split(',').any(|a| a == action || a == "*"))
                .map(|(n, _)| n.clone())
                .collect()
        };
        let (repos, push_asked) = (wants("pull"), wants("push"));
        let mut a = self.auth.lock().expect("lock");
        let who = creds.as_ref().map(|(u, _)| u.clone()).unwrap_or_default();
        *a.requests.entry(who).or_default() += 1;
        let subject = match creds {
            None => None,
            Some((u, p)) => match a.users.get(&u) {
                Some((pw, _)) if *pw == p => Some(u),
                _ => return error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
            },
        };
        let repos: HashSet<String> = repos
            .into_iter()
            .filter(|r| a.may_pull(subject.as_deref(), r))
            .collect();
        let push: HashSet<String> = push_asked
            .into_iter()
            .filter(|r| subject.is_some() && a.may_pull(subject.as_deref(), r))
            .collect();
        let n = a.order.len();
        let token = new_token(self.addr.port(), n);
        a.tokens.insert(
            token.clone(),
            Issued {
                subject,
                repos,
                push,
                expires: Instant::now() + TOKEN_LIFETIME,
            },
        );
        a.order.push(token.clone());
        self.tokens_issued.fetch_add(1, Ordering::SeqCst);
        let body = serde_json::json!({
            "token": token,
            "access_token": token,
            "expires_in": TOKEN_LIFETIME.as_secs(),
            "issued_at": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        });
        let mut r = full(StatusCode::OK, body.to_string());
        r.headers_mut()
            .insert("content-type", HeaderValue::from_static("application/json"));
        r
    }
}

/// An opaque token, unique per fake and request, easy to search logs for.
fn new_token(port: u16, n: usize) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let h = Sha256::digest(format!("{port}/{n}/{nanos}"));
    format!("fktok{}", hex::encode(&h[..12]))
}

fn parse_basic(v: &str) -> Option<(String, String)> {
    let enc = v.strip_prefix("Basic ")?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(enc.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// `application/x-www-form-urlencoded` pairs, decoded.
pub(crate) fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
