//! One symbol's market state and the messages its changes produce.

use std::collections::{BTreeMap, VecDeque};

use serde_json::json;
use tachyon_proto::api::{Book, Candle, PublicTrade, Ticker};
use tachyon_proto::event::PriceLevel;
use tachyon_proto::{Event, Price, Qty, Side, SymbolSpec, Timestamp, TradeId};

use super::candles::{Candles, Interval};
use super::{Channel, MdMessage};

/// Trades kept for `GET /v1/trades`.
const KEEP_TRADES: usize = 1_000;

#[derive(Clone, Copy, Debug)]
struct TradeRecord {
    trade_id: TradeId,
    price: Price,
    qty: Qty,
    taker_side: Side,
    timestamp: Timestamp,
    sequence: u64,
}

pub(super) struct MarketState {
    spec: SymbolSpec,
    sequence: u64,
    bids: BTreeMap<Price, Qty>,
    asks: BTreeMap<Price, Qty>,
    trades: VecDeque<TradeRecord>,
    best_bid: Option<PriceLevel>,
    best_ask: Option<PriceLevel>,
    last_price: Option<Price>,
    candles: Candles,
}

impl MarketState {
    pub(super) fn new(spec: SymbolSpec) -> Self {
        Self {
            spec,
            sequence: 0,
            bids: BTreeMap::new(),
            asks: BTreeMap::new(),
            trades: VecDeque::new(),
            best_bid: None,
            best_ask: None,
            last_price: None,
            candles: Candles::default(),
        }
    }

    /// Applies one command's events for this symbol; returns the messages to broadcast:
    /// its trades, then one book update, then the ticker if the best prices changed.
    pub(super) fn apply<'a>(&mut self, events: impl Iterator<Item = &'a Event>) -> Vec<MdMessage> {
        let mut messages = Vec::new();
        let mut changes = Vec::new();
        let mut ticker_changed = false;
        for event in events {
            match event {
                Event::Trade(t) => {
                    let record = TradeRecord {
                        trade_id: t.trade_id,
                        price: t.price,
                        qty: t.qty,
                        taker_side: t.taker_side,
                        timestamp: t.timestamp,
                        sequence: t.seq,
                    };
                    self.trades.push_front(record);
                    self.trades.truncate(KEEP_TRADES);
                    self.last_price = Some(t.price);
                    self.candles.add(t.price, t.qty, t.timestamp);
                    messages.push(self.trade_message(&record));
                }
                Event::Level(l) => {
                    self.sequence = l.seq;
                    let side = match l.side {
                        Side::Buy => &mut self.bids,
                        Side::Sell => &mut self.asks,
                    };
                    if l.qty.is_zero() {
                        side.remove(&l.price);
                    } else {
                        side.insert(l.price, l.qty);
                    }
                    changes.push(json!([l.side, self.spec.format_price(l.price), self.spec.format_qty(l.qty)]));
                }
                Event::Bbo(b) => {
                    self.sequence = self.sequence.max(b.seq);
                    self.best_bid = b.bid;
                    self.best_ask = b.ask;
                    ticker_changed = true;
                }
                _ => {}
            }
        }
        if !changes.is_empty() {
            let text = json!({"channel": "book", "type": "update", "symbol": self.spec.name,
                              "sequence": self.sequence, "changes": changes});
            messages.push(MdMessage { channel: Channel::Book, sequence: self.sequence, text: text.to_string().into() });
        }
        if ticker_changed {
            let mut ticker = serde_json::to_value(self.ticker(Timestamp::now())).unwrap_or_default();
            ticker["channel"] = json!("ticker");
            messages.push(MdMessage {
                channel: Channel::Ticker,
                sequence: self.sequence,
                text: ticker.to_string().into(),
            });
        }
        messages
    }

    fn trade_message(&self, t: &TradeRecord) -> MdMessage {
        let text = json!({"channel": "trades", "symbol": self.spec.name, "trade_id": t.trade_id.0.to_string(),
                          "price": self.spec.format_price(t.price), "quantity": self.spec.format_qty(t.qty),
                          "taker_side": t.taker_side, "timestamp": t.timestamp.to_rfc3339(), "sequence": t.sequence});
        MdMessage { channel: Channel::Trades, sequence: t.sequence, text: text.to_string().into() }
    }

    fn levels<'a>(&self, levels: impl Iterator<Item = (&'a Price, &'a Qty)>, depth: usize) -> Vec<[String; 2]> {
        levels.take(depth).map(|(p, q)| [self.spec.format_price(*p), self.spec.format_qty(*q)]).collect()
    }

    pub(super) fn book(&self, depth: usize) -> Book {
        Book {
            symbol: self.spec.name.clone(),
            sequence: self.sequence,
            bids: self.levels(self.bids.iter().rev(), depth),
            asks: self.levels(self.asks.iter(), depth),
        }
    }

    /// The book channel's snapshot: every level.
    pub(super) fn snapshot_message(&self) -> MdMessage {
        let book = self.book(usize::MAX);
        let text = json!({"channel": "book", "type": "snapshot", "symbol": book.symbol, "sequence": book.sequence,
                          "bids": book.bids, "asks": book.asks});
        MdMessage { channel: Channel::Book, sequence: self.sequence, text: text.to_string().into() }
    }

    pub(super) fn trades(&self, limit: usize) -> Vec<PublicTrade> {
        self.trades
            .iter()
            .take(limit)
            .map(|t| PublicTrade {
                trade_id: t.trade_id.0.to_string(),
                price: self.spec.format_price(t.price),
                quantity: self.spec.format_qty(t.qty),
                taker_side: t.taker_side,
                timestamp: t.timestamp.to_rfc3339(),
            })
            .collect()
    }

    pub(super) fn ticker(&self, now: Timestamp) -> Ticker {
        Ticker {
            symbol: self.spec.name.clone(),
            best_bid: self.best_bid.map(|l| self.spec.format_price(l.price)),
            best_bid_quantity: self.best_bid.map(|l| self.spec.format_qty(l.qty)),
            best_ask: self.best_ask.map(|l| self.spec.format_price(l.price)),
            best_ask_quantity: self.best_ask.map(|l| self.spec.format_qty(l.qty)),
            last_price: self.last_price.map(|p| self.spec.format_price(p)),
            volume_24h: self.spec.format_qty(self.candles.volume_24h(now)),
            sequence: self.sequence,
        }
    }

    pub(super) fn candles(&self, interval: Interval, limit: usize) -> Vec<Candle> {
        self.candles.render(interval, limit, &self.spec)
    }
}
