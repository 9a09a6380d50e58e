//! The event backbone: an ordered, partitioned, durable log behind one trait.
//!
//! # Layout
//! - [`backbone`]: the [`Backbone`] trait (produce with a durable acknowledgement, read
//!   from an offset, commit consumer offsets) that the embedded and Kafka implementations
//!   share, and its error type.
//! - [`embedded`]: the default backbone: bounded in-process queues per partition, a
//!   writer thread per partition doing group commit into a [`Journal`], and an in-memory
//!   tail for readers.
//! - [`journal`]: the durable storage under the embedded backbone: an append-only,
//!   checksummed, segmented log with a configurable fsync policy and recovery that cuts
//!   off a torn tail instead of replaying it.
//! - [`kafka`]: the same trait over a Kafka broker (rdkafka): idempotent producers with
//!   acks=all, assign-only readers, group commits; for the distributed roles.

pub mod backbone;
pub mod embedded;
pub mod journal;
pub mod kafka;

pub use backbone::{dead_letter_json, last_record, produce_blocking, Ack, Backbone, BusError, PartitionReader, Record};
pub use embedded::{EmbeddedBus, EmbeddedConfig};
pub use journal::{FsyncPolicy, Journal, JournalConfig, JournalError, JournalReader, Recovery, SyncTarget};
pub use kafka::{KafkaBus, KafkaConfig};
