//! `Range` headers against blobs of any length: parsing never panics, and a resolved range is
//! always inside the blob (`start < end <= len`), with a `Content-Range` that says so.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf::http::range::{content_range, ByteRange};

fuzz_target!(|input: (&str, u64)| {
    let (header, len) = input;
    let Some(r) = ByteRange::parse(header) else {
        return;
    };
    if let Some((start, end)) = r.resolve(len) {
        assert!(
            start < end && end <= len,
            "{header:?} on {len}: {start}..{end}"
        );
        assert_eq!(
            content_range(start, end, len),
            format!("bytes {start}-{}/{len}", end - 1)
        );
    }
});
