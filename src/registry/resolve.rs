//! Where a request goes: the upstream and the repository, from the name the client wrote, the
//! `Host` it connected to, and containerd's `?ns=`.
//!
//! Invariants:
//! - A `Host` named in an upstream's `hosts` fixes the upstream: neither a path prefix nor
//!   `ns=` can send such a request (and the credentials a client keeps for that host) to
//!   another upstream.
//! - Otherwise `ns=` names the upstream (it must be a configured name or alias), then a first
//!   path component naming an upstream, then the default upstream.
//! - `ns=` must name a configured upstream; the challenge scope then carries that upstream's
//!   configured name, never the request's text (`http::handlers`).

use super::target::Target;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::oci::{ErrorCode, RepoName};
use crate::upstream::Upstream;
use std::sync::Arc;

/// The configured upstreams, which one a request goes to, and whether its repository rules
/// let the request through.
pub struct Routes {
    upstreams: Vec<Arc<Upstream>>,
    default: Option<usize>,
    /// Refusals are counted and sent as `denied` events.
    metrics: Arc<Metrics>,
    notify: Arc<Notifier>,
}

impl Routes {
    pub fn new(
        upstreams: Vec<Arc<Upstream>>,
        default: Option<usize>,
        metrics: Arc<Metrics>,
        notify: Arc<Notifier>,
    ) -> Routes {
        Routes {
            upstreams,
            default,
            metrics,
            notify,
        }
    }

    /// `Ok` when `t`'s upstream serves its repository; otherwise the refusal (`rules`).
    pub fn admit(&self, t: &Target) -> Result<()> {
        super::rules::admit(t, &self.metrics, &self.notify)
    }

    pub fn all(&self) -> &[Arc<Upstream>] {
        &self.upstreams
    }

    /// Picks the upstream and the repository for a name as the client wrote it (see the
    /// module's invariants). Docker Hub's single-segment names get `library/`.
    pub fn resolve_at(&self, host: Option<&str>, name: &str, ns: Option<&str>) -> Result<Target> {
        let invalid = |e: crate::oci::NameError| {
            Error::client(
                ErrorCode::NameInvalid,
                format!("invalid repository name: {e}"),
            )
        };
        let by_host = host.and_then(|h| self.upstream_for_host(h));
        let (upstream, repo) = if let Some(u) = by_host.clone() {
            (u, RepoName::parse(name).map_err(invalid)?)
        } else if let Some(ns) = ns {
            let u = self.find_upstream(ns).ok_or_else(|| {
                Error::client(ErrorCode::NameUnknown, format!("no upstream named {ns:?}"))
            })?;
            (u, RepoName::parse(name).map_err(invalid)?)
        } else {
            let prefixed = name
                .split_once('/')
                .and_then(|(first, rest)| self.find_upstream(first).map(|u| (u, rest)));
            match prefixed {
                Some((u, rest)) => (u, RepoName::parse(rest).map_err(invalid)?),
                None => (
                    self.default_for(None)?,
                    RepoName::parse(name).map_err(invalid)?,
                ),
            }
        };
        let repo = if upstream.cfg.is_docker_hub() {
            repo.with_library_prefix()
        } else {
            repo
        };
        Ok(Target {
            upstream,
            repo,
            via_peer: false,
            by_host: by_host.is_some(),
        })
    }

    /// The upstream a request without a repository (a `/token` without scope) is about: the
    /// one `host` routes to, else the default upstream.
    pub fn default_for(&self, host: Option<&str>) -> Result<Arc<Upstream>> {
        if let Some(u) = host.and_then(|h| self.upstream_for_host(h)) {
            return Ok(u);
        }
        self.default
            .and_then(|i| self.upstreams.get(i))
            .cloned()
            .ok_or_else(|| {
                Error::client(
                    ErrorCode::NameUnknown,
                    "no default upstream is configured; prefix the name with an upstream",
                )
            })
    }

    /// The configured name of the upstream called `name` (its name or an alias).
    pub fn upstream_name(&self, name: &str) -> Option<String> {
        self.find_upstream(name).map(|u| u.name().to_string())
    }

    fn find_upstream(&self, name: &str) -> Option<Arc<Upstream>> {
        self.upstreams.iter().find(|u| u.cfg.matches(name)).cloned()
    }

    /// The upstream whose `hosts` names `host` (a `Host` header value; any port ignored).
    fn upstream_for_host(&self, host: &str) -> Option<Arc<Upstream>> {
        let bare = strip_port(host);
        self.upstreams
            .iter()
            .find(|u| u.cfg.hosts.iter().any(|h| h.eq_ignore_ascii_case(bare)))
            .cloned()
    }
}

/// `host[:port]` or `[v6]:port` → the host.
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ports_are_stripped_from_hosts() {
        assert_eq!(
            super::strip_port("ghcr.mirror.example:5000"),
            "ghcr.mirror.example"
        );
        assert_eq!(
            super::strip_port("ghcr.mirror.example"),
            "ghcr.mirror.example"
        );
        assert_eq!(super::strip_port("[::1]:5000"), "::1");
        assert_eq!(super::strip_port("127.0.0.1:80"), "127.0.0.1");
    }
}
