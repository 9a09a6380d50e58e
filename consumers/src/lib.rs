//! Downstream consumers of the engine's outputs: persistence to PostgreSQL (Aurora in
//! production) and DynamoDB.
//!
//! # Layout
//! - the consumer framework they run in lives in `tachyon-runtime` (`consumer`), written
//!   once for every sink: batched reads from the backbone, offsets committed only after
//!   the sink's write succeeded, bounded retries with exponential backoff and jitter, a
//!   circuit breaker that reports a down store, halving a failing batch down to the
//!   records that fail for good and dead-lettering those, backpressure through bounded
//!   queues, and a draining shutdown.
//! - [`rows`]: the pure builder: a batch of outputs plus the stored state of the orders it
//!   touches becomes the rows to write; idempotent by construction (see its docs).
//! - [`postgres`]: the PostgreSQL sink: migrations, monthly trade partitions, one
//!   transaction per batch of multi-row `UNNEST` inserts.
//! - [`dynamodb`]: the DynamoDB sink: versioned conditional puts for orders,
//!   `BatchWriteItem` for trades (write-sharded per symbol), the standard AWS chain.
//!
//! # Invariants
//! A record's offset is committed only once everything it implies is in the store (or, if
//! the store refuses it for good, in the dead-letter topic); writing a record again never
//! changes the store; an older event never overwrites a newer order state.

pub mod dynamodb;
pub mod postgres;
pub mod rows;
pub mod symbols;

pub use dynamodb::{DynamoConfig, DynamoSink};
pub use postgres::{PostgresConfig, PostgresSink};
/// The consumer framework (re-exported: the sinks' tests and tools use it from here).
pub use tachyon_runtime::consumer as framework;
pub use tachyon_runtime::consumer::{
    Consumer, ConsumerConfig, ConsumerProbe, Item, PartitionStatus, RetryPolicy, Sink, SinkError,
};
