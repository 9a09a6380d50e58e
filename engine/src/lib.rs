//! Tachyon's matching core: a pure, deterministic state machine.
//!
//! [`Engine::process`] applies one [`Command`] to the books of the symbols a shard owns and
//! writes the resulting [`Event`]s into an [`EventSink`]; [`Engine::process_batch`] does
//! the same for a batch, marking where each command's events end. Nothing here does IO,
//! reads a clock, draws random numbers or iterates a hash map where the order could reach
//! the output: the events depend only on the command sequence, so replaying the input
//! reproduces them byte for byte. The crate depends on `tachyon-proto` alone; everything
//! that drives it (threads, journals, the backbone, snapshots on disk) is in
//! `tachyon-runtime`.
//!
//! # Layout
//! - [`engine`]: the [`Engine`], its configuration and the bookkeeping commands share.
//! - `commands`: new order, cancel, cancel-all, amend.
//! - `matching`: the matching loop, fill-or-kill pre-check, self-trade prevention.
//! - `batch`: [`Engine::process_batch`], which overlaps the cache misses of upcoming
//!   commands with current work in books larger than the caches.
//! - `prefetch`: the cache hint itself (the engine's only `unsafe`).
//! - `ladder`: one side of a book: levels found by price in O(1), ordered by a presence
//!   bitmap (best level cached, creating or removing a level flips a bit).
//! - `arena`: slabs for orders and levels with intrusive free lists (no allocation per
//!   order once warm).
//! - `int_map`: the integer-keyed index behind order ids and prices (one cache miss).
//! - [`snapshot`]: a complete, rkyv-serialisable image of the state, and restore.
//! - [`hash`]: the canonical state hash shared with the reference model.
//! - [`reference`] (feature `reference`, and in this crate's tests): a simple,
//!   obviously-correct model of the same semantics, the oracle of the property tests.
//!
//! # Semantics (the contract the reference model also implements)
//! - Price-time priority: better price first, then earlier arrival at that price.
//! - A trade happens at the resting (maker) order's price.
//! - New order checks, in this order: symbol known; quantity non-zero, ≥ min, ≤ max;
//!   limit has a positive price, market has none; no market `gtc`, post-only only on `gtc`
//!   limits; notional ≤ max (limits); order id not open; client order id not used by one
//!   of the account's open orders; a `gtc` limit needs room under the account's
//!   `max_open_orders`; a post-only order must not cross the opposite best.
//! - Fill-or-kill: if the quantity reachable now (stopping where self-trade prevention
//!   would stop the taker, skipping own orders that `cancel_oldest` would remove) is short,
//!   the order is cancelled (`fok`) with no other effect.
//! - Self-trade prevention applies when a taker meets a resting order of its own account,
//!   and follows the taker's mode: `cancel_newest` cancels the taker's remainder,
//!   `cancel_oldest` cancels the resting order and goes on, `cancel_both` does both,
//!   `none` trades.
//! - Remainders: `gtc` rests; `ioc` is cancelled (`ioc`); a market order's remainder is
//!   cancelled (`market_no_liquidity`); a taker stopped by self-trade prevention is
//!   cancelled (`stp`).
//! - Amend: lowering only the quantity keeps priority; a new price or a larger quantity
//!   puts the order at the back of its (new) level; a new price that crosses trades first
//!   like a new `gtc` order; a post-only order may not be amended to cross; a new total at
//!   or below the filled quantity finishes the order.
//! - Cancel-all cancels the account's open orders (optionally of one symbol) in the order
//!   they were accepted.
//! - An account is known to the engine from its first new order (accepted or not); other
//!   commands of an unknown account change nothing but may be rejected.
//! - Event order and the public `seq` are described in [`tachyon_proto::event`].
//!
//! # Invariants (checked by `Engine::check_invariants` in tests and debug builds)
//! A book is never crossed at rest; each level's total is the sum of its orders; every
//! open order is in exactly one level, one account list and the id index; FIFO links are
//! consistent; an account's open-order count matches its list.

mod arena;
mod batch;
mod commands;
pub mod engine;
pub mod hash;
mod int_map;
mod ladder;
mod matching;
mod prefetch;
#[cfg(any(test, feature = "reference"))]
pub mod reference;
pub mod snapshot;

pub use engine::{ConfigError, Engine, EngineConfig, RiskLimits};
pub use snapshot::{EngineSnapshot, RestoreError};
pub use tachyon_proto::{Command, Event};

/// Where the engine writes its events.
pub trait EventSink {
    /// Receives one event, in order.
    fn emit(&mut self, event: Event);

    /// Called by [`Engine::process_batch`] after the last event of each command (also for
    /// a command that emitted none), so a sink can tell which events belong to which
    /// command without the engine allocating anything per command.
    #[inline]
    fn end_command(&mut self) {}
}

impl EventSink for Vec<Event> {
    #[inline]
    fn emit(&mut self, event: Event) {
        self.push(event);
    }
}
