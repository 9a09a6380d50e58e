//! The four commands: new order, cancel, cancel-all, amend.

use tachyon_proto::command::CancelAllCause;
use tachyon_proto::{
    AccountId, Amend, Amended, Cancel, CancelAll, CancelReason, Cancelled, Event, NewOrder, OrderId, OrderType, Price,
    Qty, RejectReason, Rejected, SymbolId, TimeInForce,
};

use crate::arena::{Order, NIL};
use crate::engine::Engine;
use crate::ladder::Ladder;
use crate::matching::{Outcome, Taker};
use crate::EventSink;

impl Engine {
    pub(crate) fn new_order(&mut self, o: &NewOrder, out: &mut impl EventSink) {
        let account = self.account_slot(o.account);
        let checked = match self.book_index.get(o.symbol) {
            None => Err(RejectReason::UnknownSymbol),
            Some(book) => self.check_new(o, account, book).map(|()| book),
        };
        let book = match checked {
            Ok(book) => book,
            Err(reason) => {
                out.emit(Event::Rejected(Rejected {
                    order_id: Some(o.order_id),
                    account: o.account,
                    symbol: Some(o.symbol),
                    reason,
                    timestamp: o.timestamp,
                }));
                return;
            }
        };
        out.emit(Event::Accepted(*o));
        self.touch(book);
        let mut taker = Taker {
            order_id: o.order_id,
            account,
            account_id: o.account,
            side: o.side,
            limit: o.price,
            remaining: o.qty,
            stp: o.stp,
            timestamp: o.timestamp,
        };
        let cancel = |reason, remaining| {
            Event::Cancelled(Cancelled {
                order_id: o.order_id,
                account: o.account,
                symbol: o.symbol,
                side: o.side,
                remaining,
                reason,
                timestamp: o.timestamp,
            })
        };
        if o.time_in_force == TimeInForce::Fok && !self.can_fill(book, &taker) {
            out.emit(cancel(CancelReason::Fok, o.qty));
            return;
        }
        let outcome = self.match_taker(book, &mut taker, out);
        if taker.remaining.is_zero() {
            return;
        }
        let reason = match (outcome, o.order_type, o.time_in_force) {
            (Outcome::StoppedBySelfTrade, _, _) => CancelReason::Stp,
            (Outcome::Done, OrderType::Market, _) => CancelReason::MarketNoLiquidity,
            (Outcome::Done, OrderType::Limit, TimeInForce::Ioc) => CancelReason::Ioc,
            (Outcome::Done, OrderType::Limit, TimeInForce::Fok) => CancelReason::Fok,
            (Outcome::Done, OrderType::Limit, TimeInForce::Gtc) => {
                let price = o.price.expect("check_new guarantees a limit order has a price");
                let total = self.rest_new(
                    Order {
                        id: o.order_id,
                        price,
                        qty: o.qty,
                        remaining: taker.remaining,
                        account,
                        book,
                        side: o.side,
                        stp: o.stp,
                        post_only: o.post_only,
                        ..Order::UNLINKED
                    },
                    o.client_order_id,
                );
                self.emit_level(book, o.side, price, total, out);
                return;
            }
        };
        out.emit(cancel(reason, taker.remaining));
    }

    /// Would a taker on `side` at `price` trade against the opposite best?
    fn would_cross(&self, book: u32, side: tachyon_proto::Side, price: Price) -> bool {
        self.books[book as usize]
            .ladder(side.opposite())
            .best()
            .is_some_and(|best| Ladder::crosses(side, price, self.levels[best].price))
    }

