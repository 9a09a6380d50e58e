//! The embedded order path: one sequenced pipeline per partition.
//!
//! ```text
//!  gateway tasks ──push──▶ ring ──▶ pipeline thread: drain a batch
//!                                      ├─ encode + append to the input journal (one write)
//!                                      ├─ hand the sync to the syncer ──▶ fdatasync (group)
//!                                      ├─ apply the batch to the machine (while it syncs)
//!                                      └─ once durable: listener (order store, market
//!                                         data, replies), then the outputs to the log
//! ```
//!
//! Producers put inputs on a bounded lock-free [`Ring`] (a full ring refuses at once:
//! backpressure, never an unbounded queue). The pipeline thread drains what is there as
//! one batch, encodes it straight into the journal's write buffer and appends it with one
//! write, hands the sync to the process's [`Syncer`] and applies the batch while the sync
//! runs. Nothing of a batch leaves the pipeline before its sync: once the journal is
//! durable up to the batch's end, the [`Listener`] gets the batch's outputs and each
//! input's token (in one process the gateway's order store, market data and waiting
//! requests, fed without a round trip through a log), and then the outputs are produced
//! to the output log, which stays the source for other consumers and for recovery. So a
//! crash loses only inputs nobody was told about. Up to `max_in_flight` batches may be
//! applied but not yet durable.
//!
//! Recovery is the [`Stage`]'s: the newest snapshot, the tails of the output topics, and
//! a silent replay of the journal from the snapshot's offset; outputs re-derived beyond
//! what was published go to the listener and the log like live ones.

mod ring;
mod sync;

pub use ring::Ring;
pub use sync::{SyncSlot, Syncer};

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tachyon_bus::{dead_letter_json, produce_blocking, Backbone, FsyncPolicy, Journal, JournalConfig, Record};
use tachyon_proto::latency::Latency;
use tachyon_proto::Topic;

use crate::machine::{Machine, OutputRecord, Outputs};
use crate::stage::{Encoded, ShardError, ShardStatus, SnapshotPolicy, Stage};

/// An input with what its submitter needs back (a reply channel).
#[derive(Debug)]
pub struct Submission<I, T> {
    pub input: I,
    pub token: T,
}

/// A durable batch, as the listener sees it.
#[derive(Debug)]
pub struct Released<'a, O, T> {
    pub partition: u32,
    outputs: &'a Outputs<O>,
    /// One per input: its submitter's token (`None` for replayed inputs).
    pub tokens: &'a mut Vec<Option<T>>,
    /// Per output topic, the last sequence published before a restart: records at or
    /// below it were delivered before (from the log).
    published: &'a [(Topic, u64)],
}

impl<O: OutputRecord, T> Released<'_, O, T> {
    /// The batch's records not delivered before, in sequence order.
    pub fn records(&self) -> impl Iterator<Item = &(Topic, O)> + '_ {
        self.outputs
            .records()
            .iter()
            .filter(|(topic, r)| self.published.iter().find(|(t, _)| t == topic).is_none_or(|(_, s)| r.seq() > *s))
    }

    /// The records of input `i`.
    pub fn of_input(&self, i: usize) -> &[(Topic, O)] {
        self.outputs.of_input(i)
    }
}

/// Where a pipeline hands its durable batches in its own process.
pub trait Listener<O, T>: Send + Sync + 'static {
    /// Called on the pipeline thread, batch after batch, once a batch is durable: apply
    /// its records and answer its tokens.
    fn released(&self, batch: Released<'_, O, T>);

    /// A submission that will never be applied (the journal failed, the pipeline
    /// stopped): answer it with `reason`.
    fn refused(&self, token: T, reason: &str);
}

/// How a pipeline runs.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    pub partition: u32,
    /// The input journal's directory (the partition's `tachyon.orders` journal).
    pub journal_dir: PathBuf,
    pub journal: JournalConfig,
    pub snapshots: SnapshotPolicy,
    /// Inputs per batch, at most.
    pub batch_max: usize,
    /// Inputs the ring holds before it refuses.
    pub ring_capacity: usize,
    /// Batches applied but not yet durable, at most.
    pub max_in_flight: usize,
    /// How long the thread spins on an empty ring before it parks.
    pub spin: Duration,
    pub latency: Arc<Latency>,
}

impl PipelineConfig {
    pub fn new(partition: u32, journal_dir: PathBuf, snapshots: SnapshotPolicy) -> Self {
        Self {
            partition,
            journal_dir,
            journal: JournalConfig::default(),
            snapshots,
            batch_max: 1024,
            ring_capacity: 16_384,
            max_in_flight: 4,
            spin: Duration::from_micros(20),
            latency: Arc::default(),
        }
    }
}

