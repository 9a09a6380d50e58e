//! `subscribers`: N market-data WebSocket subscribers, measuring fan-out.
//!
//! Two delays per message: **delivery delay** for trades (receipt − the trade's
//! `timestamp`, which the gateway stamped when it accepted the taker order: so it spans
//! journal, engine, market-data feed and fan-out; same machine, same clock) and **fan-out
//! spread** for every message (receipt − the first subscriber's receipt of the same
//! message: how unevenly subscribers are served). Book resets (fresh snapshots sent to a
//! lagging subscriber) and `lagged` errors are counted.

use std::borrow::Cow;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use tachyon_proto::Timestamp;
use tokio_tungstenite::tungstenite::Message;

use crate::http::{dial_ws, Target};
use crate::plot::{self, XAxis};
use crate::report;
use crate::stats::{histogram, Percentiles};

/// What to subscribe to.
#[derive(Clone, Debug)]
pub struct SubscriberConfig {
    pub target: String,
    pub subscribers: usize,
    /// `book`, `trades`, `ticker`.
    pub channels: Vec<String>,
    pub symbols: Vec<String>,
    pub duration: Duration,
    pub threads: usize,
}

/// `subscribers.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubscriberReport {
    pub target: String,
    pub subscribers: usize,
    pub connected: usize,
    pub channels: Vec<String>,
    pub symbols: Vec<String>,
    pub duration_secs: f64,
    pub messages: u64,
    pub messages_per_sec: f64,
    /// Fresh book snapshots after the first (a lagging subscriber was re-synced).
    pub book_resyncs: u64,
    /// Error messages (`lagged`, `slow_consumer`, …) by code.
    pub errors: std::collections::BTreeMap<String, u64>,
    /// Trade timestamp → receipt.
    pub trade_delay_ms: Percentiles,
    /// First subscriber's receipt → this subscriber's receipt.
    pub fanout_spread_ms: Percentiles,
}

/// First receipt of each message, shared by all subscribers (keyed by channel, symbol
/// and sequence).
#[derive(Debug, Default)]
struct SpreadBook {
    first: Mutex<FxHashMap<(u8, u16, u64), Instant>>,
}

impl SpreadBook {
    /// The spread of this receipt behind the first receipt of the same message.
    fn receipt(&self, key: (u8, u16, u64), at: Instant) -> Duration {
        let mut first = self.first.lock();
        if first.len() > 1_000_000 {
            let horizon = at.checked_sub(Duration::from_secs(5)).unwrap_or(at);
            first.retain(|_, t| *t >= horizon);
        }
        at.saturating_duration_since(*first.entry(key).or_insert(at))
    }
}

#[derive(Debug)]
struct Tally {
    delay: Histogram<u64>,
    spread: Histogram<u64>,
    messages: u64,
    resyncs: u64,
    errors: std::collections::BTreeMap<String, u64>,
    connected: bool,
}

/// Runs the subscribers for the configured duration and writes the report to `out`.
///
/// # Errors
/// A bad target or I/O errors writing the report.
pub fn run(config: &SubscriberConfig, out: &Path) -> Result<SubscriberReport> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(config.threads.max(1)).enable_all().build()?;
    let tallies = rt.block_on(async {
        let target = Target::resolve(&config.target).await?;
        let book = Arc::new(SpreadBook::default());
        let deadline = Instant::now() + config.duration;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..config.subscribers {
            tasks.spawn(subscriber(target.clone(), config.clone(), Arc::clone(&book), deadline));
        }
        let mut tallies = Vec::with_capacity(config.subscribers);
        while let Some(t) = tasks.join_next().await {
            tallies.push(t.context("a subscriber task failed")?);
        }
        anyhow::Ok(tallies)
    })?;
    let (mut delay, mut spread) = (histogram(), histogram());
    let mut report = SubscriberReport {
        target: config.target.clone(),
        subscribers: config.subscribers,
        connected: 0,
        channels: config.channels.clone(),
        symbols: config.symbols.clone(),
        duration_secs: config.duration.as_secs_f64(),
        messages: 0,
        messages_per_sec: 0.0,
        book_resyncs: 0,
        errors: Default::default(),
        trade_delay_ms: Percentiles::default(),
        fanout_spread_ms: Percentiles::default(),
    };
    for t in &tallies {
        let _ = delay.add(&t.delay);
        let _ = spread.add(&t.spread);
        report.messages += t.messages;
        report.book_resyncs += t.resyncs;
        report.connected += usize::from(t.connected);
        for (code, n) in &t.errors {
            *report.errors.entry(code.clone()).or_insert(0) += n;
        }
    }
    report.messages_per_sec = report.messages as f64 / report.duration_secs.max(1e-9);
    report.trade_delay_ms = Percentiles::of(&delay);
    report.fanout_spread_ms = Percentiles::of(&spread);
    fs::create_dir_all(out)?;
    fs::write(out.join("subscribers.json"), serde_json::to_string_pretty(&report)? + "\n")?;
    fs::write(out.join("trade_delay.hgrm"), report::hgrm(&delay))?;
    fs::write(out.join("fanout_spread.hgrm"), report::hgrm(&spread))?;
    let svg = plot::chart(
        &format!("Market-data fan-out to {} subscribers", config.subscribers),
        "percentile",
        "delay (ms)",
        XAxis::Percentile { nines: 4 },
        &[
            plot::percentile_series("trade delivery delay", &delay, 4),
            plot::percentile_series("fan-out spread", &spread, 4),
        ],
        None,
    );
    let json = serde_json::to_string_pretty(&report)?;
    fs::write(out.join("subscribers.svg"), &svg)?;
    fs::write(
        out.join("report.html"),
        report::html_page("tachyon-loadtest subscribers", &table(&report), &[&svg], &json),
    )?;
    Ok(report)
}

