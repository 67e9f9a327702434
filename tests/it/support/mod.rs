//! Shared test support: the fake upstream, an in-process Wharf, and a small HTTP client.

pub mod fake;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::path::Path;
use std::time::Duration;
use wharf::app::Running;
use wharf::config::Config;

pub use fake::{digest_of, BlobBehavior, Fake};

/// An in-process Wharf whose one upstream is `upstream_url`, named `name`.
pub async fn wharf(data_dir: &Path, name: &str, upstream_url: &str, extra: &str) -> Running {
    let toml = format!(
        r#"
listen = "127.0.0.1:0"
data_dir = "{}"
[fill]
idle_timeout = "5s"
[[upstream]]
name = "{name}"
url = "{upstream_url}"
default = true
{extra}
"#,
        data_dir.display()
    );
    let cfg = Config::from_toml_str(&toml).expect("test config is valid");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    wharf::app::start_on(cfg, listener)
        .await
        .expect("wharf starts")
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The body, or the error that ended it.
    pub body: Result<Bytes, String>,
}

impl Resp {
    pub fn bytes(&self) -> &Bytes {
        match &self.body {
            Ok(b) => b,
            Err(e) => panic!("body failed: {e}"),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `code` of the first error in an OCI error envelope.
    pub fn error_code(&self) -> String {
        let v: serde_json::Value = serde_json::from_slice(self.bytes()).expect("json envelope");
        v["errors"][0]["code"].as_str().unwrap_or("").to_string()
    }
}

pub fn client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

pub async fn request(method: &str, url: &str, headers: &[(&str, &str)]) -> Resp {
    let mut b = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b.body(Empty::<Bytes>::new()).expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(30), client().request(req))
        .await
        .expect("response in time")
        .expect("response");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = tokio::time::timeout(Duration::from_secs(60), resp.into_body().collect())
        .await
        .expect("body in time")
        .map(|c| c.to_bytes())
        .map_err(|e| e.to_string());
    Resp {
        status,
        headers,
        body,
    }
}

pub async fn get(url: &str) -> Resp {
    request("GET", url, &[]).await
}

/// Deterministic pseudo-random bytes.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Polls `f` until it is true or `timeout` passes.
pub async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}
