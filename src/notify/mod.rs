//! Event notifications (`[[notify]]`): `pull`, `fill`, `purge`, `evict` and `denied` events,
//! sent to webhooks (CNCF Distribution's envelope, so its receivers read them) and JSON-lines
//! files.
//!
//! Invariants:
//! - **Never blocks or fails a request.** [`Notifier::emit`] is synchronous and does no I/O:
//!   it offers the event to each sink's queue with `try_send` and returns. Delivery runs in
//!   one task per sink (`deliver.rs`); its errors are counted and logged, never returned.
//! - **Bounded memory.** Each sink's queue holds at most [`Policy::queue`] events; an event
//!   offered to a full queue is dropped and counted (`wharf_notify_dropped_total{sink}`). A
//!   batch holds at most [`Policy::batch`] events; an event's request strings are cut to a
//!   bound (`event.rs`). Delivery is at most once: a batch is retried with backoff
//!   ([`Policy::attempts`]) and then given up (`wharf_notify_deliveries_total{result=failed}`).
//! - **No credential in any event.** An event names the client by its user name only
//!   ([`Event::actor`]); no password, token or `Authorization` value is ever copied into one.
//!   The webhook's configured headers go to the receiver only, never into an event or a log.
//!
//! Tests: `notify::tests` (envelope field names, filtering, no credential, queue bound and
//! drops, retries), `tests/it/notify.rs` (a loopback webhook, a receiver down, the file sink
//! and its reopen), `tests/it/e2e/auth/notify.rs` (skopeo through Wharf as alice, SIGHUP).

mod deliver;
mod event;
mod file;
mod webhook;

pub use deliver::Policy;
pub use event::{
    envelope, json_lines, Actor, Event, RequestInfo, Source, Target, Wharf, ENVELOPE_MEDIA_TYPE,
};

use crate::config::{NotifyConfig, NotifyEvent, NotifySink};
use crate::metrics::Metrics;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// One sink as the emitter sees it: its name, its filter, its queue.
struct Sink {
    name: String,
    events: Vec<NotifyEvent>,
    tx: mpsc::Sender<Arc<Event>>,
    reopen: Arc<AtomicBool>,
}

/// Hands events to the configured sinks without waiting for them.
pub struct Notifier {
    sinks: Vec<Sink>,
    source: Source,
    metrics: Option<Arc<Metrics>>,
}

impl Default for Notifier {
    fn default() -> Notifier {
        Notifier::disabled()
    }
}

impl Notifier {
    /// A notifier with no sinks: `emit` does nothing.
    pub fn disabled() -> Notifier {
        Notifier {
            sinks: Vec::new(),
            source: Source::default(),
            metrics: None,
        }
    }

    /// Starts one delivery task per configured sink (inside a Tokio runtime), with the
    /// default [`Policy`]; `addr` is the listen address events name as their source.
    pub fn start(
        cfgs: &[NotifyConfig],
        addr: std::net::SocketAddr,
        metrics: Arc<Metrics>,
    ) -> Result<Notifier, String> {
        Notifier::with_policy(cfgs, addr, metrics, Policy::default())
    }

    /// As [`Self::start`], with `policy` (tests shorten its backoff and queue).
    pub fn with_policy(
        cfgs: &[NotifyConfig],
        addr: std::net::SocketAddr,
        metrics: Arc<Metrics>,
        policy: Policy,
    ) -> Result<Notifier, String> {
        let names: Vec<String> = cfgs.iter().map(|c| c.name.clone()).collect();
        metrics.precreate_notify(&names);
        let mut sinks = Vec::new();
        for c in cfgs {
            let out: Box<dyn deliver::Deliver> = match &c.sink {
                NotifySink::Webhook { url, headers } => {
                    Box::new(webhook::Webhook::new(url.clone(), headers)?)
                }
                NotifySink::File(path) => Box::new(file::FileSink::new(path.clone())),
            };
            let (tx, rx) = mpsc::channel(policy.queue.max(1));
            let reopen = Arc::new(AtomicBool::new(false));
            let worker = deliver::Worker {
                name: c.name.clone(),
                timeout: c.timeout,
                policy: policy.clone(),
                metrics: metrics.clone(),
                reopen: reopen.clone(),
            };
            tokio::spawn(worker.run(rx, out));
            sinks.push(Sink {
                name: c.name.clone(),
                events: c.events.clone(),
                tx,
                reopen,
            });
        }
        let source = Source {
            addr: addr.to_string(),
            instance_id: event::random_id(),
        };
        Ok(Notifier {
            sinks,
            source,
            metrics: Some(metrics),
        })
    }

    /// Whether any sink wants events of `action` (callers skip building the others).
    pub fn wants(&self, action: NotifyEvent) -> bool {
        self.sinks.iter().any(|s| s.events.contains(&action))
    }

    /// Offers `event` to every sink that wants it; a full queue drops it (counted). Never
    /// waits.
    pub fn emit(&self, mut event: Event) {
        if !self.wants(event.action) {
            return;
        }
        event.source = self.source.clone();
        let event = Arc::new(event);
        for s in self
            .sinks
            .iter()
            .filter(|s| s.events.contains(&event.action))
        {
            if s.tx.try_send(event.clone()).is_err() {
                if let Some(m) = &self.metrics {
                    m.notify_dropped(&s.name);
                }
            }
        }
    }

    /// Makes every file sink reopen its file before its next write (SIGHUP, for logrotate).
    pub fn reopen(&self) {
        for s in &self.sinks {
            s.reopen.store(true, Ordering::SeqCst);
        }
    }

    /// This process's `source.instanceID`.
    pub fn instance_id(&self) -> &str {
        &self.source.instance_id
    }
}

#[cfg(test)]
mod tests;
