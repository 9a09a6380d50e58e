//! The load generator and latency/capacity reports (not yet implemented).
//!
//! Planned: an open-loop, coordinated-omission-corrected load generator for REST, batch
//! and WebSocket order entry, with HdrHistogram logs, plots and capacity planning. Empty
//! until the load-tester issue fills it. The matching core's own benchmarks live in
//! `benches/`.
