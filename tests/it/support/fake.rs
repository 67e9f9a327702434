//! An in-process fake upstream registry: serves what a test puts in it, counts every request
//! by kind, and injects faults on demand (wrong bytes, slow bodies, lying `Content-Length`,
//! 5xx, refusal, redirects; rules for the next `n` requests of a kind through [`Fake::inject`]
//! and its shorthands). [`Fake::requests`] lists what arrived (with any `Authorization`), and
//! [`Fake::restart`] kills every connection and listens again on the same address.
//!
//! Content is scoped by repository like a real registry: a manifest or blob put through
//! [`Fake::put_image`]/[`Fake::put_manifest`] exists only under its repository; blobs put
//! with [`Fake::put_blob`] exist under every repository.
//!
//! With `token_auth` on it authenticates like Docker Hub (see `auth`): a `/token` service,
//! users [`ALICE`] (may pull `private/*`) and [`BOB`] (may not), and repositories whose name
//! starts with `private/` are private. Authenticated users may push where they may pull.
//!
//! It takes pushes like Distribution (see `push`: upload sessions with a `_state` query,
//! chunked and monolithic uploads, mounts, manifest `PUT`s, `DELETE`s) and answers the OCI 1.1
//! referrers API from the manifests it holds (see `referrers`), unless told not to.

mod auth;
mod faults;
mod push;
mod referrers;
mod serve;

pub use faults::{Answer, Fault};
pub use serve::Seen;

use sha2::{Digest as _, Sha256};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// A user who may pull private repositories.
pub const ALICE: (&str, &str) = ("alice", "alicepw");
/// A user who exists but may not pull private repositories.
pub const BOB: (&str, &str) = ("bob", "bobpw");

pub fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Whether the fake treats `repo` as private.
pub fn is_private(repo: &str) -> bool {
    repo.starts_with("private/")
}

/// How a blob is served.
#[derive(Clone, Default)]
pub struct BlobBehavior {
    /// Bytes per body chunk (0 = one chunk).
    pub chunk: usize,
    /// Pause before each chunk.
    pub delay: Duration,
    /// Serve these bytes instead of the real ones (same length or not).
    pub corrupt: Option<Vec<u8>>,
    /// Break the connection after this many bytes.
    pub fail_after: Option<usize>,
    /// Declare this `Content-Length` whatever the body's real length (a lying upstream). When
    /// it is shorter, hyper sends only that many bytes; when longer, the connection is closed
    /// after the body, short of what was declared.
    pub content_length: Option<u64>,
    /// Send no `Content-Length` at all (chunked encoding).
    pub chunked: bool,
}

#[derive(Default)]
pub(crate) struct State {
    /// (repo, tag) → manifest digest
    tags: HashMap<(String, String), String>,
    /// digest → (media type, bytes)
    manifests: HashMap<String, (String, Vec<u8>)>,
    /// (repo, manifest digest) present
    repo_manifests: HashSet<(String, String)>,
    blobs: HashMap<String, Vec<u8>>,
    /// (repo, blob digest) present
    repo_blobs: HashSet<(String, String)>,
    /// blobs present under every repository
    unscoped: HashSet<String>,
    behavior: HashMap<String, BlobBehavior>,
    counts: HashMap<String, u64>,
    /// Every request, in arrival order.
    seen: Vec<Seen>,
    /// upload session id → (repo, bytes so far)
    uploads: HashMap<String, (String, Vec<u8>)>,
    next_upload: u64,
}

pub struct Fake {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    auth: Arc<Mutex<auth::AuthState>>,
    /// Answer every request (the token service too) with 503.
    pub down: Arc<AtomicBool>,
    /// Require a bearer token from `/token` (Docker token spec).
    pub token_auth: Arc<AtomicBool>,
    /// Tokens the token service handed out.
    pub tokens_issued: Arc<AtomicU64>,
    /// The status for a valid token without access to a private repository: 401 (Docker Hub,
    /// the default) or 403 (`DENIED`).
    pub denied_status: Arc<AtomicU16>,
    /// Answer the referrers API (default); off: 404, like Distribution 2.8.
    pub referrers_api: Arc<AtomicBool>,
    /// Referrers per page (0: all in one), with `Link: <...>; rel="next"` for the rest.
    pub referrers_page: Arc<AtomicU64>,
    /// Upload `Location`s as absolute URLs (default: absolute paths).
    pub absolute_locations: Arc<AtomicBool>,
    /// Bytes of upload bodies received so far (counted as they arrive).
    pub upload_bytes: Arc<AtomicU64>,
    /// The token realm its challenges name instead of its own `/token` (a foreign realm).
    pub realm: Arc<Mutex<Option<String>>>,
    faults: Arc<Mutex<faults::Faults>>,
    connections: Arc<AtomicU64>,
    /// The accept loop (replaced by [`Fake::restart`]).
    task: Mutex<tokio::task::JoinHandle<()>>,
    /// Bumped to end every open connection.
    kill: tokio::sync::watch::Sender<u64>,
    ctx: Ctx,
}

