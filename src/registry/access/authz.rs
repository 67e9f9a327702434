//! Authorization on cache hits: cached content is served to a client only when the upstream
//! lets that client pull the repository.
//!
//! Invariants:
//! - A positive decision is keyed by (credential hash, upstream, repository) and reused for
//!   `authz_ttl`; after that the upstream is asked again (a `HEAD` with the client's
//!   credentials, or the fetch itself on a miss).
//! - Every decision is also written to the store with its time, so that with the upstream
//!   unreachable cached content is served only to a credential authorized for that
//!   repository within `offline_grace`, or to anyone if the repository was pullable
//!   anonymously when last checked. A refusal overwrites an earlier permission.
//! - Records older than both `authz_ttl` and `offline_grace` serve no rule any more and are
//!   pruned ([`Authz::prune`], at start-up and hourly), except the anonymous permissions the
//!   offline rule keeps using and the imported-content markers.

use crate::auth::Client;
use crate::config::AuthConfig;
use crate::error::Result;
use crate::store::keys::AuthzRecord;
use crate::store::{now_ms, Store};
use moka::future::Cache;
use std::sync::Arc;
use std::time::Duration;

pub struct Authz {
    /// Positive decisions: key → when the upstream said yes (ms since the epoch).
    fresh: Cache<Vec<u8>, u64>,
    store: Arc<Store>,
    ttl: Duration,
    offline_grace: Duration,
}

impl Authz {
    pub fn new(cfg: &AuthConfig, store: Arc<Store>) -> Authz {
        Authz {
            fresh: Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(cfg.authz_ttl)
                .build(),
            store,
            ttl: cfg.authz_ttl,
            offline_grace: cfg.offline_grace,
        }
    }

    fn key(client: &Client, upstream: &str, repo: &str) -> Vec<u8> {
        crate::store::keys::authz_key(&client.id, upstream, repo)
    }

    fn young(&self, at_ms: u64) -> bool {
        u128::from(now_ms().saturating_sub(at_ms)) < self.ttl.as_millis()
    }

    /// A positive decision younger than `authz_ttl` (also one recorded before a restart).
    pub async fn is_fresh(&self, client: &Client, upstream: &str, repo: &str) -> bool {
        let key = Self::key(client, upstream, repo);
        if let Some(at) = self.fresh.get(&key).await {
            return self.young(at);
        }
        match self.store.get_authz(&client.id, upstream, repo) {
            Ok(Some(r)) if r.allowed && self.young(r.checked_at_ms) => {
                self.fresh.insert(key, r.checked_at_ms).await;
                true
            }
            _ => false,
        }
    }

    /// Adopts a positive decision another replica recorded at `at_ms` (through the shared
    /// bucket), if it is still young: `true` when it is.
    pub async fn adopt(&self, client: &Client, upstream: &str, repo: &str, at_ms: u64) -> bool {
        let at_ms = at_ms.min(now_ms());
        if !self.young(at_ms) {
            return false;
        }
        self.fresh
            .insert(Self::key(client, upstream, repo), at_ms)
            .await;
        let rec = AuthzRecord {
            checked_at_ms: at_ms,
            allowed: true,
        };
        if let Err(e) = self.store.put_authz(&client.id, upstream, repo, rec) {
            tracing::warn!(error = %e, "could not record an adopted decision");
        }
        true
    }

    /// Records what the upstream just said about `client` pulling `repo`: `Ok(false)` when
    /// it only confirmed a decision that was still fresh (nothing written).
    pub async fn record(
        &self,
        client: &Client,
        upstream: &str,
        repo: &str,
        allowed: bool,
    ) -> Result<bool> {
        let key = Self::key(client, upstream, repo);
        let now = now_ms();
        if allowed {
            if self.fresh.get(&key).await.is_some_and(|at| self.young(at)) {
                return Ok(false);
            }
            self.fresh.insert(key, now).await;
        } else {
            self.fresh.invalidate(&key).await;
        }
        let rec = AuthzRecord {
            checked_at_ms: now,
            allowed,
        };
        self.store.put_authz(&client.id, upstream, repo, rec)?;
        Ok(true)
    }

