//! What the user asks `wharf prefetch` for: image references as people write them, and
//! platforms.
//!
//! Naming rules (the same a `docker pull` user expects, mapped onto Wharf's upstreams):
//! - `<upstream>/<repo>[:<tag>|@<digest>]` where `<upstream>` is a configured upstream's name or
//!   alias (`ghcr.io/org/app:1.2`, `registry.test/e2e/app@sha256:...`).
//! - A first segment that looks like a host (has `.` or `:`, or is `localhost`) but names no
//!   configured upstream is an error, never silently sent to Docker Hub.
//! - Anything else is a Docker Hub short form (`alpine`, `grafana/grafana:11`), sent to the
//!   configured Docker Hub upstream (or, without one, to the default upstream); a single
//!   segment gets `library/` on Docker Hub. No tag means `latest`.

use crate::config::Config;
use crate::oci::{Digest, RepoName, Tag};

/// One image to prefetch, resolved against the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    /// As the user wrote it (for messages).
    pub input: String,
    /// The configured upstream's name (Wharf's `?ns=`).
    pub upstream: String,
    pub repo: String,
    /// A tag or `sha256:...`.
    pub reference: String,
}

impl std::fmt::Display for ImageSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sep = if self.reference.contains(':') {
            '@'
        } else {
            ':'
        };
        write!(f, "{}/{}{sep}{}", self.upstream, self.repo, self.reference)
    }
}

fn looks_like_host(segment: &str) -> bool {
    segment.contains('.') || segment.contains(':') || segment == "localhost"
}

impl ImageSpec {
    /// Resolves `input` against `config`'s upstreams; the error says what is wrong.
    pub fn parse(input: &str, config: &Config) -> Result<ImageSpec, String> {
        let s = input.trim();
        let (name, reference) = match s.split_once('@') {
            Some((name, digest)) => {
                Digest::parse(digest).map_err(|e| format!("{input:?}: {e}"))?;
                (name, digest.to_string())
            }
            None => match s.rsplit_once(':') {
                Some((name, tag)) if !tag.contains('/') => {
                    Tag::parse(tag).map_err(|e| format!("{input:?}: {e}"))?;
                    (name, tag.to_string())
                }
                _ => (s, "latest".to_string()),
            },
        };
        let first = name.split('/').next().unwrap_or_default();
        let (upstream, repo) = match config.upstream(first) {
            Some(u) => {
                let repo = name.split_once('/').map(|(_, r)| r).unwrap_or_default();
                if repo.is_empty() {
                    return Err(format!("{input:?}: no repository after the upstream name"));
                }
                (u, repo.to_string())
            }
            None if looks_like_host(first) && name.contains('/') => {
                let names: Vec<&str> = config.upstreams.iter().map(|u| u.name.as_str()).collect();
                return Err(format!(
                    "{input:?}: no upstream named {first:?} is configured (configured: {})",
                    names.join(", ")
                ));
            }
            None => {
                let hub = config.upstreams.iter().find(|u| u.is_docker_hub());
                let u = hub
                    .or_else(|| config.upstreams.iter().find(|u| u.default))
                    .ok_or_else(|| {
                        format!(
                            "{input:?}: no Docker Hub or default upstream is configured; \
                             write <upstream>/<repo>"
                        )
                    })?;
                (u, name.to_string())
            }
        };
        let mut parsed = RepoName::parse(&repo).map_err(|e| format!("{input:?}: {e}"))?;
        if upstream.is_docker_hub() {
            parsed = parsed.with_library_prefix();
        }
        Ok(ImageSpec {
            input: input.to_string(),
            upstream: upstream.name.clone(),
            repo: parsed.as_str().to_string(),
            reference,
        })
    }
}

/// `os/arch[/variant]`, as `--platform` takes it and an index's `platform` says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl Platform {
    pub fn parse(s: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = s.trim().split('/').collect();
        let ok = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric());
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(ok) {
            return Err(format!(
                "{s:?}: expected os/arch or os/arch/variant, e.g. linux/amd64 or linux/arm/v7"
            ));
        }
        Ok(Platform {
            os: parts[0].to_ascii_lowercase(),
            architecture: parts[1].to_ascii_lowercase(),
            variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
        })
    }

    /// The machine's own platform (what `docker pull` picks by default).
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            "loongarch64" => "loong64",
            other => other,
        };
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: None,
        }
    }

    /// Whether an index entry for `have` serves a request for `self`. A request without a
    /// variant takes any variant (`linux/arm64` matches `linux/arm64/v8`).
    pub fn matches(&self, have: &Platform) -> bool {
        self.os == have.os
            && self.architecture == have.architecture
            && (self.variant.is_none() || self.variant == have.variant)
    }
}

/// Which children of an index to prefetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Platforms {
    All,
    Some(Vec<Platform>),
}

