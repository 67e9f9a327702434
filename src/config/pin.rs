//! `cache.pin`: images whose blobs are never evicted.

/// `<upstream>/<repo>:<tag glob>` from `cache.pin`.
#[derive(Debug, Clone, PartialEq)]
pub struct Pin {
    pub upstream: String,
    pub repo: String,
    /// `*` matches any run of characters.
    pub tag_glob: String,
}

impl Pin {
    /// Parses `<upstream>/<repo>:<tag glob>`.
    pub fn parse(s: &str) -> Result<Pin, String> {
        let (image, tag) = s
            .rsplit_once(':')
            .filter(|(i, _)| i.contains('/'))
            .ok_or_else(|| format!("expected \"<upstream>/<repo>:<tag pattern>\", got {s:?}"))?;
        let (upstream, repo) = image
            .split_once('/')
            .ok_or_else(|| format!("expected an upstream name before the repository in {s:?}"))?;
        if upstream.is_empty() || repo.is_empty() || tag.is_empty() {
            return Err(format!(
                "expected \"<upstream>/<repo>:<tag pattern>\", got {s:?}"
            ));
        }
        Ok(Pin {
            upstream: upstream.to_string(),
            repo: repo.to_string(),
            tag_glob: tag.to_string(),
        })
    }

    pub fn matches_tag(&self, tag: &str) -> bool {
        glob(self.tag_glob.as_bytes(), tag.as_bytes())
    }
}

/// `*`-only glob match.
fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| glob(rest, &s[i..])),
        Some((c, rest)) => s.first() == Some(c) && glob(rest, &s[1..]),
    }
}
