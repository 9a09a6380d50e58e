//! One load run: an open-loop schedule driven over REST, batch REST or WebSocket order
//! entry, with coordinated-omission-corrected latency, live progress and a summary.
//!
//! Each generator thread runs its own single-threaded tokio runtime with its share of the
//! schedule, its own accounts and flow, so threads share nothing on the hot path. A
//! thread's requests are *tickets* with an intended send time; a free connection takes
//! the next ticket and sleeps until its time; when every connection is busy the ticket
//! is late and its latency still counts from the intended time, and the pool grows (up
//! to `--max-connections`) so the load is never silently shed.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use rustc_hash::FxHashMap;
use serde::Deserialize;
use tachyon_proto::fixed::Step;
use tokio::sync::mpsc as tmpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::flow::{lots_of, Action, Flow, Instrument, Market, Mix};
use crate::http::{self, dial_ws, Conn, Target};
use crate::pacer::Pacer;
use crate::schedule::Schedule;
use crate::stats::Sample;

/// How orders are sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// `POST /v1/orders`, `DELETE`/`PATCH /v1/orders/{id}`: one order per request.
    Rest,
    /// `POST /v1/orders/batch`: `--batch-size` orders per request.
    Batch,
    /// WebSocket order entry (`order.new`, `order.cancel`), pipelined on one socket per account.
    Ws,
}

/// What the REST calls wait for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseMode {
    /// `?response=ack`: answered once durably on the backbone.
    Ack,
    /// `?response=result`: answered with the engine's report.
    Result,
}

/// Everything a run needs besides the keys.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub target: String,
    /// The measured schedule, in requests/s (orders/s ÷ batch size for batches).
    pub schedule: Schedule,
    /// Seconds at the schedule's starting rate before measuring (connections, caches).
    pub warmup_secs: f64,
    pub transport: Transport,
    pub response: ResponseMode,
    pub batch_size: usize,
    pub symbols: Option<Vec<String>>,
    pub zipf: f64,
    pub mix: Mix,
    pub seed: u64,
    pub threads: usize,
    pub max_connections: usize,
    pub timeout: Duration,
    /// Shortest time between two wake-ups of a generator thread: requests due meanwhile
    /// go out together (up to this much late, which their latency includes). Each wake-up
    /// costs a timer and a context switch; this bounds them to 1/resolution per second.
    pub timer_resolution: Duration,
    /// Follow trades on a market-data WebSocket for end-to-end latency.
    pub end_to_end: bool,
    /// Print a progress line every second.
    pub progress: bool,
}

/// The raw results of a run, before judging and reporting.
#[derive(Debug)]
pub struct RunOutput {
    /// Everything measured.
    pub total: Sample,
    /// One sample per second of the measured window: (offset from its start, sample).
    pub intervals: Vec<(Duration, Sample)>,
    /// Wall time from the start of measurement to the last measured send (or the
    /// schedule's end if later).
    pub window: Duration,
    /// Generator CPU time from the start of measurement until every thread finished.
    pub client_cpu: Option<Duration>,
    /// Server CPU time over the same span (with a server pid).
    pub server_cpu: Option<Duration>,
    /// The wall time those CPU times were taken over.
    pub cpu_wall: Duration,
    /// Connections opened: the HTTP pool's peak size (REST/batch) or the sockets (WS).
    pub connections: usize,
    /// Accounts used.
    pub accounts: usize,
    /// Whether end-to-end latency was measured.
    pub end_to_end: bool,
}

/// State shared by all generator threads.
#[derive(Debug)]
struct Shared {
    config: RunConfig,
    target: Target,
    market: Arc<Market>,
    symbol_index: FxHashMap<String, usize>,
    /// Measurement starts here (after the warm-up).
    measure_from: Instant,
    start: Instant,
    conns: AtomicUsize,
    query: &'static str,
}

