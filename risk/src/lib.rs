//! Tachyon's risk core: balances, holds, settlement and fees as a pure, deterministic
//! state machine, the stage in front of matching when balances are on.
//!
//! Funds are per account and books per symbol, so the risk core runs as its own shards,
//! partitioned by account ([`risk_partition_for`]): each holds funds for its accounts'
//! new orders and amends before they go to matching, and settles what matching did with
//! them (fills, cancels, rejections, amends) when those come back. Nothing here does IO,
//! reads a clock or draws random numbers; the outcome depends only on the input sequence.
//!
//! # Layout
//! - [`config`]: assets and their scales, markets (a symbol's BASE/QUOTE and its exact
//!   lot and tick·lot conversions), fee rates and per-account tiers; refused at start-up
//!   when a scale cannot hold a symbol's grid.
//! - [`command`]: the inputs ([`Request`] from the gateway, [`Settlement`] from matching)
//!   and the [`Outcome`]s.
//! - [`core`]: [`Risk`], balances in dense arrays and one hold per open order.
//! - [`settle`]: engine events → settlements of one risk shard.
//! - [`snapshot`]: the canonical image (snapshots, restore, state hash, conservation).
//! - [`reference`] (feature `reference`, and in this crate's tests): the same rules
//!   written plainly, the oracle of the property tests.
//!
//! # Rules (the contract the reference model also implements)
//! - Holds: a limit buy holds `price × quantity` plus the fee at the higher of its maker
//!   and taker rates, rounded up; a sell holds its quantity of BASE; a market buy holds its
//!   `funds`. Not enough `available` → `insufficient_funds`, nothing held.
//! - While a limit order rests, its hold is what a new order for its remaining quantity at
//!   its price would hold. An amend that needs more holds the difference before it is
//!   forwarded (refused when short); what it reserved stays held until every amend of the
//!   order in flight has come back, then the hold is exact again.
//! - A fill pays the notional (at the maker's price) plus the fee at the payer's rate for
//!   its liquidity, rounded up, out of the order's hold, then out of `available`; a fee
//!   that cannot be covered that way is waived (rounding over several fills can need one
//!   unit more than was held). The buyer gains BASE, the seller QUOTE minus its fee; fees
//!   go to the exchange's fee account. Cancels, rejections and the last fill release what
//!   is left.
//! - Deposits and withdrawals are idempotent by transfer id: the same id and body again
//!   return the first result; the same id with another body is refused. A refused
//!   transfer records nothing (its id can be used again).
//! - Settlements come in batches tagged with the matching shard's partition and output
//!   sequence; a batch at or below the last one applied from that partition is a replay
//!   and changes nothing.
//!
//! # Invariants (checked after every input by the property tests)
//! No balance is ever negative; an account's `hold` of an asset is the sum of its orders'
//! holds in it; per asset, every account's `available + hold` plus the fees equals
//! deposits − withdrawals ± what trades moved to or from other shards (+ overdrafts, which
//! only an engine that overspent a market buy's funds could create).

pub mod command;
pub mod config;
pub mod core;
#[cfg(any(test, feature = "reference"))]
pub mod reference;
pub mod settle;
pub mod snapshot;

pub use command::{
    AmendHold, Balance, Fill, Leg, OrderHold, Outcome, Request, RiskReject, Settlement, Transfer, TransferId,
    TransferKind,
};
pub use config::{risk_partition_for, Asset, AssetId, FeeRates, FeeTier, Market, RiskConfig, RiskConfigError};
pub use core::Risk;
pub use settle::{settlement_of, settlements_for};
pub use snapshot::RiskSnapshot;
