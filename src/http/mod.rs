//! The hyper edge: the server loop and connection rules, route parsing, handlers, errors and
//! `Range`.

pub mod admin;
pub mod admin_api;
mod admin_ops;
pub mod body;
mod conn;
pub mod error;
pub mod events;
pub mod handlers;
mod host;
mod observe;
mod push;
pub mod range;
mod referrers;
mod respond;
pub mod route;
pub mod server;
mod tags;
pub mod tls;
pub mod token;

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};

/// Every response body: full buffers for small things, streams for blobs.
pub type RespBody = UnsyncBoxBody<Bytes, std::io::Error>;

pub fn full(b: impl Into<Bytes>) -> RespBody {
    Full::new(b.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn empty() -> RespBody {
    full(Bytes::new())
}
