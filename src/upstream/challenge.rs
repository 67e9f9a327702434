//! `WWW-Authenticate` parsing (RFC 9110 §11.6.1) for the upstream token dance.
//!
//! Lenient by design: junk is skipped, unterminated quoted strings run to the end,
//! unquoted values may hold any character but ',' and whitespace (some registries
//! send unquoted URLs). Never panics. Scheme and parameter names are
//! case-insensitive; the first occurrence of a repeated parameter wins. A Bearer
//! challenge without a (non-empty) realm is useless and is dropped.

/// One authentication challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    Basic {
        realm: Option<String>,
    },
    /// Any other scheme, as spelled by the server.
    Other(String),
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(is_ws) {
            self.pos += 1;
        }
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }

    /// A quoted-string body after the opening quote; handles backslash escapes.
    fn quoted(&mut self) -> String {
        let mut out = Vec::new();
        while let Some(b) = self.peek() {
            self.pos += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(next) = self.peek() {
                        out.push(next);
                        self.pos += 1;
                    }
                }
                _ => out.push(b),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Parses the auth-params following a scheme, up to the next challenge.
fn params(c: &mut Cursor<'_>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    loop {
        c.skip_ws();
        match c.peek() {
            None => return out,
            Some(b',') => {
                c.pos += 1;
                continue;
            }
            _ => {}
        }
        let start = c.pos;
        let name = c.take_while(is_tchar);
        if name.is_empty() {
            // Junk: skip to the next comma.
            c.take_while(|b| b != b',');
            continue;
        }
        c.skip_ws();
        if c.peek() != Some(b'=') {
            // A token not followed by '=' starts the next challenge (or is a token68,
            // which no scheme we use carries): hand it back.
            c.pos = start;
            return out;
        }
        c.pos += 1;
        c.skip_ws();
        let value = if c.peek() == Some(b'"') {
            c.pos += 1;
            c.quoted()
        } else {
            text(c.take_while(|b| b != b',' && !is_ws(b)))
        };
        out.push((text(name).to_ascii_lowercase(), value));
    }
}

fn build(scheme: &str, params: &[(String, String)]) -> Option<Challenge> {
    let get = |k: &str| {
        params
            .iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.clone())
    };
    if scheme.eq_ignore_ascii_case("bearer") {
        let realm = get("realm").filter(|r| !r.is_empty())?;
        Some(Challenge::Bearer {
            realm,
            service: get("service"),
            scope: get("scope"),
        })
    } else if scheme.eq_ignore_ascii_case("basic") {
        Some(Challenge::Basic {
            realm: get("realm"),
        })
    } else {
        Some(Challenge::Other(scheme.to_string()))
    }
}

