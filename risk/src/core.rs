//! The risk core: balances in dense arrays, a hold per open order, settlement and fees.
//!
//! Accounts get a dense index on first sight; balances are one flat `Vec` indexed by
//! `account × assets + asset`, so a hold or a settlement is a hash lookup for the order
//! and a few integer operations. All arithmetic is checked or saturating: nothing here
//! panics on any input, and no balance ever goes below zero.

use rustc_hash::FxHashMap;
use tachyon_proto::balance::{BalanceUpdate, FillFee};
use tachyon_proto::{AccountId, OrderId, Price, Qty, Side, TradeId};

use crate::command::{
    AmendHold, Balance, Fill, Leg, OrderHold, Outcome, Request, RiskReject, Settlement, Transfer, TransferId,
    TransferKind,
};
use crate::config::{AssetId, Market, RiskConfig};
use crate::snapshot::{AccountSnapshot, AssetLedger, HoldSnapshot, RiskSnapshot, TransferSnapshot};

/// `notional × bps / 10000`, rounded up (fees never round in the payer's favour).
pub fn fee(notional: u64, bps: u32) -> u64 {
    let scaled = u128::from(notional) * u128::from(bps);
    u64::try_from(scaled.div_ceil(10_000)).unwrap_or(u64::MAX)
}

/// QUOTE units of `qty` lots at `price` ticks (`None` if it overflows or the price is
/// not positive).
pub fn notional(market: &Market, price: Price, qty: Qty) -> Option<u64> {
    let ticks = u128::try_from(price.0).ok()?;
    u64::try_from(ticks * u128::from(qty.0) * u128::from(market.quote_per_unit)).ok()
}

/// BASE units of `qty` lots.
pub fn base_amount(market: &Market, qty: Qty) -> Option<u64> {
    qty.0.checked_mul(market.base_per_lot)
}

/// What a limit buy of `qty` at `price` holds: the notional plus the largest fee it could
/// pay on it.
pub fn buy_hold(market: &Market, max_bps: u32, price: Price, qty: Qty) -> Option<u64> {
    let n = notional(market, price.max(Price(0)), qty)?;
    n.checked_add(fee(n, max_bps))
}

/// One held order.
#[derive(Clone, Copy, Debug)]
struct Held {
    account: u32,
    market: u16,
    side: Side,
    /// Limit price (0 for a market order).
    price: Price,
    /// Total quantity (filled + remaining).
    qty: Qty,
    remaining: Qty,
    /// What is held for it now (in QUOTE for a buy, BASE for a sell).
    amount: u64,
    /// A market buy: `amount` is what is left of its `funds`.
    funds: bool,
    /// Matching accepted it (a rejection after this is an amend's).
    accepted: bool,
    /// Amends forwarded whose outcome has not come back; while any is out, what they
    /// reserved stays held.
    amends: u32,
}

/// Deposits, withdrawals, fees and cross-shard flows of one asset.
#[derive(Clone, Copy, Debug, Default)]
struct Ledger {
    deposits: u128,
    withdrawals: u128,
    fees: u64,
    /// Paid to / received from accounts of other risk shards by trades.
    transit_in: u128,
    transit_out: u128,
    /// What a buyer owed but had neither held nor available (only an engine that overspent
    /// a market buy's funds could cause it); counted so the books still balance.
    overdraft: u128,
}

/// One risk shard's state (see the crate docs).
#[derive(Debug)]
pub struct Risk {
    config: RiskConfig,
    assets: usize,
    index: FxHashMap<AccountId, u32>,
    accounts: Vec<AccountId>,
    /// `account × assets + asset`.
    balances: Vec<Balance>,
    /// Whether the account ever held the asset (what `GET /v1/balances` lists).
    touched: Vec<bool>,
    /// Slots changed since [`Risk::drain_changes`], each once.
    dirty: Vec<bool>,
    changed: Vec<usize>,
    /// Fees charged since [`Risk::drain_changes`].
    charged: Vec<FillFee>,
    orders: FxHashMap<OrderId, Held>,
    transfers: FxHashMap<TransferId, (Transfer, Balance)>,
    ledger: Vec<Ledger>,
    /// Per matching partition: the last output sequence settled.
    sources: Vec<u64>,
    commands: u64,
}

