//! The request body of a teed upload: the client's bytes go on to the upstream as they
//! arrive, and are hashed and appended to the tee's temp file on the way.
//!
//! Invariants: the tee never holds more than [`WRITE_BATCH`] bytes in memory and waits for the
//! disk rather than dropping data (backpressure on the client); it lands in its [`Slot`] only
//! when the body went through completely, before hyper hands the last byte to the upstream;
//! a disk error or a size past the cache's bound abandons it and the bytes keep flowing.

use super::uploads::Tee;
use crate::upstream::client::{BoxError, PushBody};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, StreamBody};
use std::fs::File;
use std::io::Write;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// Bytes gathered before one write to the temp file.
const WRITE_BATCH: usize = 256 * 1024;

/// Where a tee goes once the request body went through it completely.
pub type Slot = Arc<Mutex<Option<Tee>>>;

/// The client's body, streamed to the upstream through `tee`. When the body has gone through
/// completely (all `declared` bytes, or its end), the tee is put in `slot`; if the body ends
/// early, fails, or the tee is abandoned, `slot` stays empty.
pub fn tee_body(body: PushBody, tee: Tee, slot: Slot, max_size: u64) -> PushBody {
    let declared = body.size_hint().exact();
    let state = TeeState {
        body,
        tee: Some(tee),
        buf: Vec::new(),
        declared,
        seen: 0,
        slot,
        max_size,
        done: false,
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        match st.body.frame().await {
            None => {
                st.done = true;
                st.finish().await;
                None
            }
            Some(Err(e)) => {
                st.done = true;
                st.tee = None;
                Some((Err(e), st))
            }
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    st.absorb(data).await;
                }
                Some((Ok(frame), st))
            }
        }
    });
    Sized {
        inner: StreamBody::new(Box::pin(stream)),
        declared,
    }
    .boxed_unsync()
}

struct TeeState {
    body: PushBody,
    tee: Option<Tee>,
    buf: Vec<u8>,
    declared: Option<u64>,
    seen: u64,
    slot: Slot,
    max_size: u64,
    done: bool,
}

impl TeeState {
    async fn absorb(&mut self, data: &Bytes) {
        self.seen += data.len() as u64;
        if let Some(tee) = &mut self.tee {
            if tee.len + (self.buf.len() + data.len()) as u64 > self.max_size {
                tracing::info!("upload larger than the cache; passing it through uncached");
                self.tee = None;
            } else {
                tee.hasher.update(data);
                self.buf.extend_from_slice(data);
                if self.buf.len() >= WRITE_BATCH {
                    self.flush().await;
                }
            }
        }
        // hyper stops polling a body once `Content-Length` bytes went out: finish before the
        // last chunk is handed over, so the tee is in its slot before the upstream can answer.
        if self.declared == Some(self.seen) {
            self.done = true;
            self.finish().await;
        }
    }

    async fn flush(&mut self) {
        let Some(tee) = &mut self.tee else {
            self.buf.clear();
            return;
        };
        let buf = std::mem::take(&mut self.buf);
        let n = buf.len() as u64;
        match write_batch(tee.temp.file.clone(), buf).await {
            Ok(mut buf) => {
                tee.len += n;
                buf.clear();
                self.buf = buf;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot write an upload to disk; passing it through uncached");
                self.tee = None;
            }
        }
    }

    async fn finish(&mut self) {
        self.flush().await;
        if let (Some(tee), Ok(mut slot)) = (self.tee.take(), self.slot.lock()) {
            *slot = Some(tee);
        }
    }
}

/// Appends one batch on a blocking thread; hands the buffer back.
async fn write_batch(file: Arc<File>, buf: Vec<u8>) -> std::io::Result<Vec<u8>> {
    tokio::task::spawn_blocking(move || (&*file).write_all(&buf).map(|()| buf))
        .await
        .map_err(std::io::Error::other)?
}

type FrameStream = Pin<Box<dyn futures_util::Stream<Item = Result<Frame<Bytes>, BoxError>> + Send>>;

/// A streamed body that tells hyper its length (so the upstream gets `Content-Length`).
struct Sized {
    inner: StreamBody<FrameStream>,
    declared: Option<u64>,
}

impl Body for Sized {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn size_hint(&self) -> SizeHint {
        match self.declared {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
