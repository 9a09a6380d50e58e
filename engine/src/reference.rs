//! The reference model: the engine's semantics written as plainly as possible.
//!
//! Each book is one `Vec` of resting orders; every question ("best maker?", "level
//! total?", "best bid?") is answered by a linear scan. Time priority is an arrival counter.
//! It is slow and obviously correct, and it shares no code with the fast book except the
//! proto types and the [`EngineSnapshot`] it produces for comparison. Property tests feed
//! both the same random command streams and require identical events and state.

use tachyon_proto::command::CancelAllCause;
use tachyon_proto::event::{Bbo, LevelChange, PriceLevel};
use tachyon_proto::{
    AccountId, Amend, Amended, Cancel, CancelAll, CancelReason, Cancelled, ClientOrderId, Command, Event, NewOrder,
    OrderId, OrderType, Price, Qty, RejectReason, Rejected, SelfTradePrevention, Side, SymbolId, SymbolSpec,
    TimeInForce, Timestamp, Trade, TradeId,
};

use crate::engine::{EngineConfig, RiskLimits};
use crate::snapshot::{AccountSnapshot, BookSnapshot, EngineSnapshot, OrderSnapshot};

#[derive(Clone, Debug)]
struct RefOrder {
    id: OrderId,
    account: AccountId,
    side: Side,
    price: Price,
    qty: Qty,
    remaining: Qty,
    stp: SelfTradePrevention,
    post_only: bool,
    client_order_id: Option<ClientOrderId>,
    /// Time priority: smaller arrived earlier.
    arrival: u64,
}

#[derive(Clone, Debug)]
struct RefBook {
    spec: SymbolSpec,
    seq: u64,
    seq_command: u64,
    next_trade_id: u64,
    orders: Vec<RefOrder>,
}

type RefTop = (Option<PriceLevel>, Option<PriceLevel>);

impl RefBook {
    /// Is `a` a better price than `b` for resting orders of `side`?
    fn better(side: Side, a: Price, b: Price) -> bool {
        match side {
            Side::Buy => a > b,
            Side::Sell => a < b,
        }
    }

    fn total_at(&self, side: Side, price: Price) -> Qty {
        Qty(self.orders.iter().filter(|o| o.side == side && o.price == price).map(|o| o.remaining.0).sum())
    }

    fn best(&self, side: Side) -> Option<PriceLevel> {
        let mut best: Option<Price> = None;
        for o in self.orders.iter().filter(|o| o.side == side) {
            if best.is_none_or(|b| Self::better(side, o.price, b)) {
                best = Some(o.price);
            }
        }
        best.map(|price| PriceLevel { price, qty: self.total_at(side, price) })
    }

    fn top(&self) -> RefTop {
        (self.best(Side::Buy), self.best(Side::Sell))
    }

    /// Index of the highest-priority resting order of `side`.
    fn first_in_priority(&self, side: Side) -> Option<usize> {
        let mut best: Option<usize> = None;
        for (i, o) in self.orders.iter().enumerate().filter(|(_, o)| o.side == side) {
            let better = match best {
                None => true,
                Some(b) => {
                    let b = &self.orders[b];
                    Self::better(side, o.price, b.price) || (o.price == b.price && o.arrival < b.arrival)
                }
            };
            if better {
                best = Some(i);
            }
        }
        best
    }

    /// Resting orders of `side` in priority order.
    fn in_priority(&self, side: Side) -> Vec<RefOrder> {
        let mut v: Vec<RefOrder> = self.orders.iter().filter(|o| o.side == side).cloned().collect();
        v.sort_by(|a, b| {
            let by_price = match side {
                Side::Buy => b.price.cmp(&a.price),
                Side::Sell => a.price.cmp(&b.price),
            };
            by_price.then(a.arrival.cmp(&b.arrival))
        });
        v
    }

    fn position(&self, id: OrderId) -> Option<usize> {
        self.orders.iter().position(|o| o.id == id)
    }
}

fn crosses(taker: Side, limit: Option<Price>, maker_price: Price) -> bool {
    match (taker, limit) {
        (_, None) => true,
        (Side::Buy, Some(l)) => maker_price <= l,
        (Side::Sell, Some(l)) => maker_price >= l,
    }
}

/// The reference engine.
#[derive(Clone, Debug)]
pub struct ReferenceEngine {
    limits: RiskLimits,
    books: Vec<RefBook>,
    /// Accounts in order of first sight, with their open orders in acceptance order.
    accounts: Vec<(AccountId, Vec<OrderId>)>,
    commands: u64,
    next_arrival: u64,
    /// Books the current command touched, with their BBO from before.
    touched: Vec<(usize, RefTop)>,
}