impl Risk {
    pub fn new(config: RiskConfig) -> Self {
        let assets = config.assets.len();
        Self {
            config,
            assets,
            index: FxHashMap::default(),
            accounts: Vec::new(),
            balances: Vec::new(),
            touched: Vec::new(),
            dirty: Vec::new(),
            changed: Vec::new(),
            charged: Vec::new(),
            orders: FxHashMap::default(),
            transfers: FxHashMap::default(),
            ledger: vec![Ledger::default(); assets],
            sources: Vec::new(),
            commands: 0,
        }
    }

    pub fn config(&self) -> &RiskConfig {
        &self.config
    }

    /// Applies a gateway request.
    pub fn request(&mut self, request: &Request) -> Outcome {
        self.commands += 1;
        match request {
            Request::Transfer(t) => self.transfer(t),
            Request::Order(o) => self.hold(o),
            Request::Amend(a) => self.amend(a),
        }
    }

    /// Applies matching shard `partition`'s output record `seq` (its settlements for this
    /// shard's accounts), unless that record was applied before.
    pub fn settle(&mut self, partition: u32, seq: u64, batch: &[Settlement]) -> Outcome {
        let p = partition as usize;
        if self.sources.len() <= p {
            self.sources.resize(p + 1, 0);
        }
        if seq <= self.sources[p] {
            return Outcome::Duplicate;
        }
        self.sources[p] = seq;
        self.commands += 1;
        for s in batch {
            self.settlement(s);
        }
        Outcome::Settled
    }

    /// The last output sequence of matching partition `partition` settled here.
    pub fn settled_through(&self, partition: u32) -> u64 {
        self.sources.get(partition as usize).copied().unwrap_or(0)
    }

    /// An account's balance of one asset (`None` if it never held it).
    pub fn balance(&self, account: AccountId, asset: AssetId) -> Option<Balance> {
        let i = self.slot(*self.index.get(&account)?, asset);
        self.touched[i].then_some(self.balances[i])
    }

    /// Every asset an account ever held, in asset order.
    pub fn balances(&self, account: AccountId) -> Vec<(AssetId, Balance)> {
        let Some(&a) = self.index.get(&account) else { return Vec::new() };
        (0..self.assets)
            .filter_map(|x| {
                let asset = AssetId(x as u16);
                let i = self.slot(a, asset);
                self.touched[i].then_some((asset, self.balances[i]))
            })
            .collect()
    }

    /// Fees collected, per asset.
    pub fn fees(&self) -> Vec<u64> {
        self.ledger.iter().map(|l| l.fees).collect()
    }

    /// Orders holding funds.
    pub fn held_orders(&self) -> usize {
        self.orders.len()
    }

    /// Requests and settlement batches applied.
    pub fn commands(&self) -> u64 {
        self.commands
    }

    /// The conservation law, per asset: every account's `available + hold` plus the fees
    /// equals deposits − withdrawals + what trades brought from other shards − what they
    /// took to them + overdrafts.
    ///
    /// # Errors
    /// The first asset where it does not hold, with both sides.
    pub fn check_conservation(&self) -> Result<(), String> {
        self.snapshot().check_conservation()
    }

    fn slot(&self, account: u32, asset: AssetId) -> usize {
        account as usize * self.assets + usize::from(asset.0)
    }

    fn account(&mut self, id: AccountId) -> u32 {
        if let Some(&i) = self.index.get(&id) {
            return i;
        }
        let i = self.accounts.len() as u32;
        self.index.insert(id, i);
        self.accounts.push(id);
        self.balances.resize(self.balances.len() + self.assets, Balance::default());
        self.touched.resize(self.touched.len() + self.assets, false);
        self.dirty.resize(self.dirty.len() + self.assets, false);
        i
    }

    /// Marks slot `i` held and changed.
    fn touch(&mut self, i: usize) {
        self.touched[i] = true;
        if !self.dirty[i] {
            self.dirty[i] = true;
            self.changed.push(i);
        }
    }

