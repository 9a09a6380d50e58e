//! Downstream consumers (not yet implemented).
//!
//! Planned: one consumer framework (batching, offsets stored after successful writes,
//! retries with backoff, dead-letter topic) with PostgreSQL and DynamoDB sinks, and the
//! market-data fan-out. Empty until the persistence and exchange issues fill it.
