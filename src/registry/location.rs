//! Reading the `Location`s an upstream sends for pushes: is it on the upstream's own origin,
//! under the repository, and which upload session does it name.

use http::Uri;

/// What follows `/v2/<repo>/` in a `Location` the upstream sent (absolute on its own origin,
/// or absolute-path), query included; `None` for another origin or another path.
pub fn upstream_relative(location: &str, upstream: &Uri, repo: &str) -> Option<String> {
    let path_and_query = if location.starts_with("http://") || location.starts_with("https://") {
        let uri: Uri = location.parse().ok()?;
        let same = uri
            .scheme_str()
            .zip(upstream.scheme_str())
            .is_some_and(|(a, b)| a.eq_ignore_ascii_case(b))
            && uri
                .authority()
                .zip(upstream.authority())
                .is_some_and(|(a, b)| a.as_str().eq_ignore_ascii_case(b.as_str()));
        if !same {
            return None;
        }
        uri.path_and_query()?.as_str().to_string()
    } else if location.starts_with('/') && !location.starts_with("//") {
        location.to_string()
    } else {
        return None;
    };
    path_and_query
        .strip_prefix(&format!("/v2/{repo}/"))
        .map(str::to_string)
}

/// The upload session id in an upstream's `Location` for an upload of `repo`.
pub fn upload_session(location: &str, upstream: &Uri, repo: &str) -> Option<String> {
    let rest = upstream_relative(location, upstream, repo)?;
    let path = rest.split('?').next().unwrap_or("");
    let id = path.strip_prefix("blobs/uploads/")?;
    (!id.is_empty()).then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_locations_are_read_relative_to_the_upstream() {
        let up: Uri = "https://reg.example:5000/".parse().expect("uri");
        let loc = "/v2/org/app/blobs/uploads/abc-1?_state=xyz";
        assert_eq!(
            upstream_relative(loc, &up, "org/app").as_deref(),
            Some("blobs/uploads/abc-1?_state=xyz")
        );
        assert_eq!(
            upload_session(loc, &up, "org/app").as_deref(),
            Some("abc-1")
        );
        let abs = "https://REG.example:5000/v2/org/app/blobs/uploads/abc-1";
        assert_eq!(
            upload_session(abs, &up, "org/app").as_deref(),
            Some("abc-1")
        );
        assert_eq!(
            upload_session(
                "https://cdn.example/v2/org/app/blobs/uploads/x",
                &up,
                "org/app"
            ),
            None
        );
        assert_eq!(
            upload_session(
                "http://reg.example:5000/v2/org/app/blobs/uploads/x",
                &up,
                "org/app"
            ),
            None,
            "another scheme is another origin"
        );
        assert_eq!(
            upload_session("/v2/org/other/blobs/uploads/x", &up, "org/app"),
            None
        );
        assert_eq!(
            upload_session("/v2/org/app/blobs/uploads/", &up, "org/app"),
            None
        );
        assert_eq!(
            upload_session("//evil/v2/org/app/blobs/uploads/x", &up, "org/app"),
            None
        );
    }
}
