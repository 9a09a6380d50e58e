//! The sequenced pipeline over the embedded backbone: what it publishes and hands its
//! listener is exactly what the bare engine emits, each submitter is answered once with
//! its own command's records and only after its batch is durable, a full ring refuses at
//! once, and a restart (clean, or with the output log or the snapshots lost) re-derives
//! the same outputs from the input journal without a duplicate.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[path = "../../tests/support/reference.rs"]
mod reference;

use parking_lot::Mutex;
use reference::{commands, engine_config, expected};
use tachyon_bus::{Backbone, EmbeddedBus, EmbeddedConfig, FsyncPolicy, Journal, JournalConfig};
use tachyon_proto::wire::{CommandEnvelope, ShardOutput};
use tachyon_proto::Topic;
use tachyon_runtime::pipeline::{Listener, Pipeline, PipelineConfig, Refusal, Released, Syncer};
use tachyon_runtime::{Matching, SnapshotPolicy, SnapshotStore};

/// What the listener saw: every released record, and per token (the request id) the
/// records of its input and the journal's durable end when it was answered.
#[derive(Default)]
struct Seen {
    records: Vec<(Topic, ShardOutput)>,
    answers: Vec<Answer>,
    refused: Vec<u64>,
}

/// A token, its input's records, and the journal's end when it was answered.
struct Answer(u64, Vec<(Topic, ShardOutput)>, u64);

struct Recorder {
    seen: Mutex<Seen>,
    /// The partition's input journal, to check durability at the moment of an answer.
    journal_dir: std::path::PathBuf,
}

impl Listener<ShardOutput, u64> for Recorder {
    fn released(&self, batch: Released<'_, ShardOutput, u64>) {
        let mut seen = self.seen.lock();
        seen.records.extend(batch.records().cloned());
        for i in 0..batch.tokens.len() {
            if let Some(token) = batch.tokens[i].take() {
                // What a fresh open of the journal finds is on disk (or in the page cache,
                // where a process crash cannot take it): the batch is in it.
                let on_disk = Journal::open(&self.journal_dir, JournalConfig::default())
                    .map(|(j, _)| j.next_offset())
                    .unwrap_or(0);
                seen.answers.push(Answer(token, batch.of_input(i).to_vec(), on_disk));
            }
        }
    }

    fn refused(&self, token: u64, _reason: &str) {
        self.seen.lock().refused.push(token);
    }
}

fn bus(dir: &Path) -> Arc<EmbeddedBus> {
    let mut config = EmbeddedConfig::new(dir.join("outputs"), 1);
    config.output.fsync = FsyncPolicy::Never;
    config.owned_elsewhere = vec![Topic::Orders];
    Arc::new(EmbeddedBus::open(&config).expect("opens"))
}

fn outputs(bus: &EmbeddedBus, topic: Topic) -> Vec<ShardOutput> {
    reference::read_outputs(bus, topic, 0)
}

