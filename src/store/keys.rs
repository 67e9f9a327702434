//! Key and value encodings for the metadata column families.
//!
//! Invariants: every encoder has a decoder that returns exactly what was encoded, and no
//! decoder panics on arbitrary bytes (a corrupt record reads as `None`). Variable-length key
//! parts are separated by a NUL byte, which no upstream name, repository name or tag can
//! contain (they are validated before they get here).

use crate::oci::Digest;

const SEP: u8 = 0;

/// `upstream \0 repo \0 tag` → key of the `tags` column family.
pub fn tag_key(upstream: &str, repo: &str, tag: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(upstream.len() + repo.len() + tag.len() + 2);
    k.extend_from_slice(upstream.as_bytes());
    k.push(SEP);
    k.extend_from_slice(repo.as_bytes());
    k.push(SEP);
    k.extend_from_slice(tag.as_bytes());
    k
}

/// Inverse of [`tag_key`].
pub fn decode_tag_key(key: &[u8]) -> Option<(String, String, String)> {
    let mut parts = key.split(|b| *b == SEP);
    let upstream = std::str::from_utf8(parts.next()?).ok()?.to_string();
    let repo = std::str::from_utf8(parts.next()?).ok()?.to_string();
    let tag = std::str::from_utf8(parts.next()?).ok()?.to_string();
    if parts.next().is_some() {
        return None;
    }
    Some((upstream, repo, tag))
}

/// A tag resolution: the digest it pointed at and when that was last confirmed upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagRecord {
    pub digest: Digest,
    /// Milliseconds since the Unix epoch.
    pub checked_at_ms: u64,
}

pub fn encode_tag(rec: &TagRecord) -> Vec<u8> {
    let mut v = Vec::with_capacity(40);
    v.extend_from_slice(rec.digest.as_bytes());
    v.extend_from_slice(&rec.checked_at_ms.to_be_bytes());
    v
}

pub fn decode_tag(v: &[u8]) -> Option<TagRecord> {
    if v.len() != 40 {
        return None;
    }
    let digest = Digest::from_bytes(v[..32].try_into().ok()?);
    let checked_at_ms = u64::from_be_bytes(v[32..40].try_into().ok()?);
    Some(TagRecord {
        digest,
        checked_at_ms,
    })
}

/// `upstream \0 repo \0 <32 digest bytes>` → key of the `links` column family.
pub fn link_key(upstream: &str, repo: &str, digest: &Digest) -> Vec<u8> {
    let mut k = Vec::with_capacity(upstream.len() + repo.len() + 34);
    k.extend_from_slice(upstream.as_bytes());
    k.push(SEP);
    k.extend_from_slice(repo.as_bytes());
    k.push(SEP);
    k.extend_from_slice(digest.as_bytes());
    k
}

pub fn decode_link_key(key: &[u8]) -> Option<(String, String, Digest)> {
    if key.len() < 34 {
        return None;
    }
    let (head, digest) = key.split_at(key.len() - 32);
    let head = head.strip_suffix(&[SEP])?;
    let sep = head.iter().position(|b| *b == SEP)?;
    let upstream = std::str::from_utf8(&head[..sep]).ok()?.to_string();
    let repo = std::str::from_utf8(&head[sep + 1..]).ok()?.to_string();
    if repo.as_bytes().contains(&SEP) {
        return None;
    }
    Some((upstream, repo, Digest::from_bytes(digest.try_into().ok()?)))
}

/// `<32-byte credential hash> upstream \0 repo` → key of the `authz` column family.
pub fn authz_key(cred: &[u8; 32], upstream: &str, repo: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(33 + upstream.len() + repo.len());
    k.extend_from_slice(cred);
    k.extend_from_slice(upstream.as_bytes());
    k.push(SEP);
    k.extend_from_slice(repo.as_bytes());
    k
}

/// The last authorization check of a credential for a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthzRecord {
    /// Milliseconds since the Unix epoch.
    pub checked_at_ms: u64,
    pub allowed: bool,
}

