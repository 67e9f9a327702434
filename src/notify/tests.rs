use super::deliver::{Deliver, Policy, Worker};
use super::*;
use crate::auth::{Client, Credentials};
use crate::config::Config;
use crate::metrics::Delivery;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

fn metrics() -> Arc<Metrics> {
    Arc::new(Metrics::new(&[], 1))
}

fn addr() -> std::net::SocketAddr {
    "127.0.0.1:5000".parse().expect("addr")
}

fn pull_event(client: &Client) -> Event {
    let target = Target {
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        digest: "sha256:abc".into(),
        size: 7,
        length: 7,
        repository: "team/app".into(),
        url: "http://wharf/v2/team/app/manifests/sha256:abc".into(),
        tag: "v1".into(),
    };
    let req = RequestInfo::new(9, "10.0.0.1:4242".into(), "wharf:5000", "GET", "skopeo/1.0");
    Event::pull(target, req, client, "hub", "miss")
}

#[test]
fn the_envelope_has_distributions_field_names() {
    let e = Arc::new(pull_event(&Client::new(Credentials::basic("alice", "pw"))));
    let v: serde_json::Value = serde_json::from_slice(&envelope(&[e])).expect("json");
    let ev = &v["events"][0];
    for key in [
        "id",
        "timestamp",
        "action",
        "target",
        "request",
        "actor",
        "source",
    ] {
        assert!(ev.get(key).is_some(), "{key} missing in {ev}");
    }
    assert_eq!(ev["action"], "pull");
    let t = &ev["target"];
    assert_eq!(t["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(
        (t["digest"].as_str(), t["size"].as_u64()),
        (Some("sha256:abc"), Some(7))
    );
    assert_eq!(
        (t["repository"].as_str(), t["tag"].as_str()),
        (Some("team/app"), Some("v1"))
    );
    assert!(t["url"]
        .as_str()
        .is_some_and(|u| u.ends_with("/manifests/sha256:abc")));
    let r = &ev["request"];
    for (k, want) in [
        ("id", "9"),
        ("addr", "10.0.0.1:4242"),
        ("host", "wharf:5000"),
        ("method", "GET"),
        ("useragent", "skopeo/1.0"),
    ] {
        assert_eq!(r[k], want, "request.{k}");
    }
    assert_eq!(ev["actor"]["name"], "alice");
    assert!(ev["source"].get("instanceID").is_some() && ev["source"].get("addr").is_some());
    assert_eq!(
        (
            ev["wharf"]["upstream"].as_str(),
            ev["wharf"]["result"].as_str()
        ),
        (Some("hub"), Some("miss"))
    );
    let ts = ev["timestamp"].as_str().expect("timestamp");
    assert!(humantime::parse_rfc3339(ts).is_ok(), "{ts}");
    let lines = json_lines(&[
        Arc::new(Event::evict(2, 1, 10)),
        Arc::new(Event::fill("hub", "a/b", "sha256:d", 3)),
    ]);
    let lines: Vec<&[u8]> = lines
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines.len(), 2);
    let first: serde_json::Value = serde_json::from_slice(lines[0]).expect("line");
    assert_eq!(
        (first["action"].as_str(), first["wharf"]["blobs"].as_u64()),
        (Some("evict"), Some(2))
    );
}

#[test]
fn no_credential_reaches_an_event() {
    let basic = Client::new(Credentials::basic("alice", "hunter2-password"));
    let token = Client::bound(
        Credentials::basic("bob", "tok3n-s3cret"),
        vec!["hub".into()],
    );
    for (c, secret, user) in [
        (&basic, "hunter2-password", "alice"),
        (&token, "tok3n-s3cret", "bob"),
    ] {
        let json = String::from_utf8(envelope(&[Arc::new(pull_event(c))])).expect("utf8");
        assert!(!json.contains(secret), "{json}");
        assert!(json.contains(&format!("\"name\":\"{user}\"")), "{json}");
        let denied = Event::denied("hub", "a/b", "unauthorized", 401).actor(c);
        let json = String::from_utf8(json_lines(&[Arc::new(denied)])).expect("utf8");
        assert!(
            !json.contains(secret) && !json.to_lowercase().contains("authorization"),
            "{json}"
        );
    }
    let anon = serde_json::to_value(pull_event(&Client::anonymous())).expect("json");
    assert_eq!(anon["actor"], serde_json::json!({}));
}

fn cfg(toml: &str) -> Vec<NotifyConfig> {
    Config::from_toml_str(toml).expect("config").notify
}

