//! `fjord-host --config my.toml`: serve the configured RPC targets until SIGINT or SIGTERM;
//! SIGHUP (or, with `--watch`, a change to a listed file) reloads the config and components.
//! `fjord-host check --config my.toml` checks a config without a broker.

// Nothing from the network, a file or a guest may panic the process (as in wasmCloud's host).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use fjord_host::config::Config;
use fjord_host::keyvalue::Keyvalue;
use fjord_host::outgoing::Outgoing;
use fjord_host::sandbox::Sandbox;
use fjord_host::{admin, check, control, reload, server};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder};

/// Serves oslo.messaging RPC targets from RabbitMQ with WebAssembly components.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// The configuration file (transport_url and [[server]] sections); paths inside it are
    /// relative to the file itself.
    #[arg(long, short, default_value = "my.toml", global = true)]
    config: PathBuf,
    /// Reload when the config file or a component it lists changes (as on SIGHUP).
    #[arg(long)]
    watch: bool,
    /// How log lines are written to stderr: text for people, json (one object per line, the
    /// call's request_id and global_request_id in each) for log shippers.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Check the config and every component without a broker, and print what each server
    /// serves; exits non-zero with the error the host would refuse to start with.
    Check,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Log lines queued for the log writer at most: a line is at most about
/// `guest_log::LINE_BYTES` plus its tags, so the queue holds some 40 MiB at worst, and a few
/// hundred KiB in ordinary use.
const LOG_QUEUE_LINES: usize = 8192;
/// How often the count of dropped log lines is reported.
const DROPPED_REPORT_EVERY: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::Check) = args.command {
        return match check::check(&args.config) {
            Ok(report) => {
                print!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("fjord-host: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    // Log lines go to stderr from a thread of their own: a slow stderr (a full pipe, a stalled
    // terminal) never blocks a runtime thread. When the queue is full, lines are dropped and
    // counted instead, and the count is logged every few seconds.
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .thread_name("fjord-log")
        .finish(std::io::stderr());
    let dropped = writer.error_counter();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,lapin=warn,wasmtime=warn,cranelift=warn".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match args.log_format {
        LogFormat::Text => logs.init(),
        // The span's fields (request_id, global_request_id, server) are flattened into each
        // line as `span`; `spans` would repeat them.
        LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
    let reported = Arc::new(AtomicUsize::new(0));
    report_dropped_lines(dropped.clone(), reported.clone());
    let outcome = run(&args);
    // Writes out what is still queued (for up to a second) before the last words.
    drop(guard);
    let unreported = dropped
        .dropped_lines()
        .saturating_sub(reported.load(Ordering::SeqCst));
    if unreported > 0 {
        eprintln!(
            "fjord-host: {unreported} log lines dropped (the log sink was slower than the host)"
        );
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fjord-host: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs, every [`DROPPED_REPORT_EVERY`], how many log lines were dropped since the last report
/// (a thread, so that it never competes with calls for the runtime). The report goes through
/// the same queue: while the sink stays stuck it is dropped too and counted in the next one.
fn report_dropped_lines(dropped: ErrorCounter, reported: Arc<AtomicUsize>) {
    let spawned = std::thread::Builder::new()
        .name("fjord-log-drops".into())
        .spawn(move || loop {
            std::thread::sleep(DROPPED_REPORT_EVERY);
            let total = dropped.dropped_lines();
            let before = reported.swap(total, Ordering::SeqCst);
            if total > before {
                tracing::warn!(
                    "{} log lines dropped in the last {} s: the log sink is slower than the host ({total} in all)",
                    total.saturating_sub(before),
                    DROPPED_REPORT_EVERY.as_secs()
                );
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the thread reporting dropped log lines: {e}");
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        // Opened only when some endpoint is granted a bucket; a reload keeps this store.
        let keyvalue = Keyvalue::open(&config.keyvalue).await?;
        // Connected at start when some endpoint is granted `calls`, else on first use (a reload
        // may grant them); a reload keeps this connection.
        let outgoing = Outgoing::open(&config).await?;
        let sandbox = Arc::new(
            Sandbox::for_calls(config.in_flight)?
                .with_keyvalue(keyvalue.clone())
                .with_outgoing(Some(outgoing)),
        );
        let servers = server::load_with(&sandbox, &config)?;
        if let Some(listen) = config.admin {
            admin::spawn(admin::bind(listen).await?);
        }
        let (to_server, reloads) = tokio::sync::mpsc::unbounded_channel();
        let trigger = reload::spawn(args.config.clone(), &config, sandbox, to_server, args.watch)?;
        reload_on_sighup(trigger.clone());
        let stop = Arc::new(tokio::sync::Notify::new());
        control::install(control::Handles {
            stop: stop.clone(),
            reload: trigger,
        });
        let shutdown = async move {
            tokio::select! {
                () = shutdown_signal() => {}
                () = stop.notified() => {
                    tracing::info!("stopping gracefully (control stop())");
                }
            }
        };
        let served = server::serve_with(&config, servers, shutdown, reloads).await;
        if let Some(keyvalue) = keyvalue {
            keyvalue.close();
        }
        served
    })
}

/// Every SIGHUP asks for a reload.
fn reload_on_sighup(trigger: reload::Trigger) {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hangups) => {
            tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    if trigger.send("SIGHUP".to_string()).is_err() {
                        return;
                    }
                }
            });
        }
        Err(e) => tracing::warn!("cannot listen for SIGHUP (no reload on it): {e}"),
    }
}

/// Resolves on the first SIGINT or SIGTERM (a graceful stop); a second one exits at once.
async fn shutdown_signal() {
    signal().await;
    tracing::info!("stopping gracefully; a second SIGINT or SIGTERM exits at once");
    tokio::spawn(async {
        signal().await;
        // Through the log queue, never a blocking write: a stuck stderr must not stop the exit.
        tracing::warn!("second signal, exiting now");
        tokio::time::sleep(Duration::from_millis(50)).await;
        std::process::exit(130);
    });
}

async fn signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
