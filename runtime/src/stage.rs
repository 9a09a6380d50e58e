//! The part of a shard both drivers share (the embedded pipeline and the backbone shard
//! loop): the machine, its output sequence, what was published before a restart, the
//! encoding of new outputs, and snapshots.
//!
//! # Exactly-once output without transactions
//! On start the stage loads the newest intact snapshot (input offset `next_input`,
//! output sequence `out_seq`) and reads the last record of each output topic's partition
//! to learn the last sequence already published there (`published`, per topic: topics are
//! written independently, so a crash can leave one ahead of another). The driver then
//! feeds the input from `next_input`. The machine is deterministic, so every input
//! re-creates the same outputs with the same sequences; those at or below the last
//! sequence found on their topic are dropped, the rest are published. A crash anywhere
//! therefore neither loses nor duplicates an output. A snapshot is only written after
//! the outputs up to its `out_seq` are durable, so the outputs never fall behind one.
//!
//! # Snapshots off the hot thread
//! A periodic snapshot serializes the machine on the shard's thread (it must see one
//! consistent state) and hands the bytes to a short-lived thread that flushes the outputs
//! and writes the snapshot (file + fsync, or the snapshots topic): the shard goes on
//! applying meanwhile. The flush covers at least the outputs up to the snapshot (and
//! whatever came after), so the rule above holds. One save at a time; the final one, at
//! stop, waits for a pending one and then runs on the shard's thread.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tachyon_bus::{last_record, Backbone, BusError};
use tachyon_proto::latency::{Hop, Latency};
use tachyon_proto::Topic;
use thiserror::Error;

use crate::machine::{Machine, OutputRecord, Outputs};
use crate::snapshots::{ShardSnapshot, SnapshotStore};

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
    /// Batches applied (commands / batches is the mean batch size).
    pub batches: AtomicU64,
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
    Restore(String),
    #[error("journal: {0}")]
    Journal(#[from] tachyon_bus::JournalError),
    #[error("partition {partition}: {reason}")]
    Inconsistent { partition: u32, reason: String },
}

/// When a shard snapshots.
#[derive(Clone, Debug)]
pub struct SnapshotPolicy {
    /// Where this shard's snapshots live.
    pub store: SnapshotStore,
    /// Snapshot after this many commands…
    pub every_commands: u64,
    /// …or this much time with at least one command, whichever comes first.
    pub every: Duration,
}

/// The encoded new outputs of a batch, one list per output topic.
#[derive(Debug, Default)]
pub(crate) struct Encoded {
    pub(crate) topics: Vec<(Topic, Vec<Vec<u8>>)>,
}

impl Encoded {
    pub(crate) fn list(&mut self, topic: Topic) -> &mut Vec<Vec<u8>> {
        let at = match self.topics.iter().position(|(t, _)| *t == topic) {
            Some(at) => at,
            None => {
                self.topics.push((topic, Vec::new()));
                self.topics.len() - 1
            }
        };
        &mut self.topics[at].1
    }
}

/// The shared part of a shard (see the module docs).
pub(crate) struct Stage<M: Machine> {
    pub(crate) machine: M,
    pub(crate) partition: u32,
    /// Last output sequence produced (replayed or published).
    pub(crate) out_seq: u64,
    /// Outputs up to these sequences were already published (per topic) before a restart.
    published: Vec<(Topic, u64)>,
    pub(crate) status: Arc<ShardStatus>,
    latency: Arc<Latency>,
    snapshots: SnapshotPolicy,
    since_snapshot: u64,
    last_snapshot: Instant,
    /// A periodic snapshot being written in the background.
    saving: Option<JoinHandle<()>>,
}

