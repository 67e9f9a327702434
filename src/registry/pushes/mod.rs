//! [`Pushes`]: pushes through the mirror, forwarded to the upstream with the client's own
//! credentials; what goes through is cached on the way (blobs by `upload` with `uploads` and
//! `tee`, manifests by `manifest` into [`Manifests`]). The upstream's answer goes back as an
//! [`Answer`].
//!
//! Invariants:
//! - Pushes use the client's own credentials only: a client without any is anonymous
//!   upstream, never the upstream's configured `username` (that would let anyone push as the
//!   operator).
//! - The upstream's answers reach the client unchanged (status, headers, body); this folder
//!   only looks at them.
//! - A teed blob is committed only after the upstream confirmed the final `PUT` (201) and the
//!   bytes hashed to the digest the client named (see `uploads` for when a tee exists).

mod manifest;
mod tee;
mod upload;
pub mod uploads;

use super::access::Access;
use super::capacity::Evictor;
use super::fill::Fills;
use super::manifests::Manifests;
use super::referrers::Referrers;
use super::target::Target;
use crate::auth::Client;
use crate::error::Result;
use crate::metrics::{Metrics, StatusClass};
use crate::oci::{Digest, Reference, RepoName};
use crate::store::Store;
use crate::upstream::client::PushBody;
use crate::upstream::Payload;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use std::sync::Arc;

/// A push request, ready for the upstream.
pub struct PushRequest {
    pub method: Method,
    /// `/v2/<upstream repo>/...` with the query to forward.
    pub path_and_query: String,
    /// The client's headers worth forwarding.
    pub headers: HeaderMap,
    /// The client's body (with its read timeout).
    pub body: PushBody,
    pub what: Push,
}

/// What a push request does.
pub enum Push {
    /// Anything on `blobs/uploads/[<session>]`.
    Upload {
        session: Option<String>,
        /// `?digest=` of a final `PUT` or a monolithic `POST`.
        digest: Option<Digest>,
        /// Where the request's `Content-Range` says its bytes start.
        offset: Option<u64>,
        /// A cross-repository mount: the digest and the repository it comes from.
        mount: Option<(Digest, RepoName)>,
    },
    /// `PUT manifests/<reference>`.
    Manifest {
        reference: Reference,
        content_type: Option<String>,
    },
    DeleteManifest {
        reference: Reference,
    },
    DeleteBlob {
        digest: Digest,
    },
}

/// The upstream's answer to a push, for the client.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: UnsyncBoxBody<Bytes, std::io::Error>,
}

impl Answer {
    fn of(resp: http::Response<hyper::body::Incoming>) -> Answer {
        let (p, body) = resp.into_parts();
        Answer {
            status: p.status,
            headers: p.headers,
            body: body.map_err(std::io::Error::other).boxed_unsync(),
        }
    }
}

/// One push request as it is forwarded: where, for whom, with what.
struct Forward<'a> {
    t: &'a Target,
    client: &'a Client,
    method: Method,
    /// `/v2/<upstream repo>/...` with the query.
    path: &'a str,
    headers: &'a HeaderMap,
    /// The token scope the upstream is asked for.
    scope: String,
}

impl Forward<'_> {
    /// Sends the request upstream with the client's own credentials.
    async fn send(&self, payload: Payload) -> Result<http::Response<hyper::body::Incoming>> {
        let (t, method) = (self.t, self.method.clone());
        t.upstream
            .send_push(
                method,
                self.path,
                self.headers,
                payload,
                &self.client.creds,
                &self.scope,
            )
            .await
    }
}

/// Pushes, forwarded and teed.
pub struct Pushes {
    store: Arc<Store>,
    access: Arc<Access>,
    manifests: Arc<Manifests>,
    referrers: Arc<Referrers>,
    fills: Arc<Fills>,
    evictor: Arc<Evictor>,
    metrics: Arc<Metrics>,
    /// Blob uploads being teed into the cache.
    uploads: uploads::Uploads,
}

