//! Configuration: defaults, then a TOML file, then environment variables and flags.
//!
//! Every setting has a default that works out of the box (`Config::default`, pinned by a
//! test and mirrored by `tachyon.example.toml`); a file given with `--config` overrides
//! what it names (unknown keys are errors, so a typo is not silently ignored); flags and
//! their `TACHYON_*` environment variables override both. Units are in the names
//! (`_ms`, `_secs`, `_bytes`). [`Config::validate`] turns the result into the typed
//! settings of each component, or says what is wrong.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use tachyon_bus::{FsyncPolicy, JournalConfig, KafkaConfig};
use tachyon_consumers::{ConsumerConfig, DynamoConfig, PostgresConfig, RetryPolicy};
use tachyon_engine::{EngineConfig, RiskLimits};
use tachyon_gateway::orders::StoreLimits;
use tachyon_gateway::{GatewayConfig, IdempotencyConfig, RateLimitConfig, MAX_GATEWAY_ID};
use tachyon_proto::symbol::{SymbolDef, DEFAULT_SYMBOLS};
use tachyon_proto::{AccountId, SymbolSpec};
use tachyon_risk::{Asset, FeeRates, FeeTier, RiskConfig};
use tachyon_runtime::LeaseConfig;

/// The whole configuration.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP/WebSocket server listens on.
    pub listen: SocketAddr,
    /// Journal, snapshots and the API-key secret live here.
    pub data_dir: PathBuf,
    /// Backbone partitions, i.e. engine shards.
    pub partitions: u32,
    pub journal: JournalSettings,
    pub rate_limit: RateLimitSettings,
    pub idempotency: IdempotencySettings,
    pub limits: LimitSettings,
    pub gateway: GatewaySettings,
    pub snapshots: SnapshotSettings,
    pub pipeline: PipelineSettings,
    pub persist: PersistSettings,
    pub postgres: PostgresSettings,
    pub dynamodb: DynamoSettings,
    pub kafka: KafkaSettings,
    /// `json` (one JSON object per line, for log pipelines) or `text` (for a terminal).
    pub log_format: LogFormat,
    pub risk: RiskSettings,
    /// Asset scales for balances; an asset the symbols name but this omits gets scale 8.
    pub assets: Vec<AssetSettings>,
    pub symbols: Vec<SymbolSettings>,
    /// Per-account fee rates overriding the symbols' (balances on).
    pub fee_tiers: Vec<FeeTierSettings>,
}

/// The risk stage (balances, holds, settlement, fees).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskSettings {
    /// Hold funds before matching and settle fills (off: no funds are checked).
    pub balances: bool,
}

/// One asset's scale.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetSettings {
    pub name: String,
    /// Decimal places of every amount of this asset.
    pub scale: u32,
}

/// Fee rates of some accounts on every symbol.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeeTierSettings {
    pub accounts: Vec<String>,
    pub maker_fee_bps: u32,
    pub taker_fee_bps: u32,
}

/// How logs are written (to stderr).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySettings {
    /// How long `?response=result` waits for the engine before answering 202 `pending`.
    pub reply_timeout_ms: u64,
    /// Messages queued per WebSocket connection.
    pub ws_queue: usize,
    /// Market-data messages buffered per symbol before a subscriber lags (fresh snapshot).
    pub md_buffer: usize,
    /// Largest WebSocket message accepted.
    pub max_frame_bytes: usize,
    /// Open connections the gateway holds; one more is closed at accept.
    pub max_connections: usize,
    /// Open connections one client IP may hold.
    pub max_connections_per_ip: usize,
    /// A request head must arrive within this, from accept or its first byte.
    pub header_read_timeout_ms: u64,
    /// A connection on which nothing moves for this long is closed (an idle keep-alive
    /// connection, a client that stopped reading, a WebSocket peer that sends nothing).
    pub idle_timeout_ms: u64,
    /// How often a WebSocket session pings its peer; below `idle_timeout_ms`.
    pub ws_ping_interval_ms: u64,
    /// Done orders kept in memory for `GET /v1/orders` (oldest forgotten first).
    pub max_closed_orders: usize,
    /// Fills kept in memory per account for `GET /v1/fills`.
    pub max_fills_per_account: usize,
    /// Accounts whose keys may use `/v1/admin/*` (latency histograms).
    pub admin_accounts: Vec<String>,
    /// Tells this gateway's replies and order ids from other gateways' (0-1023): every
    /// gateway process on one backbone needs its own.
    pub gateway_id: u32,
    /// A gateway also serves market data (reads `tachyon.marketdata`); `false` when
    /// `tachyon marketdata` processes serve it instead.
    pub market_data: bool,
}