impl<M: Machine> Stage<M> {
    /// Loads the newest snapshot into `machine` and learns what was published; returns the
    /// stage and the first input offset to apply.
    ///
    /// # Errors
    /// A damaged output log, a snapshot that does not fit the machine, outputs older than
    /// the newest snapshot.
    pub(crate) fn recover(
        mut machine: M,
        partition: u32,
        outputs: &dyn Backbone,
        snapshots: SnapshotPolicy,
        status: Arc<ShardStatus>,
        latency: Arc<Latency>,
    ) -> Result<(Self, u64), ShardError> {
        let (next_input, out_seq) = match snapshots.store.load_newest()? {
            Some(s) => {
                machine.restore(&s.state).map_err(ShardError::Restore)?;
                (s.next_input, s.out_seq)
            }
            None => (0, 0),
        };
        let published = last_published::<M>(outputs, partition)?;
        let max = published.iter().map(|(_, s)| *s).max().unwrap_or(0);
        if max < out_seq {
            return Err(ShardError::Inconsistent {
                partition,
                reason: format!("outputs end at sequence {max} but the snapshot is at {out_seq}"),
            });
        }
        tracing::info!(partition, next_input, out_seq, published = ?published, "shard recovering");
        status.position.store(next_input, Ordering::Relaxed);
        status.out_seq.store(out_seq, Ordering::Relaxed);
        let stage = Self {
            machine,
            partition,
            out_seq,
            published,
            status,
            latency,
            snapshots,
            since_snapshot: 0,
            last_snapshot: Instant::now(),
            saving: None,
        };
        Ok((stage, next_input))
    }

    /// `true` while re-deriving outputs that were published before the restart.
    pub(crate) fn replaying(&self) -> bool {
        self.published.iter().any(|(_, s)| self.out_seq < *s)
    }

    /// Per output topic, the last sequence published before the restart.
    pub(crate) fn published(&self) -> &[(Topic, u64)] {
        &self.published
    }

    /// `true` for a record not published before the restart.
    pub(crate) fn is_new(&self, topic: Topic, seq: u64) -> bool {
        self.published.iter().find(|(t, _)| *t == topic).is_none_or(|(_, s)| seq > *s)
    }

    /// Applies a batch (input `i` at offset `first_offset + i`), numbering its outputs.
    pub(crate) fn apply(&mut self, inputs: &[M::Input], first_offset: u64, out: &mut Outputs<M::Output>) {
        if inputs.is_empty() {
            return;
        }
        // Replayed commands are history: only live ones say how fast the shard is.
        let live = !self.replaying();
        if live {
            self.latency.since_all(Hop::EngineIn, inputs.iter().map(M::timestamp));
        }
        let started = Instant::now();
        out.clear();
        self.machine.apply(inputs, first_offset, out);
        if live {
            let per_command = started.elapsed().as_nanos() / inputs.len() as u128;
            self.latency.record_n(Hop::Engine, u64::try_from(per_command).unwrap_or(u64::MAX), inputs.len() as u64);
        }
        debug_assert_eq!(out.inputs(), inputs.len(), "the machine closes every input");
        for (_, record) in out.records_mut() {
            self.out_seq += 1;
            record.set_seq(self.out_seq);
        }
        let n = inputs.len() as u64;
        self.since_snapshot += n;
        self.status.commands.fetch_add(n, Ordering::Relaxed);
        self.status.batches.fetch_add(1, Ordering::Relaxed);
        self.status.position.store(first_offset + n, Ordering::Relaxed);
    }

    /// Encodes the records of `out` not published before into `encoded`.
    pub(crate) fn encode_new(&self, out: &Outputs<M::Output>, encoded: &mut Encoded) -> Result<(), ShardError> {
        for (topic, record) in out.records() {
            if !self.is_new(*topic, record.seq()) {
                continue;
            }
            let mut bytes = Vec::with_capacity(256);
            record.encode(&mut bytes).map_err(|e| ShardError::Inconsistent {
                partition: self.partition,
                reason: format!("cannot encode an output: {e}"),
            })?;
            encoded.list(*topic).push(bytes);
        }
        Ok(())
    }

    /// Notes that everything up to `out_seq` has been handed to the backbone.
    pub(crate) fn published_up_to_now(&self) {
        self.status.out_seq.store(self.out_seq, Ordering::Relaxed);
    }

    pub(crate) fn snapshot_due(&self) -> bool {
        self.since_snapshot >= self.snapshots.every_commands
            || (self.since_snapshot > 0 && self.last_snapshot.elapsed() >= self.snapshots.every)
    }

    pub(crate) fn has_unsnapshotted(&self) -> bool {
        self.since_snapshot > 0
    }

    /// Flushes the outputs (a snapshot must never be ahead of them) and saves a snapshot
    /// of the state before input `next_input`, on this thread (after a pending background
    /// save finished).
    pub(crate) fn snapshot(&mut self, outputs: &dyn Backbone, next_input: u64) -> Result<(), ShardError> {
        self.wait_for_save();
        let taken = self.take_snapshot(next_input)?;
        taken.save(outputs, &self.snapshots.store, M::OUTPUT_TOPICS, &self.status)
    }

