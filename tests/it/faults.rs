//! Upstream faults (issue 10): for each, the client gets a clean error (the spec's envelope,
//! or a 200 whose body ends in a reset, never a complete body of wrong bytes), nothing bad is
//! cached, the next request works once the upstream is healthy (and asks it again), and the
//! metrics count it.
//!
//! | issue bullet | test |
//! | --- | --- |
//! | connection reset mid-blob | `blob::a_reset_mid_blob_resets_every_client_of_the_fill`; also `pull::an_upstream_that_breaks_mid_body_resets_the_client`, `resilience::retries::a_blob_that_breaks_mid_body_is_not_retried` |
//! | wrong bytes with a right length | `blob::wrong_bytes_of_the_right_length_reach_no_client_complete`; also `pull::wrong_bytes_from_upstream_are_never_served_or_cached` |
//! | `Content-Length` that lies, short and long | `blob::a_short_content_length_is_a_digest_mismatch`, `blob::a_long_content_length_is_a_broken_body`, `manifest::a_lying_content_length_on_a_manifest_is_refused` |
//! | slow drip below / above the idle timeout | `blob::a_drip_below_the_idle_timeout_is_served`, `blob::a_drip_above_the_idle_timeout_is_abandoned`, `manifest::a_manifest_dripping_past_the_idle_timeout_is_abandoned` |
//! | `500`/`502`/`503` bursts | `status::bursts_of_500_502_503_are_clean_errors_and_not_remembered`; also `resilience::retries::*`, `resilience::breaker::*` |
//! | `429` with `Retry-After` | `status::a_429_is_passed_on_once_with_its_retry_after`; also `resilience::stale::a_429_serves_the_cached_copy_or_is_passed_through_with_retry_after` |
//! | redirect loops | `redirect::a_redirect_loop_ends_after_five_hops_and_is_not_retried` |
//! | redirects to another host, no `Authorization` forwarded | `redirect::a_redirect_to_another_host_gets_no_authorization` |
//! | (issue 18) a tags list that is not one, reached through a redirect | `redirect::a_tags_list_is_re_emitted_not_streamed` |
//! | (issue 18) a redirect to the admin listener (its `/metrics` as a tags list) | `redirect::a_tags_list_redirected_to_the_admin_metrics_is_refused_not_streamed` |
//! | (issue 18) a redirect to a loopback service from an upstream of another kind | `redirect::an_upstream_on_0_0_0_0_cannot_send_wharf_to_loopback`, `redirect::a_loopback_upstream_cannot_reach_this_host_through_0_0_0_0` |
//! | (issue 18) https → http, the client certificate to a redirect host | `redirect_tls::a_redirect_from_https_to_http_is_refused`, `redirect_tls::the_client_certificate_is_offered_only_to_the_upstreams_host` |
//! | manifest over the size limit (4 MiB) | `manifest::a_manifest_over_4_mib_is_refused_and_one_of_4_mib_is_served` |
//! | manifest whose digest does not match the request | `manifest::a_manifest_with_the_wrong_digest_is_refused` |
//! | index referencing missing children | `manifest::an_index_with_missing_children_is_served_and_its_children_are_404` |
//! | (found here) a manifest whose `mediaType` is not a media type | `manifest::a_manifest_with_a_hostile_media_type_is_refused` |

mod blob;
mod manifest;
mod redirect;
mod redirect_tls;
mod status;

use crate::support::scrape::{sample, scrape_settled};
use crate::support::{self, Fake, Resp};
use std::time::Duration;
use wharf::app::Running;

/// The fill idle timeout these tests run with.
pub const IDLE: Duration = Duration::from_secs(1);

/// A fake upstream (no auth) and a Wharf in front of it with a 1 s fill idle timeout and the
/// breaker out of the way. Fields drop in order: Wharf before its data dir.
pub struct Env {
    pub fake: Fake,
    pub w: Running,
    pub dir: tempfile::TempDir,
}

impl Env {
    /// `extra` goes inside the `[[upstream]]` table.
    pub async fn start(extra: &str) -> Env {
        Env::with_fake(Fake::start().await, extra).await
    }

    pub async fn with_fake(fake: Fake, extra: &str) -> Env {
        let url = fake.url();
        Env::with_fake_at(fake, &url, extra).await
    }