/// Runs the load; blocks until done. `keys` are the accounts' API keys.
///
/// # Errors
/// The target is unreachable or has no usable symbols, or a generator thread failed.
pub fn run(config: &RunConfig, keys: &[String], server_pid: Option<u32>) -> Result<RunOutput> {
    if keys.is_empty() {
        bail!("no API keys: give --data-dir (to mint) or --keys-file");
    }
    let setup = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (target, market) = setup.block_on(discover(config))?;
    drop(setup);
    let market = Arc::new(market);
    let symbol_index = market.instruments.iter().enumerate().map(|(i, s)| (s.name.clone(), i)).collect();
    let threads = config.threads.max(1);
    let (tx, rx) = mpsc::channel();
    let start = Instant::now() + Duration::from_millis(200);
    let measure_from = start + Duration::from_secs_f64(config.warmup_secs);
    let end_to_end =
        config.end_to_end && (config.response == ResponseMode::Result || config.transport == Transport::Ws);
    let shared = Arc::new(Shared {
        config: RunConfig { end_to_end, ..config.clone() },
        target,
        market,
        symbol_index,
        measure_from,
        start,
        conns: AtomicUsize::new(0),
        query: match config.response {
            ResponseMode::Ack => "?response=ack",
            ResponseMode::Result => "",
        },
    });
    let warmup = if config.warmup_secs > 0.0 {
        let rate = config.schedule.offset(1).map_or(1.0, |d| 1.0 / d.as_secs_f64().max(1e-9));
        Some(Schedule::constant(rate, config.warmup_secs)?)
    } else {
        None
    };
    let full = match &warmup {
        Some(w) => w.then(&config.schedule)?,
        None => config.schedule.clone(),
    };
    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        let my_keys: Vec<String> = keys.iter().skip(t).step_by(threads).cloned().collect();
        if my_keys.is_empty() {
            bail!("{threads} threads need at least {threads} accounts");
        }
        let schedule = full.scaled(1.0 / threads as f64)?;
        let shared = Arc::clone(&shared);
        let samples = tx.clone();
        let seed = config.seed.wrapping_add(t as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        handles.push(std::thread::Builder::new().name(format!("loadgen-{t}")).spawn(move || -> Result<()> {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(generate(shared, schedule, my_keys, seed, samples))
        })?);
    }
    // The threads hold the only senders: the channel closes when the last one is done.
    drop(tx);
    let collected = collect(&shared, &rx, server_pid);
    let connections = shared.conns.load(Ordering::Relaxed);
    drop(shared);
    for h in handles {
        h.join().map_err(|_| anyhow::anyhow!("a generator thread panicked"))??;
    }
    let Collected { total, intervals, window, client_cpu, server_cpu, cpu_wall } = collected;
    Ok(RunOutput {
        total,
        intervals,
        window,
        client_cpu,
        server_cpu,
        cpu_wall,
        connections,
        accounts: keys.len(),
        end_to_end,
    })
}

/// What the collector gathered (the parts of [`RunOutput`] it measures).
struct Collected {
    total: Sample,
    intervals: Vec<(Duration, Sample)>,
    window: Duration,
    client_cpu: Option<Duration>,
    server_cpu: Option<Duration>,
    cpu_wall: Duration,
}

