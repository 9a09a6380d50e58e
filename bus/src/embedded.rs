//! The embedded backbone: every partition of every topic is a [`Journal`] on disk with a
//! bounded in-process queue in front and an in-memory tail behind.
//!
//! # Threads and data flow
//! Producers (`produce`, never blocking) put batches on the partition's bounded queue. One
//! writer thread per partition drains whatever is queued, appends it with one write and,
//! per the fsync policy, one sync (group commit across all producers), then makes the
//! records visible: they join the partition's in-memory tail, readers waiting on the
//! condition variable wake up, and the producers' acknowledgements run. A record is
//! therefore never read before it is durable under the topic's policy, and an engine can
//! never act on a command that a crash could still take back.
//!
//! Readers serve from the tail (the newest `tail_records` records, shared `Arc`s, no
//! copy) and fall back to reading the journal files for older offsets (a consumer
//! catching up after a restart).
//!
//! # On disk
//! `<dir>/<topic>/<partition:04>/…log` (see [`crate::journal`]), and committed consumer
//! offsets in `<dir>/_offsets/<group>/<topic>.<partition>` (written atomically).

use std::collections::VecDeque;
use std::fs;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver, RecvTimeoutError, Sender, TrySendError};
use parking_lot::{Condvar, Mutex};
use tachyon_proto::Topic;

use crate::backbone::{valid_group, Ack, Backbone, BusError, PartitionReader, Record};
use crate::journal::{read_dir_range, FsyncPolicy, Journal, JournalConfig, JournalReader};

/// Most records one writer appends (and syncs) at once.
const MAX_WRITE_BATCH: usize = 8192;

/// Settings of the embedded backbone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbeddedConfig {
    /// Root directory of every topic's journals.
    pub dir: PathBuf,
    pub partitions: u32,
    /// Journal settings of `tachyon.orders` (and the dead-letter topic): what the gateway
    /// acknowledges must survive a crash, so this carries the configured fsync policy.
    pub input: JournalConfig,
    /// Journal settings of the engine's outputs. They can be rebuilt by replaying the input
    /// (the engine is deterministic), so they need not be synced on every batch.
    pub output: JournalConfig,
    /// Produce requests a partition queues before `produce` answers [`BusError::Full`].
    pub queue_capacity: usize,
    /// Newest records per partition kept in memory for readers.
    pub tail_records: usize,
    /// Topics whose journals someone else owns in this process (the embedded order
    /// path keeps `tachyon.orders` itself): the bus opens none of their partitions, and
    /// asking it for one is [`BusError::NoSuchPartition`].
    pub owned_elsewhere: Vec<Topic>,
    /// How long an output partition's writer waits for more records after the first of a
    /// write (Kafka's `linger.ms`): one write per many batches where no reader needs each
    /// record at once (in one process the gateway is fed without the log). Zero: write
    /// as soon as anything is queued.
    pub output_linger: Duration,
}

impl EmbeddedConfig {
    /// Defaults for `dir` with `partitions`, fsync per batch on the input.
    pub fn new(dir: impl Into<PathBuf>, partitions: u32) -> Self {
        Self {
            dir: dir.into(),
            partitions,
            input: JournalConfig::default(),
            output: JournalConfig { fsync: FsyncPolicy::Never, ..JournalConfig::default() },
            queue_capacity: 16_384,
            tail_records: 131_072,
            owned_elsewhere: Vec::new(),
            output_linger: Duration::ZERO,
        }
    }

    /// The engine's outputs, which a replay of the input can rebuild.
    fn is_output(topic: Topic) -> bool {
        match topic {
            Topic::Executions | Topic::MarketData => true,
            Topic::Orders | Topic::DeadLetter | Topic::Snapshots | Topic::Leases | Topic::Keys => false,
        }
    }

    fn journal(&self, topic: Topic) -> JournalConfig {
        if Self::is_output(topic) {
            self.output
        } else {
            self.input
        }
    }

    fn linger(&self, topic: Topic) -> Duration {
        if Self::is_output(topic) {
            self.output_linger
        } else {
            Duration::ZERO
        }
    }
}

enum Request {
    Append(Vec<Arc<[u8]>>, Option<Ack>),
    Flush(Sender<Result<(), BusError>>),
    Close,
}

