//! The request body every handler reads: hyper's body with a read timeout.
//!
//! Invariant: a handler waiting for the next chunk of a request body waits at most `gap`
//! (`request_body_timeout`); then the body ends with [`BodyError::Stalled`] and the request is
//! marked [`Stalled`], which the server turns into a `408` (see `conn`). The clock runs only
//! while the body is polled and empty-handed: a handler busy elsewhere (an upstream token
//! dance) is not the client's delay. A stalled body never yields anything after its error.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// Why a request body ended early.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("reading the request body: {0}")]
    Read(#[from] hyper::Error),
    #[error("the request body did not arrive within {0:?}")]
    Stalled(Duration),
}

/// Set once a request's body stalled.
#[derive(Clone, Default)]
pub struct Stalled(Arc<AtomicBool>);

impl Stalled {
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A client's request body with a per-chunk read timeout.
pub struct ClientBody {
    inner: Incoming,
    gap: Duration,
    /// Armed while the body is pending; allocated on first use and then reset.
    timer: Option<Pin<Box<Sleep>>>,
    armed: bool,
    stalled: Stalled,
    done: bool,
}

impl ClientBody {
    pub fn new(inner: Incoming, gap: Duration) -> (ClientBody, Stalled) {
        let stalled = Stalled::default();
        let body = ClientBody {
            inner,
            gap,
            timer: None,
            armed: false,
            stalled: stalled.clone(),
            done: false,
        };
        (body, stalled)
    }

    /// The whole body, at most `limit` bytes, within one `gap` all told: for small bodies
    /// (the token form) that no honest client takes long to send.
    pub async fn collect_small(self, limit: usize) -> Result<Bytes, String> {
        let (gap, stalled) = (self.gap, self.stalled.clone());
        match tokio::time::timeout(gap, Limited::new(self, limit).collect()).await {
            Ok(Ok(c)) => Ok(c.to_bytes()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => {
                stalled.0.store(true, Ordering::Relaxed);
                Err(BodyError::Stalled(gap).to_string())
            }
        }
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.armed = false;
            return Poll::Ready(frame.map(|f| f.map_err(BodyError::from)));
        }
        if !this.armed {
            let deadline = Instant::now() + this.gap;
            match this.timer.as_mut() {
                Some(t) => t.as_mut().reset(deadline),
                None => this.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            this.armed = true;
        }
        let fired = this
            .timer
            .as_mut()
            .is_some_and(|t| t.as_mut().poll(cx).is_ready());
        if fired {
            this.done = true;
            this.stalled.0.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(BodyError::Stalled(this.gap))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
