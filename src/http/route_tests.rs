use super::*;

#[test]
fn the_token_endpoint_is_a_route() {
    assert!(matches!(parse("/token"), Ok(Route::Token)));
    assert!(parse("/token/x").is_err());
    assert!(parse("/v2/token").is_err());
}

#[test]
fn pushes_are_told_from_reads() {
    let d = crate::oci::Digest::of(b"x");
    let blob = Route::Blob {
        name: "a",
        digest: d,
    };
    let manifest = Route::Manifest {
        name: "a",
        reference: crate::oci::Reference::Digest(d),
    };
    let upload = Route::Upload {
        name: "a",
        session: None,
    };
    assert!(is_push(&http::Method::GET, Some(&upload)));
    assert!(is_push(&http::Method::PUT, Some(&manifest)));
    assert!(is_push(&http::Method::DELETE, Some(&manifest)));
    assert!(!is_push(&http::Method::GET, Some(&manifest)));
    assert!(!is_push(&http::Method::POST, Some(&manifest)));
    assert!(is_push(&http::Method::DELETE, Some(&blob)));
    assert!(!is_push(&http::Method::PUT, Some(&blob)));
    assert!(!is_push(&http::Method::DELETE, Some(&Route::Catalog)));
    assert!(!is_push(&http::Method::PUT, None));
}

const D: &str = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

fn code(r: Result<Route<'_>>) -> ErrorCode {
    match r {
        Err(Error::Client { code, .. }) => code,
        other => panic!("expected a client error, got {other:?}"),
    }
}

#[test]
fn base() {
    assert_eq!(parse("/v2/").ok(), Some(Route::Base));
    assert_eq!(parse("/v2").ok(), Some(Route::Base));
}

#[test]
fn manifest_with_many_slashes_in_the_name() {
    let r = parse("/v2/ghcr.io/org/team/app/manifests/v1.2.3").expect("route");
    match r {
        Route::Manifest { name, reference } => {
            assert_eq!(name, "ghcr.io/org/team/app");
            assert_eq!(reference.to_string(), "v1.2.3");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn manifest_by_digest_and_blob() {
    let p = format!("/v2/library/alpine/manifests/{D}");
    let r = parse(&p).expect("route");
    assert!(matches!(
        r,
        Route::Manifest {
            name: "library/alpine",
            reference: Reference::Digest(_)
        }
    ));
    let p = format!("/v2/a/b/blobs/{D}");
    let r = parse(&p).expect("route");
    assert_eq!(
        r,
        Route::Blob {
            name: "a/b",
            digest: Digest::parse(D).expect("digest")
        }
    );
}

#[test]
fn a_name_may_contain_the_word_manifests() {
    let p = format!("/v2/x/manifests/y/blobs/{D}");
    let r = parse(&p).expect("route");
    assert!(matches!(
        r,
        Route::Blob {
            name: "x/manifests/y",
            ..
        }
    ));
}

#[test]
fn tags_uploads_referrers_catalog() {
    assert_eq!(
        parse("/v2/a/b/tags/list").ok(),
        Some(Route::TagsList { name: "a/b" })
    );
    assert_eq!(
        parse("/v2/a/blobs/uploads/").ok(),
        Some(Route::Upload {
            name: "a",
            session: None
        })
    );
    assert_eq!(
        parse("/v2/a/blobs/uploads").ok(),
        Some(Route::Upload {
            name: "a",
            session: None
        })
    );
    assert_eq!(
        parse("/v2/a/b/blobs/uploads/123-abc").ok(),
        Some(Route::Upload {
            name: "a/b",
            session: Some("123-abc")
        })
    );
    assert_eq!(
        parse("/v2/a/blobs/uploads/x/y=").ok(),
        Some(Route::Upload {
            name: "a",
            session: Some("x/y=")
        }),
        "session ids may hold '/'"
    );
    assert_eq!(
        code(parse("/v2/a/blobs/uploads/x/../y")),
        ErrorCode::BlobUploadInvalid
    );
    assert_eq!(
        code(parse("/v2/a/blobs/uploads/x%20y")),
        ErrorCode::BlobUploadInvalid
    );
    assert_eq!(
        code(parse("/v2/a/blobs/uploadsx")),
        ErrorCode::DigestInvalid
    );
    assert!(matches!(
        parse(&format!("/v2/a/referrers/{D}")),
        Ok(Route::Referrers { name: "a", .. })
    ));
    assert_eq!(parse("/v2/_catalog").ok(), Some(Route::Catalog));
}

#[test]
fn invalid_input_is_rejected_with_the_right_code() {
    assert_eq!(
        code(parse("/v2/a/blobs/sha256:abc")),
        ErrorCode::DigestInvalid
    );
    assert_eq!(
        code(parse("/v2/a/blobs/..%2f..%2fetc")),
        ErrorCode::DigestInvalid
    );
    assert_eq!(
        code(parse(&format!("/v2/a/blobs/sha512:{}", "a".repeat(128)))),
        ErrorCode::Unsupported
    );
    assert_eq!(
        code(parse("/v2/a/manifests/-bad")),
        ErrorCode::ManifestUnknown
    );
    assert_eq!(code(parse("/v2/a/manifests/")), ErrorCode::ManifestUnknown);
    assert_eq!(code(parse("/v3/a/manifests/x")), ErrorCode::NameUnknown);
    assert_eq!(code(parse("/v2/a/unknown/x")), ErrorCode::NameUnknown);
    assert_eq!(code(parse("/v2//manifests/x")), ErrorCode::NameUnknown);
    assert_eq!(code(parse("/v2/manifests/x")), ErrorCode::NameUnknown);
}

#[test]
fn query_forms() {
    let q = Query::parse(Some("ns=ghcr.io&n=10&last=v1"));
    assert_eq!(q.ns.as_deref(), Some("ghcr.io"));
    assert_eq!(q.pagination().as_deref(), Some("n=10&last=v1"));
    let q = Query::parse(Some("ns=docker.io"));
    assert_eq!(q.ns.as_deref(), Some("docker.io"));
    assert_eq!(q.pagination(), None);
    let q = Query::parse(Some("n=1;rm&last=a&b"));
    assert_eq!(q.pagination().as_deref(), Some("last=a"));
    assert_eq!(Query::parse(None), Query::default());
    assert_eq!(Query::parse(Some("ns=")).ns, None);
    assert_eq!(
        Query::parse(Some("ns=127.0.0.1%3A5000")).ns.as_deref(),
        Some("127.0.0.1:5000"),
        "containerd percent-encodes host:port"
    );
    assert_eq!(Query::parse(Some("ns=a%zz")).ns.as_deref(), Some("a%zz"));
}
