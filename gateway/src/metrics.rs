//! Counters of the gateway, rendered in the Prometheus text format
//! (`tachyon_<component>_<noun>_<unit>`). Latency histograms per hop come with the
//! load-testing issue.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use parking_lot::Mutex;

/// The gateway's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// route → status → responses (looked up by `&str`: no allocation per request).
    responses: Mutex<BTreeMap<String, BTreeMap<u16, u64>>>,
    pub orders_submitted: AtomicU64,
    pub rate_limited: AtomicU64,
    pub backbone_refused: AtomicU64,
    pub replies_timed_out: AtomicU64,
    pub ws_connections: AtomicI64,
    pub ws_messages_in: AtomicU64,
    pub ws_errors: AtomicU64,
    pub ws_snapshots_resent: AtomicU64,
}

impl Metrics {
    /// Counts one HTTP response.
    pub fn response(&self, route: &str, status: u16) {
        let mut responses = self.responses.lock();
        let by_status = match responses.get_mut(route) {
            Some(by_status) => by_status,
            None => responses.entry(route.to_string()).or_default(),
        };
        *by_status.entry(status).or_insert(0) += 1;
    }

    /// Appends the gateway's metrics to `out`.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# TYPE tachyon_gateway_http_responses_total counter");
        for (route, by_status) in self.responses.lock().iter() {
            for (status, n) in by_status {
                let _ =
                    writeln!(out, "tachyon_gateway_http_responses_total{{route=\"{route}\",status=\"{status}\"}} {n}");
            }
        }
        let counters = [
            ("tachyon_gateway_orders_submitted_total", &self.orders_submitted),
            ("tachyon_gateway_rate_limited_total", &self.rate_limited),
            ("tachyon_gateway_backbone_refused_total", &self.backbone_refused),
            ("tachyon_gateway_replies_timed_out_total", &self.replies_timed_out),
            ("tachyon_gateway_ws_messages_in_total", &self.ws_messages_in),
            ("tachyon_gateway_ws_errors_total", &self.ws_errors),
            ("tachyon_gateway_ws_snapshots_resent_total", &self.ws_snapshots_resent),
        ];
        for (name, value) in counters {
            let _ = writeln!(out, "# TYPE {name} counter\n{name} {}", value.load(Ordering::Relaxed));
        }
        let _ = writeln!(
            out,
            "# TYPE tachyon_gateway_ws_connections gauge\ntachyon_gateway_ws_connections {}",
            self.ws_connections.load(Ordering::Relaxed)
        );
    }
}

/// Appends one gauge or counter line with its type header.
pub fn write_metric(out: &mut String, name: &str, kind: &str, labels: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# TYPE {name} {kind}\n{name}{labels} {value}");
}
