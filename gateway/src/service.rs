//! The gateway's core: turning validated requests into commands on the backbone and
//! engine replies into answers. REST and WebSocket handlers are thin layers over this.
//!
//! Every operation is split in two: a synchronous part that validates, stamps ids and
//! time and produces the command (so a WebSocket connection's commands reach the backbone
//! in the order they were sent), and an asynchronous part that waits for the durable
//! acknowledgement or the engine's reply, with a timeout that answers `pending` rather
//! than hanging.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use parking_lot::Mutex;
use tachyon_bus::BusError;
use tachyon_proto::api::{Order, OrderRequest, OrderStatus};
use tachyon_proto::balance::{TransferError, TransferId, TransferKind};
use tachyon_proto::command::CancelAllCause;
use tachyon_proto::latency::{Hop, Latency};
use tachyon_proto::wire::{encode, CommandEnvelope, ShardOutput, TransferEnvelope};
use tachyon_proto::{
    AccountId, Amend, Cancel, CancelAll, Command, Event, NewOrder, OrderId, RejectReason, SymbolId, SymbolSpec,
    Timestamp, Topic,
};
use tokio::sync::oneshot;

use crate::auth::{Identity, Scope};
use crate::balances::{BalanceConfig, Balances, TransferJson, TransferRequest};
use crate::connections::{ConnectionLimits, Connections};
use crate::error::ApiError;
use crate::history::History;
use crate::idempotency::{IdempotencyConfig, IdempotencyStore};
use crate::keys::Revocations;
use crate::market::MarketData;
use crate::metrics::Metrics;
use crate::orders::{OrderRecord, OrderStore, StoreLimits};
use crate::path::{OrderPath, Reply, Waiter};
use crate::rate_limit::{Decision, RateLimitConfig, RateLimiter};
use crate::symbols::Symbols;
use crate::KeyRing;

/// Gateway settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayConfig {
    /// Distinguishes this gateway's requests in engine replies and its order ids from other
    /// gateways' (0 to [`MAX_GATEWAY_ID`]; unique per gateway process).
    pub gateway_id: u32,
    /// Takes orders (`false`: a market-data-only server).
    pub order_entry: bool,
    /// How long `?response=result` waits for the engine before answering `pending`.
    pub reply_timeout: Duration,
    pub max_body_bytes: usize,
    pub max_batch_orders: usize,
    pub rate_limit: RateLimitConfig,
    pub idempotency: IdempotencyConfig,
    pub store: StoreLimits,
    /// Messages queued per WebSocket connection before it counts as slow.
    pub ws_queue: usize,
    /// Market-data messages buffered per symbol before a subscriber lags (and gets a
    /// fresh snapshot).
    pub md_buffer: usize,
    /// Largest WebSocket frame accepted.
    pub max_frame_bytes: usize,
    /// Open-connection caps, in total and per client IP.
    pub connections: ConnectionLimits,
    /// Accounts allowed on `/v1/admin/*`.
    pub admin_accounts: Vec<AccountId>,
    /// Over the backbone, answer a command only once this gateway's own market data
    /// shows it too (read-your-writes on the REST book, trades and ticker): set when the
    /// gateway follows the market-data topic.
    pub answer_after_market_data: bool,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            gateway_id: 1,
            order_entry: true,
            reply_timeout: Duration::from_secs(5),
            max_body_bytes: 64 * 1024,
            max_batch_orders: 100,
            rate_limit: RateLimitConfig::default(),
            idempotency: IdempotencyConfig::default(),
            store: StoreLimits::default(),
            ws_queue: 4096,
            md_buffer: 4096,
            max_frame_bytes: 64 * 1024,
            connections: ConnectionLimits::default(),
            admin_accounts: Vec::new(),
            answer_after_market_data: false,
        }
    }
}

/// Largest gateway id: order ids are `counter << GATEWAY_ID_BITS | gateway_id`, so
/// gateways never hand out the same id.
pub const MAX_GATEWAY_ID: u32 = (1 << GATEWAY_ID_BITS) - 1;
const GATEWAY_ID_BITS: u32 = 10;

