//! Pushes through Wharf against the fake upstream: refused without `allow_push`; uploads
//! (monolithic, chunked, resumable) with their `Location`s pointing back at Wharf in every
//! naming form; the tee into the cache; the upstream's errors passed through; mounts;
//! manifest `PUT`s refreshing tags; `DELETE`s; credentials and scopes.

mod auth;
mod manifests;
mod streaming;
mod uploads;

use crate::support::{self, Fake, Resp, Session};
use bytes::Bytes;
use std::path::Path;
use wharf::app::Running;

/// `[[upstream]]` keys of a Wharf that takes pushes.
pub const PUSH: &str = "allow_push = true\ntag_ttl = \"1h\"\n";

pub async fn start(fake: &Fake, dir: &Path, extra: &str) -> Running {
    support::wharf(dir, "up.test", &fake.url(), extra).await
}

/// A `Location` as a client follows it: relative ones against Wharf.
pub fn follow(base: &str, location: &str) -> String {
    if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        location.to_string()
    }
}

/// `url` with one more query parameter.
pub fn with_param(url: &str, param: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{param}")
}

/// The `Location` of an answer (panics with the answer when there is none).
pub fn location(r: &Resp) -> String {
    r.header("location")
        .unwrap_or_else(|| panic!("no Location in {} {:?}", r.status, r.body))
        .to_string()
}

/// `POST` to open an upload at `uploads` (a Wharf URL of `.../blobs/uploads/`, with its query).
pub async fn open(s: &Session, uploads: &str) -> Resp {
    let r = s.send("POST", uploads, &[], Bytes::new()).await;
    assert_eq!(r.status, 202, "POST {uploads}: {:?}", r.body);
    r
}

/// A monolithic upload of `data` through Wharf (`POST`, then `PUT ?digest=` with the bytes);
/// returns the `PUT`'s answer.
pub async fn push_blob(s: &Session, base: &str, uploads: &str, data: &[u8]) -> Resp {
    let r = open(s, uploads).await;
    let put = with_param(
        &follow(base, &location(&r)),
        &format!("digest={}", support::digest_of(data)),
    );
    let ct = [("content-type", "application/octet-stream")];
    s.send("PUT", &put, &ct, Bytes::copy_from_slice(data)).await
}

/// Reads a counter of Wharf's metrics.
pub fn tees(w: &Running, result: &str) -> u64 {
    w.registry
        .metrics
        .upload_tees
        .with_label_values(&["up.test", result])
        .get()
}

/// Whether Wharf's cache holds blob `digest`.
pub fn cached(w: &Running, digest: &str) -> bool {
    let d = wharf::oci::Digest::parse(digest).expect("digest");
    w.registry.store().files().exists(&d)
}

/// Files left in Wharf's `tmp/`.
pub fn temp_files(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("tmp"))
        .map(|d| d.count())
        .unwrap_or(0)
}
