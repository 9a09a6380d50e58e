//! Commands: what the gateway sends the matching engine.
//!
//! Every command carries the account it acts for and the gateway's timestamp; the engine
//! takes both as given (it has no clock). Commands are plain `Copy` data with integer
//! prices and quantities, already checked against the symbol's grid by the gateway; the
//! engine checks limits again and rejects what it must (see [`crate::RejectReason`]).

use serde::{Deserialize, Serialize};

use crate::fixed::{Price, Qty, Side};
use crate::ids::{AccountId, ClientOrderId, OrderId, SymbolId};
use crate::time::Timestamp;

/// Limit or market.
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
pub enum OrderType {
    Limit,
    Market,
}

/// How long an order may live.
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
pub enum TimeInForce {
    /// Good till cancelled: the remainder rests on the book.
    Gtc,
    /// Immediate or cancel: trade what can be traded now, cancel the rest.
    Ioc,
    /// Fill or kill: trade the whole quantity now or nothing at all.
    Fok,
}

/// Self-trade prevention: what happens when an order would trade with its own account.
/// The incoming (taker) order's mode decides.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
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
pub enum SelfTradePrevention {
    /// Cancel the incoming order's remainder; the resting order stays.
    #[default]
    CancelNewest,
    /// Cancel the resting order and keep matching.
    CancelOldest,
    /// Cancel both.
    CancelBoth,
    /// Allow the self-trade.
    None,
}

/// Enter a new order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct NewOrder {
    pub order_id: OrderId,
    pub account: AccountId,
    pub symbol: SymbolId,
    pub side: Side,
    pub order_type: OrderType,
    pub time_in_force: TimeInForce,
    pub post_only: bool,
    pub stp: SelfTradePrevention,
    /// Limit price; ignored (and must be `None`) for market orders.
    pub price: Option<Price>,
    pub qty: Qty,
    pub client_order_id: Option<ClientOrderId>,
    pub timestamp: Timestamp,
}

/// Cancel one open order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct Cancel {
    pub order_id: OrderId,
    pub account: AccountId,
    pub timestamp: Timestamp,
}

/// Why a cancel-all was issued.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug))]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum CancelAllCause {
    /// The client asked (`DELETE /v1/orders`, `order.cancel_all`).
    Request,
    /// Cancel-on-disconnect of a WebSocket session.
    Disconnect,
}

/// Cancel every open order of an account, on one symbol or on all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct CancelAll {
    pub account: AccountId,
    pub symbol: Option<SymbolId>,
    pub cause: CancelAllCause,
    pub timestamp: Timestamp,
}

/// Change an open order's price and/or total quantity.
///
/// Lowering only the quantity keeps time priority; a new price or a larger quantity loses
/// it. A new total quantity at or below what has already filled finishes the order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct Amend {
    pub order_id: OrderId,
    pub account: AccountId,
    pub price: Option<Price>,
    pub qty: Option<Qty>,
    pub timestamp: Timestamp,
}

/// Anything the engine accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub enum Command {
    New(NewOrder),
    Cancel(Cancel),
    CancelAll(CancelAll),
    Amend(Amend),
}

impl Command {
    /// The account the command acts for.
    pub fn account(&self) -> AccountId {
        match self {
            Command::New(c) => c.account,
            Command::Cancel(c) => c.account,
            Command::CancelAll(c) => c.account,
            Command::Amend(c) => c.account,
        }
    }

    /// The gateway's timestamp.
    pub fn timestamp(&self) -> Timestamp {
        match self {
            Command::New(c) => c.timestamp,
            Command::Cancel(c) => c.timestamp,
            Command::CancelAll(c) => c.timestamp,
            Command::Amend(c) => c.timestamp,
        }
    }
}
