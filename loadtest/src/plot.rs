//! Small self-contained SVG line charts: latency by percentile (HdrHistogram's classic
//! plot, log-scaled towards the tail) and throughput against latency for sweeps.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

const WIDTH: f64 = 860.0;
const HEIGHT: f64 = 440.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
/// Line colours, one per series.
pub const COLOURS: &[&str] = &["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];

/// A named line of (x, y) points.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// The x axis of a chart.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum XAxis {
    /// x = log10(1 / (1 - percentile)): 0 = 0%, 1 = 90%, 2 = 99%, … up to `max` nines.
    Percentile { nines: u32 },
    /// Plain linear axis from 0.
    Linear,
}

/// Latency-by-percentile points of a microsecond histogram, in milliseconds.
pub fn percentile_series(name: &str, h: &Histogram<u64>, nines: u32) -> Series {
    let cap = 1.0 - 10f64.powi(-(nines as i32));
    let mut points = Vec::new();
    if h.is_empty() {
        return Series { name: name.to_owned(), points };
    }
    for v in h.iter_quantiles(5) {
        let q = v.quantile_iterated_to().min(cap);
        let x = (1.0 / (1.0 - q)).log10();
        points.push((x, v.value_iterated_to() as f64 / 1000.0));
        if q >= cap {
            break;
        }
    }
    Series { name: name.to_owned(), points }
}

/// A "nice" upper bound for an axis: 1, 2 or 5 × a power of ten, at or above `v`.
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|c| *c >= v * 0.999).unwrap_or(10.0 * mag)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Renders a chart. `hline` draws a labelled horizontal line (an SLO).
pub fn chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    x: XAxis,
    series: &[Series],
    hline: Option<(f64, &str)>,
) -> String {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let all = series.iter().flat_map(|s| s.points.iter());
    let y_max = nice_ceiling(all.clone().map(|p| p.1).fold(hline.map_or(0.0, |h| h.0), f64::max));
    let x_max = match x {
        XAxis::Percentile { nines } => f64::from(nines),
        XAxis::Linear => nice_ceiling(all.map(|p| p.0).fold(0.0, f64::max)),
    };
    let sx = |v: f64| LEFT + v / x_max * plot_w;
    let sy = |v: f64| TOP + plot_h - v / y_max * plot_h;
    let mut svg = String::with_capacity(8192);
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(svg, r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#);
    let _ =
        write!(svg, r#"<text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>"#, WIDTH / 2.0, escape(title));
    // Grid and ticks.
    for i in 0..=5 {
        let v = y_max * f64::from(i) / 5.0;
        let y = sy(v);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            trim_number(v)
        );
    }
    let x_ticks: Vec<(f64, String)> = match x {
        XAxis::Percentile { nines } => (0..=nines)
            .map(|n| {
                let label = match n {
                    0 => "0%".to_owned(),
                    1 => "90%".to_owned(),
                    _ => format!("99.{}%", "9".repeat(n as usize - 2)).replace("99.%", "99%"),
                };
                (f64::from(n), label)
            })
            .collect(),
        XAxis::Linear => (0..=5).map(|i| x_max * f64::from(i) / 5.0).map(|v| (v, trim_number(v))).collect(),
    };
    for (v, label) in &x_ticks {
        let xx = sx(*v);
        let _ = write!(
            svg,
            r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{TOP}" y2="{}" stroke="#eee"/><text x="{xx:.1}" y="{}" text-anchor="middle">{label}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 18.0
        );
    }
    let _ =
        write!(svg, r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#444"/>"##);
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 14.0,
        escape(x_label)
    );
    let _ = write!(
        svg,
        r#"<text transform="translate(18 {}) rotate(-90)" text-anchor="middle">{}</text>"#,
        TOP + plot_h / 2.0,
        escape(y_label)
    );
    if let Some((v, label)) = hline {
        let y = sy(v);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#e00" stroke-dasharray="6 4"/><text x="{}" y="{:.1}" fill="#e00" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT + plot_w - 4.0,
            y - 4.0,
            escape(label)
        );
    }
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        if !s.points.is_empty() {
            let path: Vec<String> = s.points.iter().map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y))).collect();
            let _ = write!(
                svg,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
                path.join(" ")
            );
            if x == XAxis::Linear {
                for (px, py) in &s.points {
                    let _ = write!(svg, r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"/>"#, sx(*px), sy(*py));
                }
            }
        }
        let ly = TOP + 14.0 + 16.0 * i as f64;
        let _ = write!(
            svg,
            r#"<rect x="{}" y="{:.1}" width="14" height="3" fill="{colour}"/><text x="{}" y="{:.1}">{}</text>"#,
            LEFT + 10.0,
            ly - 4.0,
            LEFT + 30.0,
            ly,
            escape(&s.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn trim_number(v: f64) -> String {
    if v >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}").trim_end_matches('0').to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_percentile_and_linear_charts() {
        let mut h = crate::stats::histogram();
        for v in 1..=10_000u64 {
            h.record(v * 10).expect("in range");
        }
        let s = percentile_series("latency", &h, 4);
        assert!(s.points.len() > 10);
        assert!(s.points.windows(2).all(|w| w[1].0 >= w[0].0 && w[1].1 >= w[0].1), "monotone");
        let svg = chart("t <1>", "percentile", "ms", XAxis::Percentile { nines: 4 }, &[s], Some((50.0, "SLO")));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("99.99%") && svg.contains("t &lt;1&gt;") && svg.contains("SLO"));
        let sweep = Series { name: "p99".into(), points: vec![(10_000.0, 1.0), (20_000.0, 2.5)] };
        let svg = chart("sweep", "req/s", "ms", XAxis::Linear, &[sweep], None);
        assert_eq!(svg.matches("<circle").count(), 2);
        assert_eq!(nice_ceiling(3.2), 5.0);
        assert_eq!(nice_ceiling(0.07), 0.1);
    }
}
