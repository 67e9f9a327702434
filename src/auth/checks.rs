//! Throttling of credential checks at `/token`, so that Wharf is no brute-force relay and its
//! address is not banned upstream.
//!
//! Invariants:
//! - Credentials an upstream refused are refused again without asking it for
//!   [`REFUSED_FOR`] (keyed by credential hash and upstream; nothing else about them kept).
//! - A user name with [`MAX_FAILURES`] refused (or still running) checks at one upstream
//!   within [`WINDOW`] gets `429 TOOMANYREQUESTS` without the upstream being asked, whatever
//!   password it tries.
//! - Both tables are bounded in entries.

use super::Credentials;
use moka::future::Cache;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a refused credential is answered from memory.
pub const REFUSED_FOR: Duration = Duration::from_secs(60);
/// The window over which failed checks of one user name are counted.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Failed checks of one user name at one upstream within [`WINDOW`] before throttling.
pub const MAX_FAILURES: u32 = 5;

pub struct Checks {
    refused: Cache<Vec<u8>, ()>,
    failures: Cache<Vec<u8>, Arc<AtomicU32>>,
}

/// What a check may do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Ask the upstream.
    Ask,
    /// The upstream refused these credentials a moment ago.
    Refused,
    /// Too many refusals for this user name: wait this long.
    Throttled(Duration),
}

fn key(a: &[u8], upstream: &str) -> Vec<u8> {
    let mut k = a.to_vec();
    k.push(0);
    k.extend_from_slice(upstream.as_bytes());
    k
}

fn user_of(creds: &Credentials) -> &str {
    match creds {
        Credentials::Basic { user, .. } => user,
        Credentials::Anonymous => "",
    }
}

impl Checks {
    pub fn new() -> Checks {
        Checks {
            refused: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(REFUSED_FOR)
                .build(),
            failures: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(WINDOW)
                .build(),
        }
    }

    /// Whether `creds` may be checked with `upstream` now. An `Ask` counts as an attempt of
    /// the user name until [`Checks::done`] (so concurrent guesses are bounded too).
    pub async fn verdict(&self, creds: &Credentials, upstream: &str) -> Verdict {
        if self.refused.contains_key(&key(&creds.hash(), upstream)) {
            return Verdict::Refused;
        }
        let n = self.counter(creds, upstream).await;
        if n.fetch_add(1, Ordering::SeqCst) >= MAX_FAILURES {
            n.fetch_sub(1, Ordering::SeqCst);
            return Verdict::Throttled(WINDOW);
        }
        Verdict::Ask
    }

    /// Ends an attempt [`Checks::verdict`] allowed: `refused` when the upstream refused the
    /// credentials (remembered, and the attempt stays counted), otherwise it no longer counts.
    pub async fn done(&self, creds: &Credentials, upstream: &str, refused: bool) {
        if refused {
            self.refused.insert(key(&creds.hash(), upstream), ()).await;
            return;
        }
        let n = self.counter(creds, upstream).await;
        let _ = n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1));
    }

    async fn counter(&self, creds: &Credentials, upstream: &str) -> Arc<AtomicU32> {
        let k = key(user_of(creds).as_bytes(), upstream);
        self.failures
            .get_with(k, async { Arc::new(AtomicU32::new(0)) })
            .await
    }
}

impl Default for Checks {
    fn default() -> Self {
        Checks::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refusals_are_remembered_and_brute_force_is_throttled() {
        let c = Checks::new();
        let pw = |p: &str| Credentials::basic("alice", p);
        assert_eq!(c.verdict(&pw("a"), "u").await, Verdict::Ask);
        c.done(&pw("a"), "u", true).await;
        assert_eq!(c.verdict(&pw("a"), "u").await, Verdict::Refused);
        // A good check does not count against the user name.
        assert_eq!(c.verdict(&pw("good"), "u").await, Verdict::Ask);
        c.done(&pw("good"), "u", false).await;
        for i in 1..MAX_FAILURES {
            let guess = pw(&format!("guess{i}"));
            assert_eq!(c.verdict(&guess, "u").await, Verdict::Ask);
            c.done(&guess, "u", true).await;
        }
        assert_eq!(
            c.verdict(&pw("right"), "u").await,
            Verdict::Throttled(WINDOW)
        );
        assert_eq!(c.verdict(&pw("a"), "other").await, Verdict::Ask);
        let bob = Credentials::basic("bob", "x");
        assert_eq!(c.verdict(&bob, "u").await, Verdict::Ask);
    }

    #[tokio::test]
    async fn concurrent_guesses_are_bounded_too() {
        let c = Checks::new();
        let mut asked = 0;
        for i in 0..20 {
            let guess = Credentials::basic("m", &format!("{i}"));
            if c.verdict(&guess, "u").await == Verdict::Ask {
                asked += 1;
            }
        }
        assert_eq!(asked, MAX_FAILURES);
    }
}
