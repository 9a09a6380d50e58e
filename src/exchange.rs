//! The exchange's processes: `tachyon run` (every role in one process) and the single
//! roles of distributed mode (`gateway`, `engine`, `marketdata`, `persist`), all built by
//! [`run`] from a [`Roles`] and one configuration.
//!
//! Backbone: the embedded one in the data directory (only `run`: its journal lives in
//! one process), or Kafka when `kafka.brokers` is set. Engine snapshots go to files
//! beside the embedded journal, and to the `tachyon.snapshots` topic on Kafka (so they
//! outlive the engine's machine).
//!
//! Start-up: open the backbone, start the engine shards this process owns (each recovers
//! from its newest snapshot and replays its input), start the feeds that rebuild the
//! gateway's order store and market data from the engine's outputs, the persistence
//! consumers, and serve HTTP at once: `/healthz` answers immediately, `/readyz` and order
//! entry wait until every local shard and feed has caught up.
//!
//! Shutdown (the future resolves, e.g. on SIGTERM): stop accepting, let in-flight requests
//! finish, let every shard drain the commands already acknowledged, write a final
//! snapshot, let the consumers write what was published, close the backbone (synced or
//! flushed) and return. A shard that fails for good stops the whole process the same way
//! and makes [`run`] return an error, so a supervisor restarts it into recovery.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tachyon_bus::{Backbone, EmbeddedBus, EmbeddedConfig, FsyncPolicy, JournalConfig, KafkaBus};
use tachyon_consumers::{Consumer, ConsumerProbe, DynamoSink, PostgresSink};
use tachyon_engine::EngineConfig;
use tachyon_gateway::feed::{spawn_feeds, FeedPosition};
use tachyon_gateway::history::Pending;
use tachyon_gateway::server::ops_router;
use tachyon_gateway::{Gateway, History, KeyRing, Probe, Symbols};
use tachyon_proto::api::{AccountFill, Order};
use tachyon_proto::latency::Latency;
use tachyon_proto::metrics::MetricsText;
use tachyon_proto::{AccountId, OrderId, SymbolId, Topic};
use tachyon_runtime::{acquire_lease, run_shard, Lease, LeaseConfig, ShardConfig, ShardStatus, SnapshotStore};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::config::Config;

/// Readiness and metrics of the shards, the backbone and the persistence consumers, for
/// the gateway's endpoints.
struct ExchangeProbe {
    bus: Arc<dyn Backbone>,
    /// (partition, status) of the shards this process runs.
    shards: Vec<(u32, Arc<ShardStatus>)>,
    feeds: Vec<Arc<FeedPosition>>,
    consumers: Vec<Arc<ConsumerProbe>>,
}

impl Probe for ExchangeProbe {
    fn ready(&self) -> bool {
        self.bus.is_healthy()
            && self.shards.iter().all(|(_, s)| s.caught_up.load(Ordering::Acquire))
            && self.consumers.iter().all(|c| c.ready())
    }

    fn metrics(&self, text: &mut String) {
        let mut out = MetricsText::default();
        for (p, s) in &self.shards {
            let partition = p.to_string();
            let labels = [("partition", partition.as_str())];
            let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
            out.counter("tachyon_engine_commands_total", &labels, load(&s.commands));
            out.gauge("tachyon_engine_input_position", &labels, load(&s.position));
            out.gauge("tachyon_engine_output_sequence", &labels, load(&s.out_seq));
            out.counter("tachyon_engine_dead_letters_total", &labels, load(&s.dead_letters));
            out.counter("tachyon_engine_snapshots_total", &labels, load(&s.snapshots));
        }
        // Only this process's partitions, and only while the backbone is up: on Kafka each
        // end offset is a broker round trip, which waits out a timeout without a broker.
        let mut partitions: Vec<u32> = if self.bus.is_healthy() {
            self.shards.iter().map(|(p, _)| *p).chain(self.feeds.iter().map(|f| f.partition)).collect()
        } else {
            Vec::new()
        };
        partitions.sort_unstable();
        partitions.dedup();
        for topic in [Topic::Orders, Topic::Executions, Topic::MarketData, Topic::DeadLetter] {
            for &p in &partitions {
                let partition = p.to_string();
                let end = self.bus.end_offset(topic, p).unwrap_or(0);
                out.gauge("tachyon_bus_end_offset", &[("topic", topic.name()), ("partition", &partition)], end);
            }
        }
        for f in &self.feeds {
            let partition = f.partition.to_string();
            let labels = [("topic", f.topic.name()), ("partition", partition.as_str())];
            out.gauge("tachyon_gateway_feed_position", &labels, f.next.load(Ordering::Relaxed));
        }
        out.gauge("tachyon_bus_healthy", &[], u8::from(self.bus.is_healthy()));
        for c in &self.consumers {
            c.metrics(&mut out);
        }
        out.render(text);
    }
}

