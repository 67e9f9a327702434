//! Clients that hold connections after their first request (issue 18, finding 5): idle HTTP/2
//! connections, HTTP/2 peers that never answer a ping, stalled request bodies (`/token`,
//! manifest `PUT`s, upload `PATCH`es), one address opening many connections, and the admin
//! listener's own timeouts and cap. Each runs against a small `max_connections` (or cap) and
//! checks that a new client is served within a bounded time.

use super::{token, Env};
use crate::support::{self, data, raw, BlobBehavior, Session};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The HTTP/2 client preface and an empty SETTINGS frame.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";

/// An HTTP/2 connection (hyper's client: it answers pings) with its driver task.
async fn h2(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
) {
    let io = TokioIo::new(TcpStream::connect(addr).await.expect("connect"));
    let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .expect("h2 handshake");
    (send, tokio::spawn(conn))
}

/// A GET over `send`: status and body.
async fn h2_get(
    send: &mut hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    url: &str,
    auth: Option<&str>,
) -> (u16, Bytes) {
    let mut b = Request::get(url);
    if let Some(a) = auth {
        b = b.header("authorization", a);
    }
    let resp = send
        .send_request(b.body(Empty::new()).expect("request"))
        .await
        .expect("h2 response");
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("h2 body")
        .to_bytes();
    (status, body)
}

/// Writes `head` and the first bytes of its body on a new connection, then reads until the
/// server closes it (at most 10 s); returns everything read.
async fn partial_body(addr: SocketAddr, head: &str, sent: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(head.as_bytes()).await.expect("head");
    s.write_all(sent).await.expect("body");
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    assert!(
        read.is_ok(),
        "still open after 10 s: {:?}",
        String::from_utf8_lossy(&out)
    );
    String::from_utf8_lossy(&out).into_owned()
}