/// The producers' side of a running pipeline.
#[derive(Debug)]
pub struct Pipeline<I, T> {
    ring: Arc<Ring<Submission<I, T>>>,
    stop: Arc<AtomicBool>,
    healthy: Arc<AtomicBool>,
    /// Submissions refused because the ring was full (backpressure seen by clients).
    refused_full: Arc<AtomicU64>,
    pub status: Arc<ShardStatus>,
}

impl<I, T> Clone for Pipeline<I, T> {
    fn clone(&self) -> Self {
        Self {
            ring: Arc::clone(&self.ring),
            stop: Arc::clone(&self.stop),
            healthy: Arc::clone(&self.healthy),
            refused_full: Arc::clone(&self.refused_full),
            status: Arc::clone(&self.status),
        }
    }
}

/// Why a submission was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The ring is full: retry shortly.
    Full,
    /// The pipeline failed or is stopping.
    Unavailable,
}

impl<I, T> Pipeline<I, T> {
    /// Queues an input; gives it back with the reason when it cannot be taken.
    ///
    /// # Errors
    /// [`Refusal::Full`] when the ring is full, [`Refusal::Unavailable`] once the
    /// pipeline failed or stops.
    pub fn submit(&self, input: I, token: T) -> Result<(), (Submission<I, T>, Refusal)> {
        let submission = Submission { input, token };
        if !self.healthy.load(Ordering::Acquire) || self.stop.load(Ordering::Acquire) {
            return Err((submission, Refusal::Unavailable));
        }
        self.ring.push(submission).map_err(|s| {
            self.refused_full.fetch_add(1, Ordering::Relaxed);
            (s, Refusal::Full)
        })
    }

    /// Submissions refused so far because the ring was full.
    pub fn refused_full(&self) -> u64 {
        self.refused_full.load(Ordering::Relaxed)
    }

    /// `false` once the pipeline failed.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Inputs waiting in the ring.
    pub fn queued(&self) -> usize {
        self.ring.len()
    }

    pub fn ring_capacity(&self) -> usize {
        self.ring.capacity()
    }

    /// Asks the pipeline to stop once everything queued was applied and released.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.ring.wake();
    }
}

impl<I: Send + 'static, T: Send + 'static> Pipeline<I, T> {
    /// A pipeline's ring, taking submissions (which wait) before its thread runs.
    pub fn new(ring_capacity: usize) -> Self {
        Self {
            ring: Arc::new(Ring::new(ring_capacity)),
            stop: Arc::new(AtomicBool::new(false)),
            healthy: Arc::new(AtomicBool::new(true)),
            refused_full: Arc::default(),
            status: Arc::default(),
        }
    }

    /// Starts the pipeline's thread: recovery, then the live loop until
    /// [`Pipeline::stop`]. Outputs are produced to `outputs` (the embedded backbone's
    /// output topics).
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn spawn<M, L>(
        &self,
        machine: M,
        config: PipelineConfig,
        outputs: Arc<dyn Backbone>,
        syncer: Arc<Syncer>,
        listener: Arc<L>,
    ) -> std::io::Result<JoinHandle<Result<(), ShardError>>>
    where
        M: Machine<Input = I>,
        L: Listener<M::Output, T>,
    {
        let handle = self.clone();
        std::thread::Builder::new().name(format!("pipeline-{}", config.partition)).spawn(move || {
            let result = run(machine, &config, &outputs, &syncer, listener.as_ref(), &handle);
            if let Err(error) = &result {
                tracing::error!(partition = config.partition, %error, "pipeline failed");
                handle.healthy.store(false, Ordering::Release);
                // Whatever is still queued will never be applied: say so.
                let mut left = Vec::new();
                handle.ring.drain_into(&mut left, usize::MAX);
                for s in left {
                    listener.refused(s.token, "the journal failed; the exchange restarts into recovery");
                }
            }
            result
        })
    }
}

/// A batch applied and waiting for its sync.
struct InFlight<O, T> {
    /// Input offsets below this are in the batch or before it.
    end: u64,
    outputs: Outputs<O>,
    tokens: Vec<Option<T>>,
}

struct Run<'a, M: Machine, T, L> {
    stage: Stage<M>,
    journal: Journal,
    policy: FsyncPolicy,
    slot: Arc<SyncSlot>,
    syncer: &'a Syncer,
    outputs: &'a Arc<dyn Backbone>,
    listener: &'a L,
    pipeline: &'a Pipeline<M::Input, T>,
    config: &'a PipelineConfig,
    in_flight: VecDeque<InFlight<M::Output, T>>,
    spare: Vec<InFlight<M::Output, T>>,
    submissions: Vec<Submission<M::Input, T>>,
    inputs: Vec<M::Input>,
    encoded: Encoded,
}

