//! The matching loop: a taker against the opposite side, best level first, FIFO within a
//! level; self-trade prevention; the fill-or-kill pre-check.

use tachyon_proto::{
    AccountId, CancelReason, Event, OrderId, Price, Qty, SelfTradePrevention, Side, Timestamp, Trade, TradeId,
};

use crate::arena::NIL;
use crate::engine::Engine;
use crate::ladder::Ladder;
use crate::EventSink;

/// An order while it takes liquidity.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Taker {
    pub order_id: OrderId,
    pub account: u32,
    pub account_id: AccountId,
    pub side: Side,
    /// `None` for a market order.
    pub limit: Option<Price>,
    pub remaining: Qty,
    pub stp: SelfTradePrevention,
    pub timestamp: Timestamp,
}

impl Taker {
    #[inline]
    fn reaches(&self, level_price: Price) -> bool {
        self.limit.is_none_or(|limit| Ladder::crosses(self.side, limit, level_price))
    }

    #[inline]
    fn prevents_trade_with(&self, maker_account: u32) -> bool {
        maker_account == self.account && self.stp != SelfTradePrevention::None
    }
}

/// How a matching pass ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Filled, or no more reachable liquidity.
    Done,
    /// Self-trade prevention cancels the taker's remainder.
    StoppedBySelfTrade,
}

impl Engine {
    /// Matches `taker` against the opposite side of `book` until it is filled, runs out of
    /// reachable liquidity, or self-trade prevention stops it.
    pub(crate) fn match_taker(&mut self, book: u32, taker: &mut Taker, out: &mut impl EventSink) -> Outcome {
        let maker_side = taker.side.opposite();
        while !taker.remaining.is_zero() {
            let Some(level) = self.books[book as usize].ladder(maker_side).best() else { break };
            let price = self.levels[level].price;
            if !taker.reaches(price) {
                break;
            }
            let before = self.levels[level].total;
            let outcome = self.match_level(book, level, taker, out);
            let after = self.levels[level].total;
            if after != before {
                self.level_changed(book, maker_side, level);
                self.emit_level(book, maker_side, price, after, out);
            }
            self.drop_if_empty(book, maker_side, level);
            if outcome == Outcome::StoppedBySelfTrade {
                return outcome;
            }
        }
        Outcome::Done
    }

    /// Matches within one level, FIFO.
    fn match_level(&mut self, book: u32, level: u32, taker: &mut Taker, out: &mut impl EventSink) -> Outcome {
        loop {
            let maker = self.levels[level].head;
            if maker == NIL || taker.remaining.is_zero() {
                return Outcome::Done;
            }
            let m = self.orders[maker];
            if taker.prevents_trade_with(m.account) {
                match taker.stp {
                    SelfTradePrevention::CancelOldest => {
                        self.cancel_maker(maker, taker.timestamp, out);
                        continue;
                    }
                    SelfTradePrevention::CancelBoth => {
                        self.cancel_maker(maker, taker.timestamp, out);
                        return Outcome::StoppedBySelfTrade;
                    }
                    SelfTradePrevention::CancelNewest | SelfTradePrevention::None => {
                        return Outcome::StoppedBySelfTrade
                    }
                }
            }
            let fill = taker.remaining.min(m.remaining);
            taker.remaining.0 -= fill.0;
            let maker_remaining = Qty(m.remaining.0 - fill.0);
            self.orders[maker].remaining = maker_remaining;
            self.levels[level].total.0 -= fill.0;
            let seq = self.bump_seq(book);
            let b = &mut self.books[book as usize];
            let trade_id = TradeId(b.next_trade_id);
            b.next_trade_id += 1;
            out.emit(Event::Trade(Trade {
                symbol: b.symbol,
                trade_id,
                price: m.price,
                qty: fill,
                taker_side: taker.side,
                taker_order_id: taker.order_id,
                taker_account: taker.account_id,
                maker_order_id: m.id,
                maker_account: self.accounts[m.account as usize].id,
                taker_remaining: taker.remaining,
                maker_remaining,
                seq,
                timestamp: taker.timestamp,
            }));
            if maker_remaining.is_zero() {
                self.pop_head(level, maker);
                self.release(maker);
            }
        }
    }

    /// Removes a fully filled head order from its level's FIFO.
    #[inline]
    fn pop_head(&mut self, level: u32, maker: u32) {
        let next = self.orders[maker].next;
        self.levels[level].head = next;
        if next == NIL {
            self.levels[level].tail = NIL;
        } else {
            self.orders[next].prev = NIL;
        }
    }

    /// Self-trade prevention removes a resting order in the middle of matching: its level
    /// change is published when the taker leaves the level.
    fn cancel_maker(&mut self, maker: u32, timestamp: Timestamp, out: &mut impl EventSink) {
        let m = self.orders[maker];
        out.emit(Event::Cancelled(tachyon_proto::Cancelled {
            order_id: m.id,
            account: self.accounts[m.account as usize].id,
            symbol: self.books[m.book as usize].symbol,
            side: m.side,
            remaining: m.remaining,
            reason: CancelReason::Stp,
            timestamp,
        }));
        self.unlink(maker);
        self.release(maker);
    }

    /// Whether a fill-or-kill taker can fill completely right now.
    pub(crate) fn can_fill(&self, book: u32, taker: &Taker) -> bool {
        let mut need = taker.remaining.0;
        for level in self.books[book as usize].ladder(taker.side.opposite()).iter_best_first() {
            let l = &self.levels[level];
            if !taker.reaches(l.price) {
                return false;
            }
            if taker.stp == SelfTradePrevention::None {
                if l.total.0 >= need {
                    return true;
                }
                need -= l.total.0;
                continue;
            }
            let mut slot = l.head;
            while slot != NIL {
                let o = &self.orders[slot];
                slot = o.next;
                if o.account == taker.account {
                    if taker.stp == SelfTradePrevention::CancelOldest {
                        continue;
                    }
                    return false;
                }
                if o.remaining.0 >= need {
                    return true;
                }
                need -= o.remaining.0;
            }
        }
        false
    }
}
