//! What `wharf prefetch` shows while it works: progress bars on a terminal, one plain line per
//! event otherwise (CI logs: no escape codes, no carriage returns, nothing redrawn).

use crate::oci::Digest;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

/// One image's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    /// The digest the reference resolved to.
    pub digest: Digest,
    pub manifests: usize,
    pub blobs: usize,
    pub bytes: u64,
}

/// The events of a prefetch run. `i` is the image's position in the list.
pub trait Progress: Send + Sync {
    fn started(&self, i: usize, image: &str);
    /// The manifests are in; `what` says which (`image`, `index: 2 of 5 platforms`).
    fn resolved(&self, i: usize, digest: &Digest, what: &str, blobs: usize, bytes: u64);
    /// `n` more blob bytes arrived.
    fn bytes(&self, i: usize, n: u64);
    fn blob_done(&self, i: usize, digest: &Digest, size: u64);
    fn finished(&self, i: usize, result: &Result<Done, String>);
}

/// Human-readable bytes: `1.5 MiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Line-per-event output for logs.
pub struct Lines {
    out: Mutex<Box<dyn Write + Send>>,
    names: Vec<String>,
}

impl Lines {
    pub fn new(out: Box<dyn Write + Send>, names: Vec<String>) -> Lines {
        Lines {
            out: Mutex::new(out),
            names,
        }
    }

    fn line(&self, i: usize, text: std::fmt::Arguments<'_>) {
        let name = self.names.get(i).map(String::as_str).unwrap_or("?");
        let n = self.names.len();
        if let Ok(mut out) = self.out.lock() {
            // A closed stdout (`| head`) must not stop the prefetch.
            let _ = writeln!(out, "[{}/{n}] {name}: {text}", i + 1);
            let _ = out.flush();
        }
    }
}

impl Progress for Lines {
    fn started(&self, i: usize, _image: &str) {
        self.line(i, format_args!("resolving"));
    }

    fn resolved(&self, i: usize, digest: &Digest, what: &str, blobs: usize, bytes: u64) {
        self.line(
            i,
            format_args!("{digest} ({what}): {blobs} blobs, {}", human(bytes)),
        );
    }

    fn bytes(&self, _i: usize, _n: u64) {}

    fn blob_done(&self, i: usize, digest: &Digest, size: u64) {
        self.line(i, format_args!("blob {digest} {}", human(size)));
    }

    fn finished(&self, i: usize, result: &Result<Done, String>) {
        match result {
            Ok(d) => self.line(
                i,
                format_args!(
                    "done: {} manifests, {} blobs, {}",
                    d.manifests,
                    d.blobs,
                    human(d.bytes)
                ),
            ),
            Err(e) => self.line(i, format_args!("FAILED: {e}")),
        }
    }
}

/// Progress bars (per image and overall) on a terminal.
pub struct Bars {
    /// Owns the drawing of the bars below.
    _multi: MultiProgress,
    images: Vec<ProgressBar>,
    total: ProgressBar,
}

impl Bars {
    pub fn new(names: &[String]) -> Bars {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
        let style = ProgressStyle::with_template(
            "{prefix:<40!} {bar:24.cyan/blue} {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} ETA {eta:>4} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let images = names
            .iter()
            .map(|n| {
                let bar = multi.add(ProgressBar::new(0).with_style(style.clone()));
                bar.set_prefix(n.clone());
                bar.set_message("waiting");
                bar
            })
            .collect();
        let total = multi.add(ProgressBar::new(0).with_style(style));
        total.set_prefix(format!("total ({} images)", names.len()));
        total.enable_steady_tick(Duration::from_millis(200));
        Bars {
            _multi: multi,
            images,
            total,
        }
    }

    fn bar(&self, i: usize) -> Option<&ProgressBar> {
        self.images.get(i)
    }
}

impl Progress for Bars {
    fn started(&self, i: usize, _image: &str) {
        if let Some(b) = self.bar(i) {
            b.set_message("resolving");
        }
    }

    fn resolved(&self, i: usize, _digest: &Digest, what: &str, _blobs: usize, bytes: u64) {
        if let Some(b) = self.bar(i) {
            b.set_length(bytes);
            b.set_message(what.to_string());
            b.reset_eta();
        }
        self.total.inc_length(bytes);
    }

    fn bytes(&self, i: usize, n: u64) {
        if let Some(b) = self.bar(i) {
            b.inc(n);
        }
        self.total.inc(n);
    }

    fn blob_done(&self, _i: usize, _digest: &Digest, _size: u64) {}

    fn finished(&self, i: usize, result: &Result<Done, String>) {
        if let Some(b) = self.bar(i) {
            match result {
                Ok(_) => b.finish_with_message("done"),
                Err(e) => {
                    b.abandon_with_message(format!("FAILED: {e}"));
                }
            }
        }
        if self.images.iter().all(ProgressBar::is_finished) {
            self.total.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_one_per_event_without_escape_codes() {
        let buf = Buf::default();
        let names = vec!["a/b:1".to_string(), "c/d:2".to_string()];
        let p = Lines::new(Box::new(buf.clone()), names);
        let d = Digest::of(b"x");
        p.started(0, "a/b:1");
        p.resolved(0, &d, "image", 2, 3 << 20);
        p.bytes(0, 100);
        p.blob_done(0, &d, 1536);
        p.finished(
            0,
            &Ok(Done {
                digest: d,
                manifests: 1,
                blobs: 2,
                bytes: 3 << 20,
            }),
        );
        p.finished(1, &Err("MANIFEST_UNKNOWN: gone (404)".into()));
        let text = String::from_utf8(buf.0.lock().expect("lock").clone()).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            vec![
                "[1/2] a/b:1: resolving".to_string(),
                format!("[1/2] a/b:1: {d} (image): 2 blobs, 3.0 MiB"),
                format!("[1/2] a/b:1: blob {d} 1.5 KiB"),
                "[1/2] a/b:1: done: 1 manifests, 2 blobs, 3.0 MiB".to_string(),
                "[2/2] c/d:2: FAILED: MANIFEST_UNKNOWN: gone (404)".to_string(),
            ]
        );
        assert!(!text.contains('\x1b') && !text.contains('\r'));
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1024), "1.0 KiB");
        assert_eq!(human(300 << 20), "300.0 MiB");
    }
}
