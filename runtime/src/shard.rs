//! One engine shard: a thread that owns partition `p`, feeds its commands to the core and
//! publishes what comes out.
//!
//! # Outputs
//! For every decodable input command the shard publishes one [`ShardOutput`] on
//! `tachyon.executions` (the private events, possibly none) and, if the command changed
//! public market data, one on `tachyon.marketdata`. Each record takes the next output
//! sequence. Commands that cannot be decoded go to `tachyon.dlq` with the error.
//!
//! # Recovery (exactly-once output without transactions)
//! On start the shard loads its newest intact snapshot (input offset `next_input`, output
//! sequence `out_seq`), reads the last record of each output partition to learn the last
//! sequence it published there (`published`, per topic: the two topics are written
//! independently, so a crash can leave one ahead of the other), and consumes the input
//! from `next_input`. Since the core is deterministic, every command re-creates the same
//! outputs with the same sequences; those at or below the last sequence found on their
//! topic are dropped, the rest are published. So a
//! crash anywhere neither loses nor duplicates an output. A snapshot is only written after
//! the outputs up to its `out_seq` are durable, so the outputs never fall behind one.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tachyon_bus::{dead_letter_json, last_record, produce_blocking, Backbone, BusError, Record};
use tachyon_proto::latency::{Hop, Latency};
use tachyon_proto::wire::{decode_command, decode_output, encode, ShardOutput};
use tachyon_proto::{Event, Topic};
use thiserror::Error;

use super::snapshots::{ShardSnapshot, SnapshotStore};
use tachyon_engine::{Engine, EngineConfig};

/// How a shard runs.
#[derive(Clone, Debug)]
pub struct ShardConfig {
    pub partition: u32,
    /// Where this shard's snapshots live.
    pub snapshots: SnapshotStore,
    /// Snapshot after this many commands…
    pub snapshot_every_commands: u64,
    /// …or this much time with at least one command, whichever comes first.
    pub snapshot_every: Duration,
    /// Most input records taken per poll.
    pub batch_max: usize,
    /// Where the shard records its hops (command taken, processing time).
    pub latency: Arc<Latency>,
    /// Set when this process lost the shard to another engine (its lease, distributed
    /// mode): the shard stops at once, before publishing more.
    pub fenced: Option<Arc<AtomicBool>>,
}

/// What a running shard reports (for `/readyz` and `/metrics`).
#[derive(Debug, Default)]
pub struct ShardStatus {
    /// Commands applied since start (replayed ones included).
    pub commands: AtomicU64,
    /// Next input offset to read.
    pub position: AtomicU64,
    /// Last output sequence produced.
    pub out_seq: AtomicU64,
    /// Input records sent to the dead-letter topic.
    pub dead_letters: AtomicU64,
    /// Snapshots written.
    pub snapshots: AtomicU64,
    /// Set once recovery is done and the shard has reached the end of its input once.
    pub caught_up: AtomicBool,
}

