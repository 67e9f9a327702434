//! Manifests from upstreams: reference extraction never panics, refuses what is over the
//! size limit, and agrees with the media type lookup.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf::oci::manifest::{descriptor_media_type, parse_refs, ManifestError, MAX_MANIFEST_SIZE};

fuzz_target!(|bytes: &[u8]| {
    match parse_refs(bytes) {
        Ok(refs) => {
            assert!(bytes.len() <= MAX_MANIFEST_SIZE);
            assert_eq!(descriptor_media_type(bytes), refs.media_type);
        }
        Err(ManifestError::TooLarge(n)) => assert!(n > MAX_MANIFEST_SIZE && n == bytes.len()),
        Err(ManifestError::Json(_) | ManifestError::Digest { .. }) => {
            assert_eq!(descriptor_media_type(bytes), None);
        }
    }
});
