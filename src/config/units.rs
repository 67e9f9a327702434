//! Size and duration values.
//!
//! Sizes are exact: decimal fractions are computed in integer arithmetic and rounded
//! down to whole bytes; a size is always > 0 and fits in u64.

use std::time::Duration;

const SIZE_HINT: &str =
    "expected a size like \"50GiB\" or \"1.5TB\" (units: B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)";

fn unit_multiplier(unit: &str) -> Option<u128> {
    Some(match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return None,
    })
}

/// Parses a size: integer bytes, or a (decimal) number and a unit.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = (&t[..split], t[split..].trim());
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let well_formed = !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
        && !(num.contains('.') && frac.is_empty());
    let Some(mult) = unit_multiplier(unit).filter(|_| well_formed) else {
        return Err(format!("{SIZE_HINT}, got {s:?}"));
    };
    if int.len() > 20 || frac.len() > 12 {
        return Err(format!("size {s:?} is too large or too precise"));
    }
    // At most 32 digits: fits in u128.
    let mantissa: u128 = format!("{int}{frac}")
        .parse()
        .map_err(|_| format!("{SIZE_HINT}, got {s:?}"))?;
    let bytes = mantissa
        .checked_mul(mult)
        .map(|v| v / 10u128.pow(frac.len() as u32))
        .and_then(|v| u64::try_from(v).ok())
        .ok_or_else(|| format!("size {s:?} is too large"))?;
    if bytes == 0 {
        return Err(format!("size must be greater than 0, got {s:?}"));
    }
    Ok(bytes)
}

/// The longest duration a config may give: every duration is added to the clock somewhere
/// (deadlines, expiries), and `Instant + 300000000000years` panics.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Parses a duration such as "30s", "10m", "24h", "7d" or "1h 30m"; at most 100 years.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim()).map_err(|e| {
        format!("expected a duration like \"30s\", \"10m\", \"24h\" or \"7d\", got {s:?} ({e})")
    })?;
    if d > MAX_DURATION {
        return Err(format!("{s:?} is too long: at most 100 years (36500d)"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("50GiB"), Ok(53_687_091_200));
        assert_eq!(parse_size("1.5KiB"), Ok(1536));
        assert_eq!(parse_size("10"), Ok(10));
        assert_eq!(parse_size("10B"), Ok(10));
        assert_eq!(parse_size(" 2 mb "), Ok(2_000_000));
        assert_eq!(parse_size("1.5TB"), Ok(1_500_000_000_000));
        assert_eq!(parse_size("1TiB"), Ok(1 << 40));
        assert_eq!(parse_size("0.1KiB"), Ok(102)); // rounded down
        assert_eq!(parse_size("3gb"), Ok(3_000_000_000));
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
    }

    #[test]
    fn bad_sizes() {
        for bad in [
            "",
            "0",
            "0GiB",
            "0.0001B",
            "10XB",
            "GiB",
            "-1",
            "1..5GiB",
            "1.GiB",
            ".5GiB",
            "1.5.5",
            "1e9",
            "1 G",
            "18446744073709551616",
            "99999999999TiB",
            "1,000",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
        assert!(parse_size("10XB").unwrap_err().contains("10XB"));
        assert!(parse_size("0").unwrap_err().contains("greater than 0"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in ["", "10", "abc", "10 parsecs", "-5s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_duration("36500d"), Ok(MAX_DURATION));
    }

    /// Regression (the `config` fuzz target's property): a duration that validated could not
    /// be added to the clock, so the first fill panicked.
    #[test]
    fn durations_past_100_years_are_refused() {
        for bad in [
            "36501d",
            "101years",
            "300000000000years",
            "18446744073709551615s",
        ] {
            let e = parse_duration(bad).unwrap_err();
            assert!(
                e.contains("too long") || e.contains("expected"),
                "{bad}: {e}"
            );
        }
        let e = crate::config::Config::from_toml_str(
            "[fill]\ntimeout = \"300000000000years\"\n[[upstream]]\nurl = \"https://r.example\"\ntag_ttl = \"200years\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("fill.timeout: \"300000000000years\" is too long"),
            "{e}"
        );
        assert!(e.contains("upstream[0].tag_ttl"), "{e}");
        assert!(tokio::time::Instant::now()
            .checked_add(MAX_DURATION)
            .is_some());
    }
}
