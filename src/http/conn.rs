//! One client connection's life: what counts as activity, and when the server ends it.
//!
//! A request is *in flight* from the moment hyper hands it to the service until its response
//! body is finished or dropped (a stream reset included). Invariants, whatever the protocol
//! (HTTP/1.1, HTTP/2, behind TLS or not):
//! - a connection that has not delivered a complete first request head within
//!   `header_read_timeout` is dropped (silent, a partial preface, HTTP/2 without a stream);
//! - a connection with no request in flight for `idle_timeout` (HTTP/1.1 keep-alive between
//!   requests, HTTP/2 with no open stream) is shut down gracefully (`GOAWAY` for HTTP/2);
//! - a connection shut down (idle, or the server stopping) that still has nothing in flight
//!   [`CLOSING`] later is dropped: a peer that never answers the `GOAWAY` ping holds nothing;
//! - a request whose body stalled (see `body`) is answered `408`, whatever the handler made
//!   of the failed read.
//!
//! hyper bounds the rest: later HTTP/1.1 heads (its own header timeout, so an idle HTTP/1.1
//! connection goes at the shorter of the two timeouts), and HTTP/2 peers that stop answering
//! keep-alive pings.

use super::body::ClientBody;
use super::{full, RespBody};
use http::{HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::server::graceful::GracefulConnection;
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

/// How long a connection being shut down, with nothing in flight, may take to close.
pub const CLOSING: Duration = Duration::from_secs(5);

/// The timeouts [`drive`] enforces.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub first_request: Duration,
    pub idle: Duration,
}

/// What a connection is doing, shared by its service and its driver.
pub struct Activity {
    born: Instant,
    asked: AtomicBool,
    /// Notified when the first request arrives (the driver then leaves the first-request
    /// rule for the idle rule).
    first: Notify,
    busy: AtomicUsize,
    /// Milliseconds from `born` to the last time a request started or ended.
    last_ms: AtomicU64,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            born: Instant::now(),
            asked: AtomicBool::new(false),
            first: Notify::new(),
            busy: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        })
    }

    /// A request arrived; it is in flight until the guard is dropped.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.busy.fetch_add(1, Ordering::SeqCst);
        self.touch();
        if !self.asked.swap(true, Ordering::SeqCst) {
            self.first.notify_one();
        }
        InFlight(self.clone())
    }

    fn touch(&self) {
        let ms = self.born.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::SeqCst);
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            born: self.born,
            asked: self.asked.load(Ordering::SeqCst),
            busy: self.busy.load(Ordering::SeqCst) > 0,
            last: self.born + Duration::from_millis(self.last_ms.load(Ordering::SeqCst)),
        }
    }
}

/// One request in flight.
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        // The time first: whoever sees the count drop sees when.
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves one request: the body gets its read timeout, a stalled body gets a `408`, and the
/// request stays in flight until hyper is done with the response body.
pub async fn answer<H, F>(
    handle: H,
    req: Request<Incoming>,
    in_flight: InFlight,
    gap: Duration,
) -> Result<Response<RespBody>, Infallible>
where
    H: Fn(Request<ClientBody>) -> F,
    F: Future<Output = Response<RespBody>>,
{
    let (parts, body) = req.into_parts();
    let version = parts.version;
    let (body, stalled) = ClientBody::new(body, gap);
    let mut resp = handle(Request::from_parts(parts, body)).await;
    if stalled.get() {
        tracing::info!(
            handler_status = resp.status().as_u16(),
            "request body stalled for {gap:?}; answered 408"
        );
        resp = request_timeout(version);
    }
    Ok(resp.map(move |b| {
        b.map_frame(move |f| {
            let _keep = &in_flight;
            f
        })
        .boxed_unsync()
    }))
}

