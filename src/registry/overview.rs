//! What the admin API shows of the live registry: each upstream's health beside what it has
//! in the cache, and the fills in flight. Read-only views; the store's own reports are in
//! `store::catalog` and `store::inspect`.

use super::fill::FillState;
use super::Registry;
use crate::error::Result;
use crate::store::catalog::Cached;
use serde::Serialize;
use std::sync::Arc;

#[derive(Debug, Clone, Serialize)]
pub struct UpstreamView {
    pub name: String,
    pub url: String,
    /// `"closed"` (requests flow) or `"open"` (held back after repeated failures).
    pub breaker: &'static str,
    /// The last `ratelimit-remaining` the upstream sent, if it sends one.
    pub rate_limit_remaining: Option<i64>,
    pub last_error: Option<LastError>,
    pub cached: Cached,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastError {
    pub message: String,
    /// RFC 3339.
    pub at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FillView {
    pub digest: String,
    /// `"starting"`, `"streaming"`, `"verified"` (being committed), `"committed"`, `"failed"`.
    pub state: &'static str,
    pub written: u64,
    /// From the origin's `Content-Length`; `None` until it answered (or without one).
    pub size: Option<u64>,
    /// Clients reading the fill now.
    pub waiters: u64,
    /// The upstream's name, `the shared bucket` or `the owner replica`; `None` until the
    /// download opened.
    pub origin: Option<String>,
}

impl Registry {
    /// Every configured upstream with its health and its cached totals.
    pub fn upstreams_view(&self) -> Result<Vec<UpstreamView>> {
        let totals = self.store.upstream_totals()?;
        Ok(self
            .routes
            .all()
            .iter()
            .map(|u| UpstreamView {
                name: u.name().to_string(),
                url: u.cfg.url.to_string(),
                breaker: if u.breaker_open() { "open" } else { "closed" },
                rate_limit_remaining: u.health().remaining(),
                last_error: u.health().last_error().map(|(message, at)| LastError {
                    message,
                    at: humantime::format_rfc3339_seconds(at).to_string(),
                }),
                cached: totals.get(u.name()).cloned().unwrap_or_default(),
            })
            .collect())
    }

    /// The fills in flight, by digest.
    pub fn fills_view(&self) -> Vec<FillView> {
        let mut out: Vec<FillView> = self
            .blobs
            .fills()
            .all()
            .into_iter()
            .map(|f| {
                let (state, written, size) = match f.state() {
                    FillState::Starting => ("starting", 0, None),
                    FillState::Streaming { size, written } => ("streaming", written, size),
                    FillState::Verified { size } => ("verified", size, Some(size)),
                    FillState::Committed { size } => ("committed", size, Some(size)),
                    FillState::Failed(_) => ("failed", 0, None),
                };
                // Held besides the readers: the in-flight map, the fill's task, this view.
                let waiters = Arc::strong_count(&f).saturating_sub(3) as u64;
                FillView {
                    digest: f.digest.to_string(),
                    state,
                    written,
                    size,
                    waiters,
                    origin: f.origin().map(str::to_string),
                }
            })
            .collect();
        out.sort_by(|a, b| a.digest.cmp(&b.digest));
        out
    }
}