fn run<M, T, L>(
    machine: M,
    config: &PipelineConfig,
    outputs: &Arc<dyn Backbone>,
    syncer: &Arc<Syncer>,
    listener: &L,
    pipeline: &Pipeline<M::Input, T>,
) -> Result<(), ShardError>
where
    M: Machine,
    T: Send + 'static,
    L: Listener<M::Output, T>,
{
    let partition = config.partition;
    let (journal, recovery) = Journal::open(&config.journal_dir, config.journal)?;
    if recovery.truncated_bytes > 0 {
        tracing::warn!(partition, bytes = recovery.truncated_bytes, "cut a torn journal tail");
    }
    let (stage, next_input) = Stage::recover(
        machine,
        partition,
        outputs.as_ref(),
        config.snapshots.clone(),
        Arc::clone(&pipeline.status),
        Arc::clone(&config.latency),
    )?;
    let ring = Arc::clone(&pipeline.ring);
    let slot = syncer.register(partition, journal.next_offset(), Box::new(move || ring.wake()));
    let mut run = Run {
        stage,
        policy: config.journal.fsync,
        journal,
        slot,
        syncer,
        outputs,
        listener,
        pipeline,
        config,
        in_flight: VecDeque::new(),
        spare: Vec::new(),
        submissions: Vec::with_capacity(config.batch_max),
        inputs: Vec::with_capacity(config.batch_max),
        encoded: Encoded::default(),
    };
    run.replay(next_input)?;
    run.live()?;
    let position = run.journal.next_offset();
    if run.stage.has_unsnapshotted() {
        run.stage.snapshot(outputs.as_ref(), position)?;
    }
    tracing::info!(partition, position, out_seq = run.stage.out_seq, "pipeline stopped");
    Ok(())
}

