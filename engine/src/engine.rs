//! The [`Engine`]: state, configuration and the bookkeeping every command shares.
//!
//! The commands themselves are in `commands.rs`, matching in `matching.rs`.

use rustc_hash::FxHashMap;
use tachyon_proto::event::{Bbo, LevelChange, PriceLevel};
use tachyon_proto::{AccountId, ClientOrderId, Command, Event, Price, Qty, Side, SymbolId, SymbolSpec};

use crate::arena::{AccountLink, Levels, Order, Orders, NIL};
use crate::int_map::IntMap;
use crate::ladder::Ladder;
use crate::EventSink;

/// Per-account limits the engine enforces (per-order quantity and notional limits come
/// from each symbol's [`SymbolSpec`] and apply to every account).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RiskLimits {
    /// Most `gtc` orders one account may have resting, over all symbols of the shard.
    pub max_open_orders: u32,
}

impl Default for RiskLimits {
    fn default() -> Self {
        Self { max_open_orders: 10_000 }
    }
}

/// What an engine shard trades and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// The symbols this shard owns.
    pub symbols: Vec<SymbolSpec>,
    pub limits: RiskLimits,
}

/// Why an engine configuration is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("symbol id {0} is used twice")]
    DuplicateSymbolId(SymbolId),
    #[error("symbol name {0} is used twice")]
    DuplicateSymbolName(String),
    #[error("max_open_orders must be at least 1")]
    NoOpenOrders,
}

impl EngineConfig {
    /// Checks what [`Engine::new`] relies on: unique symbol ids and names, and limits that
    /// allow trading.
    ///
    /// # Errors
    /// The first [`ConfigError`] found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut ids = std::collections::BTreeSet::new();
        let mut names = std::collections::BTreeSet::new();
        for s in &self.symbols {
            if !ids.insert(s.id) {
                return Err(ConfigError::DuplicateSymbolId(s.id));
            }
            if !names.insert(s.name.as_str()) {
                return Err(ConfigError::DuplicateSymbolName(s.name.clone()));
            }
        }
        if self.limits.max_open_orders == 0 {
            return Err(ConfigError::NoOpenOrders);
        }
        Ok(())
    }
}

/// An account the engine has seen, with its open orders as a list in acceptance order
/// (`head`/`tail` slots, linked through the orders' account links).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Account {
    pub id: AccountId,
    pub open: u32,
    pub head: u32,
    pub tail: u32,
}

/// One symbol's book.
#[derive(Debug)]
pub(crate) struct Book {
    pub symbol: SymbolId,
    pub bids: Ladder,
    pub asks: Ladder,
    /// Public book sequence (last published).
    pub seq: u64,
    /// Command number that last bumped `seq` (one bump per command).
    pub seq_cmd: u64,
    /// Command number that last recorded this book in `touched`.
    pub touched_cmd: u64,
    /// Command number that last changed the best level of either side.
    pub top_changed_cmd: u64,
    pub next_trade_id: u64,
}

impl Book {
    pub fn new(symbol: SymbolId) -> Self {
        Self {
            symbol,
            bids: Ladder::new(Side::Buy),
            asks: Ladder::new(Side::Sell),
            seq: 0,
            seq_cmd: 0,
            touched_cmd: 0,
            top_changed_cmd: 0,
            next_trade_id: 1,
        }
    }

    #[inline]
    pub fn ladder(&self, side: Side) -> &Ladder {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    #[inline]
    pub fn ladder_mut(&mut self, side: Side) -> &mut Ladder {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }
}

/// Symbol id → book slot: a direct table for the small ids configurations use (one
/// load per lookup), a map for any id too large for the table.
#[derive(Debug, Default)]
pub(crate) struct BookIndex {
    table: Vec<u32>,
    large: FxHashMap<SymbolId, u32>,
}

impl BookIndex {
    /// Ids below this go in the table.
    const TABLE_LIMIT: u32 = 1 << 16;

    /// Registers a book; `false` if the id already has one.
    fn insert(&mut self, symbol: SymbolId, book: u32) -> bool {
        if symbol.0 >= Self::TABLE_LIMIT {
            return self.large.insert(symbol, book).is_none();
        }
        let i = symbol.0 as usize;
        if self.table.len() <= i {
            self.table.resize(i + 1, NIL);
        }
        std::mem::replace(&mut self.table[i], book) == NIL
    }

