//! Tachyon's runtime: everything that drives a pure state machine (today the matching
//! core of `tachyon-engine`) over a partitioned log, and everything that follows its
//! outputs.
//!
//! # Layout
//! - [`shard`]: one shard on any backbone (Kafka): poll a batch of inputs, apply it,
//!   publish the outputs with one produce per topic.
//! - [`pipeline`]: the embedded order path: a bounded ring per partition, one thread
//!   that journals a batch with one write, applies it while a group syncer makes it
//!   durable, and hands it to in-process listeners and the output log.
//! - [`machine`]: the [`Machine`] trait both drivers run ([`matching`]: the engine's
//!   implementation; [`funded`]: the risk core in front of it, balances on), [`stage`]:
//!   what they share (sequencing, exactly-once recovery, snapshots).
//! - [`follow`]: the one read → decode → apply loop over a log partition, used by the
//!   shard, the [`feed`]s and the [`consumer`] readers.
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
pub mod feed;
pub mod follow;
pub mod funded;
pub mod lease;
pub mod machine;
pub mod matching;
pub mod pipeline;
pub mod shard;
pub mod snapshots;
pub mod stage;

pub use funded::{Funded, FundedInput};
pub use lease::{acquire as acquire_lease, Lease, LeaseConfig};
pub use machine::{Machine, OutputRecord, Outputs};
pub use matching::Matching;
pub use shard::{run_shard, ShardConfig};
pub use snapshots::{ShardSnapshot, SnapshotStore};
pub use stage::{ShardError, ShardStatus, SnapshotPolicy};
