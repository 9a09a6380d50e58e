//! The consumer framework: read a topic's partitions in batches, hand each batch to a
//! [`Sink`], and store the consumer group's offset only after the sink's write succeeded.
//!
//! Per partition, a reader thread polls the backbone (blocking, in batches of up to
//! `batch_max` records, waiting up to `poll_ms` for the first) and decodes; a writer task
//! takes the decoded batches through a bounded channel (`read_ahead` batches: backpressure,
//! never an unbounded buffer), merges what queued up into one write of up to `batch_max`
//! records, and writes it:
//! - a **transient** error is retried with exponential backoff and full jitter; after
//!   `retry.attempts` failures in a row the circuit opens (the consumer reports not ready)
//!   and only a trial write goes out after a pause that doubles up to `retry.max_open`.
//!   The batch is never dropped: it waits for the store.
//! - a **permanent** error is narrowed down by halving the batch until the records that
//!   fail alone are known; each goes to the dead-letter topic with its error, and the
//!   rest is written. A record that cannot be decoded goes there at once.
//!
//! Then the offset after the batch is committed. Writes are idempotent (see
//! `tachyon_consumers::rows`), so a crash between a write and its commit only repeats a write.
//! Shutdown drains: the readers read up to the end of each partition as it was when asked
//! to stop, the writers write and commit it, unless the deadline passes first (then what
//! was not written is simply read again at the next start).

mod retry;

pub use retry::{full_jitter, jitter_unit, Circuit, CircuitState, RetryPolicy};

use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tachyon_bus::{dead_letter_json, produce_blocking, Backbone, BusError, Record};
use tachyon_proto::metrics::MetricsText;
use tachyon_proto::wire::{decode_output, ShardOutput};

use crate::follow::{follow, Control, FollowConfig};
use tachyon_proto::Topic;
use thiserror::Error;
use tokio::sync::{mpsc, watch};

/// One decoded record.
#[derive(Clone, Debug)]
pub struct Item {
    pub offset: u64,
    /// The raw record, for the dead-letter topic.
    pub payload: Arc<[u8]>,
    pub output: ShardOutput,
}

/// Why a sink could not write.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum SinkError {
    /// The store is unreachable, overloaded or throttling: try again later.
    #[error("transient: {0}")]
    Transient(String),
    /// The store refuses the data: writing it again will fail again.
    #[error("permanent: {0}")]
    Permanent(String),
}

/// A store the framework writes batches to.
pub trait Sink: Send + Sync + 'static {
    /// Sets the store up (schema, tables); called once at start, in the background. A
    /// sink must also do it before its first write, since the store may be down at start.
    fn prepare(&self) -> impl Future<Output = Result<(), SinkError>> + Send {
        async { Ok(()) }
    }

    /// Checks that the store answers (for readiness while there is nothing to write).
    fn check(&self) -> impl Future<Output = Result<(), SinkError>> + Send {
        async { Ok(()) }
    }

    /// Writes consecutive records of one partition, idempotently: writing records again
    /// (alone or in another batch) must leave the store as writing them once did.
    fn write(&self, partition: u32, items: &[Item]) -> impl Future<Output = Result<(), SinkError>> + Send;
}

/// A consumer's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// Consumer group (offsets are stored under it) and the name in logs and metrics.
    pub group: String,
    pub topic: Topic,
    /// Records per write, at most.
    pub batch_max: usize,
    /// How long a read waits for the first record.
    pub poll_ms: u64,
    /// Decoded batches queued between a partition's reader and its writer.
    pub read_ahead: usize,
    pub retry: RetryPolicy,
    /// How often the store is checked for readiness (besides every write).
    pub check_every: Duration,
}

impl ConsumerConfig {
    pub fn new(group: impl Into<String>, topic: Topic) -> Self {
        Self {
            group: group.into(),
            topic,
            batch_max: 2_000,
            poll_ms: 20,
            read_ahead: 4,
            retry: RetryPolicy::default(),
            check_every: Duration::from_secs(5),
        }
    }
}

