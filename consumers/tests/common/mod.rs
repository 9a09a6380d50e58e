//! Helpers of the consumers' tests: engine output streams made by the real engine, an
//! embedded backbone to publish them on, and an oracle for the order states they imply.

#![allow(dead_code, reason = "each test file uses a different part")]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tachyon_bus::{Backbone, EmbeddedBus, EmbeddedConfig, FsyncPolicy};
use tachyon_engine::{Engine, EngineConfig, RiskLimits};
use tachyon_proto::api::OrderStatus;
use tachyon_proto::symbol::SymbolDef;
use tachyon_proto::wire::{encode_output, ShardOutput};
use tachyon_proto::{
    AccountId, Amend, Cancel, Command, Event, NewOrder, OrderId, OrderType, Price, Qty, SelfTradePrevention, Side,
    SymbolId, SymbolSpec, TimeInForce, Timestamp, Topic,
};

/// Two symbols on an integer grid (prices and quantities read as written).
pub fn symbols() -> Vec<SymbolSpec> {
    let def = |id, name| SymbolDef {
        id,
        name,
        tick_size: "1",
        lot_size: "1",
        min_quantity: "1",
        max_quantity: "1000",
        max_notional: "1000000",
    };
    vec![
        SymbolSpec::from_def(&def(1, "AAA-USD")).expect("valid"),
        SymbolSpec::from_def(&def(2, "BBB-USD")).expect("valid"),
    ]
}

/// 2026-11-30T23:59:50Z: streams cross into December, so trades span two partitions.
pub const T0: i64 = 1_796_083_190_000_000_000;

/// A small deterministic generator (tests must not depend on a random source).
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// `n` commands of a lively market on `symbol` (limits around 100 that cross, IOC and
/// market orders, cancels and amends of earlier ids, some invalid) run through the real
/// engine; one output per command, as the shard of `partition` publishes them.
pub fn outputs(partition: u32, symbol: SymbolId, first_id: u64, n: u64, seed: u64) -> Vec<ShardOutput> {
    let mut engine = Engine::new(EngineConfig { symbols: symbols(), limits: RiskLimits { max_open_orders: 1000 } });
    let mut rng = Lcg(seed);
    let accounts: Vec<AccountId> =
        ["ann", "ben", "cat", "dan"].iter().map(|a| AccountId::parse(a).expect("valid")).collect();
    let mut out = Vec::with_capacity(n as usize);
    for i in 0..n {
        let account = accounts[rng.next(4) as usize];
        let timestamp = Timestamp(T0 + i as i64 * 7_000_000);
        let earlier = OrderId(first_id + rng.next(i.max(1)));
        let command = match rng.next(10) {
            0..=5 => {
                let side = if rng.next(2) == 0 { Side::Buy } else { Side::Sell };
                let (order_type, tif, price) = match rng.next(10) {
                    0 => (OrderType::Market, TimeInForce::Ioc, None),
                    1 => (OrderType::Limit, TimeInForce::Ioc, Some(Price(95 + rng.next(11) as i64))),
                    _ => (OrderType::Limit, TimeInForce::Gtc, Some(Price(95 + rng.next(11) as i64))),
                };
                Command::New(NewOrder {
                    order_id: OrderId(first_id + i),
                    account,
                    symbol,
                    side,
                    order_type,
                    time_in_force: tif,
                    post_only: false,
                    stp: SelfTradePrevention::CancelNewest,
                    price,
                    // 0 now and then: a rejected order.
                    qty: Qty(rng.next(20)),
                    client_order_id: None,
                    timestamp,
                })
            }
            6..=8 => Command::Cancel(Cancel { order_id: earlier, account, timestamp }),
            _ => Command::Amend(Amend {
                order_id: earlier,
                account,
                price: Some(Price(95 + rng.next(11) as i64)),
                qty: Some(Qty(1 + rng.next(20))),
                timestamp,
            }),
        };
        let mut events = Vec::new();
        engine.process(&command, &mut events);
        let rejected = match command {
            Command::New(order) if events.iter().any(|e| matches!(e, Event::Rejected(_))) => Some(order),
            _ => None,
        };
        let market_data = events.iter().any(Event::is_public);
        out.push(ShardOutput {
            partition,
            seq: i + 1,
            input_offset: i,
            request_id: i,
            gateway_id: 1,
            timestamp,
            market_data,
            rejected,
            events,
            ..ShardOutput::default()
        });
    }
    out
}

