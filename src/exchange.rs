//! `tachyon run`: the whole exchange in one process on the embedded backbone.
//!
//! Start-up: open the journals (cutting torn tails), start one engine shard thread per
//! partition (each recovers from its newest snapshot and replays the journal), start the
//! feeds that rebuild the gateway's order store and market data from the engine's
//! outputs, and serve HTTP at once: `/healthz` answers immediately, `/readyz` and order
//! entry wait until every shard and feed has caught up.
//!
//! Shutdown (the future resolves, e.g. on SIGTERM): stop accepting, let in-flight requests
//! finish, let every shard drain the commands already acknowledged, write a final
//! snapshot, close the journals (synced) and return. A shard that fails for good stops
//! the whole process the same way, so a supervisor restarts it into recovery.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tachyon_bus::{Backbone, EmbeddedBus, EmbeddedConfig, FsyncPolicy, JournalConfig};
use tachyon_consumers::{Consumer, ConsumerProbe, DynamoSink, PostgresSink};
use tachyon_engine::runner::{run_shard, ShardConfig, ShardStatus, SnapshotStore};
use tachyon_gateway::feed::{spawn_feeds, FeedPosition};
use tachyon_gateway::history::Pending;
use tachyon_gateway::{Gateway, History, KeyRing, Probe, Symbols};
use tachyon_proto::api::{AccountFill, Order};
use tachyon_proto::latency::Latency;
use tachyon_proto::metrics::MetricsText;
use tachyon_proto::{AccountId, OrderId, SymbolId, Topic};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::config::Config;

/// Readiness and metrics of the shards, the backbone and the persistence consumers, for
/// the gateway's endpoints.
struct ExchangeProbe {
    bus: Arc<EmbeddedBus>,
    shards: Vec<Arc<ShardStatus>>,
    feeds: Vec<Arc<FeedPosition>>,
    consumers: Vec<Arc<ConsumerProbe>>,
}

impl Probe for ExchangeProbe {
    fn ready(&self) -> bool {
        self.bus.is_healthy()
            && self.shards.iter().all(|s| s.caught_up.load(Ordering::Acquire))
            && self.consumers.iter().all(|c| c.ready())
    }

