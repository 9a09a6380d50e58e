//! The shard runner over the embedded backbone: outputs, dead letters, and recovery after
//! crashes at awkward points (snapshot older than the outputs, outputs lost after the
//! snapshot) without a lost or duplicated output.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[path = "../../tests/support/reference.rs"]
mod reference;

use reference::{commands, engine_config, expected};
use tachyon_bus::{Backbone, EmbeddedBus, EmbeddedConfig};
use tachyon_proto::wire::{encode, CommandEnvelope, ShardOutput};
use tachyon_proto::*;
use tachyon_runtime::{run_shard, Matching, ShardConfig, ShardStatus, SnapshotPolicy, SnapshotStore};

fn produce(bus: &EmbeddedBus, cmds: &[CommandEnvelope]) {
    let mut payloads: Vec<Vec<u8>> = cmds.iter().map(|c| encode(c).expect("encodes")).collect();
    bus.produce(Topic::Orders, 0, &mut payloads, None).expect("queued");
    bus.flush(Topic::Orders, 0, Duration::from_secs(5)).expect("flushed");
}

fn outputs(bus: &EmbeddedBus, topic: Topic) -> Vec<ShardOutput> {
    reference::read_outputs(bus, topic, 0)
}

struct Running {
    stop: Arc<AtomicBool>,
    status: Arc<ShardStatus>,
    thread: std::thread::JoinHandle<Result<(), tachyon_runtime::ShardError>>,
}

fn start(bus: &Arc<EmbeddedBus>, snapshots: &std::path::Path, every: u64) -> Running {
    let stop = Arc::new(AtomicBool::new(false));
    let status = Arc::new(ShardStatus::default());
    let config = ShardConfig {
        latency: Arc::default(),
        fenced: None,
        partition: 0,
        input: Topic::Orders,
        snapshots: SnapshotPolicy {
            store: SnapshotStore::new(snapshots, 10),
            every_commands: every,
            every: Duration::from_secs(3600),
        },
        batch_max: 16,
    };
    let bus: Arc<dyn Backbone> = bus.clone();
    let (s, st) = (Arc::clone(&stop), Arc::clone(&status));
    let thread = std::thread::spawn(move || run_shard(bus, Matching::new(engine_config(), 0), config, s, st));
    Running { stop, status, thread }
}

impl Running {
    /// Drains the input and stops.
    fn finish(self) {
        self.stop.store(true, Ordering::Release);
        self.thread.join().expect("shard thread").expect("shard ran cleanly");
    }
}

fn open(dir: &std::path::Path) -> Arc<EmbeddedBus> {
    Arc::new(EmbeddedBus::open(&EmbeddedConfig::new(dir.join("journal"), 1)).expect("opens"))
}

#[test]
fn publishes_exactly_what_the_engine_emits_with_consecutive_sequences() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bus = open(dir.path());
    let shard = start(&bus, &dir.path().join("snapshots"), 1_000);
    let cmds = commands(0..200);
    produce(&bus, &cmds);
    shard.finish();
    let (executions, market_data) = expected(&cmds);
    assert_eq!(outputs(&bus, Topic::Executions), executions);
    assert_eq!(outputs(&bus, Topic::MarketData), market_data);
    let mut seqs: Vec<u64> = executions.iter().chain(&market_data).map(|o| o.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "one sequence over both topics, no gaps");
    assert!(market_data.iter().any(|o| o.events.iter().any(|e| matches!(e, Event::Trade(_)))), "the stream trades");
}

#[test]
fn a_poison_command_goes_to_the_dead_letter_topic_and_the_partition_moves_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bus = open(dir.path());
    let shard = start(&bus, &dir.path().join("snapshots"), 1_000);
    let cmds = commands(0..10);
    produce(&bus, &cmds[..5]);
    bus.produce(Topic::Orders, 0, &mut vec![b"\x01garbage".to_vec()], None).expect("queued");
    produce(&bus, &cmds[5..]);
    shard.finish();
    assert_eq!(outputs(&bus, Topic::Executions).len(), 10, "every good command was processed");
    let mut reader = bus.reader(Topic::DeadLetter, 0, 0).expect("reader");
    let mut letters = Vec::new();
    reader.poll(&mut letters, 10, Duration::from_secs(5)).expect("polls");
    assert_eq!(letters.len(), 1);
    let letter: serde_json::Value = serde_json::from_slice(&letters[0].payload).expect("JSON");
    assert_eq!(letter["offset"], 5);
    assert_eq!(letter["source_topic"], "tachyon.orders");
    assert_eq!(letter["payload_hex"], "0167617262616765");
    assert!(letter["error"].as_str().is_some_and(|e| !e.is_empty()));
}

