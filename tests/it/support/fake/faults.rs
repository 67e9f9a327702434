//! Fault injection rules for the fake: the next `n` requests of a kind answer with a status
//! or a redirect, are delayed, or have their connection closed without an answer.
//!
//! Rules are checked in the order they were added; the first one that matches a request and
//! has uses left applies (and loses one use). Every request is counted before any rule
//! applies, so a faulted request shows in [`super::Fake::count`].

use std::collections::VecDeque;
use std::time::Duration;

/// What a faulted request gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// An OCI error envelope with this status (`Retry-After` added if the rule has one).
    Status(u16),
    /// The connection is closed without any response.
    Drop,
    /// The normal answer (after the rule's delay).
    Normal,
    /// A `302 Found` to this `Location`.
    Redirect(String),
}

/// One fault rule.
#[derive(Clone, Debug)]
pub struct Fault {
    /// Which requests: `None` = every request (the token service too); `Some("manifest")`
    /// matches both methods, `Some("HEAD manifest")` one (kinds as in [`super::Fake::count`]).
    pub kind: Option<String>,
    /// How many requests it applies to (`u64::MAX`: until cleared).
    pub times: u64,
    /// Pause before answering (before the response headers).
    pub delay: Duration,
    pub answer: Answer,
    /// A `Retry-After` header value for [`Answer::Status`].
    pub retry_after: Option<String>,
}

impl Fault {
    pub fn status(kind: Option<&str>, times: u64, status: u16) -> Fault {
        Fault {
            kind: kind.map(str::to_string),
            times,
            delay: Duration::ZERO,
            answer: Answer::Status(status),
            retry_after: None,
        }
    }
}

/// The rules in force.
#[derive(Default)]
pub(crate) struct Faults {
    rules: VecDeque<Fault>,
}

/// What the handler should do for one request.
pub(crate) struct Applied {
    pub delay: Duration,
    pub answer: Answer,
    pub retry_after: Option<String>,
}

impl Faults {
    pub(crate) fn add(&mut self, f: Fault) {
        if f.times > 0 {
            self.rules.push_back(f);
        }
    }

    pub(crate) fn clear(&mut self) {
        self.rules.clear();
    }

    /// The rule for a request of `method` and `kind` ("GET", "manifest"), if one applies.
    pub(crate) fn take(&mut self, method: &str, kind: &str) -> Option<Applied> {
        let full = format!("{method} {kind}");
        let i = self.rules.iter().position(|r| match &r.kind {
            None => true,
            Some(k) => *k == full || k == kind,
        })?;
        let rule = &mut self.rules[i];
        let applied = Applied {
            delay: rule.delay,
            answer: rule.answer.clone(),
            retry_after: rule.retry_after.clone(),
        };
        if rule.times != u64::MAX {
            rule.times -= 1;
        }
        if rule.times == 0 {
            self.rules.remove(i);
        }
        Some(applied)
    }
}
