//! Tags lists (`/v2/<name>/tags/list`): asked of the upstream, checked, re-emitted.
//!
//! Invariant: a client never gets the upstream's bytes, only the tags Wharf read from an
//! answer that parsed as a tags list — a JSON object with a string `name` and a `tags` array
//! of valid tags (or `null`, for none) — of at most [`MAX_TAGS_LIST`] bytes that never
//! stalled for longer than the fill idle timeout. Anything else (an HTML page, another
//! service's JSON reached through a redirect, Wharf's own `/metrics`) is a 502 `UNAVAILABLE`
//! and reaches no client. Other fields of the upstream's answer are dropped; the `name` a
//! client sees is the one it asked for (as in `Link`, see `http::tags`).

use super::access::Access;
use super::target::{content_length, read_body, BodyError, Target};
use crate::auth::Client;
use crate::error::{Error, Result};
use crate::oci::{ErrorCode, Tag};
use http::header::LINK;
use http::{HeaderMap, Method, StatusCode};

/// The most bytes of a tags list read from an upstream (as for manifests: 4 MiB, some
/// 200,000 tags; Docker Hub's largest repositories are far below).
pub const MAX_TAGS_LIST: usize = crate::oci::manifest::MAX_MANIFEST_SIZE;

/// One page of a repository's tags, as the upstream listed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagsList {
    pub tags: Vec<String>,
    /// The upstream's `Link` (pagination), naming the upstream's repository path.
    pub link: Option<String>,
}

/// Tags lists, asked of the upstream with the client's credentials.
pub struct Lister {
    access: std::sync::Arc<Access>,
    /// The longest gap between two chunks of an upstream's body (`fill.idle_timeout`).
    idle: std::time::Duration,
}

impl Lister {
    pub fn new(access: std::sync::Arc<Access>, idle: std::time::Duration) -> Lister {
        Lister { access, idle }
    }

    /// The upstream's tag list for `t` (`query` carries `n` and `last`), checked.
    pub async fn tags(&self, t: &Target, client: &Client, query: Option<&str>) -> Result<TagsList> {
        tags_list(&self.access, t, client, query, self.idle).await
    }
}

/// The upstream's tag list for `t` (`query` carries `n` and `last`), checked; asked with
/// `client`'s credentials through `access`, stalling at most `idle` between chunks.
async fn tags_list(
    access: &Access,
    t: &Target,
    client: &Client,
    query: Option<&str>,
    idle: std::time::Duration,
) -> Result<TagsList> {
    let tail = match query {
        Some(q) if !q.is_empty() => format!("tags/list?{q}"),
        _ => "tags/list".to_string(),
    };
    let client = &t.upstream.effective_client(client);
    let resp = access
        .send_as(
            t,
            client,
            Method::GET,
            &tail,
            &HeaderMap::new(),
            ErrorCode::NameUnknown,
        )
        .await?;
    let up = t.upstream.name();
    let link = resp
        .headers()
        .get(LINK)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if content_length(resp.headers()).is_some_and(|n| n > MAX_TAGS_LIST as u64) {
        return Err(invalid(up, too_large()));
    }
    let bytes = match read_body(resp.into_body(), MAX_TAGS_LIST, idle).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => return Err(invalid(up, too_large())),
        Err(BodyError::Broken(e)) => {
            return Err(Error::unreachable(up, format!("tags list body: {e}")))
        }
    };
    let tags = parse(&bytes).map_err(|e| invalid(up, e))?;
    Ok(TagsList { tags, link })
}

fn too_large() -> String {
    format!("larger than the {MAX_TAGS_LIST}-byte limit")
}

/// The upstream sent something that is not a tags list.
fn invalid(upstream: &str, why: String) -> Error {
    Error::Upstream {
        upstream: upstream.to_string(),
        status: StatusCode::BAD_GATEWAY,
        code: ErrorCode::Unavailable,
        message: format!("the upstream sent an invalid tags list: {why}"),
        retry_after: None,
    }
}

/// The tags of a tags list document (`{"name": "...", "tags": [...]}`).
pub fn parse(bytes: &[u8]) -> std::result::Result<Vec<String>, String> {
    #[derive(serde::Deserialize)]
    struct Doc {
        #[allow(dead_code)]
        name: String,
        /// Required, but may be `null` (Distribution's answer for a repository without tags).
        #[serde(deserialize_with = "Option::deserialize")]
        tags: Option<Vec<String>>,
    }
    let doc: Doc = serde_json::from_slice(bytes).map_err(|e| format!("not one ({e})"))?;
    let tags = doc.tags.unwrap_or_default();
    if let Some((i, e)) = tags
        .iter()
        .enumerate()
        .find_map(|(i, t)| Tag::parse(t).err().map(|e| (i, e)))
    {
        return Err(format!("tag {i}: {e}"));
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn a_tags_list_parses_and_keeps_only_its_tags() {
        let tags = |s: &str| parse(s.as_bytes());
        assert_eq!(
            tags(r#"{"name":"org/app","tags":["v1","1.0_rc-2"],"extra":{"secret":1}}"#),
            Ok(vec!["v1".to_string(), "1.0_rc-2".to_string()])
        );
        assert_eq!(tags(r#"{"name":"org/app","tags":null}"#), Ok(vec![]));
        assert_eq!(tags(r#"{"name":"org/app","tags":[]}"#), Ok(vec![]));
    }

    #[test]
    fn anything_else_is_refused() {
        let bad = [
            "# HELP wharf_requests_total Requests.\nwharf_requests_total 3\n",
            r#"{"instance-id":"i-0123","iam":{"role":"admin"}}"#,
            r#"{"name":"org/app"}"#,
            r#"{"tags":["v1"]}"#,
            r#"{"name":7,"tags":["v1"]}"#,
            r#"{"name":"org/app","tags":"v1"}"#,
            r#"{"name":"org/app","tags":[1]}"#,
            r#"{"name":"org/app","tags":["ok","not a tag"]}"#,
            r#"{"name":"org/app","tags":[".hidden"]}"#,
            r#"["v1"]"#,
            "",
        ];
        for b in bad {
            assert!(parse(b.as_bytes()).is_err(), "{b:?}");
        }
        let e = parse(br#"{"name":"a","tags":["v1","bad tag"]}"#).expect_err("bad tag");
        assert!(e.starts_with("tag 1:"), "{e}");
    }
}
