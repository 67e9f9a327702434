//! Response builders of the registry API: blob bodies with `Range`, small JSON answers,
//! header values, pagination links pointing back at the client's name.

use super::error::into_response;
use super::range::{content_range, unsatisfied_range, ByteRange};
use super::{empty, full, RespBody};
use crate::error::{Error, Result};
use crate::oci::{Digest, ErrorCode};
use crate::registry::body::{self, Source};
use crate::registry::Blob;
use futures_util::TryStreamExt;
use http::header::{ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;

const DIGEST_HEADER: &str = "docker-content-digest";

/// Answers a blob request: 200 with the whole blob, or 206 for a satisfiable `Range`, 416 for
/// an unsatisfiable one.
pub(super) fn blob_response(
    blob: Blob,
    digest: &Digest,
    range: Option<ByteRange>,
    head: bool,
) -> Result<Response<RespBody>> {
    let (source, size) = match blob {
        Blob::Cached { file, len } => (Some(Source::File { file, len }), Some(len)),
        Blob::Filling { fill, size, .. } => {
            (Some(Source::from_fill(&fill).map_err(Error::from)?), size)
        }
        Blob::Head { size } => (None, size),
        Blob::Redirect { url } => {
            let mut resp = Response::new(empty());
            *resp.status_mut() = StatusCode::TEMPORARY_REDIRECT;
            resp.headers_mut()
                .insert(http::header::LOCATION, header(&url)?);
            resp.headers_mut()
                .insert(DIGEST_HEADER, header(&digest.to_string())?);
            return Ok(resp);
        }
    };
    let mut status = StatusCode::OK;
    let (mut start, mut end) = (0u64, size);
    let mut content_range_value = None;
    if let (Some(r), Some(len)) = (range, size) {
        match r.resolve(len) {
            Some((s, e)) => {
                status = StatusCode::PARTIAL_CONTENT;
                start = s;
                end = Some(e);
                content_range_value = Some(content_range(s, e, len));
            }
            None => {
                let mut resp = into_response(
                    &Error::client(ErrorCode::RangeInvalid, "requested range not satisfiable"),
                    head,
                );
                resp.headers_mut()
                    .insert(CONTENT_RANGE, header(&unsatisfied_range(len))?);
                return Ok(resp);
            }
        }
    }
    let body = match (head, source) {
        (false, Some(src)) => {
            let s = body::stream(src, start, end).map_ok(Frame::data);
            StreamBody::new(s).boxed_unsync()
        }
        _ => empty(),
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(DIGEST_HEADER, header(&digest.to_string())?);
    h.insert(ETAG, header(&format!("\"{digest}\""))?);
    h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(end) = end {
        h.insert(CONTENT_LENGTH, HeaderValue::from(end - start));
    }
    if let Some(cr) = content_range_value {
        h.insert(CONTENT_RANGE, header(&cr)?);
    }
    Ok(resp)
}

pub(super) fn json_response(status: StatusCode, body: Vec<u8>, head: bool) -> Response<RespBody> {
    let len = body.len();
    let mut resp = Response::new(if head { empty() } else { full(body) });
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

/// `</v2/<upstream repo>/tags/list?n=2&last=b>; rel="next"` → the same for the client's name.
pub(super) fn rewrite_link(
    link: &str,
    upstream_repo: &str,
    client_name: &str,
    ns: Option<&str>,
) -> String {
    let from = format!("/v2/{upstream_repo}/tags/list");
    let to = format!("/v2/{client_name}/tags/list");
    let mut out = link.replacen(&from, &to, 1);
    if let Some(ns) = ns {
        if let Some(i) = out.find('>') {
            let sep = if out[..i].contains('?') { '&' } else { '?' };
            out.insert_str(i, &format!("{sep}ns={ns}"));
        }
    }
    out
}

pub(super) fn header(s: &str) -> Result<HeaderValue> {
    HeaderValue::from_str(s).map_err(|_| Error::internal("header value not representable"))
}

#[cfg(test)]
mod tests {
    use super::rewrite_link;

    #[test]
    fn pagination_links_point_back_at_the_clients_name() {
        let l = r#"</v2/library/alpine/tags/list?last=3.19&n=2>; rel="next""#;
        assert_eq!(
            rewrite_link(l, "library/alpine", "docker.io/alpine", None),
            r#"</v2/docker.io/alpine/tags/list?last=3.19&n=2>; rel="next""#
        );
        assert_eq!(
            rewrite_link(l, "library/alpine", "library/alpine", Some("docker.io")),
            r#"</v2/library/alpine/tags/list?last=3.19&n=2&ns=docker.io>; rel="next""#
        );
    }
}