/// Gathers the threads' samples once a second, prints progress, measures CPU over the
/// measured window.
fn collect(shared: &Shared, rx: &mpsc::Receiver<Sample>, server_pid: Option<u32>) -> Collected {
    let mut total = Sample::default();
    let mut intervals = Vec::new();
    let mut interval = Sample::default();
    let mut tick = shared.measure_from + Duration::from_secs(1);
    // When measurement started, and the CPU times then.
    let mut opened: Option<(Instant, Option<Duration>, Option<Duration>)> = None;
    let target_rps = shared.config.schedule.mean_rate();
    loop {
        let now = Instant::now();
        if opened.is_none() && now >= shared.measure_from {
            opened = Some((now, crate::cpu::cpu_time(None), server_pid.and_then(|p| crate::cpu::cpu_time(Some(p)))));
        }
        // Wake exactly when the window opens, then once a second.
        let deadline = if opened.is_some() { tick } else { shared.measure_from };
        match rx.recv_timeout(deadline.saturating_duration_since(now)) {
            Ok(sample) => interval.merge(&sample),
            Err(mpsc::RecvTimeoutError::Timeout) if opened.is_some() => {
                total.merge(&interval);
                let offset = tick - shared.measure_from - Duration::from_secs(1);
                if shared.config.progress {
                    progress_line(offset + Duration::from_secs(1), &interval, &total, target_rps, shared);
                }
                intervals.push((offset, std::mem::take(&mut interval)));
                tick += Duration::from_secs(1);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    if interval.requests > 0 {
        total.merge(&interval);
        intervals.push((tick.saturating_duration_since(shared.measure_from + Duration::from_secs(1)), interval));
    }
    let (opened_at, client_before, server_before) = opened.unwrap_or((Instant::now(), None, None));
    let client_cpu = client_before.and_then(|b| Some(crate::cpu::cpu_time(None)?.saturating_sub(b)));
    let server_cpu = server_before.and_then(|b| Some(crate::cpu::cpu_time(server_pid)?.saturating_sub(b)));
    let scheduled_end = shared.measure_from + shared.config.schedule.duration();
    let last = total.last_send.map_or(scheduled_end, |l| l.max(scheduled_end));
    Collected {
        total,
        intervals,
        window: last.saturating_duration_since(shared.measure_from),
        client_cpu,
        server_cpu,
        cpu_wall: opened_at.elapsed(),
    }
}

fn progress_line(at: Duration, interval: &Sample, total: &Sample, target_rps: f64, shared: &Shared) {
    let p = |h: &hdrhistogram::Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    eprintln!(
        "[{:>4.0}s] {:>8} req/s (target {:.0})  errors {:<6} | p50 {:>7.2} p99 {:>7.2} p99.9 {:>7.2} max {:>8.2} ms | \
         p99 so far {:>7.2} ms | send lag p99 {:.2} ms | conns {}",
        at.as_secs_f64(),
        interval.requests,
        target_rps,
        interval.errors,
        p(&interval.latency, 0.5),
        p(&interval.latency, 0.99),
        p(&interval.latency, 0.999),
        interval.latency.max() as f64 / 1000.0,
        p(&total.latency, 0.99),
        p(&interval.send_lag, 0.99),
        shared.conns.load(Ordering::Relaxed),
    );
}

/// Reads the symbols (and their last prices) from the target.
async fn discover(config: &RunConfig) -> Result<(Target, Market)> {
    #[derive(Deserialize)]
    struct SymbolInfo {
        symbol: String,
        tick_size: String,
        lot_size: String,
        min_quantity: String,
    }
    #[derive(Deserialize)]
    struct Ticker {
        last_price: Option<String>,
        best_bid: Option<String>,
        best_ask: Option<String>,
    }
    let target = Target::resolve(&config.target).await?;
    let (status, body) =
        http::get(&target, "/v1/symbols").await.with_context(|| format!("GET {}/v1/symbols", config.target))?;
    if status != 200 {
        bail!("GET /v1/symbols answered {status}");
    }
    let listed: Vec<SymbolInfo> = serde_json::from_slice(&body).context("GET /v1/symbols: unexpected body")?;
    let wanted: Vec<SymbolInfo> = match &config.symbols {
        None => listed,
        Some(names) => {
            let mut by_name: FxHashMap<String, SymbolInfo> =
                listed.into_iter().map(|s| (s.symbol.clone(), s)).collect();
            names
                .iter()
                .map(|n| by_name.remove(n).with_context(|| format!("symbol {n} is not listed by the target")))
                .collect::<Result<_>>()?
        }
    };
    let mut instruments = Vec::with_capacity(wanted.len());
    let mut mids = Vec::with_capacity(wanted.len());
    for s in wanted {
        let tick = Step::parse(&s.tick_size).with_context(|| format!("{}: tick_size", s.symbol))?;
        let lot = Step::parse(&s.lot_size).with_context(|| format!("{}: lot_size", s.symbol))?;
        let min_lots = lot.qty(&s.min_quantity).map_or(1, |q| q.0.max(1));
        // Start at the last traded price (or the touch) so a second run trades where
        // the first left the book; an empty market starts at 10,000 ticks.
        let mid = match http::get(&target, &format!("/v1/ticker/{}", s.symbol)).await {
            Ok((200, body)) => serde_json::from_slice::<Ticker>(&body).ok().and_then(|t| {
                let px = |p: &Option<String>| p.as_deref().and_then(|p| tick.steps(p).ok());
                px(&t.last_price).or_else(|| Some((px(&t.best_bid)? + px(&t.best_ask)?) / 2))
            }),
            _ => None,
        };
        mids.push(mid.unwrap_or(10_000));
        instruments.push(Instrument { name: s.symbol, tick, lot, min_lots });
    }
    let market = Market::new(instruments, config.zipf, &mids)?;
    Ok((target, market))
}

/// A generator thread's state (single-threaded: `Rc`/`RefCell`).
struct Worker {
    shared: Arc<Shared>,
    samples: mpsc::Sender<Sample>,
    schedule: Schedule,
    next: Cell<u64>,
    flow: RefCell<Flow>,
    keys: Vec<String>,
    sample: RefCell<Sample>,
    e2e: RefCell<EndToEnd>,
    conns: Cell<usize>,
    done: Cell<bool>,
}

impl Worker {
    /// The next ticket's intended send time, or `None` when the schedule is used up.
    fn take(&self) -> Option<Instant> {
        let i = self.next.get();
        let offset = self.schedule.offset(i)?;
        self.next.set(i + 1);
        Some(self.shared.start + offset)
    }

    /// Intended time of the next ticket not yet taken.
    fn peek(&self) -> Option<Instant> {
        Some(self.shared.start + self.schedule.offset(self.next.get())?)
    }

    fn measured(&self, intended: Instant) -> bool {
        intended >= self.shared.measure_from
    }

    /// Records how a ticket went out: the generator's own lateness (a connection was free
    /// at its time) or a late ticket (none was).
    fn sent(&self, intended: Instant, late: bool, at: Instant) {
        if self.measured(intended) {
            let mut sample = self.sample.borrow_mut();
            if late {
                sample.late += 1;
            } else {
                sample.lag(at.saturating_duration_since(intended));
            }
        }
    }

    /// Handles one order object of an answer to a placed order.
    fn placed(&self, placed: &Placed, order: &OrderView<'_>, intended: Instant) {
        match &*order.status {
            "new" | "partially_filled" | "pending" => {
                let inst = &self.shared.market.instruments[placed.symbol];
                let lots = order.remaining_quantity.as_deref().map_or(placed.lots, |q| lots_of(inst, q));
                if lots > 0 {
                    self.flow.borrow_mut().rested(
                        placed.account,
                        order.order_id.clone().into_owned(),
                        lots,
                        placed.symbol,
                    );
                }
            }
            "rejected" => self.outcome(intended, "rejected"),
            _ => {}
        }
        if !self.measured(intended) {
            return;
        }
        let taker = order.fills.iter().filter(|f| f.liquidity == "taker");
        self.sample.borrow_mut().trades += taker.clone().count() as u64;
        if self.shared.config.end_to_end {
            for fill in taker {
                let Ok(trade) = fill.trade_id.parse::<u64>() else { continue };
                if let Some(d) = self.e2e.borrow_mut().order_trade((placed.symbol, trade), intended) {
                    self.sample.borrow_mut().end_to_end(d);
                }
            }
        }
    }

    /// Records the answer (now) to a measured request sent at `sent`.
    fn answered(&self, intended: Instant, sent: Instant, orders: u64) {
        if self.measured(intended) {
            self.sample.borrow_mut().answered(intended, sent, Instant::now(), orders);
        }
    }

    /// Counts a non-success outcome of a measured request (warm-up ones are not counted).
    fn outcome(&self, intended: Instant, code: &str) {
        if self.measured(intended) {
            self.sample.borrow_mut().outcome(code);
        }
    }

    /// Handles an answer body (REST or batch): counts outcomes, remembers resting orders.
    fn answer(&self, status: u16, body: &[u8], placed: &[Placed], intended: Instant) {
        if status >= 400 {
            let code =
                serde_json::from_slice::<ErrorBody<'_>>(body).map_or(Cow::Borrowed("bad_error_body"), |e| e.error.code);
            self.outcome(intended, &code);
            return;
        }
        match self.shared.config.transport {
            Transport::Batch => match serde_json::from_slice::<BatchAnswer<'_>>(body) {
                Ok(answer) => {
                    for (item, p) in answer.results.iter().zip(placed) {
                        match item {
                            BatchItem::Order(order) => self.placed(p, order, intended),
                            BatchItem::Error(e) => self.outcome(intended, &e.error.code),
                        }
                    }
                }
                Err(_) => self.outcome(intended, "bad_answer"),
            },
            _ => {
                let Some(p) = placed.first() else { return };
                match serde_json::from_slice::<OrderView<'_>>(body) {
                    Ok(order) => {
                        if status == 202 && self.shared.config.response == ResponseMode::Result {
                            // The engine did not answer within the gateway's reply timeout.
                            self.outcome(intended, "reply_timeout");
                        }
                        self.placed(p, &order, intended);
                    }
                    Err(_) => self.outcome(intended, "bad_answer"),
                }
            }
        }
    }

    /// Sends the thread's sample to the collector and starts a new one.
    fn flush(&self) {
        let sample = std::mem::take(&mut *self.sample.borrow_mut());
        let _ = self.samples.send(sample);
    }
}

/// What was placed by a request, to interpret its answer.
#[derive(Clone, Copy, Debug)]
struct Placed {
    account: usize,
    symbol: usize,
    lots: u64,
}

#[derive(Deserialize)]
struct OrderView<'a> {
    #[serde(borrow)]
    order_id: Cow<'a, str>,
    #[serde(borrow)]
    status: Cow<'a, str>,
    #[serde(borrow, default)]
    remaining_quantity: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    fills: Vec<FillView<'a>>,
}

