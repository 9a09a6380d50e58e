//! The exchange's processes: `tachyon run` (every role in one process) and the single
//! roles of distributed mode (`gateway`, `engine`, `marketdata`, `persist`), all built by
//! [`run`] from a [`Roles`] and one configuration.
//!
//! Backbone: the embedded one in the data directory (only `run`: its journal lives in
//! one process), or Kafka when `kafka.brokers` is set. Engine snapshots go to files
//! beside the embedded journal, and to the `tachyon.snapshots` topic on Kafka (so they
//! outlive the engine's machine).
//!
//! Order path: on the embedded backbone every partition runs one sequenced pipeline
//! (`tachyon_runtime::pipeline`) that takes the gateway's commands from a ring, journals
//! them, matches them and feeds the gateway's order store, market data and waiting
//! requests directly; its outputs still go to the output journals, for the persisters
//! and for recovery. On Kafka the gateway produces to `tachyon.orders`, engine shards
//! poll it, and the gateway follows `tachyon.executions` and `tachyon.marketdata`.
//!
//! Start-up: open the backbone; on the embedded one, first rebuild the gateway's order
//! store and market data from the output journals (to their end: nothing writes them
//! yet), then start the pipelines, which recover from their newest snapshot, replay their
//! input journal and hand what they re-derive to the gateway like live outputs. On Kafka,
//! start the shards this process owns and the feeds, which follow the topics for good.
//! Then the persistence consumers, and serve HTTP at once: `/healthz` answers
//! immediately, `/readyz` and order entry wait until every local shard and feed has
//! caught up.
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
use tachyon_bus::{Backbone, BusError, EmbeddedBus, EmbeddedConfig, FsyncPolicy, JournalConfig, KafkaBus};
use tachyon_consumers::{Consumer, ConsumerProbe, DynamoSink, PostgresSink};
use tachyon_engine::EngineConfig;
use tachyon_gateway::balances::{AssetInfo, BalanceConfig};
use tachyon_gateway::history::Pending;
use tachyon_gateway::keys;
use tachyon_gateway::server::ops_router;
use tachyon_gateway::{Gateway, History, InProcessPath, KeyRing, OrderPath, Probe, Symbols, Waiter};
use tachyon_proto::api::{AccountFill, Order};
use tachyon_proto::latency::Latency;
use tachyon_proto::metrics::MetricsText;
use tachyon_proto::wire::{CommandEnvelope, ShardOutput, TransferEnvelope};
use tachyon_proto::{AccountId, OrderId, SymbolId, Topic};
use tachyon_runtime::feed::{spawn_feeds, Apply, FeedPosition, Until};
use tachyon_runtime::pipeline::{Listener, Pipeline, PipelineConfig, Refusal, Released, Syncer};
use tachyon_runtime::{
    acquire_lease, run_shard, Funded, FundedInput, Lease, LeaseConfig, Matching, ShardConfig, ShardStatus,
    SnapshotPolicy, SnapshotStore,
};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::config::Config;

