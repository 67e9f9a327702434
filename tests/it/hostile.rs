//! Hostile clients (issue 10): each gets the right status and OCI error code (or, for what
//! hyper refuses before Wharf sees a request, hyper's status), and none reaches the upstream
//! (the fake counts every request) or the disk (no blob or temp file appears).
//!
//! | issue bullet | test |
//! | --- | --- |
//! | path traversal in names and digests (`..`, `%2e%2e`, encoded slashes, NUL) | `input::path_traversal_is_refused_before_the_upstream`, `input::raw_nul_and_control_bytes_are_refused_by_the_parser`; also `routing::bad_requests_get_spec_error_codes_without_touching_upstream` |
//! | names and tags past the spec's length limits | `input::names_and_tags_past_the_limits_are_refused_and_at_the_limits_accepted` |
//! | unknown digest algorithms | `input::unknown_digest_algorithms_are_unsupported` |
//! | malformed `Range` (multiple, reversed, overflow) | `input::malformed_ranges_serve_the_whole_blob_or_416`; also `pull::range_requests_on_cached_and_in_progress_blobs` |
//! | huge headers | `input::huge_headers_are_refused_by_hyper_with_431` |
//! | thousands of query parameters | `input::thousands_of_query_parameters_change_nothing` |
//! | slowloris (header-read timeout, connection limit) | `slow::slowloris_connections_are_closed_and_bounded_by_max_connections` |
//! | a client reading one byte per second | `slow::a_client_reading_one_byte_per_second_stalls_nobody_and_holds_little` |
//! | idle HTTP/2 connections (after a first request) at `max_connections` (issue 18) | `conns::idle_http2_connections_are_closed_and_free_their_slots`; a stream in flight is never idle: `conns::a_request_in_flight_is_never_idle` |
//! | HTTP/2 peers that never answer a ping (issue 18) | `conns::http2_peers_that_never_answer_a_ping_are_disconnected` |
//! | stalled request bodies at `max_connections`: `/token` forms, manifest `PUT`s, upload `PATCH`es (issue 18) | `conns::stalled_token_forms_are_answered_408_and_free_their_slots`, `conns::stalled_push_bodies_are_answered_408` |
//! | one address opening many connections (`max_connections_per_ip`, issue 18) | `conns::connections_past_the_per_address_cap_are_closed_at_once` |
//! | the admin listener: silent connections, its own cap (issue 18) | `conns::the_admin_listener_times_out_silent_connections_and_has_its_own_cap` |
//!
//! Decisions: an invalid tag is `404 MANIFEST_UNKNOWN` (the spec has no tag error code); an
//! unknown digest algorithm is `UNSUPPORTED` (the route's existing mapping, `405`); a `Range`
//! Wharf cannot honour (several ranges, reversed, unparseable, overflowing) is ignored and the
//! whole blob served (RFC 9110 permits it); a syntactically valid but unsatisfiable one is `416
//! RANGE_INVALID`.

mod conns;
mod input;
mod slow;

use crate::support::{self, Fake};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wharf::app::Running;

/// A fake upstream and a Wharf in front of it; `top` goes before the tables.
pub struct Env {
    pub fake: Fake,
    pub w: Running,
    pub dir: tempfile::TempDir,
}

impl Env {
    pub async fn start(top: &str) -> Env {
        let fake = Fake::start().await;
        let dir = tempfile::tempdir().expect("tmp");
        let w = support::wharf_with(dir.path(), "up.test", &fake.url(), "", top).await;
        Env { fake, w, dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.w.addr)
    }

    /// Nothing under `blobs/` or `tmp/` of the data dir.
    pub fn assert_disk_untouched(&self, what: &str) {
        let blobs = self.dir.path().join("blobs");
        let files = walk(&blobs);
        assert!(files.is_empty(), "{what}: files under blobs/: {files:?}");
        let tmp = support::scrape::entries(self.dir.path(), "tmp");
        assert!(tmp.is_empty(), "{what}: temp files: {tmp:?}");
    }

    pub async fn shutdown(self) {
        self.w.shutdown().await;
    }
}

/// Every file below `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// An anonymous token from Wharf's `/token`, for hand-written requests.
pub async fn token(w: &Running) -> String {
    let r = support::get(&format!("http://{}/token?service=wharf", w.addr)).await;
    r.json()["token"].as_str().expect("a token").to_string()
}

/// Writes `request` as is on a new connection and reads until the server closes it (at most
/// 10 s); returns the status code of the first response (0 when there was none) and all bytes.
pub async fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> (u16, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    // The server may answer and close before it has read everything we send.
    let _ = s.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    let status = std::str::from_utf8(&out)
        .ok()
        .or_else(|| std::str::from_utf8(&out[..out.len().min(12)]).ok())
        .and_then(|t| t.strip_prefix("HTTP/1.1 "))
        .and_then(|t| t.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, out)
}
