//! The reference model: the risk rules written as plainly as possible.
//!
//! Balances are a `BTreeMap` of `i128`s keyed by (account, asset), orders a `BTreeMap` by
//! id, arithmetic is unbounded `i128` with the rounding spelled out. It shares no code with
//! [`crate::Risk`] except the configuration and the [`RiskSnapshot`] it produces for
//! comparison; property tests drive both with the same streams and require equal
//! snapshots after every input.

use std::collections::BTreeMap;

use tachyon_proto::{AccountId, OrderId, Price, Qty, Side};

use crate::command::{Balance, Leg, Outcome, Request, RiskReject, Settlement, Transfer, TransferId, TransferKind};
use crate::config::{AssetId, Market, RiskConfig};
use crate::snapshot::{AccountSnapshot, AssetLedger, HoldSnapshot, RiskSnapshot, TransferSnapshot};

#[derive(Clone, Copy, Debug)]
struct RefOrder {
    account: AccountId,
    market: usize,
    side: Side,
    price: Price,
    qty: Qty,
    remaining: Qty,
    amount: i128,
    funds: bool,
    accepted: bool,
    amends: u32,
}

/// The reference risk shard.
#[derive(Debug)]
pub struct ReferenceRisk {
    config: RiskConfig,
    /// (account, asset) → (available, hold).
    balances: BTreeMap<(u128, u16), (AccountId, i128, i128)>,
    orders: BTreeMap<OrderId, RefOrder>,
    transfers: BTreeMap<TransferId, (Transfer, Balance)>,
    ledger: Vec<AssetLedger>,
    sources: BTreeMap<u32, u64>,
    commands: u64,
}

fn ceil_div(a: i128, b: i128) -> i128 {
    (a + b - 1) / b
}

fn to_u64(x: i128) -> u64 {
    assert!(x >= 0, "a balance went negative: {x}");
    u64::try_from(x).unwrap_or(u64::MAX)
}

impl ReferenceRisk {
    pub fn new(config: RiskConfig) -> Self {
        let ledger = vec![AssetLedger::default(); config.assets.len()];
        Self {
            config,
            balances: BTreeMap::new(),
            orders: BTreeMap::new(),
            transfers: BTreeMap::new(),
            ledger,
            sources: BTreeMap::new(),
            commands: 0,
        }
    }

    fn market(&self, i: usize) -> &Market {
        &self.config.markets[i]
    }

    fn fee(n: i128, bps: u32) -> i128 {
        ceil_div(n * i128::from(bps), 10_000)
    }

    fn notional(m: &Market, price: Price, qty: Qty) -> i128 {
        i128::from(price.0.max(0)) * i128::from(qty.0) * i128::from(m.quote_per_unit)
    }

    /// What a limit order of `side` at `price` for `remaining` holds.
    fn needed(&self, m: &Market, account: AccountId, side: Side, price: Price, remaining: Qty) -> i128 {
        match side {
            Side::Buy => {
                let n = Self::notional(m, price, remaining);
                n + Self::fee(n, self.config.rates(account, m).max_bps())
            }
            Side::Sell => i128::from(remaining.0) * i128::from(m.base_per_lot),
        }
    }

    fn asset_of(m: &Market, side: Side) -> AssetId {
        if side == Side::Buy {
            m.quote
        } else {
            m.base
        }
    }

    fn bal(&mut self, account: AccountId, asset: AssetId) -> &mut (AccountId, i128, i128) {
        self.balances.entry((account.to_raw(), asset.0)).or_insert((account, 0, 0))
    }

    pub fn request(&mut self, request: &Request) -> Outcome {
        self.commands += 1;
        match *request {
            Request::Transfer(t) => self.transfer(t),
            Request::Order(o) => {
                let Some(market) = self.config.market_of(o.symbol).map(usize::from) else {
                    return Outcome::Rejected(RiskReject::UnknownSymbol);
                };
                if self.orders.contains_key(&o.order_id) {
                    return Outcome::Rejected(RiskReject::DuplicateOrderId);
                }
                let m = *self.market(market);
                let funds = o.side == Side::Buy && o.price.is_none();
                let amount = if funds {
                    match o.funds {
                        Some(f) if f > 0 => i128::from(f),
                        _ => return Outcome::Rejected(RiskReject::InvalidFunds),
                    }
                } else if o.funds.is_some() {
                    return Outcome::Rejected(RiskReject::InvalidFunds);
                } else {
                    self.needed(&m, o.account, o.side, o.price.unwrap_or_default(), o.qty)
                };
                let b = self.bal(o.account, Self::asset_of(&m, o.side));
                if amount > b.1 || amount > i128::from(u64::MAX) {
                    return Outcome::Rejected(RiskReject::InsufficientFunds);
                }
                b.1 -= amount;
                b.2 += amount;
                let order = RefOrder {
                    account: o.account,
                    market,
                    side: o.side,
                    price: o.price.unwrap_or_default(),
                    qty: o.qty,
                    remaining: o.qty,
                    amount,
                    funds,
                    accepted: false,
                    amends: 0,
                };
                self.orders.insert(o.order_id, order);
                Outcome::Forward
            }
            Request::Amend(a) => {
                let Some(o) = self.orders.get(&a.order_id).copied() else { return Outcome::Forward };
                if o.account != a.account {
                    return Outcome::Rejected(RiskReject::NotOrderOwner);
                }
                if o.funds {
                    return Outcome::Forward;
                }
                let m = *self.market(o.market);
                let filled = o.qty.0 - o.remaining.0;
                let remaining = Qty(a.qty.unwrap_or(o.qty).0.saturating_sub(filled));
                let needed = self.needed(&m, o.account, o.side, a.price.unwrap_or(o.price), remaining);
                let extra = (needed - o.amount).max(0);
                let b = self.bal(o.account, Self::asset_of(&m, o.side));
                if extra > b.1 || needed > i128::from(u64::MAX) {
                    return Outcome::Rejected(RiskReject::InsufficientFunds);
                }
                b.1 -= extra;
                b.2 += extra;
                let o = self.orders.get_mut(&a.order_id).expect("looked up above");
                o.amount += extra;
                o.amends += 1;
                Outcome::Forward
            }
        }
    }

