//! The event and its wire shape: CNCF Distribution's notification envelope
//! (`{"events": [...]}`, `application/vnd.docker.distribution.events.v1+json`), with Wharf's
//! own fields under `wharf`. An event holds the client's user name only: it is built from a
//! [`Client`] through [`Event::actor`], which reads the name and nothing else of its
//! credentials, and from request fields Wharf chose (never a header it did not name).

use crate::auth::{Client, Credentials};
use crate::config::NotifyEvent;
use serde::Serialize;

/// The media type of a body of events.
pub const ENVELOPE_MEDIA_TYPE: &str = "application/vnd.docker.distribution.events.v1+json";

/// Longest request string (`host`, `useragent`) an event keeps, in bytes.
const MAX_FIELD: usize = 256;

/// What an event is about (Distribution's `target`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Target {
    #[serde(rename = "mediaType", skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub digest: String,
    pub size: u64,
    pub length: u64,
    pub repository: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub url: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tag: String,
}

/// The client request behind an event (Distribution's `request`); empty for events no
/// request caused (fills run on, evictions).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RequestInfo {
    pub id: String,
    pub addr: String,
    pub host: String,
    pub method: String,
    pub useragent: String,
}

impl RequestInfo {
    /// The request's fields, the long ones cut to a bound.
    pub fn new(id: u64, addr: String, host: &str, method: &str, useragent: &str) -> RequestInfo {
        RequestInfo {
            id: id.to_string(),
            addr,
            host: bounded(host),
            method: method.to_string(),
            useragent: bounded(useragent),
        }
    }
}

fn bounded(s: &str) -> String {
    let mut end = s.len().min(MAX_FIELD);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Distribution's `actor`: the user name the client authenticated with, empty if anonymous.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Actor {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// Distribution's `source`: this Wharf (set by the notifier).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Source {
    pub addr: String,
    #[serde(rename = "instanceID")]
    pub instance_id: String,
}

/// Wharf's own fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Wharf {
    /// The configured upstream's name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub upstream: String,
    /// `hit`, `miss`, `stale`, `coalesced` (pulls); why (denied).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub result: String,
    /// Body bytes served (pulls).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// The HTTP status answered (denied).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Blobs and manifests an eviction pass removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blobs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifests: Option<u64>,
}

/// One event, as it goes out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub id: String,
    pub timestamp: String,
    #[serde(serialize_with = "action")]
    pub action: NotifyEvent,
    pub target: Target,
    pub request: RequestInfo,
    pub actor: Actor,
    pub source: Source,
    pub wharf: Wharf,
}

fn action<S: serde::Serializer>(a: &NotifyEvent, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(a.as_str())
}

/// A random id (hex of 16 bytes).
pub(super) fn random_id() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        b = n.to_le_bytes();
    }
    hex::encode(b)
}

impl Event {
    /// An event of `action` about `target`, now, with a fresh id.
    pub fn new(action: NotifyEvent, target: Target) -> Event {
        Event {
            id: random_id(),
            timestamp: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            action,
            target,
            request: RequestInfo::default(),
            actor: Actor::default(),
            source: Source::default(),
            wharf: Wharf::default(),
        }
    }

    /// A manifest served to a client: its media type, digest, size, repository, tag (if
    /// asked by tag) and URL; `result` is how it was served.
    pub fn pull(
        target: Target,
        request: RequestInfo,
        client: &Client,
        upstream: &str,
        result: &str,
    ) -> Event {
        let bytes = target.size;
        let mut e = Event::new(NotifyEvent::Pull, target)
            .request(request)
            .actor(client);
        e.wharf = Wharf {
            upstream: upstream.to_string(),
            result: result.to_string(),
            bytes: Some(bytes),
            ..Wharf::default()
        };
        e
    }

    /// A fill that committed `digest` (`size` bytes) under `repository`: a blob, or a manifest
    /// fetched from the upstream (the caller sets `target.media_type`).
    pub fn fill(upstream: &str, repository: &str, digest: &str, size: u64) -> Event {
        let mut e = Event::new(NotifyEvent::Fill, blob_target(repository, digest, size));
        e.wharf.upstream = upstream.to_string();
        e
    }

    /// Content an operator purged: `digest` (empty: the whole repository) of `repository`.
    pub fn purge(upstream: &str, repository: &str, digest: &str, size: u64) -> Event {
        let mut e = Event::new(NotifyEvent::Purge, blob_target(repository, digest, size));
        e.wharf.upstream = upstream.to_string();
        e
    }

    /// One eviction pass: how many blobs and manifests, how many bytes (`target.size`).
    pub fn evict(blobs: u64, manifests: u64, bytes: u64) -> Event {
        let mut e = Event::new(NotifyEvent::Evict, blob_target("", "", bytes));
        e.wharf.blobs = Some(blobs);
        e.wharf.manifests = Some(manifests);
        e
    }

    /// A refusal: `reason` (`rule:deny`, `rule:allow`, `unauthorized`, `forbidden`) and the
    /// status answered.
    pub fn denied(upstream: &str, repository: &str, reason: &str, status: u16) -> Event {
        let mut e = Event::new(NotifyEvent::Denied, blob_target(repository, "", 0));
        e.wharf = Wharf {
            upstream: upstream.to_string(),
            result: reason.to_string(),
            status: Some(status),
            ..Wharf::default()
        };
        e
    }

    /// With the request that caused it.
    pub fn request(mut self, request: RequestInfo) -> Event {
        self.request = request;
        self
    }

    /// With `client`'s user name as the actor (nothing else of its credentials).
    pub fn actor(mut self, client: &Client) -> Event {
        self.actor.name = match &client.creds {
            Credentials::Anonymous => String::new(),
            Credentials::Basic { user, .. } => user.clone(),
        };
        self
    }
}

fn blob_target(repository: &str, digest: &str, size: u64) -> Target {
    Target {
        digest: digest.to_string(),
        size,
        length: size,
        repository: repository.to_string(),
        ..Target::default()
    }
}

/// `{"events": [...]}`.
#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(serialize_with = "each")]
    events: &'a [std::sync::Arc<Event>],
}

fn each<S: serde::Serializer>(events: &&[std::sync::Arc<Event>], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(events.iter().map(|e| &**e))
}

/// The Distribution envelope of `events`.
pub fn envelope(events: &[std::sync::Arc<Event>]) -> Vec<u8> {
    serde_json::to_vec(&Envelope { events }).unwrap_or_default()
}

/// One JSON line per event.
pub fn json_lines(events: &[std::sync::Arc<Event>]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in events {
        if serde_json::to_writer(&mut out, &**e).is_ok() {
            out.push(b'\n');
        }
    }
    out
}
