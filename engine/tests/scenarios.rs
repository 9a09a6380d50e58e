//! Golden scenarios: one test per rule, with the exact events it must produce.

mod common;

use common::*;
use tachyon_engine::Engine;
use tachyon_proto::command::CancelAllCause;
use tachyon_proto::event::{LevelChange, PriceLevel};
use tachyon_proto::{
    CancelReason, Event, OrderId, Price, Qty, RejectReason, SelfTradePrevention as Stp, Side, TimeInForce,
};

use Side::{Buy, Sell};

/// (maker, taker, price, qty) of each trade.
fn trades(events: &[Event]) -> Vec<(u64, u64, i64, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Trade(t) => Some((t.maker_order_id.0, t.taker_order_id.0, t.price.0, t.qty.0)),
            _ => None,
        })
        .collect()
}

/// (order, reason, remaining) of each cancel.
fn cancels(events: &[Event]) -> Vec<(u64, CancelReason, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Cancelled(c) => Some((c.order_id.0, c.reason, c.remaining.0)),
            _ => None,
        })
        .collect()
}

fn rejection(events: &[Event]) -> Option<RejectReason> {
    match events {
        [Event::Rejected(r)] => Some(r.reason),
        _ => None,
    }
}

fn levels(events: &[Event]) -> Vec<(Side, i64, u64, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Level(LevelChange { side, price, qty, seq, .. }) => Some((*side, price.0, qty.0, *seq)),
            _ => None,
        })
        .collect()
}

fn book(engine: &Engine, side: Side) -> Vec<(i64, u64)> {
    engine.depth(A, side, 100).into_iter().map(|(p, q)| (p.0, q.0)).collect()
}

fn level(price: i64, qty: u64) -> Option<PriceLevel> {
    Some(PriceLevel { price: Price(price), qty: Qty(qty) })
}

#[test]
fn a_limit_order_rests_and_publishes_its_level_and_bbo() {
    let mut e = engine();
    let events = place(&mut e, limit(1, "alice", Buy, 100, 5));
    assert!(matches!(events[0], Event::Accepted(a) if a.order_id == OrderId(1) && a.qty == Qty(5)));
    assert_eq!(levels(&events), vec![(Buy, 100, 5, 1)]);
    assert!(matches!(events.last(), Some(Event::Bbo(b)) if b.bid == level(100, 5) && b.ask.is_none() && b.seq == 1));
    assert_eq!(events.len(), 3);
}

#[test]
fn price_time_priority_and_maker_price() {
    let mut e = engine();
    place(&mut e, limit(1, "alice", Sell, 101, 2));
    place(&mut e, limit(2, "bob", Sell, 100, 2));
    place(&mut e, limit(3, "carol", Sell, 100, 2));
    let events = place(&mut e, limit(4, "dave", Buy, 102, 5));
    // Best price first, FIFO within it, at the makers' prices; the remainder of 1 fills at 101.
    assert_eq!(trades(&events), vec![(2, 4, 100, 2), (3, 4, 100, 2), (1, 4, 101, 1)]);
    assert_eq!(levels(&events), vec![(Sell, 100, 0, 4), (Sell, 101, 1, 4)]);
    assert_eq!(book(&e, Sell), vec![(101, 1)]);
    assert!(book(&e, Buy).is_empty());
}

#[test]
fn a_partially_filled_gtc_rests_its_remainder() {
    let mut e = engine();
    place(&mut e, limit(1, "alice", Sell, 100, 2));
    let events = place(&mut e, limit(2, "bob", Buy, 100, 5));
    assert_eq!(trades(&events), vec![(1, 2, 100, 2)]);
    assert_eq!(levels(&events), vec![(Sell, 100, 0, 2), (Buy, 100, 3, 2)]);
    assert!(matches!(events.last(), Some(Event::Bbo(b)) if b.bid == level(100, 3) && b.ask.is_none()));
}

#[test]
fn market_orders_sweep_and_cancel_what_is_left() {
    let mut e = engine();
    place(&mut e, limit(1, "alice", Sell, 100, 2));
    place(&mut e, limit(2, "alice", Sell, 105, 2));
    let events = place(&mut e, market(3, "bob", Buy, 6));
    assert_eq!(trades(&events), vec![(1, 3, 100, 2), (2, 3, 105, 2)]);
    assert_eq!(cancels(&events), vec![(3, CancelReason::MarketNoLiquidity, 2)]);
    // On an empty book nothing trades and nothing public changes.
    let events = place(&mut e, market(4, "bob", Buy, 1));
    assert_eq!(cancels(&events), vec![(4, CancelReason::MarketNoLiquidity, 1)]);
    assert_eq!(events.len(), 2, "accepted + cancelled, no book change: {events:?}");
}

