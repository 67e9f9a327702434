//! How an upstream authenticates: its challenge learned from a 401 of its own origin, the
//! token for a scope (through [`super::token`]), and checking a client's credentials.
//!
//! Invariant (with [`super::realm`]): credentials go only to a token realm that may receive
//! them; a challenge from a redirect target (a CDN) teaches nothing.

use super::challenge::{self, Challenge};
use super::send::ForeignOrigin;
use super::{realm, token, AuthScheme, Credentials, Upstream};
use crate::error::{Error, Result};
use crate::oci::RepoName;
use http::header::WWW_AUTHENTICATE;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use hyper::body::Incoming;

impl Upstream {
    /// Checks `creds` with the upstream for pulling `repo` (none: for logging in): at its token
    /// service (Bearer; refused when the realm may not receive credentials) or on `/v2/`
    /// (Basic). `Ok` when the upstream accepts them or needs no auth; the upstream's
    /// 401 as an error otherwise.
    pub async fn login(&self, creds: &Credentials, repo: Option<&RepoName>) -> Result<()> {
        if self.offline {
            return Err(self.offline_error());
        }
        if self.scheme.lock().ok().and_then(|s| s.clone()).is_none() {
            let uri = self.url("/v2/")?;
            let resp = self
                .send_following(&Method::GET, &uri, &HeaderMap::new(), None)
                .await?;
            if resp.status() == StatusCode::UNAUTHORIZED {
                let _ = self.learn_scheme(&resp);
            }
        }
        let scheme = self.scheme.lock().ok().and_then(|s| s.clone());
        match scheme {
            None => Ok(()),
            Some(AuthScheme::Bearer { trusted: false, .. }) => Err(Error::Upstream {
                upstream: self.name().to_string(),
                status: StatusCode::UNAUTHORIZED,
                code: crate::oci::ErrorCode::Unauthorized,
                message: "the upstream's token realm is not trusted with credentials".into(),
                retry_after: None,
            }),
            Some(AuthScheme::Bearer { .. }) => {
                // Without a repository, a token for no scope: what `docker login` checks.
                let scope =
                    repo.map_or(String::new(), |r| format!("repository:{}:pull", r.as_str()));
                self.authorization(creds, &scope, false).await.map(|_| ())
            }
            Some(AuthScheme::Basic) => {
                let uri = self.url("/v2/")?;
                let auth = creds.basic_header();
                let resp = self
                    .send_following(&Method::GET, &uri, &HeaderMap::new(), auth.as_ref())
                    .await?;
                if resp.status() == StatusCode::UNAUTHORIZED {
                    return Err(Error::Upstream {
                        upstream: self.name().to_string(),
                        status: StatusCode::UNAUTHORIZED,
                        code: crate::oci::ErrorCode::Unauthorized,
                        message: "the upstream refused the credentials".into(),
                        retry_after: None,
                    });
                }
                Ok(())
            }
        }
    }

    /// Remembers the auth scheme of a 401 response's challenge; returns the scope it names.
    /// Only the upstream's own origin may teach it: a 401 from a redirect target (a CDN)
    /// must never make Wharf send clients' credentials to a realm that host names.
    pub(super) fn learn_scheme(&self, resp: &Response<Incoming>) -> Option<Option<String>> {
        if resp.extensions().get::<ForeignOrigin>().is_some() {
            tracing::warn!(
                upstream = self.name(),
                "ignoring an authentication challenge from a redirect target"
            );
            return None;
        }
        let mut scope_for_token = None;
        let learned = resp
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(challenge::parse)
            .find_map(|c| match c {
                Challenge::Bearer {
                    realm,
                    service,
                    scope,
                } => {
                    scope_for_token = scope;
                    let trusted = self.realm_trusted(&realm);
                    Some(AuthScheme::Bearer {
                        realm,
                        service,
                        trusted,
                    })
                }
                Challenge::Basic { .. } => Some(AuthScheme::Basic),
                Challenge::Other(_) => None,
            })?;
        if let Ok(mut s) = self.scheme.lock() {
            *s = Some(learned);
        }
        Some(scope_for_token)
    }

    /// Whether `realm` may receive credentials (see [`realm`]); a refusal is logged once.
    fn realm_trusted(&self, realm_url: &str) -> bool {
        match realm::check(&self.cfg.url, &self.cfg.token_realm_hosts, realm_url) {
            Ok(()) => true,
            Err(why) => {
                if !self
                    .realm_warned
                    .swap(true, std::sync::atomic::Ordering::Relaxed)
                {
                    tracing::warn!(upstream = self.name(), why, "the upstream's token realm gets no credentials (anonymous tokens only); list its host in token_realm_hosts if it is trusted");
                }
                false
            }
        }
    }

    /// The `Authorization` value for a request needing `scope`, if the upstream's scheme is
    /// known. `renew` drops a cached token first (it was just refused).
    pub(super) async fn authorization(
        &self,
        creds: &Credentials,
        scope: &str,
        renew: bool,
    ) -> Result<Option<HeaderValue>> {
        let scheme = self.scheme.lock().ok().and_then(|s| s.clone());
        match scheme {
            None => Ok(None),
            Some(AuthScheme::Basic) => Ok(creds.basic_header()),
            Some(AuthScheme::Bearer {
                realm,
                service,
                trusted,
            }) => {
                let creds = if trusted {
                    creds
                } else {
                    &Credentials::Anonymous
                };
                let key = token::TokenKey::new(creds, service.as_deref(), scope);
                if renew {
                    self.tokens.invalidate(&key).await;
                }
                let token = self
                    .tokens
                    .get_or_fetch(key, || {
                        token::fetch(
                            &self.client,
                            self.name(),
                            &realm,
                            service.as_deref(),
                            scope,
                            creds,
                            &self.cfg.policy,
                        )
                    })
                    .await?;
                Ok(Some(token))
            }
        }
    }
}