/// What one partition's consumer has done, for readiness and metrics.
#[derive(Debug, Default)]
pub struct PartitionStatus {
    pub partition: u32,
    /// The committed offset: everything below is in the store.
    pub committed: AtomicU64,
    pub records_written: AtomicU64,
    pub writes: AtomicU64,
    pub retries: AtomicU64,
    pub dead_letters: AtomicU64,
    pub circuit_open: AtomicBool,
    pub last_error: Mutex<Option<String>>,
}

/// A running consumer (see the module docs).
pub struct Consumer {
    config: ConsumerConfig,
    probe: Arc<ConsumerProbe>,
    stop: watch::Sender<Option<Instant>>,
    readers: Vec<JoinHandle<()>>,
    writers: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").field("group", &self.config.group).finish_non_exhaustive()
    }
}

/// A consumer's readiness, lag and metrics, shareable with a server's probe.
pub struct ConsumerProbe {
    group: String,
    topic: Topic,
    bus: Arc<dyn Backbone>,
    partitions: Vec<Arc<PartitionStatus>>,
    /// The last periodic check of the store succeeded.
    store_up: AtomicBool,
}

impl std::fmt::Debug for ConsumerProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerProbe").field("group", &self.group).finish_non_exhaustive()
    }
}

impl ConsumerProbe {
    pub fn group(&self) -> &str {
        &self.group
    }

    /// Per-partition status.
    pub fn partitions(&self) -> &[Arc<PartitionStatus>] {
        &self.partitions
    }

    /// `false` while the store failed its last check or any partition's circuit is open.
    pub fn ready(&self) -> bool {
        self.store_up.load(Ordering::Acquire) && self.partitions.iter().all(|p| !p.circuit_open.load(Ordering::Acquire))
    }

    /// Records of the topic not yet committed by this consumer, per partition.
    pub fn lag(&self) -> Vec<u64> {
        self.partitions
            .iter()
            .map(|p| {
                let end = self.bus.end_offset(self.topic, p.partition).unwrap_or(0);
                end.saturating_sub(p.committed.load(Ordering::Acquire))
            })
            .collect()
    }

    /// Adds the consumer's metrics.
    pub fn metrics(&self, out: &mut MetricsText) {
        let lag = self.lag();
        for (p, lag) in self.partitions.iter().zip(lag) {
            let partition = p.partition.to_string();
            let labels = [("consumer", self.group.as_str()), ("partition", partition.as_str())];
            let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
            out.gauge("tachyon_consumer_committed_offset", &labels, load(&p.committed));
            out.gauge("tachyon_consumer_lag_records", &labels, lag);
            out.counter("tachyon_consumer_records_written_total", &labels, load(&p.records_written));
            out.counter("tachyon_consumer_writes_total", &labels, load(&p.writes));
            out.counter("tachyon_consumer_retries_total", &labels, load(&p.retries));
            out.counter("tachyon_consumer_dead_letters_total", &labels, load(&p.dead_letters));
            out.gauge("tachyon_consumer_circuit_open", &labels, u8::from(p.circuit_open.load(Ordering::Relaxed)));
        }
        out.gauge(
            "tachyon_consumer_store_up",
            &[("consumer", self.group.as_str())],
            u8::from(self.store_up.load(Ordering::Relaxed)),
        );
    }
}

/// Why a consumer could not start.
#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("cannot start a reader thread: {0}")]
    Thread(#[from] std::io::Error),
}

