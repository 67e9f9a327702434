//! Purge bookkeeping: what goes, and a blob another image still needs stays.

use super::super::keys::TagRecord;
use super::super::{LinkKind, Store, StoredManifest};
use crate::oci::{CacheRef, Digest};
use std::io::Write;

fn blob(s: &Store, data: &[u8]) -> Digest {
    let d = Digest::of(data);
    if !s.files().exists(&d) {
        let t = s.create_temp(&d).expect("temp");
        (&*t.file).write_all(data).expect("write");
        s.commit_blob(&t, &d, data.len() as u64).expect("commit");
    }
    d
}

/// `up/repo:tag` with a config and `layers` (blob data); the manifest's digest.
fn image(s: &Store, up: &str, repo: &str, tag: &str, layers: &[&[u8]]) -> Digest {
    let cfg = blob(s, format!("config of {up}/{repo}:{tag}").as_bytes());
    let descs: Vec<String> = layers
        .iter()
        .map(|l| {
            let d = blob(s, l);
            format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{d}","size":{}}}"#, l.len())
        })
        .collect();
    let bytes = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cfg}","size":1}},"layers":[{}]}}"#,
        descs.join(",")
    );
    let m = StoredManifest {
        digest: Digest::of(bytes.as_bytes()),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        bytes: bytes.into_bytes().into(),
    };
    let links = m.refs().expect("parse").links();
    let rec = TagRecord {
        digest: m.digest,
        checked_at_ms: 1,
    };
    s.put_manifest(up, repo, &m, &links, Some((tag, rec)))
        .expect("put");
    m.digest
}

fn r(s: &str) -> CacheRef {
    CacheRef::parse(s).expect("ref")
}

#[test]
fn a_blob_shared_by_two_images_and_two_upstreams_survives_purging_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Store::open(dir.path()).expect("open");
    let (shared, own, other) = (
        b"shared layer".as_slice(),
        b"v1 only".as_slice(),
        b"v2".as_slice(),
    );
    let v1 = image(&s, "a", "app", "v1", &[shared, own]);
    let v2 = image(&s, "a", "app", "v2", &[shared, other]);
    let mirror = image(&s, "b", "app", "v1", &[shared]);
    let (sd, od) = (Digest::of(shared), Digest::of(own));

    let p = s.purge(&r("a/app:v1")).expect("purge").expect("something");
    assert_eq!(p.tags, ["v1"]);
    assert_eq!(p.manifests, [v1]);
    assert!(p.blobs.contains(&od), "{p:?}");
    assert!(
        !p.blobs.contains(&sd),
        "v2 and upstream b still need it: {p:?}"
    );
    assert!(!s.files().exists(&od) && s.blob_record(&od).expect("rec").is_none());
    assert!(s.files().exists(&sd));
    assert!(s.has_link(LinkKind::Blob, "a", "app", &sd).expect("link"));
    assert!(!s.has_link(LinkKind::Blob, "a", "app", &od).expect("link"));
    assert!(!s
        .has_link(LinkKind::Manifest, "a", "app", &v1)
        .expect("link"));
    assert!(s.get_tag("a", "app", "v1").expect("tag").is_none());
    assert!(s.get_manifest(&v2).expect("m").is_some());

    // The whole repository of upstream a: the shared layer stays for upstream b.
    let p = s.purge(&r("a/app")).expect("purge").expect("something");
    assert_eq!(p.tags, ["v2"]);
    assert!(s.files().exists(&sd), "upstream b still links it");
    assert!(!s.files().exists(&Digest::of(other)));
    assert!(s.get_manifest(&mirror).expect("m").is_some());
    assert!(
        s.purge(&r("a/app")).expect("purge").is_none(),
        "nothing left"
    );

    // Last one out: the shared layer goes with upstream b's image.
    let p = s
        .purge(&r(&format!("b/app@{mirror}")))
        .expect("purge")
        .expect("something");
    assert_eq!(p.tags, ["v1"]);
    assert!(p.blobs.contains(&sd) && !s.files().exists(&sd));
    assert_eq!(s.blob_totals(), (0, 0));
}

#[test]
fn a_tag_purged_while_another_tag_points_at_its_manifest_only_drops_the_tag() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Store::open(dir.path()).expect("open");
    let m = image(&s, "a", "app", "v1", &[b"layer"]);
    let rec = TagRecord {
        digest: m,
        checked_at_ms: 1,
    };
    s.put_tag("a", "app", "latest", rec).expect("tag");
    let p = s.purge(&r("a/app:v1")).expect("purge").expect("something");
    assert_eq!(p.tags, ["v1"]);
    assert!(
        p.unlinked_manifests.is_empty() && p.blobs.is_empty(),
        "{p:?}"
    );
    assert!(s.files().exists(&Digest::of(b"layer")));
    assert!(s
        .has_link(LinkKind::Manifest, "a", "app", &m)
        .expect("link"));
    assert!(s.purge(&r("a/app:v1")).expect("purge").is_none());
}
