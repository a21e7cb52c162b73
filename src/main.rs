//! The `portcullis` command: run the gateway, or check a configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mimalloc::MiMalloc;
use portcullis::telemetry::{self, LogFormat, otel};
use portcullis::{config, instance};

// Every proxied request allocates and frees a few dozen small buffers
// (headers, bodies, futures) on the thread that serves it; mimalloc's
// thread-local free lists cost a fraction of glibc malloc's per call
// (`bench/run.sh` records the CPU time per request).
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// Portcullis: a reverse-proxy session gateway.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about)]
struct Cli {
    /// Configuration file.
    #[arg(
        long,
        global = true,
        env = "PORTCULLIS_CONFIG",
        default_value = "gateway.toml"
    )]
    config: PathBuf,
    /// Log format (default: json unless stdout is a terminal).
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Parse and validate the configuration; exit 1 listing every problem.
    Check,
    /// GET a URL; exit 0 when it answers 2xx in time, 1 otherwise (a health
    /// check that needs no shell tools in a container image).
    Probe {
        /// The URL, e.g. http://127.0.0.1:9090/healthz (the container
        /// image sets PORTCULLIS_PROBE_URL to that).
        #[arg(env = "PORTCULLIS_PROBE_URL")]
        url: String,
        /// Deadline for connect, answer and body.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
}

fn main() -> ExitCode {
    // mimalloc commits memory in large runs; on machines whose transparent
    // huge pages are "always", each run is backed by 2 MiB pages and the
    // resident size under load grew by ~10 MB. Small pages keep it below
    // glibc malloc's. Failure (an old kernel) only costs memory.
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check) => check(&cli.config),
        Some(Command::Probe { url, timeout }) => probe(&url, timeout),
        None => run(cli),
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    match config::load(path) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                eprintln!("{warning}");
            }
            // The gateway running from this file holds its own addresses.
            let held = instance::held_addresses(path).unwrap_or_else(|e| {
                eprintln!("warning: {e}");
                Vec::new()
            });
            let problems = config::check_listeners(&loaded, &held);
            for problem in &problems {
                eprintln!("{problem}");
            }
            if problems.is_empty() {
                println!("{}: ok", path.display());
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(err) => {
            eprintln!("{err}");
            ExitCode::FAILURE
        }
    }
}

fn probe(url: &str, timeout: std::time::Duration) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(portcullis::probe::probe(url, timeout)) {
        Ok(status) => {
            println!("{url}: {status}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("{url}: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> ExitCode {
    use std::io::IsTerminal as _;
    let format = cli
        .log_format
        .unwrap_or(if std::io::stdout().is_terminal() {
            LogFormat::Pretty
        } else {
            LogFormat::Json
        });
    let loaded = match config::load(&cli.config) {
        Ok(loaded) => loaded,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    // The span exporter posts through the runtime: declared after it, so it
    // is dropped (and flushed) first.
    let (exporter, tracer) = match &loaded.config.telemetry {
        None => (None, None),
        Some(cfg) => match otel::exporter(cfg, runtime.handle().clone()) {
            Ok((exporter, tracer)) => (Some(exporter), Some(tracer)),
            Err(err) => {
                eprintln!("{err}");
                return ExitCode::FAILURE;
            }
        },
    };
    let _log_guard = telemetry::init_logging(format, tracer);
    if let Some(cfg) = &loaded.config.telemetry {
        otel::activate();
        tracing::info!(endpoint = %cfg.otlp_endpoint, ratio = cfg.sample_ratio, "exporting spans over OTLP/HTTP");
    }
    for warning in &loaded.warnings {
        tracing::warn!(%warning, "configuration warning");
    }
    telemetry::init_metrics();
    let result = runtime.block_on(portcullis::server::run(cli.config, loaded));
    telemetry::access_log::flush();
    drop(exporter);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "gateway stopped");
            eprintln!("{err}");
            ExitCode::FAILURE
        }
    }
}