/// What readers see of a partition.
struct Tail {
    /// Offset of `recent[0]`.
    base: u64,
    recent: VecDeque<Arc<[u8]>>,
    /// Records below this are visible (durable per the policy).
    end: u64,
    closed: bool,
}

struct PartitionLog {
    topic: Topic,
    partition: u32,
    dir: PathBuf,
    max_record_bytes: u32,
    tx: Sender<Request>,
    tail: Mutex<Tail>,
    grew: Condvar,
    healthy: AtomicBool,
}

/// The embedded backbone (see the module docs).
pub struct EmbeddedBus {
    dir: PathBuf,
    partitions: u32,
    /// Indexed by `Topic::ALL` position, then partition.
    logs: Vec<Vec<Arc<PartitionLog>>>,
    writers: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for EmbeddedBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBus").field("dir", &self.dir).field("partitions", &self.partitions).finish()
    }
}

fn topic_index(topic: Topic) -> usize {
    Topic::ALL.iter().position(|t| *t == topic).expect("Topic::ALL lists every topic")
}

impl EmbeddedBus {
    /// Opens (or creates) every partition's journal, recovering torn tails, and starts
    /// the writer threads.
    ///
    /// # Errors
    /// Journal errors (I/O, corruption other than a torn tail), as [`BusError::Unavailable`].
    pub fn open(config: &EmbeddedConfig) -> Result<Self, BusError> {
        if config.partitions == 0 {
            return Err(BusError::Unavailable("at least one partition is needed".into()));
        }
        let mut logs = Vec::new();
        let mut writers = Vec::new();
        for topic in Topic::ALL {
            let mut partitions = Vec::new();
            if config.owned_elsewhere.contains(&topic) {
                logs.push(partitions);
                continue;
            }
            for partition in 0..config.partitions {
                let dir = config.dir.join(topic.name()).join(format!("{partition:04}"));
                let journal_config = config.journal(topic);
                let (journal, recovery) = Journal::open(&dir, journal_config)
                    .map_err(|e| BusError::Unavailable(format!("{topic} partition {partition}: {e}")))?;
                if recovery.truncated_bytes > 0 {
                    tracing::warn!(%topic, partition, bytes = recovery.truncated_bytes, "cut a torn journal tail");
                }
                let (tx, rx) = channel::bounded(config.queue_capacity.max(1));
                let end = journal.next_offset();
                let log = Arc::new(PartitionLog {
                    topic,
                    partition,
                    dir,
                    max_record_bytes: journal_config.max_record_bytes,
                    tx,
                    tail: Mutex::new(Tail { base: end, recent: VecDeque::new(), end, closed: false }),
                    grew: Condvar::new(),
                    healthy: AtomicBool::new(true),
                });
                let writer = Writer {
                    journal,
                    rx,
                    log: Arc::clone(&log),
                    policy: journal_config.fsync,
                    tail_records: config.tail_records.max(1),
                    linger: config.linger(topic),
                };
                let handle = std::thread::Builder::new()
                    .name(format!("bus-{}-{partition}", topic_short(topic)))
                    .spawn(move || writer.run())
                    .map_err(|e| BusError::Unavailable(format!("cannot start a writer thread: {e}")))?;
                writers.push(handle);
                partitions.push(log);
            }
            logs.push(partitions);
        }
        Ok(Self { dir: config.dir.clone(), partitions: config.partitions, logs, writers: Mutex::new(writers) })
    }

    fn log(&self, topic: Topic, partition: u32) -> Result<&Arc<PartitionLog>, BusError> {
        self.logs[topic_index(topic)].get(partition as usize).ok_or(BusError::NoSuchPartition { topic, partition })
    }

    /// Writes out and syncs everything queued, wakes every reader with
    /// [`BusError::Closed`] once it has read everything, and stops the writers.
    /// Idempotent; also run on drop.
    pub fn close(&self) {
        for log in self.logs.iter().flatten() {
            // A blocking send: a full queue drains, so this cannot wait for ever.
            let _ = log.tx.send(Request::Close);
        }
        for handle in self.writers.lock().drain(..) {
            if handle.join().is_err() {
                tracing::error!("a journal writer thread panicked");
            }
        }
    }

