//! Request handlers: a parsed [`Route`] in, a response out.

use super::body::ClientBody;
use super::error::into_response;
use super::events::Seen;
use super::host::host_of;
use super::observe::{Labels, Observed};
use super::range::ByteRange;
use super::respond::{blob_response, header, json_response, rewrite_link};
use super::route::{self, Query, Route};
use super::{empty, full, RespBody};
use crate::auth::{Presented, Sessions};
use crate::error::{Error, Result};
use crate::oci::ErrorCode;
use crate::registry::{Outcome, Registry, Served};
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, ETAG, RANGE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use std::sync::Arc;

const API_VERSION: (&str, &str) = ("docker-distribution-api-version", "registry/2.0");
const DIGEST_HEADER: &str = "docker-content-digest";

pub struct Handler {
    /// The registry listener speaks HTTPS (the token realm's scheme).
    pub tls: bool,
    pub registry: Arc<Registry>,
    pub sessions: Arc<Sessions>,
    /// Told of each manifest served and each 401/403 (see `events`).
    pub notify: Arc<crate::notify::Notifier>,
}

/// The URL of Wharf's token endpoint as this client reaches Wharf.
fn realm(headers: &http::HeaderMap, uri: &http::Uri, tls: bool) -> String {
    let host = host_of(headers, uri).unwrap_or("localhost");
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{host}/token")
}

impl Handler {
    pub async fn handle(&self, req: Request<ClientBody>) -> Response<RespBody> {
        let method = req.method().clone();
        let head = method == Method::HEAD;
        let path = req.uri().path().to_string();
        // Parsed once; dispatch and the challenge use the same route.
        let parsed = route::parse(&path);
        let push = route::is_push(&method, parsed.as_ref().ok());
        let observed = Observed::begin(&req, parsed.as_ref().ok(), push);
        let seen = Seen::of(&self.notify, &req, observed.id(), self.tls);
        let mut labels = Labels::default();
        let resp = if matches!(parsed, Ok(Route::Token)) {
            match super::token::handle(&self.registry, &self.sessions, req).await {
                Ok(r) => r,
                Err(e) => into_response(&e, head),
            }
        } else if let (true, Ok(route)) = (push, &parsed) {
            let (parts, body) = req.into_parts();
            match self.push(&parts, body, route.clone(), &mut labels).await {
                Ok(r) => r,
                Err(e) => {
                    self.error_response(&parts.headers, &parts.uri, Some(route), &e, head, true)
                }
            }
        } else {
            match self.dispatch(&req, parsed.clone(), &mut labels).await {
                Ok(r) => r,
                Err(e) => self.error_response(
                    req.headers(),
                    req.uri(),
                    parsed.as_ref().ok(),
                    &e,
                    head,
                    false,
                ),
            }
        };
        if let Some(seen) = seen {
            seen.answered(&self.notify, parsed.as_ref().ok(), &labels, &resp);
        }
        let outcome = labels.outcome.result();
        let mut resp = observed.finish(&self.registry.metrics, &labels, outcome, resp);
        resp.headers_mut()
            .insert(API_VERSION.0, HeaderValue::from_static(API_VERSION.1));
        resp
    }

