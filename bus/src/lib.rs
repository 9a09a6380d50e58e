//! The event backbone.
//!
//! Today: [`journal`], the durable storage under the embedded backbone — an append-only,
//! checksummed, segmented log per partition with group commit, a configurable fsync
//! policy and recovery that cuts off a torn tail instead of replaying it.
//!
//! Next (the embedded-exchange and Kafka issues): the backbone trait (ordered,
//! partitioned, durable log: produce with acknowledgement, consume from an offset,
//! commit), its embedded implementation (bounded in-process queues per partition over
//! this journal) and its Kafka implementation (rdkafka).

pub mod journal;

pub use journal::{FsyncPolicy, Journal, JournalConfig, JournalError, JournalReader, Recovery};