pub fn encode_authz(rec: &AuthzRecord) -> [u8; 9] {
    let mut v = [0u8; 9];
    v[..8].copy_from_slice(&rec.checked_at_ms.to_be_bytes());
    v[8] = u8::from(rec.allowed);
    v
}

pub fn decode_authz(v: &[u8]) -> Option<AuthzRecord> {
    if v.len() != 9 || v[8] > 1 {
        return None;
    }
    Some(AuthzRecord {
        checked_at_ms: u64::from_be_bytes(v[..8].try_into().ok()?),
        allowed: v[8] == 1,
    })
}

/// A stored manifest: its media type and its exact bytes.
pub fn encode_manifest(media_type: &str, bytes: &[u8]) -> Vec<u8> {
    let mt = media_type.as_bytes();
    let len = u16::try_from(mt.len()).unwrap_or(u16::MAX);
    let mut v = Vec::with_capacity(2 + mt.len() + bytes.len());
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(&mt[..len as usize]);
    v.extend_from_slice(bytes);
    v
}

pub fn decode_manifest(v: &[u8]) -> Option<(String, &[u8])> {
    let len = u16::from_be_bytes(v.get(..2)?.try_into().ok()?) as usize;
    let mt = std::str::from_utf8(v.get(2..2 + len)?).ok()?.to_string();
    Some((mt, &v[2 + len..]))
}

/// What the `blobs` column family keeps per verified blob file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobRecord {
    pub size: u64,
    /// Seconds since the Unix epoch, coarse.
    pub last_access_s: u64,
}

pub fn encode_blob(rec: &BlobRecord) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&rec.size.to_be_bytes());
    v[8..].copy_from_slice(&rec.last_access_s.to_be_bytes());
    v
}