struct RefTaker {
    id: OrderId,
    account: AccountId,
    side: Side,
    limit: Option<Price>,
    remaining: Qty,
    stp: SelfTradePrevention,
    timestamp: Timestamp,
}

impl ReferenceEngine {
    pub fn new(config: EngineConfig) -> Self {
        let books = config
            .symbols
            .into_iter()
            .map(|spec| RefBook { spec, seq: 0, seq_command: 0, next_trade_id: 1, orders: Vec::new() })
            .collect();
        Self { limits: config.limits, books, accounts: Vec::new(), commands: 0, next_arrival: 0, touched: Vec::new() }
    }

    pub fn process(&mut self, cmd: &Command, out: &mut Vec<Event>) {
        self.commands += 1;
        self.touched.clear();
        // Accounts are registered by their first new order.
        if matches!(cmd, Command::New(_)) && !self.accounts.iter().any(|(a, _)| *a == cmd.account()) {
            self.accounts.push((cmd.account(), Vec::new()));
        }
        match cmd {
            Command::New(c) => self.new_order(c, out),
            Command::Cancel(c) => self.cancel(c, out),
            Command::CancelAll(c) => self.cancel_all(c, out),
            Command::Amend(c) => self.amend(c, out),
        }
        for (b, before) in std::mem::take(&mut self.touched) {
            let book = &self.books[b];
            let now = book.top();
            if now != before {
                out.push(Event::Bbo(Bbo { symbol: book.spec.id, bid: now.0, ask: now.1, seq: book.seq }));
            }
        }
    }

    pub fn snapshot(&self) -> EngineSnapshot {
        let books = self
            .books
            .iter()
            .map(|b| {
                let mut orders = b.in_priority(Side::Buy);
                orders.extend(b.in_priority(Side::Sell));
                let orders = orders
                    .into_iter()
                    .map(|o| OrderSnapshot {
                        id: o.id,
                        account: o.account,
                        side: o.side,
                        price: o.price,
                        qty: o.qty,
                        remaining: o.remaining,
                        stp: o.stp,
                        post_only: o.post_only,
                        client_order_id: o.client_order_id,
                    })
                    .collect();
                BookSnapshot { symbol: b.spec.id, seq: b.seq, next_trade_id: b.next_trade_id, orders }
            })
            .collect();
        let accounts =
            self.accounts.iter().map(|(id, orders)| AccountSnapshot { id: *id, orders: orders.clone() }).collect();
        EngineSnapshot { commands: self.commands, books, accounts }
    }

    fn book_of(&self, symbol: SymbolId) -> Option<usize> {
        self.books.iter().position(|b| b.spec.id == symbol)
    }

    fn book_of_order(&self, id: OrderId) -> Option<(usize, usize)> {
        self.books.iter().enumerate().find_map(|(b, book)| book.position(id).map(|i| (b, i)))
    }

    /// The account's open orders (none for an account never seen).
    fn open_orders(&self, account: AccountId) -> Vec<OrderId> {
        self.accounts.iter().find(|(a, _)| *a == account).map(|(_, orders)| orders.clone()).unwrap_or_default()
    }

    fn touch(&mut self, b: usize) {
        if !self.touched.iter().any(|(t, _)| *t == b) {
            self.touched.push((b, self.books[b].top()));
        }
    }

    fn seq(&mut self, b: usize) -> u64 {
        let book = &mut self.books[b];
        if book.seq_command != self.commands {
            book.seq_command = self.commands;
            book.seq += 1;
        }
        book.seq
    }

    fn level(&mut self, b: usize, side: Side, price: Price, out: &mut Vec<Event>) {
        let qty = self.books[b].total_at(side, price);
        let seq = self.seq(b);
        out.push(Event::Level(LevelChange { symbol: self.books[b].spec.id, side, price, qty, seq }));
    }

    /// Takes an order out of its book and its account's list.
    fn forget(&mut self, b: usize, id: OrderId) -> RefOrder {
        let i = self.books[b].position(id).expect("order is on this book");
        let order = self.books[b].orders.remove(i);
        let list = &mut self.accounts.iter_mut().find(|(a, _)| *a == order.account).expect("registered").1;
        list.retain(|o| *o != id);
        order
    }

