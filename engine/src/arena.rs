//! Slabs for resting orders and price levels.
//!
//! Both are `Vec`s addressed by `u32` slot with an intrusive free list, so once the
//! engine has seen its high-water mark of live orders and levels, adding and removing them
//! allocates nothing. Orders are linked by slot twice: in a FIFO within their level
//! (`prev`/`next`, in the order itself, read while matching) and in their account's list
//! (in a separate array of 8-byte links, so that unlinking from the account list on every
//! release touches two small entries rather than two more order cache lines).

use tachyon_proto::{ClientOrderId, OrderId, Price, Qty, SelfTradePrevention, Side};

/// "No slot".
pub(crate) const NIL: u32 = u32::MAX;

/// A resting order (the hot part; the client order id lives in a parallel vector).
/// Aligned to one cache line so that reading an order never costs two misses.
#[derive(Clone, Copy, Debug)]
#[repr(align(64))]
pub(crate) struct Order {
    pub id: OrderId,
    pub price: Price,
    /// Total quantity (filled + remaining).
    pub qty: Qty,
    pub remaining: Qty,
    pub prev: u32,
    pub next: u32,
    pub level: u32,
    pub account: u32,
    pub book: u32,
    pub side: Side,
    pub stp: SelfTradePrevention,
    pub post_only: bool,
    /// Whether the parallel client-id vector holds an id for this slot (saves reading it,
    /// a likely cache miss, for the many orders without one).
    pub has_client_id: bool,
}

impl Order {
    /// Field values of an order not linked anywhere yet; new orders are built as
    /// `Order { id, price, …, ..Order::UNLINKED }`.
    pub const UNLINKED: Order = Order {
        id: OrderId(0),
        price: Price(0),
        qty: Qty::ZERO,
        remaining: Qty::ZERO,
        prev: NIL,
        next: NIL,
        level: NIL,
        account: NIL,
        book: NIL,
        side: Side::Buy,
        stp: SelfTradePrevention::None,
        post_only: false,
        has_client_id: false,
    };
}

/// An order's neighbours in its account's list of open orders (acceptance order).
#[derive(Clone, Copy, Debug)]
pub(crate) struct AccountLink {
    pub prev: u32,
    pub next: u32,
}

impl AccountLink {
    pub const UNLINKED: AccountLink = AccountLink { prev: NIL, next: NIL };
}

/// A price level: a FIFO of orders at one price and their total remaining quantity.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Level {
    pub price: Price,
    pub total: Qty,
    pub head: u32,
    pub tail: u32,
}

/// Orders, indexed by slot.
#[derive(Debug)]
pub(crate) struct Orders {
    slots: Vec<Order>,
    client_ids: Vec<Option<ClientOrderId>>,
    account_links: Vec<AccountLink>,
    free: u32,
    live: usize,
}

impl Orders {
    pub fn new() -> Self {
        Self { slots: Vec::new(), client_ids: Vec::new(), account_links: Vec::new(), free: NIL, live: 0 }
    }

    pub fn alloc(&mut self, mut order: Order, client_order_id: Option<ClientOrderId>) -> u32 {
        self.live += 1;
        order.has_client_id = client_order_id.is_some();
        if self.free == NIL {
            let slot = u32::try_from(self.slots.len()).expect("fewer than 2^32 resting orders");
            self.slots.push(order);
            self.client_ids.push(client_order_id);
            self.account_links.push(AccountLink::UNLINKED);
            slot
        } else {
            let slot = self.free;
            self.free = self.slots[slot as usize].next;
            self.slots[slot as usize] = order;
            if client_order_id.is_some() {
                self.client_ids[slot as usize] = client_order_id;
            }
            self.account_links[slot as usize] = AccountLink::UNLINKED;
            slot
        }
    }

    pub fn free(&mut self, slot: u32) {
        self.live -= 1;
        self.slots[slot as usize].next = self.free;
        self.slots[slot as usize].remaining = Qty::ZERO;
        if self.slots[slot as usize].has_client_id {
            self.client_ids[slot as usize] = None;
            self.slots[slot as usize].has_client_id = false;
        }
        self.free = slot;
    }

    pub fn client_order_id(&self, slot: u32) -> Option<ClientOrderId> {
        if self.slots[slot as usize].has_client_id {
            self.client_ids[slot as usize]
        } else {
            None
        }
    }

    pub fn live(&self) -> usize {
        self.live
    }

    /// Whether `slot` holds a resting order (freed slots have nothing left).
    #[inline]
    pub fn is_live(&self, slot: u32) -> bool {
        self.slots.get(slot as usize).is_some_and(|o| !o.remaining.is_zero())
    }

    /// Hints the cache to load an order and its account link.
    #[inline]
    pub fn prefetch(&self, slot: u32) {
        if let Some(order) = self.slots.get(slot as usize) {
            crate::prefetch::prefetch(order);
            crate::prefetch::prefetch(&self.account_links[slot as usize]);
        }
    }

    #[inline]
    pub fn account_link(&self, slot: u32) -> AccountLink {
        self.account_links[slot as usize]
    }

    #[inline]
    pub fn account_link_mut(&mut self, slot: u32) -> &mut AccountLink {
        &mut self.account_links[slot as usize]
    }

    /// Makes room for `total` slots in all.
    pub fn reserve(&mut self, total: usize) {
        let additional = total.saturating_sub(self.slots.len());
        self.slots.reserve(additional);
        self.client_ids.reserve(additional);
        self.account_links.reserve(additional);
    }
}

impl std::ops::Index<u32> for Orders {
    type Output = Order;
    #[inline]
    fn index(&self, slot: u32) -> &Order {
        &self.slots[slot as usize]
    }
}

impl std::ops::IndexMut<u32> for Orders {
    #[inline]
    fn index_mut(&mut self, slot: u32) -> &mut Order {
        &mut self.slots[slot as usize]
    }
}

/// Levels, indexed by slot.
#[derive(Debug)]
pub(crate) struct Levels {
    slots: Vec<Level>,
    free: u32,
}

impl Levels {
    pub fn new() -> Self {
        Self { slots: Vec::new(), free: NIL }
    }

    pub fn alloc(&mut self, price: Price) -> u32 {
        let level = Level { price, total: Qty::ZERO, head: NIL, tail: NIL };
        if self.free == NIL {
            let slot = u32::try_from(self.slots.len()).expect("fewer than 2^32 price levels");
            self.slots.push(level);
            slot
        } else {
            let slot = self.free;
            self.free = self.slots[slot as usize].head;
            self.slots[slot as usize] = level;
            slot
        }
    }

    pub fn free(&mut self, slot: u32) {
        self.slots[slot as usize].head = self.free;
        self.free = slot;
    }
}

impl Levels {
    /// Hints the cache to load a level.
    #[inline]
    pub fn prefetch(&self, slot: u32) {
        if let Some(level) = self.slots.get(slot as usize) {
            crate::prefetch::prefetch(level);
        }
    }
}

impl std::ops::Index<u32> for Levels {
    type Output = Level;
    #[inline]
    fn index(&self, slot: u32) -> &Level {
        &self.slots[slot as usize]
    }
}

impl std::ops::IndexMut<u32> for Levels {
    #[inline]
    fn index_mut(&mut self, slot: u32) -> &mut Level {
        &mut self.slots[slot as usize]
    }
}