/// Readiness and metrics of the shards, the backbone and the persistence consumers, for
/// the gateway's endpoints.
struct ExchangeProbe {
    bus: Arc<dyn Backbone>,
    /// (partition, status) of the shards this process runs.
    shards: Vec<(u32, Arc<ShardStatus>)>,
    /// The embedded order path's pipelines (empty on Kafka).
    pipelines: Vec<Arc<dyn PipelineView>>,
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
            out.counter("tachyon_engine_batches_total", &labels, load(&s.batches));
        }
        for (p, pipeline) in self.pipelines.iter().enumerate() {
            let partition = p.to_string();
            let labels = [("partition", partition.as_str())];
            out.gauge("tachyon_pipeline_queued_commands", &labels, pipeline.queued());
            out.gauge("tachyon_pipeline_capacity_commands", &labels, pipeline.ring_capacity());
            out.counter("tachyon_pipeline_refused_full_total", &labels, pipeline.refused_full());
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
                // The embedded order path keeps `tachyon.orders` itself: its end is the
                // shard's input position.
                let Ok(end) = self.bus.end_offset(topic, p) else { continue };
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
    check_balances_mode(config)?;
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

/// Refuses a data directory created with the other balances setting.
fn check_balances_mode(config: &Config) -> Result<()> {
    // Balances change what the journal and the snapshots hold: a directory keeps the mode
    // it was created with (one from before balances existed has them off).
    let path = config.data_dir.join("balances");
    let mode = if config.risk.balances { "on" } else { "off" };
    match std::fs::read_to_string(&path) {
        Ok(found) if found.trim() == mode => {}
        Ok(found) => bail!(
            "{} was created with balances {}; this configuration has them {mode} (use the same setting or a new data directory)",
            config.data_dir.display(),
            found.trim()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let fresh = !config.data_dir.join("journal").exists();
            if !fresh && config.risk.balances {
                bail!(
                    "{} holds an exchange that ran without balances; balances need a new data directory",
                    config.data_dir.display()
                );
            }
            std::fs::write(&path, mode).with_context(|| format!("writing {}", path.display()))?;
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
    let mut bus_config = EmbeddedConfig::new(journal_root(config), config.partitions);
    bus_config.input = config.journal();
    bus_config.output = JournalConfig { fsync: FsyncPolicy::Never, ..config.journal() };
    // The pipelines keep the order journals themselves.
    bus_config.owned_elsewhere = vec![Topic::Orders];
    // Nobody in this process reads the outputs record by record (the pipelines feed the
    // gateway directly): fewer, larger writes.
    bus_config.output_linger = Duration::from_millis(2);
    Ok((Arc::new(EmbeddedBus::open(&bus_config).context("opening the journal")?), false))
}

fn journal_root(config: &Config) -> std::path::PathBuf {
    config.data_dir.join("journal")
}

fn snapshot_policy(config: &Config, bus: &Arc<dyn Backbone>, on_kafka: bool, partition: u32) -> SnapshotPolicy {
    let store = if on_kafka {
        SnapshotStore::on_backbone(Arc::clone(bus), partition)
    } else {
        SnapshotStore::new(config.data_dir.join("snapshots").join(format!("{partition:04}")), config.snapshots.keep)
    };
    SnapshotPolicy {
        store,
        every_commands: config.snapshots.every_commands,
        every: Duration::from_secs(config.snapshots.every_secs),
    }
}

/// What the exchange needs of a running pipeline, whatever its machine.
trait PipelineView: Send + Sync {
    fn queued(&self) -> usize;
    fn ring_capacity(&self) -> usize;
    fn refused_full(&self) -> u64;
    fn stop(&self);
}

impl<I: Send + 'static, T: Send + 'static> PipelineView for Pipeline<I, T> {
    fn queued(&self) -> usize {
        Pipeline::queued(self)
    }
    fn ring_capacity(&self) -> usize {
        Pipeline::ring_capacity(self)
    }
    fn refused_full(&self) -> u64 {
        Pipeline::refused_full(self)
    }
    fn stop(&self) {
        Pipeline::stop(self);
    }
}

/// The embedded order path's rings, before their pipelines run: one per partition, or,
/// balances on, one for the risk and matching cores together.
enum Rings {
    Plain(Vec<Pipeline<CommandEnvelope, Waiter>>),
    Funded(Pipeline<FundedInput, Waiter>),
}

impl Rings {
    fn path(&self) -> Arc<dyn InProcessPath> {
        match self {
            Rings::Plain(rings) => Arc::new(Pipelines(rings.clone())),
            Rings::Funded(ring) => Arc::new(FundedPath(ring.clone())),
        }
    }
}

fn refusal(refusal: Refusal, partition: u32) -> BusError {
    match refusal {
        Refusal::Full => BusError::Full { topic: Topic::Orders, partition },
        Refusal::Unavailable => BusError::Unavailable(format!("partition {partition} is not taking commands")),
    }
}

/// Balances on: every command and transfer goes to the one funded pipeline.
struct FundedPath(Pipeline<FundedInput, Waiter>);

impl InProcessPath for FundedPath {
    fn partitions(&self) -> u32 {
        1
    }

    fn is_healthy(&self) -> bool {
        self.0.is_healthy()
    }

    fn submit(&self, _partition: u32, envelope: CommandEnvelope, waiter: Waiter) -> Result<(), BusError> {
        self.0.submit(FundedInput::Command(envelope), waiter).map_err(|(_, r)| refusal(r, 0))
    }

    fn submit_transfer(&self, transfer: TransferEnvelope, waiter: Waiter) -> Result<(), BusError> {
        self.0.submit(FundedInput::Transfer(transfer), waiter).map_err(|(_, r)| refusal(r, 0))
    }
}

/// The embedded order path's pipelines, as the gateway's in-process path.
struct Pipelines(Vec<Pipeline<CommandEnvelope, Waiter>>);

impl InProcessPath for Pipelines {
    fn partitions(&self) -> u32 {
        self.0.len() as u32
    }

    fn is_healthy(&self) -> bool {
        self.0.iter().all(Pipeline::is_healthy)
    }

    fn submit(&self, partition: u32, envelope: CommandEnvelope, waiter: Waiter) -> Result<(), BusError> {
        let pipeline =
            self.0.get(partition as usize).ok_or(BusError::NoSuchPartition { topic: Topic::Orders, partition })?;
        pipeline.submit(envelope, waiter).map_err(|(_, r)| refusal(r, partition))
    }
}

/// The gateway as the pipelines' listener: every durable batch's outputs go to its order
/// store and market data, then each command's waiter is answered.
struct GatewayListener(Arc<Gateway>);

impl Listener<ShardOutput, Waiter> for GatewayListener {
    fn released(&self, batch: Released<'_, ShardOutput, Waiter>) {
        for (topic, output) in batch.records() {
            self.0.apply_output(*topic, output);
        }
        for i in 0..batch.tokens.len() {
            let Some(waiter) = batch.tokens[i].take() else { continue };
            let records = batch.of_input(i);
            let execution = records.iter().find(|(t, _)| *t == Topic::Executions).map(|(_, o)| o);
            let stamped = execution.map_or_else(tachyon_proto::Timestamp::now, |o| o.timestamp);
            self.0.answer(waiter, execution, stamped);
        }
    }

    fn refused(&self, token: Waiter, reason: &str) {
        token.fail(BusError::Unavailable(reason.to_string()));
    }
}

/// The engine shard threads of one process (pipelines on the embedded backbone).
struct Shards {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    statuses: Vec<(u32, Arc<ShardStatus>)>,
    pipelines: Vec<Arc<dyn PipelineView>>,
    syncer: Option<Arc<Syncer>>,
    failed: Arc<AtomicBool>,
}

impl Shards {
    fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        for pipeline in &self.pipelines {
            pipeline.stop();
        }
    }
}

/// Runs `work` on a thread named `name`; its error stops the whole process.
fn supervised(
    name: String,
    partition: u32,
    failed: &Arc<AtomicBool>,
    notify: &Arc<Notify>,
    work: impl FnOnce() -> Result<(), tachyon_runtime::ShardError> + Send + 'static,
) -> std::io::Result<JoinHandle<()>> {
    let (failed, notify) = (Arc::clone(failed), Arc::clone(notify));
    std::thread::Builder::new().name(name).spawn(move || {
        if let Err(error) = work() {
            tracing::error!(partition, %error, "engine shard failed; shutting down");
            failed.store(true, Ordering::Release);
            notify.notify_one();
        }
    })
}

/// The embedded order path's rings, waiting for [`start_pipelines`].
fn pipeline_rings(config: &Config) -> Rings {
    if config.risk.balances {
        return Rings::Funded(Pipeline::new(config.pipeline.ring_capacity));
    }
    Rings::Plain((0..config.partitions).map(|_| Pipeline::new(config.pipeline.ring_capacity)).collect())
}

fn start_pipelines(
    config: &Config,
    engine_config: &EngineConfig,
    bus: &Arc<dyn Backbone>,
    rings: Rings,
    gateway: &Arc<Gateway>,
    latency: &Arc<Latency>,
    failed_notify: &Arc<Notify>,
) -> Result<Shards> {
    let interval = match config.journal().fsync {
        FsyncPolicy::Interval(every) => every,
        FsyncPolicy::EveryBatch | FsyncPolicy::Never => Duration::ZERO,
    };
    let threads = match config.pipeline.sync_threads {
        0 => config.partitions as usize,
        n => n,
    };
    let syncer = Syncer::start(config.partitions, threads, interval).context("starting the journal syncer")?;
    let failed = Arc::new(AtomicBool::new(false));
    let listener = Arc::new(GatewayListener(Arc::clone(gateway)));
    let mut threads = Vec::new();
    let mut statuses = Vec::new();
    let mut views: Vec<Arc<dyn PipelineView>> = Vec::new();
    let pipeline_config = |partition: u32| {
        let dir = journal_root(config).join(Topic::Orders.name()).join(format!("{partition:04}"));
        let mut pipeline_config = PipelineConfig::new(partition, dir, snapshot_policy(config, bus, false, partition));
        pipeline_config.journal = config.journal();
        pipeline_config.batch_max = config.pipeline.batch_max;
        pipeline_config.spin = Duration::from_micros(config.pipeline.spin_us);
        pipeline_config.latency = Arc::clone(latency);
        pipeline_config
    };
    let mut watch = |partition: u32, handle: JoinHandle<Result<(), tachyon_runtime::ShardError>>| {
        supervised(format!("watch-{partition}"), partition, &failed, failed_notify, move || {
            handle.join().unwrap_or_else(|_| {
                Err(tachyon_runtime::ShardError::Inconsistent { partition, reason: "the pipeline panicked".into() })
            })
        })
        .map(|thread| threads.push(thread))
    };
    match rings {
        Rings::Plain(pipelines) => {
            for (partition, pipeline) in (0..config.partitions).zip(pipelines) {
                let machine = Matching::new(engine_config.clone(), partition);
                let handle = pipeline.spawn(
                    machine,
                    pipeline_config(partition),
                    Arc::clone(bus),
                    Arc::clone(&syncer),
                    Arc::clone(&listener),
                )?;
                watch(partition, handle)?;
                statuses.push((partition, Arc::clone(&pipeline.status)));
                views.push(Arc::new(pipeline));
            }
        }
        Rings::Funded(pipeline) => {
            let risk = config.risk_config(engine_config, 0, 1)?;
            let machine = Funded::new(engine_config.clone(), risk, 0);
            let handle = pipeline.spawn(
                machine,
                pipeline_config(0),
                Arc::clone(bus),
                Arc::clone(&syncer),
                Arc::clone(&listener),
            )?;
            watch(0, handle)?;
            statuses.push((0, Arc::clone(&pipeline.status)));
            views.push(Arc::new(pipeline));
        }
    }
    Ok(Shards {
        stop: Arc::new(AtomicBool::new(false)),
        threads,
        statuses,
        pipelines: views,
        syncer: Some(syncer),
        failed,
    })
}

fn start_shards(
    config: &Config,
    engine_config: &EngineConfig,
    bus: &Arc<dyn Backbone>,
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
        let mut shard_config = ShardConfig {
            partition,
            input: Topic::Orders,
            snapshots: snapshot_policy(config, bus, true, partition),
            batch_max: 1024,
            latency: Arc::clone(latency),
            fenced: None,
        };
        let (bus, stop, st) = (Arc::clone(bus), Arc::clone(&stop), Arc::clone(&status));
        let machine = Matching::new(engine_config.clone(), partition);
        // Another process may run (or still run) this shard: take its lease first.
        let lease = LeaseConfig::with_ttl(Duration::from_millis(config.kafka.lease_ttl_ms));
        let owner = lease_owner();
        let thread = supervised(format!("shard-{partition}"), partition, &failed, failed_notify, move || {
            let Some(held) = acquire_lease(&bus, partition, &owner, lease, &stop)? else {
                return Ok(()); // Stopped while waiting as a standby.
            };
            shard_config.fenced = Some(Lease::lost(&held));
            run_shard(bus, machine, shard_config, stop, st)
            // `held` drops here: the lease is released after the final snapshot.
        })?;
        threads.push(thread);
        statuses.push((partition, status));
    }
    Ok(Shards { stop, threads, statuses, pipelines: Vec::new(), syncer: None, failed })
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
    let (mut config, mut roles) = (config, roles);
    let engine_config = config.validate()?;
    if config.risk.balances {
        if config.kafka_config().is_some() {
            bail!(
                "risk.balances: balances run on the embedded backbone only in this build (tachyon run without --kafka)"
            );
        }
        if config.partitions != 1 {
            // Funds are per account and books per symbol: one sequenced pipeline holds both.
            tracing::info!(
                configured = config.partitions,
                "balances on: one pipeline runs the risk and matching cores"
            );
            config.partitions = 1;
            roles.shards.retain(|&p| p == 0);
        }
    }
    if let Some(p) = roles.shards.iter().find(|&&p| p >= config.partitions) {
        bail!("shard {p} does not exist: there are {} partitions (0-{})", config.partitions, config.partitions - 1);
    }
    let (bus, on_kafka) = open_backbone(&config, &roles).await?;

    let failed = Arc::new(Notify::new());
    let latency = Arc::new(Latency::default());
    let postgres = match config.postgres_config().map_err(|e| anyhow::anyhow!("postgres.url: {e}"))? {
        Some(pg) if roles.persist || roles.gateway => {
            Some(PostgresSink::new(pg, &engine_config.symbols).context("PostgreSQL sink")?)
        }
        _ => None,
    };
    // Embedded: the gateway takes commands through the pipelines' rings, which exist
    // before the pipelines run (they start once the gateway's state is rebuilt).
    let rings = (!on_kafka).then(|| pipeline_rings(&config));
    let stop_feeds = Arc::new(AtomicBool::new(false));
    let mut feeds = (Vec::new(), Vec::new());
    let gateway = if roles.serves_api() {
        let keys = KeyRing::load_or_create(&config.data_dir).context("loading the API-key secret")?;
        let symbols = Arc::new(Symbols::new(engine_config.symbols.clone(), config.partitions));
        let mut topics = Vec::new();
        if roles.gateway {
            topics.push(Topic::Executions);
        }
        if roles.market_data || (roles.gateway && config.gateway.market_data) {
            topics.push(Topic::MarketData);
        }
        let mut gateway_config = config.gateway();
        gateway_config.order_entry = roles.gateway;
        gateway_config.answer_after_market_data = on_kafka && topics.contains(&Topic::MarketData);
        let path = match &rings {
            Some(rings) => OrderPath::InProcess(rings.path()),
            None => OrderPath::Backbone(Arc::clone(&bus)),
        };
        let mut gateway = Gateway::new(gateway_config, symbols, keys, path).with_latency(Arc::clone(&latency));
        if config.risk.balances {
            let risk = config.risk_config(&engine_config, 0, 1)?;
            let assets = risk.assets.iter().map(|a| AssetInfo { name: a.name.clone(), scale: a.scale }).collect();
            gateway = gateway.with_balances(BalanceConfig { assets });
        }
        if let (Some(sink), true) = (&postgres, roles.gateway) {
            gateway = gateway.with_history(Arc::new(PostgresHistory(Arc::clone(sink))));
        }
        let gateway = Arc::new(gateway);
        let apply: Apply = {
            let gateway = Arc::clone(&gateway);
            Arc::new(move |topic, output: &ShardOutput| match topic {
                Topic::Executions => gateway.on_execution(output),
                _ => gateway.on_market_data(output),
            })
        };
        // Revoked keys are refused from the first request: the data directory's key log
        // now (then followed), and on Kafka the keys topic from its start (then followed).
        let logged = keys::read(&config.data_dir).context("reading the API-key log")?;
        gateway.revocations.revoke(keys::revoked_ids(&logged));
        if on_kafka {
            feeds = spawn_feeds(&bus, &topics, Until::Stopped, &stop_feeds, &apply)?;
            let reader = Arc::clone(&bus);
            let (published, next) = tokio::task::spawn_blocking(move || keys::read_topic(reader.as_ref()))
                .await?
                .context("reading the keys topic")?;
            gateway.revocations.revoke(keys::revoked_ids(&published));
            let follower =
                keys::follow_topic(Arc::clone(&bus), Arc::clone(&gateway.revocations), next, Arc::clone(&stop_feeds))
                    .context("following the keys topic")?;
            feeds.1.push(follower);
        } else {
            rebuild(&bus, &topics, &stop_feeds, &apply).await?;
        }
        Some(gateway)
    } else {
        None
    };
    let shards = match (rings, &gateway) {
        (Some(rings), Some(gateway)) => {
            start_pipelines(&config, &engine_config, &bus, rings, gateway, &latency, &failed)?
        }
        (Some(_), None) => bail!("the embedded order path runs with the gateway (tachyon run)"),
        (None, _) => start_shards(&config, &engine_config, &bus, &roles.shards, &latency, &failed)?,
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
        pipelines: shards.pipelines.clone(),
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
            // Revocations from `tachyon keys revoke` on this data directory.
            let follow = tokio::spawn(keys::follow(config.data_dir.clone(), Arc::clone(&gateway.revocations)));
            let served = tachyon_gateway::server::serve(listener, Arc::clone(gateway), probe, stop).await;
            follow.abort();
            served
        }
        None => tachyon_gateway::server::serve_router(listener, ops_router(probe), stop).await,
    };

    tracing::info!("draining the engine shards");
    shards.stop();
    let (threads, syncer) = (shards.threads, shards.syncer);
    tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
        if let Some(syncer) = syncer {
            syncer.stop();
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

/// Reads the output journals into the gateway up to their end (the embedded start-up:
/// nothing writes them until the pipelines start).
async fn rebuild(bus: &Arc<dyn Backbone>, topics: &[Topic], stop: &Arc<AtomicBool>, apply: &Apply) -> Result<()> {
    let started = std::time::Instant::now();
    let (_, threads) = spawn_feeds(bus, topics, Until::End, stop, apply)?;
    tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    })
    .await?;
    tracing::info!(took_ms = started.elapsed().as_millis() as u64, "gateway state rebuilt from the output journals");
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
