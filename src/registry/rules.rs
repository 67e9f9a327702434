//! Repository rules at the door: a request for a repository its upstream's `allow`/`deny`
//! refuses (see `oci::pattern`) is answered `403 DENIED` here, when its target is resolved,
//! so nothing is read from the cache or asked of the upstream for it.

use super::target::Target;
use crate::error::{Error, Result};
use crate::metrics::{Metrics, Rule};
use crate::oci::pattern::Refusal;
use crate::oci::ErrorCode;

/// `Ok` when `t`'s upstream serves its repository; otherwise the refusal, counted.
pub fn admit(t: &Target, metrics: &Metrics) -> Result<()> {
    let (up, repo) = (t.upstream.name(), t.repo.as_str());
    let Err(refusal) = t.upstream.cfg.rules.check(repo) else {
        return Ok(());
    };
    let rule = match refusal {
        Refusal::Denied(_) => Rule::Deny,
        Refusal::NotAllowed => Rule::Allow,
    };
    metrics.rule_refused(up, rule);
    let message = refusal.message(up, repo);
    tracing::info!(upstream = up, repo, rule = rule.as_str(), "{message}");
    Err(Error::client(ErrorCode::Denied, message))
}
