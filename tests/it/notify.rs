//! Event notifications (`[[notify]]`) from an in-process Wharf in front of the fake upstream
//! with token auth: a loopback webhook gets a `pull` of the private image as alice (and the
//! `fill`s and `denied`s around it, with no credential in any), a receiver that is down or
//! answers 500 slows no pull and its failures are counted, the file sink writes JSON lines
//! and reopens its file, an eviction pass is one `evict` event.

use crate::auth::{Who, World, WRONG};
use crate::support::hook::Receiver;
use crate::support::scrape::{sample, scrape};
use crate::support::{eventually, ALICE};
use std::time::Duration;

fn webhook(name: &str, url: &str) -> String {
    format!(
        "[[notify]]\nname = \"{name}\"\nurl = \"{url}\"\nheaders = {{ Authorization = \"Bearer hook-secret\" }}\ntimeout = \"1s\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_gets_a_pull_of_a_private_image_as_alice() {
    let hook = Receiver::start(200);
    let world = World::start(&webhook("hook", &hook.url()), "").await;
    for (part, _) in world.private.parts() {
        let r = Who::Alice.get(&world.url("private/app", &part)).await;
        assert_eq!(r.status, 200, "{part}");
    }
    let r = Who::WrongPassword
        .get(&world.url("private/app", "manifests/v1"))
        .await;
    assert_eq!(r.status, 401);
    let r = Who::Bob
        .get(&world.url("private/app", "manifests/v1"))
        .await;
    assert!(matches!(r.status.as_u16(), 401 | 403), "{}", r.status);
    let done = eventually(Duration::from_secs(10), || {
        let ev = hook.events();
        let denied = |who: &str| {
            ev.iter()
                .any(|e| e["action"] == "denied" && e["actor"]["name"] == who)
        };
        ev.iter().filter(|e| e["action"] == "pull").count() >= 2
            && denied("alice")
            && denied("bob")
            && ev.iter().any(|e| e["action"] == "fill")
    })
    .await;
    let events = hook.events();
    assert!(done, "events: {events:#?}");
    let pulls: Vec<_> = events.iter().filter(|e| e["action"] == "pull").collect();
    for p in &pulls {
        assert_eq!(p["actor"]["name"], "alice", "{p}");
        assert_eq!(p["target"]["digest"], world.private.digest.as_str(), "{p}");
        assert_eq!(p["target"]["repository"], "private/app", "{p}");
        assert_eq!(p["target"]["size"], world.private.manifest.len(), "{p}");
        assert!(
            p["request"]["addr"]
                .as_str()
                .is_some_and(|a| a.starts_with("127.0.0.1:")),
            "{p}"
        );
        assert_eq!(p["request"]["method"], "GET");
        assert!(
            p["source"]["instanceID"]
                .as_str()
                .is_some_and(|s| !s.is_empty()),
            "{p}"
        );
    }
    assert!(
        pulls.iter().any(|p| p["target"]["tag"] == "v1"),
        "one pull by tag"
    );
    let denied: Vec<_> = events.iter().filter(|e| e["action"] == "denied").collect();
    // The challenges of the token dance (no credentials yet) are not refusals.
    assert!(
        denied.iter().all(|d| d["actor"]["name"].is_string()),
        "{denied:#?}"
    );
    assert!(
        denied
            .iter()
            .any(|d| d["actor"]["name"] == "alice" && d["wharf"]["status"] == 401),
        "{denied:#?}"
    );
    assert!(
        denied.iter().any(|d| d["actor"]["name"] == "bob"),
        "{denied:#?}"
    );
    for d in hook.deliveries() {
        assert_eq!(
            d.headers["content-type"],
            "application/vnd.docker.distribution.events.v1+json"
        );
        assert_eq!(d.headers["authorization"], "Bearer hook-secret");
        let body = String::from_utf8_lossy(&d.body);
        for secret in [ALICE.1, WRONG.1, "hook-secret", "Bearer", "Basic "] {
            assert!(!body.contains(secret), "{secret:?} in an event: {body}");
        }
    }
    world.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_slows_no_pull_and_is_counted() {
    let failing = Receiver::start(500);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed_url = format!("http://{}/", closed.local_addr().expect("addr"));
    drop(closed);
    let top = format!(
        "{}{}",
        webhook("failing", &failing.url()),
        webhook("closed", &closed_url)
    );
    let world = World::start(&top, "").await;
    let started = std::time::Instant::now();
    for _ in 0..3 {
        for (part, content) in world.private.parts() {
            let r = Who::Alice.get(&world.url("private/app", &part)).await;
            assert_eq!(r.status, 200, "{part}");
            assert!(r.bytes().as_ref() == content.as_slice());
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "pulls took {:?}",
        started.elapsed()
    );
    let admin = world.w.admin_addr;
    let failed = |text: &str, s: &str| {
        sample(
            text,
            &format!("wharf_notify_deliveries_total{{result=\"failed\",sink=\"{s}\"}}"),
        )
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut text = scrape(admin).await;
    while !(failed(&text, "failing") > 0.0 && failed(&text, "closed") > 0.0) {
        assert!(
            std::time::Instant::now() < deadline,
            "failures not counted: {text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        text = scrape(admin).await;
    }
    // More events than a queue holds while its task waits out its backoff: drops, counted,
    // and every pull still served.
    let by_digest = world.url(
        "private/app",
        &format!("manifests/{}", world.private.digest),
    );
    for _ in 0..1100 {
        assert_eq!(Who::AliceBasic.get(&by_digest).await.status, 200);
    }
    let text = scrape(admin).await;
    for s in ["failing", "closed"] {
        let dropped = sample(
            &text,
            &format!("wharf_notify_dropped_total{{sink=\"{s}\"}}"),
        );
        assert!(dropped > 0.0, "{s}: nothing dropped\n{text}");
    }
    for s in ["failing", "closed"] {
        assert_eq!(
            sample(
                &text,
                &format!("wharf_notify_deliveries_total{{result=\"delivered\",sink=\"{s}\"}}")
            ),
            0.0
        );
    }
    // Back up: later events get through.
    failing.set_status(200);
    let r = Who::Alice
        .get(&world.url("private/app", "manifests/v1"))
        .await;
    assert_eq!(r.status, 200);
    assert!(eventually(Duration::from_secs(10), || !failing.events().is_empty()).await);
    world.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_sink_writes_json_lines_and_reopens() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("events.jsonl");
    let top = format!(
        "[[notify]]\nfile = {:?}\nevents = [\"pull\", \"fill\"]\n",
        path.display().to_string()
    );
    let world = World::start(&top, "").await;
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    for (part, _) in world.private.parts() {
        assert_eq!(
            Who::Alice
                .get(&world.url("private/app", &part))
                .await
                .status,
            200
        );
    }
    // Two pulls (tag, digest), the manifest's fill and a fill per blob.
    let want = 3 + world.private.blobs.len();
    assert!(
        eventually(Duration::from_secs(10), || read(&path).lines().count()
            >= want)
        .await,
        "{}",
        read(&path)
    );
    for line in read(&path).lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("one JSON object a line");
        assert!(matches!(v["action"].as_str(), Some("pull" | "fill")), "{v}");
        assert!(v.get("events").is_none(), "lines are events, not envelopes");
    }
    let rotated = dir.path().join("events.jsonl.1");
    std::fs::rename(&path, &rotated).expect("rename");
    world.w.notify.reopen();
    assert_eq!(
        Who::Alice
            .get(&world.url("private/app", "manifests/v1"))
            .await
            .status,
        200
    );
    assert!(
        eventually(Duration::from_secs(10), || read(&path).lines().count() == 1).await,
        "a new file"
    );
    assert!(read(&path).contains("\"pull\""));
    assert_eq!(
        read(&rotated).lines().count(),
        want,
        "the old file is left as it was"
    );
    world.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eviction_pass_is_one_evict_event() {
    use crate::capacity::Image;
    let fake = crate::support::Fake::start().await;
    let images: Vec<Image> = (0..6)
        .map(|i| Image::put(&fake, &format!("org/img{i}"), "v1", 1 << 20, 300 + i))
        .collect();
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("events.jsonl");
    let top = format!(
        "[cache]\nmax_size = \"3MiB\"\n[[notify]]\nfile = {:?}\nevents = [\"evict\"]\n",
        path.display().to_string()
    );
    let w = crate::support::wharf_with(dir.path(), "up.test", &fake.url(), "", &top).await;
    for img in &images {
        img.pull(&fake, w.addr).await;
    }
    let read = || std::fs::read_to_string(&path).unwrap_or_default();
    // What the events say was evicted: (events, blobs + manifests).
    let told = || {
        let mut n = 0.0;
        for line in read().lines() {
            let e: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            assert_eq!(e["action"], "evict", "{e}");
            assert!(e["target"]["size"].as_u64().is_some_and(|n| n > 0), "{e}");
            n += e["wharf"]["blobs"].as_f64().expect("blobs");
            n += e["wharf"]["manifests"].as_f64().expect("manifests");
        }
        (read().lines().count(), n)
    };
    // Passes run in the background: wait until the events add up to the evictions counted.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let evicted = sample(&scrape(w.admin_addr).await, "wharf_evictions_total");
        let (events, n) = told();
        if evicted > 0.0 && n == evicted {
            assert!(events < 6, "batched per pass, not per blob:\n{}", read());
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{evicted} evicted, events say {n}:\n{}",
            read()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    w.shutdown().await;
}
