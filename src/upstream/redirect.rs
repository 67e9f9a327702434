//! Where an upstream may send Wharf: the redirect and address policy (issue 18, finding 4).
//!
//! Invariants:
//! - A redirect is never followed from `https` to `http` ([`check_hop`]); `http` to `https`
//!   is fine.
//! - Wharf never connects to a host other than the upstream's own (a redirect target, a token
//!   realm, a push `Location`) at an address outside the public internet — loopback,
//!   unspecified, link-local (cloud metadata services), private or shared (CGNAT), or
//!   reserved — unless the upstream's own host has an address of that same [`Class`]
//!   ([`allowed`]). A registry on `10.x` may send Wharf to a storage service on `10.y`; a
//!   registry on the internet can send it nowhere but the internet. The check is made by the
//!   connector on the very addresses it connects to (`super::guard`), so a DNS answer that
//!   changes between a check and the connection cannot point around it.
//! - The upstream's own host is never filtered: it is where the operator pointed Wharf.
//! - Everything fetched through a redirect is validated like a direct answer: manifests are
//!   parsed and digest-checked by `registry::manifest`, blobs hash-verified by their fill,
//!   tags lists parsed and re-emitted by `registry::listing`; nothing is streamed back raw.
//! - `Authorization` goes only to the upstream's own origin (`super::Upstream::send_once`),
//!   and the mTLS client certificate only to its own host (`super::client`).

use http::uri::Scheme;
use http::Uri;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// At most this many redirects per request.
pub const MAX_REDIRECTS: usize = 5;

/// What part of the network an address belongs to. Two addresses of one class are reachable
/// from each other's side of the same boundary (this host, a private network, a link).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The public internet.
    Public,
    /// This host: 127/8, ::1.
    Loopback,
    /// 0.0.0.0/8, `::`: connecting there reaches this host too, under another name.
    Unspecified,
    /// 169.254/16, fe80::/10.
    LinkLocal,
    /// 10/8, 172.16/12, 192.168/16, 100.64/10 (CGNAT),
    /// fc00::/7, fec0::/10.
    Private,
    /// Multicast, broadcast, documentation, benchmarking, IETF and future-use ranges.
    Reserved,
    /// A cloud metadata service (169.254.169.254, 169.254.170.2, 100.100.100.200,
    /// fd00:ec2::254): never connected to, whatever the upstream's own address.
    Metadata,
}

impl Class {
    pub fn describe(self) -> &'static str {
        match self {
            Class::Public => "public",
            Class::Loopback => "loopback",
            Class::Unspecified => "unspecified",
            Class::LinkLocal => "link-local",
            Class::Private => "private",
            Class::Reserved => "reserved",
            Class::Metadata => "a cloud metadata service",
        }
    }
}

