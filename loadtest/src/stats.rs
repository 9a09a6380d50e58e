//! What a run records: latency histograms (microseconds) and outcome counts.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Largest latency recorded exactly (an hour); longer ones are clamped.
const MAX_MICROS: u64 = 3_600_000_000;

/// An empty latency histogram: 1 µs to an hour at 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("static bounds are valid")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).clamp(1, MAX_MICROS)
}

/// Error codes that are ordinary outcomes of a busy market rather than failures: a cancel
/// or amend that raced a fill.
pub const BENIGN_CODES: &[&str] = &["order_not_open"];

/// One interval's (or a whole run's) measurements.
#[derive(Clone, Debug)]
pub struct Sample {
    /// From the intended send time to the answer (coordinated-omission corrected).
    pub latency: Histogram<u64>,
    /// From the actual send to the answer (what an uncorrected tool reports).
    pub service: Histogram<u64>,
    /// How late the generator itself sent requests it was free to send on time.
    pub send_lag: Histogram<u64>,
    /// From the intended send time of an order to its trade on the market-data stream.
    pub e2e: Histogram<u64>,
    /// Requests answered (or failed).
    pub requests: u64,
    /// Orders, cancels and amends carried by those requests.
    pub orders: u64,
    /// Trades our orders took on arrival (taker fills in the answers).
    pub trades: u64,
    /// Requests that failed: transport errors, timeouts and error answers not in
    /// [`BENIGN_CODES`].
    pub errors: u64,
    /// Requests taken from the schedule after their intended time (no free connection).
    pub late: u64,
    /// Non-success outcomes by code (HTTP/WS error codes, `io_error`, `timeout`, ...).
    pub codes: BTreeMap<String, u64>,
    /// Send time of the first and last request recorded.
    pub first_send: Option<Instant>,
    pub last_send: Option<Instant>,
}

impl Default for Sample {
    fn default() -> Self {
        Self {
            latency: histogram(),
            service: histogram(),
            send_lag: histogram(),
            e2e: histogram(),
            requests: 0,
            orders: 0,
            trades: 0,
            errors: 0,
            late: 0,
            codes: BTreeMap::new(),
            first_send: None,
            last_send: None,
        }
    }
}

impl Sample {
    /// Records one answered request: intended and actual send time, answer time.
    pub fn answered(&mut self, intended: Instant, sent: Instant, done: Instant, orders: u64) {
        self.latency.saturating_record(micros(done.saturating_duration_since(intended)));
        self.service.saturating_record(micros(done.saturating_duration_since(sent)));
        self.requests += 1;
        self.orders += orders;
        self.first_send = Some(self.first_send.map_or(sent, |f| f.min(sent)));
        self.last_send = Some(self.last_send.map_or(sent, |l| l.max(sent)));
    }

    /// Counts a non-success outcome; failures (not benign) count as errors.
    pub fn outcome(&mut self, code: &str) {
        if let Some(n) = self.codes.get_mut(code) {
            *n += 1;
        } else {
            self.codes.insert(code.to_owned(), 1);
        }
        if !BENIGN_CODES.contains(&code) {
            self.errors += 1;
        }
    }

    /// Records how late the generator sent a request it was free to send on time.
    pub fn lag(&mut self, lag: Duration) {
        self.send_lag.saturating_record(micros(lag));
    }

    /// Records an end-to-end latency.
    pub fn end_to_end(&mut self, d: Duration) {
        self.e2e.saturating_record(micros(d));
    }

    /// Adds another sample into this one.
    pub fn merge(&mut self, other: &Sample) {
        // Same bounds everywhere, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        let _ = self.service.add(&other.service);
        let _ = self.send_lag.add(&other.send_lag);
        let _ = self.e2e.add(&other.e2e);
        self.requests += other.requests;
        self.orders += other.orders;
        self.trades += other.trades;
        self.errors += other.errors;
        self.late += other.late;
        for (code, n) in &other.codes {
            *self.codes.entry(code.clone()).or_insert(0) += n;
        }
        self.first_send = match (self.first_send, other.first_send) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_send = match (self.last_send, other.last_send) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

/// Percentiles of a histogram, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub p9999: f64,
    pub max: f64,
}

impl Percentiles {
    /// The percentiles of a microsecond histogram, in milliseconds.
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: h.len(),
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            p9999: ms(h.value_at_quantile(0.9999)),
            max: ms(h.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrected_and_uncorrected_latency_differ_by_the_wait() {
        let mut s = Sample::default();
        let t0 = Instant::now();
        // Meant at t0, sent 40 ms late (the connection was busy), answered 1 ms later.
        s.answered(t0, t0 + Duration::from_millis(40), t0 + Duration::from_millis(41), 1);
        let corrected = Percentiles::of(&s.latency);
        let service = Percentiles::of(&s.service);
        assert!((corrected.max - 41.0).abs() < 0.1, "{corrected:?}");
        assert!((service.max - 1.0).abs() < 0.01, "{service:?}");
    }

    #[test]
    fn outcomes_merge_and_benign_codes_are_not_errors() {
        let mut a = Sample::default();
        a.outcome("order_not_open");
        a.outcome("rate_limited");
        let mut b = Sample::default();
        b.outcome("rate_limited");
        b.late = 3;
        a.merge(&b);
        assert_eq!(a.errors, 2);
        assert_eq!(a.codes["rate_limited"], 2);
        assert_eq!(a.codes["order_not_open"], 1);
        assert_eq!(a.late, 3);
    }
}