pub fn decode_blob(v: &[u8]) -> Option<BlobRecord> {
    if v.len() != 16 {
        return None;
    }
    Some(BlobRecord {
        size: u64::from_be_bytes(v[..8].try_into().ok()?),
        last_access_s: u64::from_be_bytes(v[8..].try_into().ok()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest::from_bytes([n; 32])
    }

    #[test]
    fn tag_key_round_trips() {
        let k = tag_key("ghcr.io", "org/app", "v1.2");
        assert_eq!(
            decode_tag_key(&k),
            Some(("ghcr.io".into(), "org/app".into(), "v1.2".into()))
        );
        assert_eq!(decode_tag_key(b"only\0two"), None);
    }

    #[test]
    fn tag_keys_of_different_repos_do_not_collide() {
        assert_ne!(tag_key("a", "b/c", "d"), tag_key("a", "b", "c/d"));
    }

    #[test]
    fn tag_record_round_trips() {
        let r = TagRecord {
            digest: d(7),
            checked_at_ms: 1_700_000_000_123,
        };
        assert_eq!(decode_tag(&encode_tag(&r)), Some(r));
        assert_eq!(decode_tag(&[1, 2, 3]), None);
    }

    #[test]
    fn link_key_round_trips_even_with_nul_in_digest() {
        let mut bytes = [0u8; 32];
        bytes[5] = 0xff;
        let dg = Digest::from_bytes(bytes);
        let k = link_key("docker.io", "library/alpine", &dg);
        assert_eq!(
            decode_link_key(&k),
            Some(("docker.io".into(), "library/alpine".into(), dg))
        );
        assert_eq!(decode_link_key(b"short"), None);
    }

    #[test]
    fn manifest_value_round_trips() {
        let v = encode_manifest("application/vnd.oci.image.manifest.v1+json", b"{\"a\":1}");
        let (mt, bytes) = decode_manifest(&v).expect("decodes");
        assert_eq!(mt, "application/vnd.oci.image.manifest.v1+json");
        assert_eq!(bytes, b"{\"a\":1}");
        assert!(decode_manifest(&[0]).is_none());
        assert!(decode_manifest(&[0, 9, b'a']).is_none());
    }

    #[test]
    fn authz_record_round_trips_and_keys_separate_credentials() {
        let r = AuthzRecord {
            checked_at_ms: 99,
            allowed: true,
        };
        assert_eq!(decode_authz(&encode_authz(&r)), Some(r));
        assert_eq!(decode_authz(&[0; 8]), None);
        assert_eq!(decode_authz(&[0, 0, 0, 0, 0, 0, 0, 0, 7]), None);
        assert_ne!(authz_key(&[1; 32], "u", "r"), authz_key(&[2; 32], "u", "r"));
        assert_ne!(
            authz_key(&[1; 32], "u", "r/x"),
            authz_key(&[1; 32], "u/r", "x")
        );
    }

    #[test]
    fn blob_record_round_trips() {
        let r = BlobRecord {
            size: 123456789,
            last_access_s: 42,
        };
        assert_eq!(decode_blob(&encode_blob(&r)), Some(r));
        assert_eq!(decode_blob(&[0; 15]), None);
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    /// Upstream names as configs allow (no '/', no whitespace) and repository names and tags
    /// as the request path validates them: none contains a NUL.
    fn upstream() -> impl Strategy<Value = String> {
        "[a-z0-9.-]{1,30}(:[0-9]{1,5})?"
    }

    fn repo() -> impl Strategy<Value = String> {
        "[a-z0-9]{1,8}([._-][a-z0-9]{1,8}){0,2}(/[a-z0-9]{1,8}([._-][a-z0-9]{1,8}){0,2}){0,4}"
    }

    fn tag() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_][A-Za-z0-9._-]{0,127}"
    }

    fn digest() -> impl Strategy<Value = Digest> {
        any::<[u8; 32]>().prop_map(Digest::from_bytes)
    }

    proptest! {
        #[test]
        fn tag_keys_round_trip((u, r, t) in (upstream(), repo(), tag())) {
            prop_assert_eq!(decode_tag_key(&tag_key(&u, &r, &t)), Some((u, r, t)));
        }

        #[test]
        fn tag_keys_of_different_tags_differ(
            a in (upstream(), repo(), tag()),
            b in (upstream(), repo(), tag()),
        ) {
            prop_assert_eq!(a == b, tag_key(&a.0, &a.1, &a.2) == tag_key(&b.0, &b.1, &b.2));
        }

        #[test]
        fn link_keys_round_trip((u, r, d) in (upstream(), repo(), digest())) {
            prop_assert_eq!(decode_link_key(&link_key(&u, &r, &d)), Some((u, r, d)));
        }

        #[test]
        fn authz_keys_of_different_credentials_or_repositories_differ(
            a in (any::<[u8; 32]>(), upstream(), repo()),
            b in (any::<[u8; 32]>(), upstream(), repo()),
        ) {
            prop_assert_eq!(a == b, authz_key(&a.0, &a.1, &a.2) == authz_key(&b.0, &b.1, &b.2));
        }

        #[test]
        fn records_round_trip(d in digest(), at in any::<u64>(), size in any::<u64>(), allowed in any::<bool>()) {
            let t = TagRecord { digest: d, checked_at_ms: at };
            prop_assert_eq!(decode_tag(&encode_tag(&t)), Some(t));
            let b = BlobRecord { size, last_access_s: at };
            prop_assert_eq!(decode_blob(&encode_blob(&b)), Some(b));
            let a = AuthzRecord { checked_at_ms: at, allowed };
            prop_assert_eq!(decode_authz(&encode_authz(&a)), Some(a));
        }

        #[test]
        fn manifests_round_trip(
            media_type in "\\PC{0,300}",
            bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        ) {
            let v = encode_manifest(&media_type, &bytes);
            let (mt, b) = decode_manifest(&v).unwrap();
            prop_assert_eq!(mt, media_type);
            prop_assert_eq!(b, bytes.as_slice());
        }

        #[test]
        fn decoders_never_panic(v in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = decode_tag_key(&v);
            let _ = decode_link_key(&v);
            let _ = decode_tag(&v);
            let _ = decode_authz(&v);
            let _ = decode_blob(&v);
            let _ = decode_manifest(&v);
        }
    }
}
