//! `application/x-www-form-urlencoded` decoding (query strings and OAuth2 form bodies), and
//! the percent-encoding of one query value.

/// Decodes `k=v&k=v` pairs, percent-decoding and mapping `+` to a space. Pairs whose bytes
/// do not decode to UTF-8 are skipped.
pub fn parse(input: &str) -> Vec<(String, String)> {
    input
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((decode(k)?, decode(v)?))
        })
        .collect()
}

/// Percent-decodes one value (`+` is a space; an invalid escape stays as it is); `None` when
/// the bytes are not UTF-8.
pub fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes a query value: unreserved characters and `:` stay as they are (upstream
/// names such as `127.0.0.1:5000` read naturally), every other byte becomes `%XX`.
pub fn encode_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_encoded_and_decode_back() {
        assert_eq!(encode_value("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(encode_value("a b&c/d"), "a%20b%26c%2Fd");
        for v in ["a b&c=d/e?f", "ghcr.io", "x+y%z"] {
            assert_eq!(decode(&encode_value(v)).as_deref(), Some(v));
        }
    }

    #[test]
    fn decodes_pairs() {
        assert_eq!(
            parse("scope=repository%3Alibrary%2Falpine%3Apull&service=wharf&x"),
            vec![
                (
                    "scope".to_string(),
                    "repository:library/alpine:pull".to_string()
                ),
                ("service".to_string(), "wharf".to_string()),
                ("x".to_string(), String::new()),
            ]
        );
        assert_eq!(parse("a=b+c%20d"), vec![("a".into(), "b c d".into())]);
        assert_eq!(parse("a=100%"), vec![("a".into(), "100%".into())]);
        assert_eq!(parse("a=%zz"), vec![("a".into(), "%zz".into())]);
        assert_eq!(parse("a=%ff"), vec![], "not UTF-8");
        assert_eq!(parse(""), vec![]);
    }
}