/// Why a shard stopped.
#[derive(Debug, Error)]
pub enum ShardError {
    #[error("backbone: {0}")]
    Bus(#[from] BusError),
    #[error("snapshot I/O: {0}")]
    Snapshot(#[from] std::io::Error),
    #[error("snapshot does not fit the configuration: {0}")]
    Restore(#[from] tachyon_engine::RestoreError),
    #[error("partition {partition}: {reason}")]
    Inconsistent { partition: u32, reason: String },
}

/// Runs the shard until `stop` is set *and* every input record present at that time was
/// processed (a drain), then flushes its outputs and writes a final snapshot.
///
/// # Errors
/// [`ShardError`] when recovery is impossible (a damaged output log, a snapshot for other
/// symbols, outputs older than the newest snapshot) or the backbone fails for good.
pub fn run_shard(
    bus: Arc<dyn Backbone>,
    engine_config: EngineConfig,
    config: ShardConfig,
    stop: Arc<AtomicBool>,
    status: Arc<ShardStatus>,
) -> Result<(), ShardError> {
    let partition = config.partition;
    let (engine, next_input, out_seq) = match config.snapshots.load_newest()? {
        Some(s) => (Engine::restore(engine_config, &s.engine)?, s.next_input, s.out_seq),
        None => (Engine::new(engine_config), 0, 0),
    };
    let published = last_published(bus.as_ref(), partition)?;
    if published.max() < out_seq {
        return Err(ShardError::Inconsistent {
            partition,
            reason: format!("outputs end at sequence {} but the snapshot is at {out_seq}", published.max()),
        });
    }
    tracing::info!(
        partition,
        next_input,
        out_seq,
        published_executions = published.executions,
        published_market_data = published.market_data,
        "shard recovering"
    );
    let mut shard = Shard {
        bus,
        engine,
        config,
        status,
        out_seq,
        published,
        events: Vec::with_capacity(64),
        executions: Vec::new(),
        market_data: Vec::new(),
        since_snapshot: 0,
        last_snapshot: Instant::now(),
    };
    shard.status.position.store(next_input, Ordering::Relaxed);
    shard.status.out_seq.store(out_seq, Ordering::Relaxed);
    shard.run(next_input, &stop)
}

/// The last output sequence found on each of the shard's output partitions.
#[derive(Clone, Copy, Debug, Default)]
struct Published {
    executions: u64,
    market_data: u64,
}

impl Published {
    fn max(self) -> u64 {
        self.executions.max(self.market_data)
    }

    fn on(self, topic: Topic) -> u64 {
        match topic {
            Topic::MarketData => self.market_data,
            _ => self.executions,
        }
    }
}

fn last_published(bus: &dyn Backbone, partition: u32) -> Result<Published, ShardError> {
    let mut published = Published::default();
    for topic in [Topic::Executions, Topic::MarketData] {
        if let Some(record) = last_record(bus, topic, partition)? {
            let output = decode_output(&record.payload).map_err(|e| ShardError::Inconsistent {
                partition,
                reason: format!("last record of {topic} (offset {}) is unreadable: {e}", record.offset),
            })?;
            match topic {
                Topic::MarketData => published.market_data = output.seq,
                _ => published.executions = output.seq,
            }
        }
    }
    Ok(published)
}

struct Shard {
    bus: Arc<dyn Backbone>,
    engine: Engine,
    config: ShardConfig,
    status: Arc<ShardStatus>,
    /// Last output sequence produced (replayed or published).
    out_seq: u64,
    /// Outputs up to these sequences were already published (per topic) before a restart.
    published: Published,
    events: Vec<Event>,
    executions: Vec<Vec<u8>>,
    market_data: Vec<Vec<u8>>,
    since_snapshot: u64,
    last_snapshot: Instant,
}

impl Shard {
    fn run(&mut self, next_input: u64, stop: &AtomicBool) -> Result<(), ShardError> {
        let partition = self.config.partition;
        let mut reader = self.bus.reader(Topic::Orders, partition, next_input)?;
        let mut records: Vec<Record> = Vec::with_capacity(self.config.batch_max);
        loop {
            // Checked while idle too: the shard stops (and its process restarts into
            // recovery) without waiting for the next command to find the backbone broken.
            if let Some(reason) = self.bus.lost_writes() {
                return Err(ShardError::Inconsistent {
                    partition,
                    reason: format!("an output was lost ({reason}); a restart re-derives it"),
                });
            }
            if self.config.fenced.as_ref().is_some_and(|f| f.load(Ordering::Acquire)) {
                return Err(ShardError::Inconsistent {
                    partition,
                    reason: "another engine took over this shard (its lease); stopping".into(),
                });
            }
            records.clear();
            let n = match reader.poll(&mut records, self.config.batch_max, Duration::from_millis(50)) {
                Ok(n) => n,
                Err(BusError::Closed) => break,
                Err(e) => return Err(e.into()),
            };
            for record in &records {
                self.apply(record)?;
            }
            self.publish()?;
            let position = reader.position();
            self.status.position.store(position, Ordering::Relaxed);
            // Asking for the end of the input costs a broker round trip on Kafka: only while
            // recovering or draining, not on every batch.
            let check_end = !self.status.caught_up.load(Ordering::Relaxed) || stop.load(Ordering::Acquire);
            if check_end && (n == 0 || n < self.config.batch_max) {
                let end = self.bus.end_offset(Topic::Orders, partition)?;
                if position >= end {
                    if !self.status.caught_up.swap(true, Ordering::Release) {
                        tracing::info!(partition, position, out_seq = self.out_seq, "shard caught up");
                    }
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                }
            }
            let due = self.since_snapshot >= self.config.snapshot_every_commands
                || (self.since_snapshot > 0 && self.last_snapshot.elapsed() >= self.config.snapshot_every);
            if due {
                // A snapshot only shortens a future replay: one that cannot be written now
                // (the broker away for longer than the flush waits, a full disk) is tried
                // again later, and the shard keeps matching. A lost output still stops it:
                // the next publish fails.
                if let Err(error) = self.snapshot(position) {
                    tracing::warn!(partition, %error, "snapshot postponed");
                    self.last_snapshot = Instant::now();
                }
            }
        }
        let position = reader.position();
        if self.since_snapshot > 0 {
            self.snapshot(position)?;
        }
        tracing::info!(partition, position, out_seq = self.out_seq, "shard stopped");
        Ok(())
    }

    /// Applies one input record and queues its outputs.
    fn apply(&mut self, record: &Record) -> Result<(), ShardError> {
        let envelope = match decode_command(&record.payload) {
            Ok(envelope) => envelope,
            Err(error) => {
                self.dead_letter(record, &error.to_string())?;
                return Ok(());
            }
        };
        self.events.clear();
        // Replayed commands are history: only live ones say how fast the shard is.
        let live = self.out_seq >= self.published.max();
        let started = live.then(|| {
            self.config.latency.since(Hop::EngineIn, envelope.command.timestamp());
            Instant::now()
        });
        self.engine.process(&envelope.command, &mut self.events);
        if let Some(started) = started {
            self.config.latency.record(Hop::Engine, u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX));
        }
        self.since_snapshot += 1;
        self.status.commands.fetch_add(1, Ordering::Relaxed);
        let mut output = ShardOutput {
            partition: self.config.partition,
            seq: 0,
            input_offset: record.offset,
            request_id: envelope.request_id,
            gateway_id: envelope.gateway_id,
            command: envelope.command,
            events: self.events.iter().filter(|e| e.is_private()).copied().collect(),
        };
        self.queue(&mut output, Topic::Executions)?;
        if self.events.iter().any(Event::is_public) {
            output.events.clear();
            output.events.extend(self.events.iter().filter(|e| e.is_public()).copied());
            self.queue(&mut output, Topic::MarketData)?;
        }
        Ok(())
    }

    /// Gives `output` the next sequence and queues it unless it was published before.
    fn queue(&mut self, output: &mut ShardOutput, topic: Topic) -> Result<(), ShardError> {
        self.out_seq += 1;
        output.seq = self.out_seq;
        if self.out_seq <= self.published.on(topic) {
            return Ok(());
        }
        let bytes = encode(output).map_err(|e| ShardError::Inconsistent {
            partition: self.config.partition,
            reason: format!("cannot encode an output: {e}"),
        })?;
        match topic {
            Topic::MarketData => self.market_data.push(bytes),
            _ => self.executions.push(bytes),
        }
        Ok(())
    }

    fn dead_letter(&mut self, record: &Record, error: &str) -> Result<(), ShardError> {
        let partition = self.config.partition;
        self.status.dead_letters.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(partition, offset = record.offset, %error, "undecodable command sent to the dead-letter topic");
        if self.out_seq < self.published.max() {
            return Ok(()); // Replaying: it was dead-lettered before the restart.
        }
        let letter = dead_letter_json(Topic::Orders, partition, record, error, None);
        Ok(produce_blocking(self.bus.as_ref(), Topic::DeadLetter, partition, &mut vec![letter])?)
    }

    /// Produces the queued outputs, retrying while the backbone is full.
    fn publish(&mut self) -> Result<(), ShardError> {
        let partition = self.config.partition;
        for (topic, batch) in [(Topic::Executions, &mut self.executions), (Topic::MarketData, &mut self.market_data)] {
            if !batch.is_empty() {
                produce_blocking(self.bus.as_ref(), topic, partition, batch)?;
            }
        }
        self.status.out_seq.store(self.out_seq, Ordering::Relaxed);
        Ok(())
    }

    /// Flushes the outputs (a snapshot must never be ahead of them) and saves a snapshot.
    fn snapshot(&mut self, next_input: u64) -> Result<(), ShardError> {
        let partition = self.config.partition;
        for topic in [Topic::Executions, Topic::MarketData] {
            self.bus.flush(topic, partition, Duration::from_secs(30))?;
        }
        let started = Instant::now();
        let snapshot = ShardSnapshot { next_input, out_seq: self.out_seq, engine: self.engine.snapshot() };
        let place = self.config.snapshots.save(&snapshot)?;
        tracing::info!(
            partition,
            next_input,
            out_seq = self.out_seq,
            open_orders = self.engine.open_orders(),
            took_ms = started.elapsed().as_millis() as u64,
            place = %place,
            "snapshot written"
        );
        self.status.snapshots.fetch_add(1, Ordering::Relaxed);
        self.since_snapshot = 0;
        self.last_snapshot = Instant::now();
        Ok(())
    }
}