#[test]
fn ioc_fills_what_it_can_and_never_rests() {
    let mut e = engine();
    place(&mut e, limit(1, "alice", Sell, 100, 2));
    place(&mut e, limit(2, "alice", Sell, 102, 2));
    let events = place(&mut e, limit(3, "bob", Buy, 101, 5).tif(TimeInForce::Ioc));
    assert_eq!(trades(&events), vec![(1, 3, 100, 2)]);
    assert_eq!(cancels(&events), vec![(3, CancelReason::Ioc, 3)]);
    assert!(book(&e, Buy).is_empty());
}

#[test]
fn fok_fills_completely_or_not_at_all() {
    let mut e = engine();
    place(&mut e, limit(1, "alice", Sell, 100, 2));
    place(&mut e, limit(2, "alice", Sell, 101, 2));
    let before = e.snapshot().books;
    let events = place(&mut e, limit(3, "bob", Buy, 101, 5).tif(TimeInForce::Fok));
    assert_eq!(trades(&events), vec![]);
    assert_eq!(cancels(&events), vec![(3, CancelReason::Fok, 5)]);
    assert_eq!(e.snapshot().books, before, "a killed FOK changes no book");
    let events = place(&mut e, limit(4, "bob", Buy, 101, 4).tif(TimeInForce::Fok));
    assert_eq!(trades(&events), vec![(1, 4, 100, 2), (2, 4, 101, 2)]);
    assert_eq!(cancels(&events), vec![]);
}

#[test]
fn fok_does_not_count_liquidity_behind_its_own_order() {
    let mut e = engine();
    place(&mut e, limit(1, "bob", Sell, 100, 2));
    place(&mut e, limit(2, "alice", Sell, 101, 2));
    // cancel_newest would stop at bob's own order: nothing reachable.
    let events = place(&mut e, limit(3, "bob", Buy, 101, 2).tif(TimeInForce::Fok));
    assert_eq!(cancels(&events), vec![(3, CancelReason::Fok, 2)]);
    // cancel_oldest removes bob's own order on the way, so alice's 2 are reachable.
    let events = place(&mut e, limit(4, "bob", Buy, 101, 2).tif(TimeInForce::Fok).stp(Stp::CancelOldest));
    assert_eq!(cancels(&events), vec![(1, CancelReason::Stp, 2)]);
    assert_eq!(trades(&events), vec![(2, 4, 101, 2)]);
}

#[test]
fn post_only_rests_or_is_rejected_never_fills() {
    let mut e = engine();
    place(&mut e, limit(1, "alice", Sell, 100, 2));
    let events = place(&mut e, limit(2, "bob", Buy, 100, 1).post_only());
    assert_eq!(rejection(&events), Some(RejectReason::PostOnlyWouldTake));
    let events = place(&mut e, limit(3, "bob", Buy, 99, 1).post_only());
    assert_eq!(levels(&events), vec![(Buy, 99, 1, 2)]);
    // Post-only needs a gtc limit.
    let events = place(&mut e, limit(4, "bob", Buy, 90, 1).post_only().tif(TimeInForce::Ioc));
    assert_eq!(rejection(&events), Some(RejectReason::InvalidTimeInForce));
}

#[test]
fn stp_cancel_newest_cancels_the_taker_only() {
    let mut e = engine();
    place(&mut e, limit(1, "alice", Sell, 100, 2));
    place(&mut e, limit(2, "bob", Sell, 100, 2));
    let events = place(&mut e, limit(3, "bob", Buy, 100, 5));
    // Trades with alice first (FIFO), then meets its own order: the taker's rest is cancelled.
    assert_eq!(trades(&events), vec![(1, 3, 100, 2)]);
    assert_eq!(cancels(&events), vec![(3, CancelReason::Stp, 3)]);
    assert_eq!(book(&e, Sell), vec![(100, 2)]);
}

#[test]
fn stp_cancel_oldest_removes_own_resting_orders_and_goes_on() {
    let mut e = engine();
    place(&mut e, limit(1, "bob", Sell, 100, 2));
    place(&mut e, limit(2, "alice", Sell, 100, 2));
    let events = place(&mut e, limit(3, "bob", Buy, 100, 5).stp(Stp::CancelOldest));
    assert_eq!(cancels(&events), vec![(1, CancelReason::Stp, 2)]);
    assert_eq!(trades(&events), vec![(2, 3, 100, 2)]);
    assert_eq!(book(&e, Buy), vec![(100, 3)]);
    assert!(book(&e, Sell).is_empty());
}

