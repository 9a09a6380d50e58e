//! A deterministic command stream and what an engine shard must publish for it, computed
//! with the bare engine: the reference that crash tests compare a shard's outputs with
//! (the embedded shard tests and the Kafka process tests).

#![allow(dead_code, reason = "each test file uses a different part")]

use std::time::Duration;

use tachyon_bus::Backbone;
use tachyon_engine::{Engine, EngineConfig, Event};
use tachyon_proto::symbol::default_symbols;
use tachyon_proto::wire::{decode_output, CommandEnvelope, ShardOutput};
use tachyon_proto::*;

pub fn engine_config() -> EngineConfig {
    EngineConfig { symbols: default_symbols(), limits: Default::default() }
}

/// A deterministic stream that rests, crosses and cancels on `symbol` (order ids
/// `id_base + i`, so streams for several symbols do not share ids).
pub fn commands_on(symbol: SymbolId, id_base: u64, range: std::ops::Range<u64>) -> Vec<CommandEnvelope> {
    range
        .map(|i| {
            let account = AccountId::parse(if i % 2 == 0 { "alice" } else { "bob" }).expect("valid");
            let command = if i % 7 == 6 {
                Command::Cancel(Cancel { order_id: OrderId(id_base + i - 3), account, timestamp: Timestamp(i as i64) })
            } else {
                Command::New(NewOrder {
                    order_id: OrderId(id_base + i),
                    account,
                    symbol,
                    side: if i % 3 == 0 { Side::Buy } else { Side::Sell },
                    order_type: OrderType::Limit,
                    time_in_force: TimeInForce::Gtc,
                    post_only: false,
                    stp: SelfTradePrevention::None,
                    price: Some(Price(1_000 + (i % 5) as i64)),
                    qty: Qty(1 + i % 4),
                    client_order_id: None,
                    timestamp: Timestamp(i as i64),
                })
            };
            CommandEnvelope { request_id: i, gateway_id: 1, command, origin: None }
        })
        .collect()
}

/// [`commands_on`] BTC-USD.
pub fn commands(range: std::ops::Range<u64>) -> Vec<CommandEnvelope> {
    commands_on(SymbolId(1), 0, range)
}

/// What shard `partition` must publish for `cmds` (its whole input, from offset 0):
/// (executions, market data).
pub fn expected_on(partition: u32, cmds: &[CommandEnvelope]) -> (Vec<ShardOutput>, Vec<ShardOutput>) {
    let mut engine = Engine::new(engine_config());
    let (mut executions, mut market_data, mut seq) = (Vec::new(), Vec::new(), 0);
    for (offset, env) in cmds.iter().enumerate() {
        let mut events: Vec<Event> = Vec::new();
        engine.process(&env.command, &mut events);
        let public: Vec<Event> = events.iter().filter(|e| e.is_public()).copied().collect();
        let rejected = match env.command {
            Command::New(order) if events.iter().any(|e| matches!(e, Event::Rejected(_))) => Some(order),
            _ => None,
        };
        let output = |seq, events: Vec<Event>| ShardOutput {
            partition,
            seq,
            input_offset: offset as u64,
            request_id: env.request_id,
            gateway_id: env.gateway_id,
            timestamp: env.command.timestamp(),
            market_data: false,
            rejected: None,
            events,
            ..ShardOutput::default()
        };
        seq += 1;
        let mut execution = output(seq, events.iter().filter(|e| e.is_private()).copied().collect());
        execution.market_data = !public.is_empty();
        execution.rejected = rejected;
        executions.push(execution);
        if !public.is_empty() {
            seq += 1;
            market_data.push(output(seq, public));
        }
    }
    (executions, market_data)
}

/// [`expected_on`] partition 0.
pub fn expected(cmds: &[CommandEnvelope]) -> (Vec<ShardOutput>, Vec<ShardOutput>) {
    expected_on(0, cmds)
}

/// Every output record a shard published on one partition of `topic`, in order (what the
/// tests compare with [`expected_on`]).
pub fn read_outputs(bus: &dyn Backbone, topic: Topic, partition: u32) -> Vec<ShardOutput> {
    let end = bus.end_offset(topic, partition).expect("end offset");
    let mut reader = bus.reader(topic, partition, 0).expect("reader");
    let mut records = Vec::new();
    while reader.position() < end {
        assert!(reader.poll(&mut records, 1000, Duration::from_secs(10)).expect("poll") > 0, "readable to the end");
    }
    records.iter().map(|r| decode_output(&r.payload).expect("an output record")).collect()
}
