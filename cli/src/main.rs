//! `fjord`: call or cast oslo.messaging RPC methods, and inspect endpoint components.
//!
//! ```text
//! fjord call --topic test add a=2 b=3          # prints 5
//! fjord cast --topic test --fanout stop
//! fjord inspect target/wasm32-wasip2/release/calculator.wasm
//! fjord bench --topic test --concurrency 16 --calls 10000 add a=2 b=3
//! fjord new endpoint hello-world               # a ready endpoint crate in ./hello-world
//! ```
//!
//! Exit codes: 0 success, 1 remote failure, 2 timeout, 3 any other error.

// Nothing from the network, a file or a guest may panic the process (as in wasmCloud's host).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use fjord_cli::bench::{self, pad_context, Load};
use fjord_client::{
    RpcClient, RpcError, Target, Transport, TransportUrl, DEFAULT_CONTROL_EXCHANGE,
};
use fjord_surface::{describe_component, ComponentDescription};
use serde_json::{Map, Value};

const DEFAULT_URL: &str = "rabbit://guest:guest@127.0.0.1:5672/";

#[derive(Parser)]
#[command(
    name = "fjord",
    version,
    about = "oslo.messaging-compatible RPC client"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Call a method and print its result as JSON.
    Call(RpcArgs),
    /// Cast a method (no result); `--fanout` reaches every server of the topic.
    Cast {
        #[command(flatten)]
        rpc: RpcArgs,
        /// Send to every server listening on the topic.
        #[arg(long)]
        fanout: bool,
    },
    /// Load-test any oslo.messaging RPC server; the last stdout line is a JSON report.
    Bench {
        #[command(flatten)]
        rpc: RpcArgs,
        /// Callers with a call in flight at once.
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// Calls in all (after one untimed warm-up call).
        #[arg(long, default_value_t = 1000)]
        calls: usize,
        /// Pad each request to about this many bytes, with a `fjord_bench_pad` context entry.
        #[arg(long)]
        size: Option<usize>,
    },
    /// Make something new from a template: `fjord new endpoint NAME`.
    New {
        #[command(subcommand)]
        what: New,
    },
    /// Show what oslo callers can call on an endpoint component.
    Inspect {
        /// The component (.wasm).
        file: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum New {
    /// A ready endpoint crate in ./NAME: WIT, Cargo.toml with fjord-guest, src/lib.rs; builds
    /// with `cargo build --release --target wasm32-wasip2` and prints its config line.
    /// `--lang python`: app.py over fjord_guest and its WIT world, built by scripts/build-python.
    Endpoint {
        /// Lowercase words joined by '-' (the WIT package, interface and crate name).
        name: String,
        /// The template's language.
        #[arg(long, default_value = "rust")]
        lang: fjord_cli::new::Lang,
        /// Where to make the crate's directory.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The fjord-guest crate to depend on (default: the one this fjord was built from).
        #[arg(long)]
        fjord_guest: Option<PathBuf>,
    },
}

#[derive(Args)]
struct RpcArgs {
    /// Transport URL (default: $FJORD_TRANSPORT_URL, else the guest account on 127.0.0.1:5672).
    #[arg(long)]
    url: Option<String>,
    /// fjord-host config file to read `transport_url` and `control_exchange` from.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Target topic.
    #[arg(long)]
    topic: String,
    /// Target server.
    #[arg(long)]
    server: Option<String>,
    /// Exchange [default: the control exchange, `openstack`].
    #[arg(long)]
    exchange: Option<String>,
    /// Endpoint namespace.
    #[arg(long)]
    namespace: Option<String>,
    /// Requested API version (`M.m`).
    #[arg(long)]
    version: Option<String>,
    /// Call timeout in seconds.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// Request context as a JSON object.
    #[arg(long)]
    context: Option<String>,
    /// Method name.
    method: String,
    /// Keyword arguments `name=value`; a value is JSON when it parses as JSON, else a string.
    args: Vec<String>,
}

/// The part of fjord-host's config the client needs; other keys are ignored.
#[derive(serde::Deserialize)]
struct HostConfig {
    transport_url: Option<String>,
    /// Read by [`read_config`] into `transport_url` (relative to the config file).
    transport_url_file: Option<PathBuf>,
    control_exchange: Option<String>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fjord: cannot start the async runtime: {e}");
            return ExitCode::from(3);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<RpcError>() {
            Some(RpcError::Remote(remote)) => {
                eprintln!("{remote}");
                ExitCode::from(1)
            }
            Some(RpcError::Timeout(timeout)) => {
                eprintln!("{timeout}");
                ExitCode::from(2)
            }
            Some(e @ RpcError::CastTimeout(_)) => {
                eprintln!("fjord: {e}");
                ExitCode::from(2)
            }
            _ => {
                eprintln!("fjord: {e:#}");
                ExitCode::from(3)
            }
        },
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Call(rpc) => {
            let (client, ctx, args) = prepare(&rpc, false).await?;
            let result: Value = client.call(&ctx, &rpc.method, args).await?;
            println!("{}", serde_json::to_string(&result)?);
            Ok(())
        }
        Command::Cast { rpc, fanout } => {
            let (client, ctx, args) = prepare(&rpc, fanout).await?;
            client.cast(&ctx, &rpc.method, args).await?;
            Ok(())
        }
        Command::Inspect { file, json } => inspect(&file, json),
        Command::New {
            what:
                New::Endpoint {
                    name,
                    lang,
                    dir,
                    fjord_guest,
                },
        } => new_endpoint(&name, lang, &dir, fjord_guest),
        Command::Bench {
            rpc,
            concurrency,
            calls,
            size,
        } => {
            if concurrency == 0 || calls == 0 {
                bail!("--concurrency and --calls must be at least 1");
            }
            let (client, mut ctx, args) = prepare(&rpc, false).await?;
            if let Some(size) = size {
                let reached = pad_context(&mut ctx, &rpc.method, &args, size);
                eprintln!("fjord bench: requests are {reached} bytes");
            }
            let load = Load { concurrency, calls };
            let report = bench::run(&client, &ctx, &rpc.method, &args, load).await?;
            println!("{}", serde_json::to_string(&report)?);
            if report.errors == report.calls {
                bail!("every call failed (see the warnings above; RUST_LOG=warn shows them)");
            }
            Ok(())
        }
    }
}

