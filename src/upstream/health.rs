//! What the admin API reports of an upstream's health beside its breaker: the last
//! rate-limit count it sent and its last failure (transport error, timeout or 5xx).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

#[derive(Default)]
pub struct Health {
    /// `ratelimit-remaining` of the last response that had one; -1: none seen.
    remaining: AtomicI64,
    last_error: Mutex<Option<(String, SystemTime)>>,
}

impl Health {
    pub fn new() -> Health {
        Health {
            remaining: AtomicI64::new(-1),
            last_error: Mutex::new(None),
        }
    }

    pub fn note_remaining(&self, n: i64) {
        self.remaining.store(n.max(0), Ordering::Relaxed);
    }

    pub fn remaining(&self) -> Option<i64> {
        Some(self.remaining.load(Ordering::Relaxed)).filter(|n| *n >= 0)
    }

    pub fn note_error(&self, what: &str) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some((what.to_string(), SystemTime::now()));
        }
    }

    /// The last failure and when it happened.
    pub fn last_error(&self) -> Option<(String, SystemTime)> {
        self.last_error.lock().ok()?.clone()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn nothing_seen_is_none_and_the_last_error_is_kept() {
        let h = super::Health::new();
        assert_eq!(h.remaining(), None);
        assert!(h.last_error().is_none());
        h.note_remaining(7);
        h.note_error("no response in time");
        assert_eq!(h.remaining(), Some(7));
        assert_eq!(h.last_error().unwrap().0, "no response in time");
    }
}
