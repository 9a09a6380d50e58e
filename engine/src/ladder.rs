//! One side of a book: its price levels, best last.
//!
//! Levels are kept in a `Vec` sorted by a side-normalised key (the price for bids, its
//! negation for asks) so that the best level is always the last element: reading the best
//! price is O(1) with no scan, and creating or removing a level near the touch, where
//! nearly all activity is, moves only the few levels better than it. An [`IntMap`] from
//! price to level slot makes "is there a level at this price?" O(1) for adds and amends.
//! The map is only looked up, never iterated, so it cannot affect event order.

use tachyon_proto::{Price, Side};

use crate::int_map::IntMap;

#[derive(Debug)]
pub(crate) struct Ladder {
    side: Side,
    /// Sorted ascending; the best level is last.
    keys: Vec<i64>,
    /// Level slot for each key.
    slots: Vec<u32>,
    by_price: IntMap,
}

impl Ladder {
    pub fn new(side: Side) -> Self {
        Self { side, keys: Vec::new(), slots: Vec::new(), by_price: IntMap::new() }
    }

    #[inline]
    fn key(&self, price: Price) -> i64 {
        match self.side {
            Side::Buy => price.0,
            Side::Sell => -price.0,
        }
    }

    /// Slot of the best level.
    #[inline]
    pub fn best(&self) -> Option<u32> {
        self.slots.last().copied()
    }

    /// Slot of the level at `price`, if there is one.
    #[inline]
    pub fn find(&self, price: Price) -> Option<u32> {
        self.by_price.get(price.0 as u64)
    }

    /// Hints the cache to load the price-index line for `price`.
    #[inline]
    pub fn prefetch(&self, price: Price) {
        self.by_price.prefetch(price.0 as u64);
    }

    /// Registers a new, empty level. The price must not have a level yet.
    pub fn insert(&mut self, price: Price, slot: u32) {
        let key = self.key(price);
        debug_assert!(!self.by_price.contains(price.0 as u64), "level {price:?} inserted twice");
        self.by_price.insert(price.0 as u64, slot);
        if self.keys.last().is_none_or(|&best| best < key) {
            self.keys.push(key);
            self.slots.push(slot);
        } else {
            let pos = self.keys.partition_point(|&k| k < key);
            self.keys.insert(pos, key);
            self.slots.insert(pos, slot);
        }
    }

    /// Forgets the level at `price`.
    pub fn remove(&mut self, price: Price) {
        let key = self.key(price);
        self.by_price.remove(price.0 as u64);
        if self.keys.last() == Some(&key) {
            self.keys.pop();
            self.slots.pop();
        } else {
            let pos = self.keys.partition_point(|&k| k < key);
            debug_assert_eq!(self.keys.get(pos), Some(&key), "removing a level that is not there");
            self.keys.remove(pos);
            self.slots.remove(pos);
        }
    }

    /// Level slots from best to worst.
    pub fn iter_best_first(&self) -> impl Iterator<Item = u32> + '_ {
        self.slots.iter().rev().copied()
    }

    /// Reserves room for `levels` more levels.
    pub fn reserve(&mut self, levels: usize) {
        self.keys.reserve(levels);
        self.slots.reserve(levels);
        self.by_price.reserve(levels);
    }

    /// `true` if a price on this side would trade against a resting `level_price` of
    /// the opposite side, i.e. `price` is at least as good for the opposite side.
    #[inline]
    pub fn crosses(side: Side, limit: Price, level_price: Price) -> bool {
        match side {
            Side::Buy => level_price <= limit,
            Side::Sell => level_price >= limit,
        }
    }
}