    /// As [`Env::with_fake`], with the upstream configured at `url` (another way to `fake`).
    pub async fn with_fake_at(fake: Fake, url: &str, extra: &str) -> Env {
        let dir = tempfile::tempdir().expect("tmp");
        let toml = format!(
            r#"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
data_dir = "{}"
[fill]
idle_timeout = "{}ms"
[[upstream]]
name = "up.test"
url = "{}"
default = true
breaker_failures = 100
{extra}
"#,
            dir.path().display(),
            IDLE.as_millis(),
            url,
        );
        let w = support::wharf_toml(&toml).await;
        Env { fake, w, dir }
    }

    pub fn manifest(&self, repo: &str, reference: &str) -> String {
        format!("http://{}/v2/{repo}/manifests/{reference}", self.w.addr)
    }

    pub fn blob(&self, repo: &str, digest: &str) -> String {
        format!("http://{}/v2/{repo}/blobs/{digest}", self.w.addr)
    }

    /// One sample of `/metrics` (`name{labels}`).
    pub async fn metric(&self, name_and_labels: &str) -> f64 {
        sample(&scrape_settled(&self.w).await, name_and_labels)
    }

    /// `wharf_requests_total` for `kind` and `result` under `up.test`.
    pub async fn requests(&self, kind: &str, result: &str) -> f64 {
        self.metric(&format!(
            r#"wharf_requests_total{{kind="{kind}",result="{result}",upstream="up.test"}}"#
        ))
        .await
    }

    /// `wharf_upstream_requests_total` for `method` and `class` under `up.test`.
    pub async fn upstream_requests(&self, method: &str, class: &str) -> f64 {
        self.metric(&format!(
            r#"wharf_upstream_requests_total{{method="{method}",status_class="{class}",upstream="up.test"}}"#
        ))
        .await
    }

    /// `wharf_fills_total` for `result`.
    pub async fn fills(&self, result: &str) -> f64 {
        // A fill is counted when it ends, which may be just after its clients got their
        // (verified) last byte: wait for the fills in flight first.
        self.w
            .registry
            .drain_fills(std::time::Duration::from_secs(10))
            .await;
        self.metric(&format!(r#"wharf_fills_total{{result="{result}"}}"#))
            .await
    }

    /// No committed file, no record and (once the fill task is done) no temp file for the
    /// blob `digest`.
    pub async fn assert_blob_not_cached(&self, digest: &str, what: &str) {
        let d = wharf::oci::Digest::parse(digest).expect("digest");
        let store = self.w.registry.store();
        assert!(!store.files().exists(&d), "{what}: blob file committed");
        assert_eq!(
            store.blob_record(&d).expect("record"),
            None,
            "{what}: blob recorded"
        );
        let tmp = self.dir.path().to_path_buf();
        assert!(
            support::eventually(Duration::from_secs(10), || {
                support::scrape::entries(&tmp, "tmp").is_empty()
            })
            .await,
            "{what}: temp files left: {:?}",
            support::scrape::entries(&tmp, "tmp")
        );
    }

    /// The manifest `digest` is neither stored nor reachable through `repo:tag`.
    pub fn assert_manifest_not_cached(&self, digest: &str, repo: &str, tag: &str, what: &str) {
        let d = wharf::oci::Digest::parse(digest).expect("digest");
        let store = self.w.registry.store();
        assert!(
            store.get_manifest(&d).expect("get").is_none(),
            "{what}: manifest stored"
        );
        assert_eq!(
            store.get_tag("up.test", repo, tag).expect("get tag"),
            None,
            "{what}: tag recorded"
        );
    }

    pub async fn shutdown(self) {
        self.w.shutdown().await;
    }
}

/// The body for failure messages (first 300 bytes, or the error that ended it).
pub fn lossy(r: &Resp) -> String {
    match &r.body {
        Ok(b) => String::from_utf8_lossy(&b[..b.len().min(300)]).into_owned(),
        Err(e) => format!("<error: {e}>"),
    }
}

/// `r` is an OCI error with `status` and `code`.
pub fn assert_error(r: &Resp, status: u16, code: &str, what: &str) {
    assert_eq!(
        r.status.as_u16(),
        status,
        "{what}: status (body {:?})",
        lossy(r)
    );
    assert_eq!(r.error_code(), code, "{what}: error code");
}