/// Builds the client, context and arguments from the command line.
async fn prepare(
    rpc: &RpcArgs,
    fanout: bool,
) -> anyhow::Result<(RpcClient, Map<String, Value>, Map<String, Value>)> {
    let args = parse_args(&rpc.args)?;
    let ctx = match &rpc.context {
        Some(text) => match serde_json::from_str(text) {
            Ok(Value::Object(m)) => m,
            Ok(_) => bail!("--context must be a JSON object"),
            Err(e) => bail!("--context is not valid JSON: {e}"),
        },
        None => Map::new(),
    };
    let timeout = Duration::try_from_secs_f64(rpc.timeout)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| {
            format!(
                "--timeout must be a positive number of seconds, not {}",
                rpc.timeout
            )
        })?;

    let config = match &rpc.config {
        Some(path) => Some(read_config(path)?),
        None => None,
    };
    let url_text = match (
        &rpc.url,
        config.as_ref().and_then(|c| c.transport_url.clone()),
    ) {
        (Some(url), _) => url.clone(),
        (None, Some(url)) => url,
        (None, None) => std::env::var("FJORD_TRANSPORT_URL").unwrap_or_else(|_| DEFAULT_URL.into()),
    };
    let url = TransportUrl::parse(&url_text)?;
    let control_exchange = config
        .and_then(|c| c.control_exchange)
        .unwrap_or_else(|| DEFAULT_CONTROL_EXCHANGE.to_string());

    let transport = Transport::connect_with_exchange(&url, &control_exchange).await?;
    let mut target = Target::new(rpc.topic.clone()).fanout(fanout);
    target.server = rpc.server.clone();
    target.exchange = rpc.exchange.clone();
    target.namespace = rpc.namespace.clone();
    target.version = rpc.version.clone();
    let client = RpcClient::new(transport, target)
        .prepare()
        .timeout(timeout)
        .build();
    Ok((client, ctx, args))
}

