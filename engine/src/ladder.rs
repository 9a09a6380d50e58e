//! One side of a book: its price levels, in price order.
//!
//! Levels are found by price through an [`IntMap`]. Their order comes from a presence
//! bitmap over a window of 65,536 ticks: 1,024 words of 64 price bits, a word of group
//! bits per 64 words, and one top word. Creating or removing a level sets or clears a bit
//! (no memmove, whatever the depth), and the best level, or the next level behind any
//! price, is three `leading_zeros` away. The best level is cached, so reading it is one
//! load.
//!
//! Prices are handled as side-normalised keys (the price for bids, its negation for asks),
//! so that on both sides the best level has the largest key. The window is placed around
//! the first price seen; levels outside it (far from the touch, or after the market moved
//! more than half a window) are kept in a vector sorted by key, which is correct for any
//! price and fast for the few levels that live there. When the window empties, it is
//! re-centred on the next level created and adopts the outside levels that fall into it,
//! so outside keys never lie inside the window.
//!
//! Nothing here depends on hash-map iteration order: the map is only looked up.

use tachyon_proto::{Price, Side};

use crate::int_map::IntMap;

/// Ticks covered by the bitmap.
const WINDOW: i64 = 1 << 16;
const WORDS: usize = (WINDOW / 64) as usize;
const GROUPS: usize = WORDS / 64;

#[derive(Debug)]
pub(crate) struct Ladder {
    side: Side,
    by_price: IntMap,
    /// The window covers keys `base .. base + WINDOW`.
    base: i64,
    /// Levels inside the window.
    in_window: usize,
    words: Vec<u64>,
    /// Bit `w % 64` of `groups[w / 64]`: `words[w] != 0`.
    groups: [u64; GROUPS],
    /// Bit `g`: `groups[g] != 0`.
    top: u64,
    /// Levels outside the window as (key, slot), sorted by key.
    outside: Vec<(i64, u32)>,
    /// The best level as (key, slot).
    best: Option<(i64, u32)>,
}

/// Index of the highest set bit of a non-zero word.
#[inline]
fn highest(word: u64) -> usize {
    63 - word.leading_zeros() as usize
}

/// Bits `0..=bit`.
#[inline]
fn up_to(bit: usize) -> u64 {
    if bit >= 63 {
        u64::MAX
    } else {
        (1u64 << (bit + 1)) - 1
    }
}

impl Ladder {
    pub fn new(side: Side) -> Self {
        Self {
            side,
            by_price: IntMap::new(),
            base: 0,
            in_window: 0,
            words: vec![0; WORDS],
            groups: [0; GROUPS],
            top: 0,
            outside: Vec::new(),
            best: None,
        }
    }

    #[inline]
    fn key(&self, price: Price) -> i64 {
        match self.side {
            Side::Buy => price.0,
            Side::Sell => -price.0,
        }
    }

    #[inline]
    fn price(&self, key: i64) -> Price {
        match self.side {
            Side::Buy => Price(key),
            Side::Sell => Price(-key),
        }
    }

    /// Position of `key` in the window, if it lies there.
    #[inline]
    fn position(&self, key: i64) -> Option<usize> {
        let offset = i128::from(key) - i128::from(self.base);
        (0..i128::from(WINDOW)).contains(&offset).then_some(offset as usize)
    }

