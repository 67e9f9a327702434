//! `[[notify]]`: where Wharf sends its events (see `crate::notify`). Each entry has exactly
//! one of `url` (an `http`/`https` webhook) or `file` (JSON lines), the `events` it wants
//! (a subset of [`NotifyEvent::ALL`]; all when absent), `headers` for the webhook, a
//! `timeout` (default 5 s) and a `name` (the `sink` metric label; `notify<index>` by
//! default). Every problem names its key (`notify[0].url: ...`).

use super::raw::{self, RawNotify};
use super::{positive_duration, Problems};
use std::path::PathBuf;
use std::time::Duration;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The kinds of event a sink may ask for (`events = [...]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotifyEvent {
    Pull,
    Fill,
    Purge,
    Evict,
    Denied,
}

impl NotifyEvent {
    pub const ALL: [NotifyEvent; 5] = [
        NotifyEvent::Pull,
        NotifyEvent::Fill,
        NotifyEvent::Purge,
        NotifyEvent::Evict,
        NotifyEvent::Denied,
    ];

    /// The name in the config file and in an event's `action`.
    pub const fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::Pull => "pull",
            NotifyEvent::Fill => "fill",
            NotifyEvent::Purge => "purge",
            NotifyEvent::Evict => "evict",
            NotifyEvent::Denied => "denied",
        }
    }

    fn parse(s: &str) -> Option<NotifyEvent> {
        NotifyEvent::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// Where a sink delivers.
#[derive(Clone, PartialEq)]
pub enum NotifySink {
    /// POSTs batches to an `http`/`https` URL.
    Webhook {
        url: http::Uri,
        /// Sent with every request (`Authorization` for the receiver, say).
        headers: Vec<(String, String)>,
    },
    /// Appends JSON lines to a file, reopened on SIGHUP.
    File(PathBuf),
}

impl std::fmt::Debug for NotifySink {
    /// Header values are secrets for the receiver: never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotifySink::Webhook { url, headers } => {
                let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
                write!(f, "Webhook({url}, headers: {names:?})")
            }
            NotifySink::File(p) => write!(f, "File({})", p.display()),
        }
    }
}

/// One validated `[[notify]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifyConfig {
    /// The `sink` label of the notify metrics; unique.
    pub name: String,
    pub sink: NotifySink,
    /// The events this sink gets; never empty.
    pub events: Vec<NotifyEvent>,
    /// One delivery attempt (a webhook request, a file write); > 0.
    pub timeout: Duration,
}

impl NotifyConfig {
    pub fn wants(&self, e: NotifyEvent) -> bool {
        self.events.contains(&e)
    }
}

pub(super) fn validate(p: &mut Problems, raws: &[RawNotify]) -> Vec<NotifyConfig> {
    let mut out: Vec<NotifyConfig> = Vec::new();
    for (i, r) in raws.iter().enumerate() {
        let key = format!("notify[{i}]");
        let name = raw::string(p, &format!("{key}.name"), r.name.as_ref())
            .unwrap_or_else(|| format!("notify{i}"));
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            p.push(
                format!("{key}.name"),
                "must be letters, digits, '-', '_' or '.'",
            );
        } else if out.iter().any(|o| o.name == name) {
            p.push(
                format!("{key}.name"),
                format!("{name:?} is used by another notify entry"),
            );
        }
        let events = events(p, &key, r.events.as_ref());
        let timeout = positive_duration(
            p,
            &format!("{key}.timeout"),
            r.timeout.as_ref(),
            DEFAULT_TIMEOUT,
        );
        let Some(sink) = sink(p, &key, r) else {
            continue;
        };
        out.push(NotifyConfig {
            name,
            sink,
            events,
            timeout,
        });
    }
    out
}

fn events(p: &mut Problems, key: &str, v: Option<&toml::Value>) -> Vec<NotifyEvent> {
    if v.is_none() {
        return NotifyEvent::ALL.to_vec();
    }
    let key = format!("{key}.events");
    let mut out = Vec::new();
    for (i, s) in raw::string_list(p, &key, v).iter().enumerate() {
        match NotifyEvent::parse(s) {
            Some(e) if !out.contains(&e) => out.push(e),
            Some(_) => {}
            None => p.push(
                format!("{key}[{i}]"),
                format!("unknown event {s:?}; expected pull, fill, purge, evict or denied"),
            ),
        }
    }
    if out.is_empty() && v.is_some_and(|v| v.as_array().is_some_and(|a| a.is_empty())) {
        p.push(key, "must name at least one event (leave it out for all)");
    }
    out
}

fn sink(p: &mut Problems, key: &str, r: &RawNotify) -> Option<NotifySink> {
    let url = raw::string(p, &format!("{key}.url"), r.url.as_ref());
    let file = raw::string(p, &format!("{key}.file"), r.file.as_ref());
    let headers = headers(p, &format!("{key}.headers"), r.headers.as_ref());
    match (url, file) {
        (Some(u), None) => {
            let k = format!("{key}.url");
            match u.parse::<http::Uri>() {
                Ok(url)
                    if matches!(url.scheme_str(), Some("http" | "https"))
                        && url.host().is_some() =>
                {
                    Some(NotifySink::Webhook { url, headers })
                }
                _ => {
                    p.push(k, format!("expected an http:// or https:// URL, got {u:?}"));
                    None
                }
            }
        }
        (None, Some(f)) if f.is_empty() => {
            p.push(format!("{key}.file"), "must not be empty");
            None
        }
        (None, Some(f)) => {
            if r.headers.is_some() {
                p.push(
                    format!("{key}.headers"),
                    "only a webhook (url) sends headers",
                );
            }
            Some(NotifySink::File(PathBuf::from(f)))
        }
        (Some(_), Some(_)) => {
            p.push(key, "set either url or file, not both");
            None
        }
        (None, None) => {
            p.push(key, "needs url (a webhook) or file (JSON lines)");
            None
        }
    }
}

fn headers(p: &mut Problems, key: &str, v: Option<&toml::Value>) -> Vec<(String, String)> {
    let Some(v) = v else {
        return Vec::new();
    };
    let Some(table) = v.as_table() else {
        p.push(
            key,
            format!("expected a table of strings, got {}", raw::type_name(v)),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, value) in table {
        let k = format!("{key}.{name}");
        let Some(value) = raw::string(p, &k, Some(value)) else {
            continue;
        };
        let valid_name = http::HeaderName::from_bytes(name.as_bytes()).is_ok();
        let valid_value = http::HeaderValue::from_str(&value).is_ok();
        match (valid_name, valid_value) {
            (true, true) => out.push((name.clone(), value)),
            (false, _) => p.push(k, "not a valid header name"),
            (true, false) => p.push(k, "not a valid header value"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, NotifyEvent, NotifySink};

    fn errors(toml: &str) -> String {
        match Config::from_toml_str(toml) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_webhook_and_a_file_sink_with_their_defaults() {
        let c = Config::from_toml_str(
            r#"
[[notify]]
url = "https://hooks.example/wharf"
events = ["pull", "denied"]
headers = { Authorization = "Bearer s3cret" }
timeout = "2s"

[[notify]]
name = "audit"
file = "/var/log/wharf/events.jsonl"
"#,
        )
        .expect("valid");
        assert_eq!(c.notify.len(), 2);
        assert_eq!(c.notify[0].name, "notify0");
        assert_eq!(
            c.notify[0].events,
            vec![NotifyEvent::Pull, NotifyEvent::Denied]
        );
        assert_eq!(c.notify[0].timeout, std::time::Duration::from_secs(2));
        assert!(
            !format!("{:?}", c.notify[0]).contains("s3cret"),
            "Debug hides header values"
        );
        assert!(
            matches!(&c.notify[0].sink, NotifySink::Webhook { headers, .. } if headers.len() == 1)
        );
        assert_eq!(c.notify[1].name, "audit");
        assert_eq!(c.notify[1].events, NotifyEvent::ALL.to_vec());
        assert_eq!(c.notify[1].timeout, std::time::Duration::from_secs(5));
        assert!(Config::from_toml_str("").expect("empty").notify.is_empty());
    }

    #[test]
    fn problems_name_their_key() {
        let e = errors("[[notify]]\nurl = \"ftp://x/\"\n");
        assert!(e.contains("notify[0].url: expected an http"), "{e}");
        let e = errors("[[notify]]\nurl = \"http://x/\"\nfile = \"/f\"\n");
        assert!(e.contains("notify[0]: set either url or file"), "{e}");
        let e = errors("[[notify]]\ntimeout = \"5s\"\n");
        assert!(e.contains("notify[0]: needs url"), "{e}");
        let e = errors("[[notify]]\nfile = \"/f\"\nevents = [\"pull\", \"push\"]\n");
        assert!(
            e.contains("notify[0].events[1]: unknown event \"push\""),
            "{e}"
        );
        let e = errors("[[notify]]\nfile = \"/f\"\nevents = []\n");
        assert!(
            e.contains("notify[0].events: must name at least one"),
            "{e}"
        );
        let e = errors("[[notify]]\nurl = \"http://x/\"\nheaders = { A = 1 }\n");
        assert!(e.contains("notify[0].headers.A: expected a string"), "{e}");
        let e = errors("[[notify]]\nurl = \"http://x/\"\ntimeout = \"0s\"\n");
        assert!(
            e.contains("notify[0].timeout: must be greater than 0"),
            "{e}"
        );
        let e = errors(
            "[[notify]]\nfile = \"/a\"\nname = \"x\"\n[[notify]]\nfile = \"/b\"\nname = \"x\"\n",
        );
        assert!(e.contains("notify[1].name: \"x\" is used"), "{e}");
        let e = errors("[[notify]]\nfile = \"/a\"\nretries = 3\n");
        assert!(e.contains("notify[0].retries: unknown key"), "{e}");
    }
}