impl<M, T, L> Run<'_, M, T, L>
where
    M: Machine,
    T: Send + 'static,
    L: Listener<M::Output, T>,
{
    /// Applies the journal from `from` to its end without answering anyone; outputs
    /// beyond what was published before the restart are released like live ones.
    fn replay(&mut self, from: u64) -> Result<(), ShardError> {
        let partition = self.config.partition;
        let end = self.journal.next_offset();
        if from > end {
            return Err(ShardError::Inconsistent {
                partition,
                reason: format!("the snapshot is at input {from} but the journal ends at {end}"),
            });
        }
        let mut reader = self.journal.read_from(from)?;
        let mut first = from;
        let mut tokens = Vec::new();
        loop {
            let next = reader.next().transpose()?;
            let flush = next.is_none() || self.inputs.len() >= self.config.batch_max;
            if flush && !self.inputs.is_empty() {
                tokens.clear();
                tokens.resize_with(self.inputs.len(), || None);
                let mut batch = self.spare.pop().unwrap_or_else(Self::empty);
                self.stage.apply(&self.inputs, first, &mut batch.outputs);
                first += self.inputs.len() as u64;
                self.inputs.clear();
                batch.tokens = std::mem::take(&mut tokens);
                self.release(batch)?;
            }
            let Some((offset, payload)) = next else { break };
            match M::decode_input(&payload) {
                Ok(input) => {
                    if self.inputs.is_empty() {
                        first = offset;
                    }
                    self.inputs.push(input);
                }
                Err(error) => {
                    // Only a journal written by another version can hold one: decode
                    // what came before it, then record it as a dead letter.
                    if !self.inputs.is_empty() {
                        tokens.resize_with(self.inputs.len(), || None);
                        let mut batch = self.spare.pop().unwrap_or_else(Self::empty);
                        self.stage.apply(&self.inputs, first, &mut batch.outputs);
                        self.inputs.clear();
                        batch.tokens = std::mem::take(&mut tokens);
                        self.release(batch)?;
                    }
                    self.dead_letter(offset, payload, &error.to_string())?;
                }
            }
        }
        let status = &self.stage.status;
        status.position.store(end, Ordering::Relaxed);
        status.caught_up.store(true, Ordering::Release);
        tracing::info!(partition, position = end, out_seq = self.stage.out_seq, "shard caught up");
        Ok(())
    }

    fn empty() -> InFlight<M::Output, T> {
        InFlight { end: 0, outputs: Outputs::default(), tokens: Vec::new() }
    }

    fn dead_letter(&mut self, offset: u64, payload: Vec<u8>, error: &str) -> Result<(), ShardError> {
        let partition = self.config.partition;
        self.stage.status.dead_letters.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(partition, offset, %error, "undecodable journal record sent to the dead-letter topic");
        if self.stage.replaying() {
            return Ok(()); // It was dead-lettered before the restart.
        }
        let record = Record { offset, payload: payload.into() };
        let letter = dead_letter_json(Topic::Orders, partition, &record, error, None);
        Ok(produce_blocking(self.outputs.as_ref(), Topic::DeadLetter, partition, &mut vec![letter])?)
    }

    fn stopping(&self) -> bool {
        self.pipeline.stop.load(Ordering::Acquire)
    }

    /// The live loop: batches from the ring until stopped and drained.
    fn live(&mut self) -> Result<(), ShardError> {
        loop {
            self.check_sync()?;
            self.release_durable()?;
            if self.in_flight.len() < self.config.max_in_flight.max(1) {
                self.submissions.clear();
                let n = self.pipeline.ring.drain_into(&mut self.submissions, self.config.batch_max);
                if n > 0 {
                    self.take_batch()?;
                    continue;
                }
            }
            if let Some(oldest) = self.in_flight.front() {
                // Woken by the syncer (or a new submission).
                let (slot, end) = (&self.slot, oldest.end);
                let durable = || slot.durable.load(Ordering::SeqCst) >= end || slot.failed.lock().is_some();
                self.pipeline.ring.wait(Duration::ZERO, Duration::from_millis(5), durable);
                continue;
            }
            if self.stopping() && self.pipeline.ring.is_empty() {
                return Ok(());
            }
            let position = self.journal.next_offset();
            self.stage.snapshot_if_due(self.outputs, position);
            let stop = &self.pipeline.stop;
            self.pipeline.ring.wait(self.config.spin, Duration::from_millis(50), || stop.load(Ordering::Acquire));
        }
    }

    /// Journals, syncs (asynchronously) and applies the drained submissions.
    fn take_batch(&mut self) -> Result<(), ShardError> {
        let mut batch = self.spare.pop().unwrap_or_else(Self::empty);
        batch.tokens.clear();
        self.inputs.clear();
        for s in self.submissions.drain(..) {
            self.inputs.push(s.input);
            batch.tokens.push(Some(s.token));
        }
        let inputs = &self.inputs;
        let range = match self.journal.append_encoded(inputs.len(), |i, buf| M::encode_input(&inputs[i], buf))? {
            Ok(range) => range,
            Err(error) => {
                // An input that cannot be encoded is refused alone (none can be, but an
                // error is not a panic): nothing of the batch was written.
                tracing::error!(partition = self.config.partition, %error, "cannot encode an input; batch refused");
                for token in batch.tokens.drain(..).flatten() {
                    self.listener.refused(token, "the command could not be encoded");
                }
                self.spare.push(batch);
                return Ok(());
            }
        };
        match self.policy {
            FsyncPolicy::Never => self.journal.mark_durable(range.end),
            FsyncPolicy::EveryBatch | FsyncPolicy::Interval(_) => {
                self.syncer.request(self.config.partition, self.journal.sync_target());
            }
        }
        // Matching runs while the sync is in flight.
        self.stage.apply(&self.inputs, range.start, &mut batch.outputs);
        batch.end = range.end;
        self.in_flight.push_back(batch);
        Ok(())
    }

    fn check_sync(&self) -> Result<(), ShardError> {
        if let Some(reason) = self.slot.failed.lock().clone() {
            return Err(ShardError::Inconsistent {
                partition: self.config.partition,
                reason: format!("the journal could not be synced ({reason}); a restart recovers it"),
            });
        }
        if !self.syncer.is_running() && self.policy != FsyncPolicy::Never {
            return Err(ShardError::Inconsistent {
                partition: self.config.partition,
                reason: "the journal syncer stopped".into(),
            });
        }
        Ok(())
    }

    /// Releases every in-flight batch the journal has made durable, oldest first.
    fn release_durable(&mut self) -> Result<(), ShardError> {
        let durable = match self.policy {
            FsyncPolicy::Never => u64::MAX,
            _ => self.slot.durable.load(Ordering::SeqCst),
        };
        while self.in_flight.front().is_some_and(|b| b.end <= durable) {
            let batch = self.in_flight.pop_front().expect("checked non-empty");
            self.journal.mark_durable(batch.end);
            self.release(batch)?;
        }
        Ok(())
    }

    /// Hands a durable batch to the listener, then its new outputs to the log.
    fn release(&mut self, mut batch: InFlight<M::Output, T>) -> Result<(), ShardError> {
        self.listener.released(Released {
            partition: self.config.partition,
            outputs: &batch.outputs,
            tokens: &mut batch.tokens,
            published: self.stage.published(),
        });
        // Tokens the listener left are answered as refused rather than dropped silently.
        for token in batch.tokens.drain(..).flatten() {
            self.listener.refused(token, "no answer was produced");
        }
        self.stage.encode_new(&batch.outputs, &mut self.encoded)?;
        for (topic, records) in &mut self.encoded.topics {
            if !records.is_empty() {
                produce_blocking(self.outputs.as_ref(), *topic, self.config.partition, records)?;
            }
        }
        self.stage.published_up_to_now();
        self.spare.push(batch);
        Ok(())
    }
}
