//! Static checks of the deployment files under `deploy/` and the dashboards: every file
//! parses, every Wharf config in them passes `wharf config check`, every containerd
//! `hosts.toml` lets containerd pull and resolve through Wharf. No network.
//!
//! YAML is parsed with Python's `yaml` module (Debian's `python3-yaml`, installed by
//! `scripts/setup.sh --test`); Helm templates are Go templates, checked for balanced
//! `{{`/`}}` only.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The public registries Wharf knows out of the box, with their registry API URLs.
const REGISTRIES: &[(&str, &str)] = &[
    ("docker.io", "https://registry-1.docker.io"),
    ("ghcr.io", "https://ghcr.io"),
    ("quay.io", "https://quay.io"),
    ("registry.k8s.io", "https://registry.k8s.io"),
    ("gcr.io", "https://gcr.io"),
    ("mcr.microsoft.com", "https://mcr.microsoft.com"),
    ("public.ecr.aws", "https://public.ecr.aws"),
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs a Python snippet on `path` (as `sys.argv[1]`); returns its standard output.
fn python(script: &str, path: &Path) -> Result<String, String> {
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .output()
        .unwrap_or_else(|e| {
            panic!("python3 with the yaml module is needed (scripts/setup.sh --test): {e}")
        });
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).expect("utf8"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Every `{{` is closed by a `}}` before the next `{{`, and every `}}` closes one.
fn check_template_braces(text: &str) -> Result<(), String> {
    let mut open: Option<usize> = None;
    let mut i = 0;
    let b = text.as_bytes();
    while i + 1 < b.len() {
        match &b[i..i + 2] {
            b"{{" => {
                if let Some(at) = open {
                    return Err(format!(
                        "`{{{{` at byte {i} inside the action opened at {at}"
                    ));
                }
                open = Some(i);
                i += 2;
            }
            b"}}" => {
                if open.take().is_none() {
                    return Err(format!("`}}}}` at byte {i} closes nothing"));
                }
                i += 2;
            }
            _ => i += 1,
        }
    }
    match open {
        Some(at) => Err(format!("`{{{{` at byte {at} is never closed")),
        None => Ok(()),
    }
}

#[test]
fn template_brace_check_catches_mistakes() {
    assert!(check_template_braces("a {{ .b }} {{- c -}}\n").is_ok());
    assert!(check_template_braces("a {{ .b }").is_err());
    assert!(check_template_braces("a {{ {{ .b }}").is_err());
    assert!(check_template_braces("a }} b").is_err());
}

#[test]
fn every_deploy_and_dashboard_file_parses() {
    let root = repo();
    let mut files = files_under(&root.join("deploy"));
    files.extend(files_under(&root.join("dashboards")));
    let mut checked = 0;
    let mut problems = Vec::new();
    for path in &files {
        let rel = path.strip_prefix(&root).expect("under the repo");
        let in_helm_templates = rel.starts_with("deploy/helm")
            && rel.components().any(|c| c.as_os_str() == "templates");
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let result = if in_helm_templates {
            check_template_braces(&read(path))
        } else {
            match ext {
                "json" => serde_json::from_str::<serde_json::Value>(&read(path))
                    .map(drop)
                    .map_err(|e| e.to_string()),
                "toml" => toml::from_str::<toml::Table>(&read(path))
                    .map(drop)
                    .map_err(|e| e.to_string()),
                "yaml" | "yml" => python(
                    "import sys, yaml; list(yaml.safe_load_all(open(sys.argv[1])))",
                    path,
                )
                .map(drop),
                _ => continue,
            }
        };
        checked += 1;
        if let Err(e) = result {
            problems.push(format!("{}: {e}", rel.display()));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        checked >= 20,
        "only {checked} files checked: wrong directory?"
    );
}

/// Environment variables a config may take settings from: cleared for every check, so that
/// the test's own environment cannot make a config pass.
const CONFIG_ENV: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "WHARF_CLUSTER_ADVERTISE",
];

/// `wharf config check` on `text`, with only `env` of [`CONFIG_ENV`] set (what the
/// deployment gives the process).
fn config_check(name: &str, text: &str, env: &[(&str, &str)]) {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("wharf.toml");
    std::fs::write(&file, text).expect("write config");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
    for var in CONFIG_ENV {
        cmd.env_remove(var);
    }
    let out = cmd
        .envs(env.iter().copied())
        .args(["config", "check"])
        .arg(&file)
        .output()
        .expect("run wharf");
    assert!(
        out.status.success(),
        "{name} fails `wharf config check` ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `wharf.toml` key of the first ConfigMap in the YAML file `rel`.
fn configmap_wharf_toml(root: &Path, rel: &str) -> String {
    python(
        "import sys, yaml\n\
         docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d.get('kind') == 'ConfigMap']\n\
         sys.stdout.write(docs[0]['data']['wharf.toml'])",
        &root.join(rel),
    )
    .unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn every_wharf_config_in_deploy_passes_config_check() {
    let root = repo();
    for rel in ["deploy/wharf.toml", "deploy/compose/wharf.toml"] {
        config_check(rel, &read(&root.join(rel)), &[]);
    }

    // The ConfigMaps of the kustomize bases: one replica per volume, and N replicas on a
    // shared S3 bucket, which take the bucket's credentials and their own address from the
    // environment (deploy/kubernetes-replicas/deployment.yaml).
    let replicas_env: &[(&str, &str)] = &[
        ("AWS_ACCESS_KEY_ID", "placeholder-key-id"),
        ("AWS_SECRET_ACCESS_KEY", "placeholder-secret"),
        ("WHARF_CLUSTER_ADVERTISE", "http://10.0.0.5:5000"),
    ];
    for (rel, env) in [
        ("deploy/kubernetes/configmap.yaml", &[][..]),
        ("deploy/kubernetes-replicas/configmap.yaml", replicas_env),
    ] {
        let embedded = configmap_wharf_toml(&root, rel);
        assert!(embedded.contains("data_dir = \"/var/lib/wharf\""), "{rel}");
        config_check(rel, &embedded, env);
    }
    // ... and the Deployment does set them.
    let rel = "deploy/kubernetes-replicas/deployment.yaml";
    let names = python(
        "import sys, yaml\n\
         docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d.get('kind') == 'Deployment']\n\
         c = docs[0]['spec']['template']['spec']['containers'][0]\n\
         sys.stdout.write('\\n'.join(e['name'] for e in c.get('env', [])))",
        &root.join(rel),
    )
    .unwrap_or_else(|e| panic!("{rel}: {e}"));
    for (var, _) in replicas_env {
        assert!(names.lines().any(|n| n == *var), "{rel}: {var} is not set");
    }
    let rel = "deploy/kubernetes-replicas/configmap.yaml";
    let t: toml::Table =
        toml::from_str(&configmap_wharf_toml(&root, rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    assert_eq!(
        t.get("storage")
            .and_then(|s| s.get("backend"))
            .and_then(|b| b.as_str()),
        Some("s3"),
        "{rel}: the replicas share an S3 bucket"
    );
    assert!(
        t.get("cluster").and_then(|c| c.get("peers_dns")).is_some(),
        "{rel}: the replicas find each other through the headless Service"
    );

    // The Helm chart's default config, composed as templates/_helpers.tpl ("wharf.config")
    // composes it: listeners, data_dir and [cache] from the values, then `config`.
    let rel = "deploy/helm/wharf/values.yaml";
    let values = python(
        "import sys, json, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)",
        &root.join(rel),
    )
    .unwrap_or_else(|e| panic!("{rel}: {e}"));
    let v: serde_json::Value = serde_json::from_str(&values).expect("values as JSON");
    let cache = &v["cache"];
    let composed = format!(
        "listen = \"0.0.0.0:{}\"\nadmin_listen = \"0.0.0.0:{}\"\ndata_dir = \"/var/lib/wharf\"\n\n\
         [cache]\nmax_size = {}\nhigh_watermark = {}\nlow_watermark = {}\npin = {}\n\n{}",
        v["service"]["registryPort"],
        v["service"]["metricsPort"],
        cache["maxSize"],
        cache["highWatermark"],
        cache["lowWatermark"],
        cache["pin"],
        v["config"].as_str().expect("values.config is a string"),
    );
    config_check(&format!("{rel} (composed)"), &composed, &[]);
}

#[test]
fn containerd_hosts_files_pull_and_resolve_through_wharf() {
    let dir = repo().join("deploy/containerd");
    let mut seen = Vec::new();
    for path in files_under(&dir) {
        if path.file_name().and_then(|n| n.to_str()) != Some("hosts.toml") {
            continue;
        }
        let registry = path
            .parent()
            .and_then(Path::file_name)
            .and_then(|n| n.to_str())
            .expect("registry directory")
            .to_string();
        let t: toml::Table =
            toml::from_str(&read(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let want = REGISTRIES
            .iter()
            .find(|(name, _)| *name == registry)
            .unwrap_or_else(|| panic!("{}: not a built-in upstream", path.display()))
            .1;
        assert_eq!(
            t.get("server").and_then(|s| s.as_str()),
            Some(want),
            "{registry}: server must be the registry's own URL (the fallback)"
        );
        let hosts = t
            .get("host")
            .and_then(|h| h.as_table())
            .unwrap_or_else(|| panic!("{registry}: no [host.\"...\"] table"));
        assert!(!hosts.is_empty(), "{registry}: no host");
        for (url, host) in hosts {
            assert!(url.contains(":5000"), "{registry}: host {url} is not Wharf");
            let caps: Vec<&str> = host
                .get("capabilities")
                .and_then(|c| c.as_array())
                .unwrap_or_else(|| panic!("{registry}: host {url} has no capabilities"))
                .iter()
                .filter_map(|c| c.as_str())
                .collect();
            for cap in ["pull", "resolve"] {
                assert!(
                    caps.contains(&cap),
                    "{registry}: {url} lacks {cap}: {caps:?}"
                );
            }
        }
        seen.push(registry);
    }
    seen.sort();
    let mut want: Vec<String> = REGISTRIES.iter().map(|(n, _)| n.to_string()).collect();
    want.sort();
    assert_eq!(seen, want, "one hosts.toml per built-in upstream");
}
