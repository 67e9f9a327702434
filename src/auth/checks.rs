//! Throttling of credential checks (`/token`, and Basic credentials sent with registry
//! requests), so that Wharf is no brute-force relay and its address is not banned upstream.
//!
//! Invariants:
//! - Credentials an upstream refused are refused again without asking it for [`REMEMBER`];
//!   credentials it accepted are taken as good for as long (keyed by credential hash and
//!   upstream; nothing else about them kept).
//! - A user name with [`MAX_FAILURES`] refused checks at one upstream within [`WINDOW`] gets
//!   `429 TOOMANYREQUESTS` without the upstream being asked, whatever password it tries.
//! - At most [`MAX_RUNNING`] checks of one user name at one upstream run at once; the others
//!   wait (at most [`MAX_WAIT`]) and then look at what those found, so concurrent logins of
//!   one account cost one upstream check and concurrent guesses are bounded too.
//! - Every table is bounded in entries.

use super::Credentials;
use moka::future::Cache;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long an upstream's answer about a credential is reused.
pub const REMEMBER: Duration = Duration::from_secs(60);
/// The window over which refused checks of one user name are counted.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Refused checks of one user name at one upstream within [`WINDOW`] before throttling.
pub const MAX_FAILURES: u32 = 5;
/// Checks of one user name at one upstream running at once.
pub const MAX_RUNNING: usize = 2;
/// How long a check waits for a running one of the same user name.
pub const MAX_WAIT: Duration = Duration::from_secs(15);

pub struct Checks {
    /// credential hash + upstream → what the upstream said (true: accepted).
    answers: Cache<Vec<u8>, bool>,
    /// user name + upstream → refused checks in the window.
    failures: Cache<Vec<u8>, Arc<AtomicU32>>,
    /// user name + upstream → the checks that may run.
    gates: Cache<Vec<u8>, Arc<Semaphore>>,
}

/// What a check may do next.
pub enum Verdict {
    /// Ask the upstream; report the answer with [`Checks::done`].
    Ask(Attempt),
    /// The upstream accepted these credentials a moment ago.
    Accepted,
    /// The upstream refused these credentials a moment ago.
    Refused,
    /// Too many refusals (or running checks) for this user name: wait this long.
    Throttled(Duration),
}

/// A running check (holds its place among the [`MAX_RUNNING`]).
pub struct Attempt {
    _permit: OwnedSemaphorePermit,
}

fn key(a: &[u8], upstream: &str) -> Vec<u8> {
    let mut k = a.to_vec();
    k.push(0);
    k.extend_from_slice(upstream.as_bytes());
    k
}

fn bounded<V: Clone + Send + Sync + 'static>(ttl: Duration) -> Cache<Vec<u8>, V> {
    Cache::builder()
        .max_capacity(100_000)
        .time_to_live(ttl)
        .build()
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
            answers: bounded(REMEMBER),
            failures: bounded(WINDOW),
            gates: bounded(MAX_WAIT + WINDOW),
        }
    }

    /// What is known about `creds` at `upstream`, if anything.
    async fn known(&self, creds: &Credentials, upstream: &str) -> Option<Verdict> {
        match self.answers.get(&key(&creds.hash(), upstream)).await {
            Some(true) => return Some(Verdict::Accepted),
            Some(false) => return Some(Verdict::Refused),
            None => {}
        }
        let user = key(user_of(creds).as_bytes(), upstream);
        let failed = self.failures.get(&user).await;
        failed
            .filter(|n| n.load(Ordering::SeqCst) >= MAX_FAILURES)
            .map(|_| Verdict::Throttled(WINDOW))
    }

    /// Whether `creds` may be checked with `upstream` now (see the module docs).
    pub async fn verdict(&self, creds: &Credentials, upstream: &str) -> Verdict {
        if let Some(v) = self.known(creds, upstream).await {
            return v;
        }
        let user = key(user_of(creds).as_bytes(), upstream);
        let gate = self
            .gates
            .get_with(user, async { Arc::new(Semaphore::new(MAX_RUNNING)) })
            .await;
        let Ok(Ok(permit)) = tokio::time::timeout(MAX_WAIT, gate.acquire_owned()).await else {
            return Verdict::Throttled(WINDOW);
        };
        // A check that ran meanwhile may have answered for these credentials.
        match self.known(creds, upstream).await {
            Some(v) => v,
            None => Verdict::Ask(Attempt { _permit: permit }),
        }
    }

    /// Records what the upstream said about `creds` (`None`: it could not be asked), ending
    /// `attempt`.
    pub async fn done(
        &self,
        creds: &Credentials,
        upstream: &str,
        accepted: Option<bool>,
        attempt: Attempt,
    ) {
        if let Some(ok) = accepted {
            self.answers.insert(key(&creds.hash(), upstream), ok).await;
        }
        if accepted == Some(false) {
            let user = key(user_of(creds).as_bytes(), upstream);
            let n = self
                .failures
                .get_with(user, async { Arc::new(AtomicU32::new(0)) })
                .await;
            n.fetch_add(1, Ordering::SeqCst);
        }
        drop(attempt);
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

    fn asked(v: &Verdict) -> bool {
        matches!(v, Verdict::Ask(_))
    }

    #[tokio::test]
    async fn answers_are_remembered_and_brute_force_is_throttled() {
        let c = Checks::new();
        let pw = |p: &str| Credentials::basic("alice", p);
        let Verdict::Ask(a) = c.verdict(&pw("a"), "u").await else {
            panic!("first check asks")
        };
        c.done(&pw("a"), "u", Some(false), a).await;
        assert!(matches!(c.verdict(&pw("a"), "u").await, Verdict::Refused));
        let Verdict::Ask(a) = c.verdict(&pw("good"), "u").await else {
            panic!("another password asks")
        };
        c.done(&pw("good"), "u", Some(true), a).await;
        assert!(matches!(
            c.verdict(&pw("good"), "u").await,
            Verdict::Accepted
        ));
        for i in 1..MAX_FAILURES {
            let guess = pw(&format!("guess{i}"));
            let Verdict::Ask(a) = c.verdict(&guess, "u").await else {
                panic!("guess {i}")
            };
            c.done(&guess, "u", Some(false), a).await;
        }
        assert!(matches!(
            c.verdict(&pw("right"), "u").await,
            Verdict::Throttled(_)
        ));
        // Accepted credentials still pass; other upstreams and users are not affected.
        assert!(matches!(
            c.verdict(&pw("good"), "u").await,
            Verdict::Accepted
        ));
        assert!(asked(&c.verdict(&pw("a"), "other").await));
        assert!(asked(
            &c.verdict(&Credentials::basic("bob", "x"), "u").await
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_checks_of_one_user_wait_for_the_running_ones() {
        let c = Arc::new(Checks::new());
        let alice = Credentials::basic("alice", "pw");
        let running: Vec<Verdict> =
            vec![c.verdict(&alice, "u").await, c.verdict(&alice, "u").await];
        assert!(running.iter().all(asked));
        // A third waits; once a running check says yes, it needs no check of its own.
        let (c2, a2) = (c.clone(), alice.clone());
        let waiting = tokio::spawn(async move { c2.verdict(&a2, "u").await });
        tokio::task::yield_now().await;
        let mut running = running.into_iter();
        let Some(Verdict::Ask(first)) = running.next() else {
            panic!()
        };
        c.done(&alice, "u", Some(true), first).await;
        assert!(matches!(waiting.await.expect("join"), Verdict::Accepted));
    }
}
