//! The one error type of the request path, tagged with where the problem came from.
//!
//! The origin decides the HTTP status (the mapping lives in one place,
//! `http::error::into_response`):
//! - [`Error::Client`]: the client's request is wrong or refers to something that does not
//!   exist; a 4xx with the spec's error code.
//! - [`Error::Upstream`]: the upstream answered with an error status; 404/401/403/429 keep their
//!   meaning for the client, anything else becomes a 502.
//! - [`Error::Unreachable`]: the upstream could not be reached or broke the exchange; 502.
//! - [`Error::Internal`]: our own failure (disk, database); 500.
//!
//! Messages never contain credentials or tokens: they are built from names, digests and
//! status codes only.

use crate::oci::ErrorCode;
use http::StatusCode;
use std::time::Duration;

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("{message}")]
    Client { code: ErrorCode, message: String },
    #[error("upstream {upstream} answered {status}: {message}")]
    Upstream {
        upstream: String,
        status: StatusCode,
        code: ErrorCode,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("upstream {upstream} unreachable: {message}")]
    Unreachable { upstream: String, message: String },
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn client(code: ErrorCode, message: impl Into<String>) -> Error {
        Error::Client {
            code,
            message: message.into(),
        }
    }

    pub fn internal(message: impl std::fmt::Display) -> Error {
        Error::Internal(message.to_string())
    }

    pub fn unreachable(upstream: &str, message: impl std::fmt::Display) -> Error {
        Error::Unreachable {
            upstream: upstream.to_string(),
            message: message.to_string(),
        }
    }

    /// True when the upstream failed in a way that justifies serving stale cached data
    /// (it is down, answered 5xx, or is rate-limiting): not for 404/401/403, which are
    /// answers.
    pub fn is_upstream_failure(&self) -> bool {
        match self {
            Error::Unreachable { .. } => true,
            Error::Upstream { status, .. } => {
                status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
            }
            _ => false,
        }
    }

    /// True when the upstream said the thing does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Upstream { status, .. } if *status == StatusCode::NOT_FOUND)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Internal(format!("i/o: {e}"))
    }
}

impl From<rocksdb::Error> for Error {
    fn from(e: rocksdb::Error) -> Self {
        Error::Internal(format!("metadata store: {e}"))
    }
}
