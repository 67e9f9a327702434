//! Replicas that share a bucket split the upstream fetches: every blob digest has one owner
//! replica, chosen by rendezvous (highest random weight) hashing over the live peers, and
//! only the owner fetches it from the upstream; the others stream it from the owner while
//! the owner's fill runs, verifying it as every fill does.
//!
//! Invariants:
//! - Every replica computes the same owner from the same peer set: the score of a peer for a
//!   digest is a hash of (peer URL, digest), nothing local.
//! - A request from a peer (it carries [`PEER_HEADER`]) is never forwarded again, so a
//!   request crosses at most one peer hop whatever the replicas think of each other.
//! - A dead peer does not stop pulls: a peer that cannot be connected to within
//!   `peer_timeout` (or drops the connection) is marked down for [`DOWN_FOR`] and left out of
//!   the owner choice; the fill that hit it fetches from the upstream itself. A peer that is
//!   only slow to answer (its upstream is) is not marked down.
//! - A replica that reaches itself under an address it did not know as its own (a DNS
//!   record written differently from `advertise`) is told so by itself ([`LOOP_STATUS`],
//!   recognised by the instance id in [`PEER_HEADER`]) and stops using that address.
//! - The client's own credentials travel to the owner (as Basic authorization), so the
//!   owner authorizes against the upstream exactly as for a direct client.

use crate::config::{ClusterConfig, Peers};
use crate::oci::Digest;
use crate::upstream::Credentials;
use base64::Engine;
use bytes::Bytes;
use http_body_util::Empty;
use hyper::body::Incoming;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::time::Instant;

/// Marks a request sent by a peer replica (its value: the sender's instance id): answer it
/// yourself, never forward it.
pub const PEER_HEADER: &str = "wharf-peer";
/// The status a replica answers its own peer request with (it reached itself under another
/// address): the sender then drops that address from its peers.
pub const LOOP_STATUS: http::StatusCode = http::StatusCode::LOOP_DETECTED;
/// How long a peer that failed stays out of the owner choice.
pub const DOWN_FOR: Duration = Duration::from_secs(30);
/// How long [`Cluster::alive`] waits for an answer (a peer that connects but answers later
/// is slow, not dead).
const ALIVE_WAIT: Duration = Duration::from_secs(10);
/// How long an answer of a peer to [`Cluster::alive`] is believed.
const ALIVE_FOR: Duration = Duration::from_secs(2);
/// How often `peers_dns` is resolved again.
const DNS_REFRESH: Duration = Duration::from_secs(10);

/// Why a peer did not serve a blob.
#[derive(Debug)]
pub struct PeerError {
    /// No answer (connection refused, reset, timeout): the peer is presumed dead.
    pub unreachable: bool,
    pub message: String,
}

pub struct Cluster {
    advertise: String,
    /// Random per process: tells a replica its own peer requests apart.
    instance: String,
    /// Every replica's base URL (this one's included).
    peers: RwLock<Vec<String>>,
    down: Mutex<HashMap<String, Instant>>,
    /// When each peer last answered [`Cluster::alive`].
    answered: Mutex<HashMap<String, Instant>>,
    /// Addresses that turned out to reach this replica itself.
    selves: Mutex<HashSet<String>>,
    client: crate::upstream::client::HttpClient,
}

/// The rendezvous score of `peer` for `digest`.
fn score(peer: &str, digest: &Digest) -> u64 {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(peer.as_bytes());
    h.update(b"\n");
    h.update(digest.to_string().as_bytes());
    let out = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&out[..8]);
    u64::from_be_bytes(b)
}

impl Cluster {
    /// Builds the cluster view; with `peers_dns`, starts resolving the name in the background.
    pub fn start(cfg: &ClusterConfig) -> Result<Arc<Cluster>, String> {
        let initial = match &cfg.peers {
            Peers::Static(list) => list.clone(),
            Peers::Dns { .. } => Vec::new(),
        };
        let instance = {
            use ring::rand::SecureRandom;
            let mut b = [0u8; 16];
            ring::rand::SystemRandom::new()
                .fill(&mut b)
                .map_err(|_| "no randomness for the instance id".to_string())?;
            hex::encode(b)
        };
        let c = Arc::new(Cluster {
            advertise: cfg.advertise.clone(),
            instance,
            peers: RwLock::new(initial),
            down: Mutex::new(HashMap::new()),
            answered: Mutex::new(HashMap::new()),
            selves: Mutex::new(Default::default()),
            client: crate::upstream::client::build(cfg.ca_file.as_deref(), None, cfg.peer_timeout)
                .map_err(|e| format!("cluster.ca_file: {e}"))?,
        });
        if let Peers::Dns { host, port } = &cfg.peers {
            // The peers speak what this replica speaks (all serve TLS, or none).
            let scheme = if cfg.advertise.starts_with("https://") {
                "https"
            } else {
                "http"
            };
            let (weak, host, port) = (Arc::downgrade(&c), host.clone(), *port);
            tokio::spawn(async move {
                loop {
                    let Some(c) = weak.upgrade() else { return };
                    match tokio::net::lookup_host((host.as_str(), port)).await {
                        Ok(addrs) => {
                            let mut list: Vec<String> =
                                addrs.map(|a| format!("{scheme}://{a}")).collect();
                            list.sort();
                            list.dedup();
                            if let Ok(mut p) = c.peers.write() {
                                if *p != list {
                                    tracing::info!(peers = ?list, "cluster peers changed");
                                    *p = list;
                                }
                            }
                        }
                        Err(e) => {
                            tracing::warn!(host = %host, error = %e, "cannot resolve peers_dns; keeping the last peer list")
                        }
                    }
                    drop(c);
                    tokio::time::sleep(DNS_REFRESH).await;
                }
            });
        }
        Ok(c)
    }

