use super::*;

fn d(s: &str) -> Digest {
    Digest::of(s.as_bytes())
}

fn image(extra: &str) -> String {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":7}},
        "layers":[{{"mediaType":"x","digest":"{}","size":1,"annotations":{{"a":"b"}}}},{{"digest":"{}","size":2}}]{extra}}}"#,
        media::OCI_MANIFEST,
        d("c"),
        d("l1"),
        d("l2"),
    )
}

#[test]
fn oci_image_manifest() {
    let subject = format!(
        r#","subject":{{"digest":"{}","size":3}},"annotations":{{"k":"v"}},"unknownField":[1,2]"#,
        d("s")
    );
    let json = image(&subject);
    let r = parse(json.as_bytes(), Some(media::OCI_MANIFEST)).unwrap();
    assert_eq!(r.media_type.as_deref(), Some(media::OCI_MANIFEST));
    assert_eq!(r.config, Some(d("c")));
    assert_eq!(r.layers, vec![d("l1"), d("l2")]);
    assert!(r.manifests.is_empty());
    assert_eq!(r.subject, Some(d("s")));
    let links = r.links();
    assert_eq!(links.blobs, vec![d("l1"), d("l2"), d("c")]);
    assert!(links.manifests.is_empty(), "a subject is never a link");
}

#[test]
fn fields_of_another_kind_are_refused() {
    let private = d("private");
    let shapes = [
        // An image manifest with extra blobs, manifests or fsLayers.
        image(&format!(r#","blobs":[{{"digest":"{private}"}}]"#)),
        image(&format!(r#","manifests":[{{"digest":"{private}"}}]"#)),
        image(&format!(r#","fsLayers":[{{"blobSum":"{private}"}}]"#)),
        // A Docker schema 2 manifest with fsLayers.
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"digest":"{}"}},"layers":[],"fsLayers":[{{"blobSum":"{private}"}}]}}"#,
            media::DOCKER_MANIFEST_V2,
            d("c")
        ),
        // An index with layers, config or blobs.
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[],"layers":[{{"digest":"{private}"}}]}}"#,
            media::OCI_INDEX
        ),
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[],"config":{{"digest":"{private}"}}}}"#,
            media::DOCKER_MANIFEST_LIST
        ),
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[],"blobs":[{{"digest":"{private}"}}]}}"#,
            media::OCI_INDEX
        ),
        // Schema 1 with layers.
        format!(r#"{{"schemaVersion":1,"fsLayers":[],"layers":[{{"digest":"{private}"}}]}}"#),
        // No mediaType, both shapes at once.
        format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"{}"}},"layers":[],"manifests":[{{"digest":"{private}"}}]}}"#,
            d("c")
        ),
    ];
    for s in &shapes {
        match parse(s.as_bytes(), None) {
            Err(ManifestError::Ambiguous(_)) => {}
            other => panic!("{s}: {other:?}"),
        }
    }
}

#[test]
fn declared_and_served_types_must_agree() {
    let json = image("");
    match parse(json.as_bytes(), Some(media::OCI_INDEX)) {
        Err(ManifestError::Ambiguous(m)) => assert!(m.contains("served as"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Case and parameters do not matter; untyped answers do not count.
    let upper = media::OCI_MANIFEST.to_ascii_uppercase() + "; charset=utf-8";
    assert!(parse(json.as_bytes(), Some(&upper)).is_ok());
    assert!(parse(json.as_bytes(), Some("application/json")).is_ok());
    assert!(parse(json.as_bytes(), Some("text/plain")).is_ok());
    // Without a declared type, the served type decides the kind and its fields.
    let bare = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"digest":"{}"}}]}}"#,
        d("a")
    );
    let r = parse(bare.as_bytes(), Some(media::DOCKER_MANIFEST_LIST)).unwrap();
    assert_eq!(r.media_type.as_deref(), Some(media::DOCKER_MANIFEST_LIST));
    assert_eq!(r.links().manifests, vec![d("a")]);
    assert!(matches!(
        parse(bare.as_bytes(), Some(media::OCI_MANIFEST)),
        Err(ManifestError::Ambiguous(_))
    ));
}

#[test]
fn index_and_inference() {
    let json = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"digest":"{}","platform":{{"os":"linux"}}}},{{"digest":"sha512:{}"}},{{"digest":"{}"}}]}}"#,
        d("a"),
        "ab".repeat(64),
        d("b")
    );
    let r = parse_refs(json.as_bytes()).unwrap();
    assert_eq!(r.media_type.as_deref(), Some(media::OCI_INDEX));
    assert_eq!(r.manifests, vec![d("a"), d("b")]); // sha512 skipped
    assert_eq!(r.links().manifests, vec![d("a"), d("b")]);
    assert!(r.links().blobs.is_empty(), "index children are never blobs");

    let img = format!(
        r#"{{"schemaVersion":2,"config":{{"digest":"{}"}},"layers":[]}}"#,
        d("c")
    );
    let r = parse_refs(img.as_bytes()).unwrap();
    assert_eq!(r.media_type.as_deref(), Some(media::OCI_MANIFEST));
    let r = parse_refs(br#"{"schemaVersion":2}"#).unwrap();
    assert_eq!(r.media_type, None);
    assert_eq!(r.links(), Links::default());
}

