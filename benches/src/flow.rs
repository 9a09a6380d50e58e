//! Deterministic synthetic order flows.
//!
//! A flow is generated against a shadow engine so that every cancel names an order that is
//! live at that moment and every passive order really rests (priced strictly behind the
//! opposite best). Each book is held within ±20% of its starting depth (a book about to
//! leave that band gets a passive order or a cancel instead of the drawn command), so a
//! long flow is a steady state rather than a growing book. The result is a [`Prepared`] run: the starting book (prefill, untimed)
//! and the commands to time.
//!
//! - [`FlowSpec::mixed`]: 16 symbols, a deep book (5,000 resting orders each, depth about
//!   exponential with a mean of 20 ticks behind the touch), then about 60% passive limits,
//!   30% cancels and 10% aggressive orders (IOC limits reaching up to 3 ticks through the
//!   touch, a tenth of them market orders), from 1,000 accounts with `cancel_newest` STP.
//!   Symbol popularity falls as 1/rank (a few hot symbols, as on real venues); 70% of
//!   cancels pull one of the symbol's 64 most recently placed orders (most orders live
//!   briefly, near the touch) and 30% an order anywhere in the book.
//! - [`FlowSpec::add_cancel`]: the same book, 50% passive adds and 50% cancels.
//! - [`sweep`]: one symbol with a ladder of single-order levels; each market order walks
//!   `levels` levels, which are then refilled.

use tachyon_engine::{Engine, EngineConfig, RiskLimits};
use tachyon_proto::symbol::SymbolDef;
use tachyon_proto::{
    AccountId, Cancel, Command, Event, NewOrder, OrderId, OrderType, Price, Qty, SelfTradePrevention, Side, SymbolId,
    SymbolSpec, TimeInForce, Timestamp,
};

use crate::Prepared;

/// Price every symbol's book is built around (ticks).
pub const MID: i64 = 1_000_000;

/// A small, fast, seedable generator (xorshift64*); deterministic across platforms.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Percent roll: `true` with probability `pct`/100.
    pub fn chance(&mut self, pct: u32) -> bool {
        self.below(100) < u64::from(pct)
    }

    /// About exponential with the given mean, as whole ticks.
    pub fn exp_ticks(&mut self, mean: f64) -> i64 {
        let u = ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        (-mean * u.ln()) as i64
    }
}

/// The shape of a synthetic flow.
#[derive(Clone, Debug)]
pub struct FlowSpec {
    pub symbols: usize,
    pub accounts: usize,
    pub prefill_per_symbol: usize,
    /// Share of passive limit orders, in percent.
    pub passive_pct: u32,
    /// Share of cancels, in percent; the rest are aggressive orders.
    pub cancel_pct: u32,
    /// Mean distance of passive orders behind the touch, in ticks.
    pub depth_mean_ticks: f64,
    /// Share of cancels that pull a recently placed order, in percent.
    pub recent_cancel_pct: u32,
    pub seed: u64,
}

impl FlowSpec {
    /// The `mixed` benchmark flow.
    pub fn mixed() -> Self {
        Self {
            symbols: 16,
            accounts: 1000,
            prefill_per_symbol: 5000,
            passive_pct: 60,
            cancel_pct: 30,
            depth_mean_ticks: 20.0,
            recent_cancel_pct: 70,
            seed: 7,
        }
    }

    /// The `add_cancel` benchmark flow.
    pub fn add_cancel() -> Self {
        Self { passive_pct: 50, cancel_pct: 50, ..Self::mixed() }
    }
}

/// Benchmark symbols: integer grid (tick 1, lot 1) with limits no flow reaches.
pub fn config(symbols: usize) -> EngineConfig {
    let specs = (0..symbols)
        .map(|i| {
            let name = format!("SYM{i}-USD");
            let def = SymbolDef {
                id: i as u32 + 1,
                name: &name,
                tick_size: "1",
                lot_size: "1",
                min_quantity: "1",
                max_quantity: "2147483648",
                max_notional: "100000000000000000",
            };
            SymbolSpec::from_def(&def).expect("benchmark symbols are valid")
        })
        .collect();
    EngineConfig { symbols: specs, limits: RiskLimits { max_open_orders: u32::MAX } }
}