/// The Kafka backbone (distributed mode; off while `brokers` is empty: the embedded one).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSettings {
    /// `host:port[,host:port…]`; empty: the embedded backbone in the data directory.
    pub brokers: String,
    /// Prepended to every topic name (several exchanges or test runs on one cluster).
    pub topic_prefix: String,
    /// Of the topics Tachyon creates when they are missing.
    pub replication_factor: i32,
    /// Producer batching: wait up to this long to fill a batch (0: send at once)…
    pub linger_ms: u32,
    /// …of at most this many bytes…
    pub batch_bytes: u32,
    /// …compressed with none, lz4, zstd, snappy or gzip.
    pub compression: String,
    /// How long an order may wait for the broker before its sender gets a 503.
    pub delivery_timeout_ms: u32,
    /// Records a producer queues before the gateway answers 503 (backpressure).
    pub queue_messages: u32,
    /// How long the broker holds a fetch that has nothing to return.
    pub fetch_wait_ms: u32,
    /// An engine shard's lease expires after this long without a renewal (a crashed
    /// engine's successor waits this long; a cleanly stopped one's starts at once).
    pub lease_ttl_ms: u64,
}

/// The embedded order path: one sequenced pipeline per partition.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineSettings {
    /// Commands a partition queues before order entry answers 503 (backpressure).
    pub ring_capacity: usize,
    /// Commands journaled and matched as one batch, at most.
    pub batch_max: usize,
    /// How long a pipeline spins on an empty queue before it parks (microseconds).
    pub spin_us: u64,
    /// Threads that fdatasync the partitions' journals (partition p on thread p mod n):
    /// fewer share a thread's rounds, more sync in parallel. 0: one per partition.
    pub sync_threads: usize,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        Self { ring_capacity: 16_384, batch_max: 1024, spin_us: 20, sync_threads: 0 }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotSettings {
    /// An engine shard snapshots after this many commands…
    pub every_commands: u64,
    /// …or after this many seconds with at least one command.
    pub every_secs: u64,
    /// Snapshots kept per shard.
    pub keep: usize,
}

/// How the persistence consumers batch and retry (shared by every sink).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PersistSettings {
    /// Records per write, at most.
    pub batch_max: usize,
    /// How long a read waits for the first record of a batch.
    pub poll_ms: u64,
    /// Transient failures in a row (retried with backoff) before the circuit opens.
    pub retry_attempts: u32,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// An open circuit tries one write after this long, doubling up to `circuit_max_open_ms`.
    pub circuit_open_ms: u64,
    pub circuit_max_open_ms: u64,
    /// On shutdown, how long the consumers may take to write what the engine published.
    pub drain_timeout_secs: u64,
    /// How often each store is checked for `/readyz` (besides every write).
    pub store_check_ms: u64,
}

/// PostgreSQL persistence (off unless `url` is set).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresSettings {
    /// `postgres://user:password@host:port/database`; empty: no PostgreSQL persistence.
    pub url: String,
    pub pool_size: usize,
    pub connect_timeout_ms: u64,
    /// Monthly trade partitions created ahead of the current month.
    pub months_ahead: u32,
}

impl std::fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSettings")
            .field("url", &tachyon_consumers::postgres::redact(&self.url))
            .field("pool_size", &self.pool_size)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("months_ahead", &self.months_ahead)
            .finish()
    }
}

/// DynamoDB persistence (off unless `enabled`). Credentials come from the standard AWS
/// chain (environment, profile, instance role), never from this file.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DynamoSettings {
    pub enabled: bool,
    /// A DynamoDB-compatible server (`http://127.0.0.1:8000`); empty: AWS's endpoint.
    pub endpoint_url: String,
    /// Empty: the region of the AWS chain.
    pub region: String,
    /// Tables `<prefix>_orders` and `<prefix>_trades`.
    pub table_prefix: String,
    /// Create missing tables on start (on-demand billing).
    pub create_tables: bool,
    /// Write shards per symbol in the trades table (spreads a hot symbol).
    pub trade_shards: u32,
    /// Requests in flight at once per batch.
    pub concurrency: usize,
}