    fn offsets_path(&self, group: &str, topic: Topic, partition: u32) -> Result<PathBuf, BusError> {
        if !valid_group(group) {
            return Err(BusError::InvalidGroup(group.to_string()));
        }
        self.log(topic, partition)?;
        Ok(self.dir.join("_offsets").join(group).join(format!("{}.{partition}", topic.name())))
    }
}

impl Drop for EmbeddedBus {
    fn drop(&mut self) {
        self.close();
    }
}

fn topic_short(topic: Topic) -> &'static str {
    match topic {
        Topic::Orders => "ord",
        Topic::Executions => "exe",
        Topic::MarketData => "md",
        Topic::DeadLetter => "dlq",
        Topic::Snapshots => "snap",
        Topic::Leases => "lease",
        Topic::Keys => "keys",
    }
}

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

impl Backbone for EmbeddedBus {
    fn partitions(&self) -> u32 {
        self.partitions
    }

    fn produce(
        &self,
        topic: Topic,
        partition: u32,
        payloads: &mut Vec<Vec<u8>>,
        ack: Option<Ack>,
    ) -> Result<(), BusError> {
        let log = self.log(topic, partition)?;
        if !log.healthy.load(Ordering::Acquire) {
            return Err(BusError::Unavailable(format!("{topic} partition {partition} failed")));
        }
        if let Some(big) = payloads.iter().find(|p| p.len() > log.max_record_bytes as usize) {
            return Err(BusError::Unavailable(format!(
                "record of {} bytes exceeds the limit of {}",
                big.len(),
                log.max_record_bytes
            )));
        }
        if log.tx.is_full() {
            return Err(BusError::Full { topic, partition });
        }
        let records = payloads.drain(..).map(Arc::from).collect();
        let give_back = |request: Request, payloads: &mut Vec<Vec<u8>>| {
            if let Request::Append(records, _) = request {
                payloads.extend(records.iter().map(|r| r.to_vec()));
            }
        };
        match log.tx.try_send(Request::Append(records, ack)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(request)) => {
                give_back(request, payloads);
                Err(BusError::Full { topic, partition })
            }
            Err(TrySendError::Disconnected(request)) => {
                give_back(request, payloads);
                Err(BusError::Unavailable("backbone closed".into()))
            }
        }
    }

    fn flush(&self, topic: Topic, partition: u32, timeout: Duration) -> Result<(), BusError> {
        let log = self.log(topic, partition)?;
        let (tx, rx) = channel::bounded(1);
        log.tx.send_timeout(Request::Flush(tx), timeout).map_err(|_| unavailable("flush could not be queued"))?;
        rx.recv_timeout(timeout).map_err(|_| unavailable("flush timed out"))?
    }

    fn reader(&self, topic: Topic, partition: u32, offset: u64) -> Result<Box<dyn PartitionReader>, BusError> {
        let log = self.log(topic, partition)?;
        let end = log.tail.lock().end;
        if offset > end {
            return Err(BusError::OffsetOutOfRange { topic, partition, offset });
        }
        Ok(Box::new(EmbeddedReader { log: Arc::clone(log), next: offset, disk: None }))
    }

    fn end_offset(&self, topic: Topic, partition: u32) -> Result<u64, BusError> {
        Ok(self.log(topic, partition)?.tail.lock().end)
    }

    fn commit(&self, group: &str, topic: Topic, partition: u32, next_offset: u64) -> Result<(), BusError> {
        let path = self.offsets_path(group, topic, partition)?;
        let dir = path.parent().expect("offset files live in a group directory");
        fs::create_dir_all(dir).map_err(unavailable)?;
        // Next to the offset file, named after all of it: `with_extension` would replace the
        // partition number and let two partitions' commits share (and race on) one file.
        let mut tmp = path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut file = fs::File::create(&tmp).map_err(unavailable)?;
        file.write_all(next_offset.to_string().as_bytes()).map_err(unavailable)?;
        file.sync_data().map_err(unavailable)?;
        fs::rename(&tmp, &path).map_err(unavailable)?;
        fs::File::open(dir).and_then(|d| d.sync_all()).map_err(unavailable)
    }

    fn committed(&self, group: &str, topic: Topic, partition: u32) -> Result<Option<u64>, BusError> {
        let path = self.offsets_path(group, topic, partition)?;
        match fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| unavailable(format!("corrupt committed offset in {}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    fn is_healthy(&self) -> bool {
        self.logs.iter().flatten().all(|log| log.healthy.load(Ordering::Acquire))
    }

    fn close(&self) {
        EmbeddedBus::close(self);
    }
}

/// The writer thread of one partition.
struct Writer {
    journal: Journal,
    rx: Receiver<Request>,
    log: Arc<PartitionLog>,
    policy: FsyncPolicy,
    tail_records: usize,
    linger: Duration,
}

/// Requests drained from the queue for one write.
#[derive(Default)]
struct Intake {
    batch: Vec<Arc<[u8]>>,
    /// Which records of `batch` each acknowledgement covers.
    acks: Vec<(Range<usize>, Ack)>,
}

impl Intake {
    /// Takes one request; `true` when it asks the writer to close.
    fn take(&mut self, request: Request, flushes: &mut Vec<Sender<Result<(), BusError>>>) -> bool {
        match request {
            Request::Append(records, ack) => {
                let start = self.batch.len();
                self.batch.extend(records);
                if let Some(ack) = ack {
                    self.acks.push((start..self.batch.len(), ack));
                }
                false
            }
            Request::Flush(done) => {
                flushes.push(done);
                false
            }
            Request::Close => true,
        }
    }
}

/// Appended records not yet visible (waiting for a sync), with their acknowledgements.
#[derive(Default)]
struct Unpublished {
    records: Vec<Arc<[u8]>>,
    acks: Vec<(Range<u64>, Ack)>,
}

impl Writer {
    fn run(mut self) {
        let mut pending = Unpublished::default();
        let mut flushes: Vec<Sender<Result<(), BusError>>> = Vec::new();
        let mut last_sync = Instant::now();
        let mut closing = false;
        while !closing {
            let wait = match self.policy {
                FsyncPolicy::Interval(every) if !pending.records.is_empty() => {
                    every.saturating_sub(last_sync.elapsed())
                }
                _ => Duration::from_secs(1),
            };
            let mut intake = Intake::default();
            match self.rx.recv_timeout(wait) {
                Ok(request) => closing = intake.take(request, &mut flushes),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => closing = true,
            }
            while !closing && intake.batch.len() < MAX_WRITE_BATCH {
                match self.rx.try_recv() {
                    Ok(request) => closing = intake.take(request, &mut flushes),
                    Err(_) => break,
                }
            }
            if !self.linger.is_zero() && !closing && flushes.is_empty() && !intake.batch.is_empty() {
                // One plain sleep, then whatever came meanwhile: a channel wait with a
                // timeout would spin and yield on every record. Someone waiting for a
                // flush or a close does not wait for the linger.
                std::thread::sleep(self.linger);
                while !closing && intake.batch.len() < MAX_WRITE_BATCH {
                    match self.rx.try_recv() {
                        Ok(request) => closing = intake.take(request, &mut flushes),
                        Err(_) => break,
                    }
                }
            }
            let Intake { batch, acks } = intake;
            if let Err(e) = self.write(batch, acks, &mut pending) {
                self.fail(&e, &mut pending, &mut flushes);
                return;
            }
            let sync_due = match self.policy {
                FsyncPolicy::Interval(every) => last_sync.elapsed() >= every,
                FsyncPolicy::EveryBatch | FsyncPolicy::Never => false,
            };
            if !flushes.is_empty() || closing || sync_due {
                if let Err(e) = self.journal.sync() {
                    self.fail(&e, &mut pending, &mut flushes);
                    return;
                }
                last_sync = Instant::now();
            }
            self.publish(&mut pending, closing);
            for done in flushes.drain(..) {
                let _ = done.send(Ok(()));
            }
        }
    }

    /// Appends a batch; its records wait in `pending` until visible.
    fn write(
        &mut self,
        batch: Vec<Arc<[u8]>>,
        acks: Vec<(Range<usize>, Ack)>,
        pending: &mut Unpublished,
    ) -> Result<(), crate::JournalError> {
        if batch.is_empty() {
            return Ok(());
        }
        let range = self.journal.append(&batch)?;
        for (slice, ack) in acks {
            pending.acks.push((range.start + slice.start as u64..range.start + slice.end as u64, ack));
        }
        pending.records.extend(batch);
        Ok(())
    }

    /// Makes visible what is durable under the policy and runs the acknowledgements.
    fn publish(&mut self, pending: &mut Unpublished, closing: bool) {
        let visible_end = match self.policy {
            FsyncPolicy::Never => self.journal.next_offset(),
            FsyncPolicy::EveryBatch | FsyncPolicy::Interval(_) => self.journal.durable_offset(),
        };
        {
            let mut tail = self.log.tail.lock();
            let newly = (visible_end - tail.end) as usize;
            tail.recent.extend(pending.records.drain(..newly));
            tail.end = visible_end;
            while tail.recent.len() > self.tail_records {
                tail.recent.pop_front();
                tail.base += 1;
            }
            tail.closed = closing;
        }
        self.log.grew.notify_all();
        let done = pending.acks.iter().take_while(|(range, _)| range.end <= visible_end).count();
        for (range, ack) in pending.acks.drain(..done) {
            ack(Ok(range));
        }
    }

    /// The journal failed: nothing more is accepted, everything waiting gets the error.
    fn fail(
        &mut self,
        error: &crate::JournalError,
        pending: &mut Unpublished,
        flushes: &mut Vec<Sender<Result<(), BusError>>>,
    ) {
        let (topic, partition) = (self.log.topic, self.log.partition);
        tracing::error!(%topic, partition, %error, "journal write failed; the partition stops taking writes");
        self.log.healthy.store(false, Ordering::Release);
        let err = BusError::Unavailable(format!("{topic} partition {partition}: {error}"));
        for (_, ack) in pending.acks.drain(..) {
            ack(Err(err.clone()));
        }
        for done in flushes.drain(..) {
            let _ = done.send(Err(err.clone()));
        }
        // Fail whatever is still queued or arrives until the bus is closed.
        while let Ok(request) = self.rx.recv() {
            match request {
                Request::Append(_, Some(ack)) => ack(Err(err.clone())),
                Request::Append(_, None) => {}
                Request::Flush(done) => {
                    let _ = done.send(Err(err.clone()));
                }
                Request::Close => break,
            }
        }
        self.log.tail.lock().closed = true;
        self.log.grew.notify_all();
    }
}

/// Reads one partition of the embedded backbone.
struct EmbeddedReader {
    log: Arc<PartitionLog>,
    next: u64,
    /// Open while catching up on records older than the in-memory tail.
    disk: Option<JournalReader>,
}

impl PartitionReader for EmbeddedReader {
    fn poll(&mut self, out: &mut Vec<Record>, max: usize, timeout: Duration) -> Result<usize, BusError> {
        let deadline = Instant::now() + timeout;
        let mut tail = self.log.tail.lock();
        while tail.end <= self.next {
            if tail.closed {
                return Err(BusError::Closed);
            }
            if self.log.grew.wait_until(&mut tail, deadline).timed_out() {
                return Ok(0);
            }
        }
        if self.next >= tail.base {
            let start = (self.next - tail.base) as usize;
            let n = max.min((tail.end - self.next) as usize);
            out.extend(
                tail.recent
                    .range(start..start + n)
                    .enumerate()
                    .map(|(i, payload)| Record { offset: self.next + i as u64, payload: Arc::clone(payload) }),
            );
            self.next += n as u64;
            return Ok(n);
        }
        let disk_end = tail.base;
        drop(tail);
        self.read_disk(out, max, disk_end)
    }

    fn position(&self) -> u64 {
        self.next
    }
}

impl EmbeddedReader {
    fn read_disk(&mut self, out: &mut Vec<Record>, max: usize, disk_end: u64) -> Result<usize, BusError> {
        let reader = match &mut self.disk {
            Some(reader) => reader,
            None => self.disk.insert(open_disk(&self.log.dir, self.next, disk_end, self.log.max_record_bytes)?),
        };
        let mut n = 0;
        while n < max {
            match reader.next() {
                Some(Ok((offset, payload))) => {
                    out.push(Record { offset, payload: payload.into() });
                    self.next = offset + 1;
                    n += 1;
                }
                Some(Err(e)) => {
                    self.disk = None;
                    return Err(unavailable(e));
                }
                None => {
                    self.disk = None;
                    break;
                }
            }
        }
        Ok(n)
    }
}

fn open_disk(dir: &Path, offset: u64, end: u64, max_record_bytes: u32) -> Result<JournalReader, BusError> {
    read_dir_range(dir, offset, end, max_record_bytes).map_err(unavailable)
}
