//! The `tachyon` binary's library: configuration and the process that runs the exchange,
//! kept here so integration tests can run an exchange in-process on `127.0.0.1:0`.

pub mod config;
pub mod exchange;
