//! The `wharf prefetch` command around [`super::run`]: reading the image list, choosing the
//! output, the summary and the exit status.

use super::progress::{human, Bars, Lines, Progress};
use super::spec::{read_list, ImageSpec, Platforms};
use super::{connect, run, Options};
use crate::config::Config;
use crate::upstream::Credentials;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::time::Instant;

/// Exit status when some image failed.
pub const EXIT_SOME_FAILED: u8 = 1;
/// Exit status when prefetch could not start (no server, no list).
pub const EXIT_CANNOT_START: u8 = 2;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Bars when stderr is a terminal, lines otherwise.
    Auto,
    Bars,
    Lines,
}

pub struct Args {
    pub images: Vec<String>,
    pub file: Option<PathBuf>,
    pub platforms: Platforms,
    pub concurrency: usize,
    pub server: Option<String>,
    pub creds: Credentials,
    pub output: Output,
}

/// Runs the command; returns the process exit status.
pub async fn main(config: Config, args: Args) -> u8 {
    let mut names = args.images.clone();
    if let Some(f) = &args.file {
        match std::fs::read_to_string(f) {
            Ok(text) => names.extend(read_list(&text)),
            Err(e) => {
                eprintln!("{}: cannot read the image list: {e}", f.display());
                return EXIT_CANNOT_START;
            }
        }
    }
    if names.is_empty() {
        eprintln!("no images to prefetch");
        return EXIT_CANNOT_START;
    }
    let specs: Vec<Result<ImageSpec, String>> =
        names.iter().map(|n| ImageSpec::parse(n, &config)).collect();
    let shown: Vec<String> = specs
        .iter()
        .zip(&names)
        .map(|(s, n)| {
            s.as_ref()
                .map(ToString::to_string)
                .unwrap_or_else(|_| n.clone())
        })
        .collect();
    let conn = match connect(&config, args.server.as_deref(), args.creds).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot start prefetching: {e}");
            return EXIT_CANNOT_START;
        }
    };
    let bars = match args.output {
        Output::Bars => true,
        Output::Lines => false,
        Output::Auto => std::io::stderr().is_terminal(),
    };
    println!("{} ({})", conn.how, args.platforms);
    let progress: Arc<dyn Progress> = if bars {
        Arc::new(Bars::new(&shown))
    } else {
        Arc::new(Lines::new(Box::new(std::io::stdout()), shown.clone()))
    };
    let started = Instant::now();
    let options = Options {
        platforms: args.platforms,
        concurrency: args.concurrency,
    };
    let results = run(conn.client.clone(), specs, options, progress).await;
    conn.close().await;
    let ok: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    let bytes: u64 = ok.iter().map(|d| d.bytes).sum();
    println!(
        "prefetched {} of {} images ({} blobs, {}) in {:.1}s",
        ok.len(),
        results.len(),
        ok.iter().map(|d| d.blobs).sum::<usize>(),
        human(bytes),
        started.elapsed().as_secs_f64()
    );
    let mut failed = 0;
    for (name, r) in shown.iter().zip(&results) {
        if let Err(e) = r {
            failed += 1;
            eprintln!("failed: {name}: {e}");
        }
    }
    if failed == 0 {
        0
    } else {
        EXIT_SOME_FAILED
    }
}