    fn transfer(&mut self, t: Transfer) -> Outcome {
        if let Some(&(first, balance)) = self.transfers.get(&t.transfer_id) {
            return if first == t {
                Outcome::Transferred { balance, replayed: true }
            } else {
                Outcome::Rejected(RiskReject::DuplicateTransferId)
            };
        }
        if usize::from(t.asset.0) >= self.config.assets.len() {
            return Outcome::Rejected(RiskReject::UnknownAsset);
        }
        if t.amount == 0 {
            return Outcome::Rejected(RiskReject::InvalidAmount);
        }
        let amount = i128::from(t.amount);
        let b = self.bal(t.account, t.asset);
        match t.kind {
            TransferKind::Deposit if b.1 + b.2 + amount > i128::from(u64::MAX >> 2) => {
                return Outcome::Rejected(RiskReject::InvalidAmount)
            }
            TransferKind::Deposit => b.1 += amount,
            TransferKind::Withdrawal if b.1 < amount => return Outcome::Rejected(RiskReject::InsufficientFunds),
            TransferKind::Withdrawal => b.1 -= amount,
        }
        let balance = Balance { available: to_u64(b.1), hold: to_u64(b.2) };
        let l = &mut self.ledger[usize::from(t.asset.0)];
        match t.kind {
            TransferKind::Deposit => l.deposits += u128::from(t.amount),
            TransferKind::Withdrawal => l.withdrawals += u128::from(t.amount),
        }
        self.transfers.insert(t.transfer_id, (t, balance));
        Outcome::Transferred { balance, replayed: false }
    }

    pub fn settle(&mut self, partition: u32, seq: u64, batch: &[Settlement]) -> Outcome {
        let last = self.sources.entry(partition).or_insert(0);
        if seq <= *last {
            return Outcome::Duplicate;
        }
        *last = seq;
        self.commands += 1;
        for s in batch {
            match *s {
                Settlement::Accepted { order_id, .. } => {
                    if let Some(o) = self.orders.get_mut(&order_id) {
                        o.accepted = true;
                    }
                }
                Settlement::Cancelled { order_id, .. } => self.release_all(order_id),
                Settlement::Rejected { order_id, .. } => {
                    if let Some(o) = self.orders.get(&order_id).copied() {
                        if o.accepted {
                            self.amend_done(order_id, o.price, o.qty, o.remaining);
                        } else {
                            self.release_all(order_id);
                        }
                    }
                }
                Settlement::Amended { order_id, price, qty, remaining, .. } => {
                    if self.orders.contains_key(&order_id) {
                        if remaining.0 == 0 {
                            self.release_all(order_id);
                        } else {
                            self.amend_done(order_id, price, qty, remaining);
                        }
                    }
                }
                Settlement::Fill(f) => self.fill(&f),
            }
        }
        Outcome::Settled
    }

    fn release_all(&mut self, order_id: OrderId) {
        if let Some(o) = self.orders.remove(&order_id) {
            let m = *self.market(o.market);
            let b = self.bal(o.account, Self::asset_of(&m, o.side));
            b.1 += o.amount;
            b.2 -= o.amount;
        }
    }

    /// Sets an order's hold to `target`, topping up from available only as far as it goes.
    fn hold_at(&mut self, order_id: OrderId, target: i128) {
        let o = self.orders[&order_id];
        let m = *self.market(o.market);
        let b = self.bal(o.account, Self::asset_of(&m, o.side));
        let change = if target < o.amount { target - o.amount } else { (target - o.amount).min(b.1) };
        b.1 -= change;
        b.2 += change;
        self.orders.get_mut(&order_id).expect("present").amount += change;
    }