/// Refuses a data directory laid out for another partition count: symbols would land on
/// other shards than their history.
fn check_layout(config: &Config) -> Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let path = config.data_dir.join("partitions");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let found: u32 = text.trim().parse().with_context(|| format!("reading {}", path.display()))?;
            if found != config.partitions {
                bail!(
                    "{} was created with {found} partitions; this configuration has {} (use the same count or a new data directory)",
                    config.data_dir.display(),
                    config.partitions
                );
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::write(&path, config.partitions.to_string())
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    Ok(())
}

/// Which parts of the exchange one process runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Roles {
    /// Order entry (REST and WebSocket), with market data unless `gateway.market_data` is
    /// off.
    pub gateway: bool,
    /// Market data only (book, trades, ticker, candles, WebSocket channels).
    pub market_data: bool,
    /// The engine shards (partitions) this process owns.
    pub shards: Vec<u32>,
    /// The persistence consumers the configuration enables (PostgreSQL, DynamoDB).
    pub persist: bool,
}

impl Roles {
    /// Everything in one process (`tachyon run`).
    pub fn all(partitions: u32) -> Self {
        Self { gateway: true, market_data: true, shards: (0..partitions).collect(), persist: true }
    }

    fn serves_api(&self) -> bool {
        self.gateway || self.market_data
    }
}

/// Opens the configured backbone: Kafka when `kafka.brokers` is set, else the embedded
/// journal in the data directory (for a process that runs every role).
async fn open_backbone(config: &Config, roles: &Roles) -> Result<(Arc<dyn Backbone>, bool)> {
    if let Some(kafka) = config.kafka_config() {
        let brokers = kafka.brokers.clone();
        let bus = tokio::task::spawn_blocking(move || KafkaBus::connect(&kafka))
            .await?
            .with_context(|| format!("connecting to Kafka at {brokers}"))?;
        tracing::info!(brokers, prefix = %config.kafka.topic_prefix, "on the Kafka backbone");
        return Ok((Arc::new(bus), true));
    }
    if *roles != Roles::all(config.partitions) {
        bail!("this role runs on a Kafka backbone: give --kafka <brokers> (or kafka.brokers in the configuration)");
    }
    check_layout(config)?;
    let mut bus_config = EmbeddedConfig::new(config.data_dir.join("journal"), config.partitions);
    bus_config.input = config.journal();
    bus_config.output = JournalConfig { fsync: FsyncPolicy::Never, ..config.journal() };
    Ok((Arc::new(EmbeddedBus::open(&bus_config).context("opening the journal")?), false))
}

/// The engine shard threads of one process.
struct Shards {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    statuses: Vec<(u32, Arc<ShardStatus>)>,
    failed: Arc<AtomicBool>,
}

fn start_shards(
    config: &Config,
    engine_config: &EngineConfig,
    bus: &Arc<dyn Backbone>,
    on_kafka: bool,
    shards: &[u32],
    latency: &Arc<Latency>,
    failed_notify: &Arc<Notify>,
) -> Result<Shards> {
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    let mut statuses = Vec::new();
    for &partition in shards {
        let status = Arc::new(ShardStatus::default());
        let snapshots = if on_kafka {
            SnapshotStore::on_backbone(Arc::clone(bus), partition)
        } else {
            SnapshotStore::new(config.data_dir.join("snapshots").join(format!("{partition:04}")), config.snapshots.keep)
        };
        let mut shard_config = ShardConfig {
            partition,
            snapshots,
            snapshot_every_commands: config.snapshots.every_commands,
            snapshot_every: Duration::from_secs(config.snapshots.every_secs),
            batch_max: 1024,
            latency: Arc::clone(latency),
            fenced: None,
        };
        let (bus, engine_config, stop, st) =
            (Arc::clone(bus), engine_config.clone(), Arc::clone(&stop), Arc::clone(&status));
        let (failed, notify) = (Arc::clone(&failed), Arc::clone(failed_notify));
        // Over Kafka another process may run (or still run) this shard: take its lease first.
        let lease = on_kafka.then(|| LeaseConfig::with_ttl(Duration::from_millis(config.kafka.lease_ttl_ms)));
        let owner = lease_owner();
        let thread = std::thread::Builder::new().name(format!("shard-{partition}")).spawn(move || {
            let result = (|| {
                let held = match lease {
                    Some(lease) => match acquire_lease(&bus, partition, &owner, lease, &stop)? {
                        Some(held) => Some(held),
                        None => return Ok(()), // Stopped while waiting as a standby.
                    },
                    None => None,
                };
                shard_config.fenced = held.as_ref().map(Lease::lost);
                run_shard(bus, engine_config, shard_config, stop, st)
                // `held` drops here: the lease is released after the final snapshot.
            })();
            if let Err(error) = result {
                tracing::error!(partition, %error, "engine shard failed; shutting down");
                failed.store(true, Ordering::Release);
                notify.notify_one();
            }
        })?;
        threads.push(thread);
        statuses.push((partition, status));
    }
    Ok(Shards { stop, threads, statuses, failed })
}