#[derive(Deserialize)]
struct FillView<'a> {
    #[serde(borrow)]
    trade_id: Cow<'a, str>,
    #[serde(borrow)]
    liquidity: Cow<'a, str>,
}

#[derive(Deserialize)]
struct ErrorBody<'a> {
    #[serde(borrow)]
    error: ErrorView<'a>,
}

#[derive(Deserialize)]
struct ErrorView<'a> {
    #[serde(borrow)]
    code: Cow<'a, str>,
}

#[derive(Deserialize)]
struct BatchAnswer<'a> {
    #[serde(borrow)]
    results: Vec<BatchItem<'a>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum BatchItem<'a> {
    #[serde(borrow)]
    Error(ErrorBody<'a>),
    #[serde(borrow)]
    Order(OrderView<'a>),
}

/// Matches an order's taker fills with trades seen on the market-data stream, whichever
/// arrives first.
#[derive(Debug, Default)]
struct EndToEnd {
    /// Trades of our orders not yet seen on the stream: intended send time.
    awaiting: FxHashMap<(usize, u64), Instant>,
    /// Trades seen on the stream, not (yet) known as ours: when seen.
    seen: FxHashMap<(usize, u64), Instant>,
}

impl EndToEnd {
    fn order_trade(&mut self, key: (usize, u64), intended: Instant) -> Option<Duration> {
        match self.seen.remove(&key) {
            Some(at) => Some(at.saturating_duration_since(intended)),
            None => {
                self.awaiting.insert(key, intended);
                None
            }
        }
    }

    fn stream_trade(&mut self, key: (usize, u64), at: Instant) -> Option<Duration> {
        match self.awaiting.remove(&key) {
            Some(intended) => Some(at.saturating_duration_since(intended)),
            None => {
                self.seen.insert(key, at);
                None
            }
        }
    }

    /// Forgets entries older than `horizon` (trades of other generators, lost matches).
    fn prune(&mut self, horizon: Instant) {
        self.awaiting.retain(|_, t| *t >= horizon);
        self.seen.retain(|_, t| *t >= horizon);
    }
}

async fn generate(
    shared: Arc<Shared>,
    schedule: Schedule,
    keys: Vec<String>,
    seed: u64,
    samples: mpsc::Sender<Sample>,
) -> Result<()> {
    let mix = match shared.config.transport {
        Transport::Rest => shared.config.mix,
        Transport::Batch => shared.config.mix.places_only(),
        Transport::Ws => shared.config.mix.without_amend(),
    };
    let flow = Flow::new(Arc::clone(&shared.market), mix, keys.len(), seed);
    let worker = Rc::new(Worker {
        shared,
        samples,
        schedule,
        next: Cell::new(0),
        flow: RefCell::new(flow),
        keys,
        sample: RefCell::new(Sample::default()),
        e2e: RefCell::new(EndToEnd::default()),
        conns: Cell::new(0),
        done: Cell::new(false),
    });
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let reporter = tokio::task::spawn_local(report_every_second(Rc::clone(&worker)));
            let market_data = if worker.shared.config.end_to_end {
                let stream = follow_trades(Rc::clone(&worker)).await?;
                Some(tokio::task::spawn_local(stream))
            } else {
                None
            };
            let result = match worker.shared.config.transport {
                Transport::Rest | Transport::Batch => drive_http(&worker).await,
                Transport::Ws => drive_ws(&worker).await,
            };
            worker.done.set(true);
            if let Some(md) = market_data {
                // Trades of the last orders may still be on their way.
                tokio::time::sleep(Duration::from_millis(200)).await;
                md.abort();
            }
            let _ = reporter.await;
            worker.flush();
            result
        })
        .await
}