/// What [`Pushes`] works with.
pub struct Parts {
    pub store: Arc<Store>,
    pub access: Arc<Access>,
    pub manifests: Arc<Manifests>,
    pub referrers: Arc<Referrers>,
    pub fills: Arc<Fills>,
    pub evictor: Arc<Evictor>,
    pub metrics: Arc<Metrics>,
    /// `cache.max_size`: no tee for a larger upload.
    pub max_size: u64,
}

impl Pushes {
    pub fn new(p: Parts) -> Pushes {
        Pushes {
            uploads: uploads::Uploads::new(p.store.clone(), p.max_size),
            store: p.store,
            access: p.access,
            manifests: p.manifests,
            referrers: p.referrers,
            fills: p.fills,
            evictor: p.evictor,
            metrics: p.metrics,
        }
    }

    /// Upload sessions being teed.
    pub fn uploads(&self) -> usize {
        self.uploads.count()
    }

    /// Forwards a push to the target's upstream; returns the upstream's answer as it is.
    pub async fn push(&self, t: &Target, client: &Client, req: PushRequest) -> Result<Answer> {
        let PushRequest {
            method,
            path_and_query,
            headers,
            body,
            what,
        } = req;
        let fwd = Forward {
            t,
            client,
            method,
            path: &path_and_query,
            headers: &headers,
            scope: scope(t, &what),
        };
        let res = self.forward(&fwd, body, what).await;
        let class = match &res {
            Ok(r) => StatusClass::of(r.status().as_u16()),
            Err(_) => StatusClass::Error,
        };
        self.metrics.push_forwarded(t.upstream.name(), class);
        res.map(Answer::of)
    }

    async fn forward(
        &self,
        fwd: &Forward<'_>,
        body: PushBody,
        what: Push,
    ) -> Result<http::Response<hyper::body::Incoming>> {
        let t = fwd.t;
        match what {
            Push::Upload {
                session,
                digest,
                offset,
                mount,
            } => {
                let u = upload::Upload {
                    session,
                    digest,
                    offset,
                    mount: mount.map(|(d, _)| d),
                };
                self.upload(fwd, body, u).await
            }
            Push::Manifest {
                reference,
                content_type,
            } => self.manifest(fwd, body, &reference, content_type).await,
            Push::DeleteManifest { reference } => {
                let resp = fwd.send(Payload::Empty).await?;
                if resp.status().is_success() {
                    let forgotten = self.manifests.deleted(t, &reference).await;
                    if let Ok(Some(subject)) = &forgotten {
                        self.referrers.invalidate(t, subject).await;
                    }
                    warn_on(t, "forget a deleted manifest", forgotten.map(|_| ()));
                }
                Ok(resp)
            }
            Push::DeleteBlob { digest } => {
                let resp = fwd.send(Payload::Empty).await?;
                if resp.status().is_success() {
                    let unlinked =
                        self.store
                            .delete_link(t.upstream.name(), t.repo.as_str(), &digest);
                    warn_on(t, "unlink a deleted blob", unlinked);
                }
                Ok(resp)
            }
        }
    }
}

/// The token scope a push needs upstream.
fn scope(t: &Target, what: &Push) -> String {
    let repo = t.repo.as_str();
    match what {
        Push::DeleteManifest { .. } | Push::DeleteBlob { .. } => {
            format!("repository:{repo}:delete")
        }
        Push::Upload {
            mount: Some((_, from)),
            ..
        } => format!("repository:{repo}:pull,push repository:{from}:pull"),
        _ => format!("repository:{repo}:pull,push"),
    }
}

/// Logs what could not be noted after the upstream answered: the push itself went through,
/// and its answer reaches the client regardless.
fn warn_on(t: &Target, what: &str, res: Result<()>) {
    if let Err(e) = res {
        tracing::warn!(upstream = t.upstream.name(), repo = t.repo.as_str(), error = %e, "could not {what}");
    }
}
