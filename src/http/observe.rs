//! Request observation: the `kind` a request is counted under, the `wharf_requests_total`
//! result, the served-bytes, time-to-first-byte and fill-waiter metrics metered as the body
//! goes out, and the one request log line. Label values come from the route and the outcome,
//! never from request text (the upstream label is a configured name).

use super::body::ClientBody;
use super::route::Route;
use super::RespBody;
use crate::metrics::{Kind, Metrics, RequestResult};
use http::header::CONTENT_LENGTH;
use http::{Method, Request, Response, Version};
use http_body_util::BodyExt;

/// What a request turned out to be, for metrics and the request log.
pub(super) struct Labels {
    pub(super) upstream: String,
    pub(super) repo: String,
    /// How a successful read was answered (a plain hit unless the registry said otherwise).
    pub(super) outcome: crate::registry::Outcome,
    /// The client as the target's upstream saw it, once known.
    pub(super) client: Option<std::sync::Arc<crate::auth::Client>>,
}

impl Default for Labels {
    fn default() -> Labels {
        Labels {
            upstream: String::new(),
            repo: String::new(),
            outcome: crate::registry::Outcome::Hit,
            client: None,
        }
    }
}

static REQUEST_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Decrements a gauge when dropped (with the response body it travels in).
struct GaugeGuard(prometheus::IntGauge);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A request being observed, from its head to its response.
pub(super) struct Observed {
    id: u64,
    started: tokio::time::Instant,
    method: Method,
    version: Version,
    push: bool,
    /// The `kind` label (`None`: not counted in `wharf_requests_total`).
    kind: Option<Kind>,
}

impl Observed {
    pub(super) fn begin(
        req: &Request<ClientBody>,
        route: Option<&Route<'_>>,
        push: bool,
    ) -> Observed {
        let kind = match route {
            Some(Route::Token) => Some(Kind::Token),
            _ if push => None,
            Some(Route::Manifest { .. }) => Some(Kind::Manifest),
            Some(Route::Blob { .. }) => Some(Kind::Blob),
            Some(Route::TagsList { .. }) => Some(Kind::Tags),
            Some(Route::Referrers { .. }) => Some(Kind::Referrers),
            _ => None,
        };
        Observed {
            id: REQUEST_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            started: tokio::time::Instant::now(),
            method: req.method().clone(),
            version: req.version(),
            push,
            kind,
        }
    }

    /// The request's id (in the log line and its events).
    pub(super) fn id(&self) -> u64 {
        self.id
    }

    /// Counts the answer, meters its body, and logs the request.
    pub(super) fn finish(
        self,
        m: &Metrics,
        labels: &Labels,
        outcome: RequestResult,
        mut resp: Response<RespBody>,
    ) -> Response<RespBody> {
        let status = resp.status();
        let result = match status.as_u16() {
            401 | 403 => RequestResult::Denied,
            s if s >= 400 => RequestResult::Error,
            _ => outcome,
        };
        let head = self.method == Method::HEAD;
        if let Some(kind) = self.kind {
            m.request(&labels.upstream, kind, result);
            if status.is_success() && !head && matches!(kind, Kind::Blob | Kind::Manifest) {
                resp = self.metered(m, labels, kind, outcome, resp);
            }
        }
        tracing::info!(
            id = self.id,
            method = %self.method,
            version = ?self.version,
            kind = self
                .kind
                .map_or(if self.push { "push" } else { "other" }, Kind::as_str),
            upstream = %labels.upstream,
            repo = %labels.repo,
            result = result.as_str(),
            status = status.as_u16(),
            bytes = resp.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).unwrap_or("-"),
            ms = self.started.elapsed().as_millis() as u64,
            "request"
        );
        resp
    }

    /// The body, counting served bytes and the time to its first byte as it goes out (and a
    /// fill waiter while it lasts).
    fn metered(
        &self,
        m: &Metrics,
        labels: &Labels,
        kind: Kind,
        outcome: RequestResult,
        resp: Response<RespBody>,
    ) -> Response<RespBody> {
        let source = outcome.source();
        let served = m.served_bytes_from(&labels.upstream, source);
        let ttfb = m.ttfb_of(kind, source);
        let waiter = (outcome == RequestResult::Coalesced && kind == Kind::Blob).then(|| {
            m.fill_waiters.inc();
            GaugeGuard(m.fill_waiters.clone())
        });
        let (started, mut first) = (self.started, true);
        resp.map(|body| {
            body.map_frame(move |f| {
                let _keep = &waiter;
                if let Some(d) = f.data_ref() {
                    served.inc_by(d.len() as u64);
                    if first {
                        first = false;
                        ttfb.observe(started.elapsed().as_secs_f64());
                    }
                }
                f
            })
            .boxed_unsync()
        })
    }
}