async fn report_every_second(worker: Rc<Worker>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !worker.done.get() {
        tick.tick().await;
        worker.flush();
        worker.e2e.borrow_mut().prune(Instant::now() - Duration::from_secs(10));
    }
}

/// Opens the market-data socket (subscribed to every symbol's trades) and returns the
/// task that reads it.
async fn follow_trades(worker: Rc<Worker>) -> Result<impl std::future::Future<Output = ()>> {
    #[derive(Deserialize)]
    struct TradeMsg<'a> {
        #[serde(borrow)]
        channel: Option<Cow<'a, str>>,
        #[serde(borrow)]
        symbol: Option<Cow<'a, str>>,
        #[serde(borrow)]
        trade_id: Option<Cow<'a, str>>,
    }
    let mut ws = dial_ws(&worker.shared.target, &[]).await?;
    for inst in &worker.shared.market.instruments {
        let op = format!(r#"{{"op":"subscribe","channel":"trades","symbol":"{}"}}"#, inst.name);
        ws.send(Message::text(op)).await?;
    }
    Ok(async move {
        while let Some(Ok(frame)) = ws.next().await {
            let Message::Text(text) = frame else { continue };
            let at = Instant::now();
            let Ok(msg) = serde_json::from_str::<TradeMsg<'_>>(text.as_str()) else { continue };
            let (Some("trades"), Some(symbol), Some(trade)) = (msg.channel.as_deref(), msg.symbol, msg.trade_id) else {
                continue;
            };
            let (Some(&symbol), Ok(trade)) = (worker.shared.symbol_index.get(&*symbol), trade.parse::<u64>()) else {
                continue;
            };
            if let Some(d) = worker.e2e.borrow_mut().stream_trade((symbol, trade), at) {
                worker.sample.borrow_mut().end_to_end(d);
            }
        }
    })
}

