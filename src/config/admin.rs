//! `[admin]`: the bearer token of the admin API (`token_file`).
//!
//! The token is read when the configuration is loaded, so that a bad file is a problem named
//! by its key (`admin.token_file: ...`) before anything listens. A file others can read, or
//! a token shorter than [`MIN_TOKEN_LEN`] characters, is refused. The `wharf cache`
//! commands read their `--token-file` with the same checks ([`read_token`]).

use super::raw::{self, RawAdmin};
use super::Problems;
use std::fmt;
use std::path::{Path, PathBuf};

/// The shortest token accepted.
pub const MIN_TOKEN_LEN: usize = 32;

/// `[admin]`, validated.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AdminConfig {
    /// The admin API's bearer token; `None`: the API is off (its paths answer 404).
    pub token: Option<AdminToken>,
}

/// A bearer token; its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` is this token, in time independent of where they differ.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        // HMACs of one message under each side as the key, compared by `hmac::verify` in
        // constant time: equal lengths, so the time says nothing of the token's length either.
        use ring::hmac;
        const MSG: &[u8] = b"wharf admin token";
        let expected = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, self.0.as_bytes()), MSG);
        let key = hmac::Key::new(hmac::HMAC_SHA256, candidate);
        hmac::verify(&key, MSG, expected.as_ref()).is_ok()
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// Checks a token's text (trailing newline and spaces trimmed).
pub fn parse_token(text: &str) -> Result<AdminToken, String> {
    let t = text.trim();
    if t.chars().count() < MIN_TOKEN_LEN {
        return Err(format!(
            "the token is {} characters long; use at least {MIN_TOKEN_LEN} random characters \
             (e.g. `openssl rand -hex 32`)",
            t.chars().count()
        ));
    }
    if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the token must be one line without spaces".to_string());
    }
    Ok(AdminToken(t.to_string()))
}

/// Reads a token file: refused when others may read it (mode `o+r`) or the token is short.
pub fn read_token(path: &Path) -> Result<AdminToken, String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.permissions().mode() & 0o004 != 0 {
        return Err(format!(
            "{} is world-readable; `chmod o-r` it (e.g. mode 0600 or 0640)",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_token(&text).map_err(|e| format!("{}: {e}", path.display()))
}

pub(super) fn admin(p: &mut Problems, r: Option<RawAdmin>) -> AdminConfig {
    let Some(r) = r else {
        return AdminConfig::default();
    };
    let key = "admin.token_file";
    let token = raw::string(p, key, r.token_file.as_ref()).and_then(|f| {
        read_token(&PathBuf::from(f))
            .map_err(|e| p.push(key, e))
            .ok()
    });
    AdminConfig { token }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn file(dir: &Path, text: &str, mode: u32) -> PathBuf {
        let path = dir.join("token");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn a_short_token_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_token(&file(dir.path(), "short-token\n", 0o600)).unwrap_err();
        assert!(
            e.contains("11 characters") && e.contains("at least 32"),
            "{e}"
        );
        assert!(read_token(&file(dir.path(), &"x".repeat(32), 0o600)).is_ok());
    }

    #[test]
    fn a_world_readable_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_token(&file(dir.path(), &"x".repeat(40), 0o644)).unwrap_err();
        assert!(e.contains("world-readable"), "{e}");
        assert!(read_token(&file(dir.path(), &"x".repeat(40), 0o640)).is_ok());
    }

    #[test]
    fn the_config_error_names_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(dir.path(), "short", 0o600);
        let toml = format!("[admin]\ntoken_file = {:?}\n", path.display().to_string());
        let errs = crate::config::Config::from_toml_str(&toml).unwrap_err().0;
        assert!(
            errs.iter()
                .any(|e| e.key == "admin.token_file" && e.problem.contains("at least 32")),
            "{errs:?}"
        );
    }

    #[test]
    fn the_token_matches_only_itself_and_its_debug_hides_it() {
        let t = parse_token(&format!("{}\n", "a".repeat(40))).unwrap();
        assert!(t.matches("a".repeat(40).as_bytes()));
        assert!(!t.matches("a".repeat(39).as_bytes()));
        assert!(!t.matches(format!("{}b", "a".repeat(39)).as_bytes()));
        assert!(!format!("{t:?}").contains("aaaa"));
    }
}
