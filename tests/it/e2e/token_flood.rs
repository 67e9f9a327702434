//! Issue 18, finding 2: one anonymous client cannot grow Wharf's memory through `/token`.
//! The `wharf` binary runs as a child (its RSS is its own), in front of the in-process fake
//! upstream with token auth; floods of token requests with huge, unique or no passwords leave
//! its resident memory about where it was.

use super::proc;
use super::upstream::make_certs;
use super::wharf::Wharf;
use crate::support::{basic, send, Fake};
use bytes::Bytes;
use futures_util::StreamExt;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Sends `n` token POSTs (16 at a time) built by `form`; the statuses seen.
async fn flood(url: &str, n: usize, form: impl Fn(usize) -> String) -> Vec<u16> {
    let requests = (0..n).map(|i| {
        let body = Bytes::from(form(i));
        async move {
            let h = [("content-type", "application/x-www-form-urlencoded")];
            send("POST", url, &h, body).await.status.as_u16()
        }
    });
    futures_util::stream::iter(requests)
        .buffer_unordered(16)
        .collect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_a_token_flood_does_not_grow_memory() {
    if !proc::tools_present("e2e_a_token_flood_does_not_grow_memory") {
        return;
    }
    let fake = Fake::start_with_auth().await;
    let (_, private) = fake.put_image("private/app", "v1", &[b"alice's layer"]);
    let dir = tempfile::tempdir().expect("tmp");
    let certs = make_certs(dir.path());
    let (path, url, ca) = (dir.path().to_path_buf(), fake.url(), certs.ca_pem.clone());
    let wharf = tokio::task::spawn_blocking(move || Wharf::start(&path, &url, &ca))
        .await
        .expect("start");
    let token_url = format!("http://{}/token", wharf.host());
    // Alice's session, opened before the flood, must outlive it.
    let scope = "scope=repository:private/app:pull";
    let alice_basic = basic("alice", "alicepw");
    let r = crate::support::raw(
        "GET",
        &format!("{token_url}?service=wharf&{scope}"),
        &[("authorization", &alice_basic)],
    )
    .await;
    assert_eq!(r.status, 200);
    let alice = format!("Bearer {}", r.json()["token"].as_str().expect("token"));
    let manifest = format!("http://{}/v2/private/app/manifests/v1", wharf.host());
    // Warm up (allocator arenas, pools), then measure.
    let _ = flood(&token_url, 200, |_| {
        "grant_type=password&service=wharf".into()
    })
    .await;
    let before = rss_kib(wharf.proc.pid());
    let huge = "p".repeat(60_000);
    let statuses = flood(&token_url, 2000, |_| {
        format!("grant_type=password&username=mallory&password={huge}&service=wharf")
    })
    .await;
    assert!(
        statuses.iter().all(|s| *s == 401),
        "60 KB passwords refused"
    );
    let unique = flood(&token_url, 2000, |i| {
        let pw = format!("{i:08}{}", "x".repeat(4000));
        format!("grant_type=password&username=mallory&password={pw}&service=wharf")
    })
    .await;
    assert!(
        unique.iter().all(|s| matches!(s, 401 | 429)),
        "unique wrong passwords refused"
    );
    let anonymous = flood(&token_url, 2000, |_| {
        "grant_type=password&service=wharf".into()
    })
    .await;
    assert!(anonymous.iter().all(|s| *s == 200));
    let after = rss_kib(wharf.proc.pid());
    let grown = after.saturating_sub(before);
    eprintln!("token flood: RSS {before} KiB -> {after} KiB");
    assert!(
        grown < 40 * 1024,
        "RSS grew by {grown} KiB under a /token flood"
    );
    assert!(
        // 5 refusals throttle the name; at most 2 checks of it run at once.
        fake.token_requests(Some("mallory")) <= 6,
        "guesses reached the upstream"
    );
    // Alice's session still works, and so does a new login.
    let r = crate::support::raw("GET", &manifest, &[("authorization", &alice)]).await;
    assert_eq!(r.status, 200, "alice's token after the flood");
    assert_eq!(r.bytes().as_ref(), private.as_slice());
    let r = crate::support::raw(
        "GET",
        &format!("{token_url}?service=wharf"),
        &[("authorization", &alice_basic)],
    )
    .await;
    assert_eq!(r.status, 200);
    drop(wharf);
}
