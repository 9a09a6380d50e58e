//! Judging a run and writing its results: `summary.json`, percentile distributions
//! (`.hgrm`, the format HdrHistogram's plotter reads), an interval log (`.hlog`) and an
//! HTML report with SVG plots.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use serde::{Deserialize, Serialize};

use crate::cpu::CpuUsage;
use crate::plot::{self, XAxis};
use crate::run::{ResponseMode, RunConfig, RunOutput, Transport};
use crate::stats::Percentiles;

/// Limits a run is judged against.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Judgement {
    /// p99 latency objective (ms).
    pub slo_p99_ms: Option<f64>,
    /// Largest tolerated share of failed requests.
    pub max_error_rate: f64,
    /// The generator's own send lag p99 above which the run is invalid (ms).
    pub max_send_lag_ms: f64,
    /// Achieved/offered below which the run is invalid.
    pub min_achieved_ratio: f64,
}

impl Default for Judgement {
    fn default() -> Self {
        Self { slo_p99_ms: None, max_error_rate: 0.001, max_send_lag_ms: 1.0, min_achieved_ratio: 0.98 }
    }
}

/// What `summary.json` holds. Scripts depend on `target_rps`, `achieved_rps`,
/// `requests`, `errors` and `latency_ms.{p50,p90,p99,p999,max}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub target: String,
    pub transport: Transport,
    pub response: ResponseMode,
    pub batch_size: usize,
    /// Offered requests/s over the measured window (HTTP requests or WS frames).
    pub target_rps: f64,
    /// Requests sent per second over the measured window.
    pub achieved_rps: f64,
    /// Offered and achieved orders (plus cancels and amends) per second.
    pub target_orders_per_sec: f64,
    pub achieved_orders_per_sec: f64,
    pub duration_secs: f64,
    pub requests: u64,
    pub orders: u64,
    pub errors: u64,
    pub error_rate: f64,
    /// Trades per order placed (taker fills in the answers; 0 in ack mode).
    pub trades_per_order: f64,
    /// Every non-success outcome by code (errors and benign races such as
    /// `order_not_open`).
    pub outcomes: BTreeMap<String, u64>,
    /// Requests whose intended time passed while every connection was busy.
    pub late_requests: u64,
    /// Coordinated-omission-corrected latency: from the intended send time.
    pub latency_ms: Percentiles,
    /// Uncorrected: from the actual send (for comparison with closed-loop tools).
    pub service_time_ms: Percentiles,
    /// How late the generator sent requests it was free to send on time.
    pub send_lag_ms: Percentiles,
    /// Order sent (intended time) → its trade seen on the market-data WebSocket.
    pub end_to_end_ms: Option<Percentiles>,
    pub connections: usize,
    pub accounts: usize,
    pub threads: usize,
    pub seed: u64,
    pub client_cpu: Option<CpuUsage>,
    pub server_cpu: Option<CpuUsage>,
    /// The server's own latency per hop over the run (warm-up included), from
    /// `/v1/admin/latency`, when an admin key was at hand.
    pub server_hops: Option<serde_json::Value>,
    pub slo_p99_ms: Option<f64>,
    pub max_error_rate: f64,
    /// p99 within the SLO (if any) and errors within the budget.
    pub slo_met: bool,
    /// The generator kept its schedule and had CPU to spare.
    pub valid: bool,
    pub invalid_reasons: Vec<String>,
}