/// The class of an address; IPv6 forms that carry an IPv4 address (mapped, NAT64, 6to4)
/// are classified by that address.
pub fn classify(ip: IpAddr) -> Class {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Class {
    let [a, b, c, d] = ip.octets();
    if matches!(
        (a, b, c, d),
        (169, 254, 169, 254) | (169, 254, 170, 2) | (100, 100, 100, 200)
    ) {
        return Class::Metadata;
    }
    match (a, b, c) {
        (0, ..) => Class::Unspecified,
        (127, ..) => Class::Loopback,
        (169, 254, _) => Class::LinkLocal,
        (10, ..) | (192, 168, _) => Class::Private,
        (172, 16..=31, _) | (100, 64..=127, _) => Class::Private,
        (192, 0, 0) | (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => Class::Reserved,
        (198, 18..=19, _) | (224..=255, ..) => Class::Reserved,
        _ => Class::Public,
    }
}

fn classify_v6(ip: Ipv6Addr) -> Class {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let s = ip.segments();
    if ip.is_unspecified() {
        return Class::Unspecified;
    }
    if ip.is_loopback() {
        return Class::Loopback;
    }
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if s == [0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254] {
        return Class::Metadata;
    }
    match s[0] {
        // NAT64 (64:ff9b::/96, and the local-use 64:ff9b:1::/48 within 64:ff9b::/32) reaches
        // the IPv4 address in the last 32 bits.
        0x64 if s[1] == 0xff9b => classify_v4(embedded(s[6], s[7])),
        // 6to4 (2002::/16) carries one in bits 16..48.
        0x2002 => classify_v4(embedded(s[1], s[2])),
        0x2001 if s[1] == 0x0db8 => Class::Reserved,
        x if x & 0xffc0 == 0xfe80 => Class::LinkLocal,
        x if x & 0xffc0 == 0xfec0 || x & 0xfe00 == 0xfc00 => Class::Private,
        x if x & 0xff00 == 0xff00 => Class::Reserved,
        // The rest of ::/8 (IPv4-compatible and other deprecated forms).
        x if x & 0xff00 == 0 => Class::Reserved,
        _ => Class::Public,
    }
}

/// Whether a connection to an address of class `target` is allowed for an upstream whose own
/// host has addresses of the classes `upstream`.
pub fn allowed(target: Class, upstream: &[Class]) -> bool {
    target == Class::Public || (target != Class::Metadata && upstream.contains(&target))
}

/// Splits `addrs` into those [`allowed`] for `upstream` and those refused.
pub fn permitted<A: Copy>(
    addrs: impl IntoIterator<Item = A>,
    ip: impl Fn(A) -> IpAddr,
    upstream: &[Class],
) -> (Vec<A>, Vec<A>) {
    addrs
        .into_iter()
        .partition(|a| allowed(classify(ip(*a)), upstream))
}

/// Checks one hop of a redirect chain: never from `https` to anything else.
pub fn check_hop(from: &Uri, to: &Uri) -> Result<(), String> {
    if from.scheme() == Some(&Scheme::HTTPS) && to.scheme() != Some(&Scheme::HTTPS) {
        return Err(format!(
            "refused a redirect from https to {} ({})",
            to.scheme_str().unwrap_or("no scheme"),
            redacted(to)
        ));
    }
    Ok(())
}

/// Resolves a `Location` against the URI it came from (absolute, or absolute-path).
pub fn resolve_location(base: &Uri, location: &str) -> Option<Uri> {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.parse().ok();
    }
    if location.starts_with('/') && !location.starts_with("//") {
        let mut parts = base.clone().into_parts();
        parts.path_and_query = Some(location.parse().ok()?);
        return Uri::from_parts(parts).ok();
    }
    None
}

/// A URI without its query (pre-signed CDN URLs carry credentials there).
pub fn redacted(uri: &Uri) -> String {
    format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or(""),
        uri.authority().map(|a| a.as_str()).unwrap_or(""),
        uri.path()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use Class::*;

    fn class(s: &str) -> Class {
        classify(s.parse().expect("address"))
    }

    #[test]
    fn addresses_are_classified() {
        let cases = [
            ("8.8.8.8", Public),
            ("1.1.1.1", Public),
            ("172.15.255.255", Public),
            ("172.32.0.1", Public),
            ("100.63.255.255", Public),
            ("100.128.0.1", Public),
            ("169.253.1.1", Public),
            ("192.169.0.1", Public),
            ("223.255.255.255", Public),
            ("127.0.0.1", Loopback),
            ("127.255.255.254", Loopback),
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Unspecified),
            ("169.254.169.254", Metadata),
            ("169.254.170.2", Metadata),
            ("169.254.0.1", LinkLocal),
            ("10.0.0.1", Private),
            ("10.255.255.255", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.168.1.1", Private),
            ("100.64.0.1", Private),
            ("100.100.100.200", Metadata),
            ("100.100.100.201", Private),
            ("100.127.255.255", Private),
            ("192.0.0.1", Reserved),
            ("192.0.2.1", Reserved),
            ("198.51.100.1", Reserved),
            ("203.0.113.1", Reserved),
            ("198.18.0.1", Reserved),
            ("224.0.0.1", Reserved),
            ("239.255.255.250", Reserved),
            ("240.0.0.1", Reserved),
            ("255.255.255.255", Reserved),
            ("2606:4700::1111", Public),
            ("2a00:1450:4001::200e", Public),
            ("::1", Loopback),
            ("::", Unspecified),
            ("fe80::1", LinkLocal),
            ("febf::1", LinkLocal),
            ("fc00::1", Private),
            ("fd12:3456::1", Private),
            ("fec0::1", Private),
            ("ff02::1", Reserved),
            ("2001:db8::1", Reserved),
            ("::2", Reserved),
            ("::127.0.0.1", Reserved),
            // IPv4 inside IPv6 is classified by the IPv4 address.
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:169.254.169.254", Metadata),
            ("fd00:ec2::254", Metadata),
            ("64:ff9b:1::a9fe:a9fe", Metadata),
            ("64:ff9b:1::a00:1", Private),
            ("::ffff:10.1.2.3", Private),
            ("::ffff:8.8.8.8", Public),
            ("64:ff9b::a9fe:a9fe", Metadata),
            ("64:ff9b::a9fe:1", LinkLocal),
            ("64:ff9b::808:808", Public),
            ("2002:7f00:1::1", Loopback),
            ("2002:0a00:0001::1", Private),
            ("2002:0808:0808::1", Public),
        ];
        for (addr, want) in cases {
            assert_eq!(class(addr), want, "{addr}");
        }
    }

    #[test]
    fn metadata_services_are_never_reached() {
        for up in [[Private], [LinkLocal], [Metadata]] {
            assert!(!allowed(Metadata, &up), "{up:?}");
        }
    }

    #[test]
    fn a_public_upstream_reaches_only_the_public_internet() {
        let up = [Public];
        assert!(allowed(Public, &up));
        for c in [Loopback, Unspecified, LinkLocal, Private, Reserved] {
            assert!(!allowed(c, &up), "{c:?}");
        }
        // No address known for the upstream (it did not resolve): the same.
        for c in [Loopback, Unspecified, LinkLocal, Private, Reserved] {
            assert!(!allowed(c, &[]), "{c:?}");
        }
        assert!(allowed(Public, &[]));
    }

    #[test]
    fn an_upstream_may_send_wharf_only_within_its_own_kinds() {
        let all = [Public, Loopback, Unspecified, LinkLocal, Private, Reserved];
        for up in all {
            for target in all {
                let want = target == Public || target == up;
                assert_eq!(allowed(target, &[up]), want, "{up:?} -> {target:?}");
            }
        }
        // A host with addresses of two kinds (a name resolving to 127.0.0.1 and 10.0.0.5).
        assert!(allowed(Private, &[Loopback, Private]));
        assert!(allowed(Loopback, &[Loopback, Private]));
        assert!(!allowed(LinkLocal, &[Loopback, Private]));
    }

    #[test]
    fn only_the_permitted_addresses_of_a_mixed_answer_are_kept() {
        let ips: Vec<IpAddr> = ["8.8.8.8", "127.0.0.1", "169.254.169.254", "2606:4700::1"]
            .iter()
            .map(|s| s.parse().expect("ip"))
            .collect();
        let (ok, refused) = permitted(ips.clone(), |ip| ip, &[Public]);
        assert_eq!(ok, vec![ips[0], ips[3]]);
        assert_eq!(refused, vec![ips[1], ips[2]]);
        let (ok, refused) = permitted(ips.clone(), |ip| ip, &[Loopback]);
        assert_eq!(ok, vec![ips[0], ips[1], ips[3]]);
        assert_eq!(refused, vec![ips[2]]);
    }

    #[test]
    fn https_never_redirects_to_http() {
        let u = |s: &str| s.parse::<Uri>().expect("uri");
        let https = u("https://reg.example/v2/a/blobs/x");
        assert!(check_hop(&https, &u("https://cdn.example/b?sig=1")).is_ok());
        let err = check_hop(&https, &u("http://cdn.example/b?sig=secret")).expect_err("downgrade");
        assert!(err.contains("http://cdn.example/b"), "{err}");
        assert!(
            !err.contains("secret"),
            "the query stays out of messages: {err}"
        );
        assert!(check_hop(&https, &u("http://reg.example/v2/a/blobs/x")).is_err());
        let http = u("http://reg.example/v2/");
        assert!(check_hop(&http, &u("http://cdn.example/b")).is_ok());
        assert!(check_hop(&http, &u("https://cdn.example/b")).is_ok());
    }

    #[test]
    fn locations_resolve_against_the_request() {
        let base: Uri = "https://reg.example:5000/v2/a/blobs/sha256:ab"
            .parse()
            .expect("uri");
        assert_eq!(
            resolve_location(&base, "/other/path?x=1").map(|u| u.to_string()),
            Some("https://reg.example:5000/other/path?x=1".to_string())
        );
        assert_eq!(
            resolve_location(&base, "https://cdn.example/blob?sig=1").map(|u| u.to_string()),
            Some("https://cdn.example/blob?sig=1".to_string())
        );
        assert_eq!(resolve_location(&base, "//evil/x"), None);
        assert_eq!(resolve_location(&base, "relative"), None);
        assert_eq!(resolve_location(&base, "file:///etc/passwd"), None);
    }

    #[test]
    fn redacted_drops_the_query() {
        let u: Uri = "https://cdn.example/blob?X-Amz-Signature=secret"
            .parse()
            .expect("uri");
        assert_eq!(redacted(&u), "https://cdn.example/blob");
    }
}
