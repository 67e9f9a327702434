//! The events of the HTTP edge, where the request and the client are known: a `pull` for
//! each manifest served to a `GET`, a `denied` for each `401`/`403` answered on a repository
//! or at `/token` (not the `/v2/` handshake, nor the `401` challenge of a request without
//! credentials; rule refusals are told by `registry::rules`).
//! The actor is the client's user name ([`crate::notify::Event::actor`]); a request's
//! `Authorization` value never reaches an event.

use super::body::ClientBody;
use super::host::host_of;
use super::observe::Labels;
use super::route::Route;
use super::RespBody;
use crate::auth::Client;
use crate::config::NotifyEvent;
use crate::notify::{Event, Notifier, RequestInfo, Target};
use crate::oci::Reference;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, USER_AGENT};
use http::{Method, Request, Response, StatusCode};
use std::net::SocketAddr;

/// The peer address of a request's connection (set by `server`).
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub SocketAddr);

/// What the events of one request need of it, taken before the handler consumes it.
pub(super) struct Seen {
    request: RequestInfo,
    /// The user of Basic credentials sent with the request (its password is dropped here).
    basic: Option<Client>,
    /// Whether it carried `Authorization` at all: a 401 without is the challenge that starts
    /// the token dance, not a refusal.
    presented: bool,
    scheme: &'static str,
}

impl Seen {
    pub(super) fn of(
        notify: &Notifier,
        req: &Request<ClientBody>,
        id: u64,
        tls: bool,
    ) -> Option<Seen> {
        if !notify.wants(NotifyEvent::Pull) && !notify.wants(NotifyEvent::Denied) {
            return None;
        }
        let h = req.headers();
        let addr = req
            .extensions()
            .get::<PeerAddr>()
            .map(|p| p.0.to_string())
            .unwrap_or_default();
        let host = host_of(h, req.uri()).unwrap_or("");
        let ua = h
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let basic = crate::auth::basic_from_headers(h).map(|c| match c {
            crate::auth::Credentials::Basic { user, .. } => {
                Client::new(crate::auth::Credentials::basic(&user, ""))
            }
            other => Client::new(other),
        });
        Some(Seen {
            request: RequestInfo::new(id, addr, host, req.method().as_str(), ua),
            basic,
            presented: h.contains_key(http::header::AUTHORIZATION),
            scheme: if tls { "https" } else { "http" },
        })
    }

    /// The events of the answer `resp` to this request.
    pub(super) fn answered(
        self,
        notify: &Notifier,
        route: Option<&Route<'_>>,
        labels: &Labels,
        resp: &Response<RespBody>,
    ) {
        let status = resp.status();
        match route {
            Some(Route::Manifest { name, reference })
                if status == StatusCode::OK && self.request.method == Method::GET.as_str() =>
            {
                self.pull(notify, name, reference, labels, resp)
            }
            Some(r) if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
                // A 403 before any target was resolved is a rule's (told already).
                let rule = status == StatusCode::FORBIDDEN && labels.upstream.is_empty();
                let challenge = status == StatusCode::UNAUTHORIZED && !self.presented;
                if !matches!(r, Route::Base | Route::Catalog) && !rule && !challenge {
                    self.denied(notify, r, labels, status)
                }
            }
            _ => {}
        }
    }

    fn pull(
        self,
        notify: &Notifier,
        name: &str,
        reference: &Reference,
        labels: &Labels,
        resp: &Response<RespBody>,
    ) {
        let h = resp.headers();
        let text = |n: &str| {
            h.get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let digest = text("docker-content-digest");
        let size = text(CONTENT_LENGTH.as_str()).parse().unwrap_or(0);
        let tag = match reference {
            Reference::Tag(t) => t.to_string(),
            Reference::Digest(_) => String::new(),
        };
        let url = format!(
            "{}://{}/v2/{name}/manifests/{digest}",
            self.scheme, self.request.host
        );
        let target = Target {
            media_type: text(CONTENT_TYPE.as_str()),
            digest,
            size,
            length: size,
            repository: labels.repo.clone(),
            url,
            tag,
        };
        let anonymous = Client::anonymous();
        let client = labels.client.as_deref().unwrap_or(&anonymous);
        let result = labels.outcome.result();
        notify.emit(Event::pull(
            target,
            self.request,
            client,
            &labels.upstream,
            result.as_str(),
        ));
    }

    fn denied(self, notify: &Notifier, route: &Route<'_>, labels: &Labels, status: StatusCode) {
        let reason = if status == StatusCode::UNAUTHORIZED {
            "unauthorized"
        } else {
            "forbidden"
        };
        let repo = match (labels.repo.as_str(), route.name()) {
            ("", Some(name)) => name.to_string(),
            (repo, _) => repo.to_string(),
        };
        let event =
            Event::denied(&labels.upstream, &repo, reason, status.as_u16()).request(self.request);
        let event = match (labels.client.as_deref(), &self.basic) {
            (Some(c), _) | (None, Some(c)) => event.actor(c),
            (None, None) => event,
        };
        notify.emit(event);
    }
}