    /// Deletes the stored decisions no rule uses any more: older than `authz_ttl` and
    /// `offline_grace`, except anonymous permissions. Returns how many went.
    pub fn prune(&self) -> Result<u64> {
        let age = self.ttl.max(self.offline_grace);
        let cutoff = now_ms().saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX));
        self.store.prune_authz(cutoff, &[Client::anonymous().id])
    }

    /// [`Authz::prune`], logging what it did.
    pub fn prune_logged(&self) {
        match self.prune() {
            Ok(0) => {}
            Ok(n) => tracing::info!(records = n, "pruned expired authorization decisions"),
            Err(e) => tracing::warn!(error = %e, "cannot prune authorization decisions"),
        }
    }

    /// With the upstream unreachable: may `client` get cached content of `repo`?
    pub fn offline_allows(&self, client: &Client, upstream: &str, repo: &str) -> Result<bool> {
        if let Some(r) = self.store.get_authz(&client.id, upstream, repo)? {
            let age = Duration::from_millis(now_ms().saturating_sub(r.checked_at_ms));
            if r.allowed && age <= self.offline_grace {
                return Ok(true);
            }
            if !r.allowed {
                return Ok(false);
            }
        }
        let anon = Client::anonymous();
        Ok(self
            .store
            .get_authz(&anon.id, upstream, repo)?
            .is_some_and(|r| r.allowed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::Credentials;

    #[tokio::test]
    async fn decisions_are_per_credential_and_survive_for_offline_use() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Arc::new(Store::open(dir.path()).expect("store"));
        let a = Authz::new(&AuthConfig::default(), store.clone());
        let alice = Client::new(Credentials::basic("alice", "pw"));
        let mallory = Client::new(Credentials::basic("alice", "wrong"));
        let anon = Client::anonymous();
        a.record(&alice, "u", "private/app", true)
            .await
            .expect("rec");
        assert!(a.is_fresh(&alice, "u", "private/app").await);
        assert!(!a.is_fresh(&mallory, "u", "private/app").await);
        assert!(!a.is_fresh(&alice, "u", "private/other").await);
        assert!(a.offline_allows(&alice, "u", "private/app").expect("q"));
        assert!(!a.offline_allows(&mallory, "u", "private/app").expect("q"));
        assert!(!a.offline_allows(&anon, "u", "private/app").expect("q"));
        // A repository anonymous clients could pull is offline-readable by anyone...
        a.record(&anon, "u", "public/app", true).await.expect("rec");
        assert!(a.offline_allows(&mallory, "u", "public/app").expect("q"));
        // ...until the upstream says otherwise.
        a.record(&anon, "u", "public/app", false)
            .await
            .expect("rec");
        assert!(!a.offline_allows(&mallory, "u", "public/app").expect("q"));
        assert!(!a.is_fresh(&anon, "u", "public/app").await);
        // A fresh Authz over the same store (a restart) keeps young decisions fresh and the
        // offline knowledge.
        let b = Authz::new(&AuthConfig::default(), store.clone());
        assert!(b.is_fresh(&alice, "u", "private/app").await);
        assert!(!b.is_fresh(&mallory, "u", "private/app").await);
        assert!(b.offline_allows(&alice, "u", "private/app").expect("q"));
        // Past authz_ttl a decision is no longer fresh, but still counts offline.
        let short = AuthConfig {
            authz_ttl: Duration::from_millis(1),
            ..AuthConfig::default()
        };
        let c = Authz::new(&short, store);
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(!c.is_fresh(&alice, "u", "private/app").await);
        assert!(c.offline_allows(&alice, "u", "private/app").expect("q"));
    }

    #[tokio::test]
    async fn expired_decisions_are_pruned_but_not_anonymous_permissions_or_imports() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Arc::new(Store::open(dir.path()).expect("store"));
        let cfg = AuthConfig {
            authz_ttl: Duration::from_millis(20),
            offline_grace: Duration::from_millis(40),
            ..AuthConfig::default()
        };
        let a = Authz::new(&cfg, store.clone());
        let alice = Client::new(Credentials::basic("alice", "pw"));
        let mallory = Client::new(Credentials::basic("alice", "wrong"));
        let anon = Client::anonymous();
        a.record(&alice, "u", "private/app", true)
            .await
            .expect("rec");
        a.record(&mallory, "u", "private/app", false)
            .await
            .expect("rec");
        a.record(&anon, "u", "public/app", true).await.expect("rec");
        a.record(&anon, "u", "private/app", false)
            .await
            .expect("rec");
        let layer = crate::oci::Digest::of(b"imported");
        store
            .mark_imported("u", "air/gapped", &[layer])
            .expect("import");
        assert_eq!(a.prune().expect("prune"), 0, "nothing is old yet");
        tokio::time::sleep(Duration::from_millis(30)).await;
        // Past authz_ttl but within offline_grace: still needed offline.
        assert_eq!(a.prune().expect("prune"), 0);
        assert!(a.offline_allows(&alice, "u", "private/app").expect("q"));
        tokio::time::sleep(Duration::from_millis(30)).await;
        let bob = Client::new(Credentials::basic("bob", "pw"));
        a.record(&bob, "u", "private/app", true).await.expect("rec");
        assert_eq!(
            a.prune().expect("prune"),
            3,
            "alice's, mallory's, anonymous refusal"
        );
        let get = |c: &Client, repo: &str| store.get_authz(&c.id, "u", repo).expect("get");
        assert!(get(&alice, "private/app").is_none());
        assert!(get(&mallory, "private/app").is_none());
        assert!(get(&anon, "private/app").is_none());
        assert!(get(&anon, "public/app").is_some_and(|r| r.allowed), "kept");
        assert!(get(&bob, "private/app").is_some(), "young: kept");
        assert!(
            store.is_imported("u", "air/gapped", &layer).expect("q"),
            "kept"
        );
        // What the offline rule says did not change for anyone.
        assert!(!a.offline_allows(&alice, "u", "private/app").expect("q"));
        assert!(!a.offline_allows(&anon, "u", "private/app").expect("q"));
        assert!(a.offline_allows(&mallory, "u", "public/app").expect("q"));
    }
}
