//! [`Access`]: authorization of cached content for one request: links, fresh decisions, the
//! upstream's answer with the client's own credentials, the offline rule, imported content.
//! It owns the decisions ([`authz::Authz`]) and is the one way the registry's parts send a
//! pull request upstream with a client's credentials ([`Access::send_as`]).
//!
//! Invariant (the module's reason to exist): nothing cached is returned to a client before
//! [`authz::Authz`] (or the upstream, just now, with that client's credentials) said the
//! client may pull the repository, or the digest was imported into it; and a digest is served
//! under a repository only if it is linked to it as what it is served as (a blob link for a
//! blob, a manifest link for a manifest).

pub mod authz;

use super::bucket::Bucket;
use super::target::{upstream_error, Target};
use crate::auth::Client;
use crate::config::AuthConfig;
use crate::error::{Error, Result};
use crate::metrics::{AuthzResult, Metrics};
use crate::oci::{Digest, ErrorCode};
use crate::store::LinkKind;
use crate::store::Store;
use http::{HeaderMap, Method, StatusCode};
use hyper::body::Incoming;
use std::sync::Arc;

/// Who may have what: decisions, links, imports, the offline rule.
pub struct Access {
    store: Arc<Store>,
    authz: authz::Authz,
    metrics: Arc<Metrics>,
    bucket: Option<Arc<Bucket>>,
}

impl Access {
    pub fn new(
        cfg: &AuthConfig,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        bucket: Option<Arc<Bucket>>,
    ) -> Access {
        Access {
            authz: authz::Authz::new(cfg, store.clone()),
            store,
            metrics,
            bucket,
        }
    }

    /// Whether `client` has a fresh positive decision for `t`'s repository.
    pub async fn is_fresh(&self, client: &Client, t: &Target) -> bool {
        self.authz
            .is_fresh(client, t.upstream.name(), t.repo.as_str())
            .await
    }

    /// Prunes the decisions no rule uses any more (blocking).
    pub fn prune(&self) {
        self.authz.prune_logged();
    }

    /// May `client` have the cached (or someone else's in-flight) blob `digest` under `t`?
    /// It must be linked to the repository and the client authorized for it; otherwise the
    /// upstream is asked (a `HEAD` of the blob under that repository, with the client's
    /// credentials), which also establishes the link.
    pub async fn authorize_blob(&self, t: &Target, client: &Client, digest: &Digest) -> Result<()> {
        let tail = format!("blobs/{digest}");
        if self
            .authorize_linked(t, client, LinkKind::Blob, digest, &tail)
            .await?
        {
            self.store
                .put_link(LinkKind::Blob, t.upstream.name(), t.repo.as_str(), digest)?;
        }
        Ok(())
    }

    /// The authorization of content addressed by `digest` under `t`, to be served as `kind`:
    /// it must be linked to the repository as that kind and the client authorized for it.
    /// Unlinked content is checked with the upstream (a `HEAD` of `tail` with the client's
    /// credentials). `Ok(true)` means the upstream just confirmed an unlinked digest: the
    /// caller links it.
    pub async fn authorize_linked(
        &self,
        t: &Target,
        client: &Client,
        kind: LinkKind,
        digest: &Digest,
        tail: &str,
    ) -> Result<bool> {
        let not_found = match kind {
            LinkKind::Blob => ErrorCode::BlobUnknown,
            LinkKind::Manifest => ErrorCode::ManifestUnknown,
        };
        let (up, repo) = (t.upstream.name(), t.repo.as_str());
        if self.store.has_link(kind, up, repo, digest)? {
            self.ensure_authorized(t, client, Some(digest), tail, not_found)
                .await?;
            return Ok(false);
        }
        let shared = match &self.bucket {
            Some(b) => b.has_link(kind, up, repo, digest).await,
            None => false,
        };
        if shared {
            // Another replica linked it: authorized like a local link, then linked here.
            self.ensure_authorized(t, client, Some(digest), tail, not_found)
                .await?;
            return Ok(true);
        }
        match self.probe(t, client, tail, not_found).await {
            Ok(()) => Ok(true),
            Err(e) if e.is_upstream_failure() => Err(Error::client(
                not_found,
                format!(
                    "{digest} is not known in repository {repo}, and the upstream cannot be asked"
                ),
            )),
            Err(e) => Err(e),
        }
    }

    /// Ensures `client` may pull from `t` before something cached is served: a fresh decision,
    /// else an upstream `HEAD` of `tail` with the client's credentials, else (upstream
    /// failing) the offline rule.
    pub async fn ensure_authorized(
        &self,
        t: &Target,
        client: &Client,
        digest: Option<&Digest>,
        tail: &str,
        not_found: ErrorCode,
    ) -> Result<()> {
        // The in-memory decision first: the hit path reads RocksDB only when it is missing.
        if self
            .authz
            .is_fresh(client, t.upstream.name(), t.repo.as_str())
            .await
            || self.imported(t, digest)?
            || self.adopted_anonymous(t, client).await
        {
            return Ok(());
        }
        match self.probe(t, client, tail, not_found).await {
            Err(e) if e.is_upstream_failure() => self.offline(t, client, None, e),
            other => other,
        }
    }

