//! `upstream[i].allow` and `upstream[i].deny`: lists of repository patterns (see
//! `oci::pattern`), each checked here so that a pattern that can never match is a problem
//! naming its key and the pattern.

use super::raw::{self, RawUpstream};
use super::Problems;
use crate::oci::pattern::{Pattern, Rules};

/// Upstream `i`'s repository rules. `allow = []` is refused: it would serve nothing.
pub(super) fn rules(p: &mut Problems, i: usize, r: &RawUpstream) -> Rules {
    let allow = r.allow.as_ref().map(|v| {
        let key = format!("upstream[{i}].allow");
        let list = patterns(p, &key, Some(v));
        if list.is_empty() && matches!(v, toml::Value::Array(a) if a.is_empty()) {
            p.push(
                key,
                "an empty allow list would refuse every repository; remove the key to allow all",
            );
        }
        list
    });
    let deny = patterns(p, &format!("upstream[{i}].deny"), r.deny.as_ref());
    Rules { allow, deny }
}

fn patterns(p: &mut Problems, key: &str, v: Option<&toml::Value>) -> Vec<Pattern> {
    let mut out = Vec::new();
    for (j, text) in raw::string_list(p, key, v).iter().enumerate() {
        match Pattern::parse(text) {
            Ok(pat) => out.push(pat),
            Err(e) => p.push(format!("{key}[{j}]"), format!("pattern {text:?}: {e}")),
        }
    }
    out
}
