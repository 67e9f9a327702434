//! The fake's OCI 1.1 referrers API: an image index of the manifests in the repository whose
//! `subject` is the digest asked for (`artifactType`: the manifest's, else its config's media
//! type), sorted by digest; optionally paginated with `Link` (`?last=`). With `referrers_api`
//! off it answers `404 page not found`, as Distribution 2.8 does.

use super::auth::parse_query;
use super::serve::{full, Body};
use super::Ctx;
use http::{HeaderValue, Response, StatusCode};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

impl Ctx {
    pub(crate) fn referrers(&self, query: Option<&str>, repo: &str, path: &str) -> Response<Body> {
        if !self.referrers_api.load(Ordering::SeqCst) {
            let mut r = full(StatusCode::NOT_FOUND, "404 page not found\n");
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static("text/plain"));
            return r;
        }
        let subject = path.rsplit('/').next().unwrap_or("");
        let last = parse_query(query.unwrap_or(""))
            .into_iter()
            .find(|(k, _)| k == "last")
            .map(|(_, v)| v);
        let s = self.state.lock().expect("lock");
        let mut found: Vec<Value> = s
            .repo_manifests
            .iter()
            .filter(|(r, _)| r == repo)
            .filter_map(|(_, d)| {
                let (mt, bytes) = s.manifests.get(d)?;
                let v: Value = serde_json::from_slice(bytes).ok()?;
                (v["subject"]["digest"].as_str() == Some(subject)).then_some(())?;
                let artifact_type = v["artifactType"]
                    .as_str()
                    .or(v["config"]["mediaType"].as_str())
                    .unwrap_or_default();
                let mut desc = json!({
                    "mediaType": v["mediaType"].as_str().unwrap_or(mt),
                    "digest": d,
                    "size": bytes.len(),
                    "artifactType": artifact_type,
                });
                if v.get("annotations").is_some() {
                    desc["annotations"] = v["annotations"].clone();
                }
                Some(desc)
            })
            .collect();
        found.sort_by(|a, b| a["digest"].as_str().cmp(&b["digest"].as_str()));
        if let Some(last) = &last {
            found.retain(|d| d["digest"].as_str().is_some_and(|x| x > last.as_str()));
        }
        let page = self.referrers_page.load(Ordering::SeqCst) as usize;
        let mut next = None;
        if page > 0 && found.len() > page {
            found.truncate(page);
            let last = found[page - 1]["digest"].as_str().unwrap_or_default();
            next = Some(format!(
                "</v2/{repo}/referrers/{subject}?n={page}&last={last}>; rel=\"next\""
            ));
        }
        let body = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": found});
        let mut r = full(StatusCode::OK, body.to_string());
        r.headers_mut()
            .insert("content-type", HeaderValue::from_static(OCI_INDEX));
        if let Some(l) = next {
            r.headers_mut()
                .insert("link", HeaderValue::from_str(&l).expect("link"));
        }
        r
    }
}
