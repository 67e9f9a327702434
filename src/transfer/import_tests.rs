use super::*;
use crate::oci::media;
use crate::store::LinkKind;

/// Writes `bytes` as a blob of the layout at `dir`; its digest.
fn blob(dir: &Path, bytes: &[u8]) -> Digest {
    let d = Digest::of(bytes);
    let p = dir.join("blobs/sha256");
    std::fs::create_dir_all(&p).expect("mkdir");
    std::fs::write(p.join(d.hex()), bytes).expect("write");
    d
}

#[test]
fn an_ambiguous_manifest_is_refused_and_nothing_is_stored() {
    let tmp = tempfile::tempdir().expect("tmp");
    let layout = tmp.path().join("layout");
    std::fs::create_dir_all(&layout).expect("mkdir");
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("w");
    let (config, layer, other) = (
        blob(&layout, b"{}"),
        blob(&layout, b"layer"),
        blob(&layout, b"someone else's layer"),
    );
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"digest":"{config}","size":2}},"layers":[{{"digest":"{layer}","size":5}}],"blobs":[{{"digest":"{other}","size":20}}]}}"#,
        media::OCI_MANIFEST
    );
    let m = blob(&layout, manifest.as_bytes());
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{m}","size":{},"annotations":{{"{WHARF_REF}":"up.test/org/app:v1"}}}}]}}"#,
        media::OCI_MANIFEST,
        manifest.len()
    );
    std::fs::write(layout.join("index.json"), index).expect("w");
    let store = Store::open(&tmp.path().join("data")).expect("store");
    let e = import(&store, &layout, None, &|_| None).expect_err("refused");
    assert!(e.to_string().contains("ambiguous"), "{e}");
    assert_eq!(
        store.get_tag("up.test", "org/app", "v1").expect("tag"),
        None
    );
    for d in [&m, &other] {
        for kind in [LinkKind::Blob, LinkKind::Manifest] {
            assert!(!store.has_link(kind, "up.test", "org/app", d).expect("link"));
        }
    }
    assert!(!store
        .is_imported("up.test", "org/app", &other)
        .expect("imported"));
}
