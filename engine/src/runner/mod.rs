//! The IO shell around the pure core: the shard runner and its snapshots.
//!
//! Nothing in the core modules of this crate uses what is here; the runner owns the
//! threads, the backbone and the files, and drives [`crate::Engine`] through its public
//! API only.

pub mod lease;
pub mod shard;
pub mod snapshots;

pub use lease::{acquire as acquire_lease, Lease, LeaseConfig};
pub use shard::{run_shard, ShardConfig, ShardError, ShardStatus};
pub use snapshots::{ShardSnapshot, SnapshotStore};