    /// Slot of the best level.
    #[inline]
    pub fn best(&self) -> Option<u32> {
        self.best.map(|(_, slot)| slot)
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

    /// Makes room for `levels` levels in all.
    pub fn reserve(&mut self, levels: usize) {
        self.by_price.reserve(levels.saturating_sub(self.by_price.len()));
    }

    /// Registers a new, empty level. The price must not have a level yet.
    pub fn insert(&mut self, price: Price, slot: u32) {
        let key = self.key(price);
        debug_assert!(!self.by_price.contains(price.0 as u64), "level {price:?} inserted twice");
        self.by_price.insert(price.0 as u64, slot);
        if self.in_window == 0 {
            self.recentre(key);
        }
        match self.position(key) {
            Some(pos) => self.set(pos),
            None => {
                let at = self.outside.partition_point(|&(k, _)| k < key);
                self.outside.insert(at, (key, slot));
            }
        }
        if self.best.is_none_or(|(best, _)| key > best) {
            self.best = Some((key, slot));
        }
    }

    /// Forgets the level at `price`.
    pub fn remove(&mut self, price: Price) {
        let key = self.key(price);
        self.by_price.remove(price.0 as u64);
        match self.position(key) {
            Some(pos) => self.clear(pos),
            None => {
                let at = self.outside.partition_point(|&(k, _)| k < key);
                debug_assert_eq!(self.outside.get(at).map(|e| e.0), Some(key), "removing a level that is not there");
                self.outside.remove(at);
            }
        }
        if self.best.is_some_and(|(best, _)| best == key) {
            self.best = self.below(key).map(|k| (k, self.slot_of(k)));
        }
    }

    fn slot_of(&self, key: i64) -> u32 {
        self.find(self.price(key)).expect("every level key has a slot in the price index")
    }

    fn set(&mut self, pos: usize) {
        let w = pos / 64;
        self.words[w] |= 1 << (pos % 64);
        self.groups[w / 64] |= 1 << (w % 64);
        self.top |= 1 << (w / 64);
        self.in_window += 1;
    }

    fn clear(&mut self, pos: usize) {
        let w = pos / 64;
        self.words[w] &= !(1 << (pos % 64));
        if self.words[w] == 0 {
            self.groups[w / 64] &= !(1 << (w % 64));
            if self.groups[w / 64] == 0 {
                self.top &= !(1 << (w / 64));
            }
        }
        self.in_window -= 1;
    }

    /// Moves the (empty) window to centre on `key` and adopts the outside levels that now
    /// fall inside it.
    fn recentre(&mut self, key: i64) {
        debug_assert_eq!(self.in_window, 0);
        self.base = key.saturating_sub(WINDOW / 2);
        let end = i128::from(self.base) + i128::from(WINDOW);
        let lo = self.outside.partition_point(|&(k, _)| k < self.base);
        let hi = self.outside.partition_point(|&(k, _)| i128::from(k) < end);
        if lo < hi {
            let adopted: Vec<(i64, u32)> = self.outside.drain(lo..hi).collect();
            for (k, _) in adopted {
                let pos = self.position(k).expect("adopted keys lie in the window");
                self.set(pos);
            }
        }
    }

    /// The highest window position at or below `pos`, if any.
    fn window_at_or_below(&self, pos: usize) -> Option<usize> {
        let w = pos / 64;
        let word = self.words[w] & up_to(pos % 64);
        if word != 0 {
            return Some(w * 64 + highest(word));
        }
        let g = w / 64;
        let group = self.groups[g] & up_to(w % 64).wrapping_shr(1);
        let w = if group != 0 {
            g * 64 + highest(group)
        } else {
            let top = self.top & ((1u64 << g) - 1);
            if top == 0 {
                return None;
            }
            let g = highest(top);
            g * 64 + highest(self.groups[g])
        };
        Some(w * 64 + highest(self.words[w]))
    }

    /// The largest level key strictly below `key`.
    fn below(&self, key: i64) -> Option<i64> {
        let in_window = if self.in_window == 0 {
            None
        } else {
            let offset = i128::from(key) - i128::from(self.base);
            if offset <= 0 {
                None
            } else {
                let pos = (offset - 1).min(i128::from(WINDOW - 1)) as usize;
                self.window_at_or_below(pos).map(|p| self.base + p as i64)
            }
        };
        let at = self.outside.partition_point(|&(k, _)| k < key);
        let outside = at.checked_sub(1).map(|i| self.outside[i].0);
        in_window.max(outside)
    }

    /// Level slots from best to worst.
    pub fn iter_best_first(&self) -> impl Iterator<Item = u32> + '_ {
        let mut next = self.best.map(|(key, _)| key);
        std::iter::from_fn(move || {
            let key = next?;
            next = self.below(key);
            Some(self.slot_of(key))
        })
    }

    /// `true` if a taker on `side` with limit `limit` would trade against a resting
    /// `level_price` of the opposite side.
    #[inline]
    pub fn crosses(side: Side, limit: Price, level_price: Price) -> bool {
        match side {
            Side::Buy => level_price <= limit,
            Side::Sell => level_price >= limit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Random inserts and removes over a price range much wider than the window (so the
    /// outside vector, re-centring and adoption are exercised), against a BTreeMap.
    #[test]
    fn orders_levels_like_a_sorted_map() {
        for side in [Side::Buy, Side::Sell] {
            let mut ladder = Ladder::new(side);
            let mut model: BTreeMap<i64, u32> = BTreeMap::new();
            let mut x = 0x9e37_79b9_u64;
            for step in 0..60_000u32 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Mostly near 1,000,000, sometimes far away (beyond the window).
                let spread = if x % 10 == 0 { 400_000 } else { 3_000 };
                let price = 1_000_000 - spread + (x >> 8) as i64 % (2 * spread);
                if model.remove(&price).is_some() {
                    ladder.remove(Price(price));
                } else {
                    ladder.insert(Price(price), step);
                    model.insert(price, step);
                }
                if step % 97 == 0 || model.len() < 4 {
                    let expected: Vec<u32> = match side {
                        Side::Buy => model.values().rev().copied().collect(),
                        Side::Sell => model.values().copied().collect(),
                    };
                    let got: Vec<u32> = ladder.iter_best_first().collect();
                    assert_eq!(got, expected, "{side:?} step {step}");
                    assert_eq!(ladder.best(), expected.first().copied());
                }
            }
            // Drain completely, checking the best each time.
            while let Some((&price, _)) = model.iter().next() {
                ladder.remove(Price(price));
                model.remove(&price);
                let expected = match side {
                    Side::Buy => model.values().next_back().copied(),
                    Side::Sell => model.values().next().copied(),
                };
                assert_eq!(ladder.best(), expected);
            }
            assert_eq!(ladder.iter_best_first().count(), 0);
        }
    }

    #[test]
    fn extreme_prices_do_not_overflow() {
        let mut ladder = Ladder::new(Side::Sell);
        ladder.insert(Price(i64::MAX), 1);
        ladder.insert(Price(1), 2);
        ladder.insert(Price(i64::MAX - 1), 3);
        assert_eq!(ladder.iter_best_first().collect::<Vec<_>>(), vec![2, 3, 1]);
        ladder.remove(Price(1));
        assert_eq!(ladder.best(), Some(3));
    }
}
