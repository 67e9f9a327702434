//! OCI distribution error codes and the JSON error envelope.
//!
//! Invariant: [`envelope`] always produces valid JSON of the shape
//! `{"errors":[{"code":..,"message":..,"detail":null}]}`, whatever the message holds.

use http::StatusCode;

/// An error code from the OCI distribution spec (plus Docker's `UNAVAILABLE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    RangeInvalid,
    Unavailable,
}

impl ErrorCode {
    /// The wire code, e.g. `BLOB_UNKNOWN`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            ErrorCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::SizeInvalid => "SIZE_INVALID",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            ErrorCode::RangeInvalid => "RANGE_INVALID",
            ErrorCode::Unavailable => "UNAVAILABLE",
        }
    }

    /// The HTTP status this code is sent with.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::BlobUnknown
            | ErrorCode::BlobUploadUnknown
            | ErrorCode::ManifestBlobUnknown
            | ErrorCode::ManifestUnknown
            | ErrorCode::NameUnknown => StatusCode::NOT_FOUND,
            ErrorCode::BlobUploadInvalid
            | ErrorCode::DigestInvalid
            | ErrorCode::ManifestInvalid
            | ErrorCode::NameInvalid
            | ErrorCode::SizeInvalid => StatusCode::BAD_REQUEST,
            ErrorCode::RangeInvalid => StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Denied => StatusCode::FORBIDDEN,
            ErrorCode::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// The JSON error body for one error.
pub fn envelope(code: ErrorCode, message: &str) -> Vec<u8> {
    serde_json::json!({
        "errors": [{ "code": code.as_str(), "message": message, "detail": null }]
    })
    .to_string()
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [ErrorCode; 16] = [
        ErrorCode::BlobUnknown,
        ErrorCode::BlobUploadInvalid,
        ErrorCode::BlobUploadUnknown,
        ErrorCode::DigestInvalid,
        ErrorCode::ManifestBlobUnknown,
        ErrorCode::ManifestInvalid,
        ErrorCode::ManifestUnknown,
        ErrorCode::NameInvalid,
        ErrorCode::NameUnknown,
        ErrorCode::SizeInvalid,
        ErrorCode::Unauthorized,
        ErrorCode::Denied,
        ErrorCode::Unsupported,
        ErrorCode::TooManyRequests,
        ErrorCode::RangeInvalid,
        ErrorCode::Unavailable,
    ];

    #[test]
    fn codes_and_statuses() {
        for c in ALL {
            let s = c.as_str();
            let expect = if s == "RANGE_INVALID" {
                416
            } else if s.ends_with("_UNKNOWN") {
                404
            } else if s.ends_with("_INVALID") {
                400
            } else {
                match s {
                    "UNAUTHORIZED" => 401,
                    "DENIED" => 403,
                    "UNSUPPORTED" => 405,
                    "TOOMANYREQUESTS" => 429,
                    "UNAVAILABLE" => 503,
                    other => panic!("unexpected code {other}"),
                }
            };
            assert_eq!(c.status().as_u16(), expect, "{s}");
        }
        assert_eq!(ErrorCode::TooManyRequests.as_str(), "TOOMANYREQUESTS");
        assert_eq!(
            ErrorCode::ManifestBlobUnknown.as_str(),
            "MANIFEST_BLOB_UNKNOWN"
        );
    }

    #[test]
    fn envelope_is_valid_json_with_escaping() {
        let msg = "bad \"name\"\n\\ </script> é\u{0}";
        let body = envelope(ErrorCode::NameInvalid, msg);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let e = &v["errors"][0];
        assert_eq!(e["code"], "NAME_INVALID");
        assert_eq!(e["message"], msg);
        assert!(e["detail"].is_null());
        assert_eq!(v["errors"].as_array().unwrap().len(), 1);
    }
}
