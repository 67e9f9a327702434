//! A circuit breaker per upstream.
//!
//! After `threshold` consecutive failed attempts (transport errors and 5xx; answers such as
//! 404/401/429 are not failures), the breaker opens: for `cooldown` no request is sent and
//! callers treat the upstream as unreachable (serving the cache where they can). After the
//! cooldown one request is let through; its success closes the breaker, its failure re-opens
//! it. Time comes from `tokio::time`, so tests can pause it.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    failures: u32,
    open_until: Option<Instant>,
    probing: bool,
}

impl Breaker {
    /// `threshold` 0 disables the breaker.
    pub fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker {
            threshold,
            cooldown,
            state: Mutex::new(State::default()),
        }
    }

    /// May a request be sent now? While open, no; right after the cooldown, one probe.
    pub fn allow(&self) -> bool {
        let Ok(mut s) = self.state.lock() else {
            return true;
        };
        match s.open_until {
            None => true,
            Some(t) if Instant::now() < t => false,
            Some(_) if s.probing => false,
            Some(_) => {
                s.probing = true;
                true
            }
        }
    }

    pub fn success(&self) {
        if let Ok(mut s) = self.state.lock() {
            *s = State::default();
        }
    }

    pub fn failure(&self) {
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        s.failures = s.failures.saturating_add(1);
        if s.probing || (self.threshold > 0 && s.failures >= self.threshold) {
            if s.open_until.is_none() || s.probing {
                tracing::warn!(
                    failures = s.failures,
                    cooldown_s = self.cooldown.as_secs(),
                    "upstream circuit breaker open"
                );
            }
            s.open_until = Some(Instant::now() + self.cooldown);
            s.probing = false;
        }
    }

    /// True while requests are being held back (for the `upstream_up` gauge).
    pub fn is_open(&self) -> bool {
        self.state
            .lock()
            .map(|s| s.open_until.is_some())
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_threshold_and_closes_after_a_successful_probe() {
        let b = Breaker::new(3, Duration::from_secs(30));
        for _ in 0..2 {
            assert!(b.allow());
            b.failure();
        }
        assert!(b.allow(), "two failures: still closed");
        b.failure();
        assert!(!b.allow(), "three failures: open");
        assert!(b.is_open());
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(b.allow(), "one probe after the cooldown");
        assert!(!b.allow(), "only one");
        b.failure();
        assert!(!b.allow(), "the failed probe re-opens it");
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(b.allow());
        b.success();
        assert!(b.allow() && b.allow(), "closed again");
        assert!(!b.is_open());
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_count_and_zero_disables() {
        let b = Breaker::new(2, Duration::from_secs(5));
        b.failure();
        b.success();
        b.failure();
        assert!(b.allow(), "failures must be consecutive");
        let off = Breaker::new(0, Duration::from_secs(5));
        for _ in 0..100 {
            off.failure();
        }
        assert!(off.allow());
    }
}