fn read_config(path: &Path) -> anyhow::Result<HostConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config {}", path.display()))?;
    let mut config: HostConfig =
        toml::from_str(&text).with_context(|| format!("invalid config {}", path.display()))?;
    if let (None, Some(file)) = (&config.transport_url, &config.transport_url_file) {
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let file = match absolute.parent() {
            Some(dir) if file.is_relative() => dir.join(file),
            _ => file.clone(),
        };
        let url = std::fs::read_to_string(&file)
            .with_context(|| format!("transport_url_file: cannot read {}", file.display()))?;
        config.transport_url = Some(url.trim().to_string());
    }
    Ok(config)
}

/// `name=value` pairs; a value is JSON where it parses as JSON, else a string.
fn parse_args(pairs: &[String]) -> anyhow::Result<Map<String, Value>> {
    let mut args = Map::new();
    for pair in pairs {
        let Some((name, value)) = pair.split_once('=') else {
            bail!("argument `{pair}` is not name=value");
        };
        if name.is_empty() {
            bail!("argument `{pair}` has no name");
        }
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.into()));
        args.insert(name.to_string(), value);
    }
    Ok(args)
}

fn inspect(file: &Path, json: bool) -> anyhow::Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let description: ComponentDescription =
        describe_component(&bytes).with_context(|| format!("{}", file.display()))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&description)?);
        return Ok(());
    }
    if description.interfaces.is_empty() {
        println!("{}: no exported interfaces", file.display());
    }
    for iface in &description.interfaces {
        let package = match (&iface.package, &iface.package_version) {
            (Some(p), Some(v)) => format!("{p}@{v}"),
            (Some(p), None) => p.clone(),
            (None, _) => "(no package)".into(),
        };
        println!(
            "{} (package {package}, oslo version {})",
            iface.name, iface.oslo_version
        );
        for m in &iface.methods {
            match &m.unsupported {
                Some(why) => println!("  {}    (not served: {why})", m.signature()),
                None => println!("  {}", m.signature()),
            }
        }
        if !iface.types.is_empty() {
            println!("  where");
            for (name, definition) in &iface.types {
                println!("    {name} = {definition}");
            }
        }
    }
    Ok(())
}

/// `fjord new endpoint`: writes the crate and says how to build and serve it.
fn new_endpoint(
    name: &str,
    lang: fjord_cli::new::Lang,
    dir: &Path,
    fjord_guest: Option<PathBuf>,
) -> anyhow::Result<()> {
    let guest = match fjord_guest {
        Some(path) => path,
        None => {
            let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk");
            if !built_from.join("Cargo.toml").is_file() {
                bail!(
                    "cannot find the fjord-guest crate at {}: pass --fjord-guest <path to fjord's guest-sdk>",
                    built_from.display()
                );
            }
            built_from
        }
    };
    let guest = std::path::absolute(&guest).unwrap_or(guest);
    let guest = std::fs::canonicalize(&guest).unwrap_or(guest);
    let made = fjord_cli::new::write(lang, name, dir, &guest)?;
    let absolute = std::path::absolute(&made).unwrap_or_else(|_| made.clone());
    println!("made {}", made.display());
    let line = match lang {
        fjord_cli::new::Lang::Rust => {
            println!(
                "build:  cd {} && cargo build --release --target wasm32-wasip2",
                made.display()
            );
            fjord_cli::new::config_line(name, &absolute)
        }
        fjord_cli::new::Lang::Python => {
            // componentize-py lives in the checkout's .venv, beside the script that runs it.
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-python");
            let script = std::fs::canonicalize(&script).unwrap_or(script);
            let wasm = absolute.join(format!("{name}.wasm"));
            println!(
                "build:  {} --out {} {}",
                script.display(),
                wasm.display(),
                absolute.display()
            );
            fjord_cli::new::python_config_line(name, &absolute)
        }
    };
    println!("serve:  add to a [[server]]'s endpoints in your fjord-host config: {line}");
    println!("call:   fjord call --topic <topic> hello name=world");
    Ok(())
}