    fn rest(&mut self, b: usize, mut order: RefOrder, out: &mut Vec<Event>) {
        order.arrival = self.next_arrival;
        self.next_arrival += 1;
        let (side, price) = (order.side, order.price);
        let list = &mut self.accounts.iter_mut().find(|(a, _)| *a == order.account).expect("registered").1;
        if !list.contains(&order.id) {
            list.push(order.id);
        }
        self.books[b].orders.push(order);
        self.level(b, side, price, out);
    }

    fn new_order(&mut self, o: &NewOrder, out: &mut Vec<Event>) {
        let reject = |reason| {
            Event::Rejected(Rejected {
                order_id: Some(o.order_id),
                account: o.account,
                symbol: Some(o.symbol),
                reason,
                timestamp: o.timestamp,
            })
        };
        let Some(b) = self.book_of(o.symbol) else { return out.push(reject(RejectReason::UnknownSymbol)) };
        if let Err(reason) = self.check_new(b, o) {
            return out.push(reject(reason));
        }
        out.push(Event::Accepted(*o));
        self.touch(b);
        let mut taker = RefTaker {
            id: o.order_id,
            account: o.account,
            side: o.side,
            limit: o.price,
            remaining: o.qty,
            stp: o.stp,
            timestamp: o.timestamp,
        };
        let cancelled = |reason, remaining| {
            Event::Cancelled(Cancelled {
                order_id: o.order_id,
                account: o.account,
                symbol: o.symbol,
                side: o.side,
                remaining,
                reason,
                timestamp: o.timestamp,
            })
        };
        if o.time_in_force == TimeInForce::Fok && !self.fok_fillable(b, &taker) {
            return out.push(cancelled(CancelReason::Fok, o.qty));
        }
        let stopped = self.take(b, &mut taker, out);
        if taker.remaining.is_zero() {
            return;
        }
        let reason = if stopped {
            CancelReason::Stp
        } else if o.order_type == OrderType::Market {
            CancelReason::MarketNoLiquidity
        } else if o.time_in_force == TimeInForce::Ioc {
            CancelReason::Ioc
        } else if o.time_in_force == TimeInForce::Fok {
            CancelReason::Fok
        } else {
            let order = RefOrder {
                id: o.order_id,
                account: o.account,
                side: o.side,
                price: o.price.expect("validated limit order"),
                qty: o.qty,
                remaining: taker.remaining,
                stp: o.stp,
                post_only: o.post_only,
                client_order_id: o.client_order_id,
                arrival: 0,
            };
            return self.rest(b, order, out);
        };
        out.push(cancelled(reason, taker.remaining));
    }

    fn check_qty(spec: &SymbolSpec, qty: Qty) -> Result<(), RejectReason> {
        if qty.0 == 0 {
            return Err(RejectReason::InvalidQuantity);
        }
        if qty.0 < spec.min_qty.0 {
            return Err(RejectReason::QuantityBelowMin);
        }
        if qty.0 > spec.max_qty.0 {
            return Err(RejectReason::QuantityAboveMax);
        }
        Ok(())
    }

    fn check_new(&self, b: usize, o: &NewOrder) -> Result<(), RejectReason> {
        let book = &self.books[b];
        Self::check_qty(&book.spec, o.qty)?;
        let price_ok = match o.order_type {
            OrderType::Limit => o.price.is_some_and(|p| p.0 > 0),
            OrderType::Market => o.price.is_none(),
        };
        if !price_ok {
            return Err(RejectReason::InvalidPrice);
        }
        if o.order_type == OrderType::Market && o.time_in_force == TimeInForce::Gtc {
            return Err(RejectReason::InvalidTimeInForce);
        }
        if o.post_only && !(o.order_type == OrderType::Limit && o.time_in_force == TimeInForce::Gtc) {
            return Err(RejectReason::InvalidTimeInForce);
        }
        if let Some(p) = o.price {
            if i128::from(p.0) * i128::from(o.qty.0) > book.spec.max_notional {
                return Err(RejectReason::NotionalAboveMax);
            }
        }
        if self.book_of_order(o.order_id).is_some() {
            return Err(RejectReason::DuplicateOrderId);
        }
        let mine = self.open_orders(o.account);
        if let Some(cid) = o.client_order_id {
            let taken = self
                .books
                .iter()
                .flat_map(|b| &b.orders)
                .any(|r| r.account == o.account && r.client_order_id == Some(cid) && mine.contains(&r.id));
            if taken {
                return Err(RejectReason::DuplicateClientOrderId);
            }
        }
        let may_rest = o.order_type == OrderType::Limit && o.time_in_force == TimeInForce::Gtc;
        if may_rest && mine.len() >= self.limits.max_open_orders as usize {
            return Err(RejectReason::MaxOpenOrders);
        }
        if o.post_only {
            if let Some(best) = book.best(o.side.opposite()) {
                if crosses(o.side, o.price, best.price) {
                    return Err(RejectReason::PostOnlyWouldTake);
                }
            }
        }
        Ok(())
    }

