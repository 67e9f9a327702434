//! What a client (or Wharf itself) authenticates with at an upstream: nothing, or a user
//! name and password. `Debug` never shows the password; [`Credentials::hash`] is the identity
//! used in cache keys and (keyed again) on disk.

use base64::Engine;
use http::HeaderValue;
use sha2::{Digest as _, Sha256};

/// What a request authenticates with upstream.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    Anonymous,
    Basic { user: String, password: String },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { user, .. } => write!(f, "Basic({user}, <redacted>)"),
        }
    }
}

impl Credentials {
    pub fn basic(user: &str, password: &str) -> Credentials {
        Credentials::Basic {
            user: user.to_string(),
            password: password.to_string(),
        }
    }

    pub fn basic_header(&self) -> Option<HeaderValue> {
        match self {
            Credentials::Anonymous => None,
            Credentials::Basic { user, password } => {
                let raw = format!("{user}:{password}");
                let enc = base64::engine::general_purpose::STANDARD.encode(raw);
                let mut v = HeaderValue::from_str(&format!("Basic {enc}")).ok()?;
                v.set_sensitive(true);
                Some(v)
            }
        }
    }

    /// A stable, non-reversible identity for cache keys.
    pub fn hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        match self {
            Credentials::Anonymous => h.update(b"anonymous"),
            Credentials::Basic { user, password } => {
                // Length-prefixed, so no two (user, password) pairs share an encoding.
                h.update(b"basic");
                h.update((user.len() as u64).to_be_bytes());
                h.update(user.as_bytes());
                h.update((password.len() as u64).to_be_bytes());
                h.update(password.as_bytes());
            }
        }
        h.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_hash_differs_by_password_and_never_shows_it() {
        let a = Credentials::basic("u", "p1");
        let b = Credentials::basic("u", "p2");
        assert_ne!(a.hash(), b.hash());
        assert_ne!(a.hash(), Credentials::Anonymous.hash());
        assert!(!format!("{a:?}").contains("p1"));
    }

    #[test]
    fn basic_header_is_base64_of_user_colon_password() {
        let h = Credentials::basic("alice", "s3cret")
            .basic_header()
            .expect("header");
        assert_eq!(h.to_str().expect("ascii"), "Basic YWxpY2U6czNjcmV0");
        assert!(h.is_sensitive());
        assert!(Credentials::Anonymous.basic_header().is_none());
    }
}
