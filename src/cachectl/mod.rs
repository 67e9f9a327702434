//! `wharf cache ...`: a client of a running Wharf's admin API (`http::admin_api`).
//!
//! Every command is one or two requests to `--admin` (default `http://127.0.0.1:5001`) with
//! the token of `--token-file` (checked like `[admin] token_file`) or `WHARF_ADMIN_TOKEN`.
//! Output is a table for people, or with `--json` the API's JSON as it is (the stable shape
//! the README documents). Errors (no such image, a refused token, no Wharf there) are one
//! line on stderr and exit status 1.

mod render;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use std::path::PathBuf;
use std::time::Duration;

/// How long the admin API may take to answer.
const TIMEOUT: Duration = Duration::from_secs(120);

#[derive(clap::Args)]
pub struct CacheArgs {
    /// The admin listener of the running Wharf.
    #[arg(long, global = true, default_value = "http://127.0.0.1:5001")]
    admin: String,
    /// The file holding the admin token (else WHARF_ADMIN_TOKEN holds the token itself).
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    #[command(subcommand)]
    command: CacheCommand,
}

#[derive(clap::Subcommand)]
pub enum CacheCommand {
    /// The upstreams (no argument), the repositories of an upstream, or the tags of a
    /// repository.
    Ls {
        /// `UPSTREAM` or `UPSTREAM/REPO`.
        target: Option<String>,
        /// The API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One cached image in detail: manifest, layers, labels, annotations, why it is pinned.
    Inspect {
        /// `UPSTREAM/REPO:TAG` or `UPSTREAM/REPO@DIGEST`.
        reference: String,
        #[arg(long)]
        json: bool,
    },
    /// Keep an image from eviction (kept in Wharf's store: it survives restarts).
    Pin {
        /// `UPSTREAM/REPO:TAG` (follows the tag) or `UPSTREAM/REPO@DIGEST`.
        reference: String,
    },
    /// Remove images from the cache (tags, manifests, links, and blobs no other cached image
    /// needs); the next pull fetches them from the upstream again.
    Purge {
        /// `UPSTREAM/REPO`, `UPSTREAM/REPO:TAG` or `UPSTREAM/REPO@DIGEST`...
        #[arg(required = true)]
        references: Vec<String>,
    },
    /// Revalidate tags now, whatever their `tag_ttl`; says whether each moved.
    Refresh {
        /// `UPSTREAM/REPO:TAG`...
        #[arg(required = true)]
        references: Vec<String>,
    },
    /// Remove a pin set with `wharf cache pin` (`cache.pin` entries stay in the config).
    Unpin { reference: String },
}

/// A connection to the admin API.
struct Admin {
    base: String,
    token: Option<String>,
    http: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
}

impl Admin {
    fn new(args: &CacheArgs) -> Result<Admin, String> {
        let token = match &args.token_file {
            Some(f) => Some(crate::config::read_token(f)?.as_str().to_string()),
            None => std::env::var("WHARF_ADMIN_TOKEN")
                .ok()
                .map(|t| t.trim().to_string()),
        };
        let http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        Ok(Admin {
            base: args.admin.trim_end_matches('/').to_string(),
            token,
            http,
        })
    }

    /// `method path` with `body`; the JSON of a 2xx answer, else the one-line error.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, String> {
        let url = format!("{}{path}", self.base);
        let mut req = Request::builder().method(method).uri(&url);
        if let Some(t) = &self.token {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let req = req
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|e| format!("bad admin URL {url:?}: {e}"))?;
        let unreachable = |e: String| {
            format!(
                "cannot reach Wharf's admin API at {} ({e}): is Wharf running there?",
                self.base
            )
        };
        let resp = tokio::time::timeout(TIMEOUT, self.http.request(req))
            .await
            .map_err(|_| unreachable("no answer in time".into()))?
            .map_err(|e| unreachable(chain(&e)))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .to_bytes();
        let doc: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
        let message = doc
            .as_ref()
            .and_then(|d| d.get("error"))
            .and_then(|e| e.as_str())
            .map(str::to_string);
        match (status, message) {
            (s, _) if s.is_success() => doc.ok_or_else(|| "the admin API sent no JSON".into()),
            (StatusCode::UNAUTHORIZED, _) => Err(format!(
                "the admin API at {} refused the token (--token-file or WHARF_ADMIN_TOKEN)",
                self.base
            )),
            (StatusCode::NOT_FOUND, None) => Err(format!(
                "the admin API is off at {} (set [admin] token_file in Wharf's config)",
                self.base
            )),
            (_, Some(m)) => Err(m),
            (s, None) => Err(format!("the admin API answered {s}")),
        }
    }
}

