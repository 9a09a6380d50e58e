//! Public market data kept from `tachyon.marketdata`: per symbol an L2 book with its
//! sequence, recent trades, the ticker and one-minute candles, plus a broadcast channel
//! that carries every change, already rendered as JSON text (rendered once, sent to every
//! subscriber).
//!
//! The book's `sequence` is the engine's per-symbol public sequence, so REST and the
//! WebSocket share one counter. A subscriber takes the snapshot and its receiver under
//! the same lock as the feed's updates, so the first update it gets is exactly the
//! snapshot's sequence + 1.

mod candles;
mod state;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;

use parking_lot::Mutex;
use tachyon_proto::api::{Book, Candle, PublicTrade, Ticker};
use tachyon_proto::wire::ShardOutput;
use tachyon_proto::{Event, SymbolId, Timestamp};
use tokio::sync::broadcast;

pub use candles::Interval;
use state::MarketState;

use crate::symbols::Symbols;

/// What a market-data message is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    Book,
    Trades,
    Ticker,
}

/// One message for subscribers, rendered once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MdMessage {
    pub channel: Channel,
    /// The book sequence it belongs to.
    pub sequence: u64,
    /// The frame's text, shared by every subscriber (a clone is a reference count).
    pub text: Utf8Bytes,
}

struct SymbolMarket {
    state: Mutex<MarketState>,
    tx: broadcast::Sender<Arc<MdMessage>>,
}

/// All symbols' market data (see the module docs).
pub struct MarketData {
    symbols: Arc<Symbols>,
    markets: HashMap<SymbolId, SymbolMarket>,
    applied: Mutex<HashMap<u32, u64>>,
}

impl std::fmt::Debug for MarketData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MarketData").field("symbols", &self.markets.len()).finish()
    }
}

impl MarketData {
    /// Empty books for every symbol; each broadcast channel holds `channel_capacity`
    /// messages for slow subscribers before they lag.
    pub fn new(symbols: Arc<Symbols>, channel_capacity: usize) -> Self {
        let markets = symbols
            .all()
            .iter()
            .map(|spec| {
                let (tx, _) = broadcast::channel(channel_capacity.max(16));
                (spec.id, SymbolMarket { state: Mutex::new(MarketState::new(spec.clone())), tx })
            })
            .collect();
        Self { symbols, markets, applied: Mutex::new(HashMap::new()) }
    }

    /// Applies one market-data record; returns `false` for a duplicate.
    pub fn apply(&self, output: &ShardOutput) -> bool {
        {
            let mut applied = self.applied.lock();
            let last = applied.entry(output.partition).or_insert(0);
            if output.seq <= *last {
                return false;
            }
            *last = output.seq;
        }
        // Events of one symbol are applied together, in the order the command touched them.
        let mut touched: Vec<SymbolId> = Vec::new();
        for event in &output.events {
            let symbol = match event {
                Event::Trade(t) => t.symbol,
                Event::Level(l) => l.symbol,
                Event::Bbo(b) => b.symbol,
                _ => continue,
            };
            if !touched.contains(&symbol) {
                touched.push(symbol);
            }
        }
        for symbol in touched {
            let Some(market) = self.markets.get(&symbol) else {
                tracing::warn!(symbol = symbol.0, "market data for an unknown symbol");
                continue;
            };
            let mut state = market.state.lock();
            for message in state.apply(output.events.iter().filter(|e| event_symbol(e) == Some(symbol))) {
                // No receivers is fine: nobody subscribed.
                let _ = market.tx.send(Arc::new(message));
            }
        }
        true
    }

    fn market(&self, name: &str) -> Option<&SymbolMarket> {
        self.markets.get(&self.symbols.by_name(name)?.id)
    }

    /// `GET /v1/book/{symbol}`.
    pub fn book(&self, symbol: &str, depth: usize) -> Option<Book> {
        Some(self.market(symbol)?.state.lock().book(depth))
    }

    /// `GET /v1/trades/{symbol}`, newest first.
    pub fn trades(&self, symbol: &str, limit: usize) -> Option<Vec<PublicTrade>> {
        Some(self.market(symbol)?.state.lock().trades(limit))
    }

    /// `GET /v1/ticker/{symbol}`.
    pub fn ticker(&self, symbol: &str, now: Timestamp) -> Option<Ticker> {
        Some(self.market(symbol)?.state.lock().ticker(now))
    }

    /// `GET /v1/candles/{symbol}`, newest first.
    pub fn candles(&self, symbol: &str, interval: Interval, limit: usize) -> Option<Vec<Candle>> {
        Some(self.market(symbol)?.state.lock().candles(interval, limit))
    }

    /// A receiver of every message of `symbol`, and (for the book channel) the snapshot
    /// it continues from, taken atomically.
    pub fn subscribe(
        &self,
        symbol: &str,
        with_snapshot: bool,
    ) -> Option<(Option<MdMessage>, broadcast::Receiver<Arc<MdMessage>>)> {
        let market = self.market(symbol)?;
        let state = market.state.lock();
        let snapshot = with_snapshot.then(|| state.snapshot_message());
        Some((snapshot, market.tx.subscribe()))
    }

    /// Subscribers currently attached, over all symbols.
    pub fn subscribers(&self) -> usize {
        self.markets.values().map(|m| m.tx.receiver_count()).sum()
    }
}

fn event_symbol(event: &Event) -> Option<SymbolId> {
    match event {
        Event::Trade(t) => Some(t.symbol),
        Event::Level(l) => Some(l.symbol),
        Event::Bbo(b) => Some(b.symbol),
        _ => None,
    }
}