    fn at(&mut self, account: u32, asset: AssetId) -> &mut Balance {
        let i = self.slot(account, asset);
        self.touch(i);
        &mut self.balances[i]
    }

    /// Appends every balance changed since the last call (each once, in the order first
    /// changed) and the fees charged meanwhile, and forgets them.
    pub fn drain_changes(&mut self, balances: &mut Vec<BalanceUpdate>, fees: &mut Vec<FillFee>) {
        for i in self.changed.drain(..) {
            self.dirty[i] = false;
            let b = self.balances[i];
            let account = self.accounts[i / self.assets];
            balances.push(BalanceUpdate {
                account,
                asset: (i % self.assets) as u16,
                available: b.available,
                hold: b.hold,
            });
        }
        fees.append(&mut self.charged);
    }

    fn transfer(&mut self, t: &Transfer) -> Outcome {
        if let Some((first, balance)) = self.transfers.get(&t.transfer_id) {
            if first == t {
                return Outcome::Transferred { balance: *balance, replayed: true };
            }
            return Outcome::Rejected(RiskReject::DuplicateTransferId);
        }
        if usize::from(t.asset.0) >= self.assets {
            return Outcome::Rejected(RiskReject::UnknownAsset);
        }
        if t.amount == 0 {
            return Outcome::Rejected(RiskReject::InvalidAmount);
        }
        let a = self.account(t.account);
        let i = self.slot(a, t.asset);
        self.touch(i);
        let b = &mut self.balances[i];
        match t.kind {
            TransferKind::Deposit => {
                // Headroom for holds and settlement credits on top of it.
                match b.total().checked_add(t.amount) {
                    Some(total) if total <= u64::MAX >> 2 => b.available += t.amount,
                    _ => return Outcome::Rejected(RiskReject::InvalidAmount),
                }
                self.ledger[usize::from(t.asset.0)].deposits += u128::from(t.amount);
            }
            TransferKind::Withdrawal => {
                if b.available < t.amount {
                    return Outcome::Rejected(RiskReject::InsufficientFunds);
                }
                b.available -= t.amount;
                self.ledger[usize::from(t.asset.0)].withdrawals += u128::from(t.amount);
            }
        }
        let balance = *b;
        self.transfers.insert(t.transfer_id, (*t, balance));
        Outcome::Transferred { balance, replayed: false }
    }

    /// What an order of `side` at `price` with `remaining` holds (limit orders).
    fn exact(&self, market: &Market, account: AccountId, side: Side, price: Price, remaining: Qty) -> Option<u64> {
        match side {
            Side::Buy => buy_hold(market, self.config.rates(account, market).max_bps(), price, remaining),
            Side::Sell => base_amount(market, remaining),
        }
    }

    fn held_asset(market: &Market, side: Side) -> AssetId {
        match side {
            Side::Buy => market.quote,
            Side::Sell => market.base,
        }
    }

    fn hold(&mut self, o: &OrderHold) -> Outcome {
        let Some(m) = self.config.market_of(o.symbol) else { return Outcome::Rejected(RiskReject::UnknownSymbol) };
        if self.orders.contains_key(&o.order_id) {
            return Outcome::Rejected(RiskReject::DuplicateOrderId);
        }
        let market = &self.config.markets[usize::from(m)];
        let funds = o.side == Side::Buy && o.price.is_none();
        let amount = match (o.side, o.price, o.funds) {
            (Side::Buy, None, Some(funds)) if funds > 0 => Some(funds),
            (Side::Buy, None, _) | (_, Some(_), Some(_)) | (Side::Sell, None, Some(_)) => {
                return Outcome::Rejected(RiskReject::InvalidFunds)
            }
            (side, price, None) => self.exact(market, o.account, side, price.unwrap_or_default(), o.qty),
        };
        let asset = Self::held_asset(market, o.side);
        let a = self.account(o.account);
        let b = self.at(a, asset);
        let Some(amount) = amount.filter(|&x| x <= b.available) else {
            return Outcome::Rejected(RiskReject::InsufficientFunds);
        };
        b.available -= amount;
        b.hold += amount;
        let held = Held {
            account: a,
            market: m,
            side: o.side,
            price: o.price.unwrap_or_default(),
            qty: o.qty,
            remaining: o.qty,
            amount,
            funds,
            accepted: false,
            amends: 0,
        };
        self.orders.insert(o.order_id, held);
        Outcome::Forward
    }