/// When the journal syncs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncSetting {
    EveryBatch,
    Interval,
    None,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalSettings {
    pub fsync: FsyncSetting,
    /// With `fsync = "interval"`: at most this long between syncs.
    pub fsync_interval_ms: u64,
    pub segment_bytes: u64,
    pub max_record_bytes: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    pub per_second: u32,
    pub burst: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdempotencySettings {
    pub ttl_secs: u64,
    pub in_flight_timeout_secs: u64,
    pub max_entries: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    pub max_open_orders_per_account: u32,
    pub max_body_bytes: usize,
    pub max_batch_orders: usize,
}

/// A symbol as configured (decimal strings, as `GET /v1/symbols` shows them).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SymbolSettings {
    pub id: u32,
    pub name: String,
    pub tick_size: String,
    pub lot_size: String,
    pub min_quantity: String,
    pub max_quantity: String,
    pub max_notional: String,
    /// Fees charged on fills in the quote asset, in basis points (balances on).
    #[serde(default)]
    pub maker_fee_bps: u32,
    #[serde(default)]
    pub taker_fee_bps: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            partitions: 2,
            journal: JournalSettings::default(),
            rate_limit: RateLimitSettings::default(),
            idempotency: IdempotencySettings::default(),
            limits: LimitSettings::default(),
            gateway: GatewaySettings::default(),
            snapshots: SnapshotSettings::default(),
            pipeline: PipelineSettings::default(),
            persist: PersistSettings::default(),
            postgres: PostgresSettings::default(),
            dynamodb: DynamoSettings::default(),
            kafka: KafkaSettings::default(),
            log_format: LogFormat::Json,
            risk: RiskSettings::default(),
            assets: Vec::new(),
            symbols: DEFAULT_SYMBOLS.iter().map(SymbolSettings::from).collect(),
            fee_tiers: Vec::new(),
        }
    }
}

impl Default for JournalSettings {
    fn default() -> Self {
        let j = JournalConfig::default();
        Self {
            fsync: FsyncSetting::EveryBatch,
            fsync_interval_ms: 5,
            segment_bytes: j.segment_bytes,
            max_record_bytes: j.max_record_bytes,
        }
    }
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        let r = RateLimitConfig::default();
        Self { per_second: r.per_second, burst: r.burst }
    }
}

impl Default for IdempotencySettings {
    fn default() -> Self {
        let i = IdempotencyConfig::default();
        Self {
            ttl_secs: i.ttl.as_secs(),
            in_flight_timeout_secs: i.in_flight_timeout.as_secs(),
            max_entries: i.max_entries,
        }
    }
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            max_open_orders_per_account: RiskLimits::default().max_open_orders,
            max_body_bytes: 64 * 1024,
            max_batch_orders: 100,
        }
    }
}

impl Default for GatewaySettings {
    fn default() -> Self {
        let g = GatewayConfig::default();
        Self {
            reply_timeout_ms: g.reply_timeout.as_millis() as u64,
            ws_queue: g.ws_queue,
            md_buffer: g.md_buffer,
            max_frame_bytes: g.max_frame_bytes,
            max_connections: g.connections.max_total,
            max_connections_per_ip: g.connections.max_per_ip,
            header_read_timeout_ms: g.connections.header_read_timeout.as_millis() as u64,
            idle_timeout_ms: g.connections.idle_timeout.as_millis() as u64,
            ws_ping_interval_ms: g.connections.ws_ping_interval.as_millis() as u64,
            max_closed_orders: g.store.max_closed_orders,
            max_fills_per_account: g.store.max_fills_per_account,
            admin_accounts: vec!["admin".to_owned()],
            gateway_id: g.gateway_id,
            market_data: true,
        }
    }
}

impl Default for KafkaSettings {
    fn default() -> Self {
        let k = KafkaConfig::new("", 1);
        Self {
            brokers: k.brokers,
            topic_prefix: k.topic_prefix,
            replication_factor: k.replication_factor,
            linger_ms: k.linger_ms,
            batch_bytes: k.batch_bytes,
            compression: k.compression,
            delivery_timeout_ms: k.delivery_timeout_ms,
            queue_messages: k.queue_messages,
            fetch_wait_ms: k.fetch_wait_ms,
            lease_ttl_ms: LeaseConfig::default().ttl.as_millis() as u64,
        }
    }
}

impl Default for PersistSettings {
    fn default() -> Self {
        let c = ConsumerConfig::new("defaults", tachyon_proto::Topic::Executions);
        Self {
            batch_max: c.batch_max,
            poll_ms: c.poll_ms,
            retry_attempts: c.retry.attempts,
            retry_base_ms: c.retry.base_backoff.as_millis() as u64,
            retry_max_ms: c.retry.max_backoff.as_millis() as u64,
            circuit_open_ms: c.retry.open_for.as_millis() as u64,
            circuit_max_open_ms: c.retry.max_open.as_millis() as u64,
            drain_timeout_secs: 10,
            store_check_ms: c.check_every.as_millis() as u64,
        }
    }
}