/// How many recently placed orders per symbol are remembered for "recent" cancels.
const RECENT: usize = 64;

/// Live resting orders per symbol, with O(1) removal, and the most recently placed ones.
struct Live {
    by_symbol: Vec<Vec<(OrderId, AccountId)>>,
    position: std::collections::HashMap<OrderId, (usize, usize)>,
    recent: Vec<std::collections::VecDeque<(OrderId, AccountId)>>,
}

impl Live {
    fn new(symbols: usize) -> Self {
        Self {
            by_symbol: vec![Vec::new(); symbols],
            position: std::collections::HashMap::new(),
            recent: vec![std::collections::VecDeque::with_capacity(RECENT); symbols],
        }
    }

    fn add(&mut self, symbol: usize, id: OrderId, account: AccountId) {
        self.position.insert(id, (symbol, self.by_symbol[symbol].len()));
        self.by_symbol[symbol].push((id, account));
        let recent = &mut self.recent[symbol];
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back((id, account));
    }

    fn is_live(&self, id: OrderId) -> bool {
        self.position.contains_key(&id)
    }

    fn remove(&mut self, id: OrderId) {
        if let Some((symbol, i)) = self.position.remove(&id) {
            let list = &mut self.by_symbol[symbol];
            list.swap_remove(i);
            if let Some(&(moved, _)) = list.get(i) {
                self.position.insert(moved, (symbol, i));
            }
        }
    }

    /// Applies the events of one command: filled or cancelled orders are no longer live.
    fn observe(&mut self, events: &[Event]) {
        for e in events {
            match e {
                Event::Trade(t) if t.maker_remaining.is_zero() => self.remove(t.maker_order_id),
                Event::Cancelled(c) => self.remove(c.order_id),
                _ => {}
            }
        }
    }
}

/// Generates flows against a shadow engine.
struct Generator {
    spec: FlowSpec,
    rng: Rng,
    shadow: Engine,
    live: Live,
    accounts: Vec<AccountId>,
    next_id: u64,
    events: Vec<Event>,
}

impl Generator {
    fn new(spec: FlowSpec) -> Self {
        let accounts =
            (0..spec.accounts).map(|i| AccountId::parse(&format!("acct{i}")).expect("valid account name")).collect();
        Self {
            rng: Rng::new(spec.seed),
            shadow: Engine::new(config(spec.symbols)),
            live: Live::new(spec.symbols),
            accounts,
            next_id: 1,
            events: Vec::new(),
            spec,
        }
    }

    fn apply(&mut self, cmd: Command) -> Command {
        self.events.clear();
        self.shadow.process(&cmd, &mut self.events);
        self.live.observe(&self.events);
        cmd
    }

    fn new_order(&mut self, symbol: usize, side: Side, price: Option<Price>, qty: u64, tif: TimeInForce) -> NewOrder {
        let id = OrderId(self.next_id);
        self.next_id += 1;
        NewOrder {
            order_id: id,
            account: self.accounts[self.rng.below(self.accounts.len() as u64) as usize],
            symbol: SymbolId(symbol as u32 + 1),
            side,
            order_type: if price.is_some() { OrderType::Limit } else { OrderType::Market },
            time_in_force: tif,
            post_only: false,
            stp: SelfTradePrevention::CancelNewest,
            price,
            qty: Qty(qty),
            client_order_id: None,
            timestamp: Timestamp(id.0 as i64),
        }
    }

    fn best(&self, symbol: usize, side: Side) -> Option<i64> {
        let (bid, ask) = self.shadow.top_of_book(SymbolId(symbol as u32 + 1)).expect("known symbol");
        match side {
            Side::Buy => bid,
            Side::Sell => ask,
        }
        .map(|l| l.price.0)
    }

