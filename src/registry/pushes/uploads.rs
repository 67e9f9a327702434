//! Teeing blob uploads into the cache: the bytes a client pushes through Wharf are hashed and
//! written to a temp file on their way to the upstream, so the first pull after a push is a hit.
//!
//! Invariants:
//! - A tee covers an upload from its first byte: a session Wharf saw start (`POST`), or a
//!   chunk that says it starts at 0. A chunk that does not continue exactly where the tee is
//!   (its `Content-Range`, the upstream's `Range`, an upstream error, a body cut short, a size
//!   past the cache's bound, a disk error) abandons the tee; the upload itself goes on.
//! - Nothing is committed here: the caller commits a finished tee only after the upstream
//!   confirmed the final `PUT` and the hash equals the digest the client named.
//! - At most [`MAX_SESSIONS`] sessions are remembered, none idle for more than [`MAX_IDLE`];
//!   a dropped tee removes its temp file ([`TempBlob`]'s drop).
//! - Bytes pass to the upstream as they arrive (see `tee` for the body that writes them).

use crate::oci::digest::Hasher;
use crate::oci::Digest;
use crate::store::blobs::TempBlob;
use crate::store::Store;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Upload sessions remembered at once.
pub const MAX_SESSIONS: usize = 256;
/// How long a session may sit between two requests before its tee is dropped.
pub const MAX_IDLE: Duration = Duration::from_secs(3600);

/// An upload session: (upstream, repository, the upstream's session id).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionKey {
    upstream: String,
    repo: String,
    id: String,
}

impl SessionKey {
    pub fn new(upstream: &str, repo: &str, id: &str) -> SessionKey {
        SessionKey {
            upstream: upstream.to_string(),
            repo: repo.to_string(),
            id: id.to_string(),
        }
    }
}

/// The bytes of one upload so far.
pub struct Tee {
    pub(super) temp: TempBlob,
    pub(super) hasher: Hasher,
    pub(super) len: u64,
}

impl Tee {
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest of the bytes so far, and the temp file holding them.
    pub fn finish(self) -> (Digest, u64, TempBlob) {
        (self.hasher.finish(), self.len, self.temp)
    }
}

enum Entry {
    /// Started through Wharf, no byte yet.
    Fresh,
    Teeing(Tee),
}

/// The sessions being teed.
pub struct Uploads {
    /// Session → (last used, insertion order, state).
    sessions: Mutex<HashMap<SessionKey, (Instant, u64, Entry)>>,
    next: std::sync::atomic::AtomicU64,
    store: Arc<Store>,
    /// A blob larger than this (the cache's size) is not kept.
    max_size: u64,
}

impl Uploads {
    pub fn new(store: Arc<Store>, max_size: u64) -> Uploads {
        Uploads {
            sessions: Mutex::new(HashMap::new()),
            next: std::sync::atomic::AtomicU64::new(0),
            store,
            max_size,
        }
    }

    pub fn max_size(&self) -> u64 {
        self.max_size
    }