impl Platforms {
    /// `--platform a,b` (comma-separated, repeatable).
    pub fn parse_list<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Platforms, String> {
        let mut out = Vec::new();
        for v in values {
            for p in v.split(',').filter(|p| !p.trim().is_empty()) {
                out.push(Platform::parse(p)?);
            }
        }
        if out.is_empty() {
            return Err("--platform: no platform given".into());
        }
        Ok(Platforms::Some(out))
    }

    /// `None` (an entry without `platform`) is chosen only by `All`.
    pub fn wants(&self, have: Option<&Platform>) -> bool {
        match (self, have) {
            (Platforms::All, _) => true,
            (Platforms::Some(list), Some(h)) => list.iter().any(|p| p.matches(h)),
            (Platforms::Some(_), None) => false,
        }
    }
}

impl std::fmt::Display for Platforms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Platforms::All => f.write_str("all platforms"),
            Platforms::Some(list) => {
                let names: Vec<String> = list.iter().map(Platform::to_string).collect();
                f.write_str(&names.join(","))
            }
        }
    }
}

/// The images of an `images.txt`: one per line; blank lines and `#` comments are skipped.
pub fn read_list(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::from_toml_str(
            r#"
[[upstream]]
name = "docker.io"
url = "https://registry-1.docker.io"
default = true
[[upstream]]
name = "ghcr.io"
url = "https://ghcr.io"
[[upstream]]
name = "localhost:5000"
url = "http://127.0.0.1:5000"
aliases = ["mirror.test"]
"#,
        )
        .expect("config")
    }

    fn parse(s: &str) -> Result<(String, String, String), String> {
        ImageSpec::parse(s, &config()).map(|i| (i.upstream, i.repo, i.reference))
    }

    fn ok(s: &str, up: &str, repo: &str, reference: &str) {
        assert_eq!(
            parse(s),
            Ok((up.into(), repo.into(), reference.into())),
            "{s}"
        );
    }

    #[test]
    fn images_are_named_as_users_write_them() {
        ok("alpine", "docker.io", "library/alpine", "latest");
        ok("alpine:3.20", "docker.io", "library/alpine", "3.20");
        ok("grafana/grafana:11", "docker.io", "grafana/grafana", "11");
        ok("docker.io/alpine", "docker.io", "library/alpine", "latest");
        ok("ghcr.io/org/app:1.2", "ghcr.io", "org/app", "1.2");
        ok("localhost:5000/app:v1", "localhost:5000", "app", "v1");
        ok(
            "mirror.test/team/app",
            "localhost:5000",
            "team/app",
            "latest",
        );
        let d = format!("sha256:{}", "a".repeat(64));
        ok(&format!("ghcr.io/org/app@{d}"), "ghcr.io", "org/app", &d);
        let shown = ImageSpec::parse("alpine", &config()).expect("alpine");
        assert_eq!(shown.to_string(), "docker.io/library/alpine:latest");
        let shown = ImageSpec::parse(&format!("ghcr.io/o/a@{d}"), &config()).expect("digest");
        assert_eq!(shown.to_string(), format!("ghcr.io/o/a@{d}"));
    }

    #[test]
    fn bad_images_say_why() {
        let e = parse("quay.io/org/app:1").expect_err("unknown host");
        assert!(e.contains("no upstream named \"quay.io\""), "{e}");
        assert!(e.contains("docker.io, ghcr.io, localhost:5000"), "{e}");
        assert!(parse("ghcr.io")
            .expect_err("bare")
            .contains("no repository"));
        assert!(parse("ghcr.io/")
            .expect_err("empty")
            .contains("no repository"));
        assert!(parse("Alpine").is_err());
        assert!(parse("alpine@sha256:abc").is_err());
        assert!(parse("alpine:bad tag").is_err());
    }

    #[test]
    fn platforms_match_like_docker() {
        let arm64 = Platform::parse("linux/arm64").expect("p");
        let v8 = Platform::parse("linux/arm64/v8").expect("p");
        assert!(arm64.matches(&v8));
        assert!(!v8.matches(&arm64));
        assert!(!arm64.matches(&Platform::parse("linux/amd64").expect("p")));
        assert_eq!(v8.to_string(), "linux/arm64/v8");
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", "linux/amd 64"] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
        let list = Platforms::parse_list(["linux/amd64,linux/arm64", "linux/arm/v7"]).expect("l");
        assert!(list.wants(Some(&v8)));
        assert!(!list.wants(None));
        assert!(Platforms::All.wants(None));
        assert_eq!(list.to_string(), "linux/amd64,linux/arm64,linux/arm/v7");
        assert!(Platforms::parse_list([""]).is_err());
        assert_eq!(Platform::host().os, "linux");
    }

    #[test]
    fn image_lists_skip_comments_and_blanks() {
        let text = "# warm-up list\nalpine\n\n  ghcr.io/org/app:1 # pinned\n";
        assert_eq!(read_list(text), vec!["alpine", "ghcr.io/org/app:1"]);
    }
}
