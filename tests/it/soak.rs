//! A bounded soak (issue 10): many concurrent clients pull a growing set of images through
//! one Wharf for a while, with a random mix of cold and warm pulls, range requests and clients
//! that hang up mid-body, and one restart of the upstream half-way (every upstream connection
//! cut, mid-body ones too). Afterwards:
//!
//! - zero corrupt bodies: every blob a client received whole is digest-checked, every range
//!   compared byte for byte, every manifest compared with what the upstream holds;
//! - zero `500`s, and no error other than the spec's envelope with `502`/`503` (the upstream
//!   restarting) or a reset body (a fill the restart broke);
//! - RSS stable: the second half of the run grows it by little;
//! - file descriptors back to their baseline once the clients are gone and the upstream's
//!   idle connections are closed; no fill, waiter or temp file left.
//!
//! The short form runs in CI (10 s, 50 clients). The long form:
//! `WHARF_SOAK_SECS=60 WHARF_SOAK_CLIENTS=200 cargo test --test it soak -- --nocapture`
//! (`WHARF_SOAK_SEED` replays a run). The soak runs in a process of its own (this binary,
//! re-executed for the one ignored test `soak::soak_in_own_process`), so that the other tests
//! running in parallel do not disturb its fd and memory measurements.

use crate::support::scrape::{entries, sample, scrape_settled};
use crate::support::{self, data, digest_of, BlobBehavior, Fake};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use sha2::{Digest as _, Sha256};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak() {
    let secs = env_or("WHARF_SOAK_SECS", 10);
    let exe = std::env::current_exe().expect("test binary");
    let child = tokio::process::Command::new(exe)
        .args([
            "soak::soak_in_own_process",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(secs + 180), child)
        .await
        .expect("the soak ends")
        .expect("the soak runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "the soak failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("1 passed"),
        "the soak did not run:\n{stdout}"
    );
}

/// A blob or manifest as the upstream holds it.
struct Image {
    repo: String,
    tag: String,
    manifest: Vec<u8>,
    /// Config and layers: digest → bytes.
    blobs: Vec<(String, Arc<Vec<u8>>)>,
}

#[derive(Default)]
struct Tally {
    manifests_ok: AtomicU64,
    blobs_ok: AtomicU64,
    ranges_ok: AtomicU64,
    aborted: AtomicU64,
    resets: AtomicU64,
    clean_errors: AtomicU64,
    status_500: AtomicU64,
    corrupt: AtomicU64,
    /// Anything else, described (the first few).
    unexpected: Mutex<Vec<String>>,
    unexpected_count: AtomicUsize,
}

impl Tally {
    fn unexpected(&self, what: String) {
        self.unexpected_count.fetch_add(1, Ordering::SeqCst);
        let mut u = self.unexpected.lock().expect("lock");
        if u.len() < 20 {
            u.push(what);
        }
    }
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Builds image `i` (config and 2-3 layers of 1 KiB to 1.5 MiB) and puts it upstream; some
/// layers arrive slowly, so that clients join fills in progress, and every layer of a `slow`
/// image does (about a second each: fills the upstream restart will cut).
fn publish(fake: &Fake, i: usize, slow: bool, rng: &mut Rng) -> Image {
    let repo = format!("soak/app{}", i % 4);
    let tag = format!("v{i}");
    let n = 2 + rng.below(2) as usize;
    let layers: Vec<Vec<u8>> = (0..n)
        .map(|j| {
            data(
                1024 + rng.below(1536 * 1024) as usize,
                (i * 10 + j) as u64 + 1000,
            )
        })
        .collect();
    let refs: Vec<&[u8]> = layers.iter().map(Vec::as_slice).collect();
    let (md, manifest) = fake.put_image(&repo, &tag, &refs);
    let mut blobs = Vec::new();
    let parsed = wharf::oci::manifest::parse_refs(&manifest).expect("our manifest parses");
    let config = parsed.config.expect("a config").to_string();
    let config_bytes = fake.blob_bytes(&config).expect("config stored");
    blobs.push((config, Arc::new(config_bytes)));
    for l in layers {
        let d = digest_of(&l);
        let delay = if slow {
            Duration::from_millis(1000 * 64 * 1024 / l.len().max(64 * 1024) as u64)
        } else {
            Duration::from_millis(3)
        };
        if slow || rng.below(3) == 0 {
            fake.set_behavior(
                &d,
                BlobBehavior {
                    chunk: 64 * 1024,
                    delay,
                    ..Default::default()
                },
            );
        }
        blobs.push((d, Arc::new(l)));
    }
    assert_eq!(digest_of(&manifest), md);
    Image {
        repo,
        tag,
        manifest,
        blobs,
    }
}

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// One GET; `None` if no response came (connection refused or reset before the head).
async fn send(
    c: &HttpClient,
    url: &str,
    headers: &[(&str, &str)],
) -> Option<http::Response<hyper::body::Incoming>> {
    let mut b = http::Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b.body(Empty::new()).expect("request");
    tokio::time::timeout(Duration::from_secs(60), c.request(req))
        .await
        .ok()?
        .ok()
}

/// Reads a body whole: its bytes, or the error that ended it.
async fn read_all(body: hyper::body::Incoming) -> Result<Vec<u8>, String> {
    match tokio::time::timeout(Duration::from_secs(60), body.collect()).await {
        Err(_) => Err("body stalled for 60 s".into()),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(c)) => Ok(c.to_bytes().to_vec()),
    }
}

/// Reads a body, hashing it: (length, digest), or the error that ended it.
async fn hash_all(mut body: hyper::body::Incoming) -> Result<(usize, String), String> {
    let mut h = Sha256::new();
    let mut n = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(60), body.frame()).await {
            Err(_) => return Err("body stalled for 60 s".into()),
            Ok(None) => return Ok((n, format!("sha256:{}", hex::encode(h.finalize())))),
            Ok(Some(Err(e))) => return Err(e.to_string()),
            Ok(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    h.update(d);
                    n += d.len();
                }
            }
        }
    }
}

