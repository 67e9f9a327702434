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
use std::time::{Duration, Instant};

/// Marks a request sent by a peer replica (its value: the sender's instance id): answer it
/// yourself, never forward it.
pub const PEER_HEADER: &str = "wharf-peer";
/// The status a replica answers its own peer request with (it reached itself under another
/// address): the sender then drops that address from its peers.
pub const LOOP_STATUS: http::StatusCode = http::StatusCode::LOOP_DETECTED;
/// How long a peer that failed stays out of the owner choice.
pub const DOWN_FOR: Duration = Duration::from_secs(30);
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

    /// The live peers, this replica's own URL included.
    pub fn members(&self) -> Vec<String> {
        let now = Instant::now();
        let down = self.down.lock().map(|d| d.clone()).unwrap_or_default();
        let selves = self.selves.lock().map(|s| s.clone()).unwrap_or_default();
        let mut out: Vec<String> = self
            .peers
            .read()
            .map(|p| p.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|p| {
                *p != self.advertise
                    && !selves.contains(p)
                    && down.get(p).is_none_or(|until| *until <= now)
            })
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
mod tests {
    use super::*;

    fn cluster(me: &str, peers: &[&str]) -> Arc<Cluster> {
        let cfg = ClusterConfig {
            advertise: me.to_string(),
            peers: Peers::Static(peers.iter().map(|s| s.to_string()).collect()),
            peer_timeout: Duration::from_millis(200),
            ca_file: None,
        };
        Cluster::start(&cfg).expect("cluster")
    }

    #[tokio::test]
    async fn replicas_agree_on_owners_and_spread_them() {
        let peers = ["http://a:1", "http://b:1", "http://c:1"];
        let views: Vec<_> = peers.iter().map(|p| cluster(p, &peers)).collect();
        let mut owned = HashMap::new();
        for i in 0..300u32 {
            let d = Digest::of(&i.to_be_bytes());
            // Each replica names the same owner (itself as None).
            let names: Vec<String> = views
                .iter()
                .zip(peers)
                .map(|(v, me)| v.owner(&d).unwrap_or_else(|| me.to_string()))
                .collect();
            assert!(names.iter().all(|n| *n == names[0]), "{names:?}");
            *owned.entry(names[0].clone()).or_insert(0) += 1;
        }
        // Roughly a third each.
        for p in peers {
            let n = owned.get(p).copied().unwrap_or(0);
            assert!((60..=140).contains(&n), "{p} owns {n} of 300: {owned:?}");
        }
    }

    /// The ranking is part of the wire contract: replicas of different versions (a rolling
    /// upgrade) must agree on it. Here it is recomputed from its definition, independently:
    /// descending by the first 8 bytes (big-endian) of SHA-256(peer, "\n", digest), ties
    /// by the peer URL.
    #[tokio::test]
    async fn the_ranking_follows_its_definition() {
        use sha2::Digest as _;
        let peers = [
            "http://10.0.0.1:5000",
            "http://10.0.0.2:5000",
            "http://10.0.0.3:5000",
        ];
        let view = cluster(peers[0], &peers);
        for i in 0..50u32 {
            let d = Digest::of(&i.to_be_bytes());
            let mut want: Vec<(u64, &str)> = peers
                .iter()
                .map(|p| {
                    let h = sha2::Sha256::digest(format!("{p}\n{d}").as_bytes());
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&h[..8]);
                    (u64::from_be_bytes(b), *p)
                })
                .collect();
            want.sort_by(|x, y| y.cmp(x));
            let want: Vec<&str> = want.into_iter().map(|(_, p)| p).collect();
            assert_eq!(view.ranked(&d), want, "digest {d}");
        }
    }

    #[tokio::test]
    async fn an_unusable_ca_file_is_named_at_start() {
        let dir = tempfile::tempdir().expect("tmp");
        let bad = dir.path().join("ca.pem");
        std::fs::write(
            &bad,
            "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        let cfg = ClusterConfig {
            advertise: "https://a:1".into(),
            peers: Peers::Static(vec!["https://a:1".into()]),
            peer_timeout: Duration::from_secs(1),
            ca_file: Some(bad),
        };
        let e = Cluster::start(&cfg)
            .err()
            .expect("a bad ca_file is an error");
        assert!(
            e.starts_with("cluster.ca_file: ") && e.contains("ca.pem"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_peer_marked_down_loses_only_its_own_digests() {
        let peers = ["http://a:1", "http://b:1", "http://c:1"];
        let a = cluster(peers[0], &peers);
        let before: Vec<_> = (0..200u32)
            .map(|i| a.owner(&Digest::of(&i.to_be_bytes())))
            .collect();
        a.mark_down("http://b:1", "test");
        for (i, was) in before.iter().enumerate() {
            let now = a.owner(&Digest::of(&(i as u32).to_be_bytes()));
            assert_ne!(now.as_deref(), Some("http://b:1"));
            if was.as_deref() != Some("http://b:1") {
                // Rendezvous hashing: the others keep their digests.
                assert_eq!(&now, was);
            }
        }
        // This replica is never out of its own view.
        let alone = cluster("http://a:1", &[]);
        assert_eq!(alone.owner(&Digest::of(b"x")), None);
    }

    #[tokio::test]
    async fn peers_dns_lists_every_address_of_the_name() {
        let cfg = ClusterConfig {
            advertise: "http://10.9.9.9:7".into(),
            peers: Peers::Dns {
                host: "localhost".into(),
                port: 7,
            },
            peer_timeout: Duration::from_millis(200),
            ca_file: None,
        };
        let c = Cluster::start(&cfg).expect("cluster");
        let deadline = Instant::now() + Duration::from_secs(5);
        while c.members().len() < 2 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let members = c.members();
        assert!(
            members.contains(&"http://127.0.0.1:7".to_string()),
            "{members:?}"
        );
        assert!(members.contains(&"http://10.9.9.9:7".to_string()));
    }

    #[tokio::test]
    async fn a_dead_peer_fails_fast() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let peer = format!("http://127.0.0.1:{port}");
        let c = cluster("http://127.0.0.1:1", &[&peer]);
        let started = Instant::now();
        let e = c
            .fetch_blob(
                &peer,
                "u",
                "r",
                &Digest::of(b"x"),
                &Credentials::Anonymous,
                Duration::from_secs(5),
            )
            .await
            .expect_err("nothing listens");
        assert!(e.unreachable && e.message.contains(&peer), "{e:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