#[test]
fn stp_cancel_both_and_none() {
    let mut e = engine();
    place(&mut e, limit(1, "bob", Sell, 100, 2));
    let events = place(&mut e, limit(2, "bob", Buy, 100, 5).stp(Stp::CancelBoth));
    assert_eq!(cancels(&events), vec![(1, CancelReason::Stp, 2), (2, CancelReason::Stp, 5)]);
    assert!(book(&e, Sell).is_empty() && book(&e, Buy).is_empty());
    place(&mut e, limit(3, "bob", Sell, 100, 2));
    let events = place(&mut e, limit(4, "bob", Buy, 100, 2).stp(Stp::None));
    assert_eq!(trades(&events), vec![(3, 4, 100, 2)]);
}

#[test]
fn cancel_checks_ownership_and_state() {
    let mut e = engine();
    place(&mut e, limit(1, "alice", Buy, 100, 2));
    assert_eq!(rejection(&run(&mut e, cancel(1, "bob"))), Some(RejectReason::NotOrderOwner));
    assert_eq!(rejection(&run(&mut e, cancel(9, "alice"))), Some(RejectReason::OrderNotOpen));
    let events = run(&mut e, cancel(1, "alice"));
    assert_eq!(cancels(&events), vec![(1, CancelReason::User, 2)]);
    assert_eq!(levels(&events), vec![(Buy, 100, 0, 2)]);
    assert!(matches!(events.last(), Some(Event::Bbo(b)) if b.bid.is_none()));
    assert_eq!(rejection(&run(&mut e, cancel(1, "alice"))), Some(RejectReason::OrderNotOpen));
}

#[test]
fn rejected_cancels_do_not_reveal_other_accounts_orders() {
    let mut e = engine();
    place(&mut e, limit(1, "alice", Buy, 100, 2));
    match run(&mut e, cancel(1, "bob")).as_slice() {
        [Event::Rejected(r)] => assert_eq!(r.symbol, None),
        other => panic!("expected one rejection, got {other:?}"),
    }
}

#[test]
fn cancel_all_in_acceptance_order_per_symbol_or_everywhere() {
    let mut e = engine();
    place(&mut e, limit(1, "alice", Buy, 100, 1));
    place(&mut e, limit(2, "alice", Sell, 110, 2).symbol(B));
    place(&mut e, limit(3, "bob", Buy, 101, 1));
    place(&mut e, limit(4, "alice", Buy, 99, 1));
    let events = run(&mut e, cancel_all("alice", Some(A), CancelAllCause::Request));
    assert_eq!(cancels(&events), vec![(1, CancelReason::CancelAll, 1), (4, CancelReason::CancelAll, 1)]);
    let events = run(&mut e, cancel_all("alice", None, CancelAllCause::Disconnect));
    assert_eq!(cancels(&events), vec![(2, CancelReason::Disconnect, 2)]);
    assert_eq!(e.open_orders(), 1, "bob's order stays");
    assert!(run(&mut e, cancel_all("alice", None, CancelAllCause::Request)).is_empty());
}

#[test]
fn amend_quantity_down_keeps_priority() {
    let mut e = engine();
    place(&mut e, limit(1, "alice", Sell, 100, 5));
    place(&mut e, limit(2, "bob", Sell, 100, 5));
    let events = run(&mut e, amend(1, "alice", None, Some(3)));
    assert!(matches!(events[0], Event::Amended(a) if a.priority_kept && a.qty == Qty(3) && a.remaining == Qty(3)));
    assert_eq!(levels(&events), vec![(Sell, 100, 8, 3)]);
    assert_eq!(trades(&place(&mut e, limit(3, "carol", Buy, 100, 1))), vec![(1, 3, 100, 1)]);
}

