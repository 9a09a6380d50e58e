//! The one read → decode → apply loop over a partition of the backbone, shared by
//! everything that follows a log: the backbone shard (its input), the gateway's feeds
//! (executions and market data), the consumer framework's readers.
//!
//! Each poll takes up to `batch_max` records (waiting up to `poll` for the first),
//! decodes each, and hands the whole batch, decoded or not, to the caller's `apply`,
//! also when the poll timed out empty (so the caller can do its periodic work). `apply`
//! says whether to go on. The loop ends when the backbone is closed and everything was
//! read.

use std::sync::Arc;
use std::time::Duration;

use tachyon_bus::{BusError, PartitionReader, Record};
use tachyon_proto::wire::WireError;

/// How a loop polls.
#[derive(Clone, Copy, Debug)]
pub struct FollowConfig {
    /// Most records per poll.
    pub batch_max: usize,
    /// How long a poll waits for the first record.
    pub poll: Duration,
    /// What a read error does: end the loop with it (`None`), or, for a follower that
    /// must outlive a broker outage, get logged and retried after this pause (`apply`
    /// still runs, with no items, so the caller can decide to stop).
    pub retry_read_errors: Option<Duration>,
}

impl FollowConfig {
    pub fn new(batch_max: usize, poll: Duration) -> Self {
        Self { batch_max, poll, retry_read_errors: None }
    }

    #[must_use]
    pub fn retrying(mut self, pause: Duration) -> Self {
        self.retry_read_errors = Some(pause);
        self
    }
}

/// One record of a poll, decoded or not.
#[derive(Debug)]
pub struct Item<T> {
    pub offset: u64,
    pub payload: Arc<[u8]>,
    pub decoded: Result<T, WireError>,
}

impl<T> Item<T> {
    /// The raw record (for a dead letter).
    pub fn record(&self) -> Record {
        Record { offset: self.offset, payload: Arc::clone(&self.payload) }
    }
}

/// What one poll brought; `apply` may take the items.
#[derive(Debug)]
pub struct Polled<'a, T> {
    pub items: &'a mut Vec<Item<T>>,
    /// The offset after the batch (where the next poll starts).
    pub next: u64,
}

/// Whether the loop goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Continue,
    Stop,
}

/// Follows `reader` (see the module docs) and returns the position it stopped at.
///
/// # Errors
/// `apply`'s errors, and read errors other than [`BusError::Closed`] unless the config
/// retries them.
pub fn follow<T, E: From<BusError>>(
    reader: &mut dyn PartitionReader,
    config: FollowConfig,
    decode: impl Fn(&[u8]) -> Result<T, WireError>,
    mut apply: impl FnMut(Polled<'_, T>) -> Result<Control, E>,
) -> Result<u64, E> {
    let mut records = Vec::with_capacity(config.batch_max);
    let mut items = Vec::with_capacity(config.batch_max);
    loop {
        records.clear();
        items.clear();
        match reader.poll(&mut records, config.batch_max, config.poll) {
            Ok(_) => {}
            Err(BusError::Closed) => return Ok(reader.position()),
            Err(error) => match config.retry_read_errors {
                None => return Err(error.into()),
                Some(pause) => {
                    tracing::warn!(%error, position = reader.position(), "cannot read; retrying");
                    std::thread::sleep(pause);
                }
            },
        }
        items.extend(records.drain(..).map(|r| Item {
            decoded: decode(&r.payload),
            offset: r.offset,
            payload: r.payload,
        }));
        if apply(Polled { items: &mut items, next: reader.position() })? == Control::Stop {
            return Ok(reader.position());
        }
    }
}
