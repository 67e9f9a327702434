//! Repository rules at the door: a request for a repository its upstream's `allow`/`deny`
//! refuses (see `oci::pattern`) is answered `403 DENIED` here, when its target is resolved,
//! so nothing is read from the cache or asked of the upstream for it.

use super::target::Target;
use crate::error::{Error, Result};
use crate::metrics::{Metrics, Rule};
use crate::notify::{Event, Notifier};
use crate::oci::pattern::Refusal;
use crate::oci::ErrorCode;

/// `Ok` when `t`'s upstream serves its repository; otherwise the refusal, counted and told
/// (a `denied` event; the HTTP layer adds none for it).
pub fn admit(t: &Target, metrics: &Metrics, notify: &Notifier) -> Result<()> {
    let (up, repo) = (t.upstream.name(), t.repo.as_str());
    let Err(refusal) = t.upstream.cfg.rules.check(repo) else {
        return Ok(());
    };
    let rule = match refusal {
        Refusal::Denied(_) => Rule::Deny,
        Refusal::NotAllowed => Rule::Allow,
    };
    metrics.rule_refused(up, rule);
    let reason = match rule {
        Rule::Deny => "rule:deny",
        Rule::Allow => "rule:allow",
    };
    notify.emit(Event::denied(up, repo, reason, 403));
    let message = refusal.message(up, repo);
    tracing::info!(upstream = up, repo, rule = rule.as_str(), "{message}");
    Err(Error::client(ErrorCode::Denied, message))
}
