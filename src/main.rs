//! `tachyon`: the exchange's single binary.
//!
//! `tachyon run` (the default) starts the whole exchange in one process, on the embedded
//! backbone or (`--kafka`) over Kafka; `gateway`, `engine`, `marketdata` and `persist` run
//! one role each over Kafka; the other commands mint API keys, print the symbols and check
//! a configuration.

use tachyon::exchange::Roles;
use tachyon::{config, exchange};

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tachyon_gateway::keys::{self, KeyEvent, KeyInfo};
use tachyon_gateway::{KeyId, KeyRing, Scope};
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
    /// Order entry and market data over REST and WebSocket (distributed mode: --kafka).
    /// Every gateway needs its own --gateway-id.
    Gateway {
        #[command(flatten)]
        overrides: config::Overrides,
    },
    /// Engine shards for some partitions (distributed mode: --kafka). Two engines must never
    /// run the same shard.
    Engine {
        /// The partitions this engine owns, e.g. `0,1` or `0-3` (default: all of them).
        #[arg(long, env = "TACHYON_SHARDS", value_parser = parse_shards)]
        shards: Option<Shards>,
        #[command(flatten)]
        overrides: config::Overrides,
    },
    /// Market data only: book, trades, ticker, candles and their WebSocket channels from
    /// `tachyon.marketdata` (distributed mode: --kafka).
    Marketdata {
        #[command(flatten)]
        overrides: config::Overrides,
    },
    /// A persistence consumer (distributed mode: --kafka).
    Persist {
        #[command(subcommand)]
        sink: PersistSink,
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
enum PersistSink {
    /// Orders, order events, trades and fills into PostgreSQL (migrations applied on start).
    Postgres {
        /// `postgres://user:password@host:port/database` (or --postgres, postgres.url).
        #[arg(long, env = "TACHYON_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
        #[command(flatten)]
        overrides: config::Overrides,
    },
    /// Orders and trades into DynamoDB (credentials and region from the AWS chain).
    Dynamodb {
        /// A DynamoDB-compatible endpoint instead of AWS's.
        #[arg(long)]
        endpoint_url: Option<String>,
        /// Create the tables if missing.
        #[arg(long)]
        create_tables: bool,
        #[command(flatten)]
        overrides: config::Overrides,
    },
}

/// A set of partitions given as `0,2,5-7`.
#[derive(Clone, Debug)]
struct Shards(Vec<u32>);

fn parse_shards(text: &str) -> Result<Shards, String> {
    let mut shards = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let number = |s: &str| s.trim().parse::<u32>().map_err(|_| format!("{s:?} is not a partition number"));
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (number(a)?, number(b)?);
                if a > b {
                    return Err(format!("empty range {part}"));
                }
                shards.extend(a..=b);
            }
            None => shards.push(number(part)?),
        }
    }
    shards.sort_unstable();
    shards.dedup();
    if shards.is_empty() {
        return Err("no partitions given".into());
    }
    Ok(Shards(shards))
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
    /// Print a new API key for an account on stdout (its key_id on stderr); a server using
    /// the same data directory accepts it.
    Mint {
        /// The account: 1-20 characters of A-Z, a-z, 0-9, '_' and '-'.
        account: String,
        /// `trade`: everything the account may do; `read`: private GETs and the orders
        /// channel only.
        #[arg(long, default_value = "trade")]
        scope: Scope,
        /// The key secret and the key log live in the configured data directory.
        #[command(flatten)]
        overrides: config::Overrides,
    },
    /// Revoke a key by its id: every gateway on the data directory refuses it (401
    /// `key_revoked`) within a second and closes its WebSocket sessions.
    Revoke {
        /// The key's id (`key_id` from `mint` or `list`).
        key_id: String,
        #[command(flatten)]
        overrides: config::Overrides,
    },
    /// List an account's keys, one JSON object per line (never a secret).
    List {
        account: String,
        #[command(flatten)]
        overrides: config::Overrides,
    },
}

/// The cluster's keys topic, when the configuration names Kafka brokers.
struct KeysTopic(Option<tachyon_bus::KafkaBus>);

impl KeysTopic {
    fn connect(config: &config::Config) -> Result<Self> {
        let Some(mut kafka) = config.kafka_config() else { return Ok(Self(None)) };
        kafka.client_id = "tachyon-keys".into();
        let bus = tachyon_bus::KafkaBus::connect(&kafka).context("connecting to Kafka for the keys topic")?;
        Ok(Self(Some(bus)))
    }

    /// Records `event` in the data directory's key log and, on Kafka, on the keys topic.
    fn record(&self, data_dir: &std::path::Path, event: &KeyEvent) -> Result<()> {
        keys::append(data_dir, event).with_context(|| format!("key log in {}", data_dir.display()))?;
        if let Some(bus) = &self.0 {
            keys::publish(bus, event).with_context(|| {
                format!("recorded in {} but not on the keys topic (run the command again)", data_dir.display())
            })?;
        }
        Ok(())
    }

    /// The data directory's events, then the keys topic's.
    fn events(&self, data_dir: &std::path::Path) -> Result<Vec<KeyEvent>> {
        let mut events = keys::read(data_dir).with_context(|| format!("key log in {}", data_dir.display()))?;
        if let Some(bus) = &self.0 {
            events.extend(keys::read_topic(bus).context("reading the keys topic")?.0);
        }
        Ok(events)
    }
}

