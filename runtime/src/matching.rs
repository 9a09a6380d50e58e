//! The matching core as a [`Machine`]: command envelopes in, [`ShardOutput`] records out
//! (the command's private events on `tachyon.executions`, always; its public events on
//! `tachyon.marketdata`, when it has any, at the next sequence).

use tachyon_engine::{Engine, EngineConfig, EngineSnapshot, EventSink};
use tachyon_proto::wire::{decode_command, decode_output, encode_into, CommandEnvelope, ShardOutput, WireError};
use tachyon_proto::wire::{FORMAT_OUTPUT_V2, FORMAT_V1};
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
}

impl Matching {
    pub fn new(config: EngineConfig, partition: u32) -> Self {
        Self { engine: Engine::new(config.clone()), config, partition, events: Vec::with_capacity(64) }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
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
        encode_into(self, FORMAT_OUTPUT_V2, out)
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
        encode_into(input, FORMAT_V1, out)
    }

    fn decode_input(payload: &[u8]) -> Result<CommandEnvelope, WireError> {
        decode_command(payload)
    }

    fn timestamp(input: &CommandEnvelope) -> Timestamp {
        input.command.timestamp()
    }

    fn apply(&mut self, inputs: &[CommandEnvelope], first_offset: u64, out: &mut Outputs<ShardOutput>) {
        let mut split =
            Split { inputs, next: 0, first_offset, partition: self.partition, events: &mut self.events, out };
        self.engine.process_batch(inputs, &mut split);
    }

    fn snapshot(&self) -> Result<Vec<u8>, String> {
        self.engine.snapshot().to_bytes().map_err(|e| e.to_string())
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        let snapshot = EngineSnapshot::from_bytes(snapshot).map_err(|e| e.to_string())?;
        self.engine = Engine::restore(self.config.clone(), &snapshot).map_err(|e| e.to_string())?;
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

impl Split<'_> {
    fn record(&mut self, topic: Topic, input: &CommandEnvelope) -> &mut ShardOutput {
        let offset = self.first_offset + self.next as u64;
        let record = self.out.push(topic);
        record.partition = self.partition;
        record.input_offset = offset;
        record.request_id = input.request_id;
        record.gateway_id = input.gateway_id;
        record.timestamp = input.command.timestamp();
        record
    }
}

impl EventSink for Split<'_> {
    #[inline]
    fn emit(&mut self, event: Event) {
        self.events.push(event);
    }

    fn end_command(&mut self) {
        let input = self.inputs[self.next];
        let public = self.events.iter().any(Event::is_public);
        let rejected = match input.command {
            Command::New(order) if self.events.iter().any(|e| matches!(e, Event::Rejected(_))) => Some(order),
            _ => None,
        };
        let events = std::mem::take(self.events);
        let record = self.record(Topic::Executions, &input);
        record.market_data = public;
        record.rejected = rejected;
        record.events.extend(events.iter().filter(|e| e.is_private()).copied());
        if public {
            let record = self.record(Topic::MarketData, &input);
            record.events.extend(events.iter().filter(|e| e.is_public()).copied());
        }
        *self.events = events;
        self.events.clear();
        self.out.end_input();
        self.next += 1;
    }
}