    /// A new order's checks, in the documented order.
    fn check_new(&self, o: &NewOrder, account: u32, book: u32) -> Result<(), RejectReason> {
        let spec = &self.specs[book as usize];
        check_qty(o.qty, spec)?;
        match (o.order_type, o.price) {
            (OrderType::Limit, Some(p)) if p.0 > 0 => {}
            (OrderType::Market, None) => {}
            _ => return Err(RejectReason::InvalidPrice),
        }
        let market_gtc = o.order_type == OrderType::Market && o.time_in_force == TimeInForce::Gtc;
        let bad_post_only = o.post_only && (o.order_type == OrderType::Market || o.time_in_force != TimeInForce::Gtc);
        if market_gtc || bad_post_only {
            return Err(RejectReason::InvalidTimeInForce);
        }
        if o.price.is_some_and(|p| p.notional(o.qty) > spec.max_notional) {
            return Err(RejectReason::NotionalAboveMax);
        }
        if self.order_index.contains(o.order_id.0) {
            return Err(RejectReason::DuplicateOrderId);
        }
        if o.client_order_id.is_some_and(|cid| self.client_ids.contains_key(&(account, cid))) {
            return Err(RejectReason::DuplicateClientOrderId);
        }
        let may_rest = o.order_type == OrderType::Limit && o.time_in_force == TimeInForce::Gtc;
        if may_rest && self.accounts[account as usize].open >= self.limits.max_open_orders {
            return Err(RejectReason::MaxOpenOrders);
        }
        if o.post_only && o.price.is_some_and(|p| self.would_cross(book, o.side, p)) {
            return Err(RejectReason::PostOnlyWouldTake);
        }
        Ok(())
    }

    /// The slot of an open order of `account`, or why a cancel/amend of it is refused.
    /// (Ownership is checked against the order's account id, so no account lookup.)
    fn own_open_order(&self, order_id: OrderId, account: AccountId) -> Result<u32, RejectReason> {
        let slot = self.order_index.get(order_id.0).ok_or(RejectReason::OrderNotOpen)?;
        if self.accounts[self.orders[slot].account as usize].id != account {
            return Err(RejectReason::NotOrderOwner);
        }
        Ok(slot)
    }

    pub(crate) fn cancel(&mut self, c: &Cancel, out: &mut impl EventSink) {
        match self.own_open_order(c.order_id, c.account) {
            Ok(slot) => {
                self.touch(self.orders[slot].book);
                self.cancel_resting(slot, CancelReason::User, c.timestamp, out);
            }
            Err(reason) => out.emit(reject(Some(c.order_id), c.account, None, reason, c.timestamp)),
        }
    }

    pub(crate) fn cancel_all(&mut self, c: &CancelAll, out: &mut impl EventSink) {
        let only_book = match c.symbol {
            None => None,
            Some(symbol) => match self.book_index.get(symbol) {
                Some(book) => Some(book),
                None => {
                    out.emit(reject(None, c.account, Some(symbol), RejectReason::UnknownSymbol, c.timestamp));
                    return;
                }
            },
        };
        let reason = match c.cause {
            CancelAllCause::Request => CancelReason::CancelAll,
            CancelAllCause::Disconnect => CancelReason::Disconnect,
        };
        // An account the engine has not seen has no orders.
        let Some(account) = self.find_account(c.account) else { return };
        let mut slot = self.accounts[account as usize].head;
        while slot != NIL {
            let next = self.orders.account_link(slot).next;
            let book = self.orders[slot].book;
            if only_book.is_none_or(|b| b == book) {
                self.touch(book);
                self.cancel_resting(slot, reason, c.timestamp, out);
            }
            slot = next;
        }
    }