    fn passive(&mut self, symbol: usize) -> Command {
        let side = if self.rng.below(2) == 0 { Side::Buy } else { Side::Sell };
        let behind = self.rng.exp_ticks(self.spec.depth_mean_ticks);
        let price = match side {
            Side::Buy => self.best(symbol, Side::Sell).unwrap_or(MID + 1).min(MID + 1) - 1 - behind,
            Side::Sell => self.best(symbol, Side::Buy).unwrap_or(MID - 1).max(MID - 1) + 1 + behind,
        };
        let qty = 1 + self.rng.below(100);
        let order = self.new_order(symbol, side, Some(Price(price)), qty, TimeInForce::Gtc);
        let cmd = self.apply(Command::New(order));
        // Priced behind the opposite best, so it rests (and publishes its level).
        if self.events.iter().any(|e| matches!(e, Event::Level(_))) {
            self.live.add(symbol, order.order_id, order.account);
        }
        cmd
    }

    fn cancel(&mut self, symbol: usize) -> Option<Command> {
        let recent = &self.live.recent[symbol];
        let pick = if !recent.is_empty() && self.rng.chance(self.spec.recent_cancel_pct) {
            let candidate = recent[self.rng.below(recent.len() as u64) as usize];
            self.live.is_live(candidate.0).then_some(candidate)
        } else {
            None
        };
        let list = &self.live.by_symbol[symbol];
        if list.is_empty() {
            return None;
        }
        let (order_id, account) = pick.unwrap_or_else(|| list[self.rng.below(list.len() as u64) as usize]);
        let cmd = Command::Cancel(Cancel { order_id, account, timestamp: Timestamp(self.next_id as i64) });
        Some(self.apply(cmd))
    }

    fn aggressive(&mut self, symbol: usize) -> Command {
        let side = if self.rng.below(2) == 0 { Side::Buy } else { Side::Sell };
        let reach = self.rng.below(4) as i64;
        // Sized so that fills, with cancels, balance the passive flow (~3 orders each).
        let qty = 1 + self.rng.below(300);
        let price = if self.rng.chance(10) {
            None
        } else {
            let touch = self.best(symbol, side.opposite()).unwrap_or(MID);
            Some(Price(match side {
                Side::Buy => touch + reach,
                Side::Sell => touch - reach,
            }))
        };
        let order = self.new_order(symbol, side, price, qty, TimeInForce::Ioc);
        self.apply(Command::New(order))
    }

