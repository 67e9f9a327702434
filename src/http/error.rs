//! The one place where errors become HTTP responses (the spec's JSON envelope).

use super::{full, RespBody};
use crate::error::Error;
use crate::oci::error::envelope;
use crate::oci::ErrorCode;
use http::{HeaderValue, Response, StatusCode};

/// The status, code and message a client sees for an error. Upstream 4xx answers that mean
/// something to the client keep their status; other upstream trouble is a 502.
pub fn classify(e: &Error) -> (StatusCode, ErrorCode, String) {
    match e {
        Error::Client { code, message } => (code.status(), *code, message.clone()),
        Error::Upstream {
            upstream,
            status,
            code,
            message,
            ..
        } => {
            let status = match *status {
                s @ (StatusCode::NOT_FOUND
                | StatusCode::UNAUTHORIZED
                | StatusCode::FORBIDDEN
                | StatusCode::TOO_MANY_REQUESTS) => s,
                _ => StatusCode::BAD_GATEWAY,
            };
            (status, *code, format!("upstream {upstream}: {message}"))
        }
        Error::Unreachable { upstream, message } => (
            StatusCode::BAD_GATEWAY,
            ErrorCode::Unavailable,
            format!("upstream {upstream} unreachable: {message}"),
        ),
        Error::Internal(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Unavailable,
            "internal error; see the server log".to_string(),
        ),
    }
}

pub fn into_response(e: &Error, head: bool) -> Response<RespBody> {
    let (status, code, message) = classify(e);
    if status.is_server_error() {
        tracing::warn!(error = %e, "request failed");
    }
    let body = envelope(code, &message);
    let len = body.len();
    let mut resp = Response::new(if head { full(Vec::new()) } else { full(body) });
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Error::Upstream {
        retry_after: Some(d),
        ..
    } = e
    {
        h.insert(http::header::RETRY_AFTER, HeaderValue::from(d.as_secs()));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_errors_map_to_client_visible_statuses() {
        let up = |status: StatusCode| Error::Upstream {
            upstream: "u".into(),
            status,
            code: ErrorCode::BlobUnknown,
            message: "m".into(),
            retry_after: None,
        };
        assert_eq!(
            classify(&up(StatusCode::NOT_FOUND)).0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            classify(&up(StatusCode::SERVICE_UNAVAILABLE)).0,
            StatusCode::BAD_GATEWAY
        );
        assert_eq!(
            classify(&Error::internal("disk")).0,
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert!(!classify(&Error::internal("secret path"))
            .2
            .contains("secret"));
    }
}
