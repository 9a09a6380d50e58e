//! The pure part of persistence: a batch of engine outputs, plus the stored state of the
//! orders it touches, becomes the rows to write. Both sinks use it, so an order's state
//! is folded from events in one place ([`tachyon_proto::order`], as the gateway does).
//!
//! # Idempotency
//! Every stored order carries the version of the last output applied to it: the shard
//! (= partition) and that output's sequence. A batch is folded on top of the stored
//! state, skipping every output at or below the stored version, so a redelivered batch,
//! cut anywhere, changes nothing; and a sink writes an order only over an older version,
//! so an older event never overwrites a newer state. Trades, fills and order events are
//! keyed by what the engine made deterministic (symbol + trade id; shard + sequence +
//! index), so writing them twice writes them once.

use std::collections::HashMap;

use tachyon_proto::api::OrderStatus;
use tachyon_proto::order::{effects, Effect, FillRecord, OrderRecord};
use tachyon_proto::wire::ShardOutput;
use tachyon_proto::{AccountId, CancelReason, Event, OrderId, Price, Qty, RejectReason, SymbolId, Timestamp, Trade};

/// An order as stored: its state and the version (shard, sequence) it reflects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredOrder {
    pub record: OrderRecord,
    pub shard: u32,
    /// Sequence of the last output folded into `record`.
    pub seq: u64,
}

/// What kind of change an order event records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Accepted,
    Rejected,
    Fill,
    Cancelled,
    Amended,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Accepted => "accepted",
            EventKind::Rejected => "rejected",
            EventKind::Fill => "fill",
            EventKind::Cancelled => "cancelled",
            EventKind::Amended => "amended",
        }
    }
}

/// One status change of an order: the change and the order's state right after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderEventRow {
    pub shard: u32,
    pub seq: u64,
    /// Position of the change among the output's order changes (stable across replays).
    pub index: u32,
    pub kind: EventKind,
    pub order_id: OrderId,
    pub account: AccountId,
    pub symbol: SymbolId,
    /// The order's status, price, total and filled quantity right after the change.
    pub status: OrderStatus,
    pub price: Option<Price>,
    pub qty: Qty,
    pub filled: Qty,
    /// The fill, for a fill.
    pub fill: Option<FillRecord>,
    /// The reject or cancel reason's code, for those.
    pub reason: Option<&'static str>,
    pub at: Timestamp,
}

impl OrderEventRow {
    fn new(output: &ShardOutput, index: u32, kind: EventKind, order: &OrderRecord, fill: Option<FillRecord>) -> Self {
        let reason = match kind {
            EventKind::Rejected => order.reject_reason.map(RejectReason::as_str),
            EventKind::Cancelled => order.cancel_reason.map(CancelReason::as_str),
            _ => None,
        };
        Self {
            shard: output.partition,
            seq: output.seq,
            index,
            kind,
            order_id: order.id,
            account: order.account,
            symbol: order.symbol,
            status: order.status,
            price: order.price,
            qty: order.qty,
            filled: order.filled,
            fill,
            reason,
            at: order.updated,
        }
    }
}

/// A trade, with the output that carried it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TradeRow {
    pub shard: u32,
    pub seq: u64,
    pub trade: Trade,
}

/// Everything one batch writes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rows {
    /// Orders whose state changed, in their final state for this batch (by id).
    pub orders: Vec<StoredOrder>,
    pub events: Vec<OrderEventRow>,
    pub trades: Vec<TradeRow>,
}

/// The orders a batch touches, sorted and without repeats (what a sink loads first).
pub fn touched_orders<'a>(batch: impl IntoIterator<Item = &'a ShardOutput>) -> Vec<OrderId> {
    let mut ids: Vec<OrderId> = batch
        .into_iter()
        .flat_map(|o| o.events.iter().flat_map(|e| effects(e, o.rejected.as_ref())))
        .map(|e| e.order_id())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Folds `batch` (outputs of one shard, in order) over `stored` (the stored state of the
/// orders it touches; missing ones are new) into the rows to write. See the module docs.
pub fn build<'a>(batch: impl IntoIterator<Item = &'a ShardOutput>, stored: Vec<StoredOrder>) -> Rows {
    // Version as loaded: outputs at or below it are already in the store.
    let mut orders: HashMap<OrderId, (u64, StoredOrder, bool)> =
        stored.into_iter().map(|s| (s.record.id, (s.seq, s, false))).collect();
    let mut rows = Rows::default();
    for output in batch {
        let mut index = 0u32;
        for event in &output.events {
            if let Event::Trade(trade) = event {
                rows.trades.push(TradeRow { shard: output.partition, seq: output.seq, trade: *trade });
            }
            for effect in effects(event, output.rejected.as_ref()) {
                let this = index;
                index += 1;
                let id = effect.order_id();
                match effect {
                    Effect::Create(record) => {
                        if orders.contains_key(&id) {
                            continue; // An id is never reused: the stored order stays.
                        }
                        let kind = if record.status == OrderStatus::Rejected {
                            EventKind::Rejected
                        } else {
                            EventKind::Accepted
                        };
                        rows.events.push(OrderEventRow::new(output, this, kind, &record, None));
                        let stored = StoredOrder { record: *record, shard: output.partition, seq: output.seq };
                        orders.insert(id, (0, stored, true));
                    }
                    effect => {
                        let Some((loaded, stored, dirty)) = orders.get_mut(&id) else { continue };
                        if output.seq <= *loaded {
                            continue; // Already stored.
                        }
                        stored.record.apply(&effect);
                        stored.seq = output.seq;
                        stored.shard = output.partition;
                        *dirty = true;
                        let (kind, fill) = match effect {
                            // The store keeps fills as rows of their own, not in the order.
                            Effect::Fill { .. } => (EventKind::Fill, stored.record.fills.pop()),
                            Effect::Cancel { .. } => (EventKind::Cancelled, None),
                            _ => (EventKind::Amended, None),
                        };
                        rows.events.push(OrderEventRow::new(output, this, kind, &stored.record, fill));
                    }
                }
            }
        }
    }
    let mut changed: Vec<StoredOrder> =
        orders.into_values().filter(|(_, _, dirty)| *dirty).map(|(_, s, _)| s).collect();
    changed.sort_unstable_by_key(|s| s.record.id);
    rows.orders = changed;
    rows
}