impl Drop for Fake {
    fn drop(&mut self) {
        if let Ok(t) = self.task.lock() {
            t.abort();
        }
        self.kill.send_modify(|g| *g += 1);
    }
}

#[derive(Clone)]
pub(crate) struct Ctx {
    state: Arc<Mutex<State>>,
    auth: Arc<Mutex<auth::AuthState>>,
    down: Arc<AtomicBool>,
    token_auth: Arc<AtomicBool>,
    tokens_issued: Arc<AtomicU64>,
    denied_status: Arc<AtomicU16>,
    referrers_api: Arc<AtomicBool>,
    referrers_page: Arc<AtomicU64>,
    absolute_locations: Arc<AtomicBool>,
    upload_bytes: Arc<AtomicU64>,
    realm: Arc<Mutex<Option<String>>>,
    faults: Arc<Mutex<faults::Faults>>,
    addr: SocketAddr,
}

impl Fake {
    pub async fn start() -> Fake {
        Fake::start_at("127.0.0.1:0").await
    }

    /// As [`Fake::start`], listening on `addr` (another loopback address, say).
    pub async fn start_at(addr: &str) -> Fake {
        let listener = TcpListener::bind(addr).await.expect("bind fake");
        let addr = listener.local_addr().expect("addr");
        let ctx = Ctx {
            state: Arc::default(),
            auth: Arc::new(Mutex::new(auth::AuthState::with_users(&[
                (ALICE.0, ALICE.1, true),
                (BOB.0, BOB.1, false),
            ]))),
            down: Arc::default(),
            token_auth: Arc::default(),
            tokens_issued: Arc::default(),
            denied_status: Arc::new(AtomicU16::new(401)),
            referrers_api: Arc::new(AtomicBool::new(true)),
            referrers_page: Arc::default(),
            absolute_locations: Arc::default(),
            upload_bytes: Arc::default(),
            realm: Arc::default(),
            faults: Arc::default(),
            addr,
        };
        let connections = Arc::new(AtomicU64::new(0));
        let (kill, _) = tokio::sync::watch::channel(0u64);
        let task = accept_loop(listener, ctx.clone(), connections.clone(), kill.clone());
        Fake {
            addr,
            state: ctx.state.clone(),
            auth: ctx.auth.clone(),
            down: ctx.down.clone(),
            token_auth: ctx.token_auth.clone(),
            tokens_issued: ctx.tokens_issued.clone(),
            denied_status: ctx.denied_status.clone(),
            referrers_api: ctx.referrers_api.clone(),
            referrers_page: ctx.referrers_page.clone(),
            absolute_locations: ctx.absolute_locations.clone(),
            upload_bytes: ctx.upload_bytes.clone(),
            realm: ctx.realm.clone(),
            faults: ctx.faults.clone(),
            connections,
            task: Mutex::new(task),
            kill,
            ctx,
        }
    }

    /// Stops listening and ends every open connection (mid-body ones too): a server that
    /// died. Its address then refuses connections.
    pub fn stop(&self) {
        self.task.lock().expect("lock").abort();
        self.kill.send_modify(|g| *g += 1);
    }