impl Consumer {
    /// Starts reading every partition of `config.topic` from the group's committed offsets
    /// (the start of the topic for a new group). Must be called within a tokio runtime.
    ///
    /// # Errors
    /// [`StartError`] when the backbone refuses the group or a reader.
    pub fn start<S: Sink>(bus: Arc<dyn Backbone>, sink: Arc<S>, config: ConsumerConfig) -> Result<Self, StartError> {
        let (stop, _) = watch::channel(None);
        let mut partitions = Vec::new();
        let mut readers = Vec::new();
        let mut writers = Vec::new();
        for partition in 0..bus.partitions() {
            let start = bus.committed(&config.group, config.topic, partition)?.unwrap_or(0);
            let reader = bus.reader(config.topic, partition, start)?;
            let status =
                Arc::new(PartitionStatus { partition, committed: AtomicU64::new(start), ..Default::default() });
            let (tx, rx) = mpsc::channel(config.read_ahead.max(1));
            let ctx = Context {
                config: config.clone(),
                bus: Arc::clone(&bus),
                status: Arc::clone(&status),
                stop: stop.subscribe(),
            };
            let name = format!("{}-{partition}", config.group);
            let read_ctx = ctx.clone();
            readers.push(std::thread::Builder::new().name(name).spawn(move || read_loop(&read_ctx, reader, &tx))?);
            writers.push(tokio::spawn(write_loop(ctx, Arc::clone(&sink), rx)));
            partitions.push(status);
        }
        tracing::info!(group = %config.group, topic = %config.topic, "consumer started");
        let probe = Arc::new(ConsumerProbe {
            group: config.group.clone(),
            topic: config.topic,
            bus,
            partitions,
            store_up: AtomicBool::new(true),
        });
        writers.push(tokio::spawn(watch_store(sink, Arc::clone(&probe), config.check_every, stop.subscribe())));
        Ok(Self { config, probe, stop, readers, writers })
    }

    /// Readiness, lag and metrics, to share with a server.
    pub fn probe(&self) -> Arc<ConsumerProbe> {
        Arc::clone(&self.probe)
    }

    /// Stops after writing and committing everything the topic held when called, or at
    /// `deadline`, whichever comes first; returns once every reader and writer ended.
    pub async fn shutdown(self, deadline: Instant) {
        let _ = self.stop.send(Some(deadline));
        for writer in self.writers {
            let _ = writer.await;
        }
        let readers = self.readers;
        let _ = tokio::task::spawn_blocking(move || {
            for r in readers {
                let _ = r.join();
            }
        })
        .await;
        tracing::info!(group = %self.config.group, "consumer stopped");
    }
}

/// Sets the store up, then checks it every `every` until shutdown, keeping the probe's
/// `store_up` current (so a store that is down shows even with nothing to write).
async fn watch_store<S: Sink>(
    sink: Arc<S>,
    probe: Arc<ConsumerProbe>,
    every: Duration,
    mut stop: watch::Receiver<Option<Instant>>,
) {
    let group = probe.group.clone();
    if let Err(error) = sink.prepare().await {
        tracing::warn!(%group, %error, "store not set up yet; writes will retry");
    }
    loop {
        let checked = tokio::select! {
            checked = tokio::time::timeout(every.max(Duration::from_millis(100)), sink.check()) => checked,
            _ = stop.changed() => return,
        };
        let up = match checked {
            Ok(Ok(())) => true,
            Ok(Err(error)) => {
                if probe.store_up.load(Ordering::Acquire) {
                    tracing::error!(%group, %error, "store check failed: not ready");
                }
                false
            }
            Err(_) => false,
        };
        if up && !probe.store_up.load(Ordering::Acquire) {
            tracing::info!(%group, "store check passed: ready");
        }
        probe.store_up.store(up, Ordering::Release);
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
    }
}

/// What a partition's reader and writer share.
#[derive(Clone)]
struct Context {
    config: ConsumerConfig,
    bus: Arc<dyn Backbone>,
    status: Arc<PartitionStatus>,
    stop: watch::Receiver<Option<Instant>>,
}

impl Context {
    fn partition(&self) -> u32 {
        self.status.partition
    }

    fn deadline(&self) -> Option<Instant> {
        *self.stop.borrow()
    }

    fn past_deadline(&self) -> bool {
        self.deadline().is_some_and(|d| Instant::now() >= d)
    }
}

/// What the reader hands the writer.
struct Batch {
    items: Vec<Item>,
    /// Records that could not be decoded, with the error.
    undecodable: Vec<(Record, String)>,
    /// The offset after the batch (what to commit once it is written).
    next: u64,
}

