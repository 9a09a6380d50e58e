//! `sweep`: raise the rate step by step until the p99 SLO (or the error budget) breaks,
//! and report the knee, the highest rate that held, with the throughput-vs-latency curve.

use std::fs;
use std::path::Path;

use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};

use crate::cpu::CpuUsage;
use crate::plot::{self, Series, XAxis};
use crate::report::{self, Judgement, Summary};
use crate::run::{self, RunConfig, Transport};
use crate::schedule::Schedule;

/// The steps of a sweep, in orders/s.
#[derive(Clone, Debug, PartialEq)]
pub struct Steps {
    pub start: f64,
    pub step: f64,
    pub max: f64,
    pub secs: f64,
}

impl Steps {
    /// The rates to try, lowest first.
    pub fn rates(&self) -> Vec<f64> {
        let mut rates = Vec::new();
        let mut r = self.start;
        while r <= self.max + 1e-9 && rates.len() < 1000 {
            rates.push(r);
            r += self.step;
        }
        rates
    }
}

/// One step's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    pub target_orders_per_sec: f64,
    pub achieved_orders_per_sec: f64,
    pub target_rps: f64,
    pub achieved_rps: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub errors: u64,
    pub error_rate: f64,
    pub trades_per_order: f64,
    pub valid: bool,
    pub slo_met: bool,
    pub invalid_reasons: Vec<String>,
    pub client_cpu: Option<CpuUsage>,
    pub server_cpu: Option<CpuUsage>,
    /// The server's hop histograms over this step (`GET /v1/admin/latency`, reset at the
    /// step's start), when the tool could mint the admin key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_hops: Option<serde_json::Value>,
}

impl From<&Summary> for StepResult {
    fn from(s: &Summary) -> Self {
        Self {
            target_orders_per_sec: s.target_orders_per_sec,
            achieved_orders_per_sec: s.achieved_orders_per_sec,
            target_rps: s.target_rps,
            achieved_rps: s.achieved_rps,
            p50_ms: s.latency_ms.p50,
            p90_ms: s.latency_ms.p90,
            p99_ms: s.latency_ms.p99,
            p999_ms: s.latency_ms.p999,
            max_ms: s.latency_ms.max,
            errors: s.errors,
            error_rate: s.error_rate,
            trades_per_order: s.trades_per_order,
            valid: s.valid,
            slo_met: s.slo_met,
            invalid_reasons: s.invalid_reasons.clone(),
            client_cpu: s.client_cpu,
            server_cpu: s.server_cpu,
            server_hops: s.server_hops.clone(),
        }
    }
}

/// `sweep.json`: what `plan` reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepReport {
    pub target: String,
    pub transport: Transport,
    pub slo_p99_ms: f64,
    /// Achieved orders/s of the highest step that held the SLO (None: not even the first).
    pub knee_orders_per_sec: Option<f64>,
    /// The same in requests/s.
    pub knee_rps: Option<f64>,
    /// Why the sweep stopped.
    pub stopped: String,
    /// Engine shards (partitions) and gateway processes of the measured deployment.
    pub partitions: u32,
    pub gateways: u32,
    pub steps: Vec<StepResult>,
}

/// Runs the sweep, writing each step's files under `out/step-<rate>/` and `sweep.json`,
/// `sweep.svg`, `sweep.html` in `out`.
///
/// # Errors
/// A step that could not run at all, or I/O errors.
#[allow(clippy::too_many_arguments)]
pub fn sweep(
    base: &RunConfig,
    steps: &Steps,
    judge: &Judgement,
    keys: &[String],
    server_pid: Option<u32>,
    admin_key: Option<&str>,
    partitions: u32,
    gateways: u32,
    out: &Path,
) -> Result<SweepReport> {
    let slo = judge.slo_p99_ms.unwrap_or(f64::INFINITY);
    ensure!(slo.is_finite(), "a sweep needs --slo-p99-ms");
    let per_request = if base.transport == Transport::Batch { base.batch_size.max(1) as f64 } else { 1.0 };
    let mut report = SweepReport {
        target: base.target.clone(),
        transport: base.transport,
        slo_p99_ms: slo,
        knee_orders_per_sec: None,
        knee_rps: None,
        stopped: "reached --max".to_owned(),
        partitions,
        gateways,
        steps: Vec::new(),
    };
    for rate in steps.rates() {
        eprintln!("== sweep step: {rate:.0} orders/s for {:.0} s", steps.secs);
        let config = RunConfig { schedule: Schedule::constant(rate / per_request, steps.secs)?, ..base.clone() };
        if let Some(admin) = admin_key {
            crate::http::server_hops(&config.target, admin, true);
        }
        let output = run::run(&config, keys, server_pid)?;
        let mut summary = Summary::new(&config, &output, judge);
        summary.server_hops = admin_key.and_then(|admin| crate::http::server_hops(&config.target, admin, false));
        eprint!("{}", summary.table());
        report::write_run(&out.join(format!("step-{rate:.0}")), &summary, &output)?;
        let step = StepResult::from(&summary);
        report.steps.push(step);
        if !summary.valid {
            report.stopped = format!(
                "the generator could not drive {rate:.0} orders/s ({}); the knee is at least the last step that held",
                summary.invalid_reasons.join("; ")
            );
            break;
        }
        if !summary.slo_met {
            report.stopped = format!(
                "SLO broken at {rate:.0} orders/s: p99 {:.3} ms, error rate {:.3}%",
                summary.latency_ms.p99,
                summary.error_rate * 100.0
            );
            break;
        }
        report.knee_orders_per_sec = Some(summary.achieved_orders_per_sec);
        report.knee_rps = Some(summary.achieved_rps);
    }
    fs::create_dir_all(out)?;
    fs::write(out.join("sweep.json"), serde_json::to_string_pretty(&report)? + "\n")?;
    let svg = chart(&report);
    fs::write(out.join("sweep.svg"), &svg)?;
    let table = table(&report);
    let json = serde_json::to_string_pretty(&report)?;
    fs::write(out.join("sweep.html"), report::html_page("tachyon-loadtest sweep", &table, &[&svg], &json))?;
    Ok(report)
}