impl Summary {
    /// Summarises and judges a run.
    pub fn new(config: &RunConfig, out: &RunOutput, judge: &Judgement) -> Self {
        let t = &out.total;
        let window = out.window.as_secs_f64().max(1e-9);
        let scheduled = config.schedule.duration().as_secs_f64();
        let target_rps = config.schedule.mean_rate();
        let orders_per_request = if t.requests > 0 { t.orders as f64 / t.requests as f64 } else { 1.0 };
        let achieved_rps = t.requests as f64 / window.max(scheduled);
        let error_rate = if t.requests > 0 { t.errors as f64 / t.requests as f64 } else { 1.0 };
        let latency = Percentiles::of(&t.latency);
        let send_lag = Percentiles::of(&t.send_lag);
        let client_cpu = out.client_cpu.map(|c| CpuUsage::new(c, out.cpu_wall, t.requests, t.orders));
        let server_cpu = out.server_cpu.map(|c| CpuUsage::new(c, out.cpu_wall, t.requests, t.orders));
        let mut invalid = Vec::new();
        if t.requests == 0 {
            invalid.push("no request was answered".to_owned());
        }
        if send_lag.p99 > judge.max_send_lag_ms {
            invalid.push(format!(
                "the generator sent late: send lag p99 {:.2} ms > {:.2} ms",
                send_lag.p99, judge.max_send_lag_ms
            ));
        }
        if achieved_rps < judge.min_achieved_ratio * target_rps {
            invalid.push(format!(
                "achieved {achieved_rps:.0} req/s < {:.0}% of the {target_rps:.0} offered",
                judge.min_achieved_ratio * 100.0
            ));
        }
        if let Some(cpu) = client_cpu {
            if cpu.cores >= 0.95 * config.threads.max(1) as f64 {
                invalid.push(format!(
                    "the generator saturated its CPU ({:.2} cores busy of {} threads)",
                    cpu.cores, config.threads
                ));
            }
        }
        let slo_met = judge.slo_p99_ms.is_none_or(|slo| latency.p99 <= slo) && error_rate <= judge.max_error_rate;
        Self {
            target: config.target.clone(),
            transport: config.transport,
            response: config.response,
            batch_size: if config.transport == Transport::Batch { config.batch_size } else { 1 },
            target_rps,
            achieved_rps,
            target_orders_per_sec: target_rps * orders_per_request,
            achieved_orders_per_sec: t.orders as f64 / window.max(scheduled),
            duration_secs: scheduled,
            requests: t.requests,
            orders: t.orders,
            errors: t.errors,
            error_rate,
            trades_per_order: if t.orders > 0 { t.trades as f64 / t.orders as f64 } else { 0.0 },
            outcomes: t.codes.clone(),
            late_requests: t.late,
            latency_ms: latency,
            service_time_ms: Percentiles::of(&t.service),
            send_lag_ms: send_lag,
            end_to_end_ms: (out.end_to_end && !t.e2e.is_empty()).then(|| Percentiles::of(&t.e2e)),
            connections: out.connections,
            accounts: out.accounts,
            threads: config.threads,
            seed: config.seed,
            client_cpu,
            server_cpu,
            server_hops: None,
            slo_p99_ms: judge.slo_p99_ms,
            max_error_rate: judge.max_error_rate,
            slo_met,
            valid: invalid.is_empty(),
            invalid_reasons: invalid,
        }
    }

    /// The process exit code: 0 passed, 2 SLO or error budget broken, 3 invalid run.
    pub fn exit_code(&self) -> i32 {
        if !self.valid {
            3
        } else if !self.slo_met {
            2
        } else {
            0
        }
    }

