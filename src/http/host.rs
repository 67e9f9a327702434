//! The host (with any port) a client reached Wharf at: what names the upstream by host, and
//! what Wharf's challenges and token realm point back at.

/// The host (with any port) this client reached Wharf at: `Host`, or the HTTP/2 authority.
pub(super) fn host_of<'a>(headers: &'a http::HeaderMap, uri: &'a http::Uri) -> Option<&'a str> {
    headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .filter(|h| h.bytes().all(|b| b.is_ascii_graphic() && b != b'"'))
}