/// Connections this thread opens up front: rate × an expected 2 ms answer, at least 4.
fn initial_pool(worker: &Worker) -> usize {
    ((worker.schedule.peak_rate() * 0.002).ceil() as usize + 4).min(per_thread_max(worker))
}

fn per_thread_max(worker: &Worker) -> usize {
    (worker.shared.config.max_connections / worker.shared.config.threads.max(1)).max(1)
}

/// An HTTP connection's mailbox: the ticket it is given and the wake-up that brings it.
#[derive(Default)]
struct Slot {
    ticket: Cell<Option<(Instant, bool)>>,
    wake: tokio::sync::Notify,
}

/// The connections of a thread: the idle ones, and a signal when one frees up.
#[derive(Default)]
struct Pool {
    idle: RefCell<Vec<Rc<Slot>>>,
    freed: tokio::sync::Notify,
    closing: Cell<bool>,
}

/// Hands each ticket, at its time, to an idle connection; opens another connection when
/// none is idle (up to the limit), so the pool sizes itself to rate × latency and load
/// is never silently shed (k6's "dropped iterations" hide exactly this latency). Only
/// when the limit is reached do tickets wait, and their latency still counts from their
/// intended time.
async fn drive_http(worker: &Rc<Worker>) -> Result<()> {
    let pacer = Pacer::new().context("creating the pacing timer")?;
    let pool = Rc::new(Pool::default());
    let mut tasks = tokio::task::JoinSet::new();
    let open = |tasks: &mut tokio::task::JoinSet<()>, first: Option<(Instant, bool)>| {
        worker.conns.set(worker.conns.get() + 1);
        worker.shared.conns.fetch_add(1, Ordering::Relaxed);
        tasks.spawn_local(http_connection(Rc::clone(worker), Rc::clone(&pool), first));
    };
    for _ in 0..initial_pool(worker) {
        open(&mut tasks, None);
    }
    let mut woke = Instant::now();
    while let Some(intended) = worker.peek() {
        if intended > Instant::now() {
            pacer.sleep_until(intended.max(woke + worker.shared.config.timer_resolution)).await?;
            woke = Instant::now();
        }
        worker.take();
        let mut late = false;
        loop {
            let idle = pool.idle.borrow_mut().pop();
            if let Some(slot) = idle {
                slot.ticket.set(Some((intended, late)));
                slot.wake.notify_one();
                break;
            }
            if !late {
                // Let connections whose answers have arrived go idle (this also polls the
                // reactor) before deciding that the pool is too small.
                late = true;
                tokio::task::yield_now().await;
                continue;
            }
            if worker.conns.get() < per_thread_max(worker) {
                open(&mut tasks, Some((intended, late)));
                break;
            }
            pool.freed.notified().await;
        }
    }
    pool.closing.set(true);
    for slot in pool.idle.borrow_mut().drain(..) {
        slot.wake.notify_one();
    }
    while tasks.join_next().await.is_some() {
        // Busy connections see `closing` when they next go idle.
        for slot in pool.idle.borrow_mut().drain(..) {
            slot.wake.notify_one();
        }
    }
    Ok(())
}

