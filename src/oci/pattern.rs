//! Repository rules of an upstream (`allow`, `deny`): which repositories Wharf serves from it.
//!
//! The pattern language: `*` matches any run of characters except `/`, `**` any run
//! including `/`; every other character matches itself. Patterns match the whole repository
//! name as the upstream knows it (after Docker Hub's `library/` normalisation).
//!
//! Invariants:
//! - A repository a `deny` pattern matches is refused, whatever `allow` says (deny wins).
//! - With `allow` present, a repository no `allow` pattern matches is refused.
//! - A refusal happens before any cache read or upstream request for the repository (the
//!   registry checks when it resolves a request's target).
//! - A pattern that could never match a repository name (empty, upper case, characters no
//!   name has, `***`, a leading or trailing `/`) is a configuration error.

/// One compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Lit(u8),
    /// `*`: any run without `/`.
    Star,
    /// `**`: any run.
    Stars,
}

impl Pattern {
    /// Compiles a pattern; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        if text.is_empty() {
            return Err("a pattern must not be empty".into());
        }
        if text.starts_with('/') || text.ends_with('/') {
            return Err("a pattern must not start or end with '/'".into());
        }
        let b = text.as_bytes();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'*' => {
                    let run = b[i..].iter().take_while(|&&c| c == b'*').count();
                    match run {
                        1 => tokens.push(Token::Star),
                        2 => tokens.push(Token::Stars),
                        _ => return Err("'***' is not a pattern: use '*' or '**'".into()),
                    }
                    i += run;
                }
                c if c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-/".contains(&c) => {
                    tokens.push(Token::Lit(c));
                    i += 1;
                }
                c => {
                    return Err(format!(
                        "{:?} cannot appear in a repository name (lower-case letters, digits, '.', '_', '-', '/', and '*' or '**')",
                        c as char
                    ))
                }
            }
        }
        Ok(Pattern {
            text: text.to_string(),
            tokens,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the whole of `name` matches (dynamic programming: linear in the pattern
    /// times the name, whatever the stars).
    pub fn matches(&self, name: &str) -> bool {
        let n = name.as_bytes();
        // at[j]: the tokens so far can match n[..j].
        let mut at = vec![false; n.len() + 1];
        at[0] = true;
        for t in &self.tokens {
            let mut next = vec![false; n.len() + 1];
            match t {
                Token::Lit(c) => {
                    for j in 0..n.len() {
                        next[j + 1] = at[j] && n[j] == *c;
                    }
                }
                Token::Star | Token::Stars => {
                    let mut reach = false;
                    for j in 0..=n.len() {
                        reach = reach || at[j];
                        next[j] = reach;
                        if matches!(t, Token::Star) && j < n.len() && n[j] == b'/' {
                            reach = false;
                        }
                    }
                }
            }
            at = next;
        }
        at[n.len()]
    }
}

/// Why a repository is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A `deny` pattern matched.
    Denied(String),
    /// `allow` is set and none matched.
    NotAllowed,
}

impl Refusal {
    /// The `rule` label of `wharf_rule_refusals_total`.
    pub fn rule(&self) -> &'static str {
        match self {
            Refusal::Denied(_) => "deny",
            Refusal::NotAllowed => "allow",
        }
    }

    /// The message a client sees.
    pub fn message(&self, upstream: &str, repo: &str) -> String {
        match self {
            Refusal::Denied(p) => {
                format!("repository {repo} is refused by {upstream}'s deny rule {p:?}")
            }
            Refusal::NotAllowed => {
                format!("repository {repo} is not in {upstream}'s allow rules")
            }
        }
    }
}

/// An upstream's rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    /// `None`: every repository not denied is served.
    pub allow: Option<Vec<Pattern>>,
    pub deny: Vec<Pattern>,
}

impl Rules {
    /// Whether `repo` may be served (deny wins over allow).
    pub fn check(&self, repo: &str) -> Result<(), Refusal> {
        if let Some(p) = self.deny.iter().find(|p| p.matches(repo)) {
            return Err(Refusal::Denied(p.text.clone()));
        }
        match &self.allow {
            Some(allow) if !allow.iter().any(|p| p.matches(repo)) => Err(Refusal::NotAllowed),
            _ => Ok(()),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.allow.is_none() && self.deny.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        Pattern::parse(s).expect(s)
    }

    #[test]
    fn one_star_stays_within_a_path_component() {
        assert!(p("library/*").matches("library/alpine"));
        assert!(!p("library/*").matches("library/a/b"));
        assert!(!p("library/*").matches("library"));
        assert!(p("library/*").matches("library/"));
        assert!(p("library/evil*").matches("library/evil"));
        assert!(p("library/evil*").matches("library/evil-twin"));
        assert!(!p("library/evil*").matches("library/notevil"));
        assert!(p("*/app").matches("org/app"));
        assert!(!p("*/app").matches("a/org/app"));
    }

    #[test]
    fn two_stars_cross_components() {
        assert!(p("myorg/**").matches("myorg/a"));
        assert!(p("myorg/**").matches("myorg/a/b/c"));
        assert!(!p("myorg/**").matches("otherorg/a"));
        assert!(p("**").matches("x/y/z"));
        assert!(p("**/base").matches("a/b/base"));
        assert!(p("a/**/z").matches("a/b/c/z"));
        assert!(!p("a/**/z").matches("a/z"));
    }

    #[test]
    fn literals_match_whole_names_only() {
        assert!(p("library/alpine").matches("library/alpine"));
        assert!(!p("library/alpine").matches("library/alpine2"));
        assert!(!p("library/alpine").matches("xlibrary/alpine"));
    }

    #[test]
    fn a_long_name_with_many_stars_is_matched_in_linear_time() {
        let name = format!("{}b", "a/".repeat(100));
        assert!(!p("**a**a**a**a**a**a**a**c").matches(&name));
        assert!(p("**b").matches(&name));
    }

    #[test]
    fn patterns_that_cannot_match_are_refused() {
        for bad in [
            "",
            "/lib",
            "lib/",
            "Library/*",
            "lib/***",
            "lib/a b",
            "lib/@x",
        ] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?}");
        }
        let e = Pattern::parse("Library/*").expect_err("upper case");
        assert!(e.contains("'L'"), "{e}");
    }

    #[test]
    fn deny_wins_over_allow() {
        let r = Rules {
            allow: Some(vec![p("library/*"), p("myorg/**")]),
            deny: vec![p("library/evil*")],
        };
        assert_eq!(r.check("library/alpine"), Ok(()));
        assert_eq!(r.check("myorg/team/app"), Ok(()));
        assert_eq!(
            r.check("library/evil"),
            Err(Refusal::Denied("library/evil*".into()))
        );
        assert_eq!(r.check("other/app"), Err(Refusal::NotAllowed));
        let open = Rules::default();
        assert_eq!(open.check("anything/at/all"), Ok(()));
        let deny_only = Rules {
            allow: None,
            deny: vec![p("bad/**")],
        };
        assert_eq!(deny_only.check("good/x"), Ok(()));
        assert!(deny_only.check("bad/x").is_err());
    }

    #[test]
    fn messages_name_the_upstream_and_the_rule() {
        let m = Refusal::Denied("library/evil*".into()).message("docker.io", "library/evil");
        assert_eq!(
            m,
            "repository library/evil is refused by docker.io's deny rule \"library/evil*\""
        );
    }
}