/// The report as a table.
pub fn table(r: &SubscriberReport) -> String {
    let p = |p: &Percentiles| format!("p50 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3} ms", p.p50, p.p99, p.p999, p.max);
    let errors: Vec<String> = r.errors.iter().map(|(c, n)| format!("{c}={n}")).collect();
    format!(
        "{} of {} subscribers connected to {} on {} × {}\n\
         messages {} ({:.0}/s across all subscribers), book resyncs {}, errors {}\n\
         trade delivery delay: {}\nfan-out spread:       {}\n",
        r.connected,
        r.subscribers,
        r.channels.join(","),
        r.symbols.len(),
        r.target,
        r.messages,
        r.messages_per_sec,
        r.book_resyncs,
        if errors.is_empty() { "none".to_owned() } else { errors.join(" ") },
        p(&r.trade_delay_ms),
        p(&r.fanout_spread_ms),
    )
}

async fn subscriber(target: Target, config: SubscriberConfig, book: Arc<SpreadBook>, deadline: Instant) -> Tally {
    #[derive(Deserialize)]
    struct Msg<'a> {
        #[serde(borrow)]
        channel: Option<Cow<'a, str>>,
        #[serde(borrow, rename = "type")]
        kind: Option<Cow<'a, str>>,
        #[serde(borrow)]
        symbol: Option<Cow<'a, str>>,
        sequence: Option<u64>,
        #[serde(borrow)]
        timestamp: Option<Cow<'a, str>>,
        error: Option<ErrorView<'a>>,
    }
    #[derive(Deserialize)]
    struct ErrorView<'a> {
        #[serde(borrow)]
        code: Cow<'a, str>,
    }
    let mut tally = Tally {
        delay: histogram(),
        spread: histogram(),
        messages: 0,
        resyncs: 0,
        errors: Default::default(),
        connected: false,
    };
    let Ok(Ok(mut ws)) = tokio::time::timeout_at(deadline.into(), dial_ws(&target, &[])).await else {
        *tally.errors.entry("connect_error".to_owned()).or_insert(0) += 1;
        return tally;
    };
    tally.connected = true;
    for channel in &config.channels {
        for symbol in &config.symbols {
            let op = format!(r#"{{"op":"subscribe","channel":"{channel}","symbol":"{symbol}"}}"#);
            if ws.send(Message::text(op)).await.is_err() {
                return tally;
            }
        }
    }
    let mut snapshots_seen = std::collections::HashSet::new();
    while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline.into(), ws.next()).await {
        let Message::Text(text) = frame else { continue };
        let at = Instant::now();
        let Ok(msg) = serde_json::from_str::<Msg<'_>>(text.as_str()) else { continue };
        if msg.kind.as_deref() == Some("error") {
            let code = msg.error.map_or_else(|| "error".to_owned(), |e| e.code.into_owned());
            *tally.errors.entry(code).or_insert(0) += 1;
            continue;
        }
        let (Some(channel), Some(symbol)) = (msg.channel.as_deref(), msg.symbol.as_deref()) else { continue };
        tally.messages += 1;
        let channel_id = match channel {
            "book" => 0u8,
            "trades" => 1,
            _ => 2,
        };
        if channel == "book" && msg.kind.as_deref() == Some("snapshot") && !snapshots_seen.insert(symbol.to_owned()) {
            tally.resyncs += 1;
        }
        let symbol_id = config.symbols.iter().position(|s| s == symbol).unwrap_or(0) as u16;
        if let Some(seq) = msg.sequence {
            // Snapshots are per subscriber; only shared messages have a spread.
            if msg.kind.as_deref() != Some("snapshot") {
                let spread = book.receipt((channel_id, symbol_id, seq), at);
                let _ = tally.spread.record(u64::try_from(spread.as_micros()).unwrap_or(u64::MAX).max(1));
            }
        }
        if channel == "trades" {
            if let Some(ts) = msg.timestamp.as_deref().and_then(Timestamp::parse_rfc3339) {
                let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos();
                let delay_us = (i128::try_from(now).unwrap_or(i128::MAX) - i128::from(ts.0)) / 1000;
                let _ = tally.delay.record(u64::try_from(delay_us).unwrap_or(0).max(1));
            }
        }
    }
    let _ = ws.close(None).await;
    tally
}