/// Classifies a non-success answer: a clean error, a 500, or something unexpected.
async fn not_ok(tally: &Tally, what: &str, resp: http::Response<hyper::body::Incoming>) {
    let status = resp.status().as_u16();
    let body = read_all(resp.into_body()).await.unwrap_or_default();
    let code = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["errors"][0]["code"].as_str().map(str::to_string));
    match (status, code.as_deref()) {
        (500, _) => {
            tally.status_500.fetch_add(1, Ordering::SeqCst);
            tally.unexpected(format!("{what}: 500 {}", String::from_utf8_lossy(&body)));
        }
        (502 | 503, Some("UNAVAILABLE")) => {
            tally.clean_errors.fetch_add(1, Ordering::SeqCst);
        }
        _ => tally.unexpected(format!(
            "{what}: {status} {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        )),
    }
}

/// One client: pulls random published images until `deadline`.
async fn client(
    id: u64,
    base: String,
    images: Arc<Mutex<Vec<Arc<Image>>>>,
    tally: Arc<Tally>,
    deadline: Instant,
    seed: u64,
) {
    let mut rng = Rng(seed ^ id.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let c: HttpClient =
        Client::builder(hyper_util::rt::TokioExecutor::new()).build(HttpConnector::new());
    let token = match send(&c, &format!("{base}/token?service=wharf"), &[]).await {
        Some(r) if r.status() == 200 => {
            let b = read_all(r.into_body()).await.unwrap_or_default();
            serde_json::from_slice::<serde_json::Value>(&b)
                .ok()
                .and_then(|v| v["token"].as_str().map(str::to_string))
                .unwrap_or_default()
        }
        _ => String::new(),
    };
    let auth = format!("Bearer {token}");
    while Instant::now() < deadline {
        let img = {
            let list = images.lock().expect("lock");
            // Half the time the newest image (cold and coalescing), else any.
            let i = if rng.below(2) == 0 {
                list.len() - 1
            } else {
                rng.below(list.len() as u64) as usize
            };
            list[i].clone()
        };
        let url = format!("{base}/v2/{}/manifests/{}", img.repo, img.tag);
        let what = format!("client {id}: {}:{}", img.repo, img.tag);
        match send(&c, &url, &[("authorization", &auth)]).await {
            None => {
                tally.resets.fetch_add(1, Ordering::SeqCst);
                continue;
            }
            Some(r) if r.status() == 200 => match read_all(r.into_body()).await {
                Ok(b) if b == img.manifest => {
                    tally.manifests_ok.fetch_add(1, Ordering::SeqCst);
                }
                Ok(_) => {
                    tally.corrupt.fetch_add(1, Ordering::SeqCst);
                    tally.unexpected(format!("{what}: wrong manifest bytes"));
                }
                Err(_) => {
                    tally.resets.fetch_add(1, Ordering::SeqCst);
                }
            },
            Some(r) => {
                not_ok(&tally, &format!("{what} manifest"), r).await;
                continue;
            }
        }
        for (d, bytes) in &img.blobs {
            let url = format!("{base}/v2/{}/blobs/{d}", img.repo);
            let what = format!("{what} blob {d}");
            let roll = rng.below(10);
            let range = (roll == 0 && bytes.len() > 2).then(|| {
                let a = rng.below(bytes.len() as u64 - 1) as usize;
                let b = a + rng.below((bytes.len() - a) as u64) as usize;
                (a, b)
            });
            let range_header = range.map(|(a, b)| format!("bytes={a}-{b}"));
            let mut headers = vec![("authorization", auth.as_str())];
            if let Some(h) = &range_header {
                headers.push(("range", h.as_str()));
            }
            let Some(r) = send(&c, &url, &headers).await else {
                tally.resets.fetch_add(1, Ordering::SeqCst);
                continue;
            };
            let status = r.status().as_u16();
            match (status, range) {
                (200, None) if roll == 1 => {
                    // Hang up after the first chunk.
                    let mut body = r.into_body();
                    let _ = tokio::time::timeout(Duration::from_secs(60), body.frame()).await;
                    drop(body);
                    tally.aborted.fetch_add(1, Ordering::SeqCst);
                }
                (200, None) => match hash_all(r.into_body()).await {
                    Ok((n, got)) if n == bytes.len() && got == *d => {
                        tally.blobs_ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok((n, got)) => {
                        tally.corrupt.fetch_add(1, Ordering::SeqCst);
                        tally.unexpected(format!("{what}: {n} bytes with digest {got}"));
                    }
                    Err(_) => {
                        tally.resets.fetch_add(1, Ordering::SeqCst);
                    }
                },
                (206, Some((a, b))) => match read_all(r.into_body()).await {
                    Ok(got) if got == bytes[a..=b] => {
                        tally.ranges_ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(got) => {
                        tally.corrupt.fetch_add(1, Ordering::SeqCst);
                        tally.unexpected(format!(
                            "{what}: range {a}-{b}: {} wrong bytes",
                            got.len()
                        ));
                    }
                    Err(_) => {
                        tally.resets.fetch_add(1, Ordering::SeqCst);
                    }
                },
                (200 | 206, _) => tally.unexpected(format!("{what}: {status} for {range:?}")),
                _ => not_ok(&tally, &what, r).await,
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "run by `soak::soak`, in a process of its own"]
async fn soak_in_own_process() {
    let secs = env_or("WHARF_SOAK_SECS", 10);
    let clients = env_or("WHARF_SOAK_CLIENTS", 50);
    let seed = env_or(
        "WHARF_SOAK_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    );
    println!("soak: {secs} s, {clients} clients, WHARF_SOAK_SEED={seed}");
    let fds_at_start = fds();
    let mut rng = Rng(seed | 1);
    let fake = Fake::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let toml = format!(
        r#"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
data_dir = "{}"
[fill]
idle_timeout = "5s"
[[upstream]]
name = "up.test"
url = "{}"
default = true
breaker_cooldown = "1s"
"#,
        dir.path().display(),
        fake.url()
    );
    let w = support::wharf_toml(&toml).await;
    let base = format!("http://{}", w.addr);
    let images = Arc::new(Mutex::new(vec![Arc::new(publish(
        &fake, 0, false, &mut rng,
    ))]));
    let tally = Arc::new(Tally::default());

    // Warm up with one client pulling the first image, then cut the upstream's idle
    // connections: the baseline has RocksDB, listeners and runtime open, no pooled sockets.
    client(
        u64::MAX,
        base.clone(),
        images.clone(),
        tally.clone(),
        Instant::now() + Duration::from_millis(300),
        seed,
    )
    .await;
    fake.restart(Duration::ZERO).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fds_baseline = fds();
    let rss_baseline = rss_kib();

    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let handles: Vec<_> = (0..clients)
        .map(|id| {
            tokio::spawn(client(
                id,
                base.clone(),
                images.clone(),
                tally.clone(),
                deadline,
                seed,
            ))
        })
        .collect();
    // Publish a new image every so often (cold pulls all along); restart the upstream once,
    // half-way; note RSS half-way.
    let total_images = 12;
    let mut published = 1;
    let mut restarted = false;
    let mut slow_published = false;
    let mut rss_mid = 0;
    let mut accepted_at_restart = 0;
    loop {
        let elapsed = started.elapsed();
        if elapsed >= Duration::from_secs(secs) {
            break;
        }
        let due =
            1 + (elapsed.as_secs_f64() / (secs as f64 * 0.8) * (total_images - 1) as f64) as usize;
        while published < due.min(total_images) {
            let img = publish(&fake, published, false, &mut rng);
            images.lock().expect("lock").push(Arc::new(img));
            published += 1;
        }
        if !slow_published && elapsed + Duration::from_millis(500) >= Duration::from_secs(secs) / 2
        {
            // The newest image, slow, half a second before the restart: fills are in progress
            // when the upstream goes down.
            let img = publish(&fake, 100, true, &mut rng);
            images.lock().expect("lock").push(Arc::new(img));
            slow_published = true;
        }
        if !restarted && elapsed >= Duration::from_secs(secs) / 2 {
            rss_mid = rss_kib();
            println!("soak: restarting the upstream (down for 1 s)");
            fake.restart(Duration::from_secs(1)).await;
            accepted_at_restart = fake.connections();
            restarted = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for h in handles {
        h.await.expect("a client panicked");
    }
    let rss_end = rss_kib();
    let t = scrape_settled(&w).await;
    let n = |o: &AtomicU64| o.load(Ordering::SeqCst);
    let unexpected = tally.unexpected.lock().expect("lock").clone();
    println!(
        "soak: images {published}, manifests ok {}, blobs ok {}, ranges ok {}, aborted {}, \
         resets {}, clean errors {}, 500s {}, corrupt {}, unexpected {}; fills committed {}; \
         RSS KiB baseline {rss_baseline} mid {rss_mid} end {rss_end}",
        n(&tally.manifests_ok),
        n(&tally.blobs_ok),
        n(&tally.ranges_ok),
        n(&tally.aborted),
        n(&tally.resets),
        n(&tally.clean_errors),
        n(&tally.status_500),
        n(&tally.corrupt),
        tally.unexpected_count.load(Ordering::SeqCst),
        sample(&t, r#"wharf_fills_total{result="committed"}"#),
    );
    assert_eq!(n(&tally.corrupt), 0, "corrupt bodies: {unexpected:#?}");
    assert_eq!(n(&tally.status_500), 0, "500s: {unexpected:#?}");
    assert!(unexpected.is_empty(), "unexpected answers: {unexpected:#?}");
    // The run did what it claims.
    assert!(restarted, "the upstream was not restarted");
    assert!(
        n(&tally.resets) + n(&tally.clean_errors) > 0,
        "the upstream restart went unnoticed: no reset body, no 502"
    );
    assert!(
        published >= total_images,
        "only {published} images published"
    );
    assert!(
        n(&tally.blobs_ok) >= clients && n(&tally.manifests_ok) >= clients,
        "too little traffic to mean anything"
    );
    assert!(n(&tally.aborted) > 0, "no client hung up mid-body");
    let committed = sample(&t, r#"wharf_fills_total{result="committed"}"#);
    assert!(
        committed >= 3.0 * total_images as f64,
        "cold pulls: only {committed} fills committed"
    );
    assert!(
        fake.connections() > accepted_at_restart,
        "nothing reached the upstream after its restart"
    );
    assert_eq!(sample(&t, "wharf_fills_in_progress"), 0.0, "fills left");
    // RSS: the second half of the run adds little (no per-request leak).
    assert!(
        rss_end <= rss_mid + rss_mid / 4 + 64 * 1024,
        "RSS grew from {rss_mid} KiB half-way to {rss_end} KiB"
    );

    // Every client is gone; cut the upstream's idle connections: back to the baseline.
    fake.restart(Duration::ZERO).await;
    let mut now = fds();
    for _ in 0..200 {
        if now <= fds_baseline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        now = fds();
    }
    assert!(
        now <= fds_baseline,
        "{now} file descriptors open, {fds_baseline} before the run"
    );
    let t = scrape_settled(&w).await;
    assert_eq!(sample(&t, "wharf_fill_waiters"), 0.0, "waiters left");
    assert!(entries(dir.path(), "tmp").is_empty(), "temp files left");
    w.shutdown().await;
    drop(fake);
    println!(
        "soak: fds {fds_at_start} at start, {fds_baseline} baseline, {now} at the end, {} after shutdown",
        fds()
    );
}