/// The throughput-vs-latency curve: p50, p99 and p99.9 against achieved orders/s.
pub fn chart(report: &SweepReport) -> String {
    // The step that broke the SLO can be orders of magnitude worse; cap the axis at 4×
    // the SLO so the curve below the knee stays readable (capped points sit on the top).
    let cap = report.slo_p99_ms * 4.0;
    let series = |name: &str, f: fn(&StepResult) -> f64| Series {
        name: name.to_owned(),
        points: report.steps.iter().map(|s| (s.achieved_orders_per_sec, f(s).min(cap))).collect(),
    };
    let lines = [series("p50", |s| s.p50_ms), series("p99", |s| s.p99_ms), series("p99.9", |s| s.p999_ms)];
    let title = format!(
        "{:?}: latency vs throughput (knee {} orders/s at p99 ≤ {} ms; axis capped at 4× SLO)",
        report.transport,
        report.knee_orders_per_sec.map_or("none".to_owned(), |k| format!("{k:.0}")),
        report.slo_p99_ms
    );
    plot::chart(
        &title,
        "achieved orders/s",
        "latency (ms)",
        XAxis::Linear,
        &lines,
        Some((report.slo_p99_ms, "p99 SLO")),
    )
}

/// The sweep as a table.
pub fn table(report: &SweepReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>12} {:>12} {:>9} {:>9} {:>9} {:>9} {:>8} {:>7} {:>12}",
        "offered/s", "achieved/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "errors", "held", "server CPU"
    );
    for st in &report.steps {
        let held = match (st.valid, st.slo_met) {
            (false, _) => "invalid",
            (true, false) => "no",
            (true, true) => "yes",
        };
        let cpu = st.server_cpu.map_or("n/a".to_owned(), |c| format!("{:.2} cores", c.cores));
        let _ = writeln!(
            s,
            "{:>12.0} {:>12.0} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>8} {:>7} {:>12}",
            st.target_orders_per_sec,
            st.achieved_orders_per_sec,
            st.p50_ms,
            st.p99_ms,
            st.p999_ms,
            st.max_ms,
            st.errors,
            held,
            cpu
        );
    }
    hops_table(&mut s, report);
    let _ = writeln!(
        s,
        "knee at p99 ≤ {} ms: {}  ({})",
        report.slo_p99_ms,
        report.knee_orders_per_sec.map_or("none".to_owned(), |k| format!("{k:.0} orders/s")),
        report.stopped
    );
    s
}

/// Per step, each server hop's p50 / p99 in µs (where the server reported them).
fn hops_table(s: &mut String, report: &SweepReport) {
    use std::fmt::Write as _;
    let hops = |st: &StepResult| st.server_hops.as_ref().and_then(|h| h["hops"].as_object().cloned());
    let Some(names) = report.steps.iter().find_map(hops).map(|h| h.keys().cloned().collect::<Vec<_>>()) else {
        return;
    };
    let _ = write!(s, "server hops, µs p50 / p99:\n{:>12}", "offered/s");
    for name in &names {
        let _ = write!(s, " {name:>19}");
    }
    let _ = writeln!(s);
    for st in &report.steps {
        let _ = write!(s, "{:>12.0}", st.target_orders_per_sec);
        let step = hops(st);
        for name in &names {
            let cell = step.as_ref().and_then(|h| h.get(name)).map_or("-".to_owned(), |h| {
                format!("{:.1} / {:.1}", h["p50"].as_f64().unwrap_or(0.0), h["p99"].as_f64().unwrap_or(0.0))
            });
            let _ = write!(s, " {cell:>19}");
        }
        let _ = writeln!(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_cover_the_range() {
        let s = Steps { start: 10_000.0, step: 10_000.0, max: 50_000.0, secs: 5.0 };
        assert_eq!(s.rates(), vec![10_000.0, 20_000.0, 30_000.0, 40_000.0, 50_000.0]);
    }
}