fn request_timeout(version: Version) -> Response<RespBody> {
    let mut resp = Response::new(full("request body not received in time\n"));
    *resp.status_mut() = StatusCode::REQUEST_TIMEOUT;
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    if version < Version::HTTP_2 {
        // The rest of the body is not coming: no further request on this connection.
        h.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// How a connection ended.
#[derive(Debug, PartialEq)]
pub enum Ended {
    /// By itself (the client closed, a protocol error, a graceful shutdown that finished).
    Done(Result<(), String>),
    /// No complete first request head in time: dropped.
    NoRequest,
    /// Nothing in flight for `idle` (shut down gracefully, or dropped after [`CLOSING`]).
    Idle,
    /// The server's shutdown did not finish within [`CLOSING`] with nothing in flight.
    Abandoned,
}

/// Runs `conn` until it ends or the rules of this module end it. `stop` changing (or its
/// sender going away) asks for a graceful shutdown.
pub async fn drive<C>(
    conn: C,
    activity: &Activity,
    t: Timeouts,
    mut stop: watch::Receiver<()>,
) -> Ended
where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    tokio::pin!(conn);
    // Since when the connection is being shut down, and whether for idleness.
    let mut closing: Option<(Instant, bool)> = None;
    loop {
        let now = Instant::now();
        let since = closing.map(|(s, _)| s);
        let wake = match step(&activity.snapshot(), t, since, now) {
            Step::Wait(at) => at,
            Step::Drop if closing.is_none() => return Ended::NoRequest,
            Step::Drop if closing.is_some_and(|(_, idle)| idle) => return Ended::Idle,
            Step::Drop => return Ended::Abandoned,
            Step::Shutdown => {
                conn.as_mut().graceful_shutdown();
                closing = Some((now, true));
                continue;
            }
        };
        tokio::select! {
            res = conn.as_mut() => {
                return match (res, closing) {
                    (Ok(()), Some((_, true))) => Ended::Idle,
                    (res, _) => Ended::Done(res.map_err(|e| e.to_string())),
                };
            }
            _ = stop.changed(), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing = Some((Instant::now(), false));
            }
            _ = activity.first.notified() => {}
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}

/// [`Activity`] at one instant.
#[derive(Debug, Clone, Copy)]
struct Snapshot {
    born: Instant,
    asked: bool,
    busy: bool,
    last: Instant,
}

#[derive(Debug, PartialEq)]
enum Step {
    /// Nothing to do before this instant (unless the connection moves).
    Wait(Instant),
    Shutdown,
    Drop,
}

/// What the rules say about a connection at `now` (`closing`: being shut down since then).
fn step(a: &Snapshot, t: Timeouts, closing: Option<Instant>, now: Instant) -> Step {
    let due = |at: Instant| if now >= at { None } else { Some(at) };
    match closing {
        Some(_) if a.busy => Step::Wait(now + CLOSING),
        Some(since) => due(since + CLOSING).map_or(Step::Drop, Step::Wait),
        None if !a.asked => due(a.born + t.first_request).map_or(Step::Drop, Step::Wait),
        // Requests in flight are bounded elsewhere; look again later.
        None if a.busy => Step::Wait(now + t.idle),
        None => due(a.last + t.idle).map_or(Step::Shutdown, Step::Wait),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        first_request: Duration::from_secs(2),
        idle: Duration::from_secs(10),
    };

    fn at(base: Instant, secs: u64) -> Instant {
        base + Duration::from_secs(secs)
    }

    #[test]
    fn the_rules() {
        let b = Instant::now();
        let fresh = Snapshot {
            born: b,
            asked: false,
            busy: false,
            last: b,
        };
        // No request yet: the first-request deadline, then dropped.
        assert_eq!(step(&fresh, T, None, at(b, 1)), Step::Wait(at(b, 2)));
        assert_eq!(step(&fresh, T, None, at(b, 2)), Step::Drop);
        // A request in flight: never idle, however long it takes.
        let busy = Snapshot {
            asked: true,
            busy: true,
            last: at(b, 1),
            ..fresh
        };
        assert_eq!(step(&busy, T, None, at(b, 100)), Step::Wait(at(b, 110)));
        // Idle since its last request ended: shut down `idle` after that.
        let idle = Snapshot {
            busy: false,
            ..busy
        };
        assert_eq!(step(&idle, T, None, at(b, 5)), Step::Wait(at(b, 11)));
        assert_eq!(step(&idle, T, None, at(b, 11)), Step::Shutdown);
        // Being shut down: dropped CLOSING later unless something is in flight.
        let since = at(b, 11);
        assert_eq!(
            step(&idle, T, Some(since), at(b, 12)),
            Step::Wait(since + CLOSING)
        );
        assert_eq!(step(&idle, T, Some(since), since + CLOSING), Step::Drop);
        assert_eq!(
            step(&busy, T, Some(since), at(b, 100)),
            Step::Wait(at(b, 100) + CLOSING)
        );
    }
}
