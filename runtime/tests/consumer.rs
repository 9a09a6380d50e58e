//! The consumer framework against a sink that fails on purpose, over the embedded backbone:
//! offsets move only after writes, transient errors are retried and open the circuit,
//! permanently bad records go to the dead-letter topic, shutdown drains, restarts resume.

#[path = "../../consumers/tests/common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{bus, dead_letters, outputs, publish, publish_raw, wait_until};
use parking_lot::Mutex;
use tachyon_bus::Backbone;
use tachyon_proto::{SymbolId, Topic};
use tachyon_runtime::consumer::{Consumer, ConsumerConfig, Item, RetryPolicy, Sink, SinkError};

/// Records what it was given; fails as told.
#[derive(Default)]
struct TestSink {
    /// (partition, seq) of every record written, in write order.
    written: Mutex<Vec<(u32, u64)>>,
    /// Fail this many writes transiently.
    transient: AtomicU32,
    /// While set, every write fails transiently (a store that is down).
    down: AtomicBool,
    /// Sequences the store refuses for good.
    poison: HashSet<u64>,
}

impl Sink for TestSink {
    async fn check(&self) -> Result<(), SinkError> {
        if self.down.load(Ordering::Acquire) {
            return Err(SinkError::Transient("store down".into()));
        }
        Ok(())
    }

    async fn write(&self, partition: u32, items: &[Item]) -> Result<(), SinkError> {
        if self.down.load(Ordering::Acquire) {
            return Err(SinkError::Transient("store down".into()));
        }
        if self.transient.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok() {
            return Err(SinkError::Transient("connection reset".into()));
        }
        if let Some(bad) = items.iter().find(|i| self.poison.contains(&i.output.seq)) {
            return Err(SinkError::Permanent(format!("refused seq {}", bad.output.seq)));
        }
        assert!(items.iter().all(|i| i.output.partition == partition), "one partition per write");
        self.written.lock().extend(items.iter().map(|i| (partition, i.output.seq)));
        Ok(())
    }
}

fn fast(group: &str) -> ConsumerConfig {
    let mut c = ConsumerConfig::new(group, Topic::Executions);
    c.batch_max = 64;
    c.check_every = Duration::from_millis(100);
    c.retry = RetryPolicy {
        attempts: 2,
        base_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        open_for: Duration::from_millis(20),
        max_open: Duration::from_millis(50),
    };
    c
}

fn seqs(sink: &TestSink, partition: u32) -> Vec<u64> {
    sink.written.lock().iter().filter(|(p, _)| *p == partition).map(|(_, s)| *s).collect()
}

fn committed(bus: &dyn Backbone, group: &str, partition: u32) -> u64 {
    bus.committed(group, Topic::Executions, partition).expect("reads").unwrap_or(0)
}