    fn fok_fillable(&self, b: usize, t: &RefTaker) -> bool {
        let mut available = 0u64;
        for maker in self.books[b].in_priority(t.side.opposite()) {
            if !crosses(t.side, t.limit, maker.price) {
                break;
            }
            if maker.account == t.account && t.stp != SelfTradePrevention::None {
                if t.stp == SelfTradePrevention::CancelOldest {
                    continue;
                }
                break;
            }
            available += maker.remaining.0;
        }
        available >= t.remaining.0
    }

    /// Matches a taker; returns `true` if self-trade prevention stopped it. After each
    /// price level whose total changed, publishes that level.
    fn take(&mut self, b: usize, t: &mut RefTaker, out: &mut Vec<Event>) -> bool {
        let maker_side = t.side.opposite();
        let mut current: Option<Price> = None;
        let mut changed = false;
        let mut stopped = false;
        while t.remaining.0 > 0 {
            let Some(i) = self.books[b].first_in_priority(maker_side) else { break };
            let maker = self.books[b].orders[i].clone();
            if !crosses(t.side, t.limit, maker.price) {
                break;
            }
            if current != Some(maker.price) {
                if let (Some(p), true) = (current, changed) {
                    self.level(b, maker_side, p, out);
                }
                current = Some(maker.price);
                changed = false;
            }
            if maker.account == t.account && t.stp != SelfTradePrevention::None {
                if matches!(t.stp, SelfTradePrevention::CancelOldest | SelfTradePrevention::CancelBoth) {
                    out.push(Event::Cancelled(Cancelled {
                        order_id: maker.id,
                        account: maker.account,
                        symbol: self.books[b].spec.id,
                        side: maker.side,
                        remaining: maker.remaining,
                        reason: CancelReason::Stp,
                        timestamp: t.timestamp,
                    }));
                    self.forget(b, maker.id);
                    changed = true;
                }
                if t.stp != SelfTradePrevention::CancelOldest {
                    stopped = true;
                    break;
                }
                continue;
            }
            let fill = Qty(t.remaining.0.min(maker.remaining.0));
            t.remaining = Qty(t.remaining.0 - fill.0);
            let maker_remaining = Qty(maker.remaining.0 - fill.0);
            self.books[b].orders[i].remaining = maker_remaining;
            changed = true;
            let seq = self.seq(b);
            let trade_id = TradeId(self.books[b].next_trade_id);
            self.books[b].next_trade_id += 1;
            out.push(Event::Trade(Trade {
                symbol: self.books[b].spec.id,
                trade_id,
                price: maker.price,
                qty: fill,
                taker_side: t.side,
                taker_order_id: t.id,
                taker_account: t.account,
                maker_order_id: maker.id,
                maker_account: maker.account,
                taker_remaining: t.remaining,
                maker_remaining,
                seq,
                timestamp: t.timestamp,
            }));
            if maker_remaining.is_zero() {
                self.forget(b, maker.id);
            }
        }
        if let (Some(p), true) = (current, changed) {
            self.level(b, maker_side, p, out);
        }
        stopped
    }

    fn lookup_own(&self, id: OrderId, account: AccountId) -> Result<(usize, usize), RejectReason> {
        let (b, i) = self.book_of_order(id).ok_or(RejectReason::OrderNotOpen)?;
        if self.books[b].orders[i].account != account {
            return Err(RejectReason::NotOrderOwner);
        }
        Ok((b, i))
    }

    fn cancel_one(&mut self, b: usize, id: OrderId, reason: CancelReason, ts: Timestamp, out: &mut Vec<Event>) {
        self.touch(b);
        let order = self.forget(b, id);
        out.push(Event::Cancelled(Cancelled {
            order_id: id,
            account: order.account,
            symbol: self.books[b].spec.id,
            side: order.side,
            remaining: order.remaining,
            reason,
            timestamp: ts,
        }));
        self.level(b, order.side, order.price, out);
    }

    fn cancel(&mut self, c: &Cancel, out: &mut Vec<Event>) {
        match self.lookup_own(c.order_id, c.account) {
            Ok((b, _)) => self.cancel_one(b, c.order_id, CancelReason::User, c.timestamp, out),
            Err(reason) => out.push(Event::Rejected(Rejected {
                order_id: Some(c.order_id),
                account: c.account,
                symbol: None,
                reason,
                timestamp: c.timestamp,
            })),
        }
    }