/// How long to wait for an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseMode {
    /// Once the command is durable on the backbone.
    Ack,
    /// Once the engine reported what it did.
    Result,
}

/// The gateway (see the module docs).
pub struct Gateway {
    pub config: GatewayConfig,
    pub symbols: Arc<Symbols>,
    pub orders: OrderStore,
    pub market: MarketData,
    pub metrics: Metrics,
    keys: KeyRing,
    /// Revoked key ids (from the key log or the keys topic): refused with 401 `key_revoked`.
    pub revocations: Arc<Revocations>,
    /// Open connections under the caps (the listener admits through it).
    pub connections: Arc<Connections>,
    limiter: RateLimiter,
    pub(crate) idempotency: IdempotencyStore,
    path: OrderPath,
    next_request: AtomicU64,
    next_order_id: AtomicU64,
    /// Requests waiting for the executions feed (the backbone path).
    pending: Mutex<HashMap<u64, ReplySender>>,
    /// Replies held until this gateway's market data caught up with their command.
    held: Mutex<Held>,
    ready: AtomicBool,
    latency: Arc<Latency>,
    history: Option<Arc<dyn History>>,
    /// Balances on: every account's funds, from the risk stage's outputs.
    pub balances: Option<Balances>,
    /// `GET /v1/openapi.json`, rendered on first use for this gateway's limits.
    pub(crate) openapi: OnceLock<String>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("config", &self.config).finish_non_exhaustive()
    }
}

type ReplySender = oneshot::Sender<Result<Reply, BusError>>;

/// Replies waiting for market data (see [`GatewayConfig::answer_after_market_data`]).
#[derive(Default)]
struct Held {
    /// Last market-data sequence applied, per partition.
    applied: HashMap<u32, u64>,
    /// (partition, market-data sequence) → the replies that wait for it.
    waiting: BTreeMap<(u32, u64), Vec<(ReplySender, Reply)>>,
}

/// A command on its way: wait for it with [`Gateway::wait`].
#[derive(Debug)]
pub enum Submitted {
    Ack(oneshot::Receiver<Result<Option<RejectReason>, BusError>>),
    Result { request_id: u64, stamped: Timestamp, reply: oneshot::Receiver<Result<Reply, BusError>> },
}

/// What waiting for a command gave.
#[derive(Debug)]
pub enum Outcome {
    /// Durable on the backbone (ack mode).
    Durable,
    /// The engine's report.
    Reply(Reply),
    /// No answer in time: the command may still be processed.
    TimedOut,
}

/// A new order on its way.
#[derive(Debug)]
pub struct PlacedOrder {
    pub order: NewOrder,
    pub submitted: Submitted,
}

impl Gateway {
    pub fn new(config: GatewayConfig, symbols: Arc<Symbols>, keys: KeyRing, path: OrderPath) -> Self {
        Self {
            orders: OrderStore::new(Arc::clone(&symbols), config.store),
            market: MarketData::new(Arc::clone(&symbols), config.md_buffer),
            metrics: Metrics::default(),
            limiter: RateLimiter::new(config.rate_limit),
            idempotency: IdempotencyStore::new(config.idempotency),
            symbols,
            keys,
            revocations: Arc::default(),
            connections: Arc::new(Connections::new(config.connections.within_descriptor_limit())),
            path,
            next_request: AtomicU64::new(1),
            next_order_id: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            held: Mutex::new(Held::default()),
            ready: AtomicBool::new(false),
            latency: Arc::default(),
            history: None,
            balances: None,
            openapi: OnceLock::new(),
            config,
        }
    }

    /// Serves balances (the risk stage runs in front of matching).
    #[must_use]
    pub fn with_balances(mut self, config: BalanceConfig) -> Self {
        // Names live as long as the process; a handful, leaked once at start-up.
        let names: Vec<&'static str> =
            config.assets.iter().map(|a| &*Box::leak(a.name.clone().into_boxed_str())).collect();
        let quote = self
            .symbols
            .all()
            .iter()
            .filter_map(|spec| {
                let (_, quote) = spec.name.split_once('-')?;
                let asset = config.asset(quote)?;
                Some((spec.id, (asset, config.assets[usize::from(asset)].scale, names[usize::from(asset)])))
            })
            .collect();
        self.orders.charge_fees(quote);
        self.balances = Some(Balances::new(config));
        self
    }

