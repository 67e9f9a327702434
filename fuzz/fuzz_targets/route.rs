//! Request paths and query strings: `Route::parse` and `Query::parse` never panic, and what
//! they accept is what was written (nothing invented, nothing unsafe passed on upstream).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf::http::route::{parse, Query, Route};

fuzz_target!(|input: &str| {
    let (path, query) = input.split_once('?').unwrap_or((input, ""));
    if let Ok(route) = parse(path) {
        let last = path.rsplit('/').next().unwrap_or("");
        match route {
            Route::Manifest { name, reference } => {
                assert_eq!(reference.to_string(), last);
                assert!(!name.is_empty() && path.contains(name));
            }
            Route::Blob { name, digest } | Route::Referrers { name, digest } => {
                assert_eq!(digest.to_string(), last);
                assert!(!name.is_empty() && path.contains(name));
            }
            Route::TagsList { name } | Route::Upload { name, .. } => {
                assert!(!name.is_empty() && path.contains(name));
            }
            Route::Base | Route::Catalog | Route::Token => {}
        }
    }
    let q = Query::parse(Some(query));
    if let Some(p) = q.pagination() {
        assert!(
            p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-%=&".contains(&b)),
            "unsafe pagination forwarded: {p:?}"
        );
    }
    let _ = q.ns.as_deref().map(str::len);
});
