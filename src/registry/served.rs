//! How a read was answered, returned with what was served ([`Served`]): the `http` edge
//! counts it (`wharf_requests_total{result}`, the served-bytes `source`). A leaf of the
//! registry.

use crate::metrics::RequestResult;

/// How a request was answered, when it succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// From the cache (also: nothing more particular happened).
    Hit,
    /// Fetched from the upstream for this request.
    Miss,
    /// From the cache while the upstream failed or is being asked in the background.
    Stale,
    /// Shared another request's upstream fetch.
    Coalesced,
}

impl Outcome {
    /// The `result` label of `wharf_requests_total` for it.
    pub fn result(self) -> RequestResult {
        match self {
            Outcome::Hit => RequestResult::Hit,
            Outcome::Miss => RequestResult::Miss,
            Outcome::Stale => RequestResult::Stale,
            Outcome::Coalesced => RequestResult::Coalesced,
        }
    }

    /// The outcome of a request that went through `self` and then `later`: the later step
    /// decides, unless it is a plain hit (it added nothing to say).
    pub fn then(self, later: Outcome) -> Outcome {
        match later {
            Outcome::Hit => self,
            other => other,
        }
    }
}

/// A value and how it was obtained.
#[derive(Debug, Clone)]
pub struct Served<T> {
    pub value: T,
    pub outcome: Outcome,
}

impl<T> Served<T> {
    pub fn new(value: T, outcome: Outcome) -> Served<T> {
        Served { value, outcome }
    }

    pub fn hit(value: T) -> Served<T> {
        Served::new(value, Outcome::Hit)
    }

    /// This value, reached after a step that ended as `earlier` (see [`Outcome::then`]).
    pub fn after(self, earlier: Outcome) -> Served<T> {
        Served {
            outcome: earlier.then(self.outcome),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Outcome::*;

    #[test]
    fn the_last_step_that_says_something_decides() {
        assert_eq!(Coalesced.then(Hit), Coalesced);
        assert_eq!(Coalesced.then(Miss), Miss);
        assert_eq!(Miss.then(Stale), Stale);
        assert_eq!(Hit.then(Hit), Hit);
    }
}
