//! The Kafka backbone (rdkafka): the same [`Backbone`] over a real broker, so every role can
//! run in its own process and scale out by partitions.
//!
//! # Producers
//! Two idempotent producers (`enable.idempotence`, so `acks=all` and no reordering or
//! duplicates within a producer session):
//! - **commands** (`tachyon.orders`): what a gateway acknowledges to a trader. Deliveries
//!   time out after `delivery_timeout_ms`, so a trader gets a 503 instead of a hung
//!   request, and `produce` refuses at once while the health check sees no broker.
//! - **outputs** (executions, market data, dead letters, snapshots): what the engine and
//!   the consumers publish. They never time out (librdkafka retries until the broker is
//!   back; a full queue is [`BusError::Full`], which the engine waits on) and use the
//!   gapless guarantee: a record that still fails poisons the backbone (every later produce
//!   and flush fails), so the process stops and its recovery re-derives the outputs instead
//!   of leaving a gap.
//!
//! A third, plain (not idempotent) producer writes the engines' shard leases.
//!
//! Each produced batch shares one delivery record; its acknowledgement runs once every
//! record of the batch is acknowledged by the broker (with acks=all), with their offsets.
//!
//! # Readers
//! A reader is an assign-only consumer of one partition (no group membership: the caller
//! owns the partition), reading from an exact offset; payloads are copied out of
//! librdkafka's buffers at once, so no borrowed message outlives a poll. Consumer offsets
//! are committed per group through one group-named client each, without joining the group.
//!
//! # Topics
//! `<prefix>tachyon.orders`, `…executions`, `…marketdata`, `…dlq` and `…snapshots`, created
//! with the configured partition count if missing; an existing topic with another count is
//! refused (symbols would land on the wrong shard).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tachyon_proto::Topic;

use crate::backbone::{valid_group, Ack, Backbone, BusError, PartitionReader, Record};

/// Settings of the Kafka backbone. The defaults favour latency: no linger, small batches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]`.
    pub brokers: String,
    /// Partitions of every topic (created with this count; existing ones must match).
    pub partitions: u32,
    /// Prepended to every topic name (separate exchanges or test runs on one cluster).
    pub topic_prefix: String,
    /// Replication factor of the topics this creates (3 on a production cluster).
    pub replication_factor: i32,
    /// `linger.ms`: how long a producer waits to fill a batch (0: send at once).
    pub linger_ms: u32,
    /// `batch.size` in bytes.
    pub batch_bytes: u32,
    /// `compression.type`: none, lz4, zstd, snappy or gzip.
    pub compression: String,
    /// How long a command may wait for the broker before its sender gets an error.
    pub delivery_timeout_ms: u32,
    /// Records a producer queues (`queue.buffering.max.messages`) before [`BusError::Full`].
    pub queue_messages: u32,
    /// `fetch.wait.max.ms` of readers: how long the broker holds an empty fetch.
    pub fetch_wait_ms: u32,
    /// `client.id` prefix, to tell processes apart in the broker's logs.
    pub client_id: String,
}

impl KafkaConfig {
    /// Defaults for `brokers` with `partitions`.
    pub fn new(brokers: impl Into<String>, partitions: u32) -> Self {
        Self {
            brokers: brokers.into(),
            partitions,
            topic_prefix: String::new(),
            replication_factor: 1,
            linger_ms: 0,
            batch_bytes: 1 << 20,
            compression: "none".into(),
            delivery_timeout_ms: 5_000,
            queue_messages: 100_000,
            fetch_wait_ms: 100,
            client_id: "tachyon".into(),
        }
    }

    /// The topic's name on the broker.
    pub fn topic_name(&self, topic: Topic) -> String {
        format!("{}{}", self.topic_prefix, topic.name())
    }

    fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            .set("socket.nagle.disable", "true")
            .set("log_level", "4");
        c
    }

    fn producer(&self, delivery_timeout_ms: u32) -> ClientConfig {
        let mut c = self.client();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", self.linger_ms.to_string())
            .set("batch.size", self.batch_bytes.to_string())
            .set("compression.type", &self.compression)
            .set("queue.buffering.max.messages", self.queue_messages.to_string())
            .set("message.timeout.ms", delivery_timeout_ms.to_string())
            .set("partitioner", "consistent");
        c
    }

    fn consumer(&self, group: &str) -> ClientConfig {
        let mut c = self.client();
        c.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "error")
            .set("fetch.wait.max.ms", self.fetch_wait_ms.to_string())
            .set("fetch.error.backoff.ms", "50")
            .set("reconnect.backoff.ms", "50")
            .set("reconnect.backoff.max.ms", "1000");
        c
    }
}

fn kafka_error(what: &str, e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(format!("kafka {what}: {e}"))
}

/// What every client of one backbone shares: whether a broker answers, and whether an
/// output was lost.
#[derive(Debug, Default)]
struct Health {
    broker_up: AtomicBool,
    /// Set when an output record could not be delivered (see the module docs).
    /// (Set once, read on every produce: a lock-free load.)
    poisoned: OnceLock<String>,
}

impl Health {
    fn check(&self) -> Result<(), BusError> {
        match self.poisoned.get() {
            Some(reason) => Err(BusError::Unavailable(format!("an output record was lost: {reason}"))),
            None => Ok(()),
        }
    }
}

/// The delivery state of one produced batch.
struct Batch {
    remaining: AtomicUsize,
    first: AtomicU64,
    last: AtomicU64,
    error: Mutex<Option<String>>,
    ack: Mutex<Option<Ack>>,
}

impl Batch {
    fn new(records: usize, ack: Option<Ack>) -> Self {
        Self {
            remaining: AtomicUsize::new(records),
            first: AtomicU64::new(u64::MAX),
            last: AtomicU64::new(0),
            error: Mutex::new(None),
            ack: Mutex::new(ack),
        }
    }

    /// Counts one record done (`Ok(offset)` or its error); the last one runs the ack.
    fn done(&self, outcome: Result<u64, String>, health: &Health) {
        match outcome {
            Ok(offset) => {
                self.first.fetch_min(offset, Ordering::AcqRel);
                self.last.fetch_max(offset, Ordering::AcqRel);
            }
            Err(error) => {
                let mut slot = self.error.lock();
                if slot.is_none() {
                    *slot = Some(error);
                }
            }
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.finish(health);
        }
    }

    /// Forgets `n` records that were never queued.
    fn unqueued(&self, n: usize, health: &Health) {
        if n > 0 && self.remaining.fetch_sub(n, Ordering::AcqRel) == n {
            self.finish(health);
        }
    }

    fn finish(&self, health: &Health) {
        let error = self.error.lock().take();
        let Some(ack) = self.ack.lock().take() else {
            if let Some(error) = error {
                tracing::error!(%error, "an output record could not be delivered; the backbone stops taking writes");
                let _ = health.poisoned.set(error); // The first loss is the one reported.
            }
            return;
        };
        let first = self.first.load(Ordering::Acquire);
        ack(match error {
            Some(e) => Err(BusError::Unavailable(format!("the broker did not take the record: {e}"))),
            None if first == u64::MAX => Ok(0..0),
            None => Ok(first..self.last.load(Ordering::Acquire) + 1),
        });
    }
}

/// The producers' context: routes deliveries to their batch.
struct Deliveries {
    health: Arc<Health>,
}

impl ClientContext for Deliveries {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.health.broker_up.store(false, Ordering::Release);
        }
        tracing::warn!(%error, reason, "kafka client error");
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Arc<Batch>;

    fn delivery(&self, result: &DeliveryResult<'_>, batch: Arc<Batch>) {
        let outcome = match result {
            Ok(message) => u64::try_from(message.offset()).map_err(|_| "the broker gave no offset".to_string()),
            Err((error, _)) => Err(error.to_string()),
        };
        batch.done(outcome, &self.health);
    }
}

type KafkaProducer = ThreadedProducer<Deliveries>;

