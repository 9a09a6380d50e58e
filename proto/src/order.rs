//! One order's state as the gateway knows it from the engine's events, and its API form.

use tachyon_proto::api::{AccountFill, Liquidity, Order, OrderFill, OrderStatus};
use tachyon_proto::{
    AccountId, CancelReason, ClientOrderId, NewOrder, OrderId, OrderType, Price, Qty, RejectReason, Side, SymbolId,
    SymbolSpec, TimeInForce, Timestamp, TradeId,
};

/// One fill of an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FillRecord {
    pub trade_id: TradeId,
    pub price: Price,
    pub qty: Qty,
    pub liquidity: Liquidity,
    pub timestamp: Timestamp,
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
    OrderFill {
        trade_id: f.trade_id.0.to_string(),
        price: spec.format_price(f.price),
        quantity: spec.format_qty(f.qty),
        liquidity: f.liquidity,
        timestamp: f.timestamp.to_rfc3339(),
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
        }
    }
}
