//! One order's state as the engine's events build it, and its API form.
//!
//! Everyone who keeps orders from `tachyon.executions` (the gateway's order store, the
//! persistence sinks) folds events the same way: [`effects`] says what one event does to
//! the orders it names, and [`OrderRecord::apply`] carries it out. Index bookkeeping (open
//! sets, client order ids, fill lists) stays with each store.

use crate::api::{AccountFill, Liquidity, Order, OrderFill, OrderStatus};
use crate::{
    AccountId, CancelReason, ClientOrderId, Event, NewOrder, OrderId, OrderType, Price, Qty, RejectReason, Side,
    SymbolId, SymbolSpec, TimeInForce, Timestamp, TradeId,
};

/// One fill of an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FillRecord {
    pub trade_id: TradeId,
    pub price: Price,
    pub qty: Qty,
    pub liquidity: Liquidity,
    pub timestamp: Timestamp,
    /// What this side paid in fees (balances on).
    pub fee: Option<FeeRecord>,
}

/// A fill's fee: an amount on its asset's scale, and the asset's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeeRecord {
    pub amount: u64,
    pub scale: u32,
    /// Asset names are configured once per process and live as long as it.
    pub asset: &'static str,
}

impl FeeRecord {
    fn render(&self) -> (Option<String>, Option<String>) {
        let amount = crate::fixed::Step::new(1, self.scale)
            .map_or_else(|_| self.amount.to_string(), |s| s.format_fixed(self.amount.min(i64::MAX as u64) as i64));
        (Some(amount), Some(self.asset.to_owned()))
    }
}

/// An order and everything that happened to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderRecord {
    pub id: OrderId,
    pub account: AccountId,
    pub symbol: SymbolId,
    pub side: Side,
    pub order_type: OrderType,
    pub time_in_force: TimeInForce,
    pub post_only: bool,
    pub price: Option<Price>,
    /// Total quantity (changed by amends).
    pub qty: Qty,
    pub filled: Qty,
    /// Σ price × quantity of the fills, for the average price.
    pub notional: i128,
    pub client_order_id: Option<ClientOrderId>,
    pub status: OrderStatus,
    pub reject_reason: Option<RejectReason>,
    pub cancel_reason: Option<CancelReason>,
    pub fills: Vec<FillRecord>,
    pub created: Timestamp,
    pub updated: Timestamp,
}

impl OrderRecord {
    /// The order as sent, before the engine saw it (`status` as given).
    pub fn from_new(n: &NewOrder, status: OrderStatus) -> Self {
        Self {
            id: n.order_id,
            account: n.account,
            symbol: n.symbol,
            side: n.side,
            order_type: n.order_type,
            time_in_force: n.time_in_force,
            post_only: n.post_only,
            price: n.price,
            qty: n.qty,
            filled: Qty(0),
            notional: 0,
            client_order_id: n.client_order_id,
            status,
            reject_reason: None,
            cancel_reason: None,
            fills: Vec::new(),
            created: n.timestamp,
            updated: n.timestamp,
        }
    }

    /// Still on the book (or about to be).
    pub fn is_open(&self) -> bool {
        matches!(self.status, OrderStatus::Pending | OrderStatus::New | OrderStatus::PartiallyFilled)
    }

    /// Adds a fill; `remaining` is what the engine says is left (0: done).
    pub fn fill(&mut self, fill: FillRecord, remaining: Qty) {
        self.filled = Qty(self.filled.0 + fill.qty.0);
        self.notional += fill.price.notional(fill.qty);
        self.updated = fill.timestamp;
        self.fills.push(fill);
        self.status = if remaining.is_zero() { OrderStatus::Filled } else { OrderStatus::PartiallyFilled };
    }

    pub fn cancel(&mut self, reason: CancelReason, at: Timestamp) {
        self.status = OrderStatus::Cancelled;
        self.cancel_reason = Some(reason);
        self.updated = at;
    }

    /// Applies an amend: new price and total; `remaining` 0 finishes the order.
    pub fn amend(&mut self, price: Price, qty: Qty, remaining: Qty, at: Timestamp) {
        self.price = Some(price);
        self.updated = at;
        if remaining.is_zero() {
            self.qty = self.filled;
            self.status = OrderStatus::Filled;
        } else {
            self.qty = qty;
        }
    }

    /// Applies a change of this order (an [`Effect`] other than [`Effect::Create`], which
    /// the caller turns into a new record instead).
    pub fn apply(&mut self, effect: &Effect) {
        match *effect {
            Effect::Create(_) => {}
            Effect::Fill { fill, remaining, .. } => self.fill(fill, remaining),
            Effect::Cancel { reason, at, .. } => self.cancel(reason, at),
            Effect::Amend { price, qty, remaining, at, .. } => self.amend(price, qty, remaining, at),
        }
    }

    /// Quantity still working on the book (0 once the order is done).
    pub fn remaining(&self) -> Qty {
        if self.is_open() {
            Qty(self.qty.0.saturating_sub(self.filled.0))
        } else {
            Qty(0)
        }
    }