/// Every record committed, as stored on the backbone and as the consumer reports it (its
/// status follows each stored commit a moment later).
fn caught_up(bus: &dyn Backbone, consumer: &Consumer, group: &str) -> bool {
    (0..bus.partitions()).all(|p| committed(bus, group, p) == bus.end_offset(Topic::Executions, p).expect("end"))
        && consumer.probe().lag().iter().all(|&lag| lag == 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_everything_once_in_order_retrying_transient_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bus = bus(dir.path(), 2);
    publish(bus.as_ref(), 0, &outputs(0, SymbolId(1), 1, 500, 1));
    publish(bus.as_ref(), 1, &outputs(1, SymbolId(2), 10_000, 300, 2));
    let sink = Arc::new(TestSink { transient: AtomicU32::new(3), ..TestSink::default() });
    let consumer = Consumer::start(bus.clone(), Arc::clone(&sink), fast("g1")).expect("starts");
    wait_until("everything is committed", || caught_up(bus.as_ref(), &consumer, "g1")).await;

    assert_eq!(seqs(&sink, 0), (1..=500).collect::<Vec<_>>());
    assert_eq!(seqs(&sink, 1), (1..=300).collect::<Vec<_>>());
    let probe = consumer.probe();
    let retries: u64 = probe.partitions().iter().map(|p| p.retries.load(Ordering::Relaxed)).sum();
    assert_eq!(retries, 3);
    assert_eq!(probe.lag(), [0, 0]);
    assert!(probe.ready());
    consumer.shutdown(Instant::now() + Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_store_opens_the_circuit_and_nothing_moves_until_it_is_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bus = bus(dir.path(), 1);
    let stream = outputs(0, SymbolId(1), 1, 400, 3);
    publish(bus.as_ref(), 0, &stream[..100]);
    let sink = Arc::new(TestSink::default());
    let consumer = Consumer::start(bus.clone(), Arc::clone(&sink), fast("g2")).expect("starts");
    let probe = consumer.probe();
    wait_until("the first records are committed", || committed(bus.as_ref(), "g2", 0) == 100).await;

    sink.down.store(true, Ordering::Release);
    publish(bus.as_ref(), 0, &stream[100..]);
    wait_until("the circuit opens", || !probe.ready()).await;
    // While the store is down the offset stays where the last successful write left it.
    assert_eq!(committed(bus.as_ref(), "g2", 0), 100);
    assert_eq!(probe.lag(), [300]);
    assert!(probe.partitions()[0].last_error.lock().as_deref() == Some("store down"));

    sink.down.store(false, Ordering::Release);
    wait_until("everything is committed", || caught_up(bus.as_ref(), &consumer, "g2")).await;
    assert!(probe.ready(), "a successful write closes the circuit");
    assert_eq!(seqs(&sink, 0), (1..=400).collect::<Vec<_>>(), "nothing lost, nothing twice");
    consumer.shutdown(Instant::now() + Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_go_to_the_dead_letter_topic_and_the_partition_moves_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bus = bus(dir.path(), 1);
    let stream = outputs(0, SymbolId(1), 1, 300, 4);
    publish(bus.as_ref(), 0, &stream[..150]);
    publish_raw(bus.as_ref(), 0, vec![b"not an output".to_vec()]);
    publish(bus.as_ref(), 0, &stream[150..]);
    let sink = Arc::new(TestSink { poison: HashSet::from([7, 64, 65, 299]), ..TestSink::default() });
    let consumer = Consumer::start(bus.clone(), Arc::clone(&sink), fast("g3")).expect("starts");
    wait_until("everything is committed", || caught_up(bus.as_ref(), &consumer, "g3")).await;

    let expected: Vec<u64> = (1..=300).filter(|s| !sink.poison.contains(s)).collect();
    assert_eq!(seqs(&sink, 0), expected, "the rest is written, in order, once");
    let letters = dead_letters(bus.as_ref());
    assert_eq!(letters.len(), 5);
    let offsets: Vec<u64> = letters.iter().map(|l| l["offset"].as_u64().expect("offset")).collect();
    // seq s sits at offset s-1 before the garbage record (offset 150), at s after it.
    assert_eq!(offsets, [6, 63, 64, 150, 299]);
    for l in &letters {
        assert_eq!(l["source_topic"], "tachyon.executions");
        assert_eq!(l["consumer"], "g3");
        assert!(!l["error"].as_str().expect("error").is_empty());
        assert!(!l["payload_hex"].as_str().expect("payload").is_empty());
    }
    assert!(letters[3]["error"].as_str().expect("error").contains("format"), "{}", letters[3]);
    assert!(letters[0]["error"].as_str().expect("error").contains("refused seq 7"));
    assert_eq!(consumer.probe().partitions()[0].dead_letters.load(Ordering::Relaxed), 5);
    consumer.shutdown(Instant::now() + Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_and_a_restart_resumes_after_the_committed_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bus = bus(dir.path(), 1);
    let stream = outputs(0, SymbolId(1), 1, 600, 5);
    let sink = Arc::new(TestSink::default());
    let consumer = Consumer::start(bus.clone(), Arc::clone(&sink), fast("g4")).expect("starts");
    publish(bus.as_ref(), 0, &stream[..300]);
    // Asked to stop at once: it still writes and commits everything published before.
    consumer.shutdown(Instant::now() + Duration::from_secs(30)).await;
    assert_eq!(committed(bus.as_ref(), "g4", 0), 300);
    assert_eq!(seqs(&sink, 0), (1..=300).collect::<Vec<_>>());

    publish(bus.as_ref(), 0, &stream[300..]);
    let consumer = Consumer::start(bus.clone(), Arc::clone(&sink), fast("g4")).expect("restarts");
    wait_until("everything is committed", || caught_up(bus.as_ref(), &consumer, "g4")).await;
    assert_eq!(seqs(&sink, 0), (1..=600).collect::<Vec<_>>(), "resumed where it committed");
    consumer.shutdown(Instant::now() + Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_up_at_its_deadline_while_the_store_is_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bus = bus(dir.path(), 1);
    publish(bus.as_ref(), 0, &outputs(0, SymbolId(1), 1, 50, 6));
    let sink = Arc::new(TestSink { down: AtomicBool::new(true), ..TestSink::default() });
    let consumer = Consumer::start(bus.clone(), Arc::clone(&sink), fast("g5")).expect("starts");
    wait_until("the circuit opens", || !consumer.probe().ready()).await;
    consumer.shutdown(Instant::now() + Duration::from_millis(200)).await;
    assert_eq!(committed(bus.as_ref(), "g5", 0), 0, "nothing written, nothing committed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_is_down_is_reported_even_with_nothing_to_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bus = bus(dir.path(), 1);
    let sink = Arc::new(TestSink::default());
    let consumer = Consumer::start(bus.clone(), Arc::clone(&sink), fast("g6")).expect("starts");
    let probe = consumer.probe();
    assert!(probe.ready());
    sink.down.store(true, Ordering::Release);
    wait_until("the store check fails", || !probe.ready()).await;
    sink.down.store(false, Ordering::Release);
    wait_until("the store check passes", || probe.ready()).await;
    consumer.shutdown(Instant::now() + Duration::from_secs(10)).await;
}