/// `tachyon keys …`: the key secret and the key log of the configured data directory,
/// and the keys topic when the configuration names Kafka brokers.
#[allow(clippy::print_stdout, reason = "the commands' output")]
fn keys_command(command: KeysCommand) -> Result<()> {
    let (KeysCommand::Mint { overrides, .. }
    | KeysCommand::Revoke { overrides, .. }
    | KeysCommand::List { overrides, .. }) = &command;
    let config = config::Config::load(overrides)?;
    let data_dir = config.data_dir.clone();
    let ring = KeyRing::load_or_create(&data_dir).with_context(|| format!("key secret in {}", data_dir.display()))?;
    let now = || tachyon_proto::Timestamp::now().to_rfc3339();
    // Parse what the user typed before connecting anywhere.
    let account = match &command {
        KeysCommand::Mint { account, .. } | KeysCommand::List { account, .. } => {
            Some(AccountId::parse(account).with_context(|| format!("account {account:?}"))?)
        }
        KeysCommand::Revoke { .. } => None,
    };
    match command {
        KeysCommand::Mint { scope, .. } => {
            let account = account.expect("parsed above");
            let key = ring.mint_scoped(account, scope)?;
            let event = KeyEvent::Minted { key_id: key.key_id(), account_id: account.to_string(), scope, at: now() };
            KeysTopic::connect(&config)?.record(&data_dir, &event)?;
            println!("{}", key.expose());
            #[allow(clippy::print_stderr, reason = "the key's id, apart from the key on stdout")]
            {
                eprintln!("key_id: {}", key.key_id());
            }
        }
        KeysCommand::Revoke { key_id, .. } => {
            let key_id: KeyId = key_id.parse()?;
            KeysTopic::connect(&config)?.record(&data_dir, &KeyEvent::Revoked { key_id, at: now() })?;
            #[allow(clippy::print_stderr, reason = "the command's report")]
            {
                eprintln!("revoked key {key_id}");
            }
        }
        KeysCommand::List { .. } => {
            let account = account.expect("parsed above");
            let events = KeysTopic::connect(&config)?.events(&data_dir)?;
            let legacy = ring.legacy_id(account);
            let revoked = keys::revoked_ids(&events).any(|id| id == legacy);
            // The account's first-format key always exists (it is derived, not stored).
            let first = KeyInfo { key_id: legacy, account_id: account.to_string(), scope: Scope::Trade, revoked };
            for info in std::iter::once(first).chain(keys::list(&events, &account.to_string())) {
                println!("{}", serde_json::to_string(&info)?);
            }
        }
    }
    Ok(())
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
            let roles = Roles::all(config.partitions);
            serve(config, roles)?;
        }
        Command::Gateway { overrides } => {
            serve(config::Config::load(&overrides)?, Roles { gateway: true, ..Roles::default() })?;
        }
        Command::Marketdata { overrides } => {
            serve(config::Config::load(&overrides)?, Roles { market_data: true, ..Roles::default() })?;
        }
        Command::Engine { shards, overrides } => {
            let config = config::Config::load(&overrides)?;
            let shards = shards.map_or_else(|| (0..config.partitions).collect(), |s| s.0);
            serve(config, Roles { shards, ..Roles::default() })?;
        }
        Command::Persist { sink: PersistSink::Postgres { database_url, overrides } } => {
            let mut config = config::Config::load(&overrides)?;
            if let Some(url) = database_url {
                config.postgres.url = url;
            }
            if config.postgres.url.is_empty() {
                anyhow::bail!("give the database with --database-url (or --postgres, postgres.url)");
            }
            config.dynamodb.enabled = false;
            config.validate()?;
            serve(config, Roles { persist: true, ..Roles::default() })?;
        }
        Command::Persist { sink: PersistSink::Dynamodb { endpoint_url, create_tables, overrides } } => {
            let mut config = config::Config::load(&overrides)?;
            if let Some(endpoint) = endpoint_url {
                config.dynamodb.endpoint_url = endpoint;
            }
            config.dynamodb.enabled = true;
            config.dynamodb.create_tables |= create_tables;
            config.postgres.url.clear();
            serve(config, Roles { persist: true, ..Roles::default() })?;
        }
        Command::Symbols => {
            let symbols: Vec<SymbolInfo> = default_symbols().iter().map(SymbolInfo::from).collect();
            println!("{}", serde_json::to_string_pretty(&symbols)?);
        }
        Command::Keys { command } => keys_command(command)?,
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
            let backbone = config.kafka_config().map_or_else(
                || "embedded".to_owned(),
                |k| format!("kafka {} (topics {}tachyon.*)", k.brokers, k.topic_prefix),
            );
            println!(
                "configuration OK: listen {}, backbone {backbone}, data_dir {}, {} partitions, {} symbols, fsync {:?}, \
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

/// Runs `roles` until SIGTERM or Ctrl-C.
fn serve(config: config::Config, roles: Roles) -> Result<()> {
    init_logging(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let listener =
            tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
        exchange::run(config, roles, listener, shutdown_signal()).await
    })
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