/// This process's name in shard leases: host, process id and start time.
fn lease_owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "engine".into());
    let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
    format!("{}-{}-{started}", host.trim(), std::process::id())
}

/// Runs `roles` on `listener` until `shutdown` resolves (see the module docs).
///
/// # Errors
/// Configuration, data-directory, backbone and journal errors at start; a shard that
/// failed.
pub async fn run(
    config: Config,
    roles: Roles,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let engine_config = config.validate()?;
    if let Some(p) = roles.shards.iter().find(|&&p| p >= config.partitions) {
        bail!("shard {p} does not exist: there are {} partitions (0-{})", config.partitions, config.partitions - 1);
    }
    let (bus, on_kafka) = open_backbone(&config, &roles).await?;

    let failed = Arc::new(Notify::new());
    let latency = Arc::new(Latency::default());
    let shards = start_shards(&config, &engine_config, &bus, on_kafka, &roles.shards, &latency, &failed)?;

    let postgres = match config.postgres_config().map_err(|e| anyhow::anyhow!("postgres.url: {e}"))? {
        Some(pg) if roles.persist || roles.gateway => {
            Some(PostgresSink::new(pg, &engine_config.symbols).context("PostgreSQL sink")?)
        }
        _ => None,
    };
    let stop_feeds = Arc::new(AtomicBool::new(false));
    let mut feeds = (Vec::new(), Vec::new());
    let gateway = if roles.serves_api() {
        let keys = KeyRing::load_or_create(&config.data_dir).context("loading the API-key secret")?;
        let symbols = Arc::new(Symbols::new(engine_config.symbols.clone(), config.partitions));
        let mut gateway_config = config.gateway();
        gateway_config.order_entry = roles.gateway;
        let mut gateway =
            Gateway::new(gateway_config, symbols, keys, Arc::clone(&bus)).with_latency(Arc::clone(&latency));
        if let (Some(sink), true) = (&postgres, roles.gateway) {
            gateway = gateway.with_history(Arc::new(PostgresHistory(Arc::clone(sink))));
        }
        let gateway = Arc::new(gateway);
        let mut topics = Vec::new();
        if roles.gateway {
            topics.push(Topic::Executions);
        }
        if roles.market_data || (roles.gateway && config.gateway.market_data) {
            topics.push(Topic::MarketData);
        }
        feeds = spawn_feeds(&gateway, &bus, &topics, &stop_feeds)?;
        Some(gateway)
    } else {
        None
    };
    let consumers = if roles.persist {
        start_consumers(&config, &engine_config.symbols, &bus, postgres).await?
    } else {
        Vec::new()
    };
    let shard_statuses: Vec<Arc<ShardStatus>> = shards.statuses.iter().map(|(_, s)| Arc::clone(s)).collect();
    let probe = Arc::new(ExchangeProbe {
        bus: Arc::clone(&bus),
        shards: shards.statuses.clone(),
        feeds: feeds.0.clone(),
        consumers: consumers.iter().map(Consumer::probe).collect(),
    });

    let address = listener.local_addr()?;
    tracing::info!(
        %address,
        partitions = config.partitions,
        shards = ?roles.shards,
        gateway = roles.gateway,
        market_data = roles.market_data,
        persist = roles.persist,
        backbone = if on_kafka { "kafka" } else { "embedded" },
        "serving"
    );
    let failed_wait = Arc::clone(&failed);
    let stop = async move {
        tokio::select! {
            () = shutdown => tracing::info!("shutting down: draining requests"),
            () = failed_wait.notified() => {}
        }
    };
    let served = match &gateway {
        Some(gateway) => {
            tokio::spawn(open_when_caught_up(Arc::clone(gateway), Arc::clone(&bus), shard_statuses, feeds.0.clone()));
            tachyon_gateway::server::serve(listener, Arc::clone(gateway), probe, stop).await
        }
        None => tachyon_gateway::server::serve_router(listener, ops_router(probe), stop).await,
    };

    tracing::info!("draining the engine shards");
    shards.stop.store(true, Ordering::Release);
    let threads = shards.threads;
    tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    })
    .await?;
    // The consumers write what the shards published last (bounded by the drain timeout).
    let deadline = std::time::Instant::now() + Duration::from_secs(config.persist.drain_timeout_secs);
    for consumer in consumers {
        consumer.shutdown(deadline).await;
    }
    let feed_threads = feeds.1;
    tokio::task::spawn_blocking(move || {
        stop_feeds.store(true, Ordering::Release);
        for t in feed_threads {
            let _ = t.join();
        }
        bus.close();
    })
    .await?;
    served.context("HTTP server")?;
    if shards.failed.load(Ordering::Acquire) {
        bail!("an engine shard failed (see the log); restarting recovers it");
    }
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Starts the persistence consumers the configuration asks for.
async fn start_consumers(
    config: &Config,
    symbols: &[tachyon_proto::SymbolSpec],
    bus: &Arc<dyn Backbone>,
    postgres: Option<Arc<PostgresSink>>,
) -> Result<Vec<Consumer>> {
    let mut consumers = Vec::new();
    if let Some(sink) = postgres {
        let consumer = Consumer::start(Arc::clone(bus), sink, config.consumer(POSTGRES_GROUP))
            .context("starting the PostgreSQL consumer")?;
        consumers.push(consumer);
    }
    if let Some(dynamo) = config.dynamo_config() {
        let d = &config.dynamodb;
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let aws = tachyon_consumers::dynamodb::load_aws_config(
            non_empty(&d.endpoint_url).as_deref(),
            non_empty(&d.region).as_deref(),
        )
        .await;
        let sink = DynamoSink::new(&aws, dynamo, symbols);
        let consumer = Consumer::start(Arc::clone(bus), sink, config.consumer(DYNAMODB_GROUP))
            .context("starting the DynamoDB consumer")?;
        consumers.push(consumer);
    }
    Ok(consumers)
}

