//! Which token realms may receive credentials (the CVE-2026-33540 class: an upstream's
//! challenge must not send clients' passwords to any host it names).
//!
//! Invariant: credentials (a client's own, or the upstream's configured `username` and
//! `password`) go only to a realm that is
//! - https, or http when the upstream itself is plain http (never a downgrade), and
//! - on the upstream's own host, on a host of the same registrable domain
//!   (`auth.docker.io` for `registry-1.docker.io`), or a host in `token_realm_hosts`.
//!
//! A realm that fails is asked anonymously (public content still works) and logged once.
//! The registrable domain is approximated without the Public Suffix List: the last two
//! labels, or three where the last two are a public suffix shared by many tenants (a short
//! second-level label under a two-letter country code, such as `co.uk`, or a listed cloud
//! suffix such as `azurecr.io`); an IP address is only ever its own domain. Being stricter
//! than the list costs only a `token_realm_hosts` entry.

use http::Uri;

/// Suffixes under which different tenants get sibling host names.
const SHARED_SUFFIXES: &[&str] = &[
    "amazonaws.com",
    "azurecr.io",
    "pkg.dev",
    "appspot.com",
    "cloudfront.net",
    "azurewebsites.net",
    "herokuapp.com",
    "github.io",
    "jfrog.io",
    "ngrok.io",
    "ngrok.app",
];

/// The registrable domain of `host` (lowercase), as described in the module docs.
fn registrable(host: &str) -> String {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
        return host;
    }
    let labels: Vec<&str> = host.split('.').collect();
    let n = labels.len();
    if n <= 2 {
        return host;
    }
    let two = labels[n - 2..].join(".");
    let country_style = labels[n - 1].len() == 2 && labels[n - 2].len() <= 3;
    if country_style || SHARED_SUFFIXES.contains(&two.as_str()) {
        labels[n - 3..].join(".")
    } else {
        two
    }
}

/// Whether credentials may be sent to `realm` for the upstream at `upstream` (see the module
/// docs); `Err` says why not, without the realm's query.
pub fn check(upstream: &Uri, extra_hosts: &[String], realm: &str) -> Result<(), String> {
    let uri: Uri = realm
        .parse()
        .map_err(|_| "the realm is not a valid URL".to_string())?;
    let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
        return Err("the realm is not an absolute URL".into());
    };
    let up_scheme = upstream.scheme_str().unwrap_or("https");
    let scheme_ok = scheme.eq_ignore_ascii_case("https")
        || (scheme.eq_ignore_ascii_case("http") && up_scheme.eq_ignore_ascii_case("http"));
    if !scheme_ok {
        return Err(format!(
            "the realm's scheme {scheme} would downgrade an {up_scheme} upstream"
        ));
    }
    let host = host.to_ascii_lowercase();
    let up_host = upstream.host().unwrap_or("").to_ascii_lowercase();
    if host == up_host
        || registrable(&host) == registrable(&up_host)
        || extra_hosts.iter().any(|h| h.eq_ignore_ascii_case(&host))
    {
        return Ok(());
    }
    Err(format!(
        "the realm's host {host} is neither {up_host}, nor in its domain, nor in token_realm_hosts"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(s: &str) -> Uri {
        s.parse().expect("uri")
    }

    #[test]
    fn realms_on_the_upstreams_domain_or_listed_are_allowed() {
        let hub = up("https://registry-1.docker.io/");
        assert!(check(&hub, &[], "https://auth.docker.io/token").is_ok());
        assert!(check(&up("https://ghcr.io/"), &[], "https://ghcr.io/token").is_ok());
        assert!(check(&up("https://quay.io/"), &[], "https://quay.io/v2/auth").is_ok());
        assert!(check(
            &up("https://registry.gitlab.com/"),
            &[],
            "https://gitlab.com/jwt/auth"
        )
        .is_ok());
        let listed = ["login.example.org".to_string()];
        assert!(check(
            &up("https://reg.example.com/"),
            &listed,
            "https://LOGIN.example.org/t"
        )
        .is_ok());
        // Loopback test registries: same host, another port.
        assert!(check(
            &up("https://127.0.0.1:5000/"),
            &[],
            "https://127.0.0.1:6000/token"
        )
        .is_ok());
        assert!(check(
            &up("http://127.0.0.1:5000/"),
            &[],
            "http://127.0.0.1:6000/token"
        )
        .is_ok());
    }

    #[test]
    fn foreign_and_downgraded_realms_are_refused() {
        let hub = up("https://registry-1.docker.io/");
        for realm in [
            "https://evil.example/token",
            "http://auth.docker.io/token",
            "https://docker.io.evil.example/token",
            "https://127.0.0.1/token",
            "not a url",
            "/token",
        ] {
            assert!(check(&hub, &[], realm).is_err(), "{realm}");
        }
        // Tenants of a shared suffix are not one domain.
        let acr = up("https://victim.azurecr.io/");
        assert!(check(&acr, &[], "https://evil.azurecr.io/oauth2/token").is_err());
        assert!(check(&acr, &[], "https://victim.azurecr.io/oauth2/token").is_ok());
        let uk = up("https://registry.example.co.uk/");
        assert!(check(&uk, &[], "https://auth.other.co.uk/token").is_err());
        assert!(check(&uk, &[], "https://auth.example.co.uk/token").is_ok());
        // Another IP on loopback is another host.
        assert!(check(
            &up("http://127.0.0.1:5000/"),
            &[],
            "http://127.0.0.2:5000/token"
        )
        .is_err());
    }
}
