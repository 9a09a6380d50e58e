//! Server-side latency per hop, for capacity planners.
//!
//! Every hop is measured from the moment the gateway stamped the command (its
//! `timestamp`), so the hops add up along the path of one order: durable on the backbone
//! → picked up by the engine → answered → published as market data. Engine processing is
//! the exception: the time inside the matching core alone. Hops that cross processes
//! compare wall clocks (NTP-synchronised hosts in production; one clock in-process).
//!
//! HdrHistograms (nanoseconds, 3 significant digits) are the source of truth; `/metrics`
//! exports real histogram buckets derived from them (summaries from a metrics library
//! were measured 10–30% off the exact quantiles), and the admin endpoint dumps the exact
//! percentiles with each histogram in HdrHistogram's compressed, base64 form.

use std::fmt::Write as _;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use parking_lot::Mutex;

use crate::Timestamp;

/// A measured hop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hop {
    /// Gateway receipt → durable on the backbone (the `?response=ack` answer).
    Ack,
    /// Gateway receipt → the engine shard takes the command.
    EngineIn,
    /// Inside the matching core: processing one command.
    Engine,
    /// Gateway receipt → the engine's report reaches the waiting request.
    Reply,
    /// Gateway receipt → the resulting market data is published to subscribers.
    MarketData,
}

impl Hop {
    pub const ALL: [Hop; 5] = [Hop::Ack, Hop::EngineIn, Hop::Engine, Hop::Reply, Hop::MarketData];

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            Hop::Ack => "ack",
            Hop::EngineIn => "engine_in",
            Hop::Engine => "engine",
            Hop::Reply => "reply",
            Hop::MarketData => "marketdata",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Hop::Ack => "gateway receipt to durable on the backbone",
            Hop::EngineIn => "gateway receipt to taken by the engine shard",
            Hop::Engine => "matching-core processing of one command",
            Hop::Reply => "gateway receipt to the engine's report at the gateway",
            Hop::MarketData => "gateway receipt to market data published to subscribers",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Largest latency recorded exactly: one minute.
const MAX_NANOS: u64 = 60_000_000_000;

/// Bucket bounds of the Prometheus export, in seconds.
const BUCKETS: &[f64] = &[
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_NANOS, 3).expect("static bounds are valid")
}

/// The hop histograms of one process (shared by its gateway and shards).
#[derive(Debug)]
pub struct Latency {
    hops: [Mutex<Histogram<u64>>; 5],
    since: Mutex<Timestamp>,
}

impl Default for Latency {
    fn default() -> Self {
        Self { hops: std::array::from_fn(|_| Mutex::new(histogram())), since: Mutex::new(Timestamp::now()) }
    }
}

impl Latency {
    /// Records a duration in nanoseconds.
    pub fn record(&self, hop: Hop, nanos: u64) {
        self.hops[hop.index()].lock().saturating_record(nanos.clamp(1, MAX_NANOS));
    }

    /// Records the time from `stamped` (the gateway's receipt) until now.
    pub fn since(&self, hop: Hop, stamped: Timestamp) {
        let nanos = Timestamp::now().0.saturating_sub(stamped.0);
        // A clock step backwards would give a negative time: count it as the minimum.
        self.record(hop, u64::try_from(nanos).unwrap_or(0));
    }

    /// Records the time from each of `stamps` until one reading of the clock now, under
    /// one lock (a batch's hop).
    pub fn since_all(&self, hop: Hop, stamps: impl IntoIterator<Item = Timestamp>) {
        let now = Timestamp::now().0;
        let mut histogram = self.hops[hop.index()].lock();
        for stamped in stamps {
            let nanos = u64::try_from(now.saturating_sub(stamped.0)).unwrap_or(0);
            histogram.saturating_record(nanos.clamp(1, MAX_NANOS));
        }
    }

    /// Records `nanos` `count` times under one lock.
    pub fn record_n(&self, hop: Hop, nanos: u64, count: u64) {
        if count > 0 {
            let _ = self.hops[hop.index()].lock().record_n(nanos.clamp(1, MAX_NANOS), count);
        }
    }

    /// Forgets everything recorded (for a fresh measurement).
    pub fn reset(&self) {
        for h in &self.hops {
            h.lock().reset();
        }
        *self.since.lock() = Timestamp::now();
    }

    /// A copy of one hop's histogram.
    pub fn histogram(&self, hop: Hop) -> Histogram<u64> {
        self.hops[hop.index()].lock().clone()
    }