/// The Kafka backbone (see the module docs).
pub struct KafkaBus {
    config: KafkaConfig,
    names: Vec<String>,
    commands: KafkaProducer,
    outputs: KafkaProducer,
    /// Shard leases: not idempotent (a repeated renewal is harmless), so no producer state
    /// the broker could lose and refuse after a restart.
    leases: KafkaProducer,
    /// Metadata and watermark queries.
    meta: Arc<BaseConsumer>,
    /// One client per consumer group, for commits.
    groups: Mutex<HashMap<String, Arc<BaseConsumer>>>,
    health: Arc<Health>,
    stop: Arc<AtomicBool>,
    monitor: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for KafkaBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBus").field("config", &self.config).finish_non_exhaustive()
    }
}

/// How a producer guards against duplicates and gaps.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ProducerKind {
    /// Idempotent (no duplicates or reordering within a session).
    Idempotent,
    /// Idempotent, and a record that fails for good fails the producer (no gaps).
    Gapless,
    /// Neither: for records whose repetition is harmless.
    Plain,
}

/// Delivery timeout of lease records (a renewal that cannot be written is simply retried).
const LEASE_TIMEOUT_MS: u32 = 3_000;

/// How long one metadata, watermark or commit round trip may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

impl KafkaBus {
    /// Connects, creates missing topics, checks partition counts and starts the health
    /// check. Waits up to `REQUEST_TIMEOUT` for a broker.
    ///
    /// # Errors
    /// [`BusError::Unavailable`]: no broker, a topic with another partition count, a
    /// configuration librdkafka refuses.
    pub fn connect(config: &KafkaConfig) -> Result<Self, BusError> {
        if config.partitions == 0 {
            return Err(BusError::Unavailable("at least one partition is needed".into()));
        }
        let health = Arc::new(Health::default());
        let producer = |timeout_ms: u32, kind: ProducerKind| -> Result<KafkaProducer, BusError> {
            let mut c = config.producer(timeout_ms);
            match kind {
                ProducerKind::Gapless => {
                    c.set("enable.gapless.guarantee", "true");
                }
                ProducerKind::Plain => {
                    c.set("enable.idempotence", "false");
                }
                ProducerKind::Idempotent => {}
            }
            c.create_with_context(Deliveries { health: Arc::clone(&health) }).map_err(|e| kafka_error("producer", e))
        };
        let commands = producer(config.delivery_timeout_ms.max(1), ProducerKind::Idempotent)?;
        let outputs = producer(0, ProducerKind::Gapless)?;
        let leases = producer(LEASE_TIMEOUT_MS, ProducerKind::Plain)?;
        let meta: BaseConsumer =
            config.consumer("tachyon-metadata").create().map_err(|e| kafka_error("metadata client", e))?;
        let bus = Self {
            config: config.clone(),
            names: Topic::ALL.iter().map(|t| config.topic_name(*t)).collect(),
            commands,
            outputs,
            leases,
            meta: Arc::new(meta),
            groups: Mutex::new(HashMap::new()),
            health,
            stop: Arc::new(AtomicBool::new(false)),
            monitor: Mutex::new(None),
        };
        // One round trip first, so that a wrong address fails in one timeout, not one per topic.
        bus.meta
            .fetch_metadata(None, REQUEST_TIMEOUT)
            .map_err(|e| kafka_error(&format!("no broker answers at {}", config.brokers), e))?;
        bus.ensure_topics()?;
        bus.health.broker_up.store(true, Ordering::Release);
        bus.start_monitor()?;
        Ok(bus)
    }

    /// The settings this backbone runs with.
    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    fn name(&self, topic: Topic) -> &str {
        let index = Topic::ALL.iter().position(|t| *t == topic).expect("Topic::ALL lists every topic");
        &self.names[index]
    }

    fn check_partition(&self, topic: Topic, partition: u32) -> Result<i32, BusError> {
        if partition >= self.config.partitions {
            return Err(BusError::NoSuchPartition { topic, partition });
        }
        Ok(i32::try_from(partition).expect("partition counts fit in i32"))
    }

