//! The upstream's token service: a small Docker-token-spec server of our own (hyper, on
//! 127.0.0.1:0, in its own runtime) issuing ES256 JWTs that `docker-registry` trusts.
//!
//! `GET /token?service=..&scope=repository:<name>:<actions>` (scope may repeat; Basic auth
//! optional) and the OAuth2 form `POST /token` (`grant_type=password`). The JWT header is
//! `{"alg":"ES256","typ":"JWT","x5c":[<DER of the signing cert>]}`; Distribution verifies the
//! chain against its `rootcertbundle` (the same self-signed cert) and takes the key from it.
//!
//! Policy: anonymous may `pull` `public/*`; [`USER`]:[`PASSWORD`] may `pull,push` anything;
//! bad credentials get 401; anything else is a token without that access (as Docker Hub).

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

use super::upstream::openssl;

pub const ISSUER: &str = "wharf-e2e-token-issuer";
/// The upstream's `service` (the JWT audience).
pub const SERVICE: &str = "e2e-registry";
pub const USER: &str = "alice";
pub const PASSWORD: &str = "alicepw";
const TOKEN_TTL: u64 = 300;

/// The token signing key (PKCS#8 DER) and its self-signed certificate.
pub struct SigningKey {
    pkcs8: Vec<u8>,
    cert_der: Vec<u8>,
    /// PEM of the certificate: the registry's `rootcertbundle`.
    pub cert_pem: PathBuf,
}

/// A P-256 key and a self-signed certificate for it, made with openssl in `dir`.
pub fn make_signing_key(dir: &Path) -> SigningKey {
    let run = |args: &str| openssl(dir, &args.split(' ').collect::<Vec<_>>());
    run("genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out token-key.pem");
    run("pkcs8 -topk8 -nocrypt -in token-key.pem -outform DER -out token-key.der");
    run(
        "req -x509 -new -key token-key.pem -days 7 -subj /CN=wharf-e2e-token-signer \
         -out token-cert.pem",
    );
    run("x509 -in token-cert.pem -outform DER -out token-cert.der");
    let read = |name: &str| std::fs::read(dir.join(name)).expect("read token key file");
    SigningKey {
        pkcs8: read("token-key.der"),
        cert_der: read("token-cert.der"),
        cert_pem: dir.join("token-cert.pem"),
    }
}

/// What the token server has answered, for assertions.
#[derive(Default)]
struct Counts {
    anonymous: AtomicUsize,
    authenticated: AtomicUsize,
    rejected: AtomicUsize,
    /// One line per request: who, and the scopes asked for.
    log: Mutex<Vec<String>>,
}

struct State {
    key: EcdsaKeyPair,
    x5c: String,
    rng: SystemRandom,
    counts: Counts,
}

