//! Events: what the matching engine emits.
//!
//! Private events ([`Accepted`], [`Rejected`], [`Cancelled`], [`Amended`], and [`Trade`] for
//! both accounts) go to `tachyon.executions`; public ones ([`Trade`], [`LevelChange`],
//! [`Bbo`]) to `tachyon.marketdata`.
//!
//! Order of events for one command (both the engine and its reference model follow it):
//! 1. [`Rejected`] alone, or [`Accepted`] / the cancel / the amend;
//! 2. while matching, per resting order met: self-trade cancels ([`Cancelled`], reason
//!    `stp`), else a [`Trade`]; after each price level the taker leaves, one
//!    [`LevelChange`] with that level's new total;
//! 3. the taker's remainder: a [`LevelChange`] where it rests, or a [`Cancelled`];
//! 4. a [`Bbo`] for each book whose best bid or ask (price or quantity) changed, in the
//!    order the command first touched those books.
//!
//! `seq` is the symbol's public book sequence: it starts at 1 and goes up by exactly 1 for
//! each command that changed the book, so every public event of one command on one symbol
//! carries the same `seq`.

use serde::{Deserialize, Serialize};

use crate::command::NewOrder;
use crate::fixed::{Price, Qty, Side};
use crate::ids::{AccountId, OrderId, SymbolId, TradeId};
use crate::time::Timestamp;

/// Why the engine refused a command. Serialises to the API's `snake_case` codes.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    utoipa::ToSchema,
)]
#[rkyv(derive(Debug))]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum RejectReason {
    UnknownSymbol,
    /// Limit without a positive price, or market with a price.
    InvalidPrice,
    /// Zero quantity.
    InvalidQuantity,
    QuantityBelowMin,
    QuantityAboveMax,
    NotionalAboveMax,
    /// A combination the order type does not allow (market + gtc, post-only + ioc/fok/market).
    InvalidTimeInForce,
    PostOnlyWouldTake,
    DuplicateClientOrderId,
    DuplicateOrderId,
    MaxOpenOrders,
    /// Cancel or amend of an order that is not open (unknown or already done).
    OrderNotOpen,
    /// Cancel or amend of another account's order.
    NotOrderOwner,
    /// The risk stage could not hold the funds the order or amend needs (balances on).
    InsufficientFunds,
    /// A market buy without `funds`, or `funds` on another order (balances on).
    InvalidFunds,
}

/// Why an order left the book without filling completely. Serialises to the API codes.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    utoipa::ToSchema,
)]
#[rkyv(derive(Debug))]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum CancelReason {
    User,
    Ioc,
    Fok,
    Stp,
    CancelAll,
    Disconnect,
    MarketNoLiquidity,
}

/// A new order passed every check and is now live (matching follows): the order exactly
/// as the engine accepted it.
pub type Accepted = NewOrder;

/// A command was refused; nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct Rejected {
    /// The new order's id, or the order a cancel/amend named; `None` for a cancel-all.
    pub order_id: Option<OrderId>,
    pub account: AccountId,
    pub symbol: Option<SymbolId>,
    pub reason: RejectReason,
    pub timestamp: Timestamp,
}

/// One match between an incoming (taker) and a resting (maker) order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct Trade {
    pub symbol: SymbolId,
    pub trade_id: TradeId,
    /// Always the maker's price.
    pub price: Price,
    pub qty: Qty,
    pub taker_side: Side,
    pub taker_order_id: OrderId,
    pub taker_account: AccountId,
    pub maker_order_id: OrderId,
    pub maker_account: AccountId,
    /// What the taker still has to trade after this match.
    pub taker_remaining: Qty,
    /// What stays on the book of the maker after this match (0: filled and gone).
    pub maker_remaining: Qty,
    pub seq: u64,
    pub timestamp: Timestamp,
}

/// An order left the book (or never reached it) with `remaining` unfilled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct Cancelled {
    pub order_id: OrderId,
    pub account: AccountId,
    pub symbol: SymbolId,
    pub side: Side,
    pub remaining: Qty,
    pub reason: CancelReason,
    pub timestamp: Timestamp,
}

/// An open order was changed. `qty` is the new total (filled + remaining); `remaining` 0
/// means the amend finished the order (new quantity at or below what had filled).
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct Amended {
    pub order_id: OrderId,
    pub account: AccountId,
    pub symbol: SymbolId,
    pub side: Side,
    pub price: Price,
    pub qty: Qty,
    pub remaining: Qty,
    pub priority_kept: bool,
    pub timestamp: Timestamp,
}

/// The new total quantity at one price level (0: the level is gone).
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct LevelChange {
    pub symbol: SymbolId,
    pub side: Side,
    pub price: Price,
    pub qty: Qty,
    pub seq: u64,
}

/// A price and the total quantity resting there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct PriceLevel {
    pub price: Price,
    pub qty: Qty,
}

/// Best bid and offer after a command changed either.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct Bbo {
    pub symbol: SymbolId,
    pub bid: Option<PriceLevel>,
    pub ask: Option<PriceLevel>,
    pub seq: u64,
}

/// Anything the engine emits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub enum Event {
    Accepted(Accepted),
    Rejected(Rejected),
    Trade(Trade),
    Cancelled(Cancelled),
    Amended(Amended),
    Level(LevelChange),
    Bbo(Bbo),
}

impl Event {
    /// `true` for events that belong on the public market-data stream.
    pub fn is_public(&self) -> bool {
        matches!(self, Event::Trade(_) | Event::Level(_) | Event::Bbo(_))
    }

    /// `true` for events that belong on the private executions stream.
    pub fn is_private(&self) -> bool {
        !matches!(self, Event::Level(_) | Event::Bbo(_))
    }
}