    pub fn advertise(&self) -> &str {
        &self.advertise
    }

    /// Whether a request's `wharf-peer` value says this replica sent it.
    pub fn is_own(&self, peer_header: &[u8]) -> bool {
        peer_header == self.instance.as_bytes()
    }

    /// Whether `peer` is marked down at `now`.
    fn is_down(&self, peer: &str, now: Instant) -> bool {
        self.down
            .lock()
            .is_ok_and(|d| d.get(peer).is_some_and(|until| *until > now))
    }

    /// The live peers, this replica's own URL included.
    pub fn members(&self) -> Vec<String> {
        let now = Instant::now();
        let selves = self.selves.lock().map(|s| s.clone()).unwrap_or_default();
        let mut out: Vec<String> = self
            .peers
            .read()
            .map(|p| p.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|p| *p != self.advertise && !selves.contains(p) && !self.is_down(p, now))
            .collect();
        out.push(self.advertise.clone());
        out
    }

    /// The live members in the order in which they own `digest`: the first runs its fill;
    /// when it is down, the next one (every replica that knows it down agrees on which).
    pub fn ranked(&self, digest: &Digest) -> Vec<String> {
        let mut members = self.members();
        members.sort_by_cached_key(|p| std::cmp::Reverse((score(p, digest), p.clone())));
        members
    }

    /// The replica that fetches `digest` from the upstream: `None` when it is this one.
    pub fn owner(&self, digest: &Digest) -> Option<String> {
        let best = self.ranked(digest).into_iter().next()?;
        (best != self.advertise).then_some(best)
    }

    /// Leaves `peer` out for a while; `why` (the connect error: refused, timed out, or a
    /// certificate this replica does not trust) goes to the log.
    pub fn mark_down(&self, peer: &str, why: &str) {
        tracing::warn!(
            peer,
            error = why,
            "cannot reach the peer; leaving it out for {DOWN_FOR:?}"
        );
        if let Ok(mut d) = self.down.lock() {
            d.insert(peer.to_string(), Instant::now() + DOWN_FOR);
        }
    }

    /// Whether `peer` still answers HTTP at all (any status, or only slowly); a peer that
    /// cannot be connected to (within `peer_timeout`) is marked down and is not alive. A peer
    /// marked down is not asked, and one that answered is believed for [`ALIVE_FOR`]: many
    /// callers cost one request per peer.
    pub async fn alive(&self, peer: &str) -> bool {
        let now = Instant::now();
        if self.is_down(peer, now) {
            return false;
        }
        if self.answered.lock().is_ok_and(|a| {
            a.get(peer)
                .is_some_and(|at| now.duration_since(*at) < ALIVE_FOR)
        }) {
            return true;
        }
        let req = http::Request::get(format!("{peer}/v2/"))
            .header(PEER_HEADER, self.instance.as_str())
            .body(Empty::<Bytes>::new());
        let Ok(req) = req else { return true };
        match tokio::time::timeout(ALIVE_WAIT, self.client.request(req)).await {
            Ok(Err(e)) => {
                self.mark_down(peer, &e.to_string());
                false
            }
            Ok(Ok(_)) | Err(_) => {
                if let Ok(mut a) = self.answered.lock() {
                    a.insert(peer.to_string(), Instant::now());
                }
                true
            }
        }
    }

    /// Asks `peer` for blob `digest` of `repo` on `upstream` with the client's credentials.
    /// `Ok` only for a 200 whose headers came within `wait` (the owner answers once its own
    /// fill has started: an upstream may be slow). Only a peer that cannot be connected to
    /// (within `peer_timeout`) or drops the connection counts as unreachable; one that is
    /// merely slow is not.
    pub async fn fetch_blob(
        &self,
        peer: &str,
        upstream: &str,
        repo: &str,
        digest: &Digest,
        creds: &Credentials,
        wait: Duration,
    ) -> Result<http::Response<Incoming>, PeerError> {
        let refused = |message: String| PeerError {
            unreachable: false,
            message,
        };
        let dead = |message: String| PeerError {
            unreachable: true,
            message,
        };
        let ns = crate::auth::form::encode_value(upstream);
        let uri = format!("{peer}/v2/{repo}/blobs/{digest}?ns={ns}");
        let mut req = http::Request::get(&uri)
            .header(PEER_HEADER, self.instance.as_str())
            .body(Empty::<Bytes>::new())
            .map_err(|e| refused(format!("{uri}: {e}")))?;
        if let Credentials::Basic { user, password } = creds {
            let v = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            let v = http::HeaderValue::from_str(&format!("Basic {v}"))
                .map_err(|e| refused(format!("credentials: {e}")))?;
            req.headers_mut().insert(http::header::AUTHORIZATION, v);
        }
        let resp = tokio::time::timeout(wait, self.client.request(req))
            .await
            .map_err(|_| refused(format!("{peer}: no answer within {wait:?}")))?
            .map_err(|e| dead(format!("{peer}: {e}")))?;
        if resp.status() == LOOP_STATUS {
            tracing::info!(
                peer,
                "this address reaches this replica itself; not asking it again"
            );
            if let Ok(mut s) = self.selves.lock() {
                s.insert(peer.to_string());
            }
            return Err(refused(format!("{peer} is this replica")));
        }
        if resp.status() != http::StatusCode::OK {
            return Err(refused(format!("{peer} answered {}", resp.status())));
        }
        Ok(resp)
    }
}

#[cfg(test)]
mod tests;