    fn amend(&mut self, r: &AmendHold) -> Outcome {
        let Some(&h) = self.orders.get(&r.order_id) else {
            // Not held here: matching answers (not open, or another account's).
            return Outcome::Forward;
        };
        if self.accounts[h.account as usize] != r.account {
            return Outcome::Rejected(RiskReject::NotOrderOwner);
        }
        if h.funds {
            return Outcome::Forward;
        }
        let market = &self.config.markets[usize::from(h.market)];
        let price = r.price.unwrap_or(h.price);
        let filled = Qty(h.qty.0 - h.remaining.0);
        let remaining = Qty(r.qty.unwrap_or(h.qty).0.saturating_sub(filled.0));
        let Some(needed) = self.exact(market, r.account, h.side, price, remaining) else {
            return Outcome::Rejected(RiskReject::InsufficientFunds);
        };
        let extra = needed.saturating_sub(h.amount);
        let asset = Self::held_asset(market, h.side);
        let b = self.at(h.account, asset);
        if extra > b.available {
            return Outcome::Rejected(RiskReject::InsufficientFunds);
        }
        b.available -= extra;
        b.hold += extra;
        if let Some(h) = self.orders.get_mut(&r.order_id) {
            h.amount += extra;
            h.amends += 1;
        }
        Outcome::Forward
    }

    fn settlement(&mut self, s: &Settlement) {
        match *s {
            Settlement::Accepted { order_id, .. } => {
                if let Some(h) = self.orders.get_mut(&order_id) {
                    h.accepted = true;
                }
            }
            Settlement::Fill(f) => self.fill(&f),
            Settlement::Cancelled { order_id, .. } => self.done(order_id),
            Settlement::Rejected { order_id, .. } => match self.orders.get(&order_id) {
                Some(h) if !h.accepted => self.done(order_id),
                Some(h) => {
                    let h = *h;
                    self.amend_outcome(order_id, h, h.price, h.qty, h.remaining);
                }
                None => {}
            },
            Settlement::Amended { order_id, price, qty, remaining, .. } => {
                if let Some(&h) = self.orders.get(&order_id) {
                    if remaining.is_zero() {
                        self.done(order_id);
                    } else {
                        self.amend_outcome(order_id, h, price, qty, remaining);
                    }
                }
            }
        }
    }

    /// The order's reserve beyond what its current state needs.
    fn reserve(&self, h: &Held) -> u64 {
        if h.funds {
            return 0;
        }
        let market = &self.config.markets[usize::from(h.market)];
        let exact = self.exact(market, self.accounts[h.account as usize], h.side, h.price, h.remaining);
        h.amount.saturating_sub(exact.unwrap_or(u64::MAX))
    }

    fn amend_outcome(&mut self, order_id: OrderId, mut h: Held, price: Price, qty: Qty, remaining: Qty) {
        h.amends = h.amends.saturating_sub(1);
        h.price = price;
        h.qty = qty;
        h.remaining = remaining;
        let market = &self.config.markets[usize::from(h.market)];
        let exact = self.exact(market, self.accounts[h.account as usize], h.side, price, remaining).unwrap_or(h.amount);
        // While other amends are out, keep what they reserved.
        let target = if h.amends > 0 { exact.max(h.amount) } else { exact };
        self.set_hold(&mut h, target);
        self.orders.insert(order_id, h);
    }

    /// Moves the order's hold to `target`: releases the excess, or tops it up from
    /// `available` as far as that goes.
    fn set_hold(&mut self, h: &mut Held, target: u64) {
        let asset = Self::held_asset(&self.config.markets[usize::from(h.market)], h.side);
        let i = self.slot(h.account, asset);
        self.touch(i);
        let b = &mut self.balances[i];
        if target < h.amount {
            let free = h.amount - target;
            b.hold -= free;
            b.available += free;
            h.amount = target;
        } else {
            let more = (target - h.amount).min(b.available);
            b.available -= more;
            b.hold += more;
            h.amount += more;
        }
    }

