//! Manifests from upstreams: the strict parser never panics, refuses what is over the size
//! limit, and what it accepts reads the same again as the media type it found (the kind is
//! stable), with links only of that kind's fields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf::oci::manifest::{parse, parse_refs, ManifestError, MAX_MANIFEST_SIZE};

fuzz_target!(|bytes: &[u8]| {
    match parse_refs(bytes) {
        Ok(refs) => {
            assert!(bytes.len() <= MAX_MANIFEST_SIZE);
            if let Some(mt) = refs.media_type.as_deref() {
                let again = parse(bytes, Some(mt)).expect("reads again as its own type");
                assert_eq!(again.links(), refs.links());
            }
            let links = refs.links();
            assert!(links.blobs.is_empty() || links.manifests.is_empty());
        }
        Err(ManifestError::TooLarge(n)) => assert!(n > MAX_MANIFEST_SIZE && n == bytes.len()),
        Err(ManifestError::Json(_) | ManifestError::Digest { .. } | ManifestError::Ambiguous(_)) => {
        }
    }
});