    /// The human-readable table printed at the end of a run.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} {} → {}: offered {:.0} req/s, achieved {:.0} req/s ({:.0} orders/s) over {:.0} s",
            self.transport_name(),
            if self.transport == Transport::Ws { "" } else { self.response_name() },
            self.target,
            self.target_rps,
            self.achieved_rps,
            self.achieved_orders_per_sec,
            self.duration_secs
        );
        let _ = writeln!(
            s,
            "requests {}  orders {}  errors {} ({:.3}%)  late {}  connections {}  accounts {}",
            self.requests,
            self.orders,
            self.errors,
            self.error_rate * 100.0,
            self.late_requests,
            self.connections,
            self.accounts
        );
        let _ = writeln!(
            s,
            "{:<26}{:>9}{:>9}{:>9}{:>9}{:>9}{:>10}",
            "latency (ms)", "p50", "p90", "p99", "p99.9", "p99.99", "max"
        );
        let mut row = |name: &str, p: &Percentiles| {
            let _ = writeln!(
                s,
                "{name:<26}{:>9.3}{:>9.3}{:>9.3}{:>9.3}{:>9.3}{:>10.3}",
                p.p50, p.p90, p.p99, p.p999, p.p9999, p.max
            );
        };
        row("answer (CO-corrected)", &self.latency_ms);
        row("service time (uncorrected)", &self.service_time_ms);
        if let Some(e2e) = &self.end_to_end_ms {
            row("end to end (trade on WS)", e2e);
        }
        row("generator send lag", &self.send_lag_ms);
        if !self.outcomes.is_empty() {
            let codes: Vec<String> = self.outcomes.iter().map(|(c, n)| format!("{c}={n}")).collect();
            let _ = writeln!(s, "outcomes: {}", codes.join(" "));
        }
        let cpu = |c: &Option<CpuUsage>| {
            c.map_or("n/a".to_owned(), |c| {
                format!(
                    "{:.2} cores, {:.1}% of a core per 10k req/s, {:.2} CPU-ms per 1k orders",
                    c.cores, c.core_pct_per_10k_rps, c.cpu_ms_per_1k_orders
                )
            })
        };
        let _ = writeln!(s, "client CPU: {}", cpu(&self.client_cpu));
        if self.server_cpu.is_some() {
            let _ = writeln!(s, "server CPU: {}", cpu(&self.server_cpu));
        }
        if let Some(hops) = self.server_hops.as_ref().and_then(|h| h["hops"].as_object()) {
            let _ = writeln!(s, "server hops (µs, from the gateway's stamp):");
            for (name, h) in hops {
                let f = |k: &str| h[k].as_f64().unwrap_or(0.0);
                let _ = writeln!(
                    s,
                    "  {name:<12} count {:>9}  p50 {:>9.1}  p99 {:>9.1}  p99.9 {:>9.1}  max {:>9.1}",
                    h["count"].as_u64().unwrap_or(0),
                    f("p50"),
                    f("p99"),
                    f("p999"),
                    f("max")
                );
            }
        }
        let verdict = match (self.valid, self.slo_met) {
            (false, _) => format!("INVALID RUN: {}", self.invalid_reasons.join("; ")),
            (true, false) => format!(
                "SLO BROKEN: p99 {:.3} ms (SLO {}), error rate {:.3}% (budget {:.3}%)",
                self.latency_ms.p99,
                self.slo_p99_ms.map_or("none".to_owned(), |v| format!("{v} ms")),
                self.error_rate * 100.0,
                self.max_error_rate * 100.0
            ),
            (true, true) => "PASS".to_owned(),
        };
        let _ = writeln!(s, "{verdict}");
        s
    }

    fn transport_name(&self) -> &'static str {
        match self.transport {
            Transport::Rest => "REST",
            Transport::Batch => "batch REST",
            Transport::Ws => "WebSocket",
        }
    }

    fn response_name(&self) -> &'static str {
        match self.response {
            ResponseMode::Ack => "(ack)",
            ResponseMode::Result => "(result)",
        }
    }
}

/// HdrHistogram's percentile distribution format; the run's microseconds are shown in
/// milliseconds.
pub use tachyon_proto::latency::hgrm;

/// Writes all of a run's files into `dir`.
///
/// # Errors
/// I/O errors.
pub fn write_run(dir: &Path, summary: &Summary, out: &RunOutput) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    fs::write(dir.join("summary.json"), serde_json::to_string_pretty(summary)? + "\n")?;
    fs::write(dir.join("latency.hgrm"), hgrm(&out.total.latency))?;
    fs::write(dir.join("service_time.hgrm"), hgrm(&out.total.service))?;
    if summary.end_to_end_ms.is_some() {
        fs::write(dir.join("end_to_end.hgrm"), hgrm(&out.total.e2e))?;
    }
    fs::write(dir.join("latency.hlog"), hlog(out)?)?;
    let svg = latency_chart(summary, out);
    fs::write(dir.join("latency.svg"), &svg)?;
    fs::write(dir.join("report.html"), html(summary, &svg))?;
    Ok(())
}

