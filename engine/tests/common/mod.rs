//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use tachyon_engine::{Engine, EngineConfig, RiskLimits};
use tachyon_proto::command::CancelAllCause;
use tachyon_proto::symbol::SymbolDef;
use tachyon_proto::{
    AccountId, Amend, Cancel, CancelAll, ClientOrderId, Command, Event, NewOrder, OrderId, OrderType, Price, Qty,
    SelfTradePrevention, Side, SymbolId, SymbolSpec, TimeInForce, Timestamp,
};

/// Two symbols on an integer grid (tick 1, lot 1): prices and quantities read as written.
/// Quantities 1..=50 (2..=50 on the second), notional up to 4,000.
pub fn config(max_open_orders: u32) -> EngineConfig {
    let def = |id, name, min_quantity| SymbolDef {
        id,
        name,
        tick_size: "1",
        lot_size: "1",
        min_quantity,
        max_quantity: "50",
        max_notional: "4000",
    };
    EngineConfig {
        symbols: vec![
            SymbolSpec::from_def(&def(1, "AAA-USD", "1")).expect("valid"),
            SymbolSpec::from_def(&def(2, "BBB-USD", "2")).expect("valid"),
        ],
        limits: RiskLimits { max_open_orders },
    }
}

pub fn engine() -> Engine {
    Engine::new(config(100))
}

pub const A: SymbolId = SymbolId(1);
pub const B: SymbolId = SymbolId(2);

pub fn acct(name: &str) -> AccountId {
    AccountId::parse(name).expect("valid account")
}

/// A gtc limit order builder with sensible defaults.
#[derive(Clone, Copy, Debug)]
pub struct Order(pub NewOrder);

pub fn limit(id: u64, account: &str, side: Side, price: i64, qty: u64) -> Order {
    Order(NewOrder {
        order_id: OrderId(id),
        account: acct(account),
        symbol: A,
        side,
        order_type: OrderType::Limit,
        time_in_force: TimeInForce::Gtc,
        post_only: false,
        stp: SelfTradePrevention::CancelNewest,
        price: Some(Price(price)),
        qty: Qty(qty),
        client_order_id: None,
        timestamp: Timestamp(id as i64),
    })
}

pub fn market(id: u64, account: &str, side: Side, qty: u64) -> Order {
    let mut o = limit(id, account, side, 1, qty);
    o.0.order_type = OrderType::Market;
    o.0.price = None;
    o.0.time_in_force = TimeInForce::Ioc;
    o
}

impl Order {
    pub fn tif(mut self, tif: TimeInForce) -> Self {
        self.0.time_in_force = tif;
        self
    }
    pub fn stp(mut self, stp: SelfTradePrevention) -> Self {
        self.0.stp = stp;
        self
    }
    pub fn post_only(mut self) -> Self {
        self.0.post_only = true;
        self
    }
    pub fn symbol(mut self, symbol: SymbolId) -> Self {
        self.0.symbol = symbol;
        self
    }
    pub fn cid(mut self, cid: &str) -> Self {
        self.0.client_order_id = Some(ClientOrderId::parse(cid).expect("valid client order id"));
        self
    }
    pub fn cmd(self) -> Command {
        Command::New(self.0)
    }
}

pub fn cancel(id: u64, account: &str) -> Command {
    Command::Cancel(Cancel { order_id: OrderId(id), account: acct(account), timestamp: Timestamp(0) })
}

pub fn cancel_all(account: &str, symbol: Option<SymbolId>, cause: CancelAllCause) -> Command {
    Command::CancelAll(CancelAll { account: acct(account), symbol, cause, timestamp: Timestamp(0) })
}

pub fn amend(id: u64, account: &str, price: Option<i64>, qty: Option<u64>) -> Command {
    Command::Amend(Amend {
        order_id: OrderId(id),
        account: acct(account),
        price: price.map(Price),
        qty: qty.map(Qty),
        timestamp: Timestamp(0),
    })
}

/// Runs one command and returns its events.
pub fn run(engine: &mut Engine, cmd: Command) -> Vec<Event> {
    let mut out = Vec::new();
    engine.process(&cmd, &mut out);
    engine.check_invariants().expect("invariants hold after every command");
    out
}

/// Runs a command given as an order builder.
pub fn place(engine: &mut Engine, order: Order) -> Vec<Event> {
    run(engine, order.cmd())
}