    /// The API's order object.
    pub fn render(&self, spec: &SymbolSpec) -> Order {
        let average = (!self.filled.is_zero()).then(|| {
            // Σ(p·q)/Σq in ticks, rounded half up to the tick (an average need not be on the grid).
            let filled = i128::from(self.filled.0);
            let ticks = (self.notional * 2 + filled) / (filled * 2);
            spec.format_price(Price(ticks as i64))
        });
        Order {
            order_id: self.id.0.to_string(),
            client_order_id: self.client_order_id.map(|c| c.to_string()),
            account_id: self.account.to_string(),
            symbol: spec.name.clone(),
            side: self.side,
            order_type: self.order_type,
            time_in_force: self.time_in_force,
            post_only: self.post_only,
            price: self.price.map(|p| spec.format_price(p)),
            quantity: spec.format_qty(self.qty),
            filled_quantity: spec.format_qty(self.filled),
            remaining_quantity: spec.format_qty(self.remaining()),
            average_fill_price: average,
            status: self.status,
            reject_reason: self.reject_reason,
            cancel_reason: self.cancel_reason,
            fills: self.fills.iter().map(|f| render_fill(f, spec)).collect(),
            created_at: self.created.to_rfc3339(),
            updated_at: self.updated.to_rfc3339(),
        }
    }
}

fn render_fill(f: &FillRecord, spec: &SymbolSpec) -> OrderFill {
    let (fee, fee_asset) = f.fee.as_ref().map(FeeRecord::render).unwrap_or_default();
    OrderFill {
        trade_id: f.trade_id.0.to_string(),
        price: spec.format_price(f.price),
        quantity: spec.format_qty(f.qty),
        liquidity: f.liquidity,
        timestamp: f.timestamp.to_rfc3339(),
        fee,
        fee_asset,
    }
}

/// A fill in an account's fill list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountFillRecord {
    pub order_id: OrderId,
    pub symbol: SymbolId,
    pub side: Side,
    pub fill: FillRecord,
}

impl AccountFillRecord {
    pub fn render(&self, spec: &SymbolSpec) -> AccountFill {
        AccountFill {
            trade_id: self.fill.trade_id.0.to_string(),
            order_id: self.order_id.0.to_string(),
            symbol: spec.name.clone(),
            side: self.side,
            price: spec.format_price(self.fill.price),
            quantity: spec.format_qty(self.fill.qty),
            liquidity: self.fill.liquidity,
            timestamp: self.fill.timestamp.to_rfc3339(),
            fee: self.fill.fee.as_ref().and_then(|f| f.render().0),
            fee_asset: self.fill.fee.as_ref().and_then(|f| f.render().1),
        }
    }
}

/// What one event does to one order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// A new order: accepted (`New`) or rejected (`Rejected`, with its reason). A store
    /// that already holds an order with this id keeps that one (an id is never reused).
    Create(Box<OrderRecord>),
    /// One side of a trade; `remaining` is what the engine says is left of the order.
    Fill {
        order_id: OrderId,
        fill: FillRecord,
        remaining: Qty,
    },
    Cancel {
        order_id: OrderId,
        reason: CancelReason,
        at: Timestamp,
    },
    Amend {
        order_id: OrderId,
        price: Price,
        qty: Qty,
        remaining: Qty,
        at: Timestamp,
    },
}

impl Effect {
    /// The order it changes.
    pub fn order_id(&self) -> OrderId {
        match self {
            Effect::Create(record) => record.id,
            Effect::Fill { order_id, .. } | Effect::Cancel { order_id, .. } | Effect::Amend { order_id, .. } => {
                *order_id
            }
        }
    }
}

/// What `event` does to the orders it names, in order: a trade fills the maker, then the
/// taker. `rejected` is the new order of the command, when the engine rejected it (its
/// output's `rejected`): a rejection creates that order's record. Public-only events and
/// rejected cancels or amends do nothing; a rejected duplicate order id names an order
/// that is not this command's, so it creates nothing either.
pub fn effects(event: &Event, rejected: Option<&NewOrder>) -> impl Iterator<Item = Effect> {
    let mut out: [Option<Effect>; 2] = [None, None];
    match event {
        Event::Accepted(n) => out[0] = Some(Effect::Create(Box::new(OrderRecord::from_new(n, OrderStatus::New)))),
        Event::Rejected(r) => {
            if let Some(n) = rejected.filter(|n| Some(n.order_id) == r.order_id) {
                if r.reason != RejectReason::DuplicateOrderId {
                    let mut record = OrderRecord::from_new(n, OrderStatus::Rejected);
                    record.reject_reason = Some(r.reason);
                    record.updated = r.timestamp;
                    out[0] = Some(Effect::Create(Box::new(record)));
                }
            }
        }
        Event::Trade(t) => {
            let fill = |liquidity| FillRecord {
                trade_id: t.trade_id,
                price: t.price,
                qty: t.qty,
                liquidity,
                timestamp: t.timestamp,
                fee: None,
            };
            out[0] = Some(Effect::Fill {
                order_id: t.maker_order_id,
                fill: fill(Liquidity::Maker),
                remaining: t.maker_remaining,
            });
            out[1] = Some(Effect::Fill {
                order_id: t.taker_order_id,
                fill: fill(Liquidity::Taker),
                remaining: t.taker_remaining,
            });
        }
        Event::Cancelled(c) => {
            out[0] = Some(Effect::Cancel { order_id: c.order_id, reason: c.reason, at: c.timestamp });
        }
        Event::Amended(a) => {
            out[0] = Some(Effect::Amend {
                order_id: a.order_id,
                price: a.price,
                qty: a.qty,
                remaining: a.remaining,
                at: a.timestamp,
            });
        }
        Event::Level(_) | Event::Bbo(_) => {}
    }
    out.into_iter().flatten()
}