    fn metrics(&self, text: &mut String) {
        let mut out = MetricsText::default();
        for (p, s) in self.shards.iter().enumerate() {
            let partition = p.to_string();
            let labels = [("partition", partition.as_str())];
            let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
            out.counter("tachyon_engine_commands_total", &labels, load(&s.commands));
            out.gauge("tachyon_engine_input_position", &labels, load(&s.position));
            out.gauge("tachyon_engine_output_sequence", &labels, load(&s.out_seq));
            out.counter("tachyon_engine_dead_letters_total", &labels, load(&s.dead_letters));
            out.counter("tachyon_engine_snapshots_total", &labels, load(&s.snapshots));
        }
        for topic in Topic::ALL {
            for p in 0..self.bus.partitions() {
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

/// Runs the exchange on `listener` until `shutdown` resolves (see the module docs).
///
/// # Errors
/// Configuration, data-directory and journal errors at start; a shard that failed.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let engine_config = config.validate()?;
    check_layout(&config)?;
    let mut bus_config = EmbeddedConfig::new(config.data_dir.join("journal"), config.partitions);
    bus_config.input = config.journal();
    bus_config.output = JournalConfig { fsync: FsyncPolicy::Never, ..config.journal() };
    let bus = Arc::new(EmbeddedBus::open(&bus_config).context("opening the journal")?);
    let keys = KeyRing::load_or_create(&config.data_dir).context("loading the API-key secret")?;

    let failed = Arc::new(Notify::new());
    let stop_shards = Arc::new(AtomicBool::new(false));
    let mut shard_threads: Vec<JoinHandle<()>> = Vec::new();
    let mut statuses = Vec::new();
    let latency = Arc::new(Latency::default());
    for partition in 0..config.partitions {
        let status = Arc::new(ShardStatus::default());
        let shard_config = ShardConfig {
            partition,
            snapshots: SnapshotStore::new(
                config.data_dir.join("snapshots").join(format!("{partition:04}")),
                config.snapshots.keep,
            ),
            snapshot_every_commands: config.snapshots.every_commands,
            snapshot_every: Duration::from_secs(config.snapshots.every_secs),
            batch_max: 1024,
            latency: Arc::clone(&latency),
        };
        let bus: Arc<dyn Backbone> = bus.clone();
        let (engine_config, stop, st, failed) =
            (engine_config.clone(), Arc::clone(&stop_shards), Arc::clone(&status), Arc::clone(&failed));
        let thread = std::thread::Builder::new().name(format!("shard-{partition}")).spawn(move || {
            if let Err(error) = run_shard(bus, engine_config, shard_config, stop, st) {
                tracing::error!(partition, %error, "engine shard failed; shutting down");
                failed.notify_one();
            }
        })?;
        shard_threads.push(thread);
        statuses.push(status);
    }

    let symbols = Arc::new(Symbols::new(engine_config.symbols.clone(), config.partitions));
    let dyn_bus: Arc<dyn Backbone> = bus.clone();
    let postgres = match config.postgres_config().map_err(|e| anyhow::anyhow!("postgres.url: {e}"))? {
        Some(pg) => Some(PostgresSink::new(pg, &engine_config.symbols).context("PostgreSQL sink")?),
        None => None,
    };
    let mut gateway = Gateway::new(config.gateway(), symbols, keys, Arc::clone(&dyn_bus)).with_latency(latency);
    if let Some(sink) = &postgres {
        gateway = gateway.with_history(Arc::new(PostgresHistory(Arc::clone(sink))));
    }
    let gateway = Arc::new(gateway);
    let stop_feeds = Arc::new(AtomicBool::new(false));
    let (feeds, feed_threads) = spawn_feeds(&gateway, &dyn_bus, &stop_feeds)?;
    let consumers = start_consumers(&config, &engine_config.symbols, &dyn_bus, postgres).await?;
    let probe = Arc::new(ExchangeProbe {
        bus: Arc::clone(&bus),
        shards: statuses.clone(),
        feeds: feeds.clone(),
        consumers: consumers.iter().map(Consumer::probe).collect(),
    });
    tokio::spawn(open_when_caught_up(Arc::clone(&gateway), Arc::clone(&bus), statuses, feeds));

    let address = listener.local_addr()?;
    tracing::info!(%address, partitions = config.partitions, data_dir = %config.data_dir.display(), "serving");
    let failed_wait = Arc::clone(&failed);
    let stop = async move {
        tokio::select! {
            () = shutdown => tracing::info!("shutting down: draining requests"),
            () = failed_wait.notified() => {}
        }
    };
    let served = tachyon_gateway::server::serve(listener, Arc::clone(&gateway), probe, stop).await;

    tracing::info!("draining the engine shards");
    stop_shards.store(true, Ordering::Release);
    let bus_for_join = Arc::clone(&bus);
    tokio::task::spawn_blocking(move || {
        for t in shard_threads {
            let _ = t.join();
        }
    })
    .await?;
    // The consumers write what the shards published last (bounded by the drain timeout).
    let deadline = std::time::Instant::now() + Duration::from_secs(config.persist.drain_timeout_secs);
    for consumer in consumers {
        consumer.shutdown(deadline).await;
    }
    tokio::task::spawn_blocking(move || {
        stop_feeds.store(true, Ordering::Release);
        for t in feed_threads {
            let _ = t.join();
        }
        bus_for_join.close();
    })
    .await?;
    served.context("HTTP server")?;
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

/// Opens order entry once every shard has replayed its input and the feeds have read every
/// output that existed at that point (so the order store knows every id in use).
async fn open_when_caught_up(
    gateway: Arc<Gateway>,
    bus: Arc<EmbeddedBus>,
    shards: Vec<Arc<ShardStatus>>,
    feeds: Vec<Arc<FeedPosition>>,
) {
    while !shards.iter().all(|s| s.caught_up.load(Ordering::Acquire)) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let targets: Vec<u64> = feeds.iter().map(|f| bus.end_offset(f.topic, f.partition).unwrap_or(0)).collect();
    while feeds.iter().zip(&targets).any(|(f, t)| f.next.load(Ordering::Acquire) < *t) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gateway.set_ready();
    tracing::info!(orders = gateway.orders.len(), "ready: order entry open");
}
