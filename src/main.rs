//! The `wharf` command: thin on purpose; everything lives in the library.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use wharf::config::{self, Config};

/// Exit status for a configuration that does not validate (EX_CONFIG is 78; sysexits'
/// EX_USAGE, 64, is what the operator docs promise for "bad config or usage").
const EXIT_BAD_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "wharf",
    version,
    about = "A pull-through caching proxy for OCI registries"
)]
struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the mirror (with no --config: the embedded default, public registries, ./wharf-data).
    Serve {
        /// TOML configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Never contact any upstream: serve the cache only (overrides the config's `offline`).
        #[arg(long)]
        offline: bool,
    },
    /// Run one eviction pass now (Wharf must not be running on the same data_dir).
    Gc {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Evict down to this size (e.g. "10GiB"); default: the low watermark.
        #[arg(long)]
        to: Option<String>,
    },
    /// Verify every cached blob and the metadata (Wharf must not be running on the same
    /// data_dir). Exit status 0: all well (or all repaired), 1: problems found.
    Fsck {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Quarantine corrupt files, drop records without files, record unrecorded files.
        #[arg(long)]
        repair: bool,
    },
    /// List the cached images (tag, digest, size, when last confirmed upstream).
    Ls {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Cached bytes per upstream and repository.
    Du {
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Write cached images as an OCI image layout (a directory, or a tar archive when the
    /// output ends in `.tar`) for an air-gapped site (through the running Wharf's control
    /// socket when one holds the data_dir).
    Export {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Images as `wharf ls` prints them (`<upstream>/<repo>:<tag>`) or as users write
        /// them (`alpine:3.20`).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        images: Vec<String>,
        /// Every cached tag.
        #[arg(long)]
        all: bool,
        /// Output directory, or `FILE.tar`.
        #[arg(long, short)]
        output: PathBuf,
    },
    /// Store the images of an OCI image layout (directory or tar archive) in the cache and make
    /// them (exactly the imported manifests and blobs) readable by anyone (through the running Wharf's control socket when
    /// one holds the data_dir).
    Import {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The layout directory or tar archive.
        path: PathBuf,
        /// `<upstream>/<repo>` for entries whose name is only a tag.
        #[arg(long)]
        name: Option<String>,
    },
    /// Pull whole images into the cache through Wharf's own fill path: through the Wharf
    /// running on the config's data_dir if there is one, else directly into the data_dir.
    /// Exit status 0: every image prefetched; 1: some failed; 2: could not start.
    Prefetch(PrefetchArgs),
    /// Look into and control the cache of a running Wharf through its admin API
    /// (`[admin] token_file`). Exit status 0: done; 1: failed (one line says why).
    Cache(wharf::cachectl::CacheArgs),
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

// The arguments of `wharf prefetch` (the variant's doc comment is its help).
#[derive(clap::Args)]
struct PrefetchArgs {
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Images as users write them: `alpine`, `ghcr.io/org/app:1.2`,
    /// `<upstream>/<repo>@sha256:...`.
    #[arg(required_unless_present = "file")]
    images: Vec<String>,
    /// A file with one image per line (`#` comments).
    #[arg(long, short)]
    file: Option<PathBuf>,
    /// Platforms to take from multi-platform images (comma-separated; default: this
    /// machine's, e.g. linux/amd64).
    #[arg(long, conflicts_with = "all_platforms")]
    platform: Vec<String>,
    /// Every manifest of multi-platform images.
    #[arg(long)]
    all_platforms: bool,
    /// Images resolved at once, and blob downloads at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    concurrency: u16,
    /// A running Wharf to go through (default: the one on this config's data_dir, found
    /// at its `listen` address).
    #[arg(long)]
    server: Option<String>,
    /// User name for the upstream (the password is read from WHARF_PASSWORD).
    #[arg(long)]
    username: Option<String>,
    /// Progress bars on a terminal, one line per event otherwise.
    #[arg(long, value_enum, default_value_t = ProgressArg::Auto)]
    progress: ProgressArg,
}

#[derive(Clone, Copy, ValueEnum)]
enum ProgressArg {
    Auto,
    Bars,
    Lines,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print a fully commented example configuration.
    Example,
    /// Validate a configuration file, reporting every problem.
    Check { file: PathBuf },
}

/// Logs to stderr at `level` unless `WHARF_LOG` says otherwise.
fn init_tracing(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WHARF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The configuration, or the exit status for a bad one (after saying why).
fn load_or_exit(path: Option<&PathBuf>) -> Result<Config, ExitCode> {
    load(path).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(EXIT_BAD_CONFIG)
    })
}

fn load(path: Option<&PathBuf>) -> Result<Config, String> {
    match path {
        Some(p) => {
            Config::load(p).map_err(|e| format!("{}: invalid configuration:\n{e}", p.display()))
        }
        None => Ok(Config::embedded_default()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let logs = |level| Some((cli.log_format, level));
    match cli.command {
        Command::Config { command } => config_command(command),
        Command::Cache(args) => wharf::cachectl::main(args).into(),
        Command::Gc { config, to } => with_config(logs("info"), config, |cfg| {
            wharf::cli::gc(&cfg, to.as_deref()).into()
        }),
        Command::Fsck { config, repair } => with_config(logs("info"), config, |cfg| {
            wharf::cli::fsck(&cfg, repair).into()
        }),
        Command::Export {
            config,
            images,
            all,
            output,
        } => with_config(logs("info"), config, |cfg| {
            wharf::cli::export(&cfg, &images, all, &output).into()
        }),
        Command::Import { config, path, name } => with_config(logs("info"), config, |cfg| {
            wharf::cli::import(&cfg, &path, name).into()
        }),
        Command::Prefetch(args) => {
            let config = args.config.clone();
            with_config(logs("error"), config, |cfg| prefetch(cfg, args))
        }
        // Their output is the report: no log.
        Command::Ls { config, json } => with_config(None, config, |cfg| {
            wharf::cli::report(&cfg, json, true).into()
        }),
        Command::Du { config, json } => with_config(None, config, |cfg| {
            wharf::cli::report(&cfg, json, false).into()
        }),
        Command::Serve { config, offline } => with_config(logs("info"), config, |mut cfg| {
            cfg.offline |= offline;
            block_on(serve(cfg), ExitCode::FAILURE)
        }),
    }
}

/// `wharf config ...`: needs no configuration of its own.
fn config_command(command: ConfigCommand) -> ExitCode {
    match command {
        ConfigCommand::Example => {
            print!("{}", config::EXAMPLE);
            ExitCode::SUCCESS
        }
        ConfigCommand::Check { file } => match load_or_exit(Some(&file)) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
    }
}

/// Runs a subcommand that works on a configuration: logging started (`log`: the format and
/// the level when `WHARF_LOG` is not set; `None`: no log), then the configuration at `path`
/// (or the embedded default) loaded, then `run` on it; a bad configuration exits with
/// [`EXIT_BAD_CONFIG`] after saying why.
fn with_config(
    log: Option<(LogFormat, &str)>,
    path: Option<PathBuf>,
    run: impl FnOnce(Config) -> ExitCode,
) -> ExitCode {
    if let Some((format, level)) = log {
        init_tracing(format, level);
    }
    match load_or_exit(path.as_ref()) {
        Ok(cfg) => run(cfg),
        Err(code) => code,
    }
}

/// Runs `work` on a new multi-threaded runtime; `failure` when there is none to be had.
fn block_on(work: impl std::future::Future<Output = ExitCode>, failure: ExitCode) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(work),
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            failure
        }
    }
}

/// `wharf prefetch`: the arguments checked, then [`wharf::prefetch::cli::main`].
fn prefetch(cfg: Config, a: PrefetchArgs) -> ExitCode {
    let PrefetchArgs {
        config: _,
        images,
        file,
        platform,
        all_platforms,
        concurrency,
        server,
        username,
        progress,
    } = a;
    use wharf::prefetch::{cli, spec};
    let platforms = if all_platforms {
        spec::Platforms::All
    } else if platform.is_empty() {
        spec::Platforms::Some(vec![spec::Platform::host()])
    } else {
        match spec::Platforms::parse_list(platform.iter().map(String::as_str)) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("--platform: {e}");
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
        }
    };
    let creds = match username {
        None => wharf::upstream::Credentials::Anonymous,
        Some(user) => match std::env::var("WHARF_PASSWORD") {
            Ok(p) => wharf::upstream::Credentials::basic(&user, &p),
            Err(_) => {
                eprintln!(
                    "--username needs the password in the WHARF_PASSWORD environment variable"
                );
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
        },
    };
    let args = cli::Args {
        images,
        file,
        platforms,
        concurrency: usize::from(concurrency),
        server,
        creds,
        output: match progress {
            ProgressArg::Auto => cli::Output::Auto,
            ProgressArg::Bars => cli::Output::Bars,
            ProgressArg::Lines => cli::Output::Lines,
        },
    };
    block_on(
        async { ExitCode::from(cli::main(cfg, args).await) },
        ExitCode::from(cli::EXIT_CANNOT_START),
    )
}

async fn serve(cfg: Config) -> ExitCode {
    let mut running = match wharf::app::start(cfg).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let stop = running.take_stop();
    let signals = async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!("cannot watch SIGTERM: {e}");
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    tokio::select! {
        _ = signals => {
            tracing::info!("shutting down");
            if let Some(s) = stop { let _ = s.send(()); }
            running.wait().await;
        }
    }
    ExitCode::SUCCESS
}
