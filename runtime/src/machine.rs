//! What a runtime drives: a deterministic state machine over one partition of a log, and
//! the output records it writes per input.
//!
//! The runtime owns everything around the machine: where inputs come from (the embedded
//! pipeline's ring and journal, or a backbone partition), numbering the outputs with one
//! sequence per partition over all output topics, publishing only what was not published
//! before a restart, snapshots and recovery. The machine only applies batches of inputs,
//! writes its outputs into [`Outputs`], and turns its state into bytes and back. The
//! matching core is one such machine ([`crate::matching::Matching`]); the risk stage is
//! meant to be another, driven by the same code.

use tachyon_proto::wire::WireError;
use tachyon_proto::{Timestamp, Topic};

/// A deterministic state machine over a partitioned log (see the module docs).
pub trait Machine: Send + 'static {
    /// One input, decoded.
    type Input: Send + 'static;
    /// One output record.
    type Output: OutputRecord;

    /// The topics outputs go to (recovery reads the last record of each).
    const OUTPUT_TOPICS: &'static [Topic];

    /// Appends `input`'s log payload to `out`.
    ///
    /// # Errors
    /// When the input cannot be encoded.
    fn encode_input(input: &Self::Input, out: &mut Vec<u8>) -> Result<(), WireError>;

    /// Decodes and validates a log payload.
    ///
    /// # Errors
    /// A payload that is not a valid input (it goes to the dead-letter topic).
    fn decode_input(payload: &[u8]) -> Result<Self::Input, WireError>;

    /// When the input was stamped at the edge (for the latency histograms).
    fn timestamp(input: &Self::Input) -> Timestamp;

    /// Applies `inputs` in order (input `i` is at offset `first_offset + i` of the input
    /// log). For each input it pushes that input's output records into `out` and then
    /// calls [`Outputs::end_input`], also when there are none.
    fn apply(&mut self, inputs: &[Self::Input], first_offset: u64, out: &mut Outputs<Self::Output>);

    /// The whole state, for a snapshot.
    ///
    /// # Errors
    /// When the state cannot be serialised.
    fn snapshot(&self) -> Result<Vec<u8>, String>;

    /// Replaces the state with a snapshot's.
    ///
    /// # Errors
    /// A snapshot that does not fit this machine's configuration.
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String>;

    /// Entries the state holds (open orders), for logs.
    fn size(&self) -> usize;
}

/// An output record: reused between batches, numbered by the runtime.
pub trait OutputRecord: Default + Send + Sync + 'static {
    /// Empties the record for reuse (keeping its allocations).
    fn reset(&mut self);

    /// The partition's output sequence of this record.
    fn seq(&self) -> u64;

    fn set_seq(&mut self, seq: u64);

    /// Appends the record's log payload to `out`.
    ///
    /// # Errors
    /// When the record cannot be encoded.
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError>;

    /// The sequence of an encoded record (recovery reads it from the tail of each topic).
    ///
    /// # Errors
    /// A payload that is not a valid record.
    fn decode_seq(payload: &[u8]) -> Result<u64, WireError>;
}

/// The output records of one batch, per input, in order. Slots are reused from batch to
/// batch, so a warm runtime allocates nothing here.
#[derive(Debug)]
pub struct Outputs<O> {
    records: Vec<(Topic, O)>,
    len: usize,
    /// Per input: the end of its records in `records`.
    ends: Vec<usize>,
}

impl<O> Default for Outputs<O> {
    fn default() -> Self {
        Self { records: Vec::new(), len: 0, ends: Vec::new() }
    }
}

impl<O: OutputRecord> Outputs<O> {
    /// The next record of the current input, on `topic`, empty.
    pub fn push(&mut self, topic: Topic) -> &mut O {
        if self.len == self.records.len() {
            self.records.push((topic, O::default()));
        }
        let slot = &mut self.records[self.len];
        self.len += 1;
        slot.0 = topic;
        slot.1.reset();
        &mut slot.1
    }

    /// Closes the current input's records.
    pub fn end_input(&mut self) {
        self.ends.push(self.len);
    }

    pub fn clear(&mut self) {
        self.len = 0;
        self.ends.clear();
    }

    /// Every record of the batch, in sequence order.
    pub fn records(&self) -> &[(Topic, O)] {
        &self.records[..self.len]
    }

    pub(crate) fn records_mut(&mut self) -> &mut [(Topic, O)] {
        &mut self.records[..self.len]
    }

    /// Inputs the batch closed.
    pub fn inputs(&self) -> usize {
        self.ends.len()
    }

    /// The records of input `i`.
    pub fn of_input(&self, i: usize) -> &[(Topic, O)] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.records[start..self.ends[i]]
    }
}
