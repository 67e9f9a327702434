//! The write side of a fill: a body copied into the temp file in batches, hashed on the way,
//! with progress published after every write; and, once the disk refused a write, the bytes
//! kept in memory for the fill's readers (the blob is then not cached).
//!
//! Invariant: `Sink::written` counts bytes that are in the file (or the spill) and in the
//! hasher, never more; a fill resumed from another source continues from exactly there.

use super::source::FillBody;
use super::state::{Fill, FillState};
use crate::error::{Error, Result};
use crate::oci::digest::Hasher;
use http_body_util::BodyExt;
use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Bytes gathered from the source before one write to the temp file.
const WRITE_BATCH: usize = 256 * 1024;

/// Where a fill's bytes go: the temp file, or, once the disk refused a write (full), memory
/// only, so that the clients still get every byte (the blob is then not cached).
pub(super) struct Sink<'a> {
    fill: &'a Fill,
    file: &'a Arc<File>,
    pub(super) hasher: Hasher,
    pub(super) written: u64,
    /// False once the disk refused a write: the rest is in memory only.
    pub(super) disk_ok: bool,
    metrics: &'a crate::metrics::Metrics,
}

impl<'a> Sink<'a> {
    pub(super) fn new(
        fill: &'a Fill,
        file: &'a Arc<File>,
        metrics: &'a crate::metrics::Metrics,
    ) -> Sink<'a> {
        Sink {
            fill,
            file,
            hasher: Hasher::new(),
            written: 0,
            disk_ok: true,
            metrics,
        }
    }

    /// Copies the body into the sink in batches, hashing as it goes; publishes progress
    /// after each write. `size` is the whole blob's (the sink may hold its start already).
    pub(super) async fn stream(
        &mut self,
        mut body: FillBody,
        size: Option<u64>,
        tx: &watch::Sender<FillState>,
        upstream: &str,
        idle: Duration,
    ) -> Result<()> {
        let sink = self;
        let upstream_err = |m: String| Error::Unreachable {
            upstream: upstream.to_string(),
            message: m,
        };
        let mut buf: Vec<u8> = Vec::with_capacity(WRITE_BATCH);
        loop {
            // Flush what we have before waiting, so readers never wait on our buffer.
            let frame = {
                let mut next = std::pin::pin!(body.frame());
                match poll_once(next.as_mut()).await {
                    Some(f) => f,
                    None => {
                        if !buf.is_empty() {
                            buf = sink.flush(buf).await?;
                            tx.send_replace(FillState::Streaming {
                                size,
                                written: sink.written,
                            });
                        }
                        tokio::time::timeout(idle, next)
                            .await
                            .map_err(|_| upstream_err("upstream body stalled".into()))?
                    }
                }
            };
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|e| upstream_err(format!("upstream body: {e}")))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if let Some(s) = size {
                if sink.written + (buf.len() + data.len()) as u64 > s {
                    return Err(upstream_err(
                        "upstream sent more than Content-Length".into(),
                    ));
                }
            }
            buf.extend_from_slice(&data);
            if buf.len() >= WRITE_BATCH {
                buf = sink.flush(buf).await?;
                tx.send_replace(FillState::Streaming {
                    size,
                    written: sink.written,
                });
            }
        }
        if !buf.is_empty() {
            sink.flush(buf).await?;
            tx.send_replace(FillState::Streaming {
                size,
                written: sink.written,
            });
        }
        if let Some(s) = size {
            if sink.written != s {
                return Err(upstream_err(format!(
                    "upstream body ended after {} of {s} bytes",
                    sink.written
                )));
            }
        }
        Ok(())
    }

    /// Hashes and stores one batch; hands the buffer back (cleared) for reuse.
    async fn flush(&mut self, buf: Vec<u8>) -> Result<Vec<u8>> {
        self.hasher.update(&buf);
        let mut buf = if self.disk_ok {
            let (buf, res) = write_batch(self.file, buf).await?;
            match res {
                Ok(()) => {
                    self.written += buf.len() as u64;
                    let mut buf = buf;
                    buf.clear();
                    return Ok(buf);
                }
                Err(e) => {
                    tracing::warn!(digest = %self.fill.digest, error = %e, "cannot write the blob to disk; relaying it from memory without caching it");
                    self.metrics.disk_write_errors.inc();
                    self.disk_ok = false;
                    if let Ok(mut s) = self.fill.spill.lock() {
                        s.start = Some(self.written);
                    }
                    buf
                }
            }
        } else {
            buf
        };
        let n = buf.len() as u64;
        if let Ok(mut s) = self.fill.spill.lock() {
            s.chunks.push(bytes::Bytes::from(std::mem::take(&mut buf)));
        }
        self.written += n;
        Ok(Vec::with_capacity(WRITE_BATCH))
    }
}

/// Appends one batch on a blocking thread; hands the buffer back with the write's result.
async fn write_batch(file: &Arc<File>, buf: Vec<u8>) -> Result<(Vec<u8>, std::io::Result<()>)> {
    let file = file.clone();
    tokio::task::spawn_blocking(move || {
        let res = (&*file).write_all(&buf);
        (buf, res)
    })
    .await
    .map_err(Error::internal)
}

/// Polls a future once: `Some(output)` if it is ready now.
async fn poll_once<F: std::future::Future + Unpin>(mut f: F) -> Option<F::Output> {
    std::future::poll_fn(|cx| match std::pin::Pin::new(&mut f).poll(cx) {
        std::task::Poll::Ready(v) => std::task::Poll::Ready(Some(v)),
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await
}
