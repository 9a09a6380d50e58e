//! The embedded backbone: acknowledgements, ordering, reading from the tail and from disk,
//! restart, committed offsets, backpressure and shutdown.

use std::sync::mpsc;
use std::time::Duration;

use tachyon_bus::{Backbone, BusError, EmbeddedBus, EmbeddedConfig, FsyncPolicy, Record};
use tachyon_proto::Topic;

const WAIT: Duration = Duration::from_secs(5);

fn payload(i: u64) -> Vec<u8> {
    format!("record-{i}").into_bytes()
}

/// Produces `payloads` and waits for the acknowledgement.
fn produce_acked(bus: &EmbeddedBus, topic: Topic, partition: u32, payloads: Vec<Vec<u8>>) -> std::ops::Range<u64> {
    let (tx, rx) = mpsc::channel();
    let mut payloads = payloads;
    bus.produce(topic, partition, &mut payloads, Some(Box::new(move |r| tx.send(r).expect("test waits"))))
        .expect("queued");
    rx.recv_timeout(WAIT).expect("acknowledged").expect("durable")
}

fn read_all(bus: &EmbeddedBus, topic: Topic, partition: u32, from: u64) -> Vec<Record> {
    let end = bus.end_offset(topic, partition).expect("partition exists");
    let mut reader = bus.reader(topic, partition, from).expect("reader");
    let mut out = Vec::new();
    while reader.position() < end {
        let n = reader.poll(&mut out, 100, WAIT).expect("poll");
        assert!(n > 0, "records below the end offset must be readable");
    }
    out
}

#[test]
fn acknowledged_records_are_readable_in_order_with_consecutive_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bus = EmbeddedBus::open(&EmbeddedConfig::new(dir.path(), 2)).expect("opens");
    assert_eq!(produce_acked(&bus, Topic::Orders, 1, vec![payload(0), payload(1)]), 0..2);
    assert_eq!(produce_acked(&bus, Topic::Orders, 1, vec![payload(2)]), 2..3);
    assert_eq!(bus.end_offset(Topic::Orders, 0), Ok(0), "partitions are independent");
    let records = read_all(&bus, Topic::Orders, 1, 0);
    let got: Vec<(u64, Vec<u8>)> = records.into_iter().map(|r| (r.offset, r.payload.to_vec())).collect();
    assert_eq!(got, (0..3).map(|i| (i, payload(i))).collect::<Vec<_>>());
    assert_eq!(
        bus.produce(Topic::Orders, 2, &mut vec![payload(0)], None),
        Err(BusError::NoSuchPartition { topic: Topic::Orders, partition: 2 })
    );
}

#[test]
fn many_producers_are_group_committed_and_nothing_is_lost_or_reordered_per_producer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bus = std::sync::Arc::new(EmbeddedBus::open(&EmbeddedConfig::new(dir.path(), 1)).expect("opens"));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let bus = std::sync::Arc::clone(&bus);
            std::thread::spawn(move || {
                for i in 0..250u64 {
                    produce_acked(&bus, Topic::Orders, 0, vec![format!("{t}:{i}").into_bytes()]);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("producer finished");
    }
    let records = read_all(&bus, Topic::Orders, 0, 0);
    assert_eq!(records.len(), 1000);
    for t in 0..4u64 {
        let mine: Vec<String> = records
            .iter()
            .map(|r| String::from_utf8(r.payload.to_vec()).expect("utf8"))
            .filter(|s| s.starts_with(&format!("{t}:")))
            .collect();
        assert_eq!(mine, (0..250).map(|i| format!("{t}:{i}")).collect::<Vec<_>>());
    }
}

#[test]
fn survives_a_restart_and_reads_old_records_from_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = EmbeddedConfig::new(dir.path(), 1);
    config.tail_records = 8; // most reads below go to the journal files
    {
        let bus = EmbeddedBus::open(&config).expect("opens");
        for i in 0..50 {
            produce_acked(&bus, Topic::Orders, 0, vec![payload(i)]);
        }
        // Not synced per batch: close() must still write it out.
        bus.produce(Topic::Executions, 0, &mut vec![payload(7)], None).expect("queued");
        bus.close();
    }
    let bus = EmbeddedBus::open(&config).expect("reopens");
    assert_eq!(bus.end_offset(Topic::Orders, 0), Ok(50));
    assert_eq!(bus.end_offset(Topic::Executions, 0), Ok(1));
    let records = read_all(&bus, Topic::Orders, 0, 3);
    assert_eq!(records.iter().map(|r| r.offset).collect::<Vec<_>>(), (3..50).collect::<Vec<_>>());
    assert_eq!(records[0].payload.to_vec(), payload(3));
    assert_eq!(produce_acked(&bus, Topic::Orders, 0, vec![payload(50)]), 50..51);
    assert_eq!(tachyon_bus::last_record(&bus, Topic::Orders, 0).expect("reads").map(|r| r.offset), Some(50));
    assert_eq!(
        bus.reader(Topic::Orders, 0, 52).err(),
        Some(BusError::OffsetOutOfRange { topic: Topic::Orders, partition: 0, offset: 52 })
    );
}

#[test]
fn a_torn_tail_is_cut_on_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = EmbeddedConfig::new(dir.path(), 1);
    {
        let bus = EmbeddedBus::open(&config).expect("opens");
        produce_acked(&bus, Topic::Orders, 0, vec![payload(0), payload(1)]);
    }
    let segment = dir.path().join("tachyon.orders/0000/00000000000000000000.log");
    let mut bytes = std::fs::read(&segment).expect("segment");
    bytes.extend_from_slice(&[42, 0, 0, 0, 1, 2, 3]); // half a record header
    std::fs::write(&segment, bytes).expect("write");
    let bus = EmbeddedBus::open(&config).expect("recovers");
    assert_eq!(bus.end_offset(Topic::Orders, 0), Ok(2));
    assert_eq!(produce_acked(&bus, Topic::Orders, 0, vec![payload(2)]), 2..3);
    assert_eq!(read_all(&bus, Topic::Orders, 0, 0).len(), 3);
}

