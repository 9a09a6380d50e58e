//! Latency histograms.

use hdrhistogram::Histogram;

/// A histogram of nanoseconds, 1 ns to 1 s, 3 significant digits.
///
/// # Panics
/// Never: the bounds are constants that `Histogram::new_with_bounds` accepts.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 1_000_000_000, 3).expect("constant, valid bounds")
}

/// The percentiles reported everywhere, as (label, quantile).
pub const PERCENTILES: [(&str, f64); 6] =
    [("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p99.9", 0.999), ("p99.99", 0.9999), ("max", 1.0)];

/// One line: `p50 120 ns  p90 … max …`.
pub fn summary(h: &Histogram<u64>) -> String {
    PERCENTILES
        .iter()
        .map(|(label, q)| {
            let v = if *q >= 1.0 { h.max() } else { h.value_at_quantile(*q) };
            format!("{label} {v} ns")
        })
        .collect::<Vec<_>>()
        .join("  ")
}

/// The percentile distribution in HdrHistogram's `.hgrm` text format (values in µs, as
/// the HdrHistogram plotter expects).
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut out = String::from("       Value     Percentile TotalCount 1/(1-Percentile)\n\n");
    let mut total = 0u64;
    for v in h.iter_quantiles(5) {
        total += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        let inv = if q < 1.0 { format!("{:12.2}", 1.0 / (1.0 - q)) } else { "         inf".to_owned() };
        out.push_str(&format!("{:12.3} {:14.12} {:10} {inv}\n", v.value_iterated_to() as f64 / 1000.0, q, total));
    }
    out.push_str(&format!(
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]\n#[Max     = {:12.3}, Total count    = {:12}]\n",
        h.mean() / 1000.0,
        h.stdev() / 1000.0,
        h.max() as f64 / 1000.0,
        h.len()
    ));
    out
}

/// Median of a non-empty list of throughputs.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}
