//! The backbone trait: an ordered, partitioned, durable log.
//!
//! It is shaped after what both implementations can honour:
//! - **produce** appends records to one partition of a topic and calls an acknowledgement
//!   once they are durable (the embedded journal synced per its policy; Kafka: acks=all).
//!   It never blocks: a full queue is [`BusError::Full`] (backpressure the caller turns
//!   into a 503 or a retry), a broken backbone [`BusError::Unavailable`].
//! - **read** from any offset of one partition, in batches, waiting up to a timeout for
//!   new records (embedded: the in-memory tail or the journal files; Kafka: an assigned
//!   consumer).
//! - **commit** a consumer group's next offset per partition, and read it back.
//!
//! Offsets are per partition, consecutive from 0, and a record's offset never changes.

use std::sync::Arc;
use std::time::Duration;

use tachyon_proto::Topic;
use thiserror::Error;

/// One record read from a partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub offset: u64,
    pub payload: Arc<[u8]>,
}

/// Called once with the offsets given to a produced batch (first..end), or the error that
/// kept it from becoming durable.
pub type Ack = Box<dyn FnOnce(Result<std::ops::Range<u64>, BusError>) + Send>;

/// What can go wrong talking to the backbone.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum BusError {
    /// The partition's queue is full: retry shortly.
    #[error("backbone queue full for {topic} partition {partition}")]
    Full { topic: Topic, partition: u32 },
    /// The backbone cannot take writes (I/O failure, broker unreachable, shutting down).
    #[error("backbone unavailable: {0}")]
    Unavailable(String),
    #[error("no partition {partition} in {topic}")]
    NoSuchPartition { topic: Topic, partition: u32 },
    #[error("offset {offset} is out of range for {topic} partition {partition}")]
    OffsetOutOfRange { topic: Topic, partition: u32, offset: u64 },
    #[error("invalid consumer group name {0:?}")]
    InvalidGroup(String),
    /// The backbone was closed; readers stop.
    #[error("backbone closed")]
    Closed,
}

/// An ordered, partitioned, durable log (see the module docs).
pub trait Backbone: Send + Sync + 'static {
    /// Partitions of every topic.
    fn partitions(&self) -> u32;

    /// Appends `payloads`, in order and contiguously, to one partition; `ack` (if any) is
    /// called once they are durable. On success the payloads are taken (`payloads` is left
    /// empty); on an error they stay, so the caller can retry without copying.
    ///
    /// # Errors
    /// [`BusError::Full`] (nothing was queued), [`BusError::Unavailable`],
    /// [`BusError::NoSuchPartition`]; `ack` is dropped uncalled.
    fn produce(
        &self,
        topic: Topic,
        partition: u32,
        payloads: &mut Vec<Vec<u8>>,
        ack: Option<Ack>,
    ) -> Result<(), BusError>;

    /// [`Backbone::produce`] with a record key (the symbol on `tachyon.orders`): Kafka
    /// stores it with the records; the embedded log has no keys and ignores it.
    ///
    /// # Errors
    /// As [`Backbone::produce`]. Kafka: when its queue fills up part-way through a batch,
    /// the records already queued are removed from `payloads` and `ack` covers only them.
    fn produce_keyed(
        &self,
        topic: Topic,
        partition: u32,
        key: &[u8],
        payloads: &mut Vec<Vec<u8>>,
        ack: Option<Ack>,
    ) -> Result<(), BusError> {
        let _ = key;
        self.produce(topic, partition, payloads, ack)
    }

    /// Waits until everything produced so far to the partition is durable.
    ///
    /// # Errors
    /// [`BusError::Unavailable`] when that cannot happen within `timeout`.
    fn flush(&self, topic: Topic, partition: u32, timeout: Duration) -> Result<(), BusError>;

    /// A reader of one partition starting at `offset`.
    ///
    /// # Errors
    /// [`BusError::NoSuchPartition`], [`BusError::OffsetOutOfRange`].
    fn reader(&self, topic: Topic, partition: u32, offset: u64) -> Result<Box<dyn PartitionReader>, BusError>;

    /// The offset the next record of the partition will get (everything below is readable).
    ///
    /// # Errors
    /// [`BusError::NoSuchPartition`], [`BusError::Unavailable`].
    fn end_offset(&self, topic: Topic, partition: u32) -> Result<u64, BusError>;

    /// Stores `group`'s next offset to read from the partition.
    ///
    /// # Errors
    /// [`BusError::InvalidGroup`], [`BusError::Unavailable`].
    fn commit(&self, group: &str, topic: Topic, partition: u32, next_offset: u64) -> Result<(), BusError>;

    /// `group`'s stored next offset, if it committed one.
    ///
    /// # Errors
    /// [`BusError::InvalidGroup`], [`BusError::Unavailable`].
    fn committed(&self, group: &str, topic: Topic, partition: u32) -> Result<Option<u64>, BusError>;

    /// `true` while the backbone can take writes.
    fn is_healthy(&self) -> bool;

    /// Why a produced record was lost for good, once one was (Kafka's gapless output
    /// producer): the backbone takes no more writes, and what was derived from the input
    /// must be derived again by a restart. The embedded backbone never loses one.
    fn lost_writes(&self) -> Option<String> {
        None
    }

    /// Makes everything produced durable (bounded) and stops taking writes: the last step
    /// of a graceful shutdown. Idempotent.
    fn close(&self);
}