/// An embedded backbone in `dir` (no fsync: the journal's durability has its own tests).
pub fn bus(dir: &std::path::Path, partitions: u32) -> Arc<EmbeddedBus> {
    let mut config = EmbeddedConfig::new(dir.join("journal"), partitions);
    config.input.fsync = FsyncPolicy::Never;
    config.output.fsync = FsyncPolicy::Never;
    Arc::new(EmbeddedBus::open(&config).expect("opens"))
}

/// Publishes raw payloads on `tachyon.executions` and waits until they are readable.
pub fn publish_raw(bus: &dyn Backbone, partition: u32, payloads: Vec<Vec<u8>>) {
    for chunk in payloads.chunks(256) {
        let mut batch = chunk.to_vec();
        tachyon_bus::produce_blocking(bus, Topic::Executions, partition, &mut batch).expect("produces");
    }
    bus.flush(Topic::Executions, partition, Duration::from_secs(10)).expect("flushes");
}

pub fn publish(bus: &dyn Backbone, partition: u32, outputs: &[ShardOutput]) {
    publish_raw(bus, partition, outputs.iter().map(|o| encode_output(o).expect("encodes")).collect());
}

/// Polls `done` every 10 ms for up to 60 s (a bound, not a timing assertion).
pub async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < until, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The oracle: each order's status and filled quantity, folded from the events in the
/// simplest way (independently of `tachyon_proto::order`).
pub fn expected_orders<'a>(outputs: impl IntoIterator<Item = &'a ShardOutput>) -> HashMap<u64, (OrderStatus, u64)> {
    let mut orders: HashMap<u64, (OrderStatus, u64)> = HashMap::new();
    for o in outputs {
        for e in &o.events {
            match e {
                Event::Accepted(a) => {
                    orders.insert(a.order_id.0, (OrderStatus::New, 0));
                }
                Event::Rejected(r) => {
                    if let (Some(n), Some(id)) = (&o.rejected, r.order_id) {
                        if n.order_id == id {
                            orders.entry(id.0).or_insert((OrderStatus::Rejected, 0));
                        }
                    }
                }
                Event::Trade(t) => {
                    for (id, remaining) in
                        [(t.maker_order_id, t.maker_remaining), (t.taker_order_id, t.taker_remaining)]
                    {
                        let entry = orders.get_mut(&id.0).expect("a trade of a known order");
                        entry.1 += t.qty.0;
                        entry.0 = if remaining.0 == 0 { OrderStatus::Filled } else { OrderStatus::PartiallyFilled };
                    }
                }
                Event::Cancelled(c) => orders.get_mut(&c.order_id.0).expect("known").0 = OrderStatus::Cancelled,
                Event::Amended(a) => {
                    if a.remaining.0 == 0 {
                        orders.get_mut(&a.order_id.0).expect("known").0 = OrderStatus::Filled;
                    }
                }
                Event::Level(_) | Event::Bbo(_) => {}
            }
        }
    }
    orders
}

/// The outputs as a consumer reads them from offset 0.
pub fn items(outputs: &[ShardOutput]) -> Vec<tachyon_runtime::consumer::Item> {
    outputs
        .iter()
        .enumerate()
        .map(|(i, o)| tachyon_runtime::consumer::Item {
            offset: i as u64,
            payload: encode_output(o).expect("encodes").into(),
            output: o.clone(),
        })
        .collect()
}

/// The dead letters of partition 0, as JSON.
pub fn dead_letters(bus: &dyn Backbone) -> Vec<serde_json::Value> {
    let mut reader = bus.reader(Topic::DeadLetter, 0, 0).expect("reader");
    let mut letters = Vec::new();
    reader.poll(&mut letters, 1_000, Duration::from_secs(5)).expect("reads");
    letters.iter().map(|r| serde_json::from_slice(&r.payload).expect("JSON")).collect()
}

pub fn trade_count<'a>(outputs: impl IntoIterator<Item = &'a ShardOutput>) -> usize {
    outputs.into_iter().flat_map(|o| &o.events).filter(|e| matches!(e, Event::Trade(_))).count()
}
