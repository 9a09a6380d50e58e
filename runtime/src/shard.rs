//! One shard on a backbone (Kafka, or any [`Backbone`]): a thread that owns partition
//! `p` of the machine's input topic, applies each poll's records as one batch and
//! publishes the batch's outputs with one produce per output topic.
//!
//! Records that cannot be decoded go to `tachyon.dlq` with the error; the decodable ones
//! around them are applied in order. Recovery and exactly-once output are the
//! [`crate::stage`]'s. Within one process on the embedded backbone the
//! [`crate::pipeline`] is used instead: it takes commands without a round trip through
//! a log reader.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tachyon_bus::{dead_letter_json, produce_blocking, Backbone, Record};
use tachyon_proto::latency::Latency;
use tachyon_proto::Topic;

use crate::follow::{follow, Control, FollowConfig, Polled};
use crate::machine::{Machine, Outputs};
use crate::stage::{Encoded, ShardError, ShardStatus, SnapshotPolicy, Stage};

/// How a shard runs.
#[derive(Clone, Debug)]
pub struct ShardConfig {
    pub partition: u32,
    /// The topic the machine reads (`tachyon.orders` for matching).
    pub input: Topic,
    pub snapshots: SnapshotPolicy,
    /// Most input records taken per poll.
    pub batch_max: usize,
    /// Where the shard records its hops (command taken, processing time).
    pub latency: Arc<Latency>,
    /// Set when this process lost the shard to another engine (its lease, distributed
    /// mode): the shard stops at once, before publishing more.
    pub fenced: Option<Arc<AtomicBool>>,
}

/// Runs the shard until `stop` is set *and* every input record present at that time was
/// processed (a drain), then flushes its outputs and writes a final snapshot.
///
/// # Errors
/// [`ShardError`] when recovery is impossible (a damaged output log, a snapshot for other
/// symbols, outputs older than the newest snapshot) or the backbone fails for good.
pub fn run_shard<M: Machine>(
    bus: Arc<dyn Backbone>,
    machine: M,
    config: ShardConfig,
    stop: Arc<AtomicBool>,
    status: Arc<ShardStatus>,
) -> Result<(), ShardError> {
    let partition = config.partition;
    let (stage, next_input) = Stage::recover(
        machine,
        partition,
        bus.as_ref(),
        config.snapshots.clone(),
        status,
        Arc::clone(&config.latency),
    )?;
    let mut shard = Shard {
        bus: Arc::clone(&bus),
        stage,
        config,
        inputs: Vec::new(),
        outputs: Outputs::default(),
        encoded: Encoded::default(),
    };
    let mut reader = bus.reader(shard.config.input, partition, next_input)?;
    let follow_config = FollowConfig::new(shard.config.batch_max, Duration::from_millis(50));
    let position = follow(reader.as_mut(), follow_config, M::decode_input, |polled| shard.step(polled, &stop))?;
    if shard.stage.has_unsnapshotted() {
        shard.stage.snapshot(bus.as_ref(), position)?;
    }
    tracing::info!(partition, position, out_seq = shard.stage.out_seq, "shard stopped");
    Ok(())
}

struct Shard<M: Machine> {
    bus: Arc<dyn Backbone>,
    stage: Stage<M>,
    config: ShardConfig,
    /// The current run of decodable inputs (reused).
    inputs: Vec<M::Input>,
    outputs: Outputs<M::Output>,
    encoded: Encoded,
}

impl<M: Machine> Shard<M> {
    /// One poll's worth: apply, publish, check for the end of the input and snapshots.
    fn step(&mut self, polled: Polled<'_, M::Input>, stop: &AtomicBool) -> Result<Control, ShardError> {
        let partition = self.config.partition;
        // Checked while idle too: the shard stops (and its process restarts into
        // recovery) without waiting for the next command to find the backbone broken.
        if let Some(reason) = self.bus.lost_writes() {
            return Err(ShardError::Inconsistent {
                partition,
                reason: format!("an output was lost ({reason}); a restart re-derives it"),
            });
        }
        if self.config.fenced.as_ref().is_some_and(|f| f.load(Ordering::Acquire)) {
            return Err(ShardError::Inconsistent {
                partition,
                reason: "another engine took over this shard (its lease); stopping".into(),
            });
        }
        let n = polled.items.len();
        let mut run_start = None;
        for item in polled.items.drain(..) {
            let record = Record { offset: item.offset, payload: item.payload };
            match item.decoded {
                Ok(input) => {
                    run_start.get_or_insert(record.offset);
                    self.inputs.push(input);
                }
                Err(error) => {
                    self.apply_run(run_start.take())?;
                    self.dead_letter(&record, &error.to_string())?;
                }
            }
        }
        self.apply_run(run_start)?;
        self.publish()?;
        let position = polled.next;
        // Asking for the end of the input costs a broker round trip on Kafka: only while
        // recovering or draining, not on every batch.
        let status = &self.stage.status;
        let check_end = !status.caught_up.load(Ordering::Relaxed) || stop.load(Ordering::Acquire);
        if check_end && (n == 0 || n < self.config.batch_max) {
            let end = self.bus.end_offset(self.config.input, partition)?;
            if position >= end {
                if !status.caught_up.swap(true, Ordering::Release) {
                    tracing::info!(partition, position, out_seq = self.stage.out_seq, "shard caught up");
                }
                if stop.load(Ordering::Acquire) {
                    return Ok(Control::Stop);
                }
            }
        }
        self.stage.snapshot_if_due(&self.bus, position);
        Ok(Control::Continue)
    }

    /// Applies the inputs gathered since `first_offset` and queues their new outputs.
    fn apply_run(&mut self, first_offset: Option<u64>) -> Result<(), ShardError> {
        let Some(first) = first_offset else { return Ok(()) };
        self.stage.apply(&self.inputs, first, &mut self.outputs);
        self.inputs.clear();
        self.stage.encode_new(&self.outputs, &mut self.encoded)
    }

    fn dead_letter(&mut self, record: &Record, error: &str) -> Result<(), ShardError> {
        let partition = self.config.partition;
        self.stage.status.dead_letters.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(partition, offset = record.offset, %error, "undecodable input sent to the dead-letter topic");
        if self.stage.replaying() {
            return Ok(()); // It was dead-lettered before the restart.
        }
        let letter = dead_letter_json(self.config.input, partition, record, error, None);
        Ok(produce_blocking(self.bus.as_ref(), Topic::DeadLetter, partition, &mut vec![letter])?)
    }

    /// Produces the queued outputs (one produce per topic), retrying while the backbone is
    /// full.
    fn publish(&mut self) -> Result<(), ShardError> {
        let partition = self.config.partition;
        for (topic, batch) in &mut self.encoded.topics {
            if !batch.is_empty() {
                produce_blocking(self.bus.as_ref(), *topic, partition, batch)?;
            }
        }
        self.stage.published_up_to_now();
        Ok(())
    }
}