    fn done(&mut self, order_id: OrderId) {
        let Some(h) = self.orders.remove(&order_id) else { return };
        let asset = Self::held_asset(&self.config.markets[usize::from(h.market)], h.side);
        let b = self.at(h.account, asset);
        b.hold -= h.amount;
        b.available += h.amount;
    }

    fn fill(&mut self, f: &Fill) {
        let Some(m) = self.config.market_of(f.symbol) else { return };
        let market = self.config.markets[usize::from(m)];
        let (Some(n), Some(base)) = (notional(&market, f.price, f.qty), base_amount(&market, f.qty)) else { return };
        let (buyer, seller) = (self.config.owns(f.buy.account), self.config.owns(f.sell.account));
        let (quote_asset, base_asset) = (usize::from(market.quote.0), usize::from(market.base.0));
        if buyer {
            let rates = self.config.rates(f.buy.account, &market);
            let bps = if f.taker_side == Side::Buy { rates.taker_bps } else { rates.maker_bps };
            let unpaid = self.pay(&market, f.trade_id, &f.buy, Side::Buy, n, fee(n, bps));
            self.ledger[quote_asset].overdraft += u128::from(unpaid);
            let a = self.account(f.buy.account);
            self.at(a, market.base).available += base;
        }
        if seller {
            let rates = self.config.rates(f.sell.account, &market);
            let bps = if f.taker_side == Side::Sell { rates.taker_bps } else { rates.maker_bps };
            let fee = fee(n, bps).min(n);
            let unpaid = self.pay(&market, f.trade_id, &f.sell, Side::Sell, base, 0);
            self.ledger[base_asset].overdraft += u128::from(unpaid);
            let a = self.account(f.sell.account);
            self.at(a, market.quote).available += n - fee;
            self.ledger[quote_asset].fees += fee;
            if fee > 0 {
                let f = FillFee { trade_id: f.trade_id, account: f.sell.account, asset: market.quote.0, fee };
                self.charged.push(f);
            }
        }
        match (buyer, seller) {
            (true, false) => {
                self.ledger[quote_asset].transit_out += u128::from(n);
                self.ledger[base_asset].transit_in += u128::from(base);
            }
            (false, true) => {
                self.ledger[quote_asset].transit_in += u128::from(n);
                self.ledger[base_asset].transit_out += u128::from(base);
            }
            _ => {}
        }
    }

    /// Takes `due` plus `fee` for one side of a fill from the order's hold (then from
    /// `available`), sets the hold to what the order's remainder needs, and credits the
    /// fee. A fee the account cannot cover is waived as far as needed; returns what of
    /// `due` itself could not be paid at all.
    fn pay(&mut self, market: &Market, trade_id: TradeId, leg: &Leg, side: Side, due: u64, fee: u64) -> u64 {
        let asset = Self::held_asset(market, side);
        let a = self.account(leg.account);
        let i = self.slot(a, asset);
        self.touch(i);
        let mut from_hold = 0;
        if let Some(mut h) = self.orders.get(&leg.order_id).copied().filter(|h| h.account == a) {
            let reserve = self.reserve(&h);
            from_hold = (due + fee).min(h.amount);
            let b = &mut self.balances[i];
            b.hold -= from_hold;
            h.amount -= from_hold;
            h.remaining = leg.remaining;
            if leg.remaining.is_zero() {
                // Filled: what is left of its hold goes back.
                let b = &mut self.balances[i];
                b.hold -= h.amount;
                b.available += h.amount;
                self.orders.remove(&leg.order_id);
            } else {
                let exact = if h.funds {
                    h.amount
                } else {
                    self.exact(market, leg.account, side, h.price, h.remaining).unwrap_or(h.amount)
                };
                let target = if h.amends > 0 { exact + reserve } else { exact };
                self.set_hold(&mut h, target);
                self.orders.insert(leg.order_id, h);
            }
        }
        let b = &mut self.balances[i];
        let rest = due + fee - from_hold;
        let from_available = rest.min(b.available);
        b.available -= from_available;
        let short = rest - from_available;
        let waived = short.min(fee);
        self.ledger[usize::from(asset.0)].fees += fee - waived;
        if fee > 0 {
            let f = FillFee { trade_id, account: leg.account, asset: asset.0, fee: fee - waived };
            self.charged.push(f);
        }
        short - waived
    }

