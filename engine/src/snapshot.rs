//! Snapshots: a complete, canonical image of the engine's state.
//!
//! [`EngineSnapshot`] lists, per book, its sequence, trade counter and resting orders in
//! priority order (bids best first, then asks best first, FIFO within a level), and the
//! accounts in the order the engine first saw them, each with its open orders in
//! acceptance order. That is everything the engine's future output depends on, so
//! restoring a snapshot and replaying the commands after it reproduces the original run
//! exactly. The same image is the input of [`crate::hash`], and the reference model
//! produces it too, so the two can be compared field by field.
//!
//! Snapshots serialise with rkyv ([`EngineSnapshot::to_bytes`]) and are validated on read.

use rustc_hash::FxHashMap;
use tachyon_proto::{AccountId, ClientOrderId, OrderId, Price, Qty, SelfTradePrevention, Side, SymbolId};
use thiserror::Error;

use crate::arena::{Order, NIL};
use crate::engine::{Engine, EngineConfig};

/// One resting order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct OrderSnapshot {
    pub id: OrderId,
    pub account: AccountId,
    pub side: Side,
    pub price: Price,
    pub qty: Qty,
    pub remaining: Qty,
    pub stp: SelfTradePrevention,
    pub post_only: bool,
    pub client_order_id: Option<ClientOrderId>,
}

/// One book.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct BookSnapshot {
    pub symbol: SymbolId,
    pub seq: u64,
    pub next_trade_id: u64,
    /// Bids best first, then asks best first; FIFO within each level.
    pub orders: Vec<OrderSnapshot>,
}

/// One account and its open orders, in acceptance order.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct AccountSnapshot {
    pub id: AccountId,
    pub orders: Vec<OrderId>,
}

/// The whole engine state.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct EngineSnapshot {
    /// Commands processed so far.
    pub commands: u64,
    pub books: Vec<BookSnapshot>,
    pub accounts: Vec<AccountSnapshot>,
}

/// Why a snapshot cannot be restored.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RestoreError {
    #[error("snapshot is corrupt: {0}")]
    Corrupt(String),
    #[error("snapshot has symbol {0}, which the configuration does not")]
    UnknownSymbol(SymbolId),
    #[error("snapshot lists symbol {0} twice")]
    DuplicateSymbol(SymbolId),
    #[error("order {0} is inconsistent: {1}")]
    BadOrder(OrderId, &'static str),
    #[error("account {0} is listed twice")]
    DuplicateAccount(AccountId),
}

impl EngineSnapshot {
    /// Serialises with rkyv.
    ///
    /// # Errors
    /// [`RestoreError::Corrupt`] if rkyv fails (it does not for this type).
    pub fn to_bytes(&self) -> Result<Vec<u8>, RestoreError> {
        rkyv::to_bytes::<rkyv::rancor::Error>(self)
            .map(|v| v.to_vec())
            .map_err(|e| RestoreError::Corrupt(e.to_string()))
    }

    /// Validates and deserialises bytes from [`EngineSnapshot::to_bytes`].
    ///
    /// # Errors
    /// [`RestoreError::Corrupt`] for bytes that are not a valid snapshot.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, RestoreError> {
        let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
        aligned.extend_from_slice(bytes);
        rkyv::from_bytes::<Self, rkyv::rancor::Error>(&aligned).map_err(|e| RestoreError::Corrupt(e.to_string()))
    }

    /// The canonical state hash (see [`crate::hash`]); excludes the command count.
    pub fn state_hash(&self) -> u64 {
        crate::hash::state_hash(self)
    }
}

impl Engine {
    /// A complete image of the state.
    pub fn snapshot(&self) -> EngineSnapshot {
        let order = |slot: u32| {
            let o = &self.orders[slot];
            OrderSnapshot {
                id: o.id,
                account: self.accounts[o.account as usize].id,
                side: o.side,
                price: o.price,
                qty: o.qty,
                remaining: o.remaining,
                stp: o.stp,
                post_only: o.post_only,
                client_order_id: self.orders.client_order_id(slot),
            }
        };
        let books = self
            .books
            .iter()
            .map(|b| {
                let mut orders = Vec::new();
                for side in [Side::Buy, Side::Sell] {
                    for level in b.ladder(side).iter_best_first() {
                        let mut slot = self.levels[level].head;
                        while slot != NIL {
                            orders.push(order(slot));
                            slot = self.orders[slot].next;
                        }
                    }
                }
                BookSnapshot { symbol: b.symbol, seq: b.seq, next_trade_id: b.next_trade_id, orders }
            })
            .collect();
        let accounts = (0..self.accounts.len() as u32)
            .map(|a| AccountSnapshot {
                id: self.accounts[a as usize].id,
                orders: self.account_orders(a).map(|slot| self.orders[slot].id).collect(),
            })
            .collect();
        EngineSnapshot { commands: self.cmd_no, books, accounts }
    }

