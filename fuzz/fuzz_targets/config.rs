//! Config files: loading never panics, and a config that validates can be used: every
//! duration can be added to the clock (the fill deadline, token expiry, the breaker's
//! cooldown all do), the watermarks are ordered, and at most one upstream is the default.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant, SystemTime};
use wharf::config::Config;

fuzz_target!(|text: &str| {
    let Ok(c) = Config::from_toml_str(text) else {
        return;
    };
    let mut durations: Vec<Duration> = vec![
        c.header_read_timeout,
        c.fill.timeout,
        c.fill.idle_timeout,
        c.auth.token_ttl,
        c.auth.authz_ttl,
        c.auth.offline_grace,
    ];
    for u in &c.upstreams {
        let p = &u.policy;
        durations.extend([
            u.tag_ttl,
            p.stale_if_error,
            p.negative_ttl,
            p.connect_timeout,
            p.response_timeout,
            p.breaker_cooldown,
        ]);
    }
    let (now, wall) = (Instant::now(), SystemTime::now());
    for d in durations {
        assert!(now.checked_add(d).is_some(), "{d:?} overflows an Instant");
        assert!(
            wall.checked_add(d).is_some(),
            "{d:?} overflows the wall clock"
        );
    }
    assert!(c.cache.low_watermark < c.cache.high_watermark);
    assert!(c.cache.max_size > 0);
    assert!(c.upstreams.iter().filter(|u| u.default).count() <= 1);
});