/// Reads one partition in order.
pub trait PartitionReader: Send {
    /// Appends up to `max` records to `out`, waiting up to `timeout` for the first one.
    /// Returns how many were added (0: none arrived in time).
    ///
    /// # Errors
    /// [`BusError::Closed`] once the backbone is closed and everything was read; I/O errors
    /// as [`BusError::Unavailable`].
    fn poll(&mut self, out: &mut Vec<Record>, max: usize, timeout: Duration) -> Result<usize, BusError>;

    /// The offset of the next record this reader returns.
    fn position(&self) -> u64;
}

/// The last record of a partition, if it has one.
///
/// # Errors
/// As [`Backbone::end_offset`] and [`Backbone::reader`].
pub fn last_record(bus: &dyn Backbone, topic: Topic, partition: u32) -> Result<Option<Record>, BusError> {
    let end = bus.end_offset(topic, partition)?;
    if end == 0 {
        return Ok(None);
    }
    let mut reader = bus.reader(topic, partition, end - 1)?;
    let mut out = Vec::with_capacity(1);
    reader.poll(&mut out, 1, Duration::from_secs(5))?;
    Ok(out.pop())
}

/// `true` for names that are safe as file names and Kafka group ids.
pub fn valid_group(group: &str) -> bool {
    !group.is_empty()
        && group.len() <= 100
        && group.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !group.starts_with('.')
}

/// Produces `payloads`, sleeping briefly and retrying while the partition's queue is full:
/// the caller slows down instead of dropping anything. For threads that may block.
///
/// # Errors
/// Any error of [`Backbone::produce`] but [`BusError::Full`].
pub fn produce_blocking(
    bus: &dyn Backbone,
    topic: Topic,
    partition: u32,
    payloads: &mut Vec<Vec<u8>>,
) -> Result<(), BusError> {
    let mut pause = Duration::from_micros(100);
    loop {
        match bus.produce(topic, partition, payloads, None) {
            Ok(()) => return Ok(()),
            Err(BusError::Full { .. }) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}

/// A dead-letter record for `tachyon.dlq` (same partition as its source): JSON with the
/// source topic and position, the error, the consumer that gave up on it (`None`: the
/// engine), and the payload in hex, so nothing is lost and it can be replayed by hand.
pub fn dead_letter_json(
    source: Topic,
    partition: u32,
    record: &Record,
    error: &str,
    consumer: Option<&str>,
) -> Vec<u8> {
    use std::fmt::Write;
    let mut hex = String::with_capacity(record.payload.len() * 2);
    for b in record.payload.iter() {
        let _ = write!(hex, "{b:02x}");
    }
    let mut letter = serde_json::json!({
        "source_topic": source.name(),
        "partition": partition,
        "offset": record.offset,
        "error": error,
        "payload_hex": hex,
    });
    if let Some(consumer) = consumer {
        letter["consumer"] = consumer.into();
    }
    letter.to_string().into_bytes()
}
