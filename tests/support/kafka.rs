//! A Kafka-compatible broker for tests (tansu), started through `infra/local/kafka.sh`:
//! `scripts/test` starts one and exports its address as `TACHYON_TEST_KAFKA`; without it
//! the first test that needs one starts one for this process (stopped by a watchdog when
//! the process exits). Tests use topic prefixes of their own ([`topic_prefix`]). The test
//! crate declares `local_server` (`support/local_server.rs`) beside this module.

#![allow(dead_code, reason = "each test file uses a different part")]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use crate::local_server;

/// The shared broker's `host:port` (see the module docs).
pub fn brokers() -> String {
    static BROKERS: OnceLock<String> = OnceLock::new();
    BROKERS.get_or_init(|| local_server::shared("kafka.sh", "TACHYON_TEST_KAFKA")).clone()
}

/// A topic prefix no other test uses.
pub fn topic_prefix(label: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("t{}.{label}.{}.", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}