/// The gateway's lookups beyond memory, answered by the PostgreSQL the exchange persists to.
struct PostgresHistory(Arc<PostgresSink>);

impl History for PostgresHistory {
    fn order(&self, id: OrderId) -> Pending<'_, Option<(AccountId, Order)>> {
        Box::pin(async move { self.0.order(id).await.map_err(|e| e.to_string()) })
    }

    fn fills(&self, account: AccountId, symbol: Option<SymbolId>, limit: usize) -> Pending<'_, Vec<AccountFill>> {
        Box::pin(async move { self.0.account_fills(account, symbol, limit).await.map_err(|e| e.to_string()) })
    }
}

/// The PostgreSQL persister's consumer group.
pub const POSTGRES_GROUP: &str = "tachyon-persist-postgres";
/// The DynamoDB persister's consumer group.
pub const DYNAMODB_GROUP: &str = "tachyon-persist-dynamodb";

/// Opens order entry once every local shard has replayed its input and the feeds have read
/// every output that existed at that point (so the order store knows every id in use).
async fn open_when_caught_up(
    gateway: Arc<Gateway>,
    bus: Arc<dyn Backbone>,
    shards: Vec<Arc<ShardStatus>>,
    feeds: Vec<Arc<FeedPosition>>,
) {
    while !shards.iter().all(|s| s.caught_up.load(Ordering::Acquire)) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ends = {
        let feeds = feeds.clone();
        // A broker round trip per feed on Kafka: off the async workers.
        tokio::task::spawn_blocking(move || {
            feeds.iter().map(|f| bus.end_offset(f.topic, f.partition).unwrap_or(0)).collect::<Vec<u64>>()
        })
    };
    let targets = ends.await.unwrap_or_default();
    while feeds.iter().zip(&targets).any(|(f, t)| f.next.load(Ordering::Acquire) < *t) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gateway.set_ready();
    tracing::info!(orders = gateway.orders.len(), "ready: order entry open");
}
