//! `kill -9` of `wharf serve` while 16 clients pull large cold blobs that the upstream serves
//! slowly; then `wharf fsck` must find nothing wrong, a restart must clear `tmp/`, and every
//! blob must come back with the right bytes. Several rounds, each killing at a random moment
//! (the seed is printed; `WHARF_CRASH_SEED=<n>` replays it, `WHARF_CRASH_ROUNDS=<n>` soaks).

use super::{WharfProc, World};
use crate::support::scrape::{blob_path, entries};
use crate::support::{digest_of, BlobBehavior, Resp};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Rounds unless `WHARF_CRASH_ROUNDS` says otherwise.
const ROUNDS: usize = 4;
const MIB: usize = 1 << 20;

/// xorshift64*: good enough for kill delays and blob contents.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// `len` pseudo-random bytes, 8 at a time.
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(len);
        v
    }
}

fn seed() -> u64 {
    if let Some(s) = std::env::var("WHARF_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return s;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    nanos | 1
}

/// Starts 16 concurrent raw `GET`s (with a bearer token), spread over `digests`.
fn start_clients(
    w: &World,
    wharf: &WharfProc,
    digests: &[String],
) -> Vec<tokio::task::JoinHandle<Resp>> {
    let bearer = format!("Bearer {}", wharf.token(w));
    (0..16)
        .map(|i| {
            let url = wharf.blob_url("org/app", &digests[i % digests.len()]);
            let bearer = bearer.clone();
            w.rt.spawn(async move {
                crate::support::raw("GET", &url, &[("authorization", bearer.as_str())]).await
            })
        })
        .collect()
}

#[test]
fn e2e_kill_9_during_concurrent_fills_leaves_a_consistent_cache() {
    let started = Instant::now();
    // Small enough that the later rounds also evict.
    let w = World::new("crash", "[cache]\nmax_size = \"64MiB\"\n");
    let seed = seed();
    eprintln!("e2e crash: WHARF_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let data_dir = w.data_dir();
    let mut all: Vec<String> = Vec::new();
    let mut wharf = w.start(Duration::ZERO);
    let rounds = std::env::var("WHARF_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(ROUNDS);
    for round in 0..rounds {
        // Fresh cold blobs of 8-20 MiB, 256 KiB every 0-8 ms: fills that commit anywhere
        // from a few tens of ms to ~0.7 s after they start, so kills land before, during and
        // after commits.
        let fresh: Vec<String> = (0..3)
            .map(|_| {
                let len = (8 + (rng.next() % 13) as usize) * MIB;
                let d = w.fake.put_blob(&rng.bytes(len));
                let delay = Duration::from_millis([0, 2, 4, 8][(rng.next() % 4) as usize]);
                w.fake.set_behavior(
                    &d,
                    BlobBehavior {
                        chunk: 256 << 10,
                        delay,
                        ..Default::default()
                    },
                );
                d
            })
            .collect();
        let clients = start_clients(&w, &wharf, &fresh);
        let delay = Duration::from_millis(100 + rng.next() % 700);
        sleep(delay);
        wharf.proc.stop(); // SIGKILL: grace is zero
        let killed_logs = wharf.proc.logs();
        let mut complete = 0;
        for c in clients {
            let Ok(r) = w.rt.block_on(c) else { continue };
            if let (200, Ok(body)) = (r.status.as_u16(), &r.body) {
                complete += 1;
                let d = r.header("docker-content-digest").unwrap_or("").to_string();
                assert_eq!(
                    digest_of(body),
                    d,
                    "a complete body before the kill is right"
                );
            }
        }
        let left = entries(&data_dir, "tmp").len();
        let committed = fresh
            .iter()
            .filter(|d| blob_path(&data_dir, d).exists())
            .count();

        let fsck = w.cli(&["fsck"]);
        assert_eq!(
            fsck.code,
            Some(0),
            "round {round}: wharf fsck after kill -9 at {delay:?} (seed {seed}):\n{}\n{killed_logs}",
            fsck.output
        );

        for d in &fresh {
            w.fake.clear_behavior(d);
        }
        all.extend(fresh);
        wharf = w.start(Duration::ZERO);
        let tmp = entries(&data_dir, "tmp");
        assert!(tmp.is_empty(), "round {round}: tmp/ after restart: {tmp:?}");
        for d in &all {
            let r = w.get(&wharf.blob_url("org/app", d));
            assert_eq!(r.status, 200, "round {round}: {d}\n{}", wharf.proc.logs());
            let got = digest_of(r.bytes());
            assert_eq!(&got, d, "round {round}: bytes of {d} (seed {seed})");
        }
        eprintln!(
            "e2e crash: round {round}: killed after {delay:?}, {complete}/16 clients complete, \
             {committed}/3 fills committed, {left} temp files left, fsck ok, {} blobs verified ({:?} so far)",
            all.len(),
            started.elapsed()
        );
    }
    wharf.proc.stop();
    let fsck = w.cli(&["fsck"]);
    assert_eq!(fsck.code, Some(0), "final fsck:\n{}", fsck.output);
}
