//! Tachyon's runtime: everything that drives a pure state machine (today the matching
//! core of `tachyon-engine`) over a partitioned log, and everything that follows its
//! outputs.
//!
//! # Layout
//! - [`shard`]: one engine shard on any backbone: poll a batch of commands, apply it to
//!   the core, publish the outputs with one sequence over both output topics, recover
//!   exactly once from a snapshot and the tails of the outputs.
//! - [`snapshots`]: a shard's snapshots in files or on the backbone.
//! - [`lease`]: one engine per shard across processes (distributed mode).
//! - [`consumer`]: the consumer framework: batched reads, writes to a sink, offsets
//!   committed only after the write, retries, circuit breaker, dead letters.
//!
//! # Invariants
//! Nothing is answered or published before it is durable; an output is published at most
//! once per sequence and never lost (a restart re-derives it from the input); a record
//! that cannot be decoded goes to the dead-letter topic and never blocks a partition.

pub mod consumer;
pub mod lease;
pub mod shard;
pub mod snapshots;

pub use lease::{acquire as acquire_lease, Lease, LeaseConfig};
pub use shard::{run_shard, ShardConfig, ShardError, ShardStatus};
pub use snapshots::{ShardSnapshot, SnapshotStore};
