//! The webhook sink: a batch is one `POST` of Distribution's envelope, with the configured
//! headers, over the same hyper + rustls client as Wharf's other outgoing requests
//! (`upstream::client::build_with`: the system's roots, HTTP/2 by ALPN). Any 2xx is delivered.

use super::deliver::Deliver;
use super::event::{envelope, Event, ENVELOPE_MEDIA_TYPE};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use std::sync::Arc;
use std::time::Duration;

type Client = hyper_util::client::legacy::Client<crate::upstream::client::Connector, Full<Bytes>>;

pub(super) struct Webhook {
    url: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    client: Client,
}

impl Webhook {
    pub fn new(url: Uri, headers: &[(String, String)]) -> Result<Webhook, String> {
        let mut hs = Vec::new();
        for (n, v) in headers {
            let name =
                HeaderName::from_bytes(n.as_bytes()).map_err(|e| format!("header {n}: {e}"))?;
            let mut value = HeaderValue::from_str(v).map_err(|e| format!("header {n}: {e}"))?;
            value.set_sensitive(true);
            hs.push((name, value));
        }
        let client = crate::upstream::client::build_with(None, None, Duration::from_secs(5))?;
        Ok(Webhook {
            url,
            headers: hs,
            client,
        })
    }
}

#[async_trait::async_trait]
impl Deliver for Webhook {
    async fn deliver(&mut self, batch: &[Arc<Event>]) -> Result<(), String> {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(self.url.clone())
            .header(http::header::CONTENT_TYPE, ENVELOPE_MEDIA_TYPE)
            .body(Full::new(Bytes::from(envelope(batch))))
            .map_err(|e| e.to_string())?;
        for (n, v) in &self.headers {
            req.headers_mut().insert(n.clone(), v.clone());
        }
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| format!("{}: {e}", self.url))?;
        let status = resp.status();
        // Read to the end so the connection is reused.
        let _ = resp.into_body().collect().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("{}: answered {status}", self.url))
        }
    }
}