#[tokio::test]
async fn events_go_only_to_the_sinks_that_want_them() {
    let dir = tempfile::tempdir().expect("dir");
    let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    let toml = format!(
        "[[notify]]\nfile = {a:?}\nevents = [\"pull\"]\n[[notify]]\nfile = {b:?}\nevents = [\"fill\", \"denied\"]\n"
    );
    let n = Notifier::start(&cfg(&toml), addr(), metrics()).expect("notifier");
    assert!(n.wants(NotifyEvent::Pull) && !n.wants(NotifyEvent::Evict));
    n.emit(pull_event(&Client::anonymous()));
    n.emit(Event::fill("hub", "a/b", "sha256:d", 3));
    n.emit(Event::evict(1, 0, 1));
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    for _ in 0..100 {
        if read(&a).lines().count() == 1 && read(&b).lines().count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(read(&a).contains("\"action\":\"pull\""), "{}", read(&a));
    assert_eq!(read(&b).lines().count(), 1, "{}", read(&b));
    assert!(read(&b).contains("\"action\":\"fill\""), "{}", read(&b));
    assert!(!read(&a).contains("evict") && !read(&b).contains("evict"));
}

/// Never finishes a delivery.
struct Stuck;

#[async_trait::async_trait]
impl Deliver for Stuck {
    async fn deliver(&mut self, _: &[Arc<Event>]) -> Result<(), String> {
        std::future::pending().await
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_full_queue_drops_and_counts_without_waiting() {
    let m = metrics();
    m.precreate_notify(&["s".into()]);
    let (tx, rx) = mpsc::channel(2);
    let worker = Worker {
        name: "s".into(),
        timeout: Duration::from_secs(3600),
        policy: Policy {
            queue: 2,
            batch: 1,
            attempts: 1,
            backoff: Duration::ZERO,
        },
        metrics: m.clone(),
        reopen: Default::default(),
    };
    tokio::spawn(worker.run(rx, Box::new(Stuck)));
    let n = Notifier {
        sinks: vec![Sink {
            name: "s".into(),
            events: NotifyEvent::ALL.to_vec(),
            tx,
            reopen: Default::default(),
        }],
        source: Source::default(),
        metrics: Some(m.clone()),
    };
    let started = tokio::time::Instant::now();
    for _ in 0..10 {
        n.emit(Event::evict(1, 1, 1));
    }
    assert!(started.elapsed() < Duration::from_secs(1));
    // Nothing ran in between on this thread: the queue holds 2, the 8 others were dropped.
    assert_eq!(m.notify_dropped.with_label_values(&["s"]).get(), 8);
    tokio::task::yield_now().await;
    // The worker took one (stuck on it): one more fits, the next is dropped.
    n.emit(Event::evict(1, 1, 1));
    n.emit(Event::evict(1, 1, 1));
    assert_eq!(m.notify_dropped.with_label_values(&["s"]).get(), 9);
}

/// Fails its first `fail` deliveries, recording when each attempt came.
struct Flaky {
    fail: u32,
    calls: Arc<AtomicU32>,
    at: Arc<std::sync::Mutex<Vec<tokio::time::Instant>>>,
}

#[async_trait::async_trait]
impl Deliver for Flaky {
    async fn deliver(&mut self, _: &[Arc<Event>]) -> Result<(), String> {
        self.at
            .lock()
            .expect("lock")
            .push(tokio::time::Instant::now());
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if n < self.fail {
            Err("500".into())
        } else {
            Ok(())
        }
    }
}

async fn run_flaky(fail: u32) -> (Arc<Metrics>, u32, Vec<tokio::time::Instant>) {
    let m = metrics();
    m.precreate_notify(&["f".into()]);
    let (calls, at) = (
        Arc::new(AtomicU32::new(0)),
        Arc::new(std::sync::Mutex::new(Vec::new())),
    );
    let policy = Policy {
        queue: 8,
        batch: 8,
        attempts: 3,
        backoff: Duration::from_millis(100),
    };
    let worker = Worker {
        name: "f".into(),
        timeout: Duration::from_secs(1),
        policy,
        metrics: m.clone(),
        reopen: Default::default(),
    };
    let (tx, rx) = mpsc::channel(8);
    tx.try_send(Arc::new(Event::evict(1, 1, 1))).expect("send");
    tx.try_send(Arc::new(Event::evict(1, 1, 1))).expect("send");
    drop(tx);
    worker
        .run(
            rx,
            Box::new(Flaky {
                fail,
                calls: calls.clone(),
                at: at.clone(),
            }),
        )
        .await;
    let at = at.lock().expect("lock").clone();
    (m, calls.load(Ordering::SeqCst), at)
}

#[tokio::test(start_paused = true)]
async fn a_failing_sink_is_retried_with_backoff_then_given_up() {
    let (m, calls, at) = run_flaky(2).await;
    assert_eq!(calls, 3, "two failures, then delivered");
    assert!(
        at[1] - at[0] >= Duration::from_millis(100) && at[2] - at[1] >= Duration::from_millis(200),
        "{at:?}"
    );
    let count = |r: Delivery| {
        m.notify_deliveries
            .with_label_values(&["f", r.as_str()])
            .get()
    };
    assert_eq!(
        (count(Delivery::Delivered), count(Delivery::Failed)),
        (2, 0),
        "one batch of two"
    );
    let (m, calls, _) = run_flaky(u32::MAX).await;
    assert_eq!(calls, 3, "attempts bound the retries");
    let count = |r: Delivery| {
        m.notify_deliveries
            .with_label_values(&["f", r.as_str()])
            .get()
    };
    assert_eq!(
        (count(Delivery::Delivered), count(Delivery::Failed)),
        (0, 2)
    );
}

#[tokio::test]
async fn the_file_sink_reopens_a_moved_file() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("events.jsonl");
    let n = Notifier::start(
        &cfg(&format!("[[notify]]\nfile = {path:?}\n")),
        addr(),
        metrics(),
    )
    .expect("notifier");
    let wait_for = |p: std::path::PathBuf, lines: usize| async move {
        for _ in 0..100 {
            if std::fs::read_to_string(&p)
                .unwrap_or_default()
                .lines()
                .count()
                >= lines
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{} has not {lines} lines", p.display());
    };
    n.emit(Event::evict(1, 1, 1));
    wait_for(path.clone(), 1).await;
    let rotated = dir.path().join("events.jsonl.1");
    std::fs::rename(&path, &rotated).expect("rename");
    n.reopen();
    n.emit(Event::fill("hub", "a/b", "sha256:d", 3));
    wait_for(path.clone(), 1).await;
    assert_eq!(
        std::fs::read_to_string(&rotated)
            .expect("old")
            .lines()
            .count(),
        1
    );
    assert!(std::fs::read_to_string(&path)
        .expect("new")
        .contains("\"fill\""));
}
