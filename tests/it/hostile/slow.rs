//! Clients that hold connections: slowloris (bounded by `header_read_timeout` and
//! `max_connections`) and a reader that takes one byte per second.

use super::{token, Env};
use crate::support::scrape::{sample, scrape_settled};
use crate::support::{data, get, raw, BlobBehavior};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Clone, Copy, Debug)]
enum Loris {
    /// Connects and sends nothing.
    Silent,
    /// Half of the HTTP/2 preface (hyper-util's protocol sniffing waits for the rest).
    HalfH2Preface,
    /// The HTTP/2 preface and SETTINGS, then no stream at all.
    H2WithoutStreams,
    /// An HTTP/1.1 head that never ends: one more header line every 200 ms.
    DrippingH1Head,
}

/// Holds a connection the `kind` way until the server closes it (then bumps `closed`), for at
/// most 20 s (an error: the server never closed it).
async fn loris(
    addr: std::net::SocketAddr,
    kind: Loris,
    closed: Arc<AtomicU64>,
) -> Result<(), String> {
    let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let start: &[u8] = match kind {
        Loris::Silent => b"",
        Loris::HalfH2Preface => b"PRI * HTTP/2.0\r\n",
        // Preface, then an empty SETTINGS frame (length 0, type 4, flags 0, stream 0).
        Loris::H2WithoutStreams => b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0",
        Loris::DrippingH1Head => b"GET /v2/ HTTP/1.1\r\nHost: wharf\r\n",
    };
    s.write_all(start).await.map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 4096];
    loop {
        tokio::select! {
            r = s.read(&mut buf) => match r {
                // The server's SETTINGS, a 408: read on until the connection ends.
                Ok(n) if n > 0 => {}
                _ => {
                    closed.fetch_add(1, Ordering::SeqCst);
                    return Ok(());
                }
            },
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                if Instant::now() > deadline {
                    return Err(format!("{kind:?}: still open after 20 s"));
                }
                if let Loris::DrippingH1Head = kind {
                    let _ = s.write_all(b"X-Drip: 1\r\n").await;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slowloris_connections_are_closed_and_bounded_by_max_connections() {
    let env = Env::start("max_connections = 8\nheader_read_timeout = \"1s\"").await;
    let closed = Arc::new(AtomicU64::new(0));
    // Eight slowloris connections take every slot.
    let kinds = [
        Loris::Silent,
        Loris::Silent,
        Loris::HalfH2Preface,
        Loris::HalfH2Preface,
        Loris::H2WithoutStreams,
        Loris::H2WithoutStreams,
        Loris::DrippingH1Head,
        Loris::DrippingH1Head,
    ];
    let mut held = Vec::new();
    for kind in kinds {
        held.push(tokio::spawn(loris(env.w.addr, kind, closed.clone())));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A real client waits in the accept queue until the server closes one of them.
    let r = raw("GET", &env.url("/v2/"), &[]).await;
    let closed_before_answer = closed.load(Ordering::SeqCst);
    assert_eq!(r.status, 401, "the real client is answered (a challenge)");
    assert!(
        closed_before_answer >= 1,
        "the real client was answered while all eight slots were held"
    );
    for (kind, h) in kinds.iter().zip(held) {
        h.await
            .expect("join")
            .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
    }
    assert_eq!(closed.load(Ordering::SeqCst), 8);
    // The slots are free again.
    assert_eq!(raw("GET", &env.url("/v2/"), &[]).await.status, 401);
    assert_eq!(env.fake.total(), 0, "nothing reached the upstream");
    env.assert_disk_untouched("slowloris");
    env.shutdown().await;
}

/// Reads a response head one byte at a time (so that no body byte is consumed).
async fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert!(head.len() < 64 * 1024, "no end of the response head");
        let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut b))
            .await
            .expect("head in time")
            .expect("read");
        assert_eq!(n, 1, "connection closed in the head");
        head.push(b[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_reading_one_byte_per_second_stalls_nobody_and_holds_little() {
    let env = Env::start("").await;
    let size = 32 * 1024 * 1024;
    let blob = data(size, 160);
    let d = env.fake.put_blob(&blob);
    env.fake.set_behavior(
        &d,
        BlobBehavior {
            chunk: 1024 * 1024,
            delay: Duration::from_millis(30),
            ..Default::default()
        },
    );
    let url = env.url(&format!("/v2/org/app/blobs/{d}"));
    let t = token(&env.w).await;

    // The slow client starts the fill, with a tiny receive buffer.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let mut slow = socket.connect(env.w.addr).await.expect("connect");
    let req = format!(
        "GET /v2/org/app/blobs/{d} HTTP/1.1\r\nHost: wharf\r\nAuthorization: Bearer {t}\r\n\r\n"
    );
    slow.write_all(req.as_bytes()).await.expect("write");
    let head = read_head(&mut slow).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    // Four ordinary clients meanwhile.
    let others: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    let store = env.w.registry.store().clone();
    let digest = wharf::oci::Digest::parse(&d).expect("digest");
    let mut read = 0usize;
    let mut b = [0u8; 1];
    for _ in 0..60 {
        let n = slow.read(&mut b).await.expect("slow read");
        assert_eq!(n, 1, "the slow client's body ended early");
        assert_eq!(b[0], blob[read], "byte {read}");
        read += 1;
        if others.iter().all(|h| h.is_finished()) && store.files().exists(&digest) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        others.iter().all(|h| h.is_finished()),
        "the other clients did not finish while one client read {read} bytes"
    );
    assert!(
        store.files().exists(&digest),
        "the fill did not commit while one client read {read} bytes"
    );
    for h in others {
        let r = h.await.expect("join");
        assert_eq!(r.status, 200);
        assert!(
            r.bytes().as_ref() == blob.as_slice(),
            "an ordinary client's bytes"
        );
    }
    // What Wharf pulled from the blob for the slow client: bounded by socket and write
    // buffers, not the blob's size.
    let t = scrape_settled(&env.w).await;
    let served = sample(
        &t,
        r#"wharf_served_bytes_total{source="cache",upstream="up.test"}"#,
    ) + sample(
        &t,
        r#"wharf_served_bytes_total{source="upstream",upstream="up.test"}"#,
    );
    let for_slow = served - 4.0 * size as f64;
    assert!(
        for_slow < (8 * 1024 * 1024) as f64,
        "{for_slow} bytes were taken from the blob for a client that read {read}"
    );
    assert_eq!(env.fake.count("GET blob"), 1, "one fill for everyone");
    assert_eq!(sample(&t, r#"wharf_fills_total{result="committed"}"#), 1.0);
    drop(slow);
    env.shutdown().await;
}
