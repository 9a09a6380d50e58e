//! The order store: every account's orders and fills, kept from `tachyon.executions`.
//!
//! The executions feed applies each [`ShardOutput`] (deduplicated by partition and
//! sequence), then notifies the account's `orders` WebSocket subscribers and only then
//! wakes the request waiting for that command, so an answer always reflects its own
//! command. Memory is bounded: done orders beyond `max_closed_orders` and fills beyond
//! `max_fills_per_account` are forgotten oldest first (persistence keeps the history).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tachyon_proto::api::{Order, OrderStatus};
use tachyon_proto::order::{effects, Effect, FeeRecord};
use tachyon_proto::wire::ShardOutput;
use tachyon_proto::{AccountId, ClientOrderId, Event, NewOrder, OrderId, SymbolId, TradeId};
use tokio::sync::mpsc;

pub use tachyon_proto::order::{AccountFillRecord, FillRecord, OrderRecord};

use crate::symbols::Symbols;

/// Limits of what the store keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreLimits {
    pub max_closed_orders: usize,
    pub max_fills_per_account: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        Self { max_closed_orders: 1_000_000, max_fills_per_account: 10_000 }
    }
}

#[derive(Default)]
struct Inner {
    /// Boxed: the table holds a pointer per order, so growing it moves 16 bytes per
    /// order, not the whole record, while the applying thread holds the write lock.
    orders: HashMap<OrderId, Box<OrderRecord>>,
    open: HashMap<AccountId, BTreeSet<OrderId>>,
    /// Every order held, per account (open and done).
    all: HashMap<AccountId, BTreeSet<OrderId>>,
    fills: HashMap<AccountId, VecDeque<AccountFillRecord>>,
    closed: VecDeque<OrderId>,
    /// Client order ids of open orders, for the duplicate check at the edge.
    client_ids: HashMap<(AccountId, ClientOrderId), OrderId>,
    /// Last sequence applied per partition.
    applied: HashMap<u32, u64>,
    max_order_id: u64,
}

/// A subscriber to an account's order updates.
type Subscriber = (u64, mpsc::Sender<Arc<Order>>);

/// The store (see the module docs).
pub struct OrderStore {
    symbols: Arc<Symbols>,
    limits: StoreLimits,
    /// Balances on: per symbol id, its QUOTE asset's index, scale and name, so fills carry
    /// the fee each side paid.
    fees: std::sync::OnceLock<FeeAssets>,
    inner: RwLock<Inner>,
    subscribers: Mutex<HashMap<AccountId, Vec<Subscriber>>>,
}

impl std::fmt::Debug for OrderStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderStore").field("orders", &self.inner.read().orders.len()).finish()
    }
}

impl OrderStore {
    pub fn new(symbols: Arc<Symbols>, limits: StoreLimits) -> Self {
        Self {
            symbols,
            limits,
            fees: std::sync::OnceLock::new(),
            inner: RwLock::new(Inner::default()),
            subscribers: Mutex::new(HashMap::new()),
        }
    }

    /// Fills carry fees from here on (balances on): `quote` gives a symbol's QUOTE asset
    /// as (index, scale, name).
    pub fn charge_fees(&self, quote: HashMap<SymbolId, (u16, u32, &'static str)>) {
        let _ = self.fees.set(FeeAssets { quote });
    }

    /// Applies one executions record; returns `false` for a duplicate.
    pub fn apply(&self, output: &ShardOutput) -> bool {
        let mut changed: Vec<OrderId> = Vec::new();
        {
            let mut inner = self.inner.write();
            let last = inner.applied.entry(output.partition).or_insert(0);
            if output.seq <= *last {
                return false;
            }
            *last = output.seq;
            let fee_of = |trade, account, symbol| self.fees.get().and_then(|f| f.fee(output, trade, account, symbol));
            for event in &output.events {
                inner.apply(event, output.rejected.as_ref(), self.limits, &fee_of, &mut changed);
            }
            inner.evict(self.limits);
        }
        self.notify(&changed);
        true
    }

    /// Sends the changed orders to their accounts' subscribers. A subscriber whose queue
    /// is full is dropped (its stream ends), never skipped silently.
    fn notify(&self, changed: &[OrderId]) {
        let mut subscribers = self.subscribers.lock();
        if subscribers.is_empty() {
            return;
        }
        let inner = self.inner.read();
        for id in changed {
            let Some(record) = inner.orders.get(id) else { continue };
            let Some(list) = subscribers.get_mut(&record.account) else { continue };
            let Some(spec) = self.symbols.by_id(record.symbol) else { continue };
            let order = Arc::new(record.render(spec));
            list.retain(|(_, tx)| tx.try_send(Arc::clone(&order)).is_ok());
        }
        subscribers.retain(|_, list| !list.is_empty());
    }

    /// Subscribes to `account`'s order updates; the stream ends when the receiver falls
    /// `capacity` updates behind.
    pub fn subscribe(&self, account: AccountId, id: u64, capacity: usize) -> mpsc::Receiver<Arc<Order>> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        self.subscribers.lock().entry(account).or_default().push((id, tx));
        rx
    }

