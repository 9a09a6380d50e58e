//! From the matching engine's events to the settlements of one risk shard.
//!
//! Every private event that changes what an order needs held becomes a [`Settlement`]:
//! accepted, traded (both sides in one [`Fill`]), cancelled, rejected, amended. A risk
//! shard takes those that concern at least one of its accounts, in the engine's order.

use tachyon_proto::{Event, Side};

use crate::command::{Fill, Leg, Settlement};
use crate::config::risk_partition_for;

/// The settlement an engine event means, if any.
pub fn settlement_of(event: &Event) -> Option<Settlement> {
    Some(match *event {
        Event::Accepted(o) => Settlement::Accepted { order_id: o.order_id, account: o.account },
        Event::Rejected(r) => Settlement::Rejected { order_id: r.order_id?, account: r.account },
        Event::Cancelled(c) => Settlement::Cancelled { order_id: c.order_id, account: c.account },
        Event::Amended(a) => Settlement::Amended {
            order_id: a.order_id,
            account: a.account,
            price: a.price,
            qty: a.qty,
            remaining: a.remaining,
        },
        Event::Trade(t) => {
            let taker = Leg { order_id: t.taker_order_id, account: t.taker_account, remaining: t.taker_remaining };
            let maker = Leg { order_id: t.maker_order_id, account: t.maker_account, remaining: t.maker_remaining };
            let (buy, sell) = if t.taker_side == Side::Buy { (taker, maker) } else { (maker, taker) };
            Settlement::Fill(Fill {
                symbol: t.symbol,
                trade_id: t.trade_id,
                price: t.price,
                qty: t.qty,
                taker_side: t.taker_side,
                buy,
                sell,
            })
        }
        Event::Level(_) | Event::Bbo(_) => return None,
    })
}

/// Appends to `out` the settlements of `events` that concern risk shard `partition` of
/// `partitions`.
pub fn settlements_for(events: &[Event], partition: u32, partitions: u32, out: &mut Vec<Settlement>) {
    for s in events.iter().filter_map(settlement_of) {
        if partitions <= 1 || s.accounts().into_iter().flatten().any(|a| risk_partition_for(a, partitions) == partition)
        {
            out.push(s);
        }
    }
}
