//! The tables of `wharf cache` (the JSON goes out as the API sent it).

use crate::prefetch::progress::human;
use serde_json::Value;

pub fn json(doc: &Value) -> String {
    serde_json::to_string_pretty(doc).unwrap_or_default()
}

fn s(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".to_string(),
        Some(Value::Bool(b)) => if *b { "yes" } else { "no" }.to_string(),
        Some(other) => other.to_string(),
    }
}

fn size(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_u64)
        .map(human)
        .unwrap_or_else(|| "-".into())
}

fn items<'a>(doc: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    doc.get(key).and_then(Value::as_array).into_iter().flatten()
}

/// Columns padded to their widest cell, two spaces apart.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, cell)| format!("{cell:<w$}", w = width[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn short(digest: &str) -> String {
    digest
        .strip_prefix("sha256:")
        .map_or(digest, |h| &h[..h.len().min(12)])
        .to_string()
}

pub fn upstreams(doc: &Value) -> String {
    let mut rows = vec![[
        "UPSTREAM",
        "BREAKER",
        "RATE LIMIT LEFT",
        "REPOS",
        "BLOBS",
        "SIZE",
        "LAST ERROR",
    ]
    .map(String::from)
    .to_vec()];
    for u in items(doc, "upstreams") {
        let c = u.get("cached").cloned().unwrap_or_default();
        let err = u.get("last_error").filter(|e| !e.is_null());
        rows.push(vec![
            s(u, "name"),
            s(u, "breaker"),
            s(u, "rate_limit_remaining"),
            s(&c, "repositories"),
            s(&c, "blobs"),
            size(&c, "bytes"),
            err.map_or("-".into(), |e| {
                format!("{} ({})", s(e, "message"), s(e, "at"))
            }),
        ]);
    }
    table(&rows)
}

pub fn repositories(doc: &Value) -> String {
    let mut rows = vec![["REPOSITORY", "TAGS", "BLOBS", "SIZE", "LAST PULLED"]
        .map(String::from)
        .to_vec()];
    for r in items(doc, "repositories") {
        rows.push(vec![
            s(r, "repository"),
            s(r, "tags"),
            s(r, "blobs"),
            size(r, "bytes"),
            s(r, "last_pulled"),
        ]);
    }
    table(&rows)
}

pub fn tags(doc: &Value) -> String {
    let mut rows = vec![[
        "TAG",
        "DIGEST",
        "PLATFORMS",
        "SIZE",
        "CHECKED",
        "LAST PULLED",
        "PINNED",
    ]
    .map(String::from)
    .to_vec()];
    for t in items(doc, "tags") {
        let platforms: Vec<&str> = items(t, "platforms").filter_map(Value::as_str).collect();
        rows.push(vec![
            s(t, "tag"),
            short(&s(t, "digest")),
            if platforms.is_empty() {
                "-".into()
            } else {
                platforms.join(",")
            },
            size(t, "size"),
            s(t, "checked_at"),
            s(t, "last_pulled"),
            s(t, "pinned"),
        ]);
    }
    table(&rows)
}

pub fn image(doc: &Value) -> String {
    let mut out = String::new();
    let line = |out: &mut String, k: &str, v: String| out.push_str(&format!("{k:<13}{v}\n"));
    let name = format!("{}/{}", s(doc, "upstream"), s(doc, "repository"));
    line(&mut out, "Image:", name);
    line(&mut out, "Tag:", s(doc, "tag"));
    line(&mut out, "Digest:", s(doc, "digest"));
    line(&mut out, "Media type:", s(doc, "media_type"));
    line(&mut out, "Size:", size(doc, "size"));
    line(&mut out, "Checked:", s(doc, "checked_at"));
    line(&mut out, "Last pulled:", s(doc, "last_pulled"));
    let why: Vec<&str> = items(doc, "pinned_by").filter_map(Value::as_str).collect();
    line(
        &mut out,
        "Pinned:",
        if why.is_empty() {
            "no".into()
        } else {
            format!("yes ({})", why.join("; "))
        },
    );
    for (title, key) in [("Platforms", "manifests"), ("Layers", "layers")] {
        let list: Vec<&Value> = items(doc, key).collect();
        if list.is_empty() {
            continue;
        }
        out.push_str(&format!("\n{title}:\n"));
        let mut rows = Vec::new();
        for d in list {
            rows.push(vec![
                format!("  {}", s(d, "digest")),
                if key == "manifests" {
                    s(d, "platform")
                } else {
                    size(d, "size")
                },
                if d.get("cached") == Some(&Value::Bool(true)) {
                    "cached"
                } else {
                    "not cached"
                }
                .into(),
            ]);
        }
        out.push_str(&table(&rows));
    }
    for (title, key) in [("Labels", "labels"), ("Annotations", "annotations")] {
        let Some(map) = doc
            .get(key)
            .and_then(Value::as_object)
            .filter(|m| !m.is_empty())
        else {
            continue;
        };
        out.push_str(&format!("\n{title}:\n"));
        for (k, v) in map {
            out.push_str(&format!("  {k}={}\n", v.as_str().unwrap_or_default()));
        }
    }
    out
}
