//! `object_store`'s HTTP client interface implemented with the hyper client Wharf already
//! uses for upstreams (rustls with the ring provider and the system roots), so the S3
//! backend adds no second HTTP or TLS stack to the build.

use http_body_util::BodyExt;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpRequestBody,
    HttpResponse, HttpResponseBody, HttpService,
};
use object_store::ClientOptions;
use std::time::Duration;

type Inner =
    hyper_util::client::legacy::Client<crate::upstream::client::Connector, HttpRequestBody>;

/// How long the store may take to answer a request's headers.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct Connector {
    client: Inner,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("wharf hyper connector")
    }
}

impl Connector {
    /// `ca_file`: PEM certificates trusted for an `https://` endpoint, beside the system's.
    pub fn new(ca_file: Option<&std::path::Path>) -> Result<Connector, String> {
        Ok(Connector {
            client: crate::upstream::client::build_with(ca_file, None, Duration::from_secs(5))?,
        })
    }
}

impl HttpConnector for Connector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(self.clone()))
    }
}

#[derive(Debug)]
struct Timeout;

impl std::fmt::Display for Timeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no response within {RESPONSE_TIMEOUT:?}")
    }
}

impl std::error::Error for Timeout {}

#[async_trait::async_trait]
impl HttpService for Connector {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let resp = tokio::time::timeout(RESPONSE_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| HttpError::new(HttpErrorKind::Timeout, Timeout))?
            .map_err(|e| {
                let kind = if e.is_connect() {
                    HttpErrorKind::Connect
                } else {
                    HttpErrorKind::Request
                };
                HttpError::new(kind, e)
            })?;
        Ok(resp.map(|body| {
            HttpResponseBody::new(body.map_err(|e| HttpError::new(HttpErrorKind::Interrupted, e)))
        }))
    }
}