    /// Partitions of `name` on the broker (0 when it does not exist yet).
    fn partitions_of(&self, name: &str) -> Result<usize, BusError> {
        let metadata = self.meta.fetch_metadata(Some(name), REQUEST_TIMEOUT).map_err(|e| kafka_error("metadata", e))?;
        Ok(metadata
            .topics()
            .iter()
            .find(|t| t.name() == name && t.error().is_none())
            .map_or(0, |t| t.partitions().len()))
    }

    fn ensure_topics(&self) -> Result<(), BusError> {
        let admin: AdminClient<DefaultClientContext> =
            self.config.client().create().map_err(|e| kafka_error("admin client", e))?;
        let partitions = i32::try_from(self.config.partitions).expect("partition counts fit in i32");
        let missing: Vec<&String> =
            self.names.iter().filter(|n| self.partitions_of(n).map_or(true, |count| count == 0)).collect();
        if !missing.is_empty() {
            let keys = self.name(Topic::Keys);
            let topics: Vec<NewTopic<'_>> = missing
                .iter()
                .map(|name| {
                    let topic =
                        NewTopic::new(name, partitions, TopicReplication::Fixed(self.config.replication_factor));
                    // The keys topic keeps the last event of every key for as long as the cluster lives.
                    if name.as_str() == keys {
                        topic.set("cleanup.policy", "compact")
                    } else {
                        topic
                    }
                })
                .collect();
            let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
            let results = futures_executor::block_on(admin.create_topics(&topics, &options))
                .map_err(|e| kafka_error("create topics", e))?;
            for result in results {
                match result {
                    Ok(name) => tracing::info!(topic = name, partitions, "created a topic"),
                    Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((name, code)) => return Err(kafka_error(&format!("create topic {name}"), code)),
                }
            }
        }
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        for name in &self.names {
            loop {
                let found = self.partitions_of(name)?;
                if found == self.config.partitions as usize {
                    break;
                }
                if found > 0 {
                    return Err(BusError::Unavailable(format!(
                        "topic {name} has {found} partitions; this configuration has {} (use the same count or another topic prefix)",
                        self.config.partitions
                    )));
                }
                if Instant::now() > deadline {
                    return Err(BusError::Unavailable(format!("topic {name} did not appear after creation")));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// Polls the broker's metadata every second: `is_healthy` and the commands producer
    /// follow it, so a gateway refuses at once while the broker is away.
    fn start_monitor(&self) -> Result<(), BusError> {
        let (meta, health, stop) = (Arc::clone(&self.meta), Arc::clone(&self.health), Arc::clone(&self.stop));
        let probe_topic = self.name(Topic::Orders).to_string();
        let handle = std::thread::Builder::new()
            .name("kafka-health".into())
            .spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    let up = meta.fetch_metadata(Some(&probe_topic), Duration::from_secs(2)).is_ok();
                    if health.broker_up.swap(up, Ordering::AcqRel) != up {
                        if up {
                            tracing::info!("kafka broker reachable again");
                        } else {
                            tracing::warn!("kafka broker unreachable");
                        }
                    }
                    let until = Instant::now() + Duration::from_secs(1);
                    while !stop.load(Ordering::Acquire) && Instant::now() < until {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            })
            .map_err(|e| BusError::Unavailable(format!("cannot start the health thread: {e}")))?;
        *self.monitor.lock() = Some(handle);
        Ok(())
    }

    fn group(&self, group: &str) -> Result<Arc<BaseConsumer>, BusError> {
        if !valid_group(group) {
            return Err(BusError::InvalidGroup(group.to_string()));
        }
        let mut groups = self.groups.lock();
        if let Some(client) = groups.get(group) {
            return Ok(Arc::clone(client));
        }
        let client: BaseConsumer = self.config.consumer(group).create().map_err(|e| kafka_error("group client", e))?;
        let client = Arc::new(client);
        groups.insert(group.to_string(), Arc::clone(&client));
        Ok(client)
    }

    fn partition_list(&self, topic: Topic, partition: i32, offset: Offset) -> Result<TopicPartitionList, BusError> {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(self.name(topic), partition, offset).map_err(|e| kafka_error("offsets", e))?;
        Ok(list)
    }

    /// Commands through the producer whose records time out, what the engine derives (and
    /// must never leave a gap in) through the gapless one, leases through their own: a
    /// renewal in flight across a broker restart must disturb neither.
    fn producer_for(&self, topic: Topic) -> &KafkaProducer {
        match topic {
            Topic::Orders | Topic::Keys => &self.commands,
            Topic::Leases => &self.leases,
            Topic::Executions | Topic::MarketData | Topic::DeadLetter | Topic::Snapshots => &self.outputs,
        }
    }

    fn send(
        &self,
        topic: Topic,
        partition: u32,
        key: Option<&[u8]>,
        payloads: &mut Vec<Vec<u8>>,
        ack: Option<Ack>,
    ) -> Result<(), BusError> {
        let p = self.check_partition(topic, partition)?;
        self.health.check()?;
        if topic == Topic::Orders && !self.health.broker_up.load(Ordering::Acquire) {
            return Err(BusError::Unavailable("no Kafka broker reachable".into()));
        }
        let producer = self.producer_for(topic);
        let batch = Arc::new(Batch::new(payloads.len(), ack));
        let name = self.name(topic);
        for (sent, payload) in payloads.iter().enumerate() {
            let mut record = BaseRecord::with_opaque_to(name, Arc::clone(&batch)).partition(p).payload(payload);
            if let Some(key) = key.filter(|k| !k.is_empty()) {
                record = record.key(key);
            }
            if let Err((error, _)) = producer.send(record) {
                batch.unqueued(payloads.len() - sent, &self.health);
                payloads.drain(..sent);
                return Err(match error.rdkafka_error_code() {
                    Some(RDKafkaErrorCode::QueueFull) => BusError::Full { topic, partition },
                    _ => kafka_error("produce", error),
                });
            }
        }
        payloads.clear();
        Ok(())
    }

    /// Stops the health check and waits (bounded) for every queued record to be delivered.
    pub fn close(&self) {
        self.stop.store(true, Ordering::Release);
        for producer in [&self.commands, &self.outputs, &self.leases] {
            if let Err(error) = producer.flush(REQUEST_TIMEOUT) {
                tracing::warn!(%error, "records still undelivered at close");
            }
        }
        if let Some(handle) = self.monitor.lock().take() {
            let _ = handle.join();
        }
    }
}

impl Drop for KafkaBus {
    fn drop(&mut self) {
        self.close();
    }
}

impl Backbone for KafkaBus {
    fn partitions(&self) -> u32 {
        self.config.partitions
    }

    fn produce(
        &self,
        topic: Topic,
        partition: u32,
        payloads: &mut Vec<Vec<u8>>,
        ack: Option<Ack>,
    ) -> Result<(), BusError> {
        self.send(topic, partition, None, payloads, ack)
    }

    fn produce_keyed(
        &self,
        topic: Topic,
        partition: u32,
        key: &[u8],
        payloads: &mut Vec<Vec<u8>>,
        ack: Option<Ack>,
    ) -> Result<(), BusError> {
        self.send(topic, partition, Some(key), payloads, ack)
    }

    fn flush(&self, topic: Topic, partition: u32, timeout: Duration) -> Result<(), BusError> {
        self.check_partition(topic, partition)?;
        self.producer_for(topic).flush(timeout).map_err(|e| kafka_error("flush", e))?;
        self.health.check()
    }

    fn reader(&self, topic: Topic, partition: u32, offset: u64) -> Result<Box<dyn PartitionReader>, BusError> {
        let p = self.check_partition(topic, partition)?;
        if offset > self.end_offset(topic, partition)? {
            return Err(BusError::OffsetOutOfRange { topic, partition, offset });
        }
        let consumer: BaseConsumer =
            self.config.consumer("tachyon-reader").create().map_err(|e| kafka_error("reader", e))?;
        let start = i64::try_from(offset).map_err(|_| BusError::OffsetOutOfRange { topic, partition, offset })?;
        consumer
            .assign(&self.partition_list(topic, p, Offset::Offset(start))?)
            .map_err(|e| kafka_error("assign", e))?;
        Ok(Box::new(KafkaReader { consumer, topic, partition, next: offset, last_warning: None }))
    }

    fn end_offset(&self, topic: Topic, partition: u32) -> Result<u64, BusError> {
        let p = self.check_partition(topic, partition)?;
        let (_, high) = self
            .meta
            .fetch_watermarks(self.name(topic), p, REQUEST_TIMEOUT)
            .map_err(|e| kafka_error("watermarks", e))?;
        Ok(u64::try_from(high).unwrap_or(0))
    }

    fn commit(&self, group: &str, topic: Topic, partition: u32, next_offset: u64) -> Result<(), BusError> {
        let client = self.group(group)?;
        let p = self.check_partition(topic, partition)?;
        let offset = i64::try_from(next_offset).map_err(|_| kafka_error("commit", "offset beyond i64"))?;
        client
            .commit(&self.partition_list(topic, p, Offset::Offset(offset))?, CommitMode::Sync)
            .map_err(|e| kafka_error("commit", e))
    }

    fn committed(&self, group: &str, topic: Topic, partition: u32) -> Result<Option<u64>, BusError> {
        let client = self.group(group)?;
        let p = self.check_partition(topic, partition)?;
        let list = client
            .committed_offsets(self.partition_list(topic, p, Offset::Invalid)?, REQUEST_TIMEOUT)
            .map_err(|e| kafka_error("committed offsets", e))?;
        let offset = list.find_partition(self.name(topic), p).map(|e| e.offset());
        Ok(match offset {
            Some(Offset::Offset(n)) => u64::try_from(n).ok(),
            _ => None,
        })
    }

    fn is_healthy(&self) -> bool {
        self.health.broker_up.load(Ordering::Acquire) && self.health.check().is_ok()
    }

    fn lost_writes(&self) -> Option<String> {
        self.health.poisoned.get().cloned()
    }

    fn close(&self) {
        KafkaBus::close(self);
    }
}

/// Reads one partition through an assign-only consumer.
struct KafkaReader {
    consumer: BaseConsumer,
    topic: Topic,
    partition: u32,
    next: u64,
    /// When the last transient error was logged (they repeat while a broker is away).
    last_warning: Option<Instant>,
}

impl KafkaReader {
    /// Takes one message; `Ok(false)` when none came within `timeout`.
    fn take(&mut self, out: &mut Vec<Record>, timeout: Duration) -> Result<bool, BusError> {
        let (offset, payload) = match self.consumer.poll(timeout) {
            None => return Ok(false),
            Some(Ok(message)) => {
                // Copied out at once: a borrowed message must not outlive the consumer.
                let payload: Arc<[u8]> = Arc::from(message.payload().unwrap_or_default());
                (message.offset(), payload)
            }
            Some(Err(error)) => {
                if error.rdkafka_error_code() == Some(RDKafkaErrorCode::OffsetOutOfRange) {
                    return Err(BusError::OffsetOutOfRange {
                        topic: self.topic,
                        partition: self.partition,
                        offset: self.next,
                    });
                }
                // Transport errors come and go with the broker; librdkafka reconnects.
                if self.last_warning.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(topic = %self.topic, partition = self.partition, %error, "kafka read error; retrying");
                    self.last_warning = Some(Instant::now());
                }
                return Ok(false);
            }
        };
        let offset = u64::try_from(offset).map_err(|_| kafka_error("read", "a record without an offset"))?;
        if offset < self.next {
            return Ok(true); // Already returned (a refetch after a reconnect).
        }
        out.push(Record { offset, payload });
        self.next = offset + 1;
        Ok(true)
    }
}

impl PartitionReader for KafkaReader {
    fn poll(&mut self, out: &mut Vec<Record>, max: usize, timeout: Duration) -> Result<usize, BusError> {
        let before = out.len();
        let deadline = Instant::now() + timeout;
        // Wait for the first record, then take whatever else is already fetched.
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.take(out, left)? {
                break;
            }
            if left.is_zero() {
                return Ok(0);
            }
        }
        while out.len() - before < max && self.take(out, Duration::ZERO)? {}
        Ok(out.len() - before)
    }

    fn position(&self) -> u64 {
        self.next
    }
}