/// Parses a `WWW-Authenticate` header value into its challenges.
pub fn parse(value: &str) -> Vec<Challenge> {
    let mut c = Cursor {
        s: value.as_bytes(),
        pos: 0,
    };
    let mut out = Vec::new();
    while c.peek().is_some() {
        c.take_while(|b| is_ws(b) || b == b',');
        let scheme = c.take_while(is_tchar);
        if scheme.is_empty() {
            if c.peek().is_some() {
                c.pos += 1; // junk byte
            }
            continue;
        }
        let scheme = text(scheme);
        // A token68 (e.g. `Negotiate abc==`) directly after the scheme.
        let save = c.pos;
        c.skip_ws();
        let tok = c.take_while(|b| is_tchar(b) || b == b'/');
        c.take_while(|b| b == b'=');
        c.skip_ws();
        let token68 = !tok.is_empty() && matches!(c.peek(), None | Some(b','));
        if !token68 {
            c.pos = save;
        }
        let ps = if token68 { Vec::new() } else { params(&mut c) };
        if let Some(ch) = build(&scheme, &ps) {
            out.push(ch);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(realm: &str, service: Option<&str>, scope: Option<&str>) -> Challenge {
        Challenge::Bearer {
            realm: realm.into(),
            service: service.map(Into::into),
            scope: scope.map(Into::into),
        }
    }

    #[test]
    fn docker_hub() {
        let v = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#;
        assert_eq!(
            parse(v),
            vec![bearer(
                "https://auth.docker.io/token",
                Some("registry.docker.io"),
                Some("repository:library/alpine:pull")
            )]
        );
    }

    #[test]
    fn ghcr_and_case_and_spacing() {
        let v = r#"bearer  REALM = "https://ghcr.io/token" , service="ghcr.io",scope="repository:user/image:pull""#;
        assert_eq!(
            parse(v),
            vec![bearer(
                "https://ghcr.io/token",
                Some("ghcr.io"),
                Some("repository:user/image:pull")
            )]
        );
    }

    #[test]
    fn basic() {
        assert_eq!(
            parse(r#"Basic realm="Registry Realm""#),
            vec![Challenge::Basic {
                realm: Some("Registry Realm".into())
            }]
        );
        assert_eq!(parse("Basic"), vec![Challenge::Basic { realm: None }]);
    }

    #[test]
    fn several_challenges() {
        let v = r#"Basic realm="a, b", Bearer realm="https://x/token",service=x, Negotiate abc==, Digest realm="d", nonce="n""#;
        assert_eq!(
            parse(v),
            vec![
                Challenge::Basic {
                    realm: Some("a, b".into())
                },
                bearer("https://x/token", Some("x"), None),
                Challenge::Other("Negotiate".into()),
                Challenge::Other("Digest".into()),
            ]
        );
    }

    #[test]
    fn escapes_and_unquoted_urls() {
        let v = r#"Bearer realm="https://a/\"t\"\\",scope="repository:a/b:pull,push""#;
        assert_eq!(
            parse(v),
            vec![bearer(
                r#"https://a/"t"\"#,
                None,
                Some("repository:a/b:pull,push")
            )]
        );
        assert_eq!(
            parse("Bearer realm=https://r.example/token,service=r.example"),
            vec![bearer("https://r.example/token", Some("r.example"), None)]
        );
        // First occurrence wins.
        assert_eq!(
            parse(r#"Bearer realm="a",realm="b""#),
            vec![bearer("a", None, None)]
        );
    }

    #[test]
    fn bearer_without_realm_is_dropped() {
        assert_eq!(parse(r#"Bearer service="x""#), vec![]);
        assert_eq!(parse(r#"Bearer realm="""#), vec![]);
        assert_eq!(
            parse(r#"Bearer service="x", Basic realm="y""#),
            vec![Challenge::Basic {
                realm: Some("y".into())
            }]
        );
    }

    #[test]
    fn wharfs_own_challenges_parse_back_with_no_injected_parameter() {
        let evil = "repository:x\",realm=\"http://evil/token:pull";
        let c = crate::auth::challenge("http://w:5000/token", Some(evil));
        let parsed = parse(c.to_str().expect("ascii"));
        assert_eq!(
            parsed,
            vec![Challenge::Bearer {
                realm: "http://w:5000/token".into(),
                service: Some("wharf".into()),
                scope: Some(evil.into()),
            }]
        );
    }

    #[test]
    fn garbage_never_panics() {
        for v in [
            "",
            ",,,",
            "\"",
            "=",
            "Bearer realm=\"unterminated",
            "Bearer realm=",
            "Bearer =x",
            "@@@ Bearer realm=\"r\"",
            "🦀 Bearer realm=\"🦀\"",
            "Bearer realm=\"x\\",
            "\0\0\0",
        ] {
            let _ = parse(v);
        }
        assert_eq!(
            parse("Bearer realm=\"unterminated"),
            vec![bearer("unterminated", None, None)]
        );
        assert_eq!(
            parse("@@@ Bearer realm=\"🦀\""),
            vec![bearer("🦀", None, None)]
        );
    }
}
