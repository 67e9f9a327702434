//! Just enough tar: ustar headers out; ustar, GNU long names and PAX in.

use super::*;
use crate::error::Result;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

// ---------------------------------------------------------------- tar

pub(super) fn octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let s = format!("{value:0width$o}");
    field[..width].copy_from_slice(&s.as_bytes()[s.len() - width..]);
    field[width] = 0;
}

pub(super) fn tar_header(w: &mut impl Write, name: &str, size: u64, kind: u8) -> Result<()> {
    let mut h = [0u8; 512];
    let bytes = name.as_bytes();
    if bytes.len() > 100 {
        return Err(err(format!("tar member name too long: {name}")));
    }
    h[..bytes.len()].copy_from_slice(bytes);
    octal(&mut h[100..108], if kind == b'5' { 0o755 } else { 0o644 });
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    if size >= 0o77777777777 {
        return Err(err(format!(
            "{name}: {size} bytes is too large for a ustar header"
        )));
    }
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], 0);
    h[148..156].fill(b' ');
    h[156] = kind;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    w.write_all(&h)?;
    Ok(())
}

pub(super) fn tar_dir(w: &mut impl Write, name: &str) -> Result<()> {
    tar_header(w, name, 0, b'5')
}

pub(super) fn tar_pad(w: &mut impl Write, size: u64) -> Result<()> {
    let rem = (size % 512) as usize;
    if rem != 0 {
        w.write_all(&[0u8; 512][..512 - rem])?;
    }
    Ok(())
}

pub(super) fn parse_octal(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        // GNU base-256.
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(*b))?;
        }
        return Some(v);
    }
    let s: String = field
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| *b as char)
        .collect();
    let s = s.trim();
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

pub(super) fn cstr(field: &[u8]) -> String {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

pub(super) fn clean_name(name: &str) -> String {
    name.trim_start_matches("./")
        .trim_start_matches('/')
        .to_string()
}

/// The regular files of a tar archive: name → (offset of the content, size).
pub(super) fn index_tar(f: &mut File) -> Result<HashMap<String, (u64, u64)>> {
    let mut out = HashMap::new();
    let total = f.metadata()?.len();
    let mut pos = 0u64;
    let mut next_name: Option<String> = None;
    let mut next_size: Option<u64> = None;
    let bad = |what: &str| err(format!("not a valid tar archive: {what}"));
    loop {
        let mut h = [0u8; 512];
        f.seek(SeekFrom::Start(pos))?;
        match f.read_exact(&mut h) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e.into()),
        }
        if h.iter().all(|b| *b == 0) {
            break;
        }
        let stored: u32 = parse_octal(&h[148..156]).ok_or_else(|| bad("checksum"))? as u32;
        let mut sum_h = h;
        sum_h[148..156].fill(b' ');
        let sum: u32 = sum_h.iter().map(|b| u32::from(*b)).sum();
        if sum != stored {
            return Err(bad(&format!("header checksum mismatch at offset {pos}")));
        }
        let mut size = parse_octal(&h[124..136]).ok_or_else(|| bad("size"))?;
        if let Some(s) = next_size.take() {
            size = s;
        }
        let kind = h[156];
        let mut name = cstr(&h[..100]);
        if &h[257..262] == b"ustar" {
            let prefix = cstr(&h[345..500]);
            if !prefix.is_empty() {
                name = format!("{prefix}/{name}");
            }
        }
        if let Some(n) = next_name.take() {
            name = n;
        }
        let data = pos + 512;
        if data.checked_add(size).is_none_or(|end| end > total) {
            return Err(bad(&format!("{name} is truncated")));
        }
        match kind {
            b'0' | 0 | b'7' => {
                out.insert(clean_name(&name), (data, size));
            }
            b'x' | b'L' => {
                if size > 1 << 20 {
                    return Err(bad("extended header too large"));
                }
                let mut buf = vec![0u8; size as usize];
                f.read_exact(&mut buf)?;
                if kind == b'L' {
                    next_name = Some(cstr(&buf));
                } else {
                    for (k, v) in parse_pax(&buf) {
                        match k.as_str() {
                            "path" => next_name = Some(v),
                            "size" => next_size = v.parse().ok(),
                            _ => {}
                        }
                    }
                }
            }
            _ => {}
        }
        pos = data + size.div_ceil(512) * 512;
    }
    Ok(out)
}

pub(super) fn parse_pax(mut buf: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let Some(sp) = buf.iter().position(|b| *b == b' ') else {
            break;
        };
        let Some(len) = std::str::from_utf8(&buf[..sp])
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
        else {
            break;
        };
        if len <= sp + 1 || len > buf.len() {
            break;
        }
        let rec = &buf[sp + 1..len];
        let rec = rec.strip_suffix(b"\n").unwrap_or(rec);
        if let Some(eq) = rec.iter().position(|b| *b == b'=') {
            out.push((
                String::from_utf8_lossy(&rec[..eq]).into_owned(),
                String::from_utf8_lossy(&rec[eq + 1..]).into_owned(),
            ));
        }
        buf = &buf[len..];
    }
    out
}