    /// A periodic snapshot: serialized here, written in the background (see the module
    /// docs). One that cannot be written (the broker away for longer than the flush
    /// waits, a full disk) only shortens a future replay, so it is logged and tried again
    /// at the next due time, and the shard keeps going.
    pub(crate) fn snapshot_if_due(&mut self, outputs: &Arc<dyn Backbone>, next_input: u64) {
        if !self.snapshot_due() || self.saving.as_ref().is_some_and(|s| !s.is_finished()) {
            return;
        }
        self.wait_for_save();
        let taken = match self.take_snapshot(next_input) {
            Ok(taken) => taken,
            Err(error) => {
                tracing::warn!(partition = self.partition, %error, "snapshot postponed");
                self.last_snapshot = Instant::now();
                return;
            }
        };
        let (outputs, store, status) = (Arc::clone(outputs), self.snapshots.store.clone(), Arc::clone(&self.status));
        let (partition, topics) = (self.partition, M::OUTPUT_TOPICS);
        let spawned = std::thread::Builder::new().name(format!("snapshot-{partition}")).spawn(move || {
            if let Err(error) = taken.save(outputs.as_ref(), &store, topics, &status) {
                tracing::warn!(partition, %error, "snapshot postponed");
            }
        });
        match spawned {
            Ok(handle) => self.saving = Some(handle),
            Err(error) => tracing::warn!(partition, %error, "snapshot postponed: no thread to write it"),
        }
    }

    /// Serializes the machine and restarts the snapshot clock.
    fn take_snapshot(&mut self, next_input: u64) -> Result<Taken, ShardError> {
        let (partition, started) = (self.partition, Instant::now());
        let state = self.machine.snapshot().map_err(|reason| ShardError::Inconsistent { partition, reason })?;
        self.since_snapshot = 0;
        self.last_snapshot = Instant::now();
        Ok(Taken {
            partition,
            size: self.machine.size(),
            started,
            serialized: started.elapsed(),
            snapshot: ShardSnapshot { next_input, out_seq: self.out_seq, state },
        })
    }

    fn wait_for_save(&mut self) {
        if let Some(saving) = self.saving.take() {
            if saving.join().is_err() {
                tracing::warn!(partition = self.partition, "the snapshot writer panicked; snapshot postponed");
            }
        }
    }
}

impl<M: Machine> Drop for Stage<M> {
    /// A stopping shard lets its pending snapshot finish.
    fn drop(&mut self) {
        self.wait_for_save();
    }
}

/// A serialized snapshot on its way to the store.
struct Taken {
    partition: u32,
    /// The machine's size when it was taken (for the log).
    size: usize,
    started: Instant,
    serialized: Duration,
    snapshot: ShardSnapshot,
}

impl Taken {
    /// Flushes `topics` (the snapshot must never be ahead of the outputs), saves, counts
    /// and logs it.
    fn save(
        self,
        outputs: &dyn Backbone,
        store: &SnapshotStore,
        topics: &[Topic],
        status: &ShardStatus,
    ) -> Result<(), ShardError> {
        for &topic in topics {
            outputs.flush(topic, self.partition, Duration::from_secs(30))?;
        }
        let place = store.save(&self.snapshot)?;
        status.snapshots.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            partition = self.partition,
            next_input = self.snapshot.next_input,
            out_seq = self.snapshot.out_seq,
            size = self.size,
            serialized_us = self.serialized.as_micros() as u64,
            took_ms = self.started.elapsed().as_millis() as u64,
            place = %place,
            "snapshot written"
        );
        Ok(())
    }
}

/// The last output sequence found on each output topic's partition.
fn last_published<M: Machine>(bus: &dyn Backbone, partition: u32) -> Result<Vec<(Topic, u64)>, ShardError> {
    let mut published = Vec::with_capacity(M::OUTPUT_TOPICS.len());
    for &topic in M::OUTPUT_TOPICS {
        let seq = match last_record(bus, topic, partition)? {
            Some(record) => M::Output::decode_seq(&record.payload).map_err(|e| ShardError::Inconsistent {
                partition,
                reason: format!("last record of {topic} (offset {}) is unreadable: {e}", record.offset),
            })?,
            None => 0,
        };
        published.push((topic, seq));
    }
    Ok(published)
}