/// `GET /v2/` on a new HTTP/1.1 connection, which must be answered within 10 s; returns how
/// long the answer took.
async fn served_within_10s(env: &Env, what: &str) -> Duration {
    let started = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(10), raw("GET", &env.url("/v2/"), &[]))
        .await
        .unwrap_or_else(|_| panic!("{what}: a new client was not served within 10 s"));
    assert_eq!(r.status, 401, "{what}: the new client gets the challenge");
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_http2_connections_are_closed_and_free_their_slots() {
    let env = Env::start("max_connections = 4\nidle_timeout = \"1s\"").await;
    let url = env.url("/v2/");
    // Four HTTP/2 connections, each past its first request, then idle: every slot is taken.
    let mut idle = Vec::new();
    for _ in 0..4 {
        let (mut send, task) = h2(env.w.addr).await;
        assert_eq!(h2_get(&mut send, &url, None).await.0, 401);
        idle.push((send, task));
    }
    let waited = served_within_10s(&env, "four idle h2 connections").await;
    assert!(
        waited >= Duration::from_millis(800),
        "served after {waited:?}: a slot was free before idle_timeout"
    );
    // They were shut down gracefully (GOAWAY), not reset.
    for (_send, task) in idle {
        let ended = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("an idle connection was not closed");
        ended.expect("join").expect("a graceful close");
    }
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_in_flight_is_never_idle() {
    let env = Env::start("idle_timeout = \"1s\"").await;
    // A blob whose upstream takes about 3 s: three idle timeouts with a stream open.
    let blob = data(30 * 1024, 181);
    let d = env.fake.put_blob(&blob);
    let slow = BlobBehavior {
        chunk: 1024,
        delay: Duration::from_millis(100),
        ..Default::default()
    };
    env.fake.set_behavior(&d, slow);
    let auth = format!("Bearer {}", token(&env.w).await);
    let (mut send, task) = h2(env.w.addr).await;
    let started = Instant::now();
    let url = env.url(&format!("/v2/org/app/blobs/{d}"));
    let (status, body) = h2_get(&mut send, &url, Some(&auth)).await;
    assert_eq!(status, 200);
    assert!(body.as_ref() == blob.as_slice(), "the whole blob");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "the upstream was slow"
    );
    // Idle now: closed a second later.
    let ended = tokio::time::timeout(Duration::from_secs(10), task).await;
    ended
        .expect("closed once idle")
        .expect("join")
        .expect("graceful");
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http2_peers_that_never_answer_a_ping_are_disconnected() {
    let top = "http2_keepalive_interval = \"1s\"\nhttp2_keepalive_timeout = \"1s\"";
    let env = Env::start(top).await;
    let mut s = TcpStream::connect(env.w.addr).await.expect("connect");
    // HEADERS for `POST /token` (HPACK: :method POST, :scheme http, :path "/token"), with
    // END_HEADERS and no END_STREAM: a request whose body never comes, which `/token` waits
    // for (request_body_timeout is 30 s, idle_timeout 60 s: neither fires in this test).
    let block = [&[0x83u8, 0x86, 0x04, 0x06][..], b"/token"].concat();
    let mut frame = vec![0, 0, block.len() as u8, 0x01, 0x04, 0, 0, 0, 1];
    frame.extend_from_slice(&block);
    s.write_all(&[H2_PREFACE, &frame].concat())
        .await
        .expect("write");
    // Read whatever comes (SETTINGS, PINGs) and answer nothing.
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(15), async {
        while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await;
    assert!(closed.is_ok(), "still open after 15 s");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "closed only after {:?}",
        started.elapsed()
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stalled_token_forms_are_answered_408_and_free_their_slots() {
    let env = Env::start("max_connections = 4\nrequest_body_timeout = \"1s\"").await;
    let head = "POST /token HTTP/1.1\r\nHost: wharf\r\n\
                Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n";
    // Four token forms that stop after 20 of their 100 bytes take every slot.
    let slow: Vec<_> = (0..4)
        .map(|_| {
            let addr = env.w.addr;
            tokio::spawn(async move { partial_body(addr, head, b"grant_type=password&").await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let waited = served_within_10s(&env, "four stalled token forms").await;
    assert!(
        waited >= Duration::from_millis(600),
        "served after {waited:?}: a slot was free before request_body_timeout"
    );
    for h in slow {
        let out = h.await.expect("join");
        assert!(out.starts_with("HTTP/1.1 408"), "{out}");
        assert!(
            out.to_ascii_lowercase().contains("connection: close"),
            "{out}"
        );
    }
    // A form that drips (a byte every 300 ms, each within the gap) must still arrive whole
    // within request_body_timeout.
    let (mut rd, mut wr) = TcpStream::connect(env.w.addr)
        .await
        .expect("connect")
        .into_split();
    wr.write_all(head.as_bytes()).await.expect("head");
    let started = Instant::now();
    let answer = tokio::spawn(async move {
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), rd.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    });
    for b in b"grant_type=password&username=u" {
        if answer.is_finished() || wr.write_all(&[*b]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let out = answer.await.expect("join");
    assert!(out.starts_with("HTTP/1.1 408"), "a dripping form: {out}");
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(env.fake.total(), 0, "nothing reached the upstream");
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stalled_push_bodies_are_answered_408() {
    let fake = support::Fake::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let extra = "allow_push = true";
    let top = "request_body_timeout = \"1s\"";
    let w = support::wharf_with(dir.path(), "up.test", &fake.url(), extra, top).await;
    let auth = format!("Bearer {}", token(&w).await);
    // A manifest PUT (collected before it goes upstream) that stops half-way.
    let head = format!(
        "PUT /v2/org/app/manifests/v1 HTTP/1.1\r\nHost: wharf\r\nAuthorization: {auth}\r\n\
         Content-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 200\r\n\r\n"
    );
    let out = partial_body(w.addr, &head, b"{\"schemaVersion\":2,").await;
    assert!(out.starts_with("HTTP/1.1 408"), "manifest PUT: {out}");
    assert!(
        fake.manifest_at("org/app", "v1").is_none(),
        "nothing was pushed"
    );
    // An upload PATCH (streamed to the upstream as it comes) that stops half-way.
    let base = format!("http://{}", w.addr);
    let s = Session::anonymous();
    let r = s
        .send(
            "POST",
            &format!("{base}/v2/org/app/blobs/uploads/"),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let location = r.header("location").expect("location").to_string();
    let head = format!(
        "PATCH {location} HTTP/1.1\r\nHost: wharf\r\nAuthorization: {auth}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n"
    );
    let out = partial_body(w.addr, &head, &data(30_000, 182)).await;
    assert!(out.starts_with("HTTP/1.1 408"), "upload PATCH: {out}");
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_past_the_per_address_cap_are_closed_at_once() {
    let env = Env::start("max_connections_per_ip = 2").await;
    let get = b"GET /v2/ HTTP/1.1\r\nHost: wharf\r\n\r\n";
    // Two keep-alive connections from 127.0.0.1, each answered once and held open.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(env.w.addr).await.expect("connect");
        s.write_all(get).await.expect("write");
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).await.expect("an answer");
        assert_eq!(&buf, b"HTTP/1.1 401");
        held.push(s);
    }
    // A third from the same address is closed without an answer.
    let mut third = TcpStream::connect(env.w.addr).await.expect("connect");
    let _ = third.write_all(get).await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the third connection was kept open");
    assert!(out.is_empty(), "{:?}", String::from_utf8_lossy(&out));
    // One closes: there is room again.
    drop(held.pop());
    let mut served = false;
    for _ in 0..20 {
        if tokio::time::timeout(Duration::from_secs(2), raw("GET", &env.url("/v2/"), &[]))
            .await
            .is_ok_and(|r| r.status == 401)
        {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "no room after one of the two connections closed");
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_admin_listener_times_out_silent_connections_and_has_its_own_cap() {
    let env = Env::start("header_read_timeout = \"1s\"\nadmin_max_connections = 2").await;
    let admin = env.w.admin_addr;
    // Two connections that never send a head take both admin slots.
    let mut silent = Vec::new();
    for _ in 0..2 {
        silent.push(TcpStream::connect(admin).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A scrape waits for a slot, and gets one once the header timeout closes a silent one.
    let started = Instant::now();
    let health = format!("http://{admin}/healthz");
    let r = tokio::time::timeout(Duration::from_secs(10), raw("GET", &health, &[]))
        .await
        .expect("the scrape was not served within 10 s");
    assert_eq!(r.status, 200);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(800),
        "served after {waited:?}: past the cap"
    );
    for mut s in silent {
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("a silent admin connection was not closed");
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    }
    // The registry listener's cap is not the admin's.
    assert_eq!(raw("GET", &env.url("/v2/"), &[]).await.status, 401);
    env.shutdown().await;
}