    #[inline]
    pub fn get(&self, symbol: SymbolId) -> Option<u32> {
        match self.table.get(symbol.0 as usize) {
            Some(&book) if book != NIL => Some(book),
            Some(_) => None,
            None => self.large.get(&symbol).copied(),
        }
    }
}

/// Best bid and ask of a book.
pub(crate) type Top = (Option<PriceLevel>, Option<PriceLevel>);

/// The matching engine of one shard. See the crate docs for its semantics.
#[derive(Debug)]
pub struct Engine {
    pub(crate) specs: Vec<SymbolSpec>,
    pub(crate) limits: RiskLimits,
    pub(crate) book_index: BookIndex,
    pub(crate) books: Vec<Book>,
    pub(crate) orders: Orders,
    pub(crate) levels: Levels,
    pub(crate) order_index: IntMap,
    pub(crate) accounts: Vec<Account>,
    pub(crate) account_index: FxHashMap<AccountId, u32>,
    pub(crate) client_ids: FxHashMap<(u32, ClientOrderId), u32>,
    pub(crate) cmd_no: u64,
    /// Books the current command changed, in the order it first changed them.
    pub(crate) touched: Vec<u32>,
}

impl Engine {
    /// An engine with empty books for `config.symbols`.
    ///
    /// # Panics
    /// If two symbols share an id ([`EngineConfig::validate`] reports that as an error;
    /// configuration loading calls it first).
    pub fn new(config: EngineConfig) -> Self {
        let mut book_index = BookIndex::default();
        let books = config
            .symbols
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let slot = u32::try_from(i).expect("fewer than 2^32 symbols");
                assert!(book_index.insert(spec.id, slot), "duplicate symbol id {}", spec.id);
                Book::new(spec.id)
            })
            .collect();
        Self {
            specs: config.symbols,
            limits: config.limits,
            book_index,
            books,
            orders: Orders::new(),
            levels: Levels::new(),
            order_index: IntMap::new(),
            accounts: Vec::new(),
            account_index: FxHashMap::default(),
            client_ids: FxHashMap::default(),
            cmd_no: 0,
            touched: Vec::new(),
        }
    }

    /// Makes room for `orders` resting orders in all and `levels` price levels per book
    /// side, so that the engine does not allocate until it goes past them.
    pub fn reserve(&mut self, orders: usize, levels: usize) {
        self.order_index.reserve(orders.saturating_sub(self.order_index.len()));
        self.orders.reserve(orders);
        for book in &mut self.books {
            book.bids.reserve(levels);
            book.asks.reserve(levels);
        }
    }

    /// Applies one command and writes its events to `out`.
    pub fn process(&mut self, cmd: &Command, out: &mut impl EventSink) {
        self.cmd_no += 1;
        self.touched.clear();
        match cmd {
            Command::New(c) => self.new_order(c, out),
            Command::Cancel(c) => self.cancel(c, out),
            Command::CancelAll(c) => self.cancel_all(c, out),
            Command::Amend(c) => self.amend(c, out),
        }
        self.emit_bbo_changes(out);
    }

    /// Number of resting orders.
    pub fn open_orders(&self) -> usize {
        self.orders.live()
    }

    /// The symbols of this engine, in configuration order.
    pub fn symbols(&self) -> &[SymbolSpec] {
        &self.specs
    }

    /// Best bid and ask of a symbol (`None` for an unknown symbol).
    pub fn top_of_book(&self, symbol: SymbolId) -> Option<(Option<PriceLevel>, Option<PriceLevel>)> {
        self.book_index.get(symbol).map(|b| self.top(b))
    }

    /// Aggregated levels of one side, best first: `(price, total quantity)`.
    pub fn depth(&self, symbol: SymbolId, side: Side, max_levels: usize) -> Vec<(Price, Qty)> {
        let Some(book) = self.book_index.get(symbol) else { return Vec::new() };
        self.books[book as usize]
            .ladder(side)
            .iter_best_first()
            .take(max_levels)
            .map(|l| (self.levels[l].price, self.levels[l].total))
            .collect()
    }

    // ---- shared bookkeeping -------------------------------------------------------------

    /// The dense slot of an account, registering it if this is its first new order
    /// (accounts are registered by new orders only: any other command of an account
    /// without orders can match nothing).
    pub(crate) fn account_slot(&mut self, id: AccountId) -> u32 {
        if let Some(slot) = self.find_account(id) {
            return slot;
        }
        let slot = u32::try_from(self.accounts.len()).expect("fewer than 2^32 accounts");
        self.accounts.push(Account { id, open: 0, head: NIL, tail: NIL });
        self.account_index.insert(id, slot);
        slot
    }

    /// The slot of a known account.
    pub(crate) fn find_account(&self, id: AccountId) -> Option<u32> {
        self.account_index.get(&id).copied()
    }

    pub(crate) fn top(&self, book: u32) -> Top {
        let b = &self.books[book as usize];
        let level =
            |l: Option<u32>| l.map(|slot| PriceLevel { price: self.levels[slot].price, qty: self.levels[slot].total });
        (level(b.bids.best()), level(b.asks.best()))
    }

    /// Records that the current command changes a book (in first-change order, which is
    /// the order of its BBO events).
    pub(crate) fn touch(&mut self, book: u32) {
        if self.books[book as usize].touched_cmd != self.cmd_no {
            self.books[book as usize].touched_cmd = self.cmd_no;
            self.touched.push(book);
        }
    }

    /// Notes that a level of `side` changed; if it is that side's best level, the BBO
    /// changed. (Within one command each side's best only moves one way, so a change to
    /// the best level always changes the published BBO; the reference model compares
    /// values instead, and the property tests hold the two to the same events.)
    #[inline]
    pub(crate) fn level_changed(&mut self, book: u32, side: Side, level: u32) {
        let b = &mut self.books[book as usize];
        if b.ladder(side).best() == Some(level) {
            b.top_changed_cmd = self.cmd_no;
        }
    }

    /// The book's public sequence for the current command (bumped once per command).
    #[inline]
    pub(crate) fn bump_seq(&mut self, book: u32) -> u64 {
        let b = &mut self.books[book as usize];
        if b.seq_cmd != self.cmd_no {
            b.seq_cmd = self.cmd_no;
            b.seq += 1;
        }
        b.seq
    }

    pub(crate) fn emit_level(&mut self, book: u32, side: Side, price: Price, qty: Qty, out: &mut impl EventSink) {
        let seq = self.bump_seq(book);
        let symbol = self.books[book as usize].symbol;
        out.emit(Event::Level(LevelChange { symbol, side, price, qty, seq }));
    }

    fn emit_bbo_changes(&mut self, out: &mut impl EventSink) {
        for i in 0..self.touched.len() {
            let book = self.touched[i];
            let b = &self.books[book as usize];
            if b.top_changed_cmd == self.cmd_no {
                let (bid, ask) = self.top(book);
                out.emit(Event::Bbo(Bbo { symbol: b.symbol, bid, ask, seq: b.seq }));
            }
        }
    }

    // ---- resting orders -----------------------------------------------------------------

    /// Puts a new order at the back of its price level (creating the level if needed) and
    /// registers it in the id index, the client-id index and its account's list. Returns
    /// the level's new total.
    pub(crate) fn rest_new(&mut self, order: Order, client_order_id: Option<ClientOrderId>) -> Qty {
        let slot = self.orders.alloc(order, client_order_id);
        self.order_index.insert(order.id.0, slot);
        if let Some(cid) = client_order_id {
            self.client_ids.insert((order.account, cid), slot);
        }
        self.track(order.account, slot);
        self.link_tail(slot)
    }

    /// Appends an order to its account's list.
    pub(crate) fn track(&mut self, account: u32, slot: u32) {
        let acct = &mut self.accounts[account as usize];
        acct.open += 1;
        let tail = acct.tail;
        acct.tail = slot;
        if tail == NIL {
            acct.head = slot;
        } else {
            self.orders.account_link_mut(tail).next = slot;
        }
        *self.orders.account_link_mut(slot) = AccountLink { prev: tail, next: NIL };
    }

    /// Links an order (with its price and side set) at the back of its level; returns the
    /// level's new total.
    pub(crate) fn link_tail(&mut self, slot: u32) -> Qty {
        let Order { price, side, book, remaining, .. } = self.orders[slot];
        let ladder = self.books[book as usize].ladder_mut(side);
        let level = match ladder.find(price) {
            Some(level) => level,
            None => {
                let level = self.levels.alloc(price);
                self.books[book as usize].ladder_mut(side).insert(price, level);
                level
            }
        };
        let l = &mut self.levels[level];
        let tail = l.tail;
        l.tail = slot;
        l.total.0 += remaining.0;
        let total = l.total;
        if tail == NIL {
            l.head = slot;
        } else {
            self.orders[tail].next = slot;
        }
        let o = &mut self.orders[slot];
        o.prev = tail;
        o.next = NIL;
        o.level = level;
        self.level_changed(book, side, level);
        total
    }

    /// Unlinks an order from its level's FIFO and takes its quantity out of the level's
    /// total; returns the level's slot and new total. The level may now be empty: callers
    /// publish the change, then call [`Engine::drop_if_empty`].
    pub(crate) fn unlink(&mut self, slot: u32) -> (u32, Qty) {
        let Order { prev, next, level, remaining, book, side, .. } = self.orders[slot];
        self.level_changed(book, side, level);
        if prev == NIL {
            self.levels[level].head = next;
        } else {
            self.orders[prev].next = next;
        }
        if next == NIL {
            self.levels[level].tail = prev;
        } else {
            self.orders[next].prev = prev;
        }
        let l = &mut self.levels[level];
        l.total.0 -= remaining.0;
        (level, l.total)
    }

    /// Removes a level that has no orders left from its ladder and frees it.
    pub(crate) fn drop_if_empty(&mut self, book: u32, side: Side, level: u32) {
        let l = &self.levels[level];
        if l.head == NIL {
            debug_assert!(l.total.is_zero(), "an empty level has no quantity");
            let price = l.price;
            self.books[book as usize].ladder_mut(side).remove(price);
            self.levels.free(level);
        }
    }

    /// Takes a resting order off the book entirely: emits `Cancelled`, then the level
    /// change, and forgets the order.
    pub(crate) fn cancel_resting(
        &mut self,
        slot: u32,
        reason: tachyon_proto::CancelReason,
        timestamp: tachyon_proto::Timestamp,
        out: &mut impl EventSink,
    ) {
        let Order { id, account, book, side, price, remaining, .. } = self.orders[slot];
        out.emit(Event::Cancelled(tachyon_proto::Cancelled {
            order_id: id,
            account: self.accounts[account as usize].id,
            symbol: self.books[book as usize].symbol,
            side,
            remaining,
            reason,
            timestamp,
        }));
        let (level, total) = self.unlink(slot);
        self.emit_level(book, side, price, total, out);
        self.drop_if_empty(book, side, level);
        self.release(slot);
    }

    /// Forgets an order that is no longer on any level: id index, client id, account list.
    pub(crate) fn release(&mut self, slot: u32) {
        let Order { id, account, .. } = self.orders[slot];
        self.order_index.remove(id.0);
        if let Some(cid) = self.orders.client_order_id(slot) {
            self.client_ids.remove(&(account, cid));
        }
        let AccountLink { prev, next } = self.orders.account_link(slot);
        let acct = &mut self.accounts[account as usize];
        acct.open -= 1;
        if prev == NIL {
            acct.head = next;
        } else {
            self.orders.account_link_mut(prev).next = next;
        }
        if next == NIL {
            acct.tail = prev;
        } else {
            self.orders.account_link_mut(next).prev = prev;
        }
        self.orders.free(slot);
    }

    /// Slots of an account's open orders, in acceptance order.
    pub(crate) fn account_orders(&self, account: u32) -> impl Iterator<Item = u32> + '_ {
        let mut slot = self.accounts[account as usize].head;
        std::iter::from_fn(move || {
            let current = slot;
            (current != NIL).then(|| {
                slot = self.orders.account_link(current).next;
                current
            })
        })
    }

    /// Checks every structural invariant; returns the first violation found.
    ///
    /// # Errors
    /// A description of the broken invariant.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut seen = 0usize;
        for (b, book) in self.books.iter().enumerate() {
            if let (Some(bid), Some(ask)) = (book.bids.best(), book.asks.best()) {
                if self.levels[bid].price >= self.levels[ask].price {
                    return Err(format!("book {} crossed at rest", book.symbol));
                }
            }
            for side in [Side::Buy, Side::Sell] {
                let mut last: Option<Price> = None;
                for level in book.ladder(side).iter_best_first() {
                    let l = &self.levels[level];
                    let worse_than = |better: Price| match side {
                        Side::Buy => l.price < better,
                        Side::Sell => l.price > better,
                    };
                    if last.is_some_and(|p| !worse_than(p)) {
                        return Err(format!("levels out of order at {:?}", l.price));
                    }
                    last = Some(l.price);
                    if book.ladder(side).find(l.price) != Some(level) {
                        return Err(format!("price index disagrees at {:?}", l.price));
                    }
                    let (mut sum, mut prev, mut slot) = (0u64, NIL, l.head);
                    while slot != NIL {
                        let o = &self.orders[slot];
                        if o.prev != prev || o.level != level || o.price != l.price || o.side != side {
                            return Err(format!("order {} badly linked", o.id));
                        }
                        if o.book as usize != b || o.remaining.is_zero() || o.remaining > o.qty {
                            return Err(format!("order {} has bad quantities", o.id));
                        }
                        if self.order_index.get(o.id.0) != Some(slot) {
                            return Err(format!("order {} missing from the id index", o.id));
                        }
                        sum += o.remaining.0;
                        seen += 1;
                        prev = slot;
                        slot = o.next;
                    }
                    if l.tail != prev || sum != l.total.0 || sum == 0 {
                        return Err(format!("level {:?} total {} != sum {sum}", l.price, l.total.0));
                    }
                }
            }
        }
        if seen != self.orders.live() || seen != self.order_index.len() {
            return Err(format!(
                "{seen} orders on levels, {} live, {} indexed",
                self.orders.live(),
                self.order_index.len()
            ));
        }
        let mut in_accounts = 0usize;
        for (a, acct) in self.accounts.iter().enumerate() {
            let (mut n, mut prev) = (0u32, NIL);
            for slot in self.account_orders(a as u32) {
                if self.orders[slot].account as usize != a || self.orders.account_link(slot).prev != prev {
                    return Err(format!("account list of {} broken at {}", acct.id, self.orders[slot].id));
                }
                n += 1;
                prev = slot;
            }
            if n != acct.open || acct.tail != prev {
                return Err(format!("account {} counts {} open, list has {n}", acct.id, acct.open));
            }
            in_accounts += n as usize;
        }
        if in_accounts != seen {
            return Err(format!("{in_accounts} orders in account lists, {seen} on levels"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tachyon_proto::symbol::default_symbols;

    #[test]
    fn default_limits_are_pinned() {
        assert_eq!(RiskLimits::default(), RiskLimits { max_open_orders: 10_000 });
    }

    #[test]
    fn validate_rejects_what_new_would_trip_over() {
        let config = EngineConfig { symbols: default_symbols(), limits: RiskLimits::default() };
        assert_eq!(config.validate(), Ok(()));
        let mut dup_id = config.clone();
        dup_id.symbols[1].id = dup_id.symbols[0].id;
        assert_eq!(dup_id.validate(), Err(ConfigError::DuplicateSymbolId(SymbolId(1))));
        let mut dup_name = config.clone();
        dup_name.symbols[1].name = "BTC-USD".into();
        assert_eq!(dup_name.validate(), Err(ConfigError::DuplicateSymbolName("BTC-USD".into())));
        let none = EngineConfig { limits: RiskLimits { max_open_orders: 0 }, ..config };
        assert_eq!(none.validate(), Err(ConfigError::NoOpenOrders));
    }
}

#[cfg(test)]
mod book_index_tests {
    use super::*;

    #[test]
    fn small_and_large_ids_resolve() {
        let mut index = BookIndex::default();
        assert!(index.insert(SymbolId(3), 0));
        assert!(index.insert(SymbolId(1 << 20), 1));
        assert!(!index.insert(SymbolId(3), 2), "duplicate ids are refused");
        assert_eq!(index.get(SymbolId(3)), Some(2));
        assert_eq!(index.get(SymbolId(1 << 20)), Some(1));
        assert_eq!(index.get(SymbolId(2)), None);
        assert_eq!(index.get(SymbolId(70_000)), None);
    }
}