/// The running token server; stops when dropped.
pub struct TokenServer {
    pub port: u16,
    /// An HTTPS front ([`TokenServer::serve_tls`]): the realm is then `https://` on its port
    /// (Wharf sends credentials to an https upstream's realm only over https).
    front: Option<super::tls_front::TlsFront>,
    state: Arc<State>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TokenServer {
    pub fn start(key: &SigningKey) -> TokenServer {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key.pkcs8, &rng)
            .expect("ring accepts the openssl PKCS#8 P-256 key");
        let state = Arc::new(State {
            key: pair,
            x5c: STANDARD.encode(&key.cert_der),
            rng,
            counts: Counts::default(),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind token server");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("local_addr").port();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("e2e-token-server")
            .enable_all()
            .build()
            .expect("token server runtime");
        let st = state.clone();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            while let Ok((stream, _)) = listener.accept().await {
                let st = st.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(st.clone(), req));
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        TokenServer {
            port,
            front: None,
            state,
            runtime: Some(runtime),
        }
    }

    /// Serves the token service over HTTPS too, with `certs`' server certificate (for
    /// 127.0.0.1, the registry's own host); [`TokenServer::realm`] then names that.
    pub fn serve_tls(&mut self, certs: &super::upstream::Certs) {
        let target = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        let rt = self.runtime.as_ref().expect("token server runtime");
        self.front = Some(rt.block_on(super::tls_front::start(certs, target)));
    }

    /// The `realm` the registry advertises.
    pub fn realm(&self) -> String {
        match &self.front {
            Some(f) => format!("https://127.0.0.1:{}/token", f.addr.port()),
            None => format!("http://127.0.0.1:{}/token", self.port),
        }
    }

    /// Tokens issued to anonymous clients.
    pub fn anonymous(&self) -> usize {
        self.state.counts.anonymous.load(Ordering::SeqCst)
    }

    /// Tokens issued to clients with good credentials.
    pub fn authenticated(&self) -> usize {
        self.state.counts.authenticated.load(Ordering::SeqCst)
    }

    /// Requests refused with 401 (bad credentials).
    pub fn rejected(&self) -> usize {
        self.state.counts.rejected.load(Ordering::SeqCst)
    }

    /// Every request so far, one line each, for failure messages.
    pub fn log(&self) -> String {
        let log = self.state.counts.log.lock().expect("token log lock");
        format!("----- token server -----\n{}", log.join("\n"))
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        let front = self.front.take();
        if let Some(rt) = self.runtime.take() {
            drop(front);
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (c, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `a=b&c=d` (query string or form body), percent-decoded.
fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// What the policy grants `user` (None: anonymous) on resource `kind`/`name`.
fn allowed(user: Option<&str>, kind: &str, name: &str) -> &'static [&'static str] {
    match user {
        Some(_) => &["pull", "push"],
        None if kind == "repository" && name.starts_with("public/") => &["pull"],
        None => &[],
    }
}

/// The `access` claim for `scopes` (`type:name:actions`; a name may hold ':').
fn access(user: Option<&str>, scopes: &[String]) -> Vec<Value> {
    let mut out = Vec::new();
    for scope in scopes {
        let Some((kind, rest)) = scope.split_once(':') else {
            continue;
        };
        let Some((name, actions)) = rest.rsplit_once(':') else {
            continue;
        };
        let ok = allowed(user, kind, name);
        let granted: Vec<&str> = actions.split(',').filter(|a| ok.contains(a)).collect();
        if !granted.is_empty() {
            out.push(json!({"type": kind, "name": name, "actions": granted}));
        }
    }
    out
}

impl State {
    fn jwt(&self, sub: &str, aud: &str, access: Vec<Value>) -> (String, u64) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs();
        let mut jti = [0u8; 16];
        self.rng.fill(&mut jti).expect("random jti");
        let header = json!({"alg": "ES256", "typ": "JWT", "x5c": [self.x5c]});
        let claims = json!({
            "iss": ISSUER, "sub": sub, "aud": aud,
            "exp": now + TOKEN_TTL, "nbf": now, "iat": now, "jti": hex::encode(jti),
            "access": access,
        });
        let enc = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("json"));
        let input = format!("{}.{}", enc(&header), enc(&claims));
        let sig = self.key.sign(&self.rng, input.as_bytes()).expect("sign");
        (format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)), now)
    }
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    let json = hyper::header::HeaderValue::from_static("application/json");
    resp.headers_mut().insert(hyper::header::CONTENT_TYPE, json);
    resp
}

/// Good credentials: Ok(Some(user)); none: Ok(None); bad: Err.
fn check_user(user: Option<String>, password: Option<String>) -> Result<Option<String>, ()> {
    match (user, password) {
        (None, None) => Ok(None),
        (Some(u), Some(p)) if u == USER && p == PASSWORD => Ok(Some(u)),
        _ => Err(()),
    }
}

/// The user and password of an `Authorization: Basic` header (none: both None; an
/// undecodable one: an empty user without password, which is refused).
fn basic_credentials(headers: &hyper::HeaderMap) -> (Option<String>, Option<String>) {
    let header = headers.get(hyper::header::AUTHORIZATION);
    let basic = header.and_then(|v| v.to_str().ok()?.strip_prefix("Basic "));
    let Some(basic) = basic else {
        return (None, None);
    };
    let Ok(decoded) = STANDARD.decode(basic.trim()) else {
        return (Some(String::new()), None);
    };
    let decoded = String::from_utf8_lossy(&decoded).into_owned();
    match decoded.split_once(':') {
        Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
        None => (Some(decoded), None),
    }
}

async fn handle(
    st: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() != "/token" {
        return Ok(reply(StatusCode::NOT_FOUND, json!({"error": "not found"})));
    }
    let (parts, body) = req.into_parts();
    let (params, user, password) = if parts.method == Method::POST {
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let form = parse_form(&String::from_utf8_lossy(&body));
        let get = |k: &str| {
            form.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        if get("grant_type").as_deref() != Some("password") {
            let err = json!({"error": "unsupported_grant_type"});
            return Ok(reply(StatusCode::BAD_REQUEST, err));
        }
        let (user, password) = (get("username"), get("password"));
        (form, user, password)
    } else {
        let form = parse_form(parts.uri.query().unwrap_or_default());
        let (user, password) = basic_credentials(&parts.headers);
        (form, user, password)
    };
    let scopes: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .collect();
    let service = params.iter().find(|(k, _)| k == "service");
    let service = service.map_or(SERVICE.to_string(), |(_, v)| v.clone());
    let who = user.clone().unwrap_or_else(|| "<anonymous>".to_string());
    let counts = &st.counts;
    let line = format!("{} {who} service={service} scopes={scopes:?}", parts.method);
    let Ok(user) = check_user(user, password) else {
        counts.rejected.fetch_add(1, Ordering::SeqCst);
        counts
            .log
            .lock()
            .expect("log")
            .push(format!("{line} -> 401"));
        let err = json!({"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]});
        let mut resp = reply(StatusCode::UNAUTHORIZED, err);
        let challenge = hyper::header::HeaderValue::from_static("Basic realm=\"e2e\"");
        resp.headers_mut()
            .insert(hyper::header::WWW_AUTHENTICATE, challenge);
        return Ok(resp);
    };
    let counter = if user.is_some() {
        &counts.authenticated
    } else {
        &counts.anonymous
    };
    counter.fetch_add(1, Ordering::SeqCst);
    let access = access(user.as_deref(), &scopes);
    counts
        .log
        .lock()
        .expect("log")
        .push(format!("{line} -> {access:?}"));
    let (token, now) = st.jwt(user.as_deref().unwrap_or(""), &service, access);
    let issued_at = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(now));
    Ok(reply(
        StatusCode::OK,
        json!({"token": token, "access_token": token, "expires_in": TOKEN_TTL,
               "issued_at": issued_at.to_string()}),
    ))
}

#[test]
fn token_server_parses_forms() {
    let form = parse_form("service=a%20b&scope=repository%3Apublic%2Fapp%3Apull&x");
    assert_eq!(form[0], ("service".into(), "a b".into()));
    assert_eq!(form[1].1, "repository:public/app:pull");
    assert_eq!(form[2], ("x".into(), String::new()));
}

#[test]
fn token_server_policy() {
    let scopes = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let asked = scopes(&[
        "repository:public/app:pull,push",
        "repository:private/app:pull",
    ]);
    let anon = json!([{"type": "repository", "name": "public/app", "actions": ["pull"]}]);
    assert_eq!(Value::from(access(None, &asked)), anon);
    assert_eq!(access(Some(USER), &asked)[1]["actions"], json!(["pull"]));
    assert_eq!(
        access(Some(USER), &scopes(&["repository:h:5000/x:push"]))[0]["name"],
        "h:5000/x"
    );
}
