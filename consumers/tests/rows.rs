//! The row builder's idempotency, as a property: however a stream is cut into batches,
//! with redelivered (overlapping, stale) batches among them, folding each batch over an
//! in-memory store that keeps what a real store keeps (orders written only over an older
//! version; events and trades by key) ends in the state of one fold of the whole stream.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::{expected_orders, outputs};
use proptest::prelude::*;
use tachyon_consumers::rows::{build, touched_orders, StoredOrder};
use tachyon_proto::wire::ShardOutput;
use tachyon_proto::{OrderId, SymbolId};

#[derive(Default, PartialEq, Debug)]
struct Store {
    orders: HashMap<OrderId, StoredOrder>,
    /// (shard, seq, index) → (order, kind, filled after).
    events: BTreeMap<(u32, u64, u32), (u64, &'static str, u64)>,
    trades: BTreeMap<(u32, u64), u64>,
}

impl Store {
    fn write(&mut self, batch: &[ShardOutput]) {
        let stored = touched_orders(batch).iter().filter_map(|id| self.orders.get(id).cloned()).collect();
        let rows = build(batch, stored);
        for o in rows.orders {
            let newer = self.orders.get(&o.record.id).is_none_or(|old| old.seq < o.seq);
            if newer {
                self.orders.insert(o.record.id, o);
            }
        }
        for e in rows.events {
            self.events.entry((e.shard, e.seq, e.index)).or_insert((e.order_id.0, e.kind.as_str(), e.filled.0));
        }
        for t in rows.trades {
            self.trades.entry((t.trade.symbol.0, t.trade.trade_id.0)).or_insert(t.trade.qty.0);
        }
    }
}

fn stream() -> &'static [ShardOutput] {
    static STREAM: std::sync::OnceLock<Vec<ShardOutput>> = std::sync::OnceLock::new();
    STREAM.get_or_init(|| outputs(0, SymbolId(1), 1, 400, 31))
}

fn once() -> &'static Store {
    static ONCE: std::sync::OnceLock<Store> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let mut store = Store::default();
        store.write(stream());
        store
    })
}

#[test]
fn one_fold_matches_the_oracle() {
    let expected = expected_orders(stream());
    let store = once();
    assert_eq!(store.orders.len(), expected.len());
    for (id, o) in &store.orders {
        assert_eq!((o.record.status, o.record.filled.0), expected[&id.0], "order {}", id.0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn any_cut_with_redelivery_ends_in_the_same_store(
        cuts in proptest::collection::vec((0usize..400, 0usize..60), 1..12),
    ) {
        let stream = stream();
        let mut store = Store::default();
        let mut end = 0usize;
        for (next, back) in cuts {
            // Each write reaches some way past the last one, starting up to `back` before
            // its end (records already stored, read again after a crash), or is stale.
            let stop = next.max(end).min(stream.len());
            let start = end.saturating_sub(back).min(stop);
            store.write(&stream[start..stop]);
            end = end.max(stop);
        }
        store.write(&stream[end.saturating_sub(7)..]);
        prop_assert_eq!(&store, once());
    }
}
