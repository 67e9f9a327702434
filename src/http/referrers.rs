//! The referrers API's HTTP side: the `artifactType` filter in, the image index out.

use super::{empty, full, RespBody};
use crate::oci::media;
use crate::registry::referrers::ReferrersList;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Response};

/// The header that says which filters the server applied.
const FILTERS_APPLIED: &str = "oci-filters-applied";

/// The `artifactType` values of a query (repeatable; empty ones ignored). A media type never
/// holds a space, so a bare `+` (`application/spdx+json` sent unencoded) stays a `+`.
pub(super) fn artifact_types(query: Option<&str>) -> Vec<String> {
    crate::auth::form::parse(&query.unwrap_or("").replace('+', "%2B"))
        .into_iter()
        .filter(|(k, v)| k == "artifactType" && !v.is_empty())
        .map(|(_, v)| v)
        .collect()
}

pub(super) fn response(list: ReferrersList, head: bool) -> Response<RespBody> {
    let len = list.body.len();
    let mut resp = Response::new(if head { empty() } else { full(list.body) });
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(media::OCI_INDEX));
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    if list.filtered {
        h.insert(FILTERS_APPLIED, HeaderValue::from_static("artifactType"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_type_filters_are_read_from_the_query() {
        assert_eq!(
            artifact_types(Some(
                "artifactType=application%2Fvnd.example.sig&n=2&artifactType="
            )),
            vec!["application/vnd.example.sig"]
        );
        assert!(artifact_types(None).is_empty());
        assert_eq!(
            artifact_types(Some("artifactType=application/spdx+json")),
            vec!["application/spdx+json"]
        );
    }
}