    /// The canonical image of the state (see [`RiskSnapshot`]).
    pub fn snapshot(&self) -> RiskSnapshot {
        let mut accounts: Vec<AccountSnapshot> = self
            .accounts
            .iter()
            .enumerate()
            .map(|(a, &id)| AccountSnapshot {
                id,
                balances: (0..self.assets)
                    .filter(|&x| self.touched[a * self.assets + x])
                    .map(|x| (AssetId(x as u16), self.balances[a * self.assets + x]))
                    .collect(),
            })
            .collect();
        accounts.sort_unstable_by_key(|a| a.id.to_raw());
        let mut orders: Vec<HoldSnapshot> = self
            .orders
            .iter()
            .map(|(&order_id, h)| HoldSnapshot {
                order_id,
                account: self.accounts[h.account as usize],
                symbol: self.config.markets[usize::from(h.market)].symbol,
                side: h.side,
                price: h.price,
                qty: h.qty,
                remaining: h.remaining,
                amount: h.amount,
                funds: h.funds,
                accepted: h.accepted,
                amends: h.amends,
            })
            .collect();
        orders.sort_unstable_by_key(|o| o.order_id);
        let mut transfers: Vec<TransferSnapshot> =
            self.transfers.values().map(|&(transfer, balance)| TransferSnapshot { transfer, balance }).collect();
        transfers.sort_unstable_by_key(|t| t.transfer.transfer_id);
        let ledger = self
            .ledger
            .iter()
            .map(|l| AssetLedger {
                deposits: l.deposits,
                withdrawals: l.withdrawals,
                fees: l.fees,
                transit_in: l.transit_in,
                transit_out: l.transit_out,
                overdraft: l.overdraft,
            })
            .collect();
        let mut sources = self.sources.clone();
        while sources.last() == Some(&0) {
            sources.pop();
        }
        RiskSnapshot { commands: self.commands, accounts, orders, transfers, ledger, sources }
    }

    /// A risk core in the state of `snapshot`.
    ///
    /// # Errors
    /// A snapshot that names assets or symbols this configuration does not have.
    pub fn restore(config: RiskConfig, snapshot: &RiskSnapshot) -> Result<Self, String> {
        let mut risk = Self::new(config);
        if snapshot.ledger.len() != risk.assets {
            return Err(format!("snapshot has {} assets, configuration {}", snapshot.ledger.len(), risk.assets));
        }
        for acct in &snapshot.accounts {
            let a = risk.account(acct.id);
            for &(asset, balance) in &acct.balances {
                if usize::from(asset.0) >= risk.assets {
                    return Err(format!("snapshot names unknown asset {}", asset.0));
                }
                *risk.at(a, asset) = balance;
            }
        }
        for o in &snapshot.orders {
            let market = risk.config.market_of(o.symbol).ok_or_else(|| format!("unknown symbol {}", o.symbol.0))?;
            let account = risk.account(o.account);
            let held = Held {
                account,
                market,
                side: o.side,
                price: o.price,
                qty: o.qty,
                remaining: o.remaining,
                amount: o.amount,
                funds: o.funds,
                accepted: o.accepted,
                amends: o.amends,
            };
            risk.orders.insert(o.order_id, held);
        }
        for t in &snapshot.transfers {
            risk.transfers.insert(t.transfer.transfer_id, (t.transfer, t.balance));
        }
        for (l, s) in risk.ledger.iter_mut().zip(&snapshot.ledger) {
            *l = Ledger {
                deposits: s.deposits,
                withdrawals: s.withdrawals,
                fees: s.fees,
                transit_in: s.transit_in,
                transit_out: s.transit_out,
                overdraft: s.overdraft,
            };
        }
        risk.sources.clone_from(&snapshot.sources);
        risk.commands = snapshot.commands;
        for i in risk.changed.drain(..) {
            risk.dirty[i] = false;
        }
        Ok(risk)
    }
}
