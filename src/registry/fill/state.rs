//! The state of one fill as its readers see it: a watch channel of [`FillState`] and the
//! temp file the bytes go to (see `fill` for the invariants: `written` never runs ahead of
//! the file; readers finish only after `Verified`).

use crate::error::{Error, Result};
use crate::oci::Digest;
use std::fs::File;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub enum FillState {
    /// Waiting for the upstream's response headers.
    Starting,
    /// Receiving: `written` bytes are in the temp file; `size` from `Content-Length`.
    Streaming {
        size: Option<u64>,
        written: u64,
    },
    /// The bytes match the digest; the commit (fsync, rename, metadata) is under way.
    /// Readers may finish.
    Verified {
        size: u64,
    },
    /// Verified and committed.
    Committed {
        size: u64,
    },
    Failed(Error),
}

pub struct Fill {
    pub digest: Digest,
    pub(super) file: OnceLock<Arc<File>>,
    pub(super) state: watch::Receiver<FillState>,
    /// Bytes that could not be written to disk.
    pub(super) spill: Mutex<Spill>,
    /// Where the bytes come from, as log lines name it; set when the download opens.
    pub(super) from: OnceLock<String>,
}

impl Fill {
    pub fn subscribe(&self) -> watch::Receiver<FillState> {
        self.state.clone()
    }

    /// Where the bytes come from (the upstream's name, the shared bucket, the owner
    /// replica); `None` until the download opened.
    pub fn origin(&self) -> Option<&str> {
        self.from.get().map(String::as_str)
    }

    /// What readers see now.
    pub fn state(&self) -> FillState {
        self.state.borrow().clone()
    }

    /// The temp file; set before the state leaves `Starting`.
    pub fn file(&self) -> Option<Arc<File>> {
        self.file.get().cloned()
    }

    /// Waits until the bytes are verified: `Ok(size)` (committed or being committed), or the
    /// fill's error.
    pub async fn verified(&self) -> Result<u64> {
        let mut rx = self.state.clone();
        loop {
            match &*rx.borrow_and_update() {
                FillState::Verified { size } | FillState::Committed { size } => return Ok(*size),
                FillState::Failed(e) => return Err(e.clone()),
                _ => {}
            }
            if rx.changed().await.is_err() {
                return match &*rx.borrow() {
                    FillState::Verified { size } | FillState::Committed { size } => Ok(*size),
                    FillState::Failed(e) => Err(e.clone()),
                    _ => Err(Error::internal("fill ended unexpectedly")),
                };
            }
        }
    }

    /// Waits until the upstream answered: `Ok(size)` once streaming (or already committed),
    /// or the fill's error.
    pub async fn started(&self) -> Result<Option<u64>> {
        let mut rx = self.state.clone();
        loop {
            match &*rx.borrow_and_update() {
                FillState::Starting => {}
                FillState::Streaming { size, .. } => return Ok(*size),
                FillState::Verified { size } | FillState::Committed { size } => {
                    return Ok(Some(*size))
                }
                FillState::Failed(e) => return Err(e.clone()),
            }
            if rx.changed().await.is_err() {
                return match &*rx.borrow() {
                    FillState::Verified { size } | FillState::Committed { size } => Ok(Some(*size)),
                    FillState::Failed(e) => Err(e.clone()),
                    _ => Err(Error::internal("fill ended unexpectedly")),
                };
            }
        }
    }
}

/// Bytes of a fill kept in memory after the disk refused them: contiguous from `start`.
#[derive(Default)]
pub struct Spill {
    pub start: Option<u64>,
    pub chunks: Vec<bytes::Bytes>,
}

impl Fill {
    /// Up to `n` bytes at `offset` from memory, if the fill spilled at or before `offset`;
    /// otherwise how many bytes from `offset` may be read from the file.
    pub fn spilled(&self, offset: u64, n: u64) -> Result<std::result::Result<bytes::Bytes, u64>> {
        let s = self
            .spill
            .lock()
            .map_err(|_| Error::internal("spill poisoned"))?;
        let Some(start) = s.start else {
            return Ok(Err(n));
        };
        if offset < start {
            return Ok(Err(n.min(start - offset)));
        }
        let mut at = start;
        for c in &s.chunks {
            let end = at + c.len() as u64;
            if offset < end {
                let from = (offset - at) as usize;
                let to = (from as u64 + n).min(c.len() as u64) as usize;
                return Ok(Ok(c.slice(from..to)));
            }
            at = end;
        }
        Ok(Ok(bytes::Bytes::new()))
    }
}