    /// Stops as [`Fake::stop`] does and after `down` listens again on the same address with
    /// the same content: an upstream restart.
    pub async fn restart(&self, down: Duration) {
        self.stop();
        tokio::time::sleep(down).await;
        // Meanwhile another test's outgoing connection may hold the port as its local end
        // for a moment: retry (bounded) until it is free.
        let mut listener = None;
        for _ in 0..200 {
            match TcpListener::bind(self.addr).await {
                Ok(l) => {
                    listener = Some(l);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
            }
        }
        let listener = listener.expect("rebind fake within 5 s");
        let task = accept_loop(
            listener,
            self.ctx.clone(),
            self.connections.clone(),
            self.kill.clone(),
        );
        *self.task.lock().expect("lock") = task;
    }

    /// A fake that requires tokens (Docker Hub style).
    pub async fn start_with_auth() -> Fake {
        let f = Fake::start().await;
        f.token_auth.store(true, Ordering::SeqCst);
        f
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A blob present under every repository.
    pub fn put_blob(&self, data: &[u8]) -> String {
        let d = digest_of(data);
        let mut s = self.state.lock().expect("lock");
        s.blobs.insert(d.clone(), data.to_vec());
        s.unscoped.insert(d.clone());
        d
    }

    /// A blob present under `repo` only.
    pub fn put_blob_in(&self, repo: &str, data: &[u8]) -> String {
        let d = digest_of(data);
        let mut s = self.state.lock().expect("lock");
        s.blobs.insert(d.clone(), data.to_vec());
        s.repo_blobs.insert((repo.to_string(), d.clone()));
        d
    }

    /// The bytes of a stored blob.
    pub fn blob_bytes(&self, digest: &str) -> Option<Vec<u8>> {
        self.state.lock().expect("lock").blobs.get(digest).cloned()
    }

    /// Whether blob `digest` exists under `repo`.
    pub fn has_blob_in(&self, repo: &str, digest: &str) -> bool {
        let s = self.state.lock().expect("lock");
        s.blobs.contains_key(digest)
            && (s.unscoped.contains(digest)
                || s.repo_blobs
                    .contains(&(repo.to_string(), digest.to_string())))
    }

    /// The bytes of the manifest `repo:tag` points at.
    pub fn manifest_at(&self, repo: &str, tag: &str) -> Option<Vec<u8>> {
        let s = self.state.lock().expect("lock");
        let d = s.tags.get(&(repo.to_string(), tag.to_string()))?;
        s.manifests.get(d).map(|(_, b)| b.clone())
    }

    /// Upload sessions open now.
    pub fn open_uploads(&self) -> usize {
        self.state.lock().expect("lock").uploads.len()
    }

    /// Removes blob `digest` from `repo` (and from "every repository").
    pub fn delete_blob(&self, repo: &str, digest: &str) {
        let mut s = self.state.lock().expect("lock");
        s.repo_blobs.remove(&(repo.to_string(), digest.to_string()));
        s.unscoped.remove(digest);
    }

    pub fn set_behavior(&self, digest: &str, b: BlobBehavior) {
        self.state
            .lock()
            .expect("lock")
            .behavior
            .insert(digest.to_string(), b);
    }

    pub fn clear_behavior(&self, digest: &str) {
        self.state.lock().expect("lock").behavior.remove(digest);
    }

    /// Stores a manifest under `repo` and points `tag` (if any) at it; returns its digest.
    pub fn put_manifest(
        &self,
        repo: &str,
        tag: Option<&str>,
        media_type: &str,
        bytes: &[u8],
    ) -> String {
        let d = digest_of(bytes);
        let mut s = self.state.lock().expect("lock");
        s.manifests
            .insert(d.clone(), (media_type.to_string(), bytes.to_vec()));
        s.repo_manifests.insert((repo.to_string(), d.clone()));
        if let Some(t) = tag {
            s.tags.insert((repo.to_string(), t.to_string()), d.clone());
        }
        d
    }

    /// Deletes manifest `digest` from `repo` and every tag of `repo` pointing at it.
    pub fn delete_manifest(&self, repo: &str, digest: &str) {
        let mut s = self.state.lock().expect("lock");
        s.repo_manifests
            .remove(&(repo.to_string(), digest.to_string()));
        s.tags.retain(|(r, _), d| !(r == repo && d == digest));
    }

    /// Puts an OCI image (config + layers) under `repo:tag`; returns the manifest digest.
    pub fn put_image(&self, repo: &str, tag: &str, layers: &[&[u8]]) -> (String, Vec<u8>) {
        let config = format!(
            "{{\"architecture\":\"amd64\",\"os\":\"linux\",\"repo\":\"{repo}\",\"tag\":\"{tag}\"}}"
        );
        let cd = self.put_blob_in(repo, config.as_bytes());
        let layer_descs: Vec<String> = layers
            .iter()
            .map(|l| {
                let d = self.put_blob_in(repo, l);
                format!(
                    "{{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"{d}\",\"size\":{}}}",
                    l.len()
                )
            })
            .collect();
        let manifest = format!(
            "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"{cd}\",\"size\":{}}},\"layers\":[{}]}}",
            config.len(),
            layer_descs.join(",")
        );
        let d = self.put_manifest(
            repo,
            Some(tag),
            "application/vnd.oci.image.manifest.v1+json",
            manifest.as_bytes(),
        );
        (d, manifest.into_bytes())
    }

    /// How many requests of `kind` ("GET blob", "HEAD manifest", "GET manifest", "GET tags",
    /// "GET token", "POST token", "GET base") arrived.
    pub fn count(&self, kind: &str) -> u64 {
        *self
            .state
            .lock()
            .expect("lock")
            .counts
            .get(kind)
            .unwrap_or(&0)
    }

    pub fn total(&self) -> u64 {
        self.state.lock().expect("lock").counts.values().sum()
    }

    /// Requests to the token service from `user` (by the name it gave, right password or
    /// not), or from anonymous clients (`None`).
    pub fn token_requests(&self, user: Option<&str>) -> u64 {
        self.auth.lock().expect("lock").requests(user)
    }

    /// Every token the token service handed out.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.auth.lock().expect("lock").issued()
    }

    /// Grants or revokes a user's access to private repositories; takes effect at once, for
    /// tokens already issued too.
    pub fn set_private_access(&self, user: &str, allowed: bool) {
        self.auth
            .lock()
            .expect("lock")
            .set_private_access(user, allowed);
    }

    /// TCP connections the fake has accepted.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    /// Adds a fault rule (see [`Fault`]).
    pub fn inject(&self, f: Fault) {
        self.faults.lock().expect("lock").add(f);
    }

    /// The next `n` requests of any kind (the token service too) get `status`.
    pub fn fail_next(&self, n: u64, status: u16) {
        self.inject(Fault::status(None, n, status));
    }

    /// The next `n` requests of `kind` ("manifest", "GET blob", "token", ...) get `status`.
    pub fn fail_next_kind(&self, kind: &str, n: u64, status: u16) {
        self.inject(Fault::status(Some(kind), n, status));
    }

    /// Every request gets `status` (with `Retry-After: retry_after` if given) until
    /// [`Fake::clear_faults`].
    pub fn fail_always(&self, status: u16, retry_after: Option<&str>) {
        let mut f = Fault::status(None, u64::MAX, status);
        f.retry_after = retry_after.map(str::to_string);
        self.inject(f);
    }

    /// The next `n` requests of `kind` (`None`: any) have their connection closed unanswered.
    pub fn drop_next(&self, kind: Option<&str>, n: u64) {
        let mut f = Fault::status(kind, n, 0);
        f.answer = Answer::Drop;
        self.inject(f);
    }

    /// The next `n` requests of `kind` are answered normally, after `delay`.
    pub fn delay_next(&self, kind: &str, n: u64, delay: Duration) {
        let mut f = Fault::status(Some(kind), n, 0);
        f.answer = Answer::Normal;
        f.delay = delay;
        self.inject(f);
    }

    /// Removes every fault rule (not `down`).
    pub fn clear_faults(&self) {
        self.faults.lock().expect("lock").clear();
    }

    /// The next `n` requests of `kind` get a `302` to `location`.
    pub fn redirect_next(&self, kind: &str, n: u64, location: &str) {
        let mut f = Fault::status(Some(kind), n, 0);
        f.answer = Answer::Redirect(location.to_string());
        self.inject(f);
    }

    /// Replaces the bytes served for manifest `digest` (the digest stays: a lying upstream).
    pub fn replace_manifest_bytes(&self, digest: &str, bytes: &[u8]) {
        let mut s = self.state.lock().expect("lock");
        let entry = s.manifests.get_mut(digest).expect("a stored manifest");
        entry.1 = bytes.to_vec();
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Seen> {
        self.state.lock().expect("lock").seen.clone()
    }
}

/// Accepts connections until aborted; each connection ends when `kill` changes.
fn accept_loop(
    listener: TcpListener,
    ctx: Ctx,
    accepted: Arc<AtomicU64>,
    kill: tokio::sync::watch::Sender<u64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            accepted.fetch_add(1, Ordering::SeqCst);
            let ctx = ctx.clone();
            let mut killed = kill.subscribe();
            tokio::spawn(async move {
                // An `Err` makes hyper close the connection without answering.
                let svc = service_fn(move |req| {
                    let ctx = ctx.clone();
                    async move { ctx.handle(req).await }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection(TokioIo::new(stream), svc);
                tokio::select! {
                    _ = conn => {}
                    _ = killed.changed() => {}
                }
            });
        }
    })
}
