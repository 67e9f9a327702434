//! Response bodies for blobs: a committed file, or a fill's growing temp file.
//!
//! Reads are positional (`pread`) in large chunks on blocking threads, so many readers share
//! one file descriptor without a shared cursor. A reader of a fill never runs ahead of the
//! bytes the fill has written, and withholds the last byte of its range until the fill is
//! committed: an unverified blob never reaches a client complete. A failed fill ends the body
//! with an error, which makes hyper reset the connection (never a short 200).

use super::fill::{Fill, FillState};
use bytes::Bytes;
use futures_util::stream::{self, Stream};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use tokio::sync::watch;

/// How much one read takes from the file (large reads matter: see the design notes).
const CHUNK: u64 = 512 * 1024;

/// Read buffers kept for reuse: a busy blob would otherwise allocate, zero and fault in half
/// a MiB per chunk (measured: about an eighth of Wharf's CPU while 16 clients pull one blob).
static POOL: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());
/// At most this many idle buffers are kept (`POOLED * CHUNK` bytes).
const POOLED: usize = 64;

/// A chunk handed to hyper as `Bytes`; its buffer goes back to the pool when hyper drops it.
struct Pooled {
    buf: Vec<u8>,
    len: usize,
}

impl Pooled {
    /// A buffer of at least `len` initialized bytes (reused ones keep their old contents,
    /// which the read overwrites; only `..len` is ever exposed).
    fn take(len: usize) -> Pooled {
        let reused = if len <= CHUNK as usize {
            POOL.lock().ok().and_then(|mut p| p.pop())
        } else {
            None
        };
        let buf = reused.unwrap_or_else(|| vec![0u8; len.max(CHUNK as usize)]);
        Pooled { buf, len }
    }
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if self.buf.len() == CHUNK as usize {
            if let Ok(mut p) = POOL.lock() {
                if p.len() < POOLED {
                    p.push(std::mem::take(&mut self.buf));
                }
            }
        }
    }
}

pub enum Source {
    /// A committed blob of known length.
    File { file: Arc<File>, len: u64 },
    /// A fill in progress (the file is set, the fill has started).
    Fill {
        fill: Arc<Fill>,
        file: Arc<File>,
        state: watch::Receiver<FillState>,
    },
}

impl Source {
    pub fn from_fill(fill: &Arc<Fill>) -> io::Result<Source> {
        let file = fill
            .file()
            .ok_or_else(|| io::Error::other("fill has no file yet"))?;
        Ok(Source::Fill {
            fill: fill.clone(),
            file,
            state: fill.subscribe(),
        })
    }
}

struct Reader {
    source: Source,
    offset: u64,
    /// Exclusive end of the requested range; `None` = to the end of the blob.
    end: Option<u64>,
}

/// What a fill offers a reader right now.
struct View {
    available: u64,
    size: Option<u64>,
    done: bool,
}

impl Reader {
    fn view(&self) -> io::Result<View> {
        match &self.source {
            Source::File { len, .. } => Ok(View {
                available: *len,
                size: Some(*len),
                done: true,
            }),
            Source::Fill { state, .. } => match &*state.borrow() {
                FillState::Starting => Ok(View {
                    available: 0,
                    size: None,
                    done: false,
                }),
                FillState::Streaming { size, written } => Ok(View {
                    available: *written,
                    size: *size,
                    done: false,
                }),
                FillState::Verified { size } | FillState::Committed { size } => Ok(View {
                    available: *size,
                    size: Some(*size),
                    done: true,
                }),
                FillState::Failed(e) => Err(io::Error::other(format!("blob fill failed: {e}"))),
            },
        }
    }

    async fn next_chunk(&mut self) -> Option<io::Result<Bytes>> {
        loop {
            let v = match self.view() {
                Ok(v) => v,
                Err(e) => return Some(Err(e)),
            };
            let end = self.end.or(v.size);
            let mut limit = v.available;
            if let Some(end) = end {
                limit = limit.min(end);
                if !v.done {
                    // Hold back the final byte until the digest is verified.
                    limit = limit.min(end.saturating_sub(1));
                }
            }
            if self.offset < limit {
                let n = (limit - self.offset).min(CHUNK);
                return Some(self.read(n).await);
            }
            if v.done && end.is_none_or(|e| self.offset >= e) {
                return None;
            }
            if v.done {
                // A range past what the committed blob holds.
                return Some(Err(io::Error::other("range beyond the blob's end")));
            }
            if let Err(e) = self.wait().await {
                return Some(Err(e));
            }
        }
    }

    async fn read(&mut self, mut n: u64) -> io::Result<Bytes> {
        if let Source::Fill { fill, .. } = &self.source {
            // Bytes the disk refused live in memory.
            match fill.spilled(self.offset, n).map_err(io::Error::other)? {
                Ok(bytes) if !bytes.is_empty() => {
                    self.offset += bytes.len() as u64;
                    return Ok(bytes);
                }
                Ok(_) => return Err(io::Error::other("spilled bytes missing")),
                Err(from_file) => n = from_file,
            }
        }
        let file = match &self.source {
            Source::File { file, .. } | Source::Fill { file, .. } => file.clone(),
        };
        let offset = self.offset;
        let bytes = tokio::task::spawn_blocking(move || {
            let mut buf = Pooled::take(n as usize);
            let mut got = 0usize;
            while got < buf.len {
                let r = file.read_at(&mut buf.buf[got..buf.len], offset + got as u64)?;
                if r == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "blob file shorter than recorded",
                    ));
                }
                got += r;
            }
            Ok(Bytes::from_owner(buf))
        })
        .await
        .map_err(io::Error::other)??;
        self.offset += bytes.len() as u64;
        Ok(bytes)
    }

    async fn wait(&mut self) -> io::Result<()> {
        let Source::Fill { state, .. } = &mut self.source else {
            return Ok(());
        };
        if state.changed().await.is_err() {
            // The fill task is gone: fine only if it verified the bytes.
            return match &*state.borrow() {
                FillState::Verified { .. } | FillState::Committed { .. } => Ok(()),
                _ => Err(io::Error::other("blob fill aborted")),
            };
        }
        Ok(())
    }
}

/// The byte stream of `[start, end)` of a blob (`end: None` = to its end).
pub fn stream(
    source: Source,
    start: u64,
    end: Option<u64>,
) -> impl Stream<Item = io::Result<Bytes>> {
    let reader = Reader {
        source,
        offset: start,
        end,
    };
    stream::unfold(Some(reader), |state| async move {
        let mut r = state?;
        match r.next_chunk().await {
            Some(Ok(b)) => Some((Ok(b), Some(r))),
            Some(Err(e)) => Some((Err(e), None)),
            None => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooled_chunks_expose_only_what_was_read_and_are_reused() {
        let mut a = Pooled::take(10);
        a.buf[..10].copy_from_slice(b"0123456789");
        let bytes = Bytes::from_owner(a);
        assert_eq!(bytes.as_ref(), b"0123456789");
        drop(bytes);
        // The buffer came back whole; a shorter chunk sees only its own length.
        let b = Pooled::take(3);
        assert_eq!(b.buf.len(), CHUNK as usize);
        assert_eq!(b.as_ref().len(), 3);
        // An oversized request gets its own buffer, which is not pooled.
        let big = Pooled::take(CHUNK as usize + 1);
        assert_eq!(big.as_ref().len(), CHUNK as usize + 1);
    }
}
