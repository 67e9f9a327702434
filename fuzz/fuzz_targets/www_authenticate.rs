//! `WWW-Authenticate` values from upstreams: parsing never panics, and a Bearer challenge
//! always has a realm.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf::upstream::challenge::{parse, Challenge};

fuzz_target!(|value: &str| {
    for c in parse(value) {
        match c {
            Challenge::Bearer { realm, .. } => assert!(!realm.is_empty()),
            Challenge::Basic { .. } => {}
            Challenge::Other(scheme) => assert!(!scheme.is_empty()),
        }
    }
});
