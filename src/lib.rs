//! Wharf: a pull-through caching proxy (mirror) for OCI container registries.
//!
//! Layout (the request path runs top to bottom; `ARCHITECTURE.md` at the repository root is
//! the full map, with the invariants and the tests that guard them):
//!
//! - [`http`]: the hyper edge. Parses every request once into a [`http::route::Route`],
//!   picks the upstream, maps errors to the OCI JSON envelope, handles `Range`.
//! - [`registry`]: the pull-through policy: a facade over its parts (access, manifests,
//!   blobs and fills, referrers, pushes, the shared bucket).
//! - [`upstream`]: the client for upstream registries: TLS, token dance, realms, redirects
//!   and the address policy.
//! - [`auth`]: client identity (credentials, Wharf's tokens, throttled checks).
//! - [`cluster`]: replicas sharing a bucket (owners, peers).
//! - [`metrics`], [`error`]: the metric handles; errors tagged by origin.
//! - [`notify`]: event notifications (webhooks, JSON-lines files), never in a request's way.
//! - [`store`]: RocksDB metadata and verified blob files on disk.
//! - [`oci`]: pure protocol vocabulary (digests, names, references, media types, errors).
//! - [`config`]: the TOML configuration, its defaults and its validation.
//! - [`transfer`], [`prefetch`]: moving images in and out of the cache (air-gapped sites,
//!   warming a mirror).
//! - [`cachectl`]: `wharf cache ...`, a client of a running Wharf's admin API.
//! - [`cli`]: the maintenance commands' output and exit status (`main.rs` parses arguments).
//! - [`app`]: the composition root that wires the pieces together and runs the servers.

pub mod app;
pub mod auth;
pub mod cachectl;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod error;
pub mod http;
pub mod metrics;
pub mod notify;
pub mod oci;
pub mod prefetch;
pub mod registry;
pub mod store;
pub mod transfer;
pub mod upstream;
