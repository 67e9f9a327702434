//! Single flight: concurrent callers with the same key share one run of an operation (one
//! upstream request for a tag, however many clients ask for it at once).
//!
//! Invariants:
//! - While a run for a key is under way, every caller with that key waits for it and gets a
//!   clone of its result; no second run starts. The entry leaves the map when the run ends,
//!   so a later caller starts a new run (results are never kept here: the caches are
//!   elsewhere).
//! - A run whose caller goes away (a client disconnecting) is taken over by one of the
//!   waiters (`tokio::sync::OnceCell`), which then runs the operation itself; an entry nobody
//!   waits for any more is removed, so abandoned keys do not accumulate.
//! - The map's lock is held only to look up, insert or remove, never across an await.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

pub struct Flights<K, V> {
    map: Mutex<HashMap<K, Arc<OnceCell<V>>>>,
}

impl<K: Hash + Eq + Clone, V: Clone> Default for Flights<K, V> {
    fn default() -> Self {
        Flights {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Flights<K, V> {
    /// Runs `op` for `key`, or waits for the run under way and shares its result. The flag
    /// is true when this call ran `op`.
    pub async fn run<F, Fut>(&self, key: K, op: F) -> (V, bool)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let cell = self
            .map
            .lock()
            .ok()
            .map(|mut m| m.entry(key.clone()).or_default().clone());
        let Some(cell) = cell else {
            // A poisoned map: no sharing, but still an answer.
            return (op().await, true);
        };
        let mut guard = Leave {
            flights: self,
            key: Some(key),
            cell,
        };
        let ran = std::sync::atomic::AtomicBool::new(false);
        let v = guard
            .cell
            .get_or_init(|| async {
                ran.store(true, std::sync::atomic::Ordering::SeqCst);
                op().await
            })
            .await
            .clone();
        let ran = ran.load(std::sync::atomic::Ordering::SeqCst);
        if !ran {
            // The runner removes the entry; waiters leave it alone.
            guard.key = None;
        }
        (v, ran)
    }

    /// Keys with a run under way.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }
}

/// Removes the key's entry when the call that holds it ends: after a run it made, or when it
/// is dropped (cancelled) and nobody else waits on the entry.
struct Leave<'a, K: Hash + Eq, V> {
    flights: &'a Flights<K, V>,
    key: Option<K>,
    cell: Arc<OnceCell<V>>,
}

impl<K: Hash + Eq, V> Drop for Leave<'_, K, V> {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else {
            return;
        };
        let Ok(mut m) = self.flights.map.lock() else {
            return;
        };
        let Some(current) = m.get(&key) else {
            return;
        };
        if !Arc::ptr_eq(current, &self.cell) {
            return;
        }
        // Done (initialized), or abandoned with no other holder than the map and us.
        if self.cell.initialized() || Arc::strong_count(&self.cell) <= 2 {
            m.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_callers_share_one_run_and_later_ones_run_again() {
        let f: Arc<Flights<&'static str, usize>> = Arc::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (f, runs) = (f.clone(), runs.clone());
            tasks.push(tokio::spawn(async move {
                f.run("k", || async {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    runs.fetch_add(1, Ordering::SeqCst) + 1
                })
                .await
            }));
        }
        let mut ran = 0;
        for t in tasks {
            let (v, r) = t.await.expect("task");
            assert_eq!(v, 1, "every caller gets the one run's result");
            ran += usize::from(r);
        }
        assert_eq!((ran, runs.load(Ordering::SeqCst)), (1, 1));
        assert_eq!(f.len(), 0, "the entry leaves with its run");
        let (v, r) = f.run("k", || async { 7 }).await;
        assert_eq!((v, r), (7, true), "a later caller runs again");
    }

    #[tokio::test]
    async fn a_cancelled_runner_is_replaced_by_a_waiter_and_abandoned_keys_go() {
        let f: Arc<Flights<&'static str, usize>> = Arc::default();
        let leader = {
            let f = f.clone();
            tokio::spawn(async move {
                f.run("k", || async {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    1
                })
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let waiter = {
            let f = f.clone();
            tokio::spawn(async move { f.run("k", || async { 2 }).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        leader.abort();
        assert_eq!(waiter.await.expect("waiter"), (2, true));
        assert_eq!(f.len(), 0);
        // Cancelled with nobody waiting: the entry is removed.
        let alone = {
            let f = f.clone();
            tokio::spawn(async move {
                f.run("x", || async {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    1
                })
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(f.len(), 1);
        alone.abort();
        let _ = alone.await;
        assert_eq!(f.len(), 0);
    }
}
