//! `tachyon`: the exchange's single binary.
//!
//! `tachyon run` (the default) starts the whole exchange on the embedded backbone; the
//! other commands mint API keys, print the symbols and check a configuration. The
//! distributed roles arrive with the Kafka issue.

use tachyon::{config, exchange};

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tachyon_gateway::KeyRing;
use tachyon_proto::api::SymbolInfo;
use tachyon_proto::symbol::default_symbols;
use tachyon_proto::AccountId;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "tachyon", version, about = "Tachyon: a low-latency order-matching engine")]
struct Cli {
    /// Without a command: `run` with its defaults.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the exchange in one process: REST + WebSocket gateway, engine shards and market
    /// data on the embedded backbone (journal and snapshots in the data directory).
    Run {
        #[command(flatten)]
        overrides: config::Overrides,
    },
    /// Print the default symbol table as JSON (the body of `GET /v1/symbols`).
    Symbols,
    /// API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Load defaults, the file, environment and flags; report what is wrong or a summary.
    Check {
        #[command(flatten)]
        overrides: config::Overrides,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Print an API key for an account; a server using the same data directory accepts it.
    Mint {
        /// The account: 1-20 characters of A-Z, a-z, 0-9, '_' and '-'.
        account: String,
        /// The key secret lives in the configured data directory (created on first use).
        #[command(flatten)]
        overrides: config::Overrides,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line, causes included: a user's mistake is not a crash.
            #[allow(clippy::print_stderr, reason = "the command's error report")]
            {
                eprintln!("error: {err:#}");
            }
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stdout, reason = "the commands' output")]
fn run(cli: Cli) -> Result<()> {
    let command = cli.command.unwrap_or(Command::Run { overrides: config::Overrides::default() });
    match command {
        Command::Run { overrides } => {
            let config = config::Config::load(&overrides)?;
            init_logging(config.log_format);
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(async {
                let listener = tokio::net::TcpListener::bind(config.listen)
                    .await
                    .with_context(|| format!("binding {}", config.listen))?;
                exchange::run(config, listener, shutdown_signal()).await
            })?;
        }
        Command::Symbols => {
            let symbols: Vec<SymbolInfo> = default_symbols().iter().map(SymbolInfo::from).collect();
            println!("{}", serde_json::to_string_pretty(&symbols)?);
        }
        Command::Keys { command: KeysCommand::Mint { account, overrides } } => {
            let account = AccountId::parse(&account).with_context(|| format!("account {account:?}"))?;
            let data_dir = config::Config::load(&overrides)?.data_dir;
            let ring =
                KeyRing::load_or_create(&data_dir).with_context(|| format!("key secret in {}", data_dir.display()))?;
            println!("{}", ring.mint(account).expose());
        }
        Command::Config { command: ConfigCommand::Check { overrides } } => {
            let config = config::Config::load(&overrides)?;
            let engine = config.validate()?;
            let (rate, idem) = (config.rate_limit(), config.idempotency());
            let postgres = config.postgres_config().ok().flatten().map(|p| format!("{p:?}"));
            let dynamodb = config.dynamo_config().map(|d| {
                let endpoint =
                    if config.dynamodb.endpoint_url.is_empty() { "AWS" } else { &config.dynamodb.endpoint_url };
                format!("tables {}_*, endpoint {endpoint}", d.table_prefix)
            });
            println!(
                "configuration OK: listen {}, data_dir {}, {} partitions, {} symbols, fsync {:?}, \
                 rate limit {}/s (burst {}), idempotency ttl {:?}, postgres {}, dynamodb {}",
                config.listen,
                config.data_dir.display(),
                config.partitions,
                engine.symbols.len(),
                config.journal().fsync,
                rate.per_second,
                rate.burst,
                idem.ttl,
                postgres.as_deref().unwrap_or("off"),
                dynamodb.as_deref().unwrap_or("off"),
            );
        }
    }
    Ok(())
}

fn init_logging(format: config::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        config::LogFormat::Json => builder.json().flatten_event(true).init(),
        config::LogFormat::Text => builder.init(),
    }
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
