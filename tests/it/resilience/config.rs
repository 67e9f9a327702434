//! Validation of the freshness and resilience keys.

use wharf::config::{Config, ConfigError, ConfigErrors};

fn config(upstream_keys: &[&str], top: &str) -> String {
    let mut s = format!("listen = \"127.0.0.1:0\"\ndata_dir = \"/tmp/wharf-unused\"\n{top}\n");
    for (i, keys) in upstream_keys.iter().enumerate() {
        s.push_str(&format!(
            "[[upstream]]\nname = \"up{i}.test\"\nurl = \"http://127.0.0.1:{}\"\n{keys}\n",
            9000 + i
        ));
    }
    s
}

fn errors(toml: &str) -> Vec<ConfigError> {
    match Config::from_toml_str(toml) {
        Ok(_) => panic!("expected errors for:\n{toml}"),
        Err(ConfigErrors(e)) => e,
    }
}

fn keys(errs: &[ConfigError]) -> Vec<&str> {
    errs.iter().map(|e| e.key.as_str()).collect()
}

#[test]
fn every_resilience_key_is_accepted() {
    let all = r#"tag_ttl = "5m"
immutable_tags = ["^v?\\d+\\.\\d+\\.\\d+$", "^sha-[0-9a-f]{7}$"]
stale_while_revalidate = true
stale_if_error = "7d"
negative_ttl = "30s"
connect_timeout = "10s"
response_timeout = "30s"
retries = 2
breaker_failures = 5
breaker_cooldown = "30s""#;
    let toml = config(
        &[all, "negative_ttl = \"0s\"\nretries = 0"],
        "offline = true",
    );
    if let Err(e) = Config::from_toml_str(&toml) {
        panic!("valid config refused:\n{e}\n{toml}");
    }
    let defaults = config(&[""], "offline = false");
    if let Err(e) = Config::from_toml_str(&defaults) {
        panic!("valid config refused:\n{e}\n{defaults}");
    }
}

#[test]
fn an_invalid_immutable_tags_regex_is_an_error_naming_it() {
    let toml = config(
        &[
            r#"immutable_tags = ["^v\\d+$"]"#,
            r#"immutable_tags = ["^latest$", "^v(\\d+$", "^ok$"]"#,
        ],
        "",
    );
    let errs = errors(&toml);
    assert_eq!(
        keys(&errs),
        ["upstream[1].immutable_tags[1]"],
        "only the bad regex is reported: {errs:?}"
    );
}

#[test]
fn bad_resilience_values_are_errors_naming_their_keys() {
    let bad = r#"immutable_tags = "^v1$"
stale_while_revalidate = "yes"
stale_if_error = "a week"
negative_ttl = "soon"
connect_timeout = "10 parsecs"
response_timeout = 30
retries = -1
breaker_failures = "five"
breaker_cooldown = "later""#;
    let errs = errors(&config(&["", bad], "offline = \"yes\""));
    let got = keys(&errs);
    for key in [
        "offline",
        "upstream[1].immutable_tags",
        "upstream[1].stale_while_revalidate",
        "upstream[1].stale_if_error",
        "upstream[1].negative_ttl",
        "upstream[1].connect_timeout",
        "upstream[1].response_timeout",
        "upstream[1].retries",
        "upstream[1].breaker_failures",
        "upstream[1].breaker_cooldown",
    ] {
        assert!(got.contains(&key), "no error for {key}; got {errs:#?}");
    }
    assert!(
        !got.iter().any(|k| k.starts_with("upstream[0]")),
        "upstream[0] is valid: {errs:#?}"
    );
}
