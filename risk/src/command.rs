//! What the risk core takes in and what it answers.
//!
//! Two kinds of input share one totally ordered log per risk shard:
//! - [`Request`]s from the gateway: deposits, withdrawals, and the order entry that needs
//!   funds (new orders and amends, held before they go to matching);
//! - [`Settlement`]s from the matching shards: what happened to the held orders (accepted,
//!   filled, cancelled, rejected, amended), each batch tagged with the matching shard's
//!   (partition, output sequence) so a replayed one is recognised and skipped.

pub use tachyon_proto::balance::{TransferId, TransferKind};
use tachyon_proto::{AccountId, OrderId, Price, Qty, Side, SymbolId, TradeId};

use crate::config::AssetId;

/// A deposit or withdrawal, as the admin API gave it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct Transfer {
    pub kind: TransferKind,
    pub transfer_id: TransferId,
    pub account: AccountId,
    pub asset: AssetId,
    /// In units of the asset's scale; positive.
    pub amount: u64,
}

/// A new order to hold funds for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct OrderHold {
    pub order_id: OrderId,
    pub account: AccountId,
    pub symbol: SymbolId,
    pub side: Side,
    /// Limit price; `None` for a market order.
    pub price: Option<Price>,
    pub qty: Qty,
    /// A market buy's budget in QUOTE units, fees included (held in full).
    pub funds: Option<u64>,
}

/// An amend to hold more for (or to pass through).
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct AmendHold {
    pub order_id: OrderId,
    pub account: AccountId,
    pub price: Option<Price>,
    /// New total quantity (filled + remaining).
    pub qty: Option<Qty>,
}

/// Gateway input that needs the risk core's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub enum Request {
    Transfer(Transfer),
    Order(OrderHold),
    Amend(AmendHold),
}

/// One side of a trade.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct Leg {
    pub order_id: OrderId,
    pub account: AccountId,
    /// What the order has left to trade after this fill.
    pub remaining: Qty,
}

/// A trade, both sides (each risk shard settles the sides whose accounts it owns).
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct Fill {
    pub symbol: SymbolId,
    pub trade_id: TradeId,
    pub price: Price,
    pub qty: Qty,
    /// Who took liquidity (pays the taker rate).
    pub taker_side: Side,
    pub buy: Leg,
    pub sell: Leg,
}

/// What matching did to a held order, in the order it did it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub enum Settlement {
    /// The order reached its book.
    Accepted {
        order_id: OrderId,
        account: AccountId,
    },
    Fill(Fill),
    /// It left the book (or never reached it) with quantity unfilled: release what is held.
    Cancelled {
        order_id: OrderId,
        account: AccountId,
    },
    /// Matching refused a command naming this order: before acceptance the new order
    /// itself (release everything), after it an amend (the order is unchanged).
    Rejected {
        order_id: OrderId,
        account: AccountId,
    },
    /// An amend took effect.
    Amended {
        order_id: OrderId,
        account: AccountId,
        price: Price,
        qty: Qty,
        remaining: Qty,
    },
}

impl Settlement {
    /// The account it concerns (a fill concerns both sides).
    pub fn accounts(&self) -> [Option<AccountId>; 2] {
        match self {
            Settlement::Fill(f) => [Some(f.buy.account), Some(f.sell.account)],
            Settlement::Accepted { account, .. }
            | Settlement::Cancelled { account, .. }
            | Settlement::Rejected { account, .. }
            | Settlement::Amended { account, .. } => [Some(*account), None],
        }
    }
}

/// Why the risk core refused a request. Serialises to the API's codes at the edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
#[repr(u8)]
pub enum RiskReject {
    /// Not enough `available` for the hold or the withdrawal.
    InsufficientFunds,
    /// The symbol has no market here.
    UnknownSymbol,
    /// An asset index outside the configuration.
    UnknownAsset,
    /// A zero amount, or one that would overflow a balance.
    InvalidAmount,
    /// A market buy without `funds`, or `funds` on anything else.
    InvalidFunds,
    /// The transfer id was used before with another body.
    DuplicateTransferId,
    /// An amend of another account's order.
    NotOrderOwner,
    /// A new order whose id is already held.
    DuplicateOrderId,
}

/// One asset's balance of one account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct Balance {
    pub available: u64,
    pub hold: u64,
}

impl Balance {
    pub fn total(self) -> u64 {
        self.available + self.hold
    }
}

/// What a request did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub enum Outcome {
    /// The order or amend is held for: forward it to matching.
    Forward,
    /// A transfer moved funds (or was moved before with the same body: `replayed`); the
    /// balance right after it first applied.
    Transferred {
        balance: Balance,
        replayed: bool,
    },
    Rejected(RiskReject),
    /// A settlement batch applied.
    Settled,
    /// A settlement batch this shard had applied before (a replayed hop): nothing changed.
    Duplicate,
}