/// The interval log: one corrected-latency histogram per second (untagged, as the
/// HdrHistogram tools expect) plus tagged service-time and end-to-end histograms.
fn hlog(out: &RunOutput) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    let now = SystemTime::now();
    let start = now.checked_sub(out.window).unwrap_or(now);
    let mut writer = IntervalLogWriterBuilder::new()
        .add_comment("tachyon-loadtest interval log; values in microseconds")
        .with_start_time(start)
        .with_base_time(start)
        .with_max_value_divisor(1000.0)
        .begin_log_with(&mut buf, &mut serializer)?;
    for (offset, sample) in &out.intervals {
        let second = Duration::from_secs(1);
        let err = |e| anyhow::anyhow!("writing the interval log: {e:?}");
        writer.write_histogram(&sample.latency, *offset, second, None).map_err(err)?;
        writer.write_histogram(&sample.service, *offset, second, Tag::new("service")).map_err(err)?;
        if out.end_to_end {
            writer.write_histogram(&sample.e2e, *offset, second, Tag::new("e2e")).map_err(err)?;
        }
    }
    drop(writer);
    Ok(buf)
}

fn latency_chart(summary: &Summary, out: &RunOutput) -> String {
    let nines = match out.total.latency.len() {
        n if n >= 1_000_000 => 5,
        n if n >= 100_000 => 4,
        _ => 3,
    };
    let mut series = vec![
        plot::percentile_series("answer latency (CO-corrected)", &out.total.latency, nines),
        plot::percentile_series("service time (uncorrected)", &out.total.service, nines),
    ];
    if summary.end_to_end_ms.is_some() {
        series.push(plot::percentile_series("end to end (trade on WS)", &out.total.e2e, nines));
    }
    let title = format!("Latency by percentile at {:.0} req/s ({:?})", summary.achieved_rps, summary.transport);
    let slo = summary.slo_p99_ms.map(|v| (v, "p99 SLO"));
    plot::chart(&title, "percentile", "latency (ms)", XAxis::Percentile { nines }, &series, slo)
}

/// A standalone HTML page: the summary table and the plots.
pub fn html_page(title: &str, table: &str, svgs: &[&str], json: &str) -> String {
    let escape = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let mut page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{0}</title>\
         <style>body{{font-family:sans-serif;margin:2em;max-width:960px}}pre{{background:#f6f6f6;padding:1em;overflow:auto}}</style>\
         </head><body><h1>{0}</h1><pre>{1}</pre>",
        escape(title),
        escape(table)
    );
    for svg in svgs {
        page.push_str(svg);
    }
    let _ = writeln!(page, "<h2>summary.json</h2><pre>{}</pre></body></html>", escape(json));
    page
}

fn html(summary: &Summary, svg: &str) -> String {
    let json = serde_json::to_string_pretty(summary).unwrap_or_default();
    html_page("tachyon-loadtest run", &summary.table(), &[svg], &json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hgrm_has_the_plotter_layout() {
        let mut h = crate::stats::histogram();
        for v in 1..=1000u64 {
            h.record(v * 1000).expect("in range");
        }
        let text = hgrm(&h);
        let mut lines = text.lines();
        assert!(lines.next().expect("header").contains("1/(1-Percentile)"));
        let rows: Vec<&str> =
            text.lines().filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit())).collect();
        let first: Vec<&str> = rows[0].split_whitespace().collect();
        assert_eq!(first[0], "1.000", "values in milliseconds");
        let last: Vec<&str> = rows[rows.len() - 1].split_whitespace().collect();
        assert_eq!(last[1], "1.000000000000");
        assert_eq!(last[2], "1000");
        let max_line = text.lines().find(|l| l.starts_with("#[Max")).expect("a Max line");
        let max: f64 = max_line.split(['=', ',']).nth(1).expect("a value").trim().parse().expect("a number");
        assert!((999.0..=1001.0).contains(&max), "the 1,000 ms maximum, in ms: {max_line}");
        assert!(text.contains("Total count    =         1000"));
    }
}
