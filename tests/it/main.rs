//! Wharf's one integration test binary (every test binary links RocksDB, so there is one).
//!
//! - `admin`: the admin API (`/admin/v1/`) and `wharf cache` run as the built binary.
//! - `auth`: client authentication and per-repository authorization.
//! - `bounds`: what a burst of clients may cost: tag requests in single flight, manifests
//!   inside `cache.max_size`, `fill.max_concurrent` (issue 18, findings 7 and 8).
//! - `cluster`: replicas on a shared bucket (real Garage) in front of the fake upstream:
//!   authorization of bucket content, redirects, a dead owner, a forged manifest.
//! - `capacity`: eviction under the watermarks, pinned images, blobs larger than the cache.
//! - `faults`: upstream faults (issue 10), with a table of what tests what.
//! - `hostile`: hostile clients (issue 10), with a table of what tests what.
//! - `soak`: a bounded soak (issue 10), run in a process of its own.
//! - `deploy`: static checks of `deploy/` (files parse, configs pass `wharf config check`).
//! - `resilience`: tag freshness, stale serving, negative caching, retries, the circuit
//!   breaker, 429s and offline mode.
//! - `transfer`: `wharf export` / `wharf import` round trips to an offline Wharf.
//! - `push`, `referrers`: pushes through Wharf (`allow_push`) and the OCI 1.1 referrers API.
//! - `notify`: event notifications (`[[notify]]`): a loopback webhook, a receiver down, the
//!   file sink.
//! - `rules`: repository rules (`allow`, `deny`) refusing before any upstream request.
//! - `support`: an in-process fake upstream registry that counts requests and injects faults,
//!   and helpers to run Wharf in-process on port 0.
//! - `e2e`: end-to-end tests with real third-party software (CNCF Distribution's
//!   `docker-registry`, `skopeo`) against the `wharf` binary that `cargo test` built.

// The rule that time-dependent code uses tokio's clock (clippy.toml) is for `src/`: these
// tests also time real processes and sockets, on the wall clock.
#![allow(clippy::disallowed_types)]

mod admin;
mod auth;
mod bounds;
mod capacity;
mod cluster;
mod deploy;
mod diskfull;
mod e2e;
mod faults;
mod hostile;
mod listing;
mod metrics;
mod notify;
mod prefetch;
mod pull;
mod push;
mod referrers;
mod resilience;
mod routing;
mod rules;
mod soak;
mod support;
mod transfer;