/// An error and its causes, on one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s = format!("{s}: {inner}");
        src = inner.source();
    }
    s
}

/// A percent-encoded query value.
fn q(v: &str) -> String {
    crate::auth::form::encode_value(v)
}

async fn run(args: CacheArgs) -> Result<String, String> {
    let admin = Admin::new(&args)?;
    match args.command {
        CacheCommand::Ls { target, json } => {
            let (path, table): (String, fn(&serde_json::Value) -> String) = match target {
                None => ("/admin/v1/upstreams".into(), render::upstreams),
                Some(t) if !t.contains('/') => (
                    format!("/admin/v1/repositories?upstream={}", q(&t)),
                    render::repositories,
                ),
                Some(t) => {
                    crate::oci::CacheRef::parse(&t)?;
                    (format!("/admin/v1/tags?repository={}", q(&t)), render::tags)
                }
            };
            let doc = admin.call(Method::GET, &path, None).await?;
            Ok(if json {
                render::json(&doc)
            } else {
                table(&doc)
            })
        }
        CacheCommand::Inspect { reference, json } => {
            crate::oci::CacheRef::parse(&reference)?;
            let path = format!("/admin/v1/image?ref={}", q(&reference));
            let doc = admin.call(Method::GET, &path, None).await?;
            Ok(if json {
                render::json(&doc)
            } else {
                render::image(&doc)
            })
        }
        CacheCommand::Refresh { references } => each(&admin, &references, "refresh").await,
        CacheCommand::Purge { references } => each(&admin, &references, "purge").await,
        CacheCommand::Pin { reference } => pin(&admin, &reference, Method::PUT).await,
        CacheCommand::Unpin { reference } => pin(&admin, &reference, Method::DELETE).await,
    }
}

/// What `refresh` or `purge` did to one reference, in one line.
fn summary(what: &str, doc: &serde_json::Value) -> String {
    let f = |k: &str| {
        doc.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("-")
            .to_string()
    };
    let n = |k: &str| doc.get(k).and_then(|v| v.as_array()).map_or(0, Vec::len);
    match (what, f("result").as_str()) {
        ("purge", _) => format!(
            "purged {}: {} tags, {} manifests, {} blobs ({} freed)",
            f("ref"),
            n("tags"),
            n("deleted_manifests"),
            n("deleted_blobs"),
            crate::prefetch::progress::human(
                doc.get("freed_bytes").and_then(|b| b.as_u64()).unwrap_or(0)
            )
        ),
        (_, "moved") => format!("{} moved: {} -> {}", f("ref"), f("previous"), f("digest")),
        _ => format!("{} unchanged: {}", f("ref"), f("digest")),
    }
}

/// `refresh` or `purge` (`what`): one line per reference; every one is tried, the first
/// error is the result.
async fn each(admin: &Admin, references: &[String], what: &str) -> Result<String, String> {
    let (mut out, mut failed) = (String::new(), None);
    for r in references {
        let res = match crate::oci::CacheRef::parse(r) {
            Ok(_) => {
                let path = format!("/admin/v1/{what}?ref={}", q(r));
                admin.call(Method::POST, &path, None).await
            }
            Err(e) => Err(e),
        };
        match res {
            Ok(doc) => {
                out.push_str(&summary(what, &doc));
                out.push('\n');
            }
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
    }
    match failed {
        None => Ok(out),
        Some(e) => {
            print!("{out}");
            Err(e)
        }
    }
}

/// `pin` (`PUT`) or `unpin` (`DELETE`).
async fn pin(admin: &Admin, reference: &str, method: Method) -> Result<String, String> {
    crate::oci::CacheRef::parse(reference)?;
    let path = format!("/admin/v1/pins?ref={}", q(reference));
    let doc = admin.call(method, &path, None).await?;
    let r = doc.get("ref").and_then(|r| r.as_str()).unwrap_or(reference);
    Ok(match doc.get("since").and_then(|s| s.as_str()) {
        Some(since) => format!("pinned {r} (since {since})"),
        None => format!("unpinned {r}"),
    })
}

/// Runs a `wharf cache` command; the exit status.
pub fn main(args: CacheArgs) -> u8 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(run(args)) {
        Ok(out) => {
            println!("{}", out.trim_end());
            0
        }
        Err(e) => {
            eprintln!("wharf cache: {e}");
            1
        }
    }
}
