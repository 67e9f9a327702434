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

#[test]
fn url_rules() {
    for (url, needle) in [
        ("registry.example", "absolute"),
        ("https://", "not a valid URL"),
        ("https://user:pw@a.example", "credentials"),
        ("https://a.example/sub", "path must be empty"),
        ("https://a.example?x", "query"),
        ("gopher://a.example", "scheme"),
    ] {
        let errs = errors(&format!("[[upstream]]\nurl = {url:?}\n"));
        assert!(has(&errs, "upstream[0].url", needle), "{url}: {errs:?}");
    }
    let errs = errors("[[upstream]]\nname = \"x\"\n");
    assert!(has(&errs, "upstream[0].url", "required"));
    let c = Config::from_toml_str("[[upstream]]\nurl = \"HTTP://a.example\"\n").unwrap();
    assert_eq!(c.upstreams[0].url.to_string(), "http://a.example/");
}

#[test]
fn name_and_alias_rules() {
    let errs = errors(
        r#"
[[upstream]]
name = "a"
url = "https://a.example"
aliases = ["b", "has space", ""]
[[upstream]]
name = "A"
url = "https://b.example"
aliases = ["x/y", "B"]
"#,
    );
    assert!(
        has(&errs, "upstream[0].aliases[1]", "whitespace"),
        "{errs:?}"
    );
    assert!(has(&errs, "upstream[0].aliases[2]", "empty"));
    assert!(has(
        &errs,
        "upstream[1].name",
        "already used by upstream[0].name"
    ));
    assert!(has(&errs, "upstream[1].aliases[0]", "'/'"));
    assert!(has(
        &errs,
        "upstream[1].aliases[1]",
        "already used by upstream[0].aliases[0]"
    ));
    // A defaulted name collides too.
    let errs = errors("[[upstream]]\nurl = \"https://a.example\"\n[[upstream]]\nname = \"a.example\"\nurl = \"https://b.example\"\n");
    assert!(has(&errs, "upstream[1].name", "already used"));
}

#[test]
fn default_resolution() {
    let two =
        "[[upstream]]\nurl = \"https://a.example\"\n[[upstream]]\nurl = \"https://b.example\"\n";
    let c = Config::from_toml_str(two).unwrap();
    assert!(
        c.default_upstream().is_none(),
        "no default among several unless marked"
    );
    let c = Config::from_toml_str(&format!("{two}default = true\n")).unwrap();
    assert_eq!(c.default_upstream().unwrap().name, "b.example");
    assert!(!c.upstreams[0].default);
    let errs = errors("upstream = []\n");
    assert!(has(&errs, "upstream", "at least one"));
}

#[test]
fn credentials_and_ca_file() {
    let errs = errors("[[upstream]]\nurl = \"https://a\"\nusername = \"u\"\n");
    assert!(has(&errs, "upstream[0].password", "required"));
    let errs = errors("[[upstream]]\nurl = \"https://a\"\npassword = \"p\"\n");
    assert!(has(&errs, "upstream[0].username", "required"));

    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("x.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    for (path, needle) in [
        (dir.path().join("missing.pem"), "cannot read"),
        (dir.path().to_path_buf(), "not a file"),
        (not_pem, "no PEM certificate"),
    ] {
        let errs = errors(&format!(
            "[[upstream]]\nurl = \"https://a\"\nca_file = {path:?}\n"
        ));
        assert!(has(&errs, "upstream[0].ca_file", needle), "{errs:?}");
    }
}

#[test]
fn tag_ttl_and_sizes_in_config() {
    let errs = errors("[[upstream]]\nurl = \"https://a\"\ntag_ttl = \"5\"\n");
    assert!(has(&errs, "upstream[0].tag_ttl", "duration"));
    let errs = errors("[cache]\nmax_size = \"10XB\"\n");
    assert!(has(&errs, "cache.max_size", "10XB"));
    let errs = errors("[cache]\nmax_size = -1\n");
    assert!(has(&errs, "cache.max_size", "greater than 0"));
    let errs = errors("[cache]\nmax_size = 1.5\n");
    assert!(has(&errs, "cache.max_size", "a float"));
}

#[test]
fn load_reports_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let ConfigErrors(errs) = Config::load(&missing).unwrap_err();
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].key, missing.display().to_string());
    assert!(errs[0].problem.contains("cannot read"));

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[upstream]\n").unwrap();
    let ConfigErrors(errs) = Config::load(&bad).unwrap_err();
    assert_eq!(errs[0].key, bad.display().to_string());

    let good = dir.path().join("good.toml");
    std::fs::write(&good, "listen = \"[::1]:5002\"\n").unwrap();
    assert_eq!(Config::load(&good).unwrap().listen.port(), 5002);
}

