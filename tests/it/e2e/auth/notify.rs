//! Notifications end to end: `skopeo copy` of the private image as alice through the `wharf`
//! binary, in front of `docker-registry` behind token auth, produces a `pull` event with actor
//! `alice` and the image's digest at a loopback webhook; the file sink writes JSON lines and,
//! after the file is renamed and the process gets `SIGHUP`, writes to a new file.

use std::time::{Duration, Instant};

use super::super::proc;
use super::super::wharf::{quoted, Wharf};
use super::{alice, AuthSetup, PRIVATE};
use crate::support::hook::Receiver;

/// Polls `f` every 100 ms for at most 20 s.
fn within_20s(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let parse = |l: &str| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
    text.lines().map(parse).collect()
}

#[test]
fn e2e_skopeo_as_alice_produces_a_pull_event() {
    if !proc::tools_present("e2e_skopeo_as_alice_produces_a_pull_event") {
        return;
    }
    let s = AuthSetup::new();
    let hook = Receiver::start(200);
    let file = s.path("events.jsonl");
    let keys = format!(
        "tag_ttl = \"1s\"\n\n[[notify]]\nname = \"hook\"\nurl = \"{}\"\n\n\
         [[notify]]\nname = \"file\"\nfile = {}\nevents = [\"pull\"]\n",
        hook.url(),
        quoted(&file)
    );
    let wharf = Wharf::start_with(s.dir.path(), &s.upstream.url(), &s.certs.ca_pem, &keys, &[]);
    let logs = || s.logs(&wharf.proc.logs());
    let alice = alice();
    let flags = ["--src-tls-verify=false", "--src-creds", &alice];
    let source = format!("docker://{}/{PRIVATE}:v1", wharf.host());
    s.pull_ok(&s.private, &source, &flags, "notify-alice", &logs);
    let digest = s.private.expected.digest.clone();
    let is_pull = |e: &serde_json::Value| {
        e["action"] == "pull"
            && e["actor"]["name"] == "alice"
            && e["target"]["digest"] == digest.as_str()
            && e["target"]["repository"] == PRIVATE
    };
    let got = within_20s(|| hook.events().iter().any(is_pull));
    assert!(
        got,
        "no pull event as alice for {digest}: {:#?}\n{}",
        hook.events(),
        logs()
    );
    for d in hook.deliveries() {
        let body = String::from_utf8_lossy(&d.body);
        assert!(
            !body.contains(super::super::token_server::PASSWORD),
            "a password in {body}"
        );
    }
    assert!(
        within_20s(|| lines(&file).iter().any(is_pull)),
        "file: {:?}",
        lines(&file)
    );

    // logrotate: move the file away, SIGHUP, the next event goes to a new file.
    let rotated = s.path("events.jsonl.1");
    std::fs::rename(&file, &rotated).expect("rename");
    let pid = wharf.proc.pid().to_string();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status();
    assert!(status.is_ok_and(|s| s.success()), "kill -HUP");
    std::thread::sleep(Duration::from_millis(300));
    s.pull_ok(&s.private, &source, &flags, "notify-alice-again", &logs);
    assert!(
        within_20s(|| lines(&file).iter().any(is_pull)),
        "no new file after SIGHUP\n{}",
        logs()
    );
    assert!(
        lines(&rotated).iter().all(|e| e["action"] == "pull"),
        "the old file stays"
    );
}
