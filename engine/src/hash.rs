//! The canonical state hash.
//!
//! FNV-1a (64-bit) over an [`EngineSnapshot`] in its canonical order, field by field in
//! little-endian. It is independent of slots, hash-map layout and allocation history, so
//! two engines (or the engine and the reference model) that hold the same books hash the
//! same. The command count is left out: it is bookkeeping, not book state.

use crate::snapshot::EngineSnapshot;

const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0100_0000_01b3;

struct Fnv(u64);

impl Fnv {
    fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(PRIME);
        }
    }
    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
}

/// Hash of a snapshot's books and accounts.
pub fn state_hash(snap: &EngineSnapshot) -> u64 {
    let mut h = Fnv(OFFSET);
    for b in &snap.books {
        h.u64(u64::from(b.symbol.0));
        h.u64(b.seq);
        h.u64(b.next_trade_id);
        h.u64(b.orders.len() as u64);
        for o in &b.orders {
            h.u64(o.id.0);
            h.bytes(&o.account.to_raw().to_le_bytes());
            h.bytes(&[o.side as u8, o.stp as u8, u8::from(o.post_only)]);
            h.u64(o.price.0 as u64);
            h.u64(o.qty.0);
            h.u64(o.remaining.0);
            match o.client_order_id {
                Some(c) => h.bytes(c.as_str().as_bytes()),
                None => h.bytes(&[0xff]),
            }
        }
    }
    for a in &snap.accounts {
        h.bytes(&a.id.to_raw().to_le_bytes());
        h.u64(a.orders.len() as u64);
        for id in &a.orders {
            h.u64(id.0);
        }
    }
    h.0
}
