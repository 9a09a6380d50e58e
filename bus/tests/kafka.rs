//! The Kafka backbone against a real broker (tansu, started by `infra/local/kafka.sh`):
//! topic creation, acknowledged produce with offsets, reading from any offset, end offsets,
//! committed offsets per group, partition-count checks and refusal while no broker answers.

#[path = "../../tests/support/kafka.rs"]
mod kafka;
#[path = "../../tests/support/local_server.rs"]
mod local_server;

use std::sync::mpsc;
use std::time::Duration;

use tachyon_bus::{Backbone, BusError, KafkaBus, KafkaConfig, Record};
use tachyon_proto::Topic;

const WAIT: Duration = Duration::from_secs(30);

fn connect(label: &str, partitions: u32) -> KafkaBus {
    let mut config = KafkaConfig::new(kafka::brokers(), partitions);
    config.topic_prefix = kafka::topic_prefix(label);
    KafkaBus::connect(&config).expect("connects")
}

fn payload(i: u64) -> Vec<u8> {
    format!("record-{i}").into_bytes()
}

fn produce_acked(bus: &KafkaBus, topic: Topic, partition: u32, payloads: Vec<Vec<u8>>) -> std::ops::Range<u64> {
    let (tx, rx) = mpsc::channel();
    let mut payloads = payloads;
    bus.produce_keyed(
        topic,
        partition,
        b"BTC-USD",
        &mut payloads,
        Some(Box::new(move |r| tx.send(r).expect("test waits"))),
    )
    .expect("queued");
    assert!(payloads.is_empty(), "taken on success");
    rx.recv_timeout(WAIT).expect("acknowledged").expect("durable")
}

fn read(bus: &KafkaBus, topic: Topic, partition: u32, from: u64, to: u64) -> Vec<Record> {
    let mut reader = bus.reader(topic, partition, from).expect("reader");
    let mut out = Vec::new();
    while reader.position() < to {
        let n = reader.poll(&mut out, 100, WAIT).expect("poll");
        assert!(n > 0, "records below the end offset must be readable (at {})", reader.position());
    }
    out
}

#[test]
fn acknowledged_records_are_readable_in_order_from_any_offset() {
    let bus = connect("order", 2);
    assert_eq!(bus.end_offset(Topic::Orders, 1).expect("end"), 0, "created empty");
    assert_eq!(produce_acked(&bus, Topic::Orders, 1, vec![payload(0), payload(1)]), 0..2);
    assert_eq!(produce_acked(&bus, Topic::Orders, 1, vec![payload(2)]), 2..3);
    assert_eq!(bus.end_offset(Topic::Orders, 1).expect("end"), 3);
    assert_eq!(bus.end_offset(Topic::Orders, 0).expect("end"), 0, "partitions are separate");
    let all = read(&bus, Topic::Orders, 1, 0, 3);
    assert_eq!(all.iter().map(|r| r.offset).collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(all.iter().map(|r| r.payload.to_vec()).collect::<Vec<_>>(), [payload(0), payload(1), payload(2)]);
    // From inside a batch the broker wrote at once: only what follows the offset.
    let tail = read(&bus, Topic::Orders, 1, 1, 3);
    assert_eq!(tail.iter().map(|r| r.offset).collect::<Vec<_>>(), [1, 2]);
    assert!(matches!(bus.reader(Topic::Orders, 1, 4), Err(BusError::OffsetOutOfRange { offset: 4, .. })));
    assert!(matches!(bus.reader(Topic::Orders, 2, 0), Err(BusError::NoSuchPartition { partition: 2, .. })));
    // An empty poll waits at most its timeout.
    let mut reader = bus.reader(Topic::Orders, 1, 3).expect("reader at the end");
    let mut out = Vec::new();
    assert_eq!(reader.poll(&mut out, 10, Duration::from_millis(200)).expect("poll"), 0);
    // Unacknowledged produce and flush: readable after the flush.
    let mut more: Vec<Vec<u8>> = (3..103).map(payload).collect();
    bus.produce(Topic::Executions, 0, &mut more, None).expect("queued");
    bus.flush(Topic::Executions, 0, WAIT).expect("flushed");
    let outputs = read(&bus, Topic::Executions, 0, 0, 100);
    assert_eq!(outputs.len(), 100);
    assert_eq!(outputs[99].payload.to_vec(), payload(102));
    assert_eq!(tachyon_bus::last_record(&bus, Topic::Executions, 0).expect("last").map(|r| r.offset), Some(99));
    assert!(bus.is_healthy());
    bus.close();
}

#[test]
fn groups_commit_and_read_back_their_offsets() {
    let bus = connect("groups", 2);
    let prefix = bus.config().topic_prefix.clone();
    let group = format!("{}persist", prefix.replace('.', "-"));
    assert_eq!(bus.committed(&group, Topic::Executions, 1).expect("reads"), None);
    bus.commit(&group, Topic::Executions, 1, 42).expect("commits");
    bus.commit(&group, Topic::Executions, 0, 7).expect("commits");
    assert_eq!(bus.committed(&group, Topic::Executions, 1).expect("reads"), Some(42));
    assert_eq!(bus.committed(&group, Topic::Executions, 0).expect("reads"), Some(7));
    bus.commit(&group, Topic::Executions, 1, 43).expect("commits again");
    // Another client of the same group (a restarted process) sees the commit.
    let mut config = bus.config().clone();
    config.client_id = "restarted".into();
    let again = KafkaBus::connect(&config).expect("connects");
    assert_eq!(again.committed(&group, Topic::Executions, 1).expect("reads"), Some(43));
    assert!(matches!(bus.commit("bad group!", Topic::Executions, 0, 1), Err(BusError::InvalidGroup(_))));
}

#[test]
fn an_existing_topic_with_another_partition_count_is_refused() {
    let bus = connect("count", 2);
    let mut config = bus.config().clone();
    config.partitions = 3;
    let error = KafkaBus::connect(&config).expect_err("refused");
    assert!(error.to_string().contains("has 2 partitions"), "{error}");
}

#[test]
fn no_broker_means_a_clear_error_not_a_hang() {
    let port = local_server::free_port();
    let mut config = KafkaConfig::new(format!("127.0.0.1:{port}"), 1);
    config.topic_prefix = kafka::topic_prefix("none");
    let started = std::time::Instant::now();
    let error = KafkaBus::connect(&config).expect_err("nothing listens there");
    assert!(matches!(error, BusError::Unavailable(_)), "{error}");
    assert!(started.elapsed() < Duration::from_secs(60), "bounded");
}
