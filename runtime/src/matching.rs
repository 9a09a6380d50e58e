//! The matching core as a [`Machine`]: command envelopes in, [`ShardOutput`] records out
//! (the command's private events on `tachyon.executions`, always; its public events on
//! `tachyon.marketdata`, when it has any, at the next sequence).
//!
//! Commands an upstream stage forwarded (the risk stage) carry their [`Origin`]; per
//! origin partition the machine remembers the last sequence it applied and skips one at
//! or below it (a replayed hop after the upstream stage restarted), writing an empty
//! executions record so the runtime's one-record-per-input bookkeeping holds. Snapshots
//! carry those positions ahead of the engine's image (older snapshots, the bare image,
//! still restore).

use tachyon_engine::{Engine, EngineConfig, EngineSnapshot, EventSink};
use tachyon_proto::wire::{decode_command, decode_output, encode_command_into, encode_output_into};
use tachyon_proto::wire::{CommandEnvelope, Origin, ShardOutput, WireError};
use tachyon_proto::{Command, Event, Timestamp, Topic};

use crate::machine::{Machine, OutputRecord, Outputs};

/// One partition's matching engine.
#[derive(Debug)]
pub struct Matching {
    engine: Engine,
    config: EngineConfig,
    partition: u32,
    /// The current command's events (reused).
    events: Vec<Event>,
    /// Per origin partition: the last forwarded sequence applied.
    origins: Vec<u64>,
}

/// Starts a snapshot that carries origin positions (a bare engine image does not).
const SNAPSHOT_MAGIC: &[u8; 8] = b"TCHMAT2\0";

impl Matching {
    pub fn new(config: EngineConfig, partition: u32) -> Self {
        Self {
            engine: Engine::new(config.clone()),
            config,
            partition,
            events: Vec::with_capacity(64),
            origins: Vec::new(),
        }
    }

    /// The last sequence applied from origin partition `partition` (0: none).
    pub fn applied_through(&self, partition: u32) -> u64 {
        self.origins.get(partition as usize).copied().unwrap_or(0)
    }

    /// Records `origin` as applied; `false` if it was applied before.
    fn admit(&mut self, origin: Option<Origin>) -> bool {
        let Some(o) = origin else { return true };
        let p = o.partition as usize;
        if self.origins.len() <= p {
            self.origins.resize(p + 1, 0);
        }
        if o.seq <= self.origins[p] {
            return false;
        }
        self.origins[p] = o.seq;
        true
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub(crate) fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    pub(crate) fn partition(&self) -> u32 {
        self.partition
    }
}

impl OutputRecord for ShardOutput {
    fn reset(&mut self) {
        ShardOutput::reset(self);
    }

    fn seq(&self) -> u64 {
        self.seq
    }

    fn set_seq(&mut self, seq: u64) {
        self.seq = seq;
    }

    fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        encode_output_into(self, out)
    }

    fn decode_seq(payload: &[u8]) -> Result<u64, WireError> {
        decode_output(payload).map(|o| o.seq)
    }
}

impl Machine for Matching {
    type Input = CommandEnvelope;
    type Output = ShardOutput;

    const OUTPUT_TOPICS: &'static [Topic] = &[Topic::Executions, Topic::MarketData];

    fn encode_input(input: &CommandEnvelope, out: &mut Vec<u8>) -> Result<(), WireError> {
        encode_command_into(input, out)
    }

    fn decode_input(payload: &[u8]) -> Result<CommandEnvelope, WireError> {
        decode_command(payload)
    }

    fn timestamp(input: &CommandEnvelope) -> Timestamp {
        input.command.timestamp()
    }

    fn apply(&mut self, inputs: &[CommandEnvelope], first_offset: u64, out: &mut Outputs<ShardOutput>) {
        let fresh = inputs.iter().all(|i| i.origin.is_none_or(|o| o.seq > self.applied_through(o.partition)));
        if fresh {
            for input in inputs {
                self.admit(input.origin);
            }
            let mut split =
                Split { inputs, next: 0, first_offset, partition: self.partition, events: &mut self.events, out };
            self.engine.process_batch(inputs, &mut split);
            return;
        }
        // A replayed hop in the batch (rare: just after an upstream restart): one by one.
        for (i, input) in inputs.iter().enumerate() {
            let offset = first_offset + i as u64;
            if self.admit(input.origin) {
                let one = std::slice::from_ref(input);
                let mut split = Split {
                    inputs: one,
                    next: 0,
                    first_offset: offset,
                    partition: self.partition,
                    events: &mut self.events,
                    out,
                };
                self.engine.process_batch(one, &mut split);
            } else {
                let mut split = Split {
                    inputs: std::slice::from_ref(input),
                    next: 0,
                    first_offset: offset,
                    partition: self.partition,
                    events: &mut self.events,
                    out,
                };
                split.end_command();
            }
        }
    }

    fn snapshot(&self) -> Result<Vec<u8>, String> {
        let image = self.engine.snapshot().to_bytes().map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(image.len() + 12 + 8 * self.origins.len());
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&(self.origins.len() as u32).to_le_bytes());
        for seq in &self.origins {
            out.extend_from_slice(&seq.to_le_bytes());
        }
        out.extend_from_slice(&image);
        Ok(out)
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        let (origins, image) = match snapshot.strip_prefix(SNAPSHOT_MAGIC) {
            Some(rest) => {
                let count = rest.get(..4).ok_or("truncated snapshot")?;
                let count = u32::from_le_bytes(count.try_into().map_err(|_| "truncated snapshot")?) as usize;
                let table = rest.get(4..4 + 8 * count).ok_or("truncated snapshot")?;
                let origins =
                    table.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default())).collect();
                (origins, &rest[4 + 8 * count..])
            }
            None => (Vec::new(), snapshot),
        };
        let image = EngineSnapshot::from_bytes(image).map_err(|e| e.to_string())?;
        self.engine = Engine::restore(self.config.clone(), &image).map_err(|e| e.to_string())?;
        self.origins = origins;
        Ok(())
    }

    fn size(&self) -> usize {
        self.engine.open_orders()
    }
}