    /// Sessions remembered now.
    pub fn count(&self) -> usize {
        self.sessions.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Remembers a session the upstream just opened for a `POST` through Wharf.
    pub fn started(&self, key: SessionKey) {
        self.put(key, Entry::Fresh);
    }

    /// Takes the tee for a request continuing `key` at `offset` (the request's
    /// `Content-Range` start; `None`: wherever the upload is). A fresh session gets a new
    /// tee. `None`: this session is not teed (any tee it had is dropped).
    pub fn take(&self, key: &SessionKey, offset: Option<u64>) -> Option<Tee> {
        let entry = self.sessions.lock().ok()?.remove(key).map(|(_, _, e)| e);
        match (entry, offset) {
            (Some(Entry::Teeing(t)), None) => Some(t),
            (Some(Entry::Teeing(t)), Some(o)) if o == t.len => Some(t),
            (Some(Entry::Fresh), None | Some(0)) | (None, Some(0)) => self.new_tee(),
            _ => None,
        }
    }

    /// A tee for an upload that is not a session (a monolithic `POST`).
    pub fn new_tee(&self) -> Option<Tee> {
        // The temp file is named after a digest not known yet: any unique name will do.
        let placeholder = Digest::of(&now_nanos().to_be_bytes());
        match self.store.create_temp(&placeholder) {
            Ok(temp) => Some(Tee {
                temp,
                hasher: Hasher::new(),
                len: 0,
            }),
            Err(e) => {
                tracing::warn!(error = %e, "cannot create a temp file for an upload; not caching it");
                None
            }
        }
    }

    /// Keeps a tee for the session's next request.
    pub fn put_back(&self, key: SessionKey, tee: Tee) {
        self.put(key, Entry::Teeing(tee));
    }

    /// Forgets a session (its tee, if any, is dropped with its file).
    pub fn forget(&self, key: &SessionKey) {
        if let Ok(mut m) = self.sessions.lock() {
            m.remove(key);
        }
    }

    /// The upstream says the session holds bytes `0..=end`: a tee that disagrees is dropped.
    pub fn check_range(&self, key: &SessionKey, end: u64) {
        if let Ok(mut m) = self.sessions.lock() {
            let agrees = match m.get(key) {
                Some((_, _, Entry::Teeing(t))) => range_agrees(end, t.len),
                Some((_, _, Entry::Fresh)) => end == 0,
                None => true,
            };
            if !agrees {
                m.remove(key);
            }
        }
    }

    fn put(&self, key: SessionKey, entry: Entry) {
        let Ok(mut m) = self.sessions.lock() else {
            return;
        };
        let now = Instant::now();
        m.retain(|_, (at, _, _)| now.duration_since(*at) < MAX_IDLE);
        while m.len() >= MAX_SESSIONS {
            let oldest = m
                .iter()
                .min_by_key(|(_, (_, seq, _))| *seq)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => m.remove(&k),
                None => break,
            };
        }
        let seq = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        m.insert(key, (now, seq, entry));
    }
}

/// Whether an upstream `Range: 0-<end>` describes `len` bytes (Distribution says `0-0` for an
/// empty upload too).
pub fn range_agrees(end: u64, len: u64) -> bool {
    len == end + 1 || (end == 0 && len == 0)
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_ranges() {
        assert!(range_agrees(9, 10));
        assert!(range_agrees(0, 0));
        assert!(range_agrees(0, 1));
        assert!(!range_agrees(9, 9));
        assert!(!range_agrees(0, 2));
    }

    #[tokio::test]
    async fn sessions_are_teed_from_their_first_byte_only() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Arc::new(Store::open(dir.path()).expect("store"));
        let u = Uploads::new(store, 1 << 20);
        let k = SessionKey::new("u", "r", "s1");
        assert!(
            u.take(&k, None).is_none(),
            "unknown session, unknown offset"
        );
        assert!(u.take(&k, Some(5)).is_none(), "unknown session, mid-upload");
        let t = u.take(&k, Some(0)).expect("a chunk at 0 starts a tee");
        u.put_back(k.clone(), t);
        assert!(u.take(&k, Some(3)).is_none(), "a gap drops the tee");
        assert!(u.take(&k, None).is_none(), "and it stays dropped");
        u.started(k.clone());
        let t = u.take(&k, None).expect("fresh session");
        let path = t.temp.path.clone();
        assert!(path.exists());
        u.put_back(k.clone(), t);
        u.check_range(&k, 41);
        assert_eq!(u.count(), 0, "the upstream holds bytes the tee never saw");
        assert!(!path.exists(), "the dropped tee's file is gone");
    }

    #[tokio::test]
    async fn sessions_are_bounded() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Arc::new(Store::open(dir.path()).expect("store"));
        let u = Uploads::new(store, 1 << 20);
        for i in 0..MAX_SESSIONS + 10 {
            u.started(SessionKey::new("u", "r", &i.to_string()));
        }
        assert_eq!(u.count(), MAX_SESSIONS);
        assert!(
            u.take(&SessionKey::new("u", "r", "0"), None).is_none(),
            "the oldest went first"
        );
    }
}