    fn cancel_all(&mut self, c: &CancelAll, out: &mut Vec<Event>) {
        let only = match c.symbol {
            None => None,
            Some(s) => match self.book_of(s) {
                Some(b) => Some(b),
                None => {
                    return out.push(Event::Rejected(Rejected {
                        order_id: None,
                        account: c.account,
                        symbol: Some(s),
                        reason: RejectReason::UnknownSymbol,
                        timestamp: c.timestamp,
                    }))
                }
            },
        };
        let reason = match c.cause {
            CancelAllCause::Request => CancelReason::CancelAll,
            CancelAllCause::Disconnect => CancelReason::Disconnect,
        };
        for id in self.open_orders(c.account) {
            let (b, _) = self.book_of_order(id).expect("open orders are on a book");
            if only.is_none_or(|o| o == b) {
                self.cancel_one(b, id, reason, c.timestamp, out);
            }
        }
    }

    fn amend(&mut self, a: &Amend, out: &mut Vec<Event>) {
        let reject = |symbol, reason| {
            Event::Rejected(Rejected {
                order_id: Some(a.order_id),
                account: a.account,
                symbol,
                reason,
                timestamp: a.timestamp,
            })
        };
        let (b, i) = match self.lookup_own(a.order_id, a.account) {
            Ok(found) => found,
            Err(reason) => return out.push(reject(None, reason)),
        };
        let old = self.books[b].orders[i].clone();
        let symbol = self.books[b].spec.id;
        let price = a.price.unwrap_or(old.price);
        let qty = a.qty.unwrap_or(old.qty);
        let checked = Self::check_qty(&self.books[b].spec, qty).and_then(|()| {
            if price.0 <= 0 {
                Err(RejectReason::InvalidPrice)
            } else if i128::from(price.0) * i128::from(qty.0) > self.books[b].spec.max_notional {
                Err(RejectReason::NotionalAboveMax)
            } else if old.post_only
                && price != old.price
                && self.books[b]
                    .best(old.side.opposite())
                    .is_some_and(|best| crosses(old.side, Some(price), best.price))
            {
                Err(RejectReason::PostOnlyWouldTake)
            } else {
                Ok(())
            }
        });
        if let Err(reason) = checked {
            return out.push(reject(Some(symbol), reason));
        }
        self.touch(b);
        let filled = old.qty.0 - old.remaining.0;
        let amended = |price, qty, remaining, priority_kept| {
            Event::Amended(Amended {
                order_id: old.id,
                account: a.account,
                symbol,
                side: old.side,
                price,
                qty: Qty(qty),
                remaining: Qty(remaining),
                priority_kept,
                timestamp: a.timestamp,
            })
        };
        if qty.0 <= filled {
            out.push(amended(old.price, filled, 0, false));
            self.forget(b, old.id);
            return self.level(b, old.side, old.price, out);
        }
        let remaining = qty.0 - filled;
        if price == old.price {
            let keeps = qty.0 <= old.qty.0;
            out.push(amended(price, qty.0, remaining, keeps));
            let o = &mut self.books[b].orders[i];
            o.qty = qty;
            o.remaining = Qty(remaining);
            if !keeps {
                o.arrival = self.next_arrival;
                self.next_arrival += 1;
            }
            if remaining != old.remaining.0 {
                self.level(b, old.side, price, out);
            }
            return;
        }
        out.push(amended(price, qty.0, remaining, false));
        let mut order = self.books[b].orders.remove(i);
        self.level(b, old.side, old.price, out);
        let mut taker = RefTaker {
            id: old.id,
            account: a.account,
            side: old.side,
            limit: Some(price),
            remaining: Qty(remaining),
            stp: old.stp,
            timestamp: a.timestamp,
        };
        let stopped = self.take(b, &mut taker, out);
        let list = &mut self.accounts.iter_mut().find(|(acc, _)| *acc == a.account).expect("registered").1;
        if stopped {
            out.push(Event::Cancelled(Cancelled {
                order_id: old.id,
                account: a.account,
                symbol,
                side: old.side,
                remaining: taker.remaining,
                reason: CancelReason::Stp,
                timestamp: a.timestamp,
            }));
            list.retain(|id| *id != old.id);
        } else if taker.remaining.is_zero() {
            list.retain(|id| *id != old.id);
        } else {
            order.price = price;
            order.qty = qty;
            order.remaining = taker.remaining;
            self.rest(b, order, out);
        }
    }
}
