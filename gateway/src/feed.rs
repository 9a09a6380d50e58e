//! The gateway's feeds: threads that read the engine's outputs from the backbone and
//! apply them to the order store (replies included) and the market data.
//!
//! The feeds read every partition from the start, rebuilding the state after a restart; a
//! record read twice is ignored (deduplicated by partition and sequence). A gateway reads
//! `tachyon.executions` (its replies, the order store, the `orders` channel) and, when it
//! serves market data, `tachyon.marketdata`; a market-data server reads only the latter.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tachyon_bus::{Backbone, BusError};
use tachyon_proto::wire::decode_output;
use tachyon_proto::Topic;

use crate::service::Gateway;

/// Position of one feed, for readiness.
#[derive(Debug)]
pub struct FeedPosition {
    pub topic: Topic,
    pub partition: u32,
    pub next: AtomicU64,
}

/// The feeds' positions and threads.
pub type Feeds = (Vec<Arc<FeedPosition>>, Vec<JoinHandle<()>>);

/// Starts one feed thread per partition of each of `topics` (`tachyon.executions`,
/// `tachyon.marketdata`).
///
/// # Errors
/// The backbone's, when a reader cannot be created.
pub fn spawn_feeds(
    gateway: &Arc<Gateway>,
    bus: &Arc<dyn Backbone>,
    topics: &[Topic],
    stop: &Arc<AtomicBool>,
) -> Result<Feeds, BusError> {
    let mut positions = Vec::new();
    let mut threads = Vec::new();
    for &topic in topics {
        for partition in 0..bus.partitions() {
            let mut reader = bus.reader(topic, partition, 0)?;
            let position = Arc::new(FeedPosition { topic, partition, next: AtomicU64::new(0) });
            let (gateway, stop, pos) = (Arc::clone(gateway), Arc::clone(stop), Arc::clone(&position));
            let name = format!("feed-{}-{partition}", if topic == Topic::Executions { "exe" } else { "md" });
            let handle = std::thread::Builder::new()
                .name(name)
                .spawn(move || {
                    let mut records = Vec::with_capacity(1024);
                    while !stop.load(Ordering::Acquire) {
                        records.clear();
                        match reader.poll(&mut records, 1024, Duration::from_millis(100)) {
                            Ok(_) => {}
                            Err(BusError::Closed) => break,
                            Err(e) => {
                                tracing::error!(%topic, partition, error = %e, "feed cannot read; retrying");
                                std::thread::sleep(Duration::from_millis(500));
                                continue;
                            }
                        }
                        for record in &records {
                            match decode_output(&record.payload) {
                                Ok(output) if topic == Topic::Executions => gateway.on_execution(output),
                                Ok(output) => gateway.on_market_data(&output),
                                Err(e) => {
                                    tracing::error!(%topic, partition, offset = record.offset, error = %e, "skipping an unreadable output record");
                                }
                            }
                        }
                        pos.next.store(reader.position(), Ordering::Release);
                    }
                })
                .map_err(|e| BusError::Unavailable(format!("cannot start a feed thread: {e}")))?;
            positions.push(position);
            threads.push(handle);
        }
    }
    Ok((positions, threads))
}