    /// A symbol, with popularity falling as 1/rank.
    fn symbol(&mut self) -> usize {
        let harmonic: f64 = (1..=self.spec.symbols).map(|r| 1.0 / r as f64).sum();
        let mut u = ((self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64) * harmonic;
        for rank in 1..=self.spec.symbols {
            u -= 1.0 / rank as f64;
            if u <= 0.0 {
                return rank - 1;
            }
        }
        self.spec.symbols - 1
    }

    fn next(&mut self) -> Command {
        let symbol = self.symbol();
        // Keep each book near its starting depth (±20%), as a steady market does.
        let live = self.live.by_symbol[symbol].len();
        let target = self.spec.prefill_per_symbol;
        if live * 10 < target * 8 {
            return self.passive(symbol);
        }
        if live * 10 > target * 12 {
            if let Some(cmd) = self.cancel(symbol) {
                return cmd;
            }
        }
        let roll = self.rng.below(100) as u32;
        if roll < self.spec.passive_pct {
            self.passive(symbol)
        } else if roll < self.spec.passive_pct + self.spec.cancel_pct {
            self.cancel(symbol).unwrap_or_else(|| self.passive(symbol))
        } else {
            self.aggressive(symbol)
        }
    }
}

/// Generates a flow: prefill (the starting book) and `commands` timed commands.
pub fn generate(spec: &FlowSpec, commands: usize) -> Prepared {
    let mut g = Generator::new(spec.clone());
    for symbol in 0..spec.symbols {
        for _ in 0..spec.prefill_per_symbol {
            g.passive(symbol);
        }
    }
    let start = g.shadow.snapshot();
    let commands = (0..commands).map(|_| g.next()).collect();
    Prepared { config: config(spec.symbols), start, commands }
}

/// The `sweep` flow: one symbol with `depth` single-order ask levels one tick apart; each
/// round is a market buy that walks `levels` levels and `levels` adds that refill them.
/// Returns the run and the number of fills it makes.
pub fn sweep(depth: usize, levels: usize, rounds: usize) -> (Prepared, u64) {
    let mut shadow = Engine::new(config(1));
    let account = |i: u64| AccountId::parse(&format!("mm{}", i % 8)).expect("valid account name");
    let mut next_id = 1u64;
    let add = |price: i64, id: &mut u64| {
        let order = NewOrder {
            order_id: OrderId(*id),
            account: account(*id),
            symbol: SymbolId(1),
            side: Side::Sell,
            order_type: OrderType::Limit,
            time_in_force: TimeInForce::Gtc,
            post_only: false,
            stp: SelfTradePrevention::CancelNewest,
            price: Some(Price(price)),
            qty: Qty(10),
            client_order_id: None,
            timestamp: Timestamp(*id as i64),
        };
        *id += 1;
        Command::New(order)
    };
    let mut sink = Vec::new();
    for level in 0..depth {
        shadow.process(&add(MID + 1 + level as i64, &mut next_id), &mut sink);
    }
    let start = shadow.snapshot();
    let mut commands = Vec::with_capacity(rounds * (levels + 1));
    for _ in 0..rounds {
        commands.push(Command::New(NewOrder {
            order_id: OrderId(next_id),
            account: AccountId::parse("taker").expect("valid account name"),
            symbol: SymbolId(1),
            side: Side::Buy,
            order_type: OrderType::Market,
            time_in_force: TimeInForce::Ioc,
            post_only: false,
            stp: SelfTradePrevention::CancelNewest,
            price: None,
            qty: Qty(10 * levels as u64),
            client_order_id: None,
            timestamp: Timestamp(next_id as i64),
        }));
        next_id += 1;
        for level in 0..levels {
            commands.push(add(MID + 1 + level as i64, &mut next_id));
        }
    }
    (Prepared { config: config(1), start, commands }, (rounds * levels) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_flow_has_the_documented_shape() {
        let spec = FlowSpec { prefill_per_symbol: 500, ..FlowSpec::mixed() };
        let run = generate(&spec, 20_000);
        let resting: usize = run.start.books.iter().map(|b| b.orders.len()).sum();
        assert_eq!(resting, 16 * 500, "every prefill order rests");
        let mut engine = run.engine();
        let (mut cancels, mut rejected, mut trades, mut news, mut takers) = (0, 0, 0, 0, 0);
        let mut out = Vec::new();
        for cmd in &run.commands {
            out.clear();
            engine.process(cmd, &mut out);
            match cmd {
                Command::Cancel(_) => cancels += 1,
                Command::New(n) if n.time_in_force == TimeInForce::Ioc => takers += 1,
                Command::New(_) => news += 1,
                _ => {}
            }
            rejected += out.iter().filter(|e| matches!(e, Event::Rejected(_))).count();
            trades += out.iter().filter(|e| matches!(e, Event::Trade(_))).count();
        }
        assert_eq!(rejected, 0, "the flow only cancels live orders and places valid ones");
        // 20,000 commands: about 60% passive, 30% cancels, 10% aggressive.
        assert!((11_000..13_000).contains(&news), "about 60% passive: {news}");
        assert!((5_000..7_000).contains(&cancels), "about 30% cancels: {cancels}");
        assert!((1_600..2_400).contains(&takers), "about 10% aggressive: {takers}");
        assert!(trades > 2_000, "{trades} trades");
        let resting: usize = engine.snapshot().books.iter().map(|b| b.orders.len()).sum();
        assert!((16 * 400..16 * 600).contains(&resting), "the book stays near its depth: {resting}");
    }

    #[test]
    fn sweep_walks_the_requested_levels() {
        let (run, fills) = sweep(200, 50, 10);
        let mut engine = run.engine();
        let mut out = Vec::new();
        for cmd in &run.commands {
            engine.process(cmd, &mut out);
        }
        let trades = out.iter().filter(|e| matches!(e, Event::Trade(_))).count() as u64;
        assert_eq!(trades, fills);
        assert_eq!(engine.open_orders(), 200);
    }
}