fn read_loop(ctx: &Context, mut reader: Box<dyn tachyon_bus::PartitionReader>, tx: &mpsc::Sender<Batch>) {
    let (topic, partition) = (ctx.config.topic, ctx.partition());
    let config = FollowConfig::new(ctx.config.batch_max, Duration::from_millis(ctx.config.poll_ms.max(1)))
        .retrying(Duration::from_millis(200));
    let mut drain_to: Option<u64> = None;
    let _ = follow::<_, BusError>(reader.as_mut(), config, decode_output, |polled| {
        if !polled.items.is_empty() {
            let mut batch =
                Batch { items: Vec::with_capacity(polled.items.len()), undecodable: Vec::new(), next: polled.next };
            for item in polled.items.drain(..) {
                match item.decoded {
                    Ok(output) => batch.items.push(Item { offset: item.offset, payload: item.payload, output }),
                    Err(error) => {
                        batch
                            .undecodable
                            .push((Record { offset: item.offset, payload: item.payload }, error.to_string()));
                    }
                }
            }
            if tx.blocking_send(batch).is_err() {
                return Ok(Control::Stop); // The writer stopped (deadline passed).
            }
        }
        if ctx.deadline().is_some() {
            let end = *drain_to.get_or_insert_with(|| ctx.bus.end_offset(topic, partition).unwrap_or(0));
            if polled.next >= end || ctx.past_deadline() {
                return Ok(Control::Stop);
            }
        }
        Ok(Control::Continue)
    });
}

/// The writer was told to stop before it could finish a write.
struct Stopped;

async fn write_loop<S: Sink>(ctx: Context, sink: Arc<S>, mut rx: mpsc::Receiver<Batch>) {
    let mut writer = Writer { circuit: Circuit::new(ctx.config.retry), ctx };
    while let Some(mut batch) = rx.recv().await {
        // Whatever queued up meanwhile goes into the same write.
        while batch.items.len() < writer.ctx.config.batch_max {
            match rx.try_recv() {
                Ok(more) => {
                    batch.items.extend(more.items);
                    batch.undecodable.extend(more.undecodable);
                    batch.next = more.next;
                }
                Err(_) => break,
            }
        }
        if writer.write_batch(&*sink, batch).await.is_err() {
            return;
        }
    }
}

struct Writer {
    ctx: Context,
    circuit: Circuit,
}

impl Writer {
    async fn write_batch<S: Sink>(&mut self, sink: &S, batch: Batch) -> Result<(), Stopped> {
        for (record, error) in &batch.undecodable {
            self.dead_letter(record, error).await?;
        }
        self.write_isolating(sink, &batch.items).await?;
        self.commit(batch.next).await
    }

    /// Writes `items`, halving on permanent errors until each failing record is alone,
    /// and dead-letters those.
    async fn write_isolating<S: Sink>(&mut self, sink: &S, items: &[Item]) -> Result<(), Stopped> {
        let mut pending: Vec<Range<usize>> = Vec::with_capacity(16);
        pending.push(0..items.len());
        while let Some(range) = pending.pop() {
            if range.is_empty() {
                continue;
            }
            match self.write_retrying(sink, &items[range.clone()]).await? {
                Ok(()) => {}
                Err(error) if range.len() == 1 => {
                    let item = &items[range.start];
                    let record = Record { offset: item.offset, payload: Arc::clone(&item.payload) };
                    self.dead_letter(&record, &error).await?;
                }
                Err(_) => {
                    // Second half pushed first: the first half is written first (in order).
                    let mid = range.start + range.len() / 2;
                    pending.push(mid..range.end);
                    pending.push(range.start..mid);
                }
            }
        }
        Ok(())
    }