#[test]
fn cache_pins_and_watermarks() {
    let c = Config::from_toml_str(
        "[cache]\nmax_size = \"1GiB\"\nhigh_watermark = 0.95\nlow_watermark = 0.5\npin = [\"docker.io/library/alpine:3.*\"]\n",
    )
    .unwrap();
    assert_eq!(c.cache.high_watermark, 0.95);
    let pin = &c.cache.pin[0];
    assert_eq!(
        (pin.upstream.as_str(), pin.repo.as_str()),
        ("docker.io", "library/alpine")
    );
    assert!(pin.matches_tag("3.19") && pin.matches_tag("3.") && !pin.matches_tag("edge"));
    let e = Config::from_toml_str(
        "[cache]\nhigh_watermark = 0.5\nlow_watermark = 0.6\npin = [\"nocolon\"]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("cache.low_watermark"), "{e}");
    assert!(e.contains("cache.pin[0]"), "{e}");
}

#[test]
fn connection_limits_are_validated() {
    let c = Config::from_toml_str(
        "max_connections = 3\nheader_read_timeout = \"2s\"\nmax_connections_per_ip = 2\n\
         admin_max_connections = 5\nidle_timeout = \"3s\"\nrequest_body_timeout = \"4s\"\n\
         http2_keepalive_interval = \"6s\"\nhttp2_keepalive_timeout = \"7s\"\n",
    )
    .unwrap();
    let l = &c.connections;
    assert_eq!(l.max_connections, 3);
    assert_eq!(l.header_read_timeout, Duration::from_secs(2));
    assert_eq!(l.max_connections_per_ip, 2);
    assert_eq!(l.admin_max_connections, 5);
    assert_eq!(l.idle_timeout, Duration::from_secs(3));
    assert_eq!(l.request_body_timeout, Duration::from_secs(4));
    assert_eq!(l.http2_keepalive_interval, Duration::from_secs(6));
    assert_eq!(l.http2_keepalive_timeout, Duration::from_secs(7));
    let d = Config::from_toml_str("").unwrap().connections;
    assert_eq!(d.max_connections, 10_000);
    assert_eq!(d.header_read_timeout, Duration::from_secs(30));
    assert_eq!(d.max_connections_per_ip, 256);
    assert_eq!(d.admin_max_connections, 64);
    assert_eq!(d.idle_timeout, Duration::from_secs(60));
    assert_eq!(d.request_body_timeout, Duration::from_secs(30));
    assert_eq!(d.http2_keepalive_interval, Duration::from_secs(30));
    assert_eq!(d.http2_keepalive_timeout, Duration::from_secs(20));
    let errs = errors(
        "max_connections = 0\nheader_read_timeout = \"0s\"\nmax_connections_per_ip = 0\n\
         admin_max_connections = 0\nidle_timeout = \"0s\"\nrequest_body_timeout = \"0s\"\n\
         http2_keepalive_interval = \"0s\"\nhttp2_keepalive_timeout = \"0s\"\n",
    );
    for key in [
        "max_connections",
        "header_read_timeout",
        "max_connections_per_ip",
        "admin_max_connections",
        "idle_timeout",
        "request_body_timeout",
        "http2_keepalive_interval",
        "http2_keepalive_timeout",
    ] {
        assert!(has(&errs, key, "must be greater than 0"), "{key}: {errs:?}");
    }
    let errs = errors("max_connections = -1\nmax_connections_per_ip = \"many\"\n");
    assert!(has(&errs, "max_connections", "whole number"), "{errs:?}");
    assert!(
        has(&errs, "max_connections_per_ip", "whole number"),
        "{errs:?}"
    );
    let errs = errors("idle_timeout = 5\nrequest_body_timeout = \"soon\"\n");
    assert!(has(&errs, "idle_timeout", "string"), "{errs:?}");
    assert!(has(&errs, "request_body_timeout", "duration"), "{errs:?}");
}

#[test]
fn push_and_referrers_keys() {
    let c = Config::from_toml_str("[[upstream]]\nurl = \"https://a\"\n").unwrap();
    let u = &c.upstreams[0];
    assert!(!u.allow_push, "push is opt-in");
    assert_eq!(u.referrers_ttl, Duration::from_secs(60));
    let c = Config::from_toml_str(
        "[[upstream]]\nurl = \"https://a\"\nallow_push = true\nreferrers_ttl = \"0s\"\n",
    )
    .unwrap();
    assert!(c.upstreams[0].allow_push);
    assert_eq!(c.upstreams[0].referrers_ttl, Duration::ZERO);
    let errs = errors(
        "[[upstream]]\nurl = \"https://a\"\nallow_push = \"yes\"\nreferrers_ttl = \"soon\"\n",
    );
    assert!(has(&errs, "upstream[0].allow_push", "true or false"));
    assert!(has(&errs, "upstream[0].referrers_ttl", "duration"));
}
