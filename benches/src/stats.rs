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

/// The percentile distribution in HdrHistogram's `.hgrm` text format (nanoseconds shown
/// in µs), shared with the load tester.
pub use tachyon_proto::latency::hgrm;

/// Median of a non-empty list of throughputs.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// An SVG chart of latency by percentile (x: percentile on a log "nines" scale, as
/// HdrHistogram's plotter draws it; y: latency on a log scale, gridlines per decade), one
/// line per histogram.
pub fn percentile_svg(title: &str, series: &[(&str, &Histogram<u64>)]) -> String {
    const W: f64 = 800.0;
    const H: f64 = 440.0;
    const LEFT: f64 = 70.0;
    const RIGHT: f64 = 20.0;
    const TOP: f64 = 40.0;
    const BOTTOM: f64 = 50.0;
    const MAX_NINES: f64 = 5.0; // up to p99.999
    const COLOURS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
    let decade = |v: f64| v.max(1.0).log10();
    let lo = series.iter().map(|(_, h)| decade(h.min() as f64).floor()).fold(f64::MAX, f64::min).min(9.0);
    let hi = series.iter().map(|(_, h)| decade(h.max() as f64).ceil()).fold(lo + 1.0, f64::max);
    let x = |n: f64| LEFT + n / MAX_NINES * (W - LEFT - RIGHT);
    let y = |v: f64| H - BOTTOM - (decade(v) - lo) / (hi - lo) * (H - TOP - BOTTOM);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{title}</text>\n",
        W / 2.0
    );
    for (i, label) in ["p0", "p90", "p99", "p99.9", "p99.99", "p99.999"].iter().enumerate() {
        let px = x(i as f64);
        svg.push_str(&format!(
            "<line x1=\"{px}\" y1=\"{TOP}\" x2=\"{px}\" y2=\"{}\" stroke=\"#ddd\"/><text x=\"{px}\" y=\"{}\" text-anchor=\"middle\">{label}</text>\n",
            H - BOTTOM,
            H - BOTTOM + 18.0
        ));
    }
    for d in lo as i32..=hi as i32 {
        let v = 10f64.powi(d);
        let label = match d {
            ..=2 => format!("{v:.0} ns"),
            3..=5 => format!("{:.0} µs", v / 1e3),
            _ => format!("{:.0} ms", v / 1e6),
        };
        let py = y(v);
        svg.push_str(&format!(
            "<line x1=\"{LEFT}\" y1=\"{py}\" x2=\"{}\" y2=\"{py}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{label}</text>\n",
            W - RIGHT,
            LEFT - 6.0,
            py + 4.0
        ));
    }
    svg.push_str(&format!("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">percentile</text>\n", W / 2.0, H - 12.0));
    for (i, (name, h)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let points: Vec<String> = (0..=500)
            .map(|step| {
                let n = MAX_NINES * f64::from(step) / 500.0;
                let q = 1.0 - 10f64.powf(-n);
                format!("{:.1},{:.1}", x(n), y(h.value_at_quantile(q) as f64))
            })
            .collect();
        svg.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>\n\
             <text x=\"{}\" y=\"{}\" fill=\"{colour}\">{name}</text>\n",
            points.join(" "),
            LEFT + 10.0,
            TOP + 16.0 * (i as f64 + 1.0)
        ));
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_outputs_are_consistent() {
        let mut h = latency_histogram();
        for v in 1..=10_000u64 {
            h.record(v).expect("in range");
        }
        // Three significant digits: values are exact to within 0.1%.
        assert!(h.value_at_quantile(0.5).abs_diff(5_000) <= 5);
        let line = summary(&h);
        assert!(line.starts_with("p50 500") && line.contains("max 100"), "{line}");
        let text = hgrm(&h);
        assert!(text.contains("Total count    =        10000"), "{text}");
        let svg = percentile_svg("t", &[("a", &h)]);
        assert!(svg.starts_with("<svg") && svg.contains("<polyline") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
    }
}