    /// Writes until success or a permanent error, waiting out transient ones.
    async fn write_retrying<S: Sink>(&mut self, sink: &S, items: &[Item]) -> Result<Result<(), String>, Stopped> {
        let status = Arc::clone(&self.ctx.status);
        loop {
            match sink.write(self.ctx.partition(), items).await {
                Ok(()) => {
                    if self.circuit.state() == CircuitState::Open {
                        tracing::info!(group = %self.ctx.config.group, partition = status.partition, "store reachable again: circuit closed");
                    }
                    self.circuit.success();
                    status.circuit_open.store(false, Ordering::Release);
                    status.writes.fetch_add(1, Ordering::Relaxed);
                    status.records_written.fetch_add(items.len() as u64, Ordering::Relaxed);
                    return Ok(Ok(()));
                }
                Err(SinkError::Permanent(error)) => return Ok(Err(error)),
                Err(SinkError::Transient(error)) => {
                    status.retries.fetch_add(1, Ordering::Relaxed);
                    let wait = self.circuit.failure(jitter_unit());
                    let open = self.circuit.state() == CircuitState::Open;
                    if open && !status.circuit_open.swap(true, Ordering::AcqRel) {
                        tracing::error!(group = %self.ctx.config.group, partition = status.partition, %error, "store failing: circuit open");
                    } else {
                        tracing::warn!(group = %self.ctx.config.group, partition = status.partition, %error, wait_ms = wait.as_millis() as u64, "write failed; retrying");
                    }
                    *status.last_error.lock() = Some(error);
                    self.pause(wait).await?;
                }
            }
        }
    }

    /// Sleeps, waking early (with [`Stopped`]) when the shutdown deadline passes.
    async fn pause(&mut self, wait: Duration) -> Result<(), Stopped> {
        let until = Instant::now() + wait;
        loop {
            if self.ctx.past_deadline() {
                return Err(Stopped);
            }
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            let nap = match self.ctx.deadline() {
                Some(d) => (until - now).min(d.saturating_duration_since(now)),
                None => until - now,
            };
            tokio::select! {
                () = tokio::time::sleep(nap) => {}
                _ = self.ctx.stop.changed() => {}
            }
        }
    }

    async fn dead_letter(&mut self, record: &Record, error: &str) -> Result<(), Stopped> {
        let (topic, partition) = (self.ctx.config.topic, self.ctx.partition());
        tracing::warn!(group = %self.ctx.config.group, %topic, partition, offset = record.offset, %error, "record sent to the dead-letter topic");
        let letter = dead_letter_json(topic, partition, record, error, Some(&self.ctx.config.group));
        self.backbone_retrying(move |bus| {
            produce_blocking(bus, Topic::DeadLetter, partition, &mut vec![letter.clone()])?;
            bus.flush(Topic::DeadLetter, partition, Duration::from_secs(10))
        })
        .await?;
        self.ctx.status.dead_letters.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn commit(&mut self, next: u64) -> Result<(), Stopped> {
        let (group, topic, partition) = (self.ctx.config.group.clone(), self.ctx.config.topic, self.ctx.partition());
        self.backbone_retrying(move |bus| bus.commit(&group, topic, partition, next)).await?;
        self.ctx.status.committed.store(next, Ordering::Release);
        Ok(())
    }

    /// Runs a blocking backbone call off the async threads, retrying failures (the
    /// backbone being down is no reason to lose a dead letter or a commit).
    async fn backbone_retrying(
        &mut self,
        call: impl Fn(&dyn Backbone) -> Result<(), BusError> + Send + Sync + 'static,
    ) -> Result<(), Stopped> {
        let call = Arc::new(call);
        let mut wait = Duration::from_millis(50);
        loop {
            let (bus, call) = (Arc::clone(&self.ctx.bus), Arc::clone(&call));
            match tokio::task::spawn_blocking(move || call(bus.as_ref())).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(error)) => {
                    tracing::warn!(group = %self.ctx.config.group, %error, "backbone call failed; retrying");
                }
                Err(error) => {
                    tracing::error!(group = %self.ctx.config.group, %error, "backbone call panicked; retrying");
                }
            }
            self.pause(wait).await?;
            wait = (wait * 2).min(Duration::from_secs(2));
        }
    }
}
