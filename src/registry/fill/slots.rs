//! Download slots: at most `fill.max_concurrent` fills read from an upstream, the shared
//! bucket or a peer at once.
//!
//! Invariants: a slot is taken by the fill's own task before it opens any origin and held
//! until the fill ends (verification and commit included); clients that join a running
//! fill take none. A fill waits at most the idle timeout for a slot (its clients get no
//! byte meanwhile), then fails with `429 TOOMANYREQUESTS` and a `Retry-After` before it has
//! read anything.

use crate::error::{Error, Result};
use crate::oci::ErrorCode;
use http::StatusCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct Slots {
    sem: Arc<Semaphore>,
    max: u32,
    /// How long a fill waits for a slot (`fill.idle_timeout`).
    wait: Duration,
}

impl Slots {
    pub fn new(max: u32, wait: Duration) -> Slots {
        Slots {
            sem: Arc::new(Semaphore::new(max as usize)),
            max,
            wait,
        }
    }

    /// A download slot, waited for at most the idle timeout (the fill's clients get nothing
    /// meanwhile); past that, `429 TOOMANYREQUESTS` with a `Retry-After`.
    pub async fn take(&self, upstream: &str) -> Result<OwnedSemaphorePermit> {
        let wait = self.sem.clone().acquire_owned();
        match tokio::time::timeout(self.wait, wait).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Error::Upstream {
                upstream: upstream.to_string(),
                status: StatusCode::TOO_MANY_REQUESTS,
                code: ErrorCode::TooManyRequests,
                message: format!(
                    "Wharf is filling fill.max_concurrent = {} blobs already; try again shortly",
                    self.max
                ),
                retry_after: Some(std::time::Duration::from_secs(5)),
            }),
        }
    }
}
