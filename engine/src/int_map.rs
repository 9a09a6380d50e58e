//! `IntMap`: a map from 64-bit integer keys to slots, for the two hot lookups of the book
//! (order id → order slot, price → level slot).
//!
//! An open-addressing table with linear probing whose entries hold key and value side by
//! side (16 bytes), so a lookup costs about one cache miss where a general hash map (control
//! bytes apart from entries) costs two. Hashing keeps runs of 4 consecutive keys together in
//! one 64-byte line and scatters the runs with a Fibonacci multiply: the gateway's
//! sequential order ids and neighbouring prices near the touch share cache lines, while
//! strided keys still spread. The load factor stays at or below 1/2, and deletion shifts
//! later entries back instead of leaving tombstones, so probe sequences never degrade.
//! It is only ever looked up, never iterated, so it cannot influence event order.

use crate::arena::NIL;

#[derive(Clone, Copy, Debug)]
struct Entry {
    key: u64,
    /// `NIL` marks an empty entry.
    slot: u32,
}

const EMPTY: Entry = Entry { key: 0, slot: NIL };

#[derive(Debug)]
pub(crate) struct IntMap {
    entries: Vec<Entry>,
    /// `entries.len() - 1` (a power of two minus one).
    mask: usize,
    /// `64 - log2(entries.len() / 4)`: selects a group of 4 entries.
    shift: u32,
    len: usize,
}

impl IntMap {
    pub fn new() -> Self {
        Self::with_buckets(16)
    }

    fn with_buckets(buckets: usize) -> Self {
        debug_assert!(buckets.is_power_of_two() && buckets >= 8);
        Self { entries: vec![EMPTY; buckets], mask: buckets - 1, shift: 66 - buckets.trailing_zeros(), len: 0 }
    }

    #[inline]
    fn home(&self, key: u64) -> usize {
        let group = ((key >> 2).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize;
        (group << 2) | (key & 3) as usize
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Makes room for `additional` more keys without growing.
    pub fn reserve(&mut self, additional: usize) {
        let needed = ((self.len + additional) * 2).next_power_of_two();
        if needed > self.entries.len() {
            self.rehash(needed);
        }
    }

    fn rehash(&mut self, buckets: usize) {
        let old = std::mem::replace(self, Self::with_buckets(buckets));
        for e in old.entries.into_iter().filter(|e| e.slot != NIL) {
            self.insert(e.key, e.slot);
        }
    }

    /// The entry index holding `key`, if present.
    #[inline]
    fn find(&self, key: u64) -> Option<usize> {
        let mut i = self.home(key);
        loop {
            let e = self.entries[i];
            if e.slot == NIL {
                return None;
            }
            if e.key == key {
                return Some(i);
            }
            i = (i + 1) & self.mask;
        }
    }

    #[inline]
    pub fn get(&self, key: u64) -> Option<u32> {
        self.find(key).map(|i| self.entries[i].slot)
    }

    /// Hints the cache to load the line where `key` would be found.
    #[inline]
    pub fn prefetch(&self, key: u64) {
        crate::prefetch::prefetch(&self.entries[self.home(key)]);
    }

    pub fn contains(&self, key: u64) -> bool {
        self.get(key).is_some()
    }

    /// Inserts or replaces.
    pub fn insert(&mut self, key: u64, slot: u32) {
        debug_assert_ne!(slot, NIL);
        if (self.len + 1) * 2 > self.entries.len() {
            self.rehash(self.entries.len() * 2);
        }
        let mut i = self.home(key);
        loop {
            let e = &mut self.entries[i];
            if e.slot == NIL {
                *e = Entry { key, slot };
                self.len += 1;
                return;
            }
            if e.key == key {
                e.slot = slot;
                return;
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Removes a key; returns its slot.
    pub fn remove(&mut self, key: u64) -> Option<u32> {
        let i = self.find(key)?;
        let removed = self.entries[i].slot;
        self.len -= 1;
        // Backward-shift: move later entries of the cluster into the hole when the hole lies
        // on their probe path (between their home and their position).
        let mut hole = i;
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let e = self.entries[j];
            if e.slot == NIL {
                break;
            }
            let home = self.home(e.key);
            let dist_to_hole = hole.wrapping_sub(home) & self.mask;
            let dist_to_j = j.wrapping_sub(home) & self.mask;
            if dist_to_hole <= dist_to_j {
                self.entries[hole] = e;
                hole = j;
            }
        }
        self.entries[hole] = EMPTY;
        Some(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Random inserts, replaces and removes against std's map, through several growths and
    /// with keys chosen to collide.
    #[test]
    fn behaves_like_a_map() {
        let mut ours = IntMap::new();
        let mut model: HashMap<u64, u32> = HashMap::new();
        let mut x = 0x1234_5678_u64;
        for step in 0..200_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Small key space so removes hit; multiples of 2^40 collide in the home bucket.
            let key = (x % 3000) << if step % 7 == 0 { 40 } else { 0 };
            match x % 3 {
                0 | 1 => {
                    ours.insert(key, step);
                    model.insert(key, step);
                }
                _ => assert_eq!(ours.remove(key), model.remove(&key)),
            }
            if step % 1000 == 0 {
                assert_eq!(ours.len(), model.len());
                for (&k, &v) in &model {
                    assert_eq!(ours.get(k), Some(v));
                }
            }
        }
    }

    #[test]
    fn reserve_prevents_growth() {
        let mut m = IntMap::new();
        m.reserve(1000);
        let buckets = m.entries.len();
        for i in 0..1000 {
            m.insert(i, i as u32);
        }
        assert_eq!(m.entries.len(), buckets);
    }
}
