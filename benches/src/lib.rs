//! Benchmarks of the matching core.
//!
//! - [`flow`]: deterministic synthetic order flows (`mixed`, `add_cancel`, `sweep`) used by
//!   the criterion benches (`benches/matching.rs`), the latency harness (`bin/latency.rs`)
//!   and the steady-state allocation test.
//! - [`workload`]: the standard workload files of `shared/bench/WORKLOAD.md`, their
//!   translation into engine commands and the replay driver behind `bin/replay.rs`.
//! - [`stats`]: latency histograms and their percentile summaries.
//!
//! Every flow is generated before timing starts, so the timed loop is the engine alone
//! (with its events written into a buffer, as the shard runner will).

pub mod flow;
pub mod stats;
pub mod workload;

use tachyon_engine::{Engine, EngineConfig, EngineSnapshot, Event, EventSink};

/// An event buffer drained every so often, like the shard runner's output batch: every
/// event is written in full and later read, so none of the engine's work can be skipped.
#[derive(Debug)]
pub struct BatchSink {
    events: Vec<Event>,
    /// Lots traded, summed from the trade events of drained batches.
    pub traded: u64,
    /// Events seen in drained batches.
    pub count: u64,
}

impl BatchSink {
    /// Drain after this many events.
    pub const BATCH: usize = 4096;

    pub fn new() -> Self {
        Self { events: Vec::with_capacity(Self::BATCH * 2), traded: 0, count: 0 }
    }

    /// Reads and clears the buffered events.
    pub fn drain(&mut self) {
        for e in &self.events {
            if let Event::Trade(t) = e {
                self.traded += t.qty.0;
            }
        }
        self.count += self.events.len() as u64;
        self.events.clear();
    }

    /// Drains if the buffer is full.
    #[inline]
    pub fn maybe_drain(&mut self) {
        if self.events.len() >= Self::BATCH {
            self.drain();
        }
    }
}

impl Default for BatchSink {
    fn default() -> Self {
        Self::new()
    }
}

impl EventSink for BatchSink {
    #[inline]
    fn emit(&mut self, event: Event) {
        self.events.push(event);
    }
}

/// Commands per `Engine::process_batch` call, as the shard runner consumes them.
pub const BATCH: usize = 256;

/// Runs commands through an engine in batches, draining the sink between batches.
pub fn run_batches(engine: &mut Engine, commands: &[tachyon_proto::Command], sink: &mut BatchSink) {
    for batch in commands.chunks(BATCH) {
        engine.process_batch(batch, sink);
        sink.maybe_drain();
    }
}

/// A prepared run: an engine state to start from and the commands to time.
#[derive(Debug)]
pub struct Prepared {
    pub config: EngineConfig,
    pub start: EngineSnapshot,
    pub commands: Vec<tachyon_proto::Command>,
}

impl Prepared {
    /// A fresh engine in the starting state, with room reserved for the run.
    ///
    /// # Panics
    /// If the starting snapshot does not restore (it was taken from the same config).
    pub fn engine(&self) -> Engine {
        let mut engine = Engine::restore(self.config.clone(), &self.start).expect("snapshot of the same config");
        // Flows hover within ±20% of their starting size (the standard files likewise);
        // the extra room keeps the id index at a low load factor, which measured faster.
        let orders: usize = self.start.books.iter().map(|b| b.orders.len()).sum();
        let levels = self.start.books.iter().map(|b| b.orders.len()).max().unwrap_or(0);
        engine.reserve(orders + orders / 2 + 1024, levels.min(4096) + 256);
        engine
    }
}
