//! The TCP side of an upstream's client: name resolution and connections that keep the
//! address policy of [`super::redirect`].
//!
//! Invariant: a connection to a host other than the upstream's own is made only to addresses
//! [`redirect::allowed`] for the upstream, checked on the addresses the connector then
//! connects to: names through [`Resolver`] (it hands the connector only permitted addresses,
//! so a DNS answer cannot change between check and use), IP literals (which hyper's
//! connector never resolves) in [`Tcp::call`]. A refusal is a [`Refused`] error in the
//! client error's source chain ([`refused`]). Clients built without a guard (peers, the
//! shared bucket, Wharf's own prefetch client) resolve and connect as usual.

use super::redirect::{self, Class};
use http::Uri;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::net::TcpStream;

/// The error of the resolver and the connectors; also that of a streamed request body
/// (re-exported as `client::BoxError`).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

/// A connection the address policy refused.
#[derive(Debug)]
pub struct Refused {
    host: String,
    addr: IpAddr,
    class: Class,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "refused to connect to {} at {}: a {} address, and the upstream's own host has none of that kind",
            self.host,
            self.addr,
            self.class.describe()
        )
    }
}

impl std::error::Error for Refused {}

/// The [`Refused`] in an error's source chain, if the policy is why it failed.
pub fn refused<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<Refused>() {
            return Some(r);
        }
        cur = err.source();
    }
    None
}

/// The policy for one upstream: its own host, and what else it may send Wharf to.
#[derive(Debug, Clone)]
pub struct Guard {
    /// The upstream URL's host, lowercase, without IPv6 brackets.
    own: Arc<str>,
}

impl Guard {
    pub fn new(upstream: &Uri) -> Guard {
        Guard {
            own: bare(upstream.host().unwrap_or(""))
                .to_ascii_lowercase()
                .into(),
        }
    }

    /// Whether `host` (as in a URI) is the upstream's own host.
    pub fn is_own(&self, host: &str) -> bool {
        bare(host).eq_ignore_ascii_case(&self.own)
    }

