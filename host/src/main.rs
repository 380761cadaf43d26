//! `fjord-host --config my.toml`: serve the configured RPC targets until SIGINT or SIGTERM.

// Nothing from the network, a file or a guest may panic the process (as in wasmCloud's host).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use anyhow::Context as _;
use clap::Parser;
use fjord_host::config::Config;
use fjord_host::keyvalue::Keyvalue;
use fjord_host::server;
use std::path::PathBuf;
use std::process::ExitCode;

/// Serves oslo.messaging RPC targets from RabbitMQ with WebAssembly components.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// The configuration file (transport_url and [[server]] sections).
    #[arg(long, short, default_value = "my.toml")]
    config: PathBuf,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,lapin=warn,wasmtime=warn,cranelift=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fjord-host: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        // Opened only when some endpoint is granted a bucket.
        let keyvalue = Keyvalue::open(&config.keyvalue).await?;
        let servers = server::load(&config, keyvalue.clone())?;
        let served = server::serve(&config, servers, shutdown_signal()).await;
        if let Some(keyvalue) = keyvalue {
            keyvalue.close();
        }
        served
    })
}

/// Resolves on the first SIGINT or SIGTERM (a graceful stop); a second one exits at once.
async fn shutdown_signal() {
    signal().await;
    tracing::info!("stopping gracefully; a second SIGINT or SIGTERM exits at once");
    tokio::spawn(async {
        signal().await;
        eprintln!("fjord-host: second signal, exiting now");
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