#[test]
fn interval_policy_makes_records_visible_only_after_the_sync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = EmbeddedConfig::new(dir.path(), 1);
    config.input.fsync = FsyncPolicy::Interval(Duration::from_millis(20));
    let bus = EmbeddedBus::open(&config).expect("opens");
    // Acknowledged within the interval (plus scheduling), without any further traffic.
    assert_eq!(produce_acked(&bus, Topic::Orders, 0, vec![payload(0)]), 0..1);
    bus.produce(Topic::Orders, 0, &mut vec![payload(1)], None).expect("queued");
    bus.flush(Topic::Orders, 0, WAIT).expect("flushed");
    assert_eq!(bus.end_offset(Topic::Orders, 0), Ok(2));
}

#[test]
fn committed_offsets_persist_and_group_names_are_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = EmbeddedConfig::new(dir.path(), 2);
    {
        let bus = EmbeddedBus::open(&config).expect("opens");
        assert_eq!(bus.committed("persist", Topic::Executions, 1), Ok(None));
        bus.commit("persist", Topic::Executions, 1, 41).expect("commits");
        bus.commit("persist", Topic::Executions, 1, 42).expect("commits");
        assert_eq!(bus.commit("../evil", Topic::Executions, 1, 1), Err(BusError::InvalidGroup("../evil".into())));
    }
    let bus = EmbeddedBus::open(&config).expect("reopens");
    assert_eq!(bus.committed("persist", Topic::Executions, 1), Ok(Some(42)));
    assert_eq!(bus.committed("persist", Topic::Executions, 0), Ok(None));
}

#[test]
fn partitions_commit_at_once_without_mixing_their_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bus = std::sync::Arc::new(EmbeddedBus::open(&EmbeddedConfig::new(dir.path(), 4)).expect("opens"));
    let threads: Vec<_> = (0..4u32)
        .map(|p| {
            let bus = std::sync::Arc::clone(&bus);
            std::thread::spawn(move || {
                for i in 0..200u64 {
                    bus.commit("racing", Topic::Executions, p, u64::from(p) * 1_000_000 + i).expect("commits");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("joins");
    }
    for p in 0..4u32 {
        assert_eq!(bus.committed("racing", Topic::Executions, p), Ok(Some(u64::from(p) * 1_000_000 + 199)));
    }
}

#[test]
fn a_full_queue_is_backpressure_not_loss() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = EmbeddedConfig::new(dir.path(), 1);
    config.queue_capacity = 1;
    let bus = EmbeddedBus::open(&config).expect("opens");
    let mut accepted = 0u64;
    let mut full = 0;
    for i in 0..5_000 {
        match bus.produce(Topic::Orders, 0, &mut vec![payload(i)], None) {
            Ok(()) => accepted += 1,
            Err(BusError::Full { .. }) => full += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    bus.flush(Topic::Orders, 0, WAIT).expect("flushed");
    assert_eq!(bus.end_offset(Topic::Orders, 0), Ok(accepted), "every accepted record was written");
    assert!(full > 0, "a one-slot queue must fill up under 5,000 back-to-back produces");
}

#[test]
fn close_wakes_waiting_readers_after_they_read_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bus = std::sync::Arc::new(EmbeddedBus::open(&EmbeddedConfig::new(dir.path(), 1)).expect("opens"));
    let mut reader = bus.reader(Topic::MarketData, 0, 0).expect("reader");
    let waiter = std::thread::spawn(move || {
        let mut out = Vec::new();
        loop {
            match reader.poll(&mut out, 10, Duration::from_secs(30)) {
                Ok(_) => {}
                Err(BusError::Closed) => return out.len(),
                Err(e) => panic!("unexpected {e}"),
            }
        }
    });
    bus.produce(Topic::MarketData, 0, &mut vec![payload(0), payload(1)], None).expect("queued");
    bus.close();
    assert_eq!(waiter.join().expect("reader stopped"), 2);
    assert!(bus.produce(Topic::MarketData, 0, &mut vec![payload(2)], None).is_err(), "closed means closed");
}

#[test]
fn lingering_outputs_are_written_in_order_and_flushed_on_demand() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = EmbeddedConfig::new(dir.path(), 1);
    config.output_linger = Duration::from_millis(50);
    config.owned_elsewhere = vec![Topic::Orders];
    let bus = EmbeddedBus::open(&config).expect("opens");
    for i in 0..100 {
        bus.produce(Topic::Executions, 0, &mut vec![payload(i)], None).expect("queued");
    }
    bus.flush(Topic::Executions, 0, WAIT).expect("flushed");
    let got: Vec<Vec<u8>> = read_all(&bus, Topic::Executions, 0, 0).into_iter().map(|r| r.payload.to_vec()).collect();
    assert_eq!(got, (0..100).map(payload).collect::<Vec<_>>(), "every record, in order");
    // Only the output topics linger, and a topic owned elsewhere is not opened at all.
    assert_eq!(produce_acked(&bus, Topic::DeadLetter, 0, vec![payload(0)]), 0..1);
    assert_eq!(
        bus.produce(Topic::Orders, 0, &mut vec![payload(0)], None),
        Err(BusError::NoSuchPartition { topic: Topic::Orders, partition: 0 })
    );
}