/// Splits the engine's event stream into output records at each command's end.
struct Split<'a> {
    inputs: &'a [CommandEnvelope],
    next: usize,
    first_offset: u64,
    partition: u32,
    events: &'a mut Vec<Event>,
    out: &'a mut Outputs<ShardOutput>,
}

/// Writes one command's output records: its executions record (its private events,
/// `extra` fills in more) and, when it changed public market data, its market-data record.
pub(crate) fn write_records(
    out: &mut Outputs<ShardOutput>,
    partition: u32,
    offset: u64,
    input: &CommandEnvelope,
    events: &[Event],
    extra: impl FnOnce(&mut ShardOutput),
) {
    let public = events.iter().any(Event::is_public);
    let stamp = |record: &mut ShardOutput| {
        record.partition = partition;
        record.input_offset = offset;
        record.request_id = input.request_id;
        record.gateway_id = input.gateway_id;
        record.timestamp = input.command.timestamp();
    };
    let execution = out.push(Topic::Executions);
    stamp(execution);
    execution.market_data = public;
    execution.rejected = match input.command {
        Command::New(order) if events.iter().any(|e| matches!(e, Event::Rejected(_))) => Some(order),
        _ => None,
    };
    execution.events.extend(events.iter().filter(|e| e.is_private()).copied());
    extra(execution);
    if public {
        let md = out.push(Topic::MarketData);
        stamp(md);
        md.events.extend(events.iter().filter(|e| e.is_public()).copied());
    }
}

impl EventSink for Split<'_> {
    #[inline]
    fn emit(&mut self, event: Event) {
        self.events.push(event);
    }

    fn end_command(&mut self) {
        let input = &self.inputs[self.next];
        let offset = self.first_offset + self.next as u64;
        write_records(self.out, self.partition, offset, input, self.events, |_| {});
        self.events.clear();
        self.out.end_input();
        self.next += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tachyon_proto::symbol::DEFAULT_SYMBOLS;
    use tachyon_proto::{AccountId, NewOrder, OrderId, OrderType, Price, Qty, SelfTradePrevention, Side, SymbolId};
    use tachyon_proto::{SymbolSpec, TimeInForce};

    fn machine() -> Matching {
        let symbols = DEFAULT_SYMBOLS.iter().map(|d| SymbolSpec::from_def(d).expect("valid")).collect();
        Matching::new(EngineConfig { symbols, limits: tachyon_engine::RiskLimits::default() }, 0)
    }

    fn order(id: u64, origin: Option<Origin>) -> CommandEnvelope {
        let command = Command::New(NewOrder {
            order_id: OrderId(id),
            account: AccountId::parse("alice").expect("valid"),
            symbol: SymbolId(1),
            side: Side::Buy,
            order_type: OrderType::Limit,
            time_in_force: TimeInForce::Gtc,
            post_only: false,
            stp: SelfTradePrevention::CancelNewest,
            price: Some(Price(100)),
            qty: Qty(1),
            client_order_id: None,
            timestamp: Timestamp(1),
        });
        CommandEnvelope { request_id: id, gateway_id: 0, command, origin }
    }

    fn from(partition: u32, seq: u64) -> Option<Origin> {
        Some(Origin { partition, seq })
    }

    #[test]
    fn a_replayed_forwarded_command_is_skipped_with_an_empty_record() {
        let mut m = machine();
        let mut out = Outputs::default();
        m.apply(&[order(1, from(0, 1)), order(2, from(1, 1)), order(3, None)], 0, &mut out);
        assert_eq!(m.engine().open_orders(), 3);
        out.clear();
        // Origin 0 seq 1 again (a replay), then seq 2 (new), and origin 1 seq 1 again.
        m.apply(&[order(1, from(0, 1)), order(4, from(0, 2)), order(2, from(1, 1))], 3, &mut out);
        assert_eq!(out.inputs(), 3);
        assert!(out.of_input(0).iter().all(|(_, r)| r.events.is_empty()), "skipped");
        assert!(!out.of_input(1)[0].1.events.is_empty(), "applied");
        assert_eq!(out.of_input(1)[0].1.input_offset, 4);
        assert!(out.of_input(2).iter().all(|(_, r)| r.events.is_empty()), "skipped");
        assert_eq!(m.engine().open_orders(), 4);
        assert_eq!((m.applied_through(0), m.applied_through(1), m.applied_through(7)), (2, 1, 0));
    }

    #[test]
    fn snapshots_keep_origin_positions_and_bare_engine_images_still_restore() {
        let mut m = machine();
        let mut out = Outputs::default();
        m.apply(&[order(1, from(2, 5))], 0, &mut out);
        let mut restored = machine();
        restored.restore(&m.snapshot().expect("serialises")).expect("restores");
        assert_eq!(restored.applied_through(2), 5);
        assert_eq!(restored.engine().open_orders(), 1);
        let bare = m.engine().snapshot().to_bytes().expect("serialises");
        let mut old = machine();
        old.restore(&bare).expect("an engine image from before origins restores");
        assert_eq!((old.engine().open_orders(), old.applied_through(2)), (1, 0));
    }
}