    /// The classes of the upstream's own addresses (resolved now: none if it does not).
    async fn own_classes(&self) -> Vec<Class> {
        if let Ok(ip) = self.own.parse::<IpAddr>() {
            return vec![redirect::classify(ip)];
        }
        match tokio::net::lookup_host((&*self.own, 0)).await {
            Ok(addrs) => addrs.map(|a| redirect::classify(a.ip())).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The addresses of `host` Wharf may connect to; an error if that leaves none.
    pub async fn permit(
        &self,
        host: &str,
        addrs: Vec<SocketAddr>,
    ) -> Result<Vec<SocketAddr>, Refused> {
        if self.is_own(host)
            || addrs
                .iter()
                .all(|a| redirect::classify(a.ip()) == Class::Public)
        {
            return Ok(addrs);
        }
        let own = self.own_classes().await;
        let (ok, refused) = redirect::permitted(addrs, |a| a.ip(), &own);
        match (ok.is_empty(), refused.first()) {
            (true, Some(a)) => {
                tracing::warn!(host, addr = %a.ip(), "refused a connection outside the upstream's network");
                Err(Refused {
                    host: host.to_string(),
                    addr: a.ip(),
                    class: redirect::classify(a.ip()),
                })
            }
            _ => Ok(ok),
        }
    }
}

/// A URI host without the brackets of an IPv6 literal.
fn bare(host: &str) -> &str {
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Resolves names for hyper's connector, keeping only the addresses the guard permits.
#[derive(Debug, Clone)]
pub struct Resolver {
    guard: Option<Guard>,
}

impl tower_service::Service<Name> for Resolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let guard = self.guard.clone();
        Box::pin(async move {
            let host = name.as_str();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await?.collect();
            let addrs = match guard {
                Some(g) => g.permit(host, addrs).await?,
                None => addrs,
            };
            Ok(addrs.into_iter())
        })
    }
}

/// hyper's TCP connector with the guard's resolver, and the guard applied to IP literals.
#[derive(Debug, Clone)]
pub struct Tcp {
    inner: HttpConnector<Resolver>,
    guard: Option<Guard>,
}

impl Tcp {
    pub fn new(guard: Option<Guard>, connect_timeout: std::time::Duration) -> Tcp {
        let mut inner = HttpConnector::new_with_resolver(Resolver {
            guard: guard.clone(),
        });
        inner.enforce_http(false);
        inner.set_connect_timeout(Some(connect_timeout));
        inner.set_nodelay(true);
        Tcp { inner, guard }
    }
}

impl tower_service::Service<Uri> for Tcp {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let literal = dst
            .host()
            .and_then(|h| bare(h).parse::<IpAddr>().ok())
            .zip(self.guard.clone());
        let connecting = self.inner.call(dst.clone());
        Box::pin(async move {
            if let Some((ip, guard)) = literal {
                let host = dst.host().unwrap_or("");
                guard.permit(host, vec![SocketAddr::new(ip, 0)]).await?;
            }
            Ok(connecting.await?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(ips: &[&str]) -> Vec<SocketAddr> {
        ips.iter()
            .map(|s| SocketAddr::new(s.parse().expect("ip"), 443))
            .collect()
    }

    #[tokio::test]
    async fn a_public_upstream_is_kept_out_of_this_host_and_the_metadata_service() {
        let g = Guard::new(&"https://8.8.8.8/".parse().expect("uri"));
        let refused = g
            .permit("metadata.example", addrs(&["169.254.169.254"]))
            .await
            .expect_err("metadata");
        assert_eq!(refused.class, Class::Metadata);
        assert!(
            refused.to_string().contains("metadata.example"),
            "{refused}"
        );
        for ip in [
            "127.0.0.1",
            "0.0.0.0",
            "::1",
            "10.0.0.1",
            "::ffff:127.0.0.1",
        ] {
            assert!(g.permit("x.example", addrs(&[ip])).await.is_err(), "{ip}");
        }
        // A mixed answer keeps its public addresses only.
        let kept = g
            .permit("cdn.example", addrs(&["127.0.0.1", "1.2.3.4"]))
            .await
            .expect("public part");
        assert_eq!(kept, addrs(&["1.2.3.4"]));
        // The upstream's own host is never filtered (whatever its name resolves to).
        assert!(g.permit("8.8.8.8", addrs(&["127.0.0.1"])).await.is_ok());
    }

    #[tokio::test]
    async fn a_loopback_upstream_may_use_loopback_but_not_0_0_0_0() {
        let g = Guard::new(&"http://127.0.0.1:5000/".parse().expect("uri"));
        assert!(g.permit("localhost", addrs(&["127.0.0.2"])).await.is_ok());
        assert!(g.permit("[::1]", addrs(&["::1"])).await.is_ok());
        assert!(g.permit("0.0.0.0", addrs(&["0.0.0.0"])).await.is_err());
        assert!(g.permit("x", addrs(&["192.168.0.1"])).await.is_err());
        // By name: `localhost` resolves to loopback addresses.
        let g = Guard::new(&"http://LOCALHOST:5000/".parse().expect("uri"));
        assert!(g.is_own("localhost"));
        assert!(g.permit("other", addrs(&["127.0.0.1"])).await.is_ok());
        assert!(g.permit("other", addrs(&["10.0.0.1"])).await.is_err());
    }

    #[tokio::test]
    async fn names_are_checked_on_what_they_resolve_to() {
        use tower_service::Service;
        let mut r = Resolver {
            guard: Some(Guard::new(&"https://8.8.8.8/".parse().expect("uri"))),
        };
        // Spellings of 127.0.0.1 that are no IP literal to hyper but resolve to loopback.
        for name in ["localhost", "127.1", "2130706433", "0x7f.0.0.1"] {
            let e = r.call(name.parse().expect("name")).await.expect_err(name);
            assert!(refused(e.as_ref()).is_some(), "{name}: {e}");
        }
        let mut open = Resolver { guard: None };
        assert!(open.call("localhost".parse().expect("name")).await.is_ok());
    }

    #[test]
    fn ipv6_hosts_compare_without_brackets() {
        let g = Guard::new(&"https://[FD00::1]:5000/".parse().expect("uri"));
        assert!(g.is_own("[fd00::1]"));
        assert!(g.is_own("fd00::1"));
        assert!(!g.is_own("[fd00::2]"));
    }

    #[test]
    fn a_refusal_is_found_in_an_error_chain() {
        #[derive(Debug)]
        struct Outer(Refused);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("client error")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(Refused {
            host: "h".into(),
            addr: "127.0.0.1".parse().expect("ip"),
            class: Class::Loopback,
        });
        assert!(refused(&e).is_some());
        assert!(refused(&std::io::Error::other("x")).is_none());
    }
}