    fn amend_done(&mut self, order_id: OrderId, price: Price, qty: Qty, remaining: Qty) {
        let o = self.orders.get_mut(&order_id).expect("caller checked");
        o.amends = o.amends.saturating_sub(1);
        o.price = price;
        o.qty = qty;
        o.remaining = remaining;
        let o = *o;
        let m = *self.market(o.market);
        let needed = self.needed(&m, o.account, o.side, price, remaining);
        let target = if o.amends > 0 { needed.max(o.amount) } else { needed };
        self.hold_at(order_id, target);
    }

    fn fill(&mut self, f: &crate::command::Fill) {
        let Some(mi) = self.config.market_of(f.symbol).map(usize::from) else { return };
        let m = *self.market(mi);
        let n = Self::notional(&m, f.price, f.qty);
        let base = i128::from(f.qty.0) * i128::from(m.base_per_lot);
        let buyer = self.config.owns(f.buy.account);
        let seller = self.config.owns(f.sell.account);
        let (q, b) = (usize::from(m.quote.0), usize::from(m.base.0));
        if buyer {
            let rates = self.config.rates(f.buy.account, &m);
            let bps = if f.taker_side == Side::Buy { rates.taker_bps } else { rates.maker_bps };
            let unpaid = self.pay(&m, &f.buy, Side::Buy, n, Self::fee(n, bps));
            self.ledger[q].overdraft += unpaid as u128;
            self.bal(f.buy.account, m.base).1 += base;
        }
        if seller {
            let rates = self.config.rates(f.sell.account, &m);
            let bps = if f.taker_side == Side::Sell { rates.taker_bps } else { rates.maker_bps };
            let fee = Self::fee(n, bps).min(n);
            let unpaid = self.pay(&m, &f.sell, Side::Sell, base, 0);
            self.ledger[b].overdraft += unpaid as u128;
            self.bal(f.sell.account, m.quote).1 += n - fee;
            self.ledger[q].fees += to_u64(fee);
        }
        if buyer && !seller {
            self.ledger[q].transit_out += n as u128;
            self.ledger[b].transit_in += base as u128;
        }
        if seller && !buyer {
            self.ledger[q].transit_in += n as u128;
            self.ledger[b].transit_out += base as u128;
        }
    }

    /// Pays `due + fee` from the order's hold, then from available, waiving what of the
    /// fee cannot be paid; returns what of `due` could not be paid.
    fn pay(&mut self, m: &Market, leg: &Leg, side: Side, due: i128, fee: i128) -> i128 {
        let asset = Self::asset_of(m, side);
        let mut owed = due + fee;
        let held = self.orders.get(&leg.order_id).copied().filter(|o| o.account == leg.account);
        if let Some(o) = held {
            let reserve =
                if o.funds { 0 } else { (o.amount - self.needed(m, o.account, o.side, o.price, o.remaining)).max(0) };
            let taken = owed.min(o.amount);
            owed -= taken;
            self.bal(leg.account, asset).2 -= taken;
            let order = self.orders.get_mut(&leg.order_id).expect("present");
            order.amount -= taken;
            order.remaining = leg.remaining;
            let o = *order;
            if leg.remaining.0 == 0 {
                self.release_all(leg.order_id);
            } else {
                let needed = if o.funds { o.amount } else { self.needed(m, o.account, o.side, o.price, o.remaining) };
                self.hold_at(leg.order_id, if o.amends > 0 { needed + reserve } else { needed });
            }
        }
        let b = self.bal(leg.account, asset);
        let from_available = owed.min(b.1);
        b.1 -= from_available;
        owed -= from_available;
        let waived = owed.min(fee);
        self.ledger[usize::from(asset.0)].fees += to_u64(fee - waived);
        owed - waived
    }

    /// The canonical image, comparable with [`crate::Risk::snapshot`].
    pub fn snapshot(&self) -> RiskSnapshot {
        let mut accounts: Vec<AccountSnapshot> = Vec::new();
        for (&(raw, asset), &(id, available, hold)) in &self.balances {
            if accounts.last().is_none_or(|a| a.id.to_raw() != raw) {
                accounts.push(AccountSnapshot { id, balances: Vec::new() });
            }
            let b = Balance { available: to_u64(available), hold: to_u64(hold) };
            accounts.last_mut().expect("pushed").balances.push((AssetId(asset), b));
        }
        let orders = self
            .orders
            .iter()
            .map(|(&order_id, o)| HoldSnapshot {
                order_id,
                account: o.account,
                symbol: self.market(o.market).symbol,
                side: o.side,
                price: o.price,
                qty: o.qty,
                remaining: o.remaining,
                amount: to_u64(o.amount),
                funds: o.funds,
                accepted: o.accepted,
                amends: o.amends,
            })
            .collect();
        let transfers =
            self.transfers.values().map(|&(transfer, balance)| TransferSnapshot { transfer, balance }).collect();
        let width = self.sources.iter().filter(|(_, &s)| s > 0).map(|(&p, _)| p as usize + 1).max().unwrap_or(0);
        let mut sources = vec![0; width];
        for (&p, &s) in &self.sources {
            if let Some(slot) = sources.get_mut(p as usize) {
                *slot = s;
            }
        }
        RiskSnapshot { commands: self.commands, accounts, orders, transfers, ledger: self.ledger.clone(), sources }
    }
}
