//! `tachyon-loadtest`: an open-loop load generator for Tachyon with honest latency.
//!
//! - [`schedule`]: constant, ramp and step arrival schedules; latency counts from each
//!   request's *intended* send time (coordinated-omission correction, as wrk2 does).
//! - [`flow`]: the order flow: accounts, Zipf symbol popularity, a random-walk mid,
//!   a mix of passive, aggressive, cancel and amend requests, reproducible from a seed.
//! - [`run`]: the generator over REST, batch REST or WebSocket order entry, with a lean
//!   HTTP/1.1 client ([`http`]) and end-to-end latency from the market-data stream.
//! - [`report`], [`plot`]: `summary.json`, `.hgrm`, `.hlog`, SVG/HTML reports.
//! - [`sweep`], [`plan`], [`subscribers`], [`baseline`]: the knee under an SLO, the
//!   capacity table, market-data fan-out delay, and a bare axum handler to compare with.

pub mod baseline;
pub mod cpu;
pub mod flow;
pub mod http;
pub mod keys;
pub mod pacer;
pub mod plan;
pub mod plot;
pub mod report;
pub mod run;
pub mod schedule;
pub mod stats;
pub mod subscribers;
pub mod sweep;
