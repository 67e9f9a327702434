use super::*;
use crate::oci::media;
use crate::store::StoredManifest;

fn manifest(media_type: &str, body: String) -> StoredManifest {
    StoredManifest {
        digest: Digest::of(body.as_bytes()),
        media_type: media_type.to_string(),
        bytes: bytes::Bytes::from(body),
    }
}

fn image(config: &Digest, layers: &[Digest], extra: &str) -> StoredManifest {
    let layers: Vec<String> = layers
        .iter()
        .map(|l| format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{l}","size":1}}"#))
        .collect();
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"digest":"{config}","size":1}},"layers":[{}]{extra}}}"#,
        media::OCI_MANIFEST,
        layers.join(",")
    );
    manifest(media::OCI_MANIFEST, body)
}

/// Writes `manifests` and the legacy `links` rows into the store at `dir` (made by this
/// version first, so its secret and imported markers exist), the way an older Wharf did.
fn write_legacy(dir: &Path, manifests: &[&StoredManifest], links: &[(&str, &Digest)]) {
    let mut opts = Options::default();
    opts.create_missing_column_families(true);
    let meta = dir.join("meta");
    let mut cfs = DB::list_cf(&opts, &meta).expect("list");
    cfs.push(CF_LEGACY_LINKS.to_string());
    let db = DB::open_cf(&opts, &meta, &cfs).expect("open raw");
    let mcf = db.cf_handle(CF_MANIFESTS).expect("cf");
    for m in manifests {
        let v = keys::encode_manifest(&m.media_type, &m.bytes);
        db.put_cf(mcf, m.digest.as_bytes(), v).expect("put");
    }
    let lcf = db.cf_handle(CF_LEGACY_LINKS).expect("cf");
    for (repo, d) in links {
        db.put_cf(lcf, keys::link_key("up", repo, d), [])
            .expect("put");
    }
}

#[test]
fn legacy_links_keep_only_what_the_strict_rules_vouch_for() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = |s: &str| Digest::of(s.as_bytes());
    let (pl, pl2, pc) = (
        b("private layer"),
        b("private layer 2"),
        b("private config"),
    );
    let private = image(&pc, &[pl2], "");
    // A public image manifest carrying injected `blobs` and `manifests` (refused now).
    let injected = format!(
        r#","blobs":[{{"digest":"{pl}"}}],"manifests":[{{"digest":"{}"}}]"#,
        private.digest
    );
    let (c, l1) = (b("config"), b("layer"));
    let evil = image(&c, &[l1], &injected);
    // A legitimate multi-arch image: an index, one child stored, one not yet.
    let (c2, l2) = (b("arm config"), b("arm layer"));
    let child = image(&c2, &[l2], "");
    let absent = b("amd64 manifest");
    let index_body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"digest":"{}"}},{{"digest":"{absent}"}}]}}"#,
        media::OCI_INDEX,
        child.digest
    );
    let index = manifest(media::OCI_INDEX, index_body);
    let (direct, imported) = (b("fetched directly"), b("imported layer"));
    {
        let s = Store::open(dir.path()).expect("new store");
        s.mark_imported("up", "pub/app", &[imported])
            .expect("import");
    }
    let links = [
        ("pub/app", &evil.digest),
        ("pub/app", &c),
        ("pub/app", &l1),
        ("pub/app", &pl),
        ("pub/app", &private.digest),
        ("pub/app", &pl2),
        ("pub/app", &direct),
        ("pub/app", &imported),
        ("private/app", &private.digest),
        ("private/app", &pc),
        ("private/app", &pl2),
        ("pub/multi", &index.digest),
        ("pub/multi", &child.digest),
        ("pub/multi", &absent),
        ("pub/multi", &c2),
        ("pub/multi", &l2),
    ];
    write_legacy(dir.path(), &[&evil, &private, &child, &index], &links);

    let s = Store::open(dir.path()).expect("migrating open");
    let has = |kind, repo, d: &Digest| s.has_link(kind, "up", repo, d).expect("has");
    use LinkKind::{Blob, Manifest};
    // The ambiguous manifest is gone, and nothing it named is vouched for.
    assert_eq!(s.get_manifest(&evil.digest).expect("get"), None);
    for d in [&evil.digest, &c, &l1, &pl, &private.digest, &pl2] {
        assert!(
            !has(Blob, "pub/app", d) && !has(Manifest, "pub/app", d),
            "{d}"
        );
    }
    assert!(has(Blob, "pub/app", &direct));
    assert!(has(Blob, "pub/app", &imported));
    // The private repository keeps its own links, typed.
    assert!(has(Manifest, "private/app", &private.digest));
    assert!(!has(Blob, "private/app", &private.digest));
    assert!(has(Blob, "private/app", &pc) && has(Blob, "private/app", &pl2));
    assert!(!has(Manifest, "private/app", &pl2));
    // The index, its children (stored or not) and the child's blobs.
    for d in [&index.digest, &child.digest, &absent] {
        assert!(
            has(Manifest, "pub/multi", d) && !has(Blob, "pub/multi", d),
            "{d}"
        );
    }
    assert!(has(Blob, "pub/multi", &c2) && has(Blob, "pub/multi", &l2));
    drop(s);
    // Once converted, the legacy table is gone and a reopen changes nothing.
    assert!(!has_legacy_links(
        &Options::default(),
        &dir.path().join("meta")
    ));
    let s = Store::open(dir.path()).expect("reopen");
    assert!(s.has_link(Blob, "up", "pub/multi", &l2).expect("has"));
}

#[test]
fn a_manifest_named_only_through_an_undefined_field_is_tainted_with_its_blobs() {
    // Two manifests in one repository, both strict-valid: a public one referencing nothing
    // unusual, and a private one whose link came only from an old lookup through it.
    let dir = tempfile::tempdir().expect("tempdir");
    let b = |s: &str| Digest::of(s.as_bytes());
    let private = image(&b("pc"), &[b("pl")], "");
    let public = image(&b("c"), &[b("l")], "");
    // A third document of an unknown kind naming the private manifest: unknown kinds vouch for
    // nothing, so the private manifest and its blobs stay unlinked here.
    let odd = manifest(
        "application/vnd.example+json",
        format!(
            r#"{{"mediaType":"application/vnd.example+json","manifests":[{{"digest":"{}"}}]}}"#,
            private.digest
        ),
    );
    Store::open(dir.path()).expect("new store");
    let links = [
        ("pub/app", &public.digest),
        ("pub/app", &odd.digest),
        ("pub/app", &private.digest),
        ("pub/app", &b("pl")),
        ("pub/app", &b("l")),
    ];
    write_legacy(dir.path(), &[&public, &private, &odd], &links);
    let s = Store::open(dir.path()).expect("migrating open");
    let has = |kind, d: &Digest| s.has_link(kind, "up", "pub/app", d).expect("has");
    assert!(has(LinkKind::Manifest, &public.digest));
    assert!(has(LinkKind::Manifest, &odd.digest));
    assert!(has(LinkKind::Blob, &b("l")));
    assert!(!has(LinkKind::Manifest, &private.digest));
    assert!(!has(LinkKind::Blob, &b("pl")));
}