#[test]
fn amend_quantity_up_or_new_price_loses_priority() {
    let mut e = engine();
    place(&mut e, limit(1, "alice", Sell, 100, 5));
    place(&mut e, limit(2, "bob", Sell, 100, 5));
    let events = run(&mut e, amend(1, "alice", None, Some(6)));
    assert!(matches!(events[0], Event::Amended(a) if !a.priority_kept));
    assert_eq!(levels(&events), vec![(Sell, 100, 11, 3)]);
    assert_eq!(trades(&place(&mut e, limit(3, "carol", Buy, 100, 1))), vec![(2, 3, 100, 1)]);
    // A new price moves the order to the back of the new level.
    place(&mut e, limit(4, "dave", Sell, 101, 1));
    let events = run(&mut e, amend(2, "bob", Some(101), None));
    assert_eq!(levels(&events), vec![(Sell, 100, 6, 6), (Sell, 101, 5, 6)]);
    assert_eq!(
        trades(&place(&mut e, limit(5, "carol", Buy, 101, 8))),
        vec![(1, 5, 100, 6), (4, 5, 101, 1), (2, 5, 101, 1)]
    );
}

#[test]
fn amend_to_a_crossing_price_trades_first() {
    let mut e = engine();
    place(&mut e, limit(1, "alice", Sell, 101, 2));
    place(&mut e, limit(2, "bob", Buy, 99, 5));
    let events = run(&mut e, amend(2, "bob", Some(101), None));
    assert_eq!(trades(&events), vec![(1, 2, 101, 2)]);
    assert_eq!(levels(&events), vec![(Buy, 99, 0, 3), (Sell, 101, 0, 3), (Buy, 101, 3, 3)]);
    assert_eq!(book(&e, Buy), vec![(101, 3)]);
}

#[test]
fn amend_at_or_below_filled_finishes_the_order() {
    let mut e = engine();
    place(&mut e, limit(1, "alice", Sell, 100, 5));
    place(&mut e, limit(2, "bob", Buy, 100, 3));
    let events = run(&mut e, amend(1, "alice", None, Some(2)));
    assert!(matches!(events[0], Event::Amended(a) if a.remaining == Qty(0) && a.qty == Qty(3)));
    assert!(book(&e, Sell).is_empty());
    assert_eq!(rejection(&run(&mut e, cancel(1, "alice"))), Some(RejectReason::OrderNotOpen));
}

#[test]
fn amend_rules_reject_like_new_orders() {
    let mut e = engine();
    place(&mut e, limit(1, "alice", Buy, 90, 5).post_only());
    place(&mut e, limit(2, "bob", Sell, 100, 5));
    let before = e.state_hash();
    assert_eq!(rejection(&run(&mut e, amend(1, "alice", Some(100), None))), Some(RejectReason::PostOnlyWouldTake));
    assert_eq!(rejection(&run(&mut e, amend(1, "alice", None, Some(0)))), Some(RejectReason::InvalidQuantity));
    assert_eq!(rejection(&run(&mut e, amend(1, "alice", None, Some(51)))), Some(RejectReason::QuantityAboveMax));
    assert_eq!(rejection(&run(&mut e, amend(1, "alice", Some(0), None))), Some(RejectReason::InvalidPrice));
    assert_eq!(rejection(&run(&mut e, amend(1, "alice", None, Some(45)))), Some(RejectReason::NotionalAboveMax));
    assert_eq!(rejection(&run(&mut e, amend(1, "bob", None, Some(1)))), Some(RejectReason::NotOrderOwner));
    assert_eq!(e.state_hash(), before, "rejected amends change nothing");
}

#[test]
fn every_new_order_reject_reason() {
    let mut e = Engine::new(config(2));
    let cases = [
        (limit(1, "a", Buy, 100, 0), RejectReason::InvalidQuantity),
        (limit(2, "a", Buy, 100, 1).symbol(B), RejectReason::QuantityBelowMin),
        (limit(3, "a", Buy, 100, 51), RejectReason::QuantityAboveMax),
        (limit(4, "a", Buy, 0, 1), RejectReason::InvalidPrice),
        (limit(5, "a", Buy, 100, 41), RejectReason::NotionalAboveMax),
        (market(6, "a", Buy, 1).tif(TimeInForce::Gtc), RejectReason::InvalidTimeInForce),
        (limit(7, "a", Buy, 100, 1).symbol(tachyon_proto::SymbolId(99)), RejectReason::UnknownSymbol),
    ];
    for (order, reason) in cases {
        assert_eq!(rejection(&place(&mut e, order)), Some(reason), "{order:?}");
    }
    let mut m = market(8, "a", Buy, 1);
    m.0.price = Some(Price(100));
    assert_eq!(rejection(&place(&mut e, m)), Some(RejectReason::InvalidPrice));
    // Duplicates and the open-order limit.
    place(&mut e, limit(10, "a", Buy, 90, 1).cid("x"));
    assert_eq!(rejection(&place(&mut e, limit(10, "a", Buy, 90, 1))), Some(RejectReason::DuplicateOrderId));
    assert_eq!(
        rejection(&place(&mut e, limit(11, "a", Buy, 90, 1).cid("x"))),
        Some(RejectReason::DuplicateClientOrderId)
    );
    place(&mut e, limit(12, "b", Buy, 90, 1).cid("x")); // another account may use the same id
    place(&mut e, limit(13, "a", Buy, 90, 1));
    assert_eq!(rejection(&place(&mut e, limit(14, "a", Buy, 90, 1))), Some(RejectReason::MaxOpenOrders));
    // An IOC never rests, so the open-order limit does not apply to it.
    assert!(rejection(&place(&mut e, limit(15, "a", Buy, 90, 1).tif(TimeInForce::Ioc))).is_none());
    // Once the order holding "x" is done, the client id is free again.
    run(&mut e, cancel(10, "a"));
    assert!(rejection(&place(&mut e, limit(16, "a", Buy, 90, 1).cid("x"))).is_none());
}

