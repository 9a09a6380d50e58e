//! The event backbone behind one trait (not yet implemented).
//!
//! Planned: an ordered, partitioned, durable log with produce-with-acknowledgement,
//! consume-from-offset and commit; an embedded implementation (bounded in-process queues
//! plus a checksummed append-only journal) and a Kafka implementation (rdkafka). This crate
//! is empty until the embedded-exchange issue fills it: nothing here pretends to work.
