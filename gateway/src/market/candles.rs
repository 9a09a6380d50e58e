//! Candles: one-minute buckets built from trades, aggregated to longer intervals on read.

use std::collections::VecDeque;

use tachyon_proto::api::Candle;
use tachyon_proto::{Price, Qty, SymbolSpec, Timestamp};

const NANOS_PER_MINUTE: i64 = 60_000_000_000;
/// One week of one-minute buckets.
const KEEP_MINUTES: usize = 7 * 24 * 60;

/// A candle interval of `GET /v1/candles`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    minutes: i64,
}

impl Interval {
    /// Parses `1m`, `5m`, `15m`, `1h`, `4h`, `1d`.
    pub fn parse(s: &str) -> Option<Self> {
        let minutes = match s {
            "1m" => 1,
            "5m" => 5,
            "15m" => 15,
            "1h" => 60,
            "4h" => 240,
            "1d" => 1440,
            _ => return None,
        };
        Some(Self::minutes(minutes))
    }

    /// An interval of `minutes` (a width `parse` accepts).
    pub(crate) const fn minutes(minutes: i64) -> Self {
        Self { minutes }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Bucket {
    minute: i64,
    open: Price,
    high: Price,
    low: Price,
    close: Price,
    volume: Qty,
}

/// One symbol's one-minute candles, oldest first.
#[derive(Clone, Debug, Default)]
pub struct Candles {
    buckets: VecDeque<Bucket>,
}

impl Candles {
    /// Adds a trade. Trades arrive in time order per symbol (the gateway stamps them
    /// before the single engine thread sees them); a late one joins the newest bucket.
    pub fn add(&mut self, price: Price, qty: Qty, at: Timestamp) {
        let minute = at.0.div_euclid(NANOS_PER_MINUTE);
        match self.buckets.back_mut() {
            Some(b) if b.minute >= minute => {
                b.high = b.high.max(price);
                b.low = b.low.min(price);
                b.close = price;
                b.volume = Qty(b.volume.0 + qty.0);
            }
            _ => {
                self.buckets.push_back(Bucket {
                    minute,
                    open: price,
                    high: price,
                    low: price,
                    close: price,
                    volume: qty,
                });
                if self.buckets.len() > KEEP_MINUTES {
                    self.buckets.pop_front();
                }
            }
        }
    }

    /// Volume of the trades in the 24 hours before `now`.
    pub fn volume_24h(&self, now: Timestamp) -> Qty {
        let from = now.0.div_euclid(NANOS_PER_MINUTE) - 24 * 60;
        Qty(self.buckets.iter().rev().take_while(|b| b.minute > from).map(|b| b.volume.0).sum())
    }

    /// Up to `limit` candles of `interval`, newest first (intervals with no trade are left out).
    pub fn render(&self, interval: Interval, limit: usize, spec: &SymbolSpec) -> Vec<Candle> {
        let mut out: Vec<(i64, Bucket)> = Vec::new();
        for b in self.buckets.iter().rev() {
            let start = b.minute.div_euclid(interval.minutes) * interval.minutes;
            match out.last_mut() {
                Some((s, agg)) if *s == start => {
                    // Walking backwards: this bucket is earlier, so it sets the open.
                    agg.open = b.open;
                    agg.high = agg.high.max(b.high);
                    agg.low = agg.low.min(b.low);
                    agg.volume = Qty(agg.volume.0 + b.volume.0);
                }
                _ => {
                    if out.len() == limit {
                        break;
                    }
                    out.push((start, *b));
                }
            }
        }
        out.into_iter()
            .map(|(start, b)| Candle {
                start: Timestamp(start * NANOS_PER_MINUTE).to_rfc3339(),
                open: spec.format_price(b.open),
                high: spec.format_price(b.high),
                low: spec.format_price(b.low),
                close: spec.format_price(b.close),
                volume: spec.format_qty(b.volume),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tachyon_proto::symbol::default_symbols;

    #[test]
    fn buckets_aggregate_to_longer_intervals_newest_first() {
        let spec = default_symbols().remove(0);
        let mut c = Candles::default();
        let minute = |m: i64, s: i64| Timestamp(m * NANOS_PER_MINUTE + s * 1_000_000_000);
        c.add(Price(100), Qty(1), minute(10, 1));
        c.add(Price(120), Qty(2), minute(10, 30));
        c.add(Price(90), Qty(3), minute(11, 0));
        c.add(Price(95), Qty(4), minute(15, 0));
        let one = c.render(Interval::parse("1m").expect("valid"), 10, &spec);
        assert_eq!(one.len(), 3);
        assert_eq!((one[2].open.as_str(), one[2].high.as_str(), one[2].close.as_str()), ("1.00", "1.20", "1.20"));
        let five = c.render(Interval::parse("5m").expect("valid"), 10, &spec);
        assert_eq!(five.len(), 2);
        assert_eq!(
            (five[1].open.as_str(), five[1].high.as_str(), five[1].low.as_str(), five[1].close.as_str()),
            ("1.00", "1.20", "0.90", "0.90")
        );
        assert_eq!(five[1].volume, "0.0006");
        assert_eq!(c.render(Interval::parse("5m").expect("valid"), 1, &spec).len(), 1);
        assert_eq!(c.volume_24h(minute(15, 10)), Qty(10));
        assert_eq!(c.volume_24h(minute(11 + 24 * 60, 0)), Qty(4));
        assert!(Interval::parse("2m").is_none());
    }
}