    pub fn unsubscribe(&self, account: AccountId, id: u64) {
        let mut subscribers = self.subscribers.lock();
        if let Some(list) = subscribers.get_mut(&account) {
            list.retain(|(sub, _)| *sub != id);
            if list.is_empty() {
                subscribers.remove(&account);
            }
        }
    }

    /// Records an order the gateway sent but the engine has not answered yet.
    pub fn get(&self, id: OrderId) -> Option<OrderRecord> {
        self.inner.read().orders.get(&id).map(|r| OrderRecord::clone(r))
    }

    /// Renders an order (if known).
    pub fn render(&self, id: OrderId) -> Option<Order> {
        let inner = self.inner.read();
        let record = inner.orders.get(&id)?;
        Some(record.render(self.symbols.by_id(record.symbol)?))
    }

    /// The account's open orders (optionally on one symbol), oldest first.
    pub fn open_orders(&self, account: AccountId, symbol: Option<SymbolId>) -> Vec<Order> {
        let inner = self.inner.read();
        let Some(ids) = inner.open.get(&account) else { return Vec::new() };
        ids.iter()
            .filter_map(|id| inner.orders.get(id))
            .filter(|r| symbol.is_none_or(|s| r.symbol == s))
            .filter_map(|r| Some(r.render(self.symbols.by_id(r.symbol)?)))
            .collect()
    }

    /// The account's orders (open and recently done), newest first, optionally filtered.
    pub fn orders(
        &self,
        account: AccountId,
        symbol: Option<SymbolId>,
        status: Option<OrderStatus>,
        limit: usize,
    ) -> Vec<Order> {
        let inner = self.inner.read();
        let Some(ids) = inner.all.get(&account) else { return Vec::new() };
        ids.iter()
            .rev()
            .filter_map(|id| inner.orders.get(id))
            .filter(|r| symbol.is_none_or(|s| r.symbol == s))
            .filter(|r| status.is_none_or(|s| r.status == s))
            .take(limit)
            .filter_map(|r| Some(r.render(self.symbols.by_id(r.symbol)?)))
            .collect()
    }

    /// The account's fills, newest first.
    pub fn fills(
        &self,
        account: AccountId,
        symbol: Option<SymbolId>,
        limit: usize,
    ) -> Vec<tachyon_proto::api::AccountFill> {
        let inner = self.inner.read();
        let Some(fills) = inner.fills.get(&account) else { return Vec::new() };
        fills
            .iter()
            .filter(|f| symbol.is_none_or(|s| f.symbol == s))
            .take(limit)
            .filter_map(|f| Some(f.render(self.symbols.by_id(f.symbol)?)))
            .collect()
    }

    /// `true` while memory holds every fill the account ever had (none dropped yet).
    pub fn fills_complete(&self, account: AccountId) -> bool {
        self.inner.read().fills.get(&account).is_none_or(|f| f.len() < self.limits.max_fills_per_account)
    }

    /// `true` if the account has an open order with this client order id.
    pub fn client_order_id_in_use(&self, account: AccountId, client_order_id: ClientOrderId) -> bool {
        self.inner.read().client_ids.contains_key(&(account, client_order_id))
    }

