//! A sink's delivery task: takes what its queue holds (at most a batch), delivers it with
//! retries and backoff, counts the outcome, and never holds more than one batch.

use super::event::Event;
use crate::metrics::{Delivery, Metrics};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How a sink queues and retries.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Events a sink's queue holds; more are dropped (counted).
    pub queue: usize,
    /// Events sent together, at most.
    pub batch: usize,
    /// Tries per batch (the first included).
    pub attempts: u32,
    /// Wait before the first retry; doubled before each next one, at most 30 s.
    pub backoff: Duration,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            queue: 1024,
            batch: 64,
            attempts: 4,
            backoff: Duration::from_millis(500),
        }
    }
}

/// Where a sink's batches go.
#[async_trait::async_trait]
pub(super) trait Deliver: Send {
    /// Delivers the batch once; the error says why not.
    async fn deliver(&mut self, batch: &[Arc<Event>]) -> Result<(), String>;
    /// Reopens what it writes to (files); nothing by default.
    fn reopen(&mut self) {}
}

pub(super) struct Worker {
    pub name: String,
    pub timeout: Duration,
    pub policy: Policy,
    pub metrics: Arc<Metrics>,
    pub reopen: Arc<AtomicBool>,
}

impl Worker {
    /// Runs until every sender is gone.
    pub async fn run(self, mut rx: mpsc::Receiver<Arc<Event>>, mut out: Box<dyn Deliver>) {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < self.policy.batch.max(1) {
                match rx.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(_) => break,
                }
            }
            let result = self.attempt_all(&mut *out, &batch).await;
            self.metrics
                .notify_delivery(&self.name, result, batch.len() as u64);
        }
    }

    /// Delivers `batch` within `attempts` tries, backing off between them.
    async fn attempt_all(&self, out: &mut dyn Deliver, batch: &[Arc<Event>]) -> Delivery {
        let mut wait = self.policy.backoff;
        for n in 1..=self.policy.attempts.max(1) {
            if self.reopen.swap(false, Ordering::SeqCst) {
                out.reopen();
            }
            let err = match tokio::time::timeout(self.timeout, out.deliver(batch)).await {
                Ok(Ok(())) => return Delivery::Delivered,
                Ok(Err(e)) => e,
                Err(_) => format!("no answer within {:?}", self.timeout),
            };
            if n == self.policy.attempts.max(1) {
                tracing::warn!(sink = %self.name, events = batch.len(), error = %err, "events not delivered; dropped");
                break;
            }
            tracing::debug!(sink = %self.name, attempt = n, error = %err, "event delivery failed; retrying");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(30));
        }
        Delivery::Failed
    }
}