/// Runs a pipeline on `dir` over `cmds`, submitted in bursts so batches form, and stops it
/// once all are answered; returns what its listener saw.
fn run(dir: &Path, cmds: &[CommandEnvelope], fsync: FsyncPolicy, snapshot_every: u64) -> Seen {
    let bus = bus(dir);
    let journal_dir = dir.join("orders");
    let recorder = Arc::new(Recorder { seen: Mutex::default(), journal_dir: journal_dir.clone() });
    let syncer = Syncer::start(1, 1, Duration::ZERO).expect("syncer");
    let pipeline: Pipeline<CommandEnvelope, u64> = Pipeline::new(64);
    // Submissions queued before the thread starts wait for it (the gateway serves first).
    pipeline.submit(cmds[0], cmds[0].request_id).expect("room");
    let snapshots = SnapshotPolicy {
        store: SnapshotStore::new(dir.join("snapshots"), 3),
        every_commands: snapshot_every,
        every: Duration::from_secs(3600),
    };
    let mut config = PipelineConfig::new(0, journal_dir, snapshots);
    config.journal.fsync = fsync;
    config.batch_max = 16;
    let backbone: Arc<dyn Backbone> = bus.clone();
    let thread = pipeline
        .spawn(Matching::new(engine_config(), 0), config, backbone, Arc::clone(&syncer), Arc::clone(&recorder))
        .expect("spawns");
    for cmd in &cmds[1..] {
        let mut next = (*cmd, cmd.request_id);
        loop {
            match pipeline.submit(next.0, next.1) {
                Ok(()) => break,
                Err((back, Refusal::Full)) => {
                    next = (back.input, back.token);
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err((_, Refusal::Unavailable)) => panic!("the pipeline stopped taking commands"),
            }
        }
    }
    pipeline.stop();
    thread.join().expect("pipeline thread").expect("ran cleanly");
    syncer.stop();
    Arc::into_inner(recorder).expect("the pipeline let go of its listener").seen.into_inner()
}

#[test]
fn publishes_and_answers_exactly_what_the_engine_emits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cmds = commands(0..500);
    let seen = run(dir.path(), &cmds, FsyncPolicy::EveryBatch, 100);
    let (executions, market_data) = expected(&cmds);

    // The log holds the reference outputs, in sequence, once each.
    let bus = bus(dir.path());
    assert_eq!(outputs(&bus, Topic::Executions), executions);
    assert_eq!(outputs(&bus, Topic::MarketData), market_data);

    // The listener saw the same records, in the same order as the sequences.
    let mut all: Vec<(Topic, ShardOutput)> = executions
        .iter()
        .map(|o| (Topic::Executions, o.clone()))
        .chain(market_data.iter().map(|o| (Topic::MarketData, o.clone())))
        .collect();
    all.sort_by_key(|(_, o)| o.seq);
    assert_eq!(seen.records, all);

    // Every submitter was answered once, in order, with its own command's records, and
    // only once its command was in the journal.
    assert!(seen.refused.is_empty(), "none refused: {:?}", seen.refused);
    let tokens: Vec<u64> = seen.answers.iter().map(|a| a.0).collect();
    assert_eq!(tokens, cmds.iter().map(|c| c.request_id).collect::<Vec<_>>());
    for Answer(token, records, on_disk) in &seen.answers {
        let offset = *token; // request ids equal input offsets in this stream
        assert!(*on_disk > offset, "command {token} answered before it was journaled ({on_disk})");
        let own: Vec<_> = all.iter().filter(|(_, o)| o.input_offset == offset).cloned().collect();
        assert_eq!(records, &own, "the records of command {token}");
    }
}

#[test]
fn a_restart_continues_the_sequences_without_a_duplicate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cmds = commands(0..400);
    run(dir.path(), &cmds[..150], FsyncPolicy::Never, 64);
    let seen = run(dir.path(), &cmds[150..], FsyncPolicy::Never, 64);
    let (executions, market_data) = expected(&cmds);
    let bus = bus(dir.path());
    assert_eq!(outputs(&bus, Topic::Executions), executions);
    assert_eq!(outputs(&bus, Topic::MarketData), market_data);
    // The second run released only its own commands' records.
    assert!(seen.records.iter().all(|(_, o)| o.input_offset >= 150));
}

#[test]
fn lost_outputs_and_snapshots_are_rederived_from_the_input_journal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cmds = commands(0..300);
    run(dir.path(), &cmds[..200], FsyncPolicy::Never, 50);
    // Both derived stores lost: only the input journal is the truth.
    std::fs::remove_dir_all(dir.path().join("outputs")).expect("outputs removed");
    std::fs::remove_dir_all(dir.path().join("snapshots")).expect("snapshots removed");
    let seen = run(dir.path(), &cmds[200..], FsyncPolicy::Never, 50);
    let (executions, market_data) = expected(&cmds);
    let bus = bus(dir.path());
    assert_eq!(outputs(&bus, Topic::Executions), executions);
    assert_eq!(outputs(&bus, Topic::MarketData), market_data);
    // The replayed commands' records went to the listener too (the gateway rebuilds from
    // them), but only the live ones were answered.
    assert!(seen.records.iter().any(|(_, o)| o.input_offset < 200));
    assert_eq!(seen.answers.len(), 100);
}

#[test]
fn a_full_ring_refuses_at_once_and_a_stopped_one_is_unavailable() {
    let pipeline: Pipeline<u32, u32> = Pipeline::new(4);
    for i in 0..4 {
        pipeline.submit(i, i).expect("room");
    }
    let (back, refusal) = pipeline.submit(4, 4).expect_err("full");
    assert_eq!((back.input, refusal), (4, Refusal::Full));
    assert_eq!(pipeline.queued(), 4);
    assert_eq!(pipeline.refused_full(), 1, "counted for /metrics");
    pipeline.stop();
    let (_, refusal) = pipeline.submit(5, 5).expect_err("stopped");
    assert_eq!(refusal, Refusal::Unavailable);
}