#[test]
fn public_sequence_goes_up_by_one_per_book_changing_command() {
    let mut e = engine();
    let mut seqs = Vec::new();
    let mut record = |events: Vec<Event>| {
        let mut s: Vec<u64> = events
            .iter()
            .filter_map(|e| match e {
                Event::Level(l) => Some(l.seq),
                Event::Trade(t) => Some(t.seq),
                Event::Bbo(b) => Some(b.seq),
                _ => None,
            })
            .collect();
        s.dedup();
        assert!(s.len() <= 1, "one sequence per command: {s:?}");
        seqs.extend(s);
    };
    record(place(&mut e, limit(1, "alice", Sell, 100, 2)));
    record(place(&mut e, limit(2, "alice", Sell, 101, 2)));
    record(place(&mut e, limit(3, "bob", Buy, 0, 2))); // rejected: no change
    record(place(&mut e, limit(4, "bob", Buy, 101, 3))); // sweeps two levels: one change
    record(place(&mut e, limit(5, "bob", Buy, 99, 1).symbol(B).tif(TimeInForce::Fok))); // other symbol, killed
    record(run(&mut e, cancel(2, "alice")));
    record(run(&mut e, amend(99, "alice", None, Some(1)))); // rejected
    assert_eq!(seqs, vec![1, 2, 3, 4]);
}

#[test]
fn bbo_is_published_only_when_the_top_changes() {
    let mut e = engine();
    place(&mut e, limit(1, "alice", Buy, 100, 2));
    let deeper = place(&mut e, limit(2, "alice", Buy, 99, 2));
    assert!(!deeper.iter().any(|e| matches!(e, Event::Bbo(_))), "a deeper level is not a BBO change");
    let more = place(&mut e, limit(3, "bob", Buy, 100, 1));
    assert!(matches!(more.last(), Some(Event::Bbo(b)) if b.bid == level(100, 3)));
}

#[test]
fn trades_number_consecutively_per_symbol() {
    let mut e = engine();
    let ids = |events: &[Event]| {
        events
            .iter()
            .filter_map(|e| if let Event::Trade(t) = e { Some(t.trade_id.0) } else { None })
            .collect::<Vec<_>>()
    };
    place(&mut e, limit(1, "alice", Sell, 100, 1));
    place(&mut e, limit(2, "alice", Sell, 100, 1));
    place(&mut e, limit(3, "alice", Sell, 100, 2).symbol(B));
    place(&mut e, limit(4, "alice", Sell, 100, 2).symbol(B));
    assert_eq!(ids(&place(&mut e, limit(5, "bob", Buy, 100, 2))), vec![1, 2]);
    assert_eq!(ids(&place(&mut e, limit(6, "bob", Buy, 100, 4).symbol(B))), vec![1, 2]);
    place(&mut e, limit(7, "alice", Sell, 100, 1));
    assert_eq!(ids(&place(&mut e, limit(8, "bob", Buy, 100, 1))), vec![3]);
}

#[test]
fn only_new_orders_register_accounts() {
    let mut e = engine();
    place(&mut e, limit(1, "alice", Buy, 100, 2));
    run(&mut e, cancel(1, "mallory"));
    run(&mut e, amend(1, "mallory", None, Some(1)));
    assert!(run(&mut e, cancel_all("mallory", None, CancelAllCause::Request)).is_empty());
    let known: Vec<String> = e.snapshot().accounts.iter().map(|a| a.id.to_string()).collect();
    assert_eq!(known, vec!["alice"], "commands that can match nothing leave no state behind");
    assert_eq!(e.open_orders(), 1);
}