/// Removes the newest snapshots so that the newest left reflects less than the outputs.
fn drop_newest_snapshots(dir: &std::path::Path, keep: usize) {
    let mut files: Vec<_> = std::fs::read_dir(dir).expect("lists").map(|e| e.expect("entry").path()).collect();
    files.sort();
    for f in files.iter().skip(keep) {
        std::fs::remove_file(f).expect("removes");
    }
}

#[test]
fn restart_from_an_older_snapshot_replays_silently_and_continues_without_duplicates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let snapshots = dir.path().join("snapshots");
    let cmds = commands(0..150);
    {
        let bus = open(dir.path());
        let shard = start(&bus, &snapshots, 40);
        produce(&bus, &cmds[..100]);
        shard.finish();
    }
    // The crash: only the snapshot at 40 survives, the outputs went up to command 100.
    drop_newest_snapshots(&snapshots, 1);
    let bus = open(dir.path());
    let shard = start(&bus, &snapshots, 40);
    produce(&bus, &cmds[100..]);
    shard.finish();
    let (executions, market_data) = expected(&cmds);
    assert_eq!(outputs(&bus, Topic::Executions), executions);
    assert_eq!(outputs(&bus, Topic::MarketData), market_data);
}

#[test]
fn outputs_lost_after_the_last_snapshot_are_published_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let snapshots = dir.path().join("snapshots");
    let cmds = commands(0..120);
    {
        let bus = open(dir.path());
        let shard = start(&bus, &snapshots, 50);
        produce(&bus, &cmds[..80]);
        shard.finish();
    }
    drop_newest_snapshots(&snapshots, 1); // snapshot at 50 remains
                                          // The outputs' unsynced tail is gone (half a record torn off each output journal).
    for topic in ["tachyon.executions", "tachyon.marketdata"] {
        let segment = dir.path().join("journal").join(topic).join("0000/00000000000000000000.log");
        let len = std::fs::metadata(&segment).expect("segment").len();
        let file = std::fs::OpenOptions::new().write(true).open(&segment).expect("opens");
        file.set_len(len - 10).expect("truncates");
    }
    let bus = open(dir.path());
    let shard = start(&bus, &snapshots, 50);
    produce(&bus, &cmds[80..]);
    shard.finish();
    let (executions, market_data) = expected(&cmds);
    assert_eq!(outputs(&bus, Topic::Executions), executions);
    assert_eq!(outputs(&bus, Topic::MarketData), market_data);
}

#[test]
fn a_crash_between_the_two_output_topics_loses_nothing_on_either() {
    // The topics are written by separate writers: a crash can leave the market data ahead
    // of the executions. Recovery must publish the executions the crash took (while not
    // repeating the market data it kept).
    let dir = tempfile::tempdir().expect("tempdir");
    let snapshots = dir.path().join("snapshots");
    let cmds = commands(0..120);
    {
        let bus = open(dir.path());
        let shard = start(&bus, &snapshots, 1_000);
        produce(&bus, &cmds[..80]);
        shard.finish();
    }
    drop_newest_snapshots(&snapshots, 0);
    let segment = dir.path().join("journal/tachyon.executions/0000/00000000000000000000.log");
    let len = std::fs::metadata(&segment).expect("segment").len();
    let file = std::fs::OpenOptions::new().write(true).open(&segment).expect("opens");
    file.set_len(len / 2).expect("truncates");
    drop(file);
    let bus = open(dir.path());
    let shard = start(&bus, &snapshots, 1_000);
    produce(&bus, &cmds[80..]);
    shard.finish();
    let (executions, market_data) = expected(&cmds);
    assert_eq!(outputs(&bus, Topic::Executions), executions);
    assert_eq!(outputs(&bus, Topic::MarketData), market_data);
}

#[test]
fn status_reports_progress_and_catching_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bus = open(dir.path());
    let shard = start(&bus, &dir.path().join("snapshots"), 1_000);
    produce(&bus, &commands(0..30));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while shard.status.position.load(Ordering::Relaxed) < 30 {
        assert!(std::time::Instant::now() < deadline, "the shard processes its input");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(shard.status.caught_up.load(Ordering::Acquire));
    assert_eq!(shard.status.commands.load(Ordering::Relaxed), 30);
    shard.finish();
}
