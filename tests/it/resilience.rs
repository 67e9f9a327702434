//! Freshness and resilience against the fake upstream (no token auth: anonymous clients may
//! pull everything): tag revalidation, immutable tags, stale-while-revalidate,
//! stale-if-error, negative caching, retries, timeouts, the circuit breaker, 429s and
//! offline mode. Upstream traffic is asserted with the fake's request counters; short TTLs
//! ("1s") keep every test within a few seconds.
//!
//! - here: the fixtures;
//! - `freshness`: `tag_ttl`, `immutable_tags`, `stale_while_revalidate`;
//! - `stale`: `stale_if_error` and upstream 429s;
//! - `negative`: `negative_ttl`;
//! - `retries`: `retries`, `response_timeout`, broken blob bodies;
//! - `breaker`: `breaker_failures`, `breaker_cooldown`;
//! - `offline`: top-level `offline = true`;
//! - `config`: the new keys' validation.

mod breaker;
mod config;
mod freshness;
mod negative;
mod offline;
mod retries;
mod stale;

use crate::support::{self, Fake, Resp};
use std::time::Duration;
use wharf::app::Running;

/// A fake upstream without auth and a Wharf in front of it. Fields drop in order: Wharf
/// before its data dir.
pub struct Env {
    pub fake: Fake,
    pub w: Running,
    _dir: tempfile::TempDir,
}

impl Env {
    /// `extra` goes inside the `[[upstream]]` table.
    pub async fn start(extra: &str) -> Env {
        Env::start_with(extra, "").await
    }

    /// As [`Env::start`], with top-level config `top`.
    pub async fn start_with(extra: &str, top: &str) -> Env {
        let fake = Fake::start().await;
        let dir = tempfile::tempdir().expect("tmp");
        let w = support::wharf_with(dir.path(), "up.test", &fake.url(), extra, top).await;
        Env { fake, w, _dir: dir }
    }

    /// `http://<wharf>/v2/<repo>/manifests/<reference>`
    pub fn manifest(&self, repo: &str, reference: &str) -> String {
        format!("http://{}/v2/{repo}/manifests/{reference}", self.w.addr)
    }

    /// `http://<wharf>/v2/<repo>/blobs/<digest>`
    pub fn blob(&self, repo: &str, digest: &str) -> String {
        format!("http://{}/v2/{repo}/blobs/{digest}", self.w.addr)
    }

    /// (GET manifest, HEAD manifest) requests the fake has seen.
    pub fn manifest_counts(&self) -> (u64, u64) {
        (
            self.fake.count("GET manifest"),
            self.fake.count("HEAD manifest"),
        )
    }

    pub async fn shutdown(self) {
        self.w.shutdown().await;
    }
}

/// The body for failure messages (first 300 bytes, or the error that ended it).
pub fn lossy(r: &Resp) -> String {
    match &r.body {
        Ok(b) => String::from_utf8_lossy(&b[..b.len().min(300)]).into_owned(),
        Err(e) => format!("<error: {e}>"),
    }
}

/// `r` is a 200 of manifest `bytes` with digest `digest`.
pub fn assert_manifest(r: &Resp, digest: &str, bytes: &[u8], what: &str) {
    assert_eq!(r.status, 200, "{what}: status (body {:?})", lossy(r));
    assert_eq!(
        r.header("docker-content-digest"),
        Some(digest),
        "{what}: Docker-Content-Digest"
    );
    assert!(
        r.bytes().as_ref() == bytes,
        "{what}: wrong manifest bytes: {:?}",
        lossy(r)
    );
}

/// `r` is an OCI error with `status` and `code`.
pub fn assert_error(r: &Resp, status: u16, code: &str, what: &str) {
    assert_eq!(
        r.status.as_u16(),
        status,
        "{what}: status (body {:?})",
        lossy(r)
    );
    assert_eq!(r.error_code(), code, "{what}: error code");
}

/// Sleeps `ms` milliseconds.
pub async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}
