//! Manifest pushes forwarded upstream; what the upstream accepted goes to [`Manifests`]
//! (`manifests::pushed`, which holds the invariants).
//!
//! [`Manifests`]: crate::registry::manifests::Manifests

use super::{Forward, Pushes};
use crate::error::{Error, Result};
use crate::oci::manifest::MAX_MANIFEST_SIZE;
use crate::oci::{ErrorCode, Reference};
use crate::upstream::client::{BoxError, PushBody};
use crate::upstream::Payload;
use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt;
use hyper::body::Incoming;

impl Pushes {
    pub(super) async fn manifest(
        &self,
        fwd: &Forward<'_>,
        body: PushBody,
        reference: &Reference,
        content_type: Option<String>,
    ) -> Result<http::Response<Incoming>> {
        let declared = http_body::Body::size_hint(&body).exact();
        let small = declared.is_some_and(|n| n <= MAX_MANIFEST_SIZE as u64);
        let (payload, bytes) = if small {
            let bytes = read_small(body).await.map_err(|e| {
                Error::client(ErrorCode::ManifestInvalid, format!("manifest body: {e}"))
            })?;
            (Payload::Bytes(bytes.clone()), Some(bytes))
        } else {
            // Too large (or of unknown length) to cache: streamed, the upstream decides.
            (Payload::Stream(body), None)
        };
        let resp = fwd.send(payload).await?;
        if let Some(bytes) = bytes.filter(|_| resp.status() == StatusCode::CREATED) {
            let ct = content_type.as_deref();
            if let Err(e) = self.cache(fwd, reference, bytes, ct, resp.headers()).await {
                tracing::warn!(upstream = fwd.t.upstream.name(), error = %e, "could not cache a pushed manifest");
            }
        }
        Ok(resp)
    }

    /// Caches what the upstream accepted; drops the referrers lists it changed; records the
    /// pusher as allowed to pull.
    async fn cache(
        &self,
        fwd: &Forward<'_>,
        reference: &Reference,
        bytes: Bytes,
        content_type: Option<&str>,
        headers: &http::HeaderMap,
    ) -> Result<()> {
        let t = fwd.t;
        let pushed = self
            .manifests
            .pushed(t, reference, bytes, content_type, headers)
            .await?;
        let Some(subjects) = pushed else {
            return Ok(());
        };
        for s in &subjects {
            self.referrers.invalidate(t, s).await;
        }
        self.access.record(t, fwd.client, true).await
    }
}

/// The whole body, at most [`MAX_MANIFEST_SIZE`] bytes. (A loop rather than `Limited`: with a
/// boxed error type, `Limited`'s bounds make the handler's future fail the `Send` check.)
async fn read_small(mut body: PushBody) -> std::result::Result<Bytes, BoxError> {
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Some(d) = frame?.data_ref() {
            if buf.len() + d.len() > MAX_MANIFEST_SIZE {
                return Err("length limit exceeded".into());
            }
            buf.extend_from_slice(d);
        }
    }
    Ok(Bytes::from(buf))
}
