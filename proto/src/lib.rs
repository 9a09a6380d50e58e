//! Tachyon's wire contract, shared by every other crate.
//!
//! Layout:
//! - [`balance`]: balance updates, fill fees and transfers as shard outputs carry them.
//! - [`ids`]: order, trade, account and symbol identifiers, and client order ids.
//! - [`fixed`]: [`Price`] (ticks) and [`Qty`] (lots) as integer newtypes, and the exact
//!   decimal-string conversion of the JSON edge ([`Step`]).
//! - [`symbol`]: per-symbol specifications (tick, lot, limits), the default symbol set and
//!   the symbol → partition function.
//! - [`command`] and [`event`]: what goes into the matching engine and what comes out.
//! - [`metrics`]: the Prometheus text format, one family per metric.
//! - [`order`]: one order's state folded from the engine's events, shared by every store.
//! - [`wire`]: rkyv encodings for the backbone, validated on read.
//! - [`codes`]: the API's `snake_case` code of every enum, rendered and parsed without serde.
//! - [`api`]: the serde JSON types of the public API (`shared/API.md`).
//! - [`time`]: [`Timestamp`] and its RFC 3339 rendering.
//! - [`topic`]: the backbone's topic names.
//!
//! Invariants: prices and quantities are integers everywhere except in [`api`] strings;
//! a decimal string that is off the grid or out of range is an error, never rounded.

pub mod api;
pub mod balance;
pub mod codes;
pub mod command;
pub mod event;
pub mod fixed;
pub mod ids;
pub mod latency;
pub mod metrics;
pub mod order;
pub mod symbol;
pub mod time;
pub mod topic;
pub mod wire;

pub use command::{Amend, Cancel, CancelAll, Command, NewOrder, OrderType, SelfTradePrevention, TimeInForce};
pub use event::{Accepted, Amended, Bbo, CancelReason, Cancelled, Event, LevelChange, RejectReason, Rejected, Trade};
pub use fixed::{Price, Qty, Side, Step};
pub use ids::{AccountId, ClientOrderId, OrderId, SymbolId, TradeId};
pub use symbol::{partition_for, SymbolSpec};
pub use time::Timestamp;
pub use topic::Topic;
