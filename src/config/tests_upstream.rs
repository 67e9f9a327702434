//! Upstream keys, limits and the remaining sections.

use super::super::*;
use super::{errors, has};

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

#[test]
fn repository_rules_are_checked_and_kept() {
    let errs = errors(
        r#"
[[upstream]]
url = "https://a.example"
allow = ["library/*", "Library/x", "a/***"]
deny = ["ok/**", "", "x y", 7]
[[upstream]]
url = "https://b.example"
allow = []
"#,
    );
    assert!(
        has(&errs, "upstream[0].allow[1]", "\"Library/x\""),
        "{errs:?}"
    );
    assert!(has(&errs, "upstream[0].allow[2]", "'***'"), "{errs:?}");
    assert!(has(&errs, "upstream[0].deny[1]", "empty"), "{errs:?}");
    assert!(has(&errs, "upstream[0].deny[2]", "' '"), "{errs:?}");
    assert!(has(&errs, "upstream[0].deny[3]", "string"), "{errs:?}");
    assert!(
        has(&errs, "upstream[1].allow", "refuse every repository"),
        "{errs:?}"
    );
    assert!(
        !errs.iter().any(|e| e.key == "upstream[0].allow[0]"),
        "{errs:?}"
    );
    let c = Config::from_toml_str(
        "[[upstream]]\nurl = \"https://a.example\"\nallow = [\"library/*\"]\ndeny = [\"library/evil*\"]\n",
    )
    .unwrap();
    let rules = &c.upstreams[0].rules;
    assert_eq!(rules.check("library/alpine"), Ok(()));
    assert!(rules.check("library/evil").is_err());
    assert!(rules.check("other/app").is_err());
    let open = Config::from_toml_str("[[upstream]]\nurl = \"https://a.example\"\n").unwrap();
    assert!(
        open.upstreams[0].rules.is_empty(),
        "no keys: everything is served"
    );
}

#[test]
fn quotas_and_idle_expiry_are_optional_and_checked() {
    let c = Config::from_toml_str(
        "[cache]\nmax_idle = \"30d\"\n[[upstream]]\nurl = \"https://a.example\"\nmax_size = \"20GiB\"\n[[upstream]]\nurl = \"https://b.example\"\n",
    )
    .unwrap();
    assert_eq!(
        c.cache.max_idle,
        Some(std::time::Duration::from_secs(30 * 86_400))
    );
    assert_eq!(c.upstreams[0].max_size, Some(20 << 30));
    assert_eq!(c.upstreams[1].max_size, None, "no quota unless set");
    let off = Config::from_toml_str("[[upstream]]\nurl = \"https://a.example\"\n").unwrap();
    assert_eq!(off.cache.max_idle, None, "off by default");
    let errs = errors(
        "[cache]\nmax_idle = \"0s\"\n[[upstream]]\nurl = \"https://a.example\"\nmax_size = \"lots\"\n",
    );
    assert!(has(&errs, "cache.max_idle", "greater than 0"), "{errs:?}");
    assert!(has(&errs, "upstream[0].max_size", ""), "{errs:?}");
}