    /// Whether another replica recently saw the upstream let anonymous clients pull `t`
    /// (only ever consulted for an anonymous client).
    async fn adopted_anonymous(&self, t: &Target, client: &Client) -> bool {
        let Some(bucket) = self.bucket.as_ref().filter(|_| client.is_anonymous()) else {
            return false;
        };
        let (up, repo) = (t.upstream.name(), t.repo.as_str());
        match bucket.anonymous(up, repo).await {
            Some(at) => self.authz.adopt(client, up, repo, at).await,
            None => false,
        }
    }

    /// Whether `digest` was imported into `t` (`wharf import`): served to anyone.
    pub fn imported(&self, t: &Target, digest: Option<&Digest>) -> Result<bool> {
        match digest {
            Some(d) => self
                .store
                .is_imported(t.upstream.name(), t.repo.as_str(), d),
            None => Ok(false),
        }
    }

    /// With the upstream failing: serve cached content only under the offline rule (or
    /// because `digest` was imported).
    pub fn offline(
        &self,
        t: &Target,
        client: &Client,
        digest: Option<&Digest>,
        cause: Error,
    ) -> Result<()> {
        let allowed = self.imported(t, digest)?
            || self
                .authz
                .offline_allows(client, t.upstream.name(), t.repo.as_str())?;
        let result = match allowed {
            true => AuthzResult::OfflineAllowed,
            false => AuthzResult::OfflineDenied,
        };
        self.metrics.authz(t.upstream.name(), result);
        if allowed {
            tracing::debug!(
                upstream = t.upstream.name(),
                repo = t.repo.as_str(),
                "upstream failing; serving cache under the offline rule"
            );
            return Ok(());
        }
        tracing::info!(upstream = t.upstream.name(), repo = t.repo.as_str(), error = %cause, "refusing cached content: no recent authorization and the upstream cannot be asked");
        let code = if client.is_anonymous() {
            ErrorCode::Unauthorized
        } else {
            ErrorCode::Denied
        };
        Err(Error::client(
            code,
            format!(
                "the upstream is unreachable and these credentials have no recent authorization for {}",
                t.repo
            ),
        ))
    }

    /// Asks the upstream whether `client` may have `tail` (a `HEAD`), recording the answer.
    async fn probe(
        &self,
        t: &Target,
        client: &Client,
        tail: &str,
        not_found: ErrorCode,
    ) -> Result<()> {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static(crate::oci::media::MANIFEST_ACCEPT),
        );
        self.send_as(t, client, Method::HEAD, tail, &headers, not_found)
            .await
            .map(|_| ())
    }

    /// Sends `method tail` to the target's upstream with `client`'s credentials. A success
    /// is recorded as a positive decision for the client; any other status becomes the
    /// error (a 401/403 recorded as a refusal).
    pub async fn send_as(
        &self,
        t: &Target,
        client: &Client,
        method: Method,
        tail: &str,
        headers: &HeaderMap,
        not_found: ErrorCode,
    ) -> Result<http::Response<Incoming>> {
        let creds = t.upstream.creds_for(client);
        let resp = t
            .upstream
            .send(method, &t.repo, tail, headers, &creds)
            .await?;
        if !resp.status().is_success() {
            return Err(self
                .refused(t, client, resp.status(), resp.headers(), not_found)
                .await);
        }
        self.record(t, client, true).await?;
        Ok(resp)
    }

    /// Records an upstream decision about `client` pulling from `t`.
    pub async fn record(&self, t: &Target, client: &Client, allowed: bool) -> Result<()> {
        let result = match allowed {
            true => AuthzResult::Allowed,
            false => AuthzResult::Denied,
        };
        self.metrics.authz(t.upstream.name(), result);
        let written = self
            .authz
            .record(client, t.upstream.name(), t.repo.as_str(), allowed)
            .await?;
        if let Some(b) = self
            .bucket
            .as_ref()
            .filter(|_| written && client.is_anonymous())
        {
            b.share_anonymous(t.upstream.name(), t.repo.as_str(), allowed);
        }
        Ok(())
    }

    /// The error for an upstream's non-success answer to `client`; a 401/403 is remembered
    /// as a refusal.
    pub async fn refused(
        &self,
        t: &Target,
        client: &Client,
        status: StatusCode,
        headers: &HeaderMap,
        not_found: ErrorCode,
    ) -> Error {
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            if let Err(e) = self.record(t, client, false).await {
                tracing::warn!(error = %e, "could not record an authorization refusal");
            }
        }
        upstream_error(t.upstream.name(), status, headers, not_found)
    }
}
