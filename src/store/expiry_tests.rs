use super::*;
use crate::store::{LinkKind, StoredManifest};
use std::io::Write;

fn blob(s: &Store, data: &[u8]) -> Digest {
    let d = Digest::of(data);
    let t = s.create_temp(&d).expect("temp");
    (&*t.file).write_all(data).expect("write");
    s.commit_blob(&t, &d, data.len() as u64).expect("commit");
    d
}

fn accessed(s: &Store, d: &Digest, at_s: u64) {
    let cf = s.cf(super::super::CF_BLOBS).expect("cf");
    let mut rec = s.blob_record(d).expect("rec").expect("stored");
    rec.last_access_s = at_s;
    s.db.put_cf(cf, d.as_bytes(), keys::encode_blob(&rec))
        .expect("put");
}

fn link(s: &Store, up: &str, repo: &str, d: &Digest) {
    s.put_link(LinkKind::Blob, up, repo, d).expect("link");
}

#[test]
fn an_idle_sweep_takes_what_was_not_asked_for_and_keeps_pins() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Store::open(dir.path()).expect("store");
    let now = crate::store::now_ms() / 1000;
    let (old, pinned, fresh) = (blob(&s, b"old"), blob(&s, b"pinned"), blob(&s, b"fresh"));
    accessed(&s, &old, now - 100);
    accessed(&s, &pinned, now - 100);
    accessed(&s, &fresh, now - 5);
    let m = StoredManifest {
        digest: Digest::of(b"{}"),
        media_type: crate::oci::media::OCI_MANIFEST.to_string(),
        bytes: bytes::Bytes::from_static(b"{}"),
    };
    let rec = keys::TagRecord {
        digest: m.digest,
        checked_at_ms: 1,
    };
    s.put_manifest("u", "r", &m, &Default::default(), Some(("t", rec)))
        .expect("put");
    s.note_manifest(&m.digest, 2).expect("note");
    let cf = s.cf(super::super::CF_MANIFEST_USE).expect("cf");
    let use_rec = keys::BlobRecord {
        size: 2,
        last_access_s: now - 100,
    };
    s.db.put_cf(cf, m.digest.as_bytes(), keys::encode_blob(&use_rec))
        .expect("use");
    let keep: HashSet<Digest> = [pinned].into_iter().collect();
    let e = s.evict_idle(now - 50, &keep).expect("sweep");
    assert_eq!(
        (e.blobs, e.manifests.clone(), e.tags),
        (1, vec![m.digest], 1)
    );
    assert!(
        s.blob_record(&old).expect("rec").is_none(),
        "idle blob removed"
    );
    assert!(!s.files().exists(&old), "its file too");
    assert!(s.blob_record(&pinned).expect("rec").is_some(), "pins stay");
    assert!(s.blob_record(&fresh).expect("rec").is_some(), "fresh stays");
    assert!(
        s.get_tag("u", "r", "t").expect("tag").is_none(),
        "tag with its manifest"
    );
}

#[test]
fn a_quota_releases_the_oldest_and_deletes_only_what_no_upstream_keeps() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Store::open(dir.path()).expect("store");
    let now = crate::store::now_ms() / 1000;
    let a = blob(&s, &[1u8; 100]);
    let shared = blob(&s, &[2u8; 100]);
    let b = blob(&s, &[3u8; 100]);
    let other_only = blob(&s, &[4u8; 100]);
    accessed(&s, &a, now - 40);
    accessed(&s, &shared, now - 30);
    accessed(&s, &b, now - 20);
    accessed(&s, &other_only, now - 50);
    link(&s, "one", "app", &a);
    link(&s, "one", "app", &shared);
    link(&s, "one", "web", &shared);
    link(&s, "two", "lib", &shared);
    link(&s, "one", "app", &b);
    link(&s, "two", "lib", &other_only);
    let usage = s.upstream_usage().expect("usage");
    assert_eq!(
        usage["one"],
        UpstreamUsage {
            bytes: 300,
            blobs: 3
        }
    );
    assert_eq!(
        usage["two"],
        UpstreamUsage {
            bytes: 200,
            blobs: 2
        }
    );
    // Down to 100 bytes for `one`: `a` (oldest) is deleted; `shared` is released by `one`
    // (both its repositories) but stays for `two`.
    let q = s
        .evict_upstream("one", 100, &HashSet::new())
        .expect("quota");
    assert_eq!((q.released, q.released_bytes, q.deleted), (2, 200, 1));
    assert!(!s.files().exists(&a));
    assert!(s.files().exists(&shared), "another upstream keeps it");
    for repo in ["app", "web"] {
        assert!(!s
            .has_link(LinkKind::Blob, "one", repo, &shared)
            .expect("link"));
    }
    assert!(s
        .has_link(LinkKind::Blob, "two", "lib", &shared)
        .expect("link"));
    assert!(
        s.files().exists(&other_only),
        "another upstream's blob is not touched"
    );
    let usage = s.upstream_usage().expect("usage");
    assert_eq!(
        usage["one"],
        UpstreamUsage {
            bytes: 100,
            blobs: 1
        }
    );
    assert_eq!(
        usage["two"],
        UpstreamUsage {
            bytes: 200,
            blobs: 2
        }
    );
    // A pinned blob is never released, even when the quota cannot be met without it.
    let keep: HashSet<Digest> = [b].into_iter().collect();
    let q = s.evict_upstream("one", 0, &keep).expect("quota");
    assert_eq!(q, QuotaPass::default());
    assert!(s.files().exists(&b));
}
