//! What one burst of clients may cost (issue 18, findings 7 and 8): upstream requests for a
//! tag in single flight, the metadata inside `cache.max_size`, `fill.max_concurrent`.
//!
//! | issue bullet | test |
//! | --- | --- |
//! | concurrent requests for one uncached tag cost one upstream `GET` | `tags::sixty_concurrent_misses_of_one_tag_cost_one_upstream_get` |
//! | concurrent revalidations of a stale tag cost one `HEAD` | `tags::sixty_concurrent_revalidations_cost_one_head` |
//! | a client joining another's tag request is authorized for itself | `tags::a_client_joining_alices_request_for_a_private_tag_is_refused` |
//! | manifests count in the cache's size and are evicted | `metadata::manifests_count_in_max_size_and_the_least_recently_used_are_evicted` |
//! | expired authorization records are pruned | `registry::access::authz::tests::expired_decisions_are_pruned_but_not_anonymous_permissions_or_imports` (unit) |
//! | a global cap on concurrent fills | `fills::at_most_max_concurrent_fills_download_at_once`, `fills::a_fill_without_a_slot_gets_429_and_joiners_take_none` |

mod fills;
mod metadata;
mod tags;

use crate::support::{self, Fake};
use wharf::app::Running;

/// A fake upstream and a Wharf in front of it (upstream `up.test`); `extra` goes inside
/// `[[upstream]]`, `fill` inside `[fill]`, `cache` inside `[cache]`.
pub struct Env {
    pub fake: Fake,
    pub w: Running,
    _dir: tempfile::TempDir,
}

impl Env {
    pub async fn start(fake: Fake, extra: &str, fill: &str, cache: &str) -> Env {
        let dir = tempfile::tempdir().expect("tmp");
        let toml = format!(
            r#"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
data_dir = "{}"
[cache]
{cache}
[fill]
{fill}
[[upstream]]
name = "up.test"
url = "{}"
default = true
retries = 0
{extra}
"#,
            dir.path().display(),
            fake.url()
        );
        let w = support::wharf_toml(&toml).await;
        Env { fake, w, _dir: dir }
    }

    /// `http://<wharf>/v2/<path>`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/v2/{path}", self.w.addr)
    }

    pub async fn shutdown(self) {
        self.w.shutdown().await;
    }
}