    /// Ids of the account's open orders (optionally on one symbol).
    pub fn open_ids(&self, account: AccountId, symbol: Option<SymbolId>) -> Vec<OrderId> {
        let inner = self.inner.read();
        inner
            .open
            .get(&account)
            .map(|ids| {
                ids.iter()
                    .filter(|id| symbol.is_none_or(|s| inner.orders.get(id).is_some_and(|r| r.symbol == s)))
                    .copied()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The highest order id seen (to seed the id generator after a restart).
    pub fn max_order_id(&self) -> u64 {
        self.inner.read().max_order_id
    }

    /// Orders held (open and done).
    pub fn len(&self) -> usize {
        self.inner.read().orders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Each symbol's QUOTE asset, for fees (see [`OrderStore::charge_fees`]).
struct FeeAssets {
    quote: HashMap<SymbolId, (u16, u32, &'static str)>,
}

impl FeeAssets {
    /// What `account` paid on `trade` according to `output` (0 when it lists nothing).
    fn fee(&self, output: &ShardOutput, trade: TradeId, account: AccountId, symbol: SymbolId) -> Option<FeeRecord> {
        let &(asset, scale, name) = self.quote.get(&symbol)?;
        let amount = output
            .fees
            .iter()
            .find(|f| f.trade_id == trade && f.account == account && f.asset == asset)
            .map_or(0, |f| f.fee);
        Some(FeeRecord { amount, scale, asset: name })
    }
}

/// A fill's fee, by trade, account and symbol.
type FeeOf<'a> = dyn Fn(TradeId, AccountId, SymbolId) -> Option<FeeRecord> + 'a;

impl Inner {
    fn apply(
        &mut self,
        event: &Event,
        rejected: Option<&NewOrder>,
        limits: StoreLimits,
        fee_of: &FeeOf<'_>,
        changed: &mut Vec<OrderId>,
    ) {
        for effect in effects(event, rejected) {
            let id = effect.order_id();
            match effect {
                Effect::Create(record) => {
                    // A duplicate id must not clobber the order that holds it.
                    if self.orders.contains_key(&id) {
                        continue;
                    }
                    self.max_order_id = self.max_order_id.max(id.0);
                    self.all.entry(record.account).or_default().insert(id);
                    if record.is_open() {
                        self.open.entry(record.account).or_default().insert(id);
                        if let Some(c) = record.client_order_id {
                            self.client_ids.insert((record.account, c), id);
                        }
                    } else {
                        self.closed.push_back(id);
                    }
                    self.orders.insert(id, record);
                }
                mut effect => {
                    let Some(record) = self.orders.get_mut(&id) else { continue };
                    if let Effect::Fill { fill, .. } = &mut effect {
                        fill.fee = fee_of(fill.trade_id, record.account, record.symbol);
                    }
                    record.apply(&effect);
                    if let Effect::Fill { fill, .. } = effect {
                        let entry = AccountFillRecord { order_id: id, symbol: record.symbol, side: record.side, fill };
                        let fills = self.fills.entry(record.account).or_default();
                        fills.push_front(entry);
                        fills.truncate(limits.max_fills_per_account);
                    }
                    if !record.is_open() {
                        self.close(id);
                    }
                }
            }
            if !changed.contains(&id) {
                changed.push(id);
            }
        }
    }

    /// Moves a done order out of its account's open set.
    fn close(&mut self, id: OrderId) {
        let Some((account, client_id)) = self.orders.get(&id).map(|r| (r.account, r.client_order_id)) else { return };
        if let Some(c) = client_id {
            if self.client_ids.get(&(account, c)) == Some(&id) {
                self.client_ids.remove(&(account, c));
            }
        }
        if let Some(open) = self.open.get_mut(&account) {
            open.remove(&id);
            if open.is_empty() {
                self.open.remove(&account);
            }
        }
        self.closed.push_back(id);
    }

    fn evict(&mut self, limits: StoreLimits) {
        while self.closed.len() > limits.max_closed_orders {
            if let Some(id) = self.closed.pop_front() {
                if self.orders.get(&id).is_some_and(|r| !r.is_open()) {
                    if let Some(record) = self.orders.remove(&id) {
                        if let Some(all) = self.all.get_mut(&record.account) {
                            all.remove(&id);
                            if all.is_empty() {
                                self.all.remove(&record.account);
                            }
                        }
                    }
                }
            }
        }
    }
}
