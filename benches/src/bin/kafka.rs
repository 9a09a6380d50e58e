//! The yardstick for the Kafka backbone: a plain rdkafka round trip on the same broker,
//! with the producer settings Tachyon uses (idempotent, acks=all, no linger).
//!
//! `--hops 1`: producer → topic → consumer. `--hops 2`: producer → topic A → a relay
//! (consume, produce) → topic B → consumer, the shape of Tachyon's path (gateway → orders →
//! engine → executions → gateway) with the matching taken out. Messages are sent open-loop
//! at `--rate` (0: as fast as the producer's queue takes them) and each one's latency
//! counts from its intended send time, so a stall shows instead of slowing the sender.
//! Reports the achieved rate, the round trip and the broker acknowledgement percentiles,
//! and writes them as JSON with `--json`.
//!
//! ```sh
//! infra/local/kafka.sh start 19092 /tmp/kafka
//! cargo run --release -p tachyon-benches --bin kafka -- --brokers 127.0.0.1:19092 --rate 2000 --seconds 10
//! cargo run --release -p tachyon-benches --bin kafka -- --brokers 127.0.0.1:19092 --rate 0 --seconds 10 --hops 2
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tachyon_bus::{KafkaBus, KafkaConfig};
use tachyon_proto::Topic;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(about = "Plain rdkafka round trips on a broker: the yardstick for Tachyon's Kafka path")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:19092")]
    brokers: String,
    /// Messages per second (0: as fast as possible).
    #[arg(long, default_value_t = 2_000)]
    rate: u64,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// 1: produce → consume; 2: produce → relay → consume.
    #[arg(long, default_value_t = 2)]
    hops: u8,
    /// Bytes per message (Tachyon's commands are ~100-200 bytes).
    #[arg(long, default_value_t = 160)]
    payload: usize,
    /// `linger.ms` of the producers (Tachyon's `kafka.linger_ms`).
    #[arg(long, default_value_t = 0)]
    linger_ms: u32,
    /// Messages sent in the first seconds are not recorded (clients connecting, fetch
    /// sessions starting).
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// `fetch.wait.max.ms` of the consumers (Tachyon's `kafka.fetch_wait_ms`).
    #[arg(long, default_value_t = 100)]
    fetch_wait_ms: u32,
    /// Write the results here as JSON.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

/// Nanoseconds since the run started, for one clock across the threads.
fn now(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 60_000_000_000, 3).expect("valid bounds")
}

/// Delivery reports: the broker acknowledgement latency from each message's intended time.
struct Acks {
    start: Instant,
    /// Messages intended before this (ns) are not recorded.
    warmup: u64,
    histogram: Arc<Mutex<Histogram<u64>>>,
    failed: Arc<AtomicU64>,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = Box<u64>;

    fn delivery(&self, result: &DeliveryResult<'_>, intended: Box<u64>) {
        if result.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if *intended < self.warmup {
            return;
        }
        let _ = self.histogram.lock().record(now(self.start).saturating_sub(*intended).max(1_000));
    }
}

/// The producer Tachyon's gateway uses, without the wrapper.
fn producer(brokers: &str, linger_ms: u32, acks: Option<&Acks>) -> Result<ThreadedProducer<Acks>> {
    let context = match acks {
        Some(a) => Acks {
            start: a.start,
            warmup: a.warmup,
            histogram: Arc::clone(&a.histogram),
            failed: Arc::clone(&a.failed),
        },
        None => Acks {
            start: Instant::now(),
            warmup: u64::MAX,
            histogram: Arc::new(Mutex::new(histogram())),
            failed: Arc::default(),
        },
    };
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", linger_ms.to_string())
        .set("queue.buffering.max.messages", "100000")
        .set("socket.nagle.disable", "true")
        .create_with_context(context)
        .context("producer")
}

fn consumer(brokers: &str, topic: &str, fetch_wait_ms: u32) -> Result<BaseConsumer> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "bench")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", fetch_wait_ms.to_string())
        .set("socket.nagle.disable", "true")
        .create()
        .context("consumer")?;
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, 0, Offset::Beginning)?;
    consumer.assign(&list)?;
    Ok(consumer)
}