impl Default for PostgresSettings {
    fn default() -> Self {
        let p = PostgresConfig::new("");
        Self {
            url: String::new(),
            pool_size: p.pool_size,
            connect_timeout_ms: p.connect_timeout.as_millis() as u64,
            months_ahead: p.months_ahead,
        }
    }
}

impl Default for DynamoSettings {
    fn default() -> Self {
        let d = DynamoConfig::default();
        Self {
            enabled: false,
            endpoint_url: String::new(),
            region: String::new(),
            table_prefix: d.table_prefix,
            create_tables: d.create_tables,
            trade_shards: d.trade_shards,
            concurrency: d.concurrency,
        }
    }
}

impl Default for SnapshotSettings {
    fn default() -> Self {
        Self { every_commands: 100_000, every_secs: 60, keep: 3 }
    }
}

impl From<&SymbolDef<'_>> for SymbolSettings {
    fn from(d: &SymbolDef<'_>) -> Self {
        Self {
            id: d.id,
            name: d.name.into(),
            tick_size: d.tick_size.into(),
            lot_size: d.lot_size.into(),
            min_quantity: d.min_quantity.into(),
            max_quantity: d.max_quantity.into(),
            max_notional: d.max_notional.into(),
            maker_fee_bps: 0,
            taker_fee_bps: 0,
        }
    }
}

/// Overrides from flags or `TACHYON_*` environment variables (`None`: not given).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct Overrides {
    /// Configuration file (TOML); settings it does not name keep their defaults.
    #[arg(long, env = "TACHYON_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "TACHYON_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Data directory (journal, snapshots, API-key secret).
    #[arg(long, env = "TACHYON_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Backbone partitions (engine shards).
    #[arg(long, env = "TACHYON_PARTITIONS")]
    pub partitions: Option<u32>,
    /// Journal fsync policy: every_batch, interval or none.
    #[arg(long, env = "TACHYON_FSYNC", value_parser = parse_fsync)]
    pub fsync: Option<FsyncSetting>,
    /// Log format: json or text.
    #[arg(long, env = "TACHYON_LOG_FORMAT", value_parser = parse_log_format)]
    pub log_format: Option<LogFormat>,
    /// Persist orders, trades and fills to this PostgreSQL database
    /// (`postgres://user:password@host:port/database`).
    #[arg(long = "postgres", env = "TACHYON_POSTGRES_URL", value_name = "URL", hide_env_values = true)]
    pub postgres_url: Option<String>,
    /// Persist orders and trades to DynamoDB (AWS's endpoint, or --dynamodb-endpoint).
    #[arg(long, env = "TACHYON_DYNAMODB")]
    pub dynamodb: bool,
    /// Persist to this DynamoDB-compatible endpoint (implies --dynamodb).
    #[arg(long, env = "TACHYON_DYNAMODB_ENDPOINT", value_name = "URL")]
    pub dynamodb_endpoint: Option<String>,
    /// Create the DynamoDB tables if missing.
    #[arg(long, env = "TACHYON_DYNAMODB_CREATE_TABLES")]
    pub dynamodb_create_tables: bool,
    /// Run over these Kafka brokers (`host:port,…`) instead of the embedded backbone.
    #[arg(long, env = "TACHYON_KAFKA", value_name = "BROKERS")]
    pub kafka: Option<String>,
    /// Prefix of every Kafka topic name.
    #[arg(long, env = "TACHYON_TOPIC_PREFIX")]
    pub topic_prefix: Option<String>,
    /// This gateway's id (0-1023), unique among the gateways on one backbone.
    #[arg(long, env = "TACHYON_GATEWAY_ID")]
    pub gateway_id: Option<u32>,
    /// Hold funds before matching and settle fills (`[risk] balances`).
    #[arg(long, env = "TACHYON_RISK_BALANCES")]
    pub balances: bool,
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    match s {
        "json" => Ok(LogFormat::Json),
        "text" => Ok(LogFormat::Text),
        _ => Err("expected json or text".into()),
    }
}

fn parse_fsync(s: &str) -> Result<FsyncSetting, String> {
    match s {
        "every_batch" => Ok(FsyncSetting::EveryBatch),
        "interval" => Ok(FsyncSetting::Interval),
        "none" => Ok(FsyncSetting::None),
        _ => Err("expected every_batch, interval or none".into()),
    }
}

