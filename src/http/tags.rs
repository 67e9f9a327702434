//! The tags list's HTTP side: JSON that Wharf writes, never the upstream's bytes.
//!
//! Invariant: the body is `{"name": <the name the client asked for>, "tags": [...]}` with the
//! tags `registry::listing` checked; `Link` (pagination) points back at that same name.

use super::{empty, full, RespBody};
use crate::registry::listing::TagsList;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, LINK};
use http::{HeaderValue, Response};

/// The response for `list`, under the repository `name` as the client wrote it; `link` is
/// the upstream's `Link` rewritten for this client.
pub(super) fn response(
    name: &str,
    list: &TagsList,
    link: Option<String>,
    head: bool,
) -> Response<RespBody> {
    let body = serde_json::json!({ "name": name, "tags": list.tags }).to_string();
    let len = body.len();
    let mut resp = Response::new(if head { empty() } else { full(body) });
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    if let Some(l) = link.and_then(|l| HeaderValue::from_str(&l).ok()) {
        h.insert(LINK, l);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn the_body_is_written_by_wharf() {
        let list = TagsList {
            tags: vec!["v1".into(), "v2".into()],
            link: None,
        };
        let r = response(
            "docker.io/org/app",
            &list,
            Some("<x>; rel=\"next\"".into()),
            false,
        );
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(r.headers()[LINK], "<x>; rel=\"next\"");
        let len: usize = r.headers()[CONTENT_LENGTH]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("number");
        let body = r.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(len, body.len());
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&body).expect("json"),
            serde_json::json!({"name": "docker.io/org/app", "tags": ["v1", "v2"]})
        );
        let r = response("a", &list, None, true);
        assert!(r.headers().get(LINK).is_none());
        assert!(r
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .is_empty());
    }
}
