//! Feeds: threads that follow the engine's output topics and hand every record, in order
//! per partition, to an applier (the gateway's order store and market data, a
//! market-data server's books).
//!
//! A feed reads its partition from the start, rebuilding its applier's state after a
//! restart; appliers deduplicate by (partition, sequence). It either follows the topic
//! for as long as the process runs (the backbone path), or reads up to the end the topic
//! had when it started and stops (the embedded path's start-up: after it, the pipelines
//! hand their outputs over directly). Read errors are logged and retried; a record that
//! cannot be decoded is logged and skipped (its writer, the engine, never writes one).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tachyon_bus::{Backbone, BusError};
use tachyon_proto::wire::{decode_output, ShardOutput};
use tachyon_proto::Topic;

use crate::follow::{follow, Control, FollowConfig};

/// Position of one feed, for readiness.
#[derive(Debug)]
pub struct FeedPosition {
    pub topic: Topic,
    pub partition: u32,
    pub next: AtomicU64,
    /// Set once a feed that reads up to an end has reached it.
    pub done: AtomicBool,
}

/// The feeds' positions and threads.
pub type Feeds = (Vec<Arc<FeedPosition>>, Vec<JoinHandle<()>>);

/// What a feed does with each record.
pub type Apply = Arc<dyn Fn(Topic, &ShardOutput) + Send + Sync>;

/// How long a feed follows its topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Until {
    /// Until `stop` is set.
    Stopped,
    /// Until it has read what the topic held when the feed started (or `stop`).
    End,
}

/// Starts one feed thread per partition of each of `topics`.
///
/// # Errors
/// The backbone's, when a reader cannot be created or the end of a topic is unknown.
pub fn spawn_feeds(
    bus: &Arc<dyn Backbone>,
    topics: &[Topic],
    until: Until,
    stop: &Arc<AtomicBool>,
    apply: &Apply,
) -> Result<Feeds, BusError> {
    let mut positions = Vec::new();
    let mut threads = Vec::new();
    for &topic in topics {
        for partition in 0..bus.partitions() {
            let mut reader = bus.reader(topic, partition, 0)?;
            let end = match until {
                Until::End => Some(bus.end_offset(topic, partition)?),
                Until::Stopped => None,
            };
            let position = Arc::new(FeedPosition {
                topic,
                partition,
                next: AtomicU64::new(0),
                done: AtomicBool::new(end == Some(0)),
            });
            let (stop, pos, apply) = (Arc::clone(stop), Arc::clone(&position), Arc::clone(apply));
            let name = format!("feed-{}-{partition}", if topic == Topic::Executions { "exe" } else { "md" });
            let handle = std::thread::Builder::new()
                .name(name)
                .spawn(move || {
                    if pos.done.load(Ordering::Acquire) {
                        return;
                    }
                    let config = FollowConfig::new(1024, Duration::from_millis(100)).retrying(Duration::from_millis(500));
                    let _ = follow::<_, BusError>(reader.as_mut(), config, decode_output, |polled| {
                        for item in polled.items.iter() {
                            match &item.decoded {
                                Ok(output) => apply(topic, output),
                                Err(error) => {
                                    tracing::error!(%topic, partition, offset = item.offset, %error, "skipping an unreadable output record");
                                }
                            }
                        }
                        pos.next.store(polled.next, Ordering::Release);
                        if end.is_some_and(|end| polled.next >= end) {
                            pos.done.store(true, Ordering::Release);
                            return Ok(Control::Stop);
                        }
                        Ok(if stop.load(Ordering::Acquire) { Control::Stop } else { Control::Continue })
                    });
                })
                .map_err(|e| BusError::Unavailable(format!("cannot start a feed thread: {e}")))?;
            positions.push(position);
            threads.push(handle);
        }
    }
    Ok((positions, threads))
}