    /// Opens for business: the order-id counter continues above every id seen and above
    /// the current time in microseconds (so a restart never reuses an id, even one still in
    /// flight); ids carry the gateway id in their low bits (see [`MAX_GATEWAY_ID`]).
    pub fn set_ready(&self) {
        let now_micros = u64::try_from(Timestamp::now().0 / 1_000).unwrap_or(0);
        let seed = now_micros.max((self.orders.max_order_id() >> GATEWAY_ID_BITS) + 1);
        self.next_order_id.fetch_max(seed, Ordering::AcqRel);
        self.ready.store(true, Ordering::Release);
    }

    fn new_order_id(&self) -> OrderId {
        let counter = self.next_order_id.fetch_add(1, Ordering::Relaxed);
        OrderId(counter << GATEWAY_ID_BITS | u64::from(self.config.gateway_id & MAX_GATEWAY_ID))
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && self.path.is_healthy()
    }

    pub fn backbone_healthy(&self) -> bool {
        self.path.is_healthy()
    }

    /// The account of an API key.
    ///
    /// # Errors
    /// 401 when the key is missing or invalid.
    pub fn authenticate(&self, key: Option<&str>) -> Result<Identity, ApiError> {
        let key = key.ok_or_else(|| ApiError::unauthorized("an X-API-Key header is required"))?;
        let identity = self.keys.verify(key).map_err(|_| ApiError::unauthorized("the API key is not valid"))?;
        if self.revocations.is_revoked(identity.key_id) {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "key_revoked", "this API key has been revoked"));
        }
        Ok(identity)
    }

    /// 403 `insufficient_scope` unless `identity` may place, cancel and amend orders.
    ///
    /// # Errors
    /// As above, for a `read` key.
    pub fn may_trade(identity: &Identity) -> Result<(), ApiError> {
        match identity.scope {
            Scope::Trade => Ok(()),
            Scope::Read => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                "this API key has the read scope: it can look, not place, cancel or amend orders or move funds",
            )),
        }
    }

    /// Takes one token from the account's bucket.
    pub fn rate_check(&self, account: AccountId) -> Decision {
        let decision = self.limiter.check(account, Instant::now());
        if !decision.allowed {
            self.metrics.rate_limited.fetch_add(1, Ordering::Relaxed);
        }
        decision
    }

    /// Called by the executions feed for every record, in order (the backbone path):
    /// applies it and answers the request waiting for it, if it is this gateway's.
    pub fn on_execution(&self, output: &ShardOutput) {
        if !self.apply_execution(output) || output.gateway_id != self.config.gateway_id {
            return;
        }
        let Some(waiter) = self.pending.lock().remove(&output.request_id) else { return };
        let reply = Reply::of(output);
        if output.market_data && self.config.answer_after_market_data {
            let mut held = self.held.lock();
            let wanted = output.seq + 1;
            if held.applied.get(&output.partition).copied().unwrap_or(0) < wanted {
                held.waiting.entry((output.partition, wanted)).or_default().push((waiter, reply));
                return;
            }
        }
        let _ = waiter.send(Ok(reply));
    }

    /// Called by the market-data feed for every record, in order: applies it and
    /// answers the replies that waited for it.
    pub fn on_market_data(&self, output: &ShardOutput) {
        self.market.apply(output);
        if self.ready.load(Ordering::Relaxed) {
            self.latency.since(Hop::MarketData, output.timestamp);
        }
        if self.config.answer_after_market_data {
            let mut held = self.held.lock();
            let applied = held.applied.entry(output.partition).or_insert(0);
            *applied = (*applied).max(output.seq);
            let due: Vec<(u32, u64)> =
                held.waiting.range((output.partition, 0)..=(output.partition, output.seq)).map(|(k, _)| *k).collect();
            for key in due {
                for (waiter, reply) in held.waiting.remove(&key).unwrap_or_default() {
                    let _ = waiter.send(Ok(reply));
                }
            }
        }
    }

    /// Applies one output record of a durable batch in this process (the in-process
    /// path: its waiters are answered by [`Gateway::answer`], not from here).
    pub fn apply_output(&self, topic: Topic, output: &ShardOutput) {
        match topic {
            Topic::MarketData => {
                self.market.apply(output);
                if self.ready.load(Ordering::Relaxed) {
                    self.latency.since(Hop::MarketData, output.timestamp);
                }
            }
            _ => {
                self.apply_execution(output);
            }
        }
    }

    /// Applies an executions record to the order store and the balances; `false` when the
    /// store had it already (then the balances did too).
    fn apply_execution(&self, output: &ShardOutput) -> bool {
        let fresh = self.orders.apply(output);
        if let (true, Some(balances)) = (fresh, &self.balances) {
            balances.apply(output);
        }
        fresh
    }

    /// Answers a waiter of the in-process path: its command is durable and `execution`
    /// is the command's executions record (already applied).
    pub fn answer(&self, waiter: Waiter, execution: Option<&ShardOutput>, stamped: Timestamp) {
        self.latency.since(Hop::Ack, stamped);
        match waiter {
            Waiter::Ack(tx) => {
                // The risk stage's refusals are known by now: say so rather than "pending".
                let refused = execution.and_then(|o| {
                    o.events.iter().find_map(|e| match e {
                        Event::Rejected(r)
                            if matches!(r.reason, RejectReason::InsufficientFunds | RejectReason::InvalidFunds) =>
                        {
                            Some(r.reason)
                        }
                        _ => None,
                    })
                });
                drop(tx.send(Ok(refused)));
            }
            Waiter::Reply(tx) => {
                let reply = execution.map(Reply::of).ok_or_else(|| BusError::Unavailable("no report".into()));
                let _ = tx.send(reply);
            }
        }
    }

    /// Shares `latency` for the gateway's hop histograms (so that engine shards in the
    /// same process record into the same set).
    #[must_use]
    pub fn with_latency(mut self, latency: Arc<Latency>) -> Self {
        self.latency = latency;
        self
    }

    /// Answers lookups beyond memory (evicted orders, old fills) from `history`.
    #[must_use]
    pub fn with_history(mut self, history: Arc<dyn History>) -> Self {
        self.history = Some(history);
        self
    }

    /// The hop histograms this gateway records into.
    pub fn latency(&self) -> &Latency {
        &self.latency
    }

    /// Sends `command` to `partition` by the gateway's path (keyed by its symbol's name on
    /// the backbone).
    fn produce(
        &self,
        command: Command,
        partition: u32,
        symbol: Option<SymbolId>,
        mode: ResponseMode,
    ) -> Result<Submitted, ApiError> {
        if !self.config.order_entry {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "this server publishes market data only: send orders to a gateway",
            ));
        }
        if !self.ready.load(Ordering::Acquire) {
            return Err(ApiError::unavailable("the exchange is starting up (recovering its journal)"));
        }
        let request_id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let stamped = command.timestamp();
        let envelope = CommandEnvelope { request_id, gateway_id: self.config.gateway_id, command, origin: None };
        let (waiter, submitted) = match mode {
            ResponseMode::Ack => {
                let (tx, rx) = oneshot::channel();
                (Waiter::Ack(tx), Submitted::Ack(rx))
            }
            ResponseMode::Result => {
                let (tx, rx) = oneshot::channel();
                (Waiter::Reply(tx), Submitted::Result { request_id, stamped, reply: rx })
            }
        };
        let result = match &self.path {
            OrderPath::InProcess(path) => path.submit(partition, envelope, waiter),
            OrderPath::Backbone(bus) => {
                let payload =
                    encode(&envelope).map_err(|e| ApiError::unavailable(format!("cannot encode the command: {e}")))?;
                let key = symbol.and_then(|s| self.symbols.by_id(s)).map_or(&[][..], |spec| spec.name.as_bytes());
                // Every command's durable acknowledgement is timed; ack mode also answers on it.
                let latency = Arc::clone(&self.latency);
                let ack: tachyon_bus::Ack = match waiter {
                    Waiter::Ack(tx) => Box::new(move |r| {
                        latency.since(Hop::Ack, stamped);
                        let _ = tx.send(r.map(|_| None));
                    }),
                    Waiter::Reply(tx) => {
                        self.pending.lock().insert(request_id, tx);
                        Box::new(move |_| latency.since(Hop::Ack, stamped))
                    }
                };
                bus.produce_keyed(Topic::Orders, partition, key, &mut vec![payload], Some(ack))
            }
        };
        result.map(|()| submitted).map_err(|e| {
            self.pending.lock().remove(&request_id);
            self.metrics.backbone_refused.fetch_add(1, Ordering::Relaxed);
            ApiError::from(e)
        })
    }

    /// Waits for a submitted command (bounded by the reply timeout).
    pub async fn wait(&self, submitted: Submitted) -> Result<Outcome, ApiError> {
        let timeout = self.config.reply_timeout;
        match submitted {
            Submitted::Ack(rx) => match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(Ok(None))) => Ok(Outcome::Durable),
                Ok(Ok(Ok(Some(rejected)))) => {
                    Ok(Outcome::Reply(Reply { rejected: Some(rejected), ..Reply::default() }))
                }
                Ok(Ok(Err(e))) => Err(e.into()),
                Ok(Err(_)) => Err(ApiError::unavailable("the backbone dropped the command")),
                Err(_) => Ok(Outcome::TimedOut),
            },
            Submitted::Result { request_id, stamped, reply } => match tokio::time::timeout(timeout, reply).await {
                Ok(Ok(Ok(reply))) => {
                    self.latency.since(Hop::Reply, stamped);
                    Ok(Outcome::Reply(reply))
                }
                Ok(Ok(Err(e))) => Err(e.into()),
                Ok(Err(_)) => Err(ApiError::unavailable("the reply channel closed")),
                Err(_) => {
                    self.pending.lock().remove(&request_id);
                    self.metrics.replies_timed_out.fetch_add(1, Ordering::Relaxed);
                    Ok(Outcome::TimedOut)
                }
            },
        }
    }

    fn symbol(&self, name: &str) -> Result<&SymbolSpec, ApiError> {
        self.symbols.by_name(name).ok_or_else(|| ApiError::unknown_symbol(name))
    }

    fn partition(&self, symbol: SymbolId) -> Result<u32, ApiError> {
        self.symbols.partition(symbol).ok_or_else(|| ApiError::unavailable("symbol without a partition"))
    }

    /// Validates and sends a new order.
    ///
    /// # Errors
    /// 400/404 for invalid requests, 409 for a client order id in use, 503 when the
    /// backbone refuses.
    pub fn place(
        &self,
        account: AccountId,
        request: &OrderRequest,
        mode: ResponseMode,
    ) -> Result<PlacedOrder, ApiError> {
        let spec = self.symbol(&request.symbol)?;
        let valid = request.validate(spec)?;
        if let Some(c) = valid.client_order_id {
            if self.orders.client_order_id_in_use(account, c) {
                return Err(ApiError::from_reject(RejectReason::DuplicateClientOrderId)
                    .expect("duplicate client order id has an API error"));
            }
        }
        let order = NewOrder {
            order_id: self.new_order_id(),
            account,
            symbol: spec.id,
            side: valid.side,
            order_type: valid.order_type,
            time_in_force: valid.time_in_force,
            post_only: valid.post_only,
            stp: valid.stp,
            price: valid.price,
            qty: valid.qty,
            client_order_id: valid.client_order_id,
            timestamp: Timestamp::now(),
        };
        let submitted = self.produce(Command::New(order), self.partition(spec.id)?, Some(spec.id), mode)?;
        self.metrics.orders_submitted.fetch_add(1, Ordering::Relaxed);
        Ok(PlacedOrder { order, submitted })
    }

    /// Waits for a placed order: 201 with the order as the engine left it, or 202 with
    /// `pending` (ack mode, or no reply in time).
    ///
    /// # Errors
    /// 409 when the engine found the client order id in use; 503 from the backbone.
    pub async fn placed(&self, placed: PlacedOrder) -> Result<(StatusCode, Order), ApiError> {
        let pending = || {
            let spec = self.symbols.by_id(placed.order.symbol).expect("orders are only placed on known symbols");
            OrderRecord::from_new(&placed.order, OrderStatus::Pending).render(spec)
        };
        match self.wait(placed.submitted).await? {
            Outcome::Durable | Outcome::TimedOut => Ok((StatusCode::ACCEPTED, pending())),
            Outcome::Reply(reply) => {
                if let Some(error) = reply.rejected.and_then(ApiError::from_reject) {
                    return Err(error);
                }
                let order = self.orders.render(placed.order.order_id).unwrap_or_else(pending);
                Ok((StatusCode::CREATED, order))
            }
        }
    }

    /// Checks that `id` is an open order of `account`; returns its symbol.
    fn owned_open(&self, account: AccountId, id: OrderId) -> Result<SymbolId, ApiError> {
        let record = self.orders.get(id).ok_or_else(ApiError::order_not_found)?;
        if record.account != account {
            return Err(ApiError::not_yours());
        }
        if !record.is_open() {
            return Err(ApiError::not_open());
        }
        Ok(record.symbol)
    }

    /// Sends a cancel (sync part).
    ///
    /// # Errors
    /// 404 unknown, 403 not yours, 409 not open, 503 backbone.
    pub fn cancel(&self, account: AccountId, id: OrderId) -> Result<Submitted, ApiError> {
        let symbol = self.owned_open(account, id)?;
        let command = Command::Cancel(Cancel { order_id: id, account, timestamp: Timestamp::now() });
        self.produce(command, self.partition(symbol)?, Some(symbol), ResponseMode::Result)
    }

    /// Sends an amend (sync part); `price`/`qty` are decimal strings on the symbol's grid.
    ///
    /// # Errors
    /// 400 for invalid values, plus those of [`Gateway::cancel`].
    pub fn amend(
        &self,
        account: AccountId,
        id: OrderId,
        price: Option<&str>,
        qty: Option<&str>,
    ) -> Result<Submitted, ApiError> {
        let symbol = self.owned_open(account, id)?;
        let spec = self.symbols.by_id(symbol).ok_or_else(|| ApiError::unavailable("order on an unknown symbol"))?;
        if price.is_none() && qty.is_none() {
            return Err(ApiError::bad_request("invalid_request", "give a new price, a new quantity or both"));
        }
        let price = price
            .map(|p| spec.tick.price(p))
            .transpose()
            .map_err(|e| ApiError::bad_request("invalid_price", format!("price {e} (tick size {})", spec.tick)))?;
        if price.is_some_and(|p| p.0 <= 0) {
            return Err(ApiError::bad_request("invalid_price", "price must be positive"));
        }
        let qty = qty
            .map(|q| spec.lot.qty(q))
            .transpose()
            .map_err(|e| ApiError::bad_request("invalid_quantity", format!("quantity {e} (lot size {})", spec.lot)))?;
        if let Some(q) = qty {
            if q > spec.max_qty {
                return Err(ApiError::bad_request("quantity_above_max", "quantity is above the symbol's maximum"));
            }
        }
        let command = Command::Amend(Amend { order_id: id, account, price, qty, timestamp: Timestamp::now() });
        self.produce(command, self.partition(symbol)?, Some(symbol), ResponseMode::Result)
    }

    /// Waits for a cancel or amend: 200 with the order, or 202 with the order as known
    /// when no reply came in time.
    ///
    /// # Errors
    /// 403/409 when the engine refused it.
    pub async fn changed(&self, id: OrderId, submitted: Submitted) -> Result<(StatusCode, Order), ApiError> {
        let status = match self.wait(submitted).await? {
            Outcome::Reply(reply) => {
                if let Some(error) = reply.rejected.and_then(ApiError::from_reject) {
                    return Err(error);
                }
                StatusCode::OK
            }
            Outcome::Durable | Outcome::TimedOut => StatusCode::ACCEPTED,
        };
        let order = self.orders.render(id).ok_or_else(ApiError::order_not_found)?;
        Ok((status, order))
    }

    /// Sends a cancel-all to every partition concerned (sync part).
    ///
    /// # Errors
    /// 404 for an unknown symbol, 503 backbone.
    pub fn cancel_all(&self, account: AccountId, symbol: Option<&str>) -> Result<Vec<Submitted>, ApiError> {
        let symbol = symbol.map(|s| self.symbol(s).map(|spec| spec.id)).transpose()?;
        let partitions: Vec<u32> = match symbol {
            Some(s) => vec![self.partition(s)?],
            None => (0..self.path.partitions()).collect(),
        };
        let timestamp = Timestamp::now();
        partitions
            .into_iter()
            .map(|p| {
                let command =
                    Command::CancelAll(CancelAll { account, symbol, cause: CancelAllCause::Request, timestamp });
                self.produce(command, p, symbol, ResponseMode::Result)
            })
            .collect()
    }

    /// Waits for a cancel-all: the ids cancelled, and whether every partition answered.
    pub async fn cancelled_all(&self, submitted: Vec<Submitted>) -> Result<(bool, Vec<String>), ApiError> {
        let mut ids = Vec::new();
        let mut complete = true;
        for s in submitted {
            match self.wait(s).await? {
                Outcome::Reply(reply) => ids.extend(reply.cancelled.iter().map(|id| id.0.to_string())),
                Outcome::Durable | Outcome::TimedOut => complete = false,
            }
        }
        Ok((complete, ids))
    }

    /// Parses an order id from a path.
    ///
    /// # Errors
    /// 404: a string that is not an id names no order.
    pub fn order_id(text: &str) -> Result<OrderId, ApiError> {
        text.parse::<u64>().map(OrderId).map_err(|_| ApiError::order_not_found())
    }

    /// The account's own order.
    ///
    /// # Errors
    /// 404 unknown, 403 another account's.
    pub fn order(&self, account: AccountId, id: OrderId) -> Result<Order, ApiError> {
        let record = self.orders.get(id).ok_or_else(ApiError::order_not_found)?;
        if record.account != account {
            return Err(ApiError::not_yours());
        }
        self.orders.render(id).ok_or_else(ApiError::order_not_found)
    }

    /// The account's own order, from memory or, for one memory no longer holds, from the
    /// history store.
    ///
    /// # Errors
    /// 404 unknown, 403 another account's, 503 when the history store cannot answer.
    pub async fn find_order(&self, account: AccountId, id: OrderId) -> Result<Order, ApiError> {
        if self.orders.get(id).is_some() {
            return self.order(account, id);
        }
        let Some(history) = &self.history else { return Err(ApiError::order_not_found()) };
        match history.order(id).await {
            Ok(Some((owner, order))) if owner == account => Ok(order),
            Ok(Some(_)) => Err(ApiError::not_yours()),
            Ok(None) => Err(ApiError::order_not_found()),
            Err(e) => Err(ApiError::unavailable(format!("the order history is unavailable: {e}"))),
        }
    }

    /// The account's newest `limit` fills: from memory, completed from the history store
    /// once memory has dropped some of the account's older fills.
    ///
    /// # Errors
    /// 503 when the history store is needed and cannot answer.
    pub async fn fills(
        &self,
        account: AccountId,
        symbol: Option<SymbolId>,
        limit: usize,
    ) -> Result<Vec<tachyon_proto::api::AccountFill>, ApiError> {
        let memory = self.orders.fills(account, symbol, limit);
        let Some(history) = &self.history else { return Ok(memory) };
        if memory.len() >= limit || self.orders.fills_complete(account) {
            return Ok(memory);
        }
        let stored = history
            .fills(account, symbol, limit)
            .await
            .map_err(|e| ApiError::unavailable(format!("the fill history is unavailable: {e}")))?;
        Ok(crate::history::merge_fills(memory, stored, limit))
    }

    /// Resolves an optional symbol filter.
    ///
    /// # Errors
    /// 404 for an unknown symbol.
    pub fn symbol_filter(&self, symbol: Option<&str>) -> Result<Option<SymbolId>, ApiError> {
        symbol.map(|s| self.symbol(s).map(|spec| spec.id)).transpose()
    }

    /// Outstanding `?response=result` waits.
    pub fn pending_replies(&self) -> usize {
        self.pending.lock().len()
    }

    /// The balances view, or 404 when balances are off.
    ///
    /// # Errors
    /// 404 `not_found` when the exchange runs without balances.
    pub fn balances(&self) -> Result<&Balances, ApiError> {
        self.balances.as_ref().ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "balances are off on this exchange ([risk] balances)")
        })
    }

    /// Validates a deposit or withdrawal and waits for its result.
    ///
    /// # Errors
    /// 400 for an invalid account, amount or transfer id and for a withdrawal above
    /// `available` (`insufficient_funds`); 404 `unknown_asset`; 409 `duplicate_transfer_id` for an id used with
    /// another body; 404 when balances are off; 503 when the order path is unavailable or
    /// the answer does not come in time.
    pub async fn transfer(&self, kind: TransferKind, request: &TransferRequest) -> Result<TransferJson, ApiError> {
        let balances = self.balances()?;
        let account = AccountId::parse(&request.account_id)
            .map_err(|e| ApiError::bad_request("invalid_account", format!("account_id {e}")))?;
        let asset = balances.config.asset(&request.asset).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_asset",
                format!("asset {:?} is not configured", request.asset),
            )
        })?;
        let amount = balances.config.parse(asset, &request.amount).ok_or_else(|| {
            let scale = balances.config.assets[usize::from(asset)].scale;
            ApiError::bad_request(
                "invalid_amount",
                format!(
                    "amount must be a positive decimal below 1e{} with at most {scale} decimal places",
                    18u32.saturating_sub(scale)
                ),
            )
        })?;
        let transfer_id = TransferId::parse(&request.transfer_id)
            .map_err(|e| ApiError::bad_request("invalid_transfer_id", e.to_string()))?;
        if !self.ready.load(Ordering::Acquire) {
            return Err(ApiError::unavailable("the exchange is starting up (recovering its journal)"));
        }
        let OrderPath::InProcess(path) = &self.path else {
            return Err(ApiError::unavailable("transfers need the risk stage in this process"));
        };
        let request_id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let timestamp = Timestamp::now();
        let envelope = TransferEnvelope {
            request_id,
            gateway_id: self.config.gateway_id,
            timestamp,
            kind,
            transfer_id,
            account,
            asset,
            amount,
        };
        let (tx, rx) = oneshot::channel();
        path.submit_transfer(envelope, Waiter::Reply(tx)).map_err(ApiError::from)?;
        let submitted = Submitted::Result { request_id, stamped: timestamp, reply: rx };
        let reply = match self.wait(submitted).await? {
            Outcome::Reply(reply) => reply,
            Outcome::Durable | Outcome::TimedOut => {
                return Err(ApiError::unavailable("no answer in time: retry with the same transfer_id"))
            }
        };
        let record = reply.transfer.ok_or_else(|| ApiError::unavailable("the transfer was not answered"))?;
        match record.error {
            None => Ok(balances.transfer_json(&record)),
            Some(TransferError::InsufficientFunds) => Err(ApiError::bad_request(
                "insufficient_funds",
                "the withdrawal is above the account's available balance",
            )),
            Some(TransferError::DuplicateTransferId) => Err(ApiError::new(
                StatusCode::CONFLICT,
                "duplicate_transfer_id",
                "transfer_id was used before with another body",
            )),
            Some(TransferError::InvalidAmount | TransferError::UnknownAsset) => {
                Err(ApiError::bad_request("invalid_amount", "the amount would overflow the balance"))
            }
        }
    }
}