    /// The error response, with a challenge on 401 so the client can authenticate.
    fn error_response(
        &self,
        headers: &http::HeaderMap,
        uri: &http::Uri,
        route: Option<&Route<'_>>,
        e: &Error,
        head: bool,
        push: bool,
    ) -> Response<RespBody> {
        let mut r = into_response(e, head);
        if r.status() == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                self.challenge(headers, uri, route, push),
            );
        }
        r
    }

    /// `client` as `t`'s upstream sees it (see `auth`); Basic credentials sent with the request
    /// itself go through the same throttled check as at `/token` before any upstream request
    /// is made with them (Wharf's tokens were checked when issued).
    pub(super) async fn checked(
        &self,
        client: &Arc<crate::auth::Client>,
        t: &crate::registry::Target,
    ) -> Result<Arc<crate::auth::Client>> {
        let client = client.for_upstream(t.upstream.name());
        if client.upstreams.is_none() && !client.is_anonymous() {
            super::token::check(&self.sessions, &client.creds, &t.upstream, Some(&t.repo)).await?;
        }
        Ok(client)
    }

    /// The `WWW-Authenticate` that sends this client to Wharf's `/token`.
    pub(super) fn challenge(
        &self,
        headers: &http::HeaderMap,
        uri: &http::Uri,
        route: Option<&Route<'_>>,
        push: bool,
    ) -> HeaderValue {
        // The repository as the client wrote it (it resolved, so it is a valid name), with
        // containerd's `ns=` folded in as the resolved upstream's configured name, never the
        // request's text; `/token` reads it back the same way.
        let query = Query::parse(uri.query());
        let host = host_of(headers, uri);
        let scope = route.and_then(Route::name).and_then(|name| {
            let t = self
                .registry
                .route_at(host, name, query.ns.as_deref())
                .ok()?;
            let actions = if push { "pull,push" } else { "pull" };
            Some(match (t.by_host, query.ns.is_some()) {
                (false, true) => format!("repository:{}/{name}:{actions}", t.upstream.name()),
                _ => format!("repository:{name}:{actions}"),
            })
        });
        crate::auth::challenge(&realm(headers, uri, self.tls), scope.as_deref())
    }

    async fn dispatch(
        &self,
        req: &Request<ClientBody>,
        route: Result<Route<'_>>,
        labels: &mut Labels,
    ) -> Result<Response<RespBody>> {
        let route = route?;
        let method = req.method();
        if method != Method::GET && method != Method::HEAD {
            return Err(Error::client(
                ErrorCode::Unsupported,
                format!("{method} is not supported on this endpoint"),
            ));
        }
        let head = method == Method::HEAD;
        let client = self.client_of(req).await?;
        match route {
            Route::Base => Ok(json_response(StatusCode::OK, b"{}".to_vec(), head)),
            Route::Manifest { name, reference } => {
                let (t, client) = self.target(req, name, &client, labels).await?;
                let (resp, outcome) = self.manifest(req, &t, &client, &reference, head).await?;
                labels.outcome = outcome;
                Ok(resp)
            }
            Route::Blob { name, digest } => {
                let (t, client) = self.target(req, name, &client, labels).await?;
                let (resp, outcome) = self.blob(req, t, &client, &digest, head).await?;
                labels.outcome = outcome;
                Ok(resp)
            }
            Route::TagsList { name } => {
                let (t, client) = self.target(req, name, &client, labels).await?;
                let query = Query::parse(req.uri().query());
                let list = self
                    .registry
                    .tags_list(&t, &client, query.pagination().as_deref())
                    .await?;
                // Pagination: the upstream's `Link` names its own repository path; point it back
                // at the name (and `ns`) this client used.
                let link = list
                    .link
                    .as_deref()
                    .map(|l| rewrite_link(l, t.repo.as_str(), name, query.ns.as_deref()));
                Ok(super::tags::response(name, &list, link, head))
            }
            Route::Referrers { name, digest } => {
                let (t, client) = self.target(req, name, &client, labels).await?;
                let types = super::referrers::artifact_types(req.uri().query());
                let list = self
                    .registry
                    .referrers(&t, &client, &digest, &types)
                    .await?;
                labels.outcome = list.outcome;
                Ok(super::referrers::response(list.value, head))
            }
            Route::Upload { .. } | Route::Catalog | Route::Token => Err(Error::client(
                ErrorCode::Unsupported,
                "this operation is not supported by the mirror",
            )),
        }
    }

    /// Who a read request is: a Wharf token, Basic credentials, or (from a peer replica, for
    /// an anonymous client) anonymous; nothing or an unknown token is a 401.
    async fn client_of(&self, req: &Request<ClientBody>) -> Result<Arc<crate::auth::Client>> {
        match self.sessions.identify(req.headers()).await {
            Presented::Client(c) => Ok(c),
            // A peer replica asking for an anonymous client: anyone may get an anonymous
            // token from /token, so this grants nothing a client could not have.
            Presented::Nothing if req.headers().contains_key(crate::cluster::PEER_HEADER) => {
                Ok(Arc::new(crate::auth::Client::anonymous()))
            }
            Presented::Nothing | Presented::Invalid => Err(Error::client(
                ErrorCode::Unauthorized,
                "authentication required: get a token from the realm in WWW-Authenticate",
            )),
        }
    }

    /// The request's target for repository `name` (its `Host` and `ns=` too), the client as
    /// that upstream sees it, and the labels that name them.
    async fn target(
        &self,
        req: &Request<ClientBody>,
        name: &str,
        client: &Arc<crate::auth::Client>,
        labels: &mut Labels,
    ) -> Result<(crate::registry::Target, Arc<crate::auth::Client>)> {
        let query = Query::parse(req.uri().query());
        let host = host_of(req.headers(), req.uri());
        let t = self.registry.resolve_at(host, name, query.ns.as_deref())?;
        let client = self.checked(client, &t).await?;
        labels.upstream = t.upstream.name().to_string();
        labels.repo = t.repo.to_string();
        labels.client = Some(client.clone());
        Ok((t, client))
    }

    async fn manifest(
        &self,
        req: &Request<ClientBody>,
        t: &crate::registry::Target,
        client: &crate::auth::Client,
        reference: &crate::oci::Reference,
        head: bool,
    ) -> Result<(Response<RespBody>, Outcome)> {
        let accept: Vec<String> = req
            .headers()
            .get_all(ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect();
        let Served { value: m, outcome } = self
            .registry
            .manifest(t, client, reference, &accept)
            .await?;
        let mut resp = Response::new(if head { empty() } else { full(m.bytes.clone()) });
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, header(&m.media_type)?);
        h.insert(CONTENT_LENGTH, HeaderValue::from(m.bytes.len()));
        h.insert(DIGEST_HEADER, header(&m.digest.to_string())?);
        h.insert(ETAG, header(&format!("\"{}\"", m.digest))?);
        Ok((resp, outcome))
    }

    async fn blob(
        &self,
        req: &Request<ClientBody>,
        mut t: crate::registry::Target,
        client: &crate::auth::Client,
        digest: &crate::oci::Digest,
        head: bool,
    ) -> Result<(Response<RespBody>, Outcome)> {
        if let Some(v) = req.headers().get(crate::cluster::PEER_HEADER) {
            if self.registry.from_itself(v.as_bytes()) {
                let mut resp = Response::new(empty());
                *resp.status_mut() = crate::cluster::LOOP_STATUS;
                return Ok((resp, Outcome::Hit));
            }
            t.via_peer = true;
        }
        let range = req
            .headers()
            .get(RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(ByteRange::parse);
        let blob = self.registry.blob(&t, client, digest, head).await?;
        let outcome = blob.outcome();
        Ok((blob_response(blob, digest, range, head)?, outcome))
    }
}