impl Config {
    /// Defaults, then the file named in `overrides` (if any), then the overrides.
    ///
    /// # Errors
    /// An unreadable or invalid file (unknown keys included), or settings that do not
    /// validate.
    pub fn load(overrides: &Overrides) -> Result<Self> {
        let mut config = match &overrides.config {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        if let Some(listen) = overrides.listen {
            config.listen = listen;
        }
        if let Some(dir) = &overrides.data_dir {
            config.data_dir.clone_from(dir);
        }
        if let Some(p) = overrides.partitions {
            config.partitions = p;
        }
        if let Some(f) = overrides.fsync {
            config.journal.fsync = f;
        }
        if let Some(f) = overrides.log_format {
            config.log_format = f;
        }
        if let Some(url) = &overrides.postgres_url {
            config.postgres.url.clone_from(url);
        }
        if let Some(endpoint) = &overrides.dynamodb_endpoint {
            config.dynamodb.endpoint_url.clone_from(endpoint);
            config.dynamodb.enabled = true;
        }
        config.dynamodb.enabled |= overrides.dynamodb;
        if let Some(brokers) = &overrides.kafka {
            config.kafka.brokers.clone_from(brokers);
        }
        if let Some(prefix) = &overrides.topic_prefix {
            config.kafka.topic_prefix.clone_from(prefix);
        }
        if let Some(id) = overrides.gateway_id {
            config.gateway.gateway_id = id;
        }
        config.dynamodb.create_tables |= overrides.dynamodb_create_tables;
        config.risk.balances |= overrides.balances;
        config.validate()?;
        Ok(config)
    }

    /// Reads a TOML file over the defaults.
    ///
    /// # Errors
    /// I/O and parse errors, naming the file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Checks every setting; returns the engine configuration it describes.
    ///
    /// # Errors
    /// The first invalid setting, named.
    pub fn validate(&self) -> Result<EngineConfig> {
        for account in &self.gateway.admin_accounts {
            AccountId::parse(account).map_err(|e| anyhow::anyhow!("gateway.admin_accounts: {account:?}: {e}"))?;
        }
        if self.partitions == 0 || self.partitions > 1024 {
            bail!("partitions must be 1-1024, not {}", self.partitions);
        }
        if self.rate_limit.per_second == 0 || self.rate_limit.burst == 0 {
            bail!("rate_limit.per_second and rate_limit.burst must be positive");
        }
        if self.limits.max_body_bytes < 1024 || self.limits.max_batch_orders == 0 {
            bail!("limits.max_body_bytes must be at least 1024 and limits.max_batch_orders positive");
        }
        if self.gateway.max_connections == 0 || self.gateway.max_connections_per_ip == 0 {
            bail!("gateway.max_connections and gateway.max_connections_per_ip must be positive");
        }
        let g = &self.gateway;
        if g.header_read_timeout_ms == 0 || g.ws_ping_interval_ms == 0 || g.ws_ping_interval_ms >= g.idle_timeout_ms {
            bail!(
                "gateway.header_read_timeout_ms and gateway.ws_ping_interval_ms must be positive, and \
                 gateway.ws_ping_interval_ms below gateway.idle_timeout_ms (a live WebSocket peer answers pings)"
            );
        }
        if self.gateway.reply_timeout_ms == 0 || self.gateway.ws_queue == 0 || self.gateway.max_frame_bytes < 1024 {
            bail!(
                "gateway.reply_timeout_ms and gateway.ws_queue must be positive, gateway.max_frame_bytes at least 1024"
            );
        }
        if self.pipeline.ring_capacity == 0 || self.pipeline.batch_max == 0 {
            bail!("pipeline.ring_capacity and pipeline.batch_max must be positive");
        }
        if self.snapshots.every_commands == 0 || self.snapshots.every_secs == 0 || self.snapshots.keep == 0 {
            bail!("snapshots.every_commands, snapshots.every_secs and snapshots.keep must be positive");
        }
        let p = &self.persist;
        if p.batch_max == 0 || p.poll_ms == 0 || p.retry_attempts == 0 || p.retry_base_ms == 0 || p.circuit_open_ms == 0
        {
            bail!("persist.batch_max, poll_ms, retry_attempts, retry_base_ms and circuit_open_ms must be positive");
        }
        if p.retry_max_ms < p.retry_base_ms || p.circuit_max_open_ms < p.circuit_open_ms {
            bail!("persist.retry_max_ms and circuit_max_open_ms must be at least retry_base_ms and circuit_open_ms");
        }
        if !self.postgres.url.is_empty() {
            self.postgres_config().map_err(|e| anyhow::anyhow!("postgres.url: {e}"))?;
            if self.postgres.pool_size == 0 || self.postgres.connect_timeout_ms == 0 {
                bail!("postgres.pool_size and postgres.connect_timeout_ms must be positive");
            }
        }
        let d = &self.dynamodb;
        if d.table_prefix.is_empty()
            || d.table_prefix.len() > 200
            || !d.table_prefix.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            bail!("dynamodb.table_prefix must be 1-200 characters of A-Z, a-z, 0-9, '_', '-' and '.'");
        }
        if d.trade_shards == 0 || d.concurrency == 0 {
            bail!("dynamodb.trade_shards and dynamodb.concurrency must be positive");
        }
        if self.gateway.gateway_id > MAX_GATEWAY_ID {
            bail!("gateway.gateway_id must be 0-{MAX_GATEWAY_ID}, not {}", self.gateway.gateway_id);
        }
        let k = &self.kafka;
        if !k.topic_prefix.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            || k.topic_prefix.len() > 100
        {
            bail!("kafka.topic_prefix must be at most 100 characters of A-Z, a-z, 0-9, '_', '-' and '.'");
        }
        if k.replication_factor < 1 || k.batch_bytes == 0 || k.delivery_timeout_ms == 0 || k.queue_messages == 0 {
            bail!("kafka.replication_factor, batch_bytes, delivery_timeout_ms and queue_messages must be positive");
        }
        if k.lease_ttl_ms < 100 {
            bail!("kafka.lease_ttl_ms must be at least 100");
        }
        if !["none", "lz4", "zstd", "snappy", "gzip"].contains(&k.compression.as_str()) {
            bail!("kafka.compression must be none, lz4, zstd, snappy or gzip, not {:?}", k.compression);
        }
        if self.journal.fsync == FsyncSetting::Interval && self.journal.fsync_interval_ms == 0 {
            bail!("journal.fsync_interval_ms must be positive with fsync = \"interval\"");
        }
        let symbols = self
            .symbols
            .iter()
            .map(|s| {
                SymbolSpec::from_def(&SymbolDef {
                    id: s.id,
                    name: &s.name,
                    tick_size: &s.tick_size,
                    lot_size: &s.lot_size,
                    min_quantity: &s.min_quantity,
                    max_quantity: &s.max_quantity,
                    max_notional: &s.max_notional,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if self.risk.balances || !self.assets.is_empty() {
            self.risk_config_for(&symbols, 0, 1)?;
        }
        let engine =
            EngineConfig { symbols, limits: RiskLimits { max_open_orders: self.limits.max_open_orders_per_account } };
        engine.validate()?;
        Ok(engine)
    }

    /// The risk core's configuration for risk shard `partition` of `partitions`.
    ///
    /// # Errors
    /// Asset scales that cannot hold a symbol's lot or tick × lot, fee rates above 100%,
    /// an unknown account in a fee tier.
    pub fn risk_config(&self, engine: &EngineConfig, partition: u32, partitions: u32) -> Result<RiskConfig> {
        self.risk_config_for(&engine.symbols, partition, partitions)
    }

    fn risk_config_for(&self, symbols: &[SymbolSpec], partition: u32, partitions: u32) -> Result<RiskConfig> {
        let assets: Vec<Asset> = self.assets.iter().map(|a| Asset { name: a.name.clone(), scale: a.scale }).collect();
        let fees: Vec<FeeRates> =
            self.symbols.iter().map(|s| FeeRates { maker_bps: s.maker_fee_bps, taker_bps: s.taker_fee_bps }).collect();
        let tiers = self
            .fee_tiers
            .iter()
            .map(|t| {
                let accounts = t
                    .accounts
                    .iter()
                    .map(|a| AccountId::parse(a).map_err(|e| anyhow::anyhow!("fee_tiers: account {a:?}: {e}")))
                    .collect::<Result<Vec<_>>>()?;
                Ok(FeeTier { accounts, rates: FeeRates { maker_bps: t.maker_fee_bps, taker_bps: t.taker_fee_bps } })
            })
            .collect::<Result<Vec<_>>>()?;
        RiskConfig::build(&assets, symbols, &fees, &tiers, partition, partitions)
            .map_err(|e| anyhow::anyhow!("balances: {e}"))
    }

    /// The journal settings as the bus takes them.
    pub fn journal(&self) -> JournalConfig {
        let fsync = match self.journal.fsync {
            FsyncSetting::EveryBatch => FsyncPolicy::EveryBatch,
            FsyncSetting::Interval => FsyncPolicy::Interval(Duration::from_millis(self.journal.fsync_interval_ms)),
            FsyncSetting::None => FsyncPolicy::Never,
        };
        JournalConfig {
            fsync,
            segment_bytes: self.journal.segment_bytes,
            max_record_bytes: self.journal.max_record_bytes,
        }
    }

    pub fn rate_limit(&self) -> RateLimitConfig {
        RateLimitConfig { per_second: self.rate_limit.per_second, burst: self.rate_limit.burst }
    }

    /// The gateway settings.
    pub fn gateway(&self) -> GatewayConfig {
        GatewayConfig {
            gateway_id: self.gateway.gateway_id,
            order_entry: true,
            reply_timeout: Duration::from_millis(self.gateway.reply_timeout_ms),
            max_body_bytes: self.limits.max_body_bytes,
            max_batch_orders: self.limits.max_batch_orders,
            rate_limit: self.rate_limit(),
            idempotency: self.idempotency(),
            store: StoreLimits {
                max_closed_orders: self.gateway.max_closed_orders,
                max_fills_per_account: self.gateway.max_fills_per_account,
            },
            ws_queue: self.gateway.ws_queue,
            md_buffer: self.gateway.md_buffer,
            max_frame_bytes: self.gateway.max_frame_bytes,
            connections: tachyon_gateway::ConnectionLimits {
                max_total: self.gateway.max_connections,
                max_per_ip: self.gateway.max_connections_per_ip,
                header_read_timeout: Duration::from_millis(self.gateway.header_read_timeout_ms),
                idle_timeout: Duration::from_millis(self.gateway.idle_timeout_ms),
                ws_ping_interval: Duration::from_millis(self.gateway.ws_ping_interval_ms),
            },
            // Validated by `validate`, so nothing is dropped here.
            admin_accounts: self.gateway.admin_accounts.iter().filter_map(|a| AccountId::parse(a).ok()).collect(),
            // Set by the exchange from where the market data comes from.
            answer_after_market_data: false,
        }
    }

    /// The Kafka backbone's settings, `None` for the embedded backbone.
    pub fn kafka_config(&self) -> Option<KafkaConfig> {
        let k = &self.kafka;
        if k.brokers.is_empty() {
            return None;
        }
        let mut c = KafkaConfig::new(&k.brokers, self.partitions);
        c.topic_prefix.clone_from(&k.topic_prefix);
        c.replication_factor = k.replication_factor;
        c.linger_ms = k.linger_ms;
        c.batch_bytes = k.batch_bytes;
        c.compression.clone_from(&k.compression);
        c.delivery_timeout_ms = k.delivery_timeout_ms;
        c.queue_messages = k.queue_messages;
        c.fetch_wait_ms = k.fetch_wait_ms;
        Some(c)
    }

    /// A persistence consumer's settings under `group`.
    pub fn consumer(&self, group: &str) -> ConsumerConfig {
        let p = &self.persist;
        let mut c = ConsumerConfig::new(group, tachyon_proto::Topic::Executions);
        c.batch_max = p.batch_max;
        c.poll_ms = p.poll_ms;
        c.check_every = Duration::from_millis(p.store_check_ms);
        c.retry = RetryPolicy {
            attempts: p.retry_attempts,
            base_backoff: Duration::from_millis(p.retry_base_ms),
            max_backoff: Duration::from_millis(p.retry_max_ms),
            open_for: Duration::from_millis(p.circuit_open_ms),
            max_open: Duration::from_millis(p.circuit_max_open_ms),
        };
        c
    }

    /// The PostgreSQL sink's settings, `None` when persistence to PostgreSQL is off.
    ///
    /// # Errors
    /// A URL that does not parse (its text is not repeated: it may hold a password).
    pub fn postgres_config(&self) -> Result<Option<PostgresConfig>, String> {
        if self.postgres.url.is_empty() {
            return Ok(None);
        }
        tachyon_consumers::postgres::check_url(&self.postgres.url)?;
        let mut c = PostgresConfig::new(self.postgres.url.clone());
        c.pool_size = self.postgres.pool_size;
        c.connect_timeout = Duration::from_millis(self.postgres.connect_timeout_ms);
        c.months_ahead = self.postgres.months_ahead;
        Ok(Some(c))
    }

    /// The DynamoDB sink's settings, `None` when persistence to DynamoDB is off.
    pub fn dynamo_config(&self) -> Option<DynamoConfig> {
        let d = &self.dynamodb;
        d.enabled.then(|| DynamoConfig {
            table_prefix: d.table_prefix.clone(),
            create_tables: d.create_tables,
            trade_shards: d.trade_shards,
            concurrency: d.concurrency,
        })
    }

    pub fn idempotency(&self) -> IdempotencyConfig {
        IdempotencyConfig {
            ttl: Duration::from_secs(self.idempotency.ttl_secs),
            in_flight_timeout: Duration::from_secs(self.idempotency.in_flight_timeout_secs),
            max_entries: self.idempotency.max_entries,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_pinned() {
        let c = Config::default();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.partitions, 2);
        assert_eq!(c.journal.fsync, FsyncSetting::EveryBatch);
        assert_eq!((c.rate_limit.per_second, c.rate_limit.burst), (1_000, 2_000));
        assert_eq!(c.idempotency.ttl_secs, 86_400);
        assert_eq!((c.limits.max_body_bytes, c.limits.max_batch_orders), (65_536, 100));
        assert_eq!(c.limits.max_open_orders_per_account, 10_000);
        let names: Vec<&str> = c.symbols.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(&names[..3], ["BTC-USD", "ETH-USD", "SOL-USD"]);
        assert_eq!(c.validate().expect("defaults are valid").symbols.len(), c.symbols.len());
    }

    #[test]
    fn the_example_file_is_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tachyon.example.toml");
        assert_eq!(Config::from_file(&path).expect("example parses"), Config::default());
    }

    #[test]
    fn a_file_overrides_what_it_names_and_rejects_typos() {
        let c: Config = toml::from_str("partitions = 4\n[rate_limit]\nper_second = 50\n").expect("parses");
        assert_eq!((c.partitions, c.rate_limit.per_second, c.rate_limit.burst), (4, 50, 2_000));
        let err = toml::from_str::<Config>("[rate_limit]\nper_secnd = 50\n").expect_err("unknown key");
        assert!(err.to_string().contains("per_secnd"), "{err}");
        assert!(toml::from_str::<Config>("[journal]\nfsync = \"sometimes\"\n").is_err());
    }

    #[test]
    fn overrides_win_over_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("t.toml");
        std::fs::write(&file, "partitions = 4\ndata_dir = \"/from/file\"\n").expect("write");
        let overrides = Overrides { config: Some(file), partitions: Some(8), ..Overrides::default() };
        let c = Config::load(&overrides).expect("loads");
        assert_eq!((c.partitions, c.data_dir.as_path()), (8, Path::new("/from/file")));
    }

    #[test]
    fn invalid_settings_are_named() {
        let mut c = Config { partitions: 0, ..Config::default() };
        assert!(c.validate().expect_err("invalid").to_string().contains("partitions"));
        c.partitions = 2;
        c.symbols[1].id = c.symbols[0].id;
        assert!(c.validate().expect_err("invalid").to_string().contains("used twice"));
        c.symbols[1].id = 99;
        c.symbols[1].tick_size = "0".into();
        assert!(c.validate().expect_err("invalid").to_string().contains("tick_size"));
    }

    #[test]
    fn balances_refuse_a_quote_scale_that_cannot_hold_tick_times_lot() {
        let text = r#"
            [risk]
            balances = true
            [[assets]]
            name = "BTC"
            scale = 8
            [[assets]]
            name = "USD"
            scale = 2
            [[symbols]]
            id = 1
            name = "BTC-USD"
            tick_size = "0.01"
            lot_size = "0.0001"
            min_quantity = "0.0001"
            max_quantity = "1000"
            max_notional = "10000000"
            maker_fee_bps = 10
            taker_fee_bps = 20
        "#;
        let c: Config = toml::from_str(text).expect("parses");
        let err = c.validate().expect_err("USD scale 2 cannot hold 0.01 x 0.0001");
        assert_eq!(
            err.to_string(),
            "balances: symbol BTC-USD: tick × lot needs 6 decimal places but asset USD has scale 2 (raise the scale)"
        );
        let fixed = text.replace("scale = 2", "scale = 6");
        let c: Config = toml::from_str(&fixed).expect("parses");
        let engine = c.validate().expect("fits");
        let risk = c.risk_config(&engine, 0, 1).expect("fits");
        assert_eq!(risk.markets[0].fees, FeeRates { maker_bps: 10, taker_bps: 20 });
        assert_eq!(risk.markets[0].quote_per_unit, 1);
    }

    #[test]
    fn balances_are_off_by_default_and_the_defaults_fit_scale_8() {
        let c = Config::default();
        assert!(!c.risk.balances);
        let engine = c.validate().expect("defaults are valid");
        let risk = c.risk_config(&engine, 0, 1).expect("default symbols fit scale 8 assets");
        assert!(risk.assets.iter().all(|a| a.scale == 8));
    }
}