async fn http_connection(worker: Rc<Worker>, pool: Rc<Pool>, first: Option<(Instant, bool)>) {
    let config = &worker.shared.config;
    let slot = Rc::new(Slot::default());
    let mut conn =
        tokio::time::timeout(config.timeout, Conn::connect(worker.shared.target.addr)).await.ok().and_then(Result::ok);
    let mut request = Vec::with_capacity(1024);
    let mut placed = Vec::with_capacity(config.batch_size);
    let mut body = String::with_capacity(256 * config.batch_size.max(1));
    let mut next = first;
    loop {
        let (intended, late) = match next.take() {
            Some(ticket) => ticket,
            None => {
                if pool.closing.get() {
                    break;
                }
                pool.idle.borrow_mut().push(Rc::clone(&slot));
                pool.freed.notify_one();
                slot.wake.notified().await;
                match slot.ticket.take() {
                    Some(ticket) => ticket,
                    None => break,
                }
            }
        };
        placed.clear();
        let orders = build_http(&worker, &mut request, &mut body, &mut placed);
        if conn.is_none() {
            conn = tokio::time::timeout(config.timeout, Conn::connect(worker.shared.target.addr))
                .await
                .ok()
                .and_then(Result::ok);
        }
        let sent = Instant::now();
        worker.sent(intended, late, sent);
        let Some(c) = conn.as_mut() else {
            worker.answered(intended, sent, orders);
            worker.outcome(intended, "connect_error");
            // Do not spin through the schedule against a dead server.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let result = tokio::time::timeout(config.timeout, c.roundtrip(&request)).await;
        worker.answered(intended, sent, orders);
        match result {
            Ok(Ok(head)) => {
                worker.answer(head.status, c.body(&head), &placed, intended);
                if c.is_closed() {
                    conn = None;
                }
            }
            Ok(Err(_)) => {
                worker.outcome(intended, "io_error");
                conn = None;
            }
            Err(_) => {
                worker.outcome(intended, "timeout");
                conn = None;
            }
        }
    }
    worker.conns.set(worker.conns.get() - 1);
}

/// Builds the next HTTP request into `request`; returns how many orders it carries.
fn build_http(worker: &Worker, request: &mut Vec<u8>, body: &mut String, placed: &mut Vec<Placed>) -> u64 {
    let config = &worker.shared.config;
    let host = &worker.shared.target.host;
    let mut flow = worker.flow.borrow_mut();
    if config.transport == Transport::Batch {
        let account = flow.pick_account();
        body.clear();
        body.push_str(r#"{"orders":["#);
        for i in 0..config.batch_size {
            if i > 0 {
                body.push(',');
            }
            if let Action::Place { symbol, lots, body: order, .. } = flow.next_place(account) {
                body.push_str(&order);
                placed.push(Placed { account, symbol, lots });
            }
        }
        body.push_str("]}");
        let path = format_args!("/v1/orders/batch{}", worker.shared.query);
        http::write_request(request, "POST", path, host, Some(&worker.keys[account]), Some(body.as_bytes()));
        return config.batch_size as u64;
    }
    let action = flow.next_action();
    let account = action.account();
    let key = Some(worker.keys[account].as_str());
    match action {
        Action::Place { symbol, lots, body, .. } => {
            placed.push(Placed { account, symbol, lots });
            let path = format_args!("/v1/orders{}", worker.shared.query);
            http::write_request(request, "POST", path, host, key, Some(body.as_bytes()));
        }
        Action::Cancel { order_id, .. } => {
            http::write_request(request, "DELETE", format_args!("/v1/orders/{order_id}"), host, key, None);
        }
        Action::Amend { order_id, body, .. } => {
            let path = format_args!("/v1/orders/{order_id}");
            http::write_request(request, "PATCH", path, host, key, Some(body.as_bytes()));
        }
    }
    1
}

/// A request in flight on a WebSocket.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    intended: Instant,
    sent: Instant,
    placed: Option<Placed>,
}

async fn drive_ws(worker: &Rc<Worker>) -> Result<()> {
    let in_flight: Rc<RefCell<FxHashMap<u64, InFlight>>> = Rc::default();
    let mut links = Vec::with_capacity(worker.keys.len());
    let mut readers = tokio::task::JoinSet::new();
    for key in &worker.keys {
        let ws =
            dial_ws(&worker.shared.target, &[("X-API-Key", key)]).await.context("opening an order-entry WebSocket")?;
        let (mut sink, mut stream) = ws.split();
        let (tx, mut rx) = tmpsc::unbounded_channel::<String>();
        // Writer: everything queued goes out in one flush.
        tokio::task::spawn_local(async move {
            while let Some(frame) = rx.recv().await {
                if sink.feed(Message::text(frame)).await.is_err() {
                    return;
                }
                while let Ok(frame) = rx.try_recv() {
                    if sink.feed(Message::text(frame)).await.is_err() {
                        return;
                    }
                }
                if sink.flush().await.is_err() {
                    return;
                }
            }
            let _ = sink.close().await;
        });
        let (w, flights) = (Rc::clone(worker), Rc::clone(&in_flight));
        readers.spawn_local(async move {
            while let Some(Ok(frame)) = stream.next().await {
                if let Message::Text(text) = frame {
                    ws_answer(&w, &flights, text.as_bytes());
                }
            }
        });
        links.push(tx);
        worker.conns.set(worker.conns.get() + 1);
        worker.shared.conns.fetch_add(1, Ordering::Relaxed);
    }
    let pacer = Pacer::new().context("creating the pacing timer")?;
    let mut id: u64 = 0;
    let mut woke = Instant::now();
    while let Some(intended) = worker.take() {
        if intended > Instant::now() {
            pacer.sleep_until(intended.max(woke + worker.shared.config.timer_resolution)).await?;
            woke = Instant::now();
        }
        // Frames are queued, never refused: a ticket is never late for want of a socket.
        let sent = Instant::now();
        worker.sent(intended, false, sent);
        id += 1;
        let action = worker.flow.borrow_mut().next_action();
        let account = action.account();
        let mut frame = String::with_capacity(256);
        let placed = match action {
            Action::Place { symbol, lots, body, .. } => {
                let _ = write!(frame, r#"{{"op":"order.new","request_id":"{id}",{}"#, &body[1..]);
                Some(Placed { account, symbol, lots })
            }
            Action::Cancel { order_id, .. } | Action::Amend { order_id, .. } => {
                let _ = write!(frame, r#"{{"op":"order.cancel","request_id":"{id}","order_id":"{order_id}"}}"#);
                None
            }
        };
        in_flight.borrow_mut().insert(id, InFlight { intended, sent, placed });
        if links[account].send(frame).is_err() {
            in_flight.borrow_mut().remove(&id);
            worker.answered(intended, sent, 1);
            worker.outcome(intended, "connection_closed");
        }
    }
    // Wait for the last answers, up to the timeout.
    let deadline = Instant::now() + worker.shared.config.timeout;
    while !in_flight.borrow().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let lost: Vec<InFlight> = in_flight.borrow_mut().drain().map(|(_, f)| f).collect();
    for f in lost {
        worker.answered(f.intended, f.sent, 1);
        worker.outcome(f.intended, "timeout");
    }
    drop(links);
    readers.abort_all();
    Ok(())
}

fn ws_answer(worker: &Worker, in_flight: &RefCell<FxHashMap<u64, InFlight>>, text: &[u8]) {
    #[derive(Deserialize)]
    struct WsMsg<'a> {
        #[serde(borrow, rename = "type")]
        kind: Option<Cow<'a, str>>,
        #[serde(borrow)]
        request_id: Option<Cow<'a, str>>,
        #[serde(borrow)]
        result: Option<OrderView<'a>>,
        #[serde(borrow)]
        error: Option<ErrorView<'a>>,
    }
    let Ok(msg) = serde_json::from_slice::<WsMsg<'_>>(text) else {
        worker.sample.borrow_mut().outcome("bad_answer");
        return;
    };
    let Some(id) = msg.request_id.as_deref().and_then(|r| r.parse::<u64>().ok()) else {
        if msg.kind.as_deref() == Some("error") {
            let code = msg.error.map_or(Cow::Borrowed("ws_error"), |e| e.code);
            worker.sample.borrow_mut().outcome(&code);
        }
        return;
    };
    let Some(flight) = in_flight.borrow_mut().remove(&id) else { return };
    worker.answered(flight.intended, flight.sent, 1);
    if let Some(e) = msg.error {
        worker.outcome(flight.intended, &e.code);
    } else if let (Some(order), Some(placed)) = (msg.result, flight.placed) {
        worker.placed(&placed, &order, flight.intended);
    }
}
