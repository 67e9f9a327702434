//! The maintenance commands behind `wharf gc|fsck|ls|du|export|import`: what they print and
//! the exit status they end with. `main.rs` keeps the argument parsing.

use crate::config::{self, Config};
use crate::transfer::control;
use std::path::{Path, PathBuf};

/// `wharf gc`: one eviction pass on a stopped Wharf's data_dir.
pub fn gc(cfg: &Config, to: Option<&str>) -> u8 {
    match gc_pass(cfg, to) {
        Ok(e) => {
            println!(
                "freed {} blobs, {} bytes; {} manifests, {} bytes",
                e.blobs,
                e.blob_bytes,
                e.manifests.len(),
                e.manifest_bytes
            );
            0
        }
        Err(e) => {
            eprintln!("gc failed: {e}");
            1
        }
    }
}

/// `wharf fsck`: 0 all well (or all repaired), 1 problems found, 2 could not check.
pub fn fsck(cfg: &Config, repair: bool) -> u8 {
    let report = crate::store::Store::open_with(&cfg.data_dir, false).and_then(|s| s.fsck(repair));
    match report {
        Ok(r) => {
            for p in &r.problems {
                println!("problem: {p}");
            }
            for n in &r.notes {
                println!("note: {n}");
            }
            println!(
                "checked {} blobs: {} problems, {} repaired",
                r.checked,
                r.problems.len(),
                r.repaired
            );
            if r.problems.len() as u64 > r.repaired {
                1
            } else {
                0
            }
        }
        Err(e) => {
            eprintln!("fsck failed: {e}");
            2
        }
    }
}

/// `wharf export`: directly, or through the running Wharf's control socket.
pub fn export(cfg: &Config, images: &[String], all: bool, output: &Path) -> u8 {
    // Images as users write them (`alpine:3.20`) become `ls`'s `upstream/repo:tag`.
    let images: Vec<String> = images
        .iter()
        .map(|i| match crate::prefetch::spec::ImageSpec::parse(i, cfg) {
            Ok(spec) if !spec.reference.contains(':') => spec.to_string(),
            _ => i.clone(),
        })
        .collect();
    let result = match crate::transfer::open_store(&cfg.data_dir) {
        Ok(s) => {
            // One line per blob on stderr: how far the export is, for a person watching.
            let mut shown = |d: &crate::oci::Digest, len: u64, done: u64, total: u64| {
                let pct = (done * 100).checked_div(total).unwrap_or(100);
                eprintln!("exported blob {d} ({len} bytes), {done} of {total} bytes ({pct}%)");
            };
            crate::transfer::export(&s, &images, all, output, &mut shown).map_err(|e| e.to_string())
        }
        Err(e) if crate::transfer::is_locked(&e) => {
            eprintln!("Wharf is running on this data_dir: exporting through it");
            let request = control::ExportRequest {
                images,
                all,
                output: absolute(output),
            };
            on_running(control::export_running(&cfg.data_dir, &request))
        }
        Err(e) => Err(e.to_string()),
    };
    match result {
        Ok(s) => {
            println!(
                "exported {} images ({} blobs, {} bytes) to {}",
                s.images,
                s.blobs,
                s.bytes,
                output.display()
            );
            0
        }
        Err(e) => {
            eprintln!("export failed: {e}");
            1
        }
    }
}

/// `wharf import`: directly, or through the running Wharf's control socket.
pub fn import(cfg: &Config, path: &Path, name: Option<String>) -> u8 {
    let result = match crate::transfer::open_store(&cfg.data_dir) {
        Ok(s) => {
            let upstream_of = |host: &str| cfg.upstream(host).map(|u| u.name.clone());
            crate::transfer::import(&s, path, name.as_deref(), &upstream_of)
                .map_err(|e| e.to_string())
        }
        Err(e) if crate::transfer::is_locked(&e) => {
            eprintln!("Wharf is running on this data_dir: importing through it");
            let request = control::ImportRequest {
                path: absolute(path),
                name,
            };
            on_running(control::import_running(&cfg.data_dir, &request))
        }
        Err(e) => Err(e.to_string()),
    };
    match result {
        Ok(s) => {
            for i in &s.images {
                println!("imported {i}");
                let upstream = i.split('/').next().unwrap_or_default();
                if !cfg.upstreams.iter().any(|u| u.name == upstream) {
                    eprintln!(
                        "warning: {i}: no upstream named {upstream:?} is configured; \
                         Wharf serves it only once one is"
                    );
                }
            }
            println!(
                "stored {} manifests and {} blobs ({} bytes); {} blobs were already cached",
                s.manifests, s.blobs, s.bytes, s.blobs_present
            );
            0
        }
        Err(e) => {
            eprintln!("import failed: {e}");
            1
        }
    }
}

/// A path as the running Wharf (another process, maybe another working directory) sees it.
fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Runs one control-socket call to the Wharf running on the data_dir.
fn on_running<T>(call: impl std::future::Future<Output = Result<T, String>>) -> Result<T, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?
        .block_on(call)
}

/// `wharf ls` (images) and `wharf du` (usage) on a stopped Wharf's data_dir.
pub fn report(cfg: &Config, json: bool, images: bool) -> u8 {
    let store = match crate::store::Store::open_with(&cfg.data_dir, false) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot open {}: {e}", cfg.data_dir.display());
            return 1;
        }
    };
    let text = if images {
        store.images().map(|list| {
            if json {
                serde_json::to_string_pretty(&list).unwrap_or_default()
            } else {
                let mut s = String::from("IMAGE\tDIGEST\tCACHED BYTES\tCHECKED\n");
                for i in &list {
                    s.push_str(&format!(
                        "{}/{}:{}\t{}\t{}\t{}\n",
                        i.upstream, i.repository, i.tag, i.digest, i.cached_bytes, i.checked_at
                    ));
                }
                s
            }
        })
    } else {
        store.usage().map(|list| {
            if json {
                serde_json::to_string_pretty(&list).unwrap_or_default()
            } else {
                let mut s = String::from("UPSTREAM\tREPOSITORY\tBLOBS\tBYTES\n");
                for u in &list {
                    s.push_str(&format!(
                        "{}\t{}\t{}\t{}\n",
                        u.upstream, u.repository, u.blobs, u.bytes
                    ));
                }
                s
            }
        })
    };
    match text {
        Ok(t) => {
            println!("{}", t.trim_end());
            0
        }
        Err(e) => {
            eprintln!("cannot read the cache: {e}");
            1
        }
    }
}

/// One eviction pass on a stopped Wharf's data_dir.
fn gc_pass(cfg: &Config, to: Option<&str>) -> Result<crate::store::usage::Evicted, String> {
    let target = match to {
        Some(s) => config::parse_size(s).map_err(|e| format!("--to: {e}"))?,
        None => (cfg.cache.max_size as f64 * cfg.cache.low_watermark) as u64,
    };
    let store = std::sync::Arc::new(
        crate::store::Store::open(&cfg.data_dir)
            .map_err(|e| format!("cannot open {}: {e}", cfg.data_dir.display()))?,
    );
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::new(&[], cfg.cache.max_size));
    crate::registry::capacity::Evictor::new(
        store,
        cfg.cache.clone(),
        metrics,
        Vec::new(),
        Default::default(),
    )
    .run_pass(target)
    .map_err(|e| e.to_string())
}
