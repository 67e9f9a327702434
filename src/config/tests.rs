//! Tests of config parsing and validation.

use super::*;

fn errors(toml: &str) -> Vec<ConfigError> {
    match Config::from_toml_str(toml) {
        Ok(c) => panic!("expected errors, got {c:?}"),
        Err(ConfigErrors(e)) => e,
    }
}

fn has(errs: &[ConfigError], key: &str, needle: &str) -> bool {
    errs.iter()
        .any(|e| e.key == key && e.problem.contains(needle))
}

#[test]
fn embedded_default_is_valid() {
    let c = Config::embedded_default();
    assert_eq!(c.listen, "0.0.0.0:5000".parse().unwrap());
    assert_eq!(c.data_dir, PathBuf::from("./wharf-data"));
    assert_eq!(c.cache.max_size, 53_687_091_200);
    assert_eq!(c.fill.timeout, Duration::from_secs(3600));
    assert_eq!(c.fill.idle_timeout, Duration::from_secs(60));
    assert_eq!(c.fill.max_concurrent, 64);
    let names: Vec<&str> = c.upstreams.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "docker.io",
            "ghcr.io",
            "quay.io",
            "registry.k8s.io",
            "gcr.io",
            "mcr.microsoft.com",
            "public.ecr.aws"
        ]
    );
    let hub = c.default_upstream().unwrap();
    assert_eq!(hub.name, "docker.io");
    assert!(hub.is_docker_hub());
    assert_eq!(hub.url.scheme_str(), Some("https"));
    assert_eq!(hub.url.host(), Some("registry-1.docker.io"));
    assert_eq!(hub.tag_ttl, Duration::from_secs(300));
    assert_eq!(c.upstreams.iter().filter(|u| u.default).count(), 1);
    assert_eq!(c.upstream("INDEX.docker.io").unwrap().name, "docker.io");
    assert_eq!(c.upstream("ghcr.io").unwrap().url.host(), Some("ghcr.io"));
    assert!(!c.upstream("ghcr.io").unwrap().is_docker_hub());
    assert!(c.upstream("example.com").is_none());
}

#[test]
fn example_is_valid_and_documents_every_key() {
    let c = Config::from_toml_str(EXAMPLE).unwrap();
    assert_eq!(c.default_upstream().unwrap().name, "docker.io");
    for key in [
        "listen",
        "max_connections",
        "max_connections_per_ip",
        "admin_max_connections",
        "header_read_timeout",
        "idle_timeout",
        "request_body_timeout",
        "http2_keepalive_interval",
        "http2_keepalive_timeout",
        "data_dir",
        "max_size",
        "timeout",
        "idle_timeout",
        "name",
        "url",
        "default",
        "aliases",
        "ca_file",
        "tag_ttl",
        "referrers_ttl",
        "allow_push",
        "username",
        "password",
    ] {
        assert!(EXAMPLE.contains(&format!("{key} =")), "{key}");
    }
}

#[test]
fn empty_file_uses_defaults_and_builtin_upstreams() {
    let c = Config::from_toml_str("").unwrap();
    assert_eq!(c, Config::embedded_default());
    let c = Config::from_toml_str("[cache]\nmax_size = 1000\n").unwrap();
    assert_eq!(c.cache.max_size, 1000);
    assert_eq!(c.upstreams.len(), 7);
}

#[test]
fn full_upstream_and_name_defaulting() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let toml = format!(
        r#"
listen = "127.0.0.1:5001"
data_dir = "/tmp/w"
[cache]
max_size = "1.5KiB"
[fill]
timeout = "10m"
idle_timeout = "5s"
[[upstream]]
url = "https://Registry.Example:8443/"
aliases = ["reg"]
ca_file = {ca:?}
tag_ttl = "0s"
username = "u"
password = "p"
"#
    );
    let c = Config::from_toml_str(&toml).unwrap();
    assert_eq!(c.listen, "127.0.0.1:5001".parse().unwrap());
    assert_eq!(c.cache.max_size, 1536);
    assert_eq!(c.fill.timeout, Duration::from_secs(600));
    let u = &c.upstreams[0];
    assert_eq!(u.name, "registry.example:8443");
    assert!(u.default, "a single upstream is the default");
    assert_eq!(u.url.to_string(), "https://Registry.Example:8443/");
    assert_eq!(u.tag_ttl, Duration::ZERO);
    assert_eq!(u.ca_file.as_deref(), Some(ca.as_path()));
    assert!(u.matches("REG") && u.matches("Registry.example:8443") && !u.matches("x"));
    assert!(!format!("{u:?}").contains("\"p\""), "password redacted");
}

#[test]
fn several_problems_at_once() {
    let errs = errors(
        r#"
listen = "nowhere"
[cache]
max_size = "0"
[fill]
timeout = "soon"
idle_timeout = "0s"
max_concurrent = 0
[[upstream]]
name = "a"
url = "https://a.example"
default = true
[[upstream]]
name = "b"
url = "http://b.example/v2?x=1"
default = true
[[upstream]]
url = "ftp://c.example"
"#,
    );
    assert!(has(&errs, "listen", "nowhere"), "{errs:?}");
    assert!(has(&errs, "cache.max_size", "greater than 0"));
    assert!(has(&errs, "fill.timeout", "soon"));
    assert!(has(&errs, "fill.idle_timeout", "greater than 0"));
    assert!(has(&errs, "fill.max_concurrent", "greater than 0"));
    assert!(has(&errs, "upstream[1].url", "query"));
    assert!(has(&errs, "upstream[1].url", "path must be empty"));
    assert!(has(&errs, "upstream[1].default", "upstream[0] already is"));
    assert!(has(
        &errs,
        "upstream[2].url",
        "scheme must be http or https, got \"ftp\""
    ));
    let shown = ConfigErrors(errs.clone()).to_string();
    assert_eq!(shown.lines().count(), errs.len());
    assert!(shown.contains("upstream[2].url: scheme must be http or https, got \"ftp\""));
}

#[test]
fn unknown_keys_are_reported_with_paths() {
    let errs = errors(
        r#"
lisen = "x"
[cache]
max_szie = "1GiB"
[[upstream]]
url = "https://a.example"
[[upstream]]
url = "https://b.example"
tag_tll = "5m"
[extra]
x = 1
"#,
    );
    let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
    for k in ["lisen", "cache.max_szie", "upstream[1].tag_tll", "extra"] {
        assert!(keys.contains(&k), "{k} in {keys:?}");
    }
    assert!(errs.iter().all(|e| e.problem == "unknown key"));
}

#[test]
fn toml_syntax_and_type_errors() {
    let errs = errors("listen = \n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].problem.contains("line 1"), "{}", errs[0].problem);
    let errs = errors("listen = 5000\ndata_dir = true\n[[upstream]]\nurl = 1\ndefault = \"yes\"\naliases = \"x\"\n");
    assert!(
        has(&errs, "listen", "expected a string, got an integer"),
        "{errs:?}"
    );
    assert!(has(&errs, "data_dir", "expected a string"));
    assert!(has(&errs, "upstream[0].url", "expected a string"));
    assert!(has(&errs, "upstream[0].default", "expected true or false"));
    assert!(has(&errs, "upstream[0].aliases", "expected an array"));
    let errs = errors("[[upstream]]\nurl = \"https://a\"\naliases = [\"ok\", 3]\n");
    assert!(has(&errs, "upstream[0].aliases[1]", "expected a string"));
}

#[path = "tests_upstream.rs"]
mod upstream_keys;