#[test]
fn unknown_kinds_reference_nothing() {
    let json = format!(
        r#"{{"mediaType":"application/vnd.example.thing+json","layers":[{{"digest":"{}"}}],"subject":{{"digest":"{}"}}}}"#,
        d("l"),
        d("s")
    );
    let r = parse_refs(json.as_bytes()).unwrap();
    assert_eq!(
        r.media_type.as_deref(),
        Some("application/vnd.example.thing+json")
    );
    assert_eq!(r.links(), Links::default());
    assert_eq!(r.subject, None);
}

#[test]
fn artifact_manifest() {
    let json = format!(
        r#"{{"mediaType":"{}","artifactType":"x","blobs":[{{"digest":"{}"}}],"subject":{{"digest":"{}"}}}}"#,
        media::OCI_ARTIFACT,
        d("b"),
        d("s")
    );
    let r = parse_refs(json.as_bytes()).unwrap();
    assert_eq!(r.media_type.as_deref(), Some(media::OCI_ARTIFACT));
    assert_eq!(r.layers, vec![d("b")]);
    assert_eq!(r.subject, Some(d("s")));
    assert_eq!(r.config, None);
}

#[test]
fn docker_schema1() {
    let body = |sigs: &str| {
        format!(
            r#"{{"schemaVersion":1,"name":"library/x","tag":"1","fsLayers":[{{"blobSum":"{}"}},{{"blobSum":"{}"}}],"history":[]{sigs}}}"#,
            d("x"),
            d("x")
        )
    };
    let r = parse_refs(body("").as_bytes()).unwrap();
    assert_eq!(r.media_type.as_deref(), Some(media::DOCKER_MANIFEST_V1));
    assert_eq!(r.layers, vec![d("x"), d("x")]); // duplicates kept
    let signed = body(r#","signatures":[{"header":{},"signature":"abc","protected":"p"}]"#);
    let r = parse(signed.as_bytes(), Some(media::DOCKER_MANIFEST_V1_SIGNED)).unwrap();
    assert_eq!(
        r.media_type.as_deref(),
        Some(media::DOCKER_MANIFEST_V1_SIGNED)
    );
    assert_eq!(r.links().blobs, vec![d("x"), d("x")]);
}

#[test]
fn foreign_layers_are_not_linked() {
    let dg = |n: u8| format!("sha256:{}", format!("{n:02x}").repeat(32));
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
        "config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{}","size":1}},
        "layers":[
          {{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"{}","size":1}},
          {{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"{}","size":1}},
          {{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":1,"urls":["https://x"]}},
          {{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip","digest":"{}","size":1}}
        ]}}"#,
        dg(1),
        dg(2),
        dg(3),
        dg(4),
        dg(5)
    );
    let linked: Vec<String> = parse_refs(m.as_bytes())
        .unwrap()
        .links()
        .blobs
        .iter()
        .map(|x| x.to_string())
        .collect();
    assert_eq!(linked, vec![dg(2), dg(1)]);
}

#[test]
fn errors() {
    assert!(matches!(
        parse_refs(b"not json"),
        Err(ManifestError::Json(_))
    ));
    assert!(matches!(parse_refs(b"[]"), Err(ManifestError::Json(_))));
    assert!(matches!(parse_refs(b""), Err(ManifestError::Json(_))));
    assert!(matches!(
        parse_refs(br#"{"layers":[{"size":1}]}"#),
        Err(ManifestError::Json(_))
    ));
    let bad = format!(
        r#"{{"config":{{"digest":"{}"}},"layers":[{{"digest":"{}"}},{{"digest":"sha256:zz"}}]}}"#,
        d("c"),
        d("a")
    );
    match parse_refs(bad.as_bytes()) {
        Err(ManifestError::Digest { field, error }) => {
            assert_eq!(field, "layers[1]");
            assert!(matches!(error, DigestError::Invalid(_)));
        }
        other => panic!("{other:?}"),
    }
    let bad_config = format!(
        r#"{{"mediaType":"{}","config":{{"digest":"nope"}},"layers":[]}}"#,
        media::OCI_MANIFEST
    );
    assert!(matches!(
        parse_refs(bad_config.as_bytes()),
        Err(ManifestError::Digest { .. })
    ));
    let huge = vec![b' '; MAX_MANIFEST_SIZE + 1];
    assert_eq!(
        parse_refs(&huge),
        Err(ManifestError::TooLarge(MAX_MANIFEST_SIZE + 1))
    );
}