    /// Appends the hops as a Prometheus histogram (`tachyon_hop_latency_seconds`).
    pub fn render_prometheus(&self, out: &mut String) {
        let name = "tachyon_hop_latency_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Latency per hop from the gateway's receipt of a command (engine: processing only). \
             Exact percentiles: GET /v1/admin/latency.\n# TYPE {name} histogram"
        );
        for hop in Hop::ALL {
            let h = self.histogram(hop);
            let label = hop.name();
            for le in BUCKETS {
                let bound = (le * 1e9) as u64;
                let count = if h.is_empty() { 0 } else { h.count_between(0, bound) };
                let _ = writeln!(out, "{name}_bucket{{hop=\"{label}\",le=\"{le}\"}} {count}");
            }
            let _ = writeln!(out, "{name}_bucket{{hop=\"{label}\",le=\"+Inf\"}} {}", h.len());
            let _ = writeln!(out, "{name}_sum{{hop=\"{label}\"}} {}", h.mean() * h.len() as f64 / 1e9);
            let _ = writeln!(out, "{name}_count{{hop=\"{label}\"}} {}", h.len());
        }
    }

    /// The exact percentiles (microseconds) and each histogram (HdrHistogram V2,
    /// deflate-compressed, base64: what HdrHistogram's log tools read), as JSON.
    pub fn dump(&self) -> serde_json::Value {
        let mut hops = serde_json::Map::new();
        for hop in Hop::ALL {
            let h = self.histogram(hop);
            let us = |q: f64| if h.is_empty() { 0.0 } else { h.value_at_quantile(q) as f64 / 1e3 };
            let mut encoded = Vec::new();
            let hdr = match V2DeflateSerializer::new().serialize(&h, &mut encoded) {
                Ok(_) => STANDARD.encode(&encoded),
                Err(_) => String::new(),
            };
            hops.insert(
                hop.name().to_owned(),
                serde_json::json!({
                    "description": hop.description(),
                    "count": h.len(),
                    "mean": h.mean() / 1e3,
                    "p50": us(0.5), "p90": us(0.9), "p99": us(0.99), "p999": us(0.999), "p9999": us(0.9999),
                    "max": h.max() as f64 / 1e3,
                    "hdr": hdr,
                }),
            );
        }
        serde_json::json!({
            "unit": "microseconds",
            "since": self.since.lock().to_rfc3339(),
            "hops": hops,
        })
    }
}

/// A histogram in HdrHistogram's percentile distribution format (`.hgrm`, what its
/// plotter reads), values divided by 1,000: nanoseconds shown in µs, microseconds in ms.
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{:>12} {:>14} {:>10} {:>14}\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)");
    if h.is_empty() {
        return s;
    }
    let mut total = 0;
    for v in h.iter_quantiles(5) {
        let q = v.quantile_iterated_to();
        let value = v.value_iterated_to() as f64 / 1000.0;
        total += v.count_since_last_iteration();
        if q < 1.0 {
            let _ = writeln!(s, "{value:>12.3} {q:>14.12} {total:>10} {:>14.2}", 1.0 / (1.0 - q));
        } else {
            let _ = writeln!(s, "{value:>12.3} {q:>14.12} {total:>10}");
        }
    }
    let _ = writeln!(s, "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]", h.mean() / 1000.0, h.stdev() / 1000.0);
    let _ = writeln!(s, "#[Max     = {:>12.3}, Total count    = {:>12}]", h.max() as f64 / 1000.0, h.len());
    let _ = writeln!(s, "#[Buckets = {:>12}, SubBuckets     = {:>12}]", h.buckets(), h.distinct_values());
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::serialization::Deserializer;

    #[test]
    fn records_exports_buckets_and_dumps_exact_percentiles() {
        let latency = Latency::default();
        for us in 1..=1000u64 {
            latency.record(Hop::Reply, us * 1000);
        }
        latency.record(Hop::Engine, 700);
        let mut text = String::new();
        latency.render_prometheus(&mut text);
        assert!(text.contains("# TYPE tachyon_hop_latency_seconds histogram"));
        // 500 of the 1,000 replies took at most 0.5 ms.
        assert!(text.contains("tachyon_hop_latency_seconds_bucket{hop=\"reply\",le=\"0.0005\"} 500"), "{text}");
        assert!(text.contains("tachyon_hop_latency_seconds_bucket{hop=\"reply\",le=\"+Inf\"} 1000"));
        assert!(text.contains("tachyon_hop_latency_seconds_count{hop=\"engine\"} 1"));
        assert!(text.contains("tachyon_hop_latency_seconds_count{hop=\"ack\"} 0"));

        let dump = latency.dump();
        let reply = &dump["hops"]["reply"];
        assert_eq!(reply["count"], 1000);
        let p99 = reply["p99"].as_f64().expect("number");
        assert!((p99 - 990.0).abs() < 1.0, "{p99}");
        let bytes = STANDARD.decode(reply["hdr"].as_str().expect("string")).expect("base64");
        let decoded: Histogram<u64> = Deserializer::new().deserialize(&mut bytes.as_slice()).expect("a V2 histogram");
        assert_eq!(decoded.len(), 1000);

        latency.reset();
        assert_eq!(latency.dump()["hops"]["reply"]["count"], 0);
    }

    #[test]
    fn time_since_a_stamp_is_never_negative() {
        let latency = Latency::default();
        latency.since(Hop::Ack, Timestamp(Timestamp::now().0 + 1_000_000_000));
        assert_eq!(latency.histogram(Hop::Ack).len(), 1);
    }
}