/// Sends `payload` with the intended time in its first 8 bytes, retrying while the queue
/// is full.
fn send(producer: &ThreadedProducer<Acks>, topic: &str, payload: &mut [u8], intended: u64) {
    payload[..8].copy_from_slice(&intended.to_le_bytes());
    loop {
        let record: BaseRecord<'_, (), [u8], Box<u64>> =
            BaseRecord::with_opaque_to(topic, Box::new(intended)).partition(0).payload(&*payload);
        match producer.send(record) {
            Ok(()) => return,
            Err((e, _)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                std::thread::sleep(Duration::from_micros(100));
            }
            Err((e, _)) => panic!("produce failed: {e}"),
        }
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.hops == 1 || args.hops == 2, "--hops is 1 or 2");
    anyhow::ensure!(args.payload >= 8, "--payload is at least 8 bytes");
    // Fresh topics (one partition each) through Tachyon's topic creation.
    let mut config = KafkaConfig::new(&args.brokers, 1);
    config.topic_prefix = format!("bench{}.", std::process::id());
    let bus = KafkaBus::connect(&config).context("creating the bench topics")?;
    let (a, b) = (config.topic_name(Topic::Orders), config.topic_name(Topic::Executions));
    let last = if args.hops == 1 { a.clone() } else { b.clone() };

    let start = Instant::now();
    let warmup = args.warmup * 1_000_000_000;
    let acks = Acks { start, warmup, histogram: Arc::new(Mutex::new(histogram())), failed: Arc::default() };
    let round_trip = Arc::new(Mutex::new(histogram()));
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));

    let relay = (args.hops == 2)
        .then(|| -> Result<_> {
            let (input, output) =
                (consumer(&args.brokers, &a, args.fetch_wait_ms)?, producer(&args.brokers, args.linger_ms, None)?);
            let (stop, b) = (Arc::clone(&stop), b.clone());
            Ok(std::thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    if let Some(Ok(message)) = input.poll(Duration::from_millis(50)) {
                        let mut payload = message.payload().unwrap_or_default().to_vec();
                        drop(message);
                        let intended = u64::from_le_bytes(payload[..8].try_into().expect("8 bytes"));
                        send(&output, &b, &mut payload, intended);
                    }
                }
            }))
        })
        .transpose()?;
    let receiver = {
        let input = consumer(&args.brokers, &last, args.fetch_wait_ms)?;
        let (stop, round_trip, received) = (Arc::clone(&stop), Arc::clone(&round_trip), Arc::clone(&received));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                if let Some(Ok(message)) = input.poll(Duration::from_millis(50)) {
                    let payload = message.payload().unwrap_or_default();
                    let intended = u64::from_le_bytes(payload[..8].try_into().expect("8 bytes"));
                    drop(message);
                    if intended >= warmup {
                        let _ = round_trip.lock().record(now(start).saturating_sub(intended).max(1_000));
                    }
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    let producer = producer(&args.brokers, args.linger_ms, Some(&acks))?;
    let mut payload = vec![0u8; args.payload];
    let duration = Duration::from_secs(args.seconds);
    let mut sent = 0u64;
    let mut last_report = Instant::now();
    while start.elapsed() < duration {
        let intended = match (sent * 1_000_000_000).checked_div(args.rate) {
            None => now(start), // --rate 0: as fast as the queue takes them.
            Some(due) => {
                let at = now(start);
                if due > at {
                    std::thread::sleep(Duration::from_nanos((due - at).min(1_000_000)));
                    continue;
                }
                due
            }
        };
        send(&producer, &a, &mut payload, intended);
        sent += 1;
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            let h = round_trip.lock();
            eprintln!(
                "{:>4.0}s sent {sent} received {} p50 {:.2} ms p99 {:.2} ms",
                start.elapsed().as_secs_f64(),
                received.load(Ordering::Relaxed),
                h.value_at_quantile(0.5) as f64 / 1e6,
                h.value_at_quantile(0.99) as f64 / 1e6
            );
        }
    }
    let sent_for = start.elapsed();
    // Let the tail arrive (bounded).
    let drain = Instant::now();
    while received.load(Ordering::Acquire) < sent && drain.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let done = start.elapsed();
    stop.store(true, Ordering::Release);
    receiver.join().expect("receiver");
    if let Some(relay) = relay {
        relay.join().expect("relay");
    }
    drop(bus);

    let got = received.load(Ordering::Acquire);
    let (rt, ack) = (round_trip.lock(), acks.histogram.lock());
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1e6;
    let result = serde_json::json!({
        "brokers": args.brokers,
        "hops": args.hops,
        "target_rate": args.rate,
        "fetch_wait_ms": args.fetch_wait_ms,
        "linger_ms": args.linger_ms,
        "warmup_secs": args.warmup,
        "sent": sent,
        "received": got,
        "failed_deliveries": acks.failed.load(Ordering::Relaxed),
        "sent_per_second": sent as f64 / sent_for.as_secs_f64(),
        "received_per_second": got as f64 / done.as_secs_f64(),
        "round_trip_ms": {"p50": ms(&rt, 0.5), "p90": ms(&rt, 0.9), "p99": ms(&rt, 0.99), "p999": ms(&rt, 0.999), "max": rt.max() as f64 / 1e6},
        "ack_ms": {"p50": ms(&ack, 0.5), "p90": ms(&ack, 0.9), "p99": ms(&ack, 0.99), "p999": ms(&ack, 0.999), "max": ack.max() as f64 / 1e6},
    });
    #[allow(clippy::print_stdout, reason = "the bench's report")]
    {
        println!("{}", serde_json::to_string_pretty(&result)?);
    }
    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_vec_pretty(&result)?).with_context(|| format!("{}", path.display()))?;
    }
    Ok(())
}