    pub(crate) fn amend(&mut self, a: &Amend, out: &mut impl EventSink) {
        let slot = match self.own_open_order(a.order_id, a.account) {
            Ok(slot) => slot,
            Err(reason) => return out.emit(reject(Some(a.order_id), a.account, None, reason, a.timestamp)),
        };
        let o = self.orders[slot];
        let account = o.account;
        let symbol = self.books[o.book as usize].symbol;
        let price = a.price.unwrap_or(o.price);
        let qty = a.qty.unwrap_or(o.qty);
        if let Err(reason) = self.check_amend(&o, price, qty) {
            return out.emit(reject(Some(a.order_id), a.account, Some(symbol), reason, a.timestamp));
        }
        self.touch(o.book);
        let filled = Qty(o.qty.0 - o.remaining.0);
        let amended = |price, qty, remaining, priority_kept| {
            Event::Amended(Amended {
                order_id: o.id,
                account: a.account,
                symbol,
                side: o.side,
                price,
                qty,
                remaining,
                priority_kept,
                timestamp: a.timestamp,
            })
        };
        if qty <= filled {
            // Nothing left to trade: the order is done.
            out.emit(amended(o.price, filled, Qty::ZERO, false));
            let (level, total) = self.unlink(slot);
            self.emit_level(o.book, o.side, o.price, total, out);
            self.drop_if_empty(o.book, o.side, level);
            self.release(slot);
            return;
        }
        let remaining = Qty(qty.0 - filled.0);
        if price == o.price {
            let priority_kept = qty <= o.qty;
            out.emit(amended(price, qty, remaining, priority_kept));
            if priority_kept {
                if remaining != o.remaining {
                    self.level_changed(o.book, o.side, o.level);
                }
                self.levels[o.level].total.0 -= o.remaining.0 - remaining.0;
                self.orders[slot].qty = qty;
                self.orders[slot].remaining = remaining;
            } else {
                // Same level, to the back of its queue (the level stays registered while
                // briefly empty, so link_tail finds it again).
                self.unlink(slot);
                self.orders[slot].qty = qty;
                self.orders[slot].remaining = remaining;
                self.link_tail(slot);
            }
            if remaining != o.remaining {
                let total = self.levels[o.level].total;
                self.emit_level(o.book, o.side, price, total, out);
            }
            return;
        }
        // A new price: leave the old level, take liquidity if it now crosses, rest the rest.
        out.emit(amended(price, qty, remaining, false));
        let (level, total) = self.unlink(slot);
        self.emit_level(o.book, o.side, o.price, total, out);
        self.drop_if_empty(o.book, o.side, level);
        let mut taker = Taker {
            order_id: o.id,
            account,
            account_id: a.account,
            side: o.side,
            limit: Some(price),
            remaining,
            stp: o.stp,
            timestamp: a.timestamp,
        };
        let outcome = self.match_taker(o.book, &mut taker, out);
        if outcome == Outcome::StoppedBySelfTrade {
            out.emit(Event::Cancelled(Cancelled {
                order_id: o.id,
                account: a.account,
                symbol,
                side: o.side,
                remaining: taker.remaining,
                reason: CancelReason::Stp,
                timestamp: a.timestamp,
            }));
            self.release(slot);
        } else if taker.remaining.is_zero() {
            self.release(slot);
        } else {
            let order = &mut self.orders[slot];
            order.price = price;
            order.qty = qty;
            order.remaining = taker.remaining;
            let total = self.link_tail(slot);
            self.emit_level(o.book, o.side, price, total, out);
        }
    }

    fn check_amend(&self, o: &Order, price: Price, qty: Qty) -> Result<(), RejectReason> {
        let spec = &self.specs[o.book as usize];
        check_qty(qty, spec)?;
        if price.0 <= 0 {
            return Err(RejectReason::InvalidPrice);
        }
        if price.notional(qty) > spec.max_notional {
            return Err(RejectReason::NotionalAboveMax);
        }
        if o.post_only && price != o.price && self.would_cross(o.book, o.side, price) {
            return Err(RejectReason::PostOnlyWouldTake);
        }
        Ok(())
    }
}

fn check_qty(qty: Qty, spec: &tachyon_proto::SymbolSpec) -> Result<(), RejectReason> {
    if qty.is_zero() {
        Err(RejectReason::InvalidQuantity)
    } else if qty < spec.min_qty {
        Err(RejectReason::QuantityBelowMin)
    } else if qty > spec.max_qty {
        Err(RejectReason::QuantityAboveMax)
    } else {
        Ok(())
    }
}

fn reject(
    order_id: Option<OrderId>,
    account: AccountId,
    symbol: Option<SymbolId>,
    reason: RejectReason,
    timestamp: tachyon_proto::Timestamp,
) -> Event {
    Event::Rejected(Rejected { order_id, account, symbol, reason, timestamp })
}