    /// The canonical state hash.
    pub fn state_hash(&self) -> u64 {
        self.snapshot().state_hash()
    }

    /// Rebuilds an engine from a snapshot taken with the same symbols.
    ///
    /// # Errors
    /// [`RestoreError`] if the snapshot names a symbol the configuration lacks, or its
    /// orders and accounts do not fit together.
    pub fn restore(config: EngineConfig, snap: &EngineSnapshot) -> Result<Self, RestoreError> {
        let mut engine = Engine::new(config);
        engine.cmd_no = snap.commands;
        for a in &snap.accounts {
            if engine.find_account(a.id).is_some() {
                return Err(RestoreError::DuplicateAccount(a.id));
            }
            engine.account_slot(a.id);
        }
        // Account-list position of every order, to relink the lists in their saved order.
        let mut position: FxHashMap<OrderId, (u32, usize)> = FxHashMap::default();
        for (i, a) in snap.accounts.iter().enumerate() {
            for (pos, id) in a.orders.iter().enumerate() {
                if position.insert(*id, (i as u32, pos)).is_some() {
                    return Err(RestoreError::BadOrder(*id, "listed by two accounts"));
                }
            }
        }
        let mut restored: Vec<(u32, usize, u32)> = Vec::new();
        let mut seen_books = vec![false; engine.books.len()];
        for b in &snap.books {
            let book = engine.book_index.get(b.symbol).ok_or(RestoreError::UnknownSymbol(b.symbol))?;
            if std::mem::replace(&mut seen_books[book as usize], true) {
                return Err(RestoreError::DuplicateSymbol(b.symbol));
            }
            let state = &mut engine.books[book as usize];
            state.seq = b.seq;
            state.next_trade_id = b.next_trade_id;
            let mut last: Option<(Side, Price)> = None;
            for o in &b.orders {
                let &(account, pos) = position.get(&o.id).ok_or(RestoreError::BadOrder(o.id, "in no account"))?;
                if engine.accounts[account as usize].id != o.account {
                    return Err(RestoreError::BadOrder(o.id, "listed by another account"));
                }
                if o.remaining.is_zero() || o.remaining > o.qty || o.price.0 <= 0 {
                    return Err(RestoreError::BadOrder(o.id, "bad price or quantities"));
                }
                if engine.order_index.contains(o.id.0) {
                    return Err(RestoreError::BadOrder(o.id, "appears twice"));
                }
                let in_order = match last {
                    None => true,
                    Some((Side::Sell, _)) if o.side == Side::Buy => false,
                    Some((side, prev)) if side == o.side => match side {
                        Side::Buy => o.price <= prev,
                        Side::Sell => o.price >= prev,
                    },
                    Some(_) => true,
                };
                if !in_order {
                    return Err(RestoreError::BadOrder(o.id, "out of priority order"));
                }
                last = Some((o.side, o.price));
                let slot = engine.orders.alloc(
                    Order {
                        id: o.id,
                        price: o.price,
                        qty: o.qty,
                        remaining: o.remaining,
                        account,
                        book,
                        side: o.side,
                        stp: o.stp,
                        post_only: o.post_only,
                        ..Order::UNLINKED
                    },
                    o.client_order_id,
                );
                engine.order_index.insert(o.id.0, slot);
                if let Some(cid) = o.client_order_id {
                    if engine.client_ids.insert((account, cid), slot).is_some() {
                        return Err(RestoreError::BadOrder(o.id, "duplicate client order id"));
                    }
                }
                engine.link_tail(slot);
                restored.push((account, pos, slot));
            }
        }
        if restored.len() != position.len() {
            return Err(RestoreError::Corrupt("an account lists an order no book holds".into()));
        }
        restored.sort_unstable_by_key(|&(account, pos, _)| (account, pos));
        for (account, _, slot) in restored {
            engine.track(account, slot);
        }
        if let Err(e) = engine.check_invariants() {
            return Err(RestoreError::Corrupt(e));
        }
        Ok(engine)
    }
}
