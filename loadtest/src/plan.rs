//! `plan`: from a sweep's knee and a target load, the capacity table a planner needs.
//!
//! The model is deliberately simple and printed with its assumptions: capacity scales
//! linearly with engine shards (partitions) and gateway instances, measured per shard and
//! per gateway at the SLO; a hot symbol cannot be split across shards; backbone and
//! database volumes follow from the order rate, the trade ratio and record sizes.

use std::fmt::Write as _;

use anyhow::{ensure, Result};
use serde::Serialize;

use crate::sweep::SweepReport;

/// What the planner asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanInput {
    pub target_rps: f64,
    pub slo_p99_ms: f64,
    /// Spare capacity on top of the target (0.3 = 30%).
    pub headroom: f64,
    /// Share of all orders on the busiest symbol (Zipf 1.1 over 10 symbols: ~0.34).
    pub hot_symbol_share: f64,
    /// Bytes per record: order commands in, engine outputs out.
    pub command_bytes: f64,
    pub output_bytes: f64,
    /// Kafka replication factor.
    pub replication: f64,
    /// Trades per order (None: the sweep's measurement, else 0.25).
    pub trades_per_order: Option<f64>,
    /// DynamoDB item size in KB (rounded up to whole write units).
    pub item_kb: f64,
    /// Global secondary indexes on the orders table (each doubles the writes it covers).
    pub order_gsis: f64,
}

/// The capacity table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    pub target_rps: f64,
    pub required_rps: f64,
    pub slo_p99_ms: f64,
    pub measured_knee_orders_per_sec: f64,
    pub measured_partitions: u32,
    pub measured_gateways: u32,
    pub per_shard_orders_per_sec: f64,
    pub per_gateway_orders_per_sec: f64,
    pub engine_shards: u64,
    pub partitions: u64,
    pub gateways: u64,
    pub hot_symbol_orders_per_sec: f64,
    pub hot_symbol_fits_one_shard: bool,
    pub trades_per_sec: f64,
    pub kafka_produce_msgs_per_sec: f64,
    pub kafka_produce_mb_per_sec: f64,
    pub kafka_replicated_write_mb_per_sec: f64,
    pub postgres_rows_per_sec: f64,
    pub dynamodb_wcu: f64,
    pub notes: Vec<String>,
}

/// Computes the plan.
///
/// # Errors
/// A sweep without a knee, or a nonsensical input.
pub fn plan(sweep: &SweepReport, input: &PlanInput) -> Result<Plan> {
    let knee = sweep.knee_orders_per_sec.unwrap_or(0.0);
    ensure!(knee > 0.0, "the sweep found no rate that held its SLO: nothing to scale from");
    ensure!(
        input.target_rps > 0.0 && input.headroom >= 0.0,
        "the target must be positive and the headroom not negative"
    );
    let partitions = sweep.partitions.max(1);
    let gateways = sweep.gateways.max(1);
    let per_shard = knee / f64::from(partitions);
    let per_gateway = knee / f64::from(gateways);
    let required = input.target_rps * (1.0 + input.headroom);
    let shards = (required / per_shard).ceil() as u64;
    let gateway_count = (required / per_gateway).ceil() as u64;
    let measured_trades = sweep.steps.iter().rev().find(|s| s.valid && s.slo_met).map(|s| s.trades_per_order);
    let trades_per_order = input.trades_per_order.or(measured_trades.filter(|t| *t > 0.0)).unwrap_or(0.25);
    let trades = required * trades_per_order;
    let hot = required * input.hot_symbol_share;
    // Commands in; one execution record per command plus market data for most of them.
    let msgs = required * 2.0 + required * 0.8;
    let mb = (required * input.command_bytes + required * 1.8 * input.output_bytes) / 1e6;
    // Order state rows (one per command and per fill on each side), trades, fills.
    let order_changes = required + trades * 2.0;
    let pg_rows = order_changes * 2.0 + trades + trades * 2.0;
    let wcu_per_item = input.item_kb.ceil().max(1.0);
    let dynamo = (order_changes * (1.0 + input.order_gsis) + trades) * wcu_per_item;
    let mut notes = vec![
        format!("capacity scales linearly from the measured {knee:.0} orders/s at p99 ≤ {} ms", sweep.slo_p99_ms),
        format!("{:.0}% headroom over the target", input.headroom * 100.0),
        format!("{trades_per_order:.2} trades per order"),
        format!(
            "records: {:.0} B per command, {:.0} B per engine output; Kafka replication ×{}",
            input.command_bytes, input.output_bytes, input.replication
        ),
    ];
    if sweep.gateways == 1 && sweep.partitions > 1 {
        notes.push(
            "measured in one process: gateway and shards shared the same cores, so per-shard and per-gateway \
             capacities are lower bounds"
                .to_owned(),
        );
    }
    if input.slo_p99_ms < sweep.slo_p99_ms {
        notes.push(format!(
            "the target SLO ({} ms) is tighter than the sweep's ({} ms): sweep again at the target SLO",
            input.slo_p99_ms, sweep.slo_p99_ms
        ));
    }
    if hot > per_shard {
        notes.push(format!(
            "the busiest symbol alone needs {hot:.0} orders/s, more than one shard holds ({per_shard:.0}): \
             a symbol cannot be split across shards"
        ));
    }
    Ok(Plan {
        target_rps: input.target_rps,
        required_rps: required,
        slo_p99_ms: input.slo_p99_ms,
        measured_knee_orders_per_sec: knee,
        measured_partitions: partitions,
        measured_gateways: gateways,
        per_shard_orders_per_sec: per_shard,
        per_gateway_orders_per_sec: per_gateway,
        engine_shards: shards,
        // Room to add shards without repartitioning: partitions are fixed once topics exist.
        partitions: (shards * 2).next_power_of_two(),
        gateways: gateway_count,
        hot_symbol_orders_per_sec: hot,
        hot_symbol_fits_one_shard: hot <= per_shard,
        trades_per_sec: trades,
        kafka_produce_msgs_per_sec: msgs,
        kafka_produce_mb_per_sec: mb,
        kafka_replicated_write_mb_per_sec: mb * input.replication,
        postgres_rows_per_sec: pg_rows,
        dynamodb_wcu: dynamo,
        notes,
    })
}

impl Plan {
    /// The table printed for people.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "capacity plan for {:.0} orders/s at p99 ≤ {} ms (sized for {:.0}/s)",
            self.target_rps, self.slo_p99_ms, self.required_rps
        );
        let mut row = |what: &str, value: String, why: String| {
            let _ = writeln!(s, "  {what:<28} {value:>14}   {why}");
        };
        row(
            "engine shards",
            self.engine_shards.to_string(),
            format!("{:.0} orders/s per shard measured", self.per_shard_orders_per_sec),
        );
        row("partitions", self.partitions.to_string(), "2× shards, power of two: room to grow".to_owned());
        row(
            "gateway instances",
            self.gateways.to_string(),
            format!("{:.0} orders/s per gateway measured", self.per_gateway_orders_per_sec),
        );
        row(
            "hottest symbol",
            format!("{:.0}/s", self.hot_symbol_orders_per_sec),
            if self.hot_symbol_fits_one_shard {
                "fits one shard".to_owned()
            } else {
                "DOES NOT fit one shard".to_owned()
            },
        );
        row("trades", format!("{:.0}/s", self.trades_per_sec), String::new());
        row(
            "Kafka produce",
            format!("{:.0} msg/s", self.kafka_produce_msgs_per_sec),
            format!(
                "{:.1} MB/s, {:.1} MB/s written with replication",
                self.kafka_produce_mb_per_sec, self.kafka_replicated_write_mb_per_sec
            ),
        );
        row(
            "PostgreSQL rows",
            format!("{:.0}/s", self.postgres_rows_per_sec),
            "order events + states, trades, fills".to_owned(),
        );
        row("DynamoDB write units", format!("{:.0} WCU", self.dynamodb_wcu), "orders (with GSIs) + trades".to_owned());
        for n in &self.notes {
            let _ = writeln!(s, "  note: {n}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::Transport;
    use crate::sweep::StepResult;

    fn step(rate: f64, p99: f64, held: bool) -> StepResult {
        StepResult {
            target_orders_per_sec: rate,
            achieved_orders_per_sec: rate,
            target_rps: rate,
            achieved_rps: rate,
            p50_ms: p99 / 4.0,
            p90_ms: p99 / 2.0,
            p99_ms: p99,
            p999_ms: p99 * 2.0,
            max_ms: p99 * 3.0,
            errors: 0,
            error_rate: 0.0,
            trades_per_order: 0.2,
            valid: true,
            slo_met: held,
            invalid_reasons: vec![],
            client_cpu: None,
            server_cpu: None,
            server_hops: None,
        }
    }

    fn input() -> PlanInput {
        PlanInput {
            target_rps: 50_000.0,
            slo_p99_ms: 10.0,
            headroom: 0.3,
            hot_symbol_share: 0.34,
            command_bytes: 160.0,
            output_bytes: 220.0,
            replication: 3.0,
            trades_per_order: None,
            item_kb: 0.5,
            order_gsis: 2.0,
        }
    }

    #[test]
    fn scales_from_the_knee() {
        let sweep = SweepReport {
            target: "http://127.0.0.1:8080".into(),
            transport: Transport::Ws,
            slo_p99_ms: 10.0,
            knee_orders_per_sec: Some(20_000.0),
            knee_rps: Some(20_000.0),
            stopped: "SLO broken".into(),
            partitions: 2,
            gateways: 1,
            steps: vec![step(10_000.0, 1.0, true), step(20_000.0, 4.0, true), step(30_000.0, 20.0, false)],
        };
        let p = plan(&sweep, &input()).expect("a plan");
        assert_eq!(p.required_rps, 65_000.0);
        // 10,000 per shard → 7 shards; 20,000 per gateway → 4 gateways.
        assert_eq!(p.engine_shards, 7);
        assert_eq!(p.partitions, 16);
        assert_eq!(p.gateways, 4);
        assert!((p.trades_per_sec - 13_000.0).abs() < 1e-6, "the sweep's 0.2 trades per order");
        assert!(!p.hot_symbol_fits_one_shard, "34% of 65k is more than one 10k shard");
        assert!(p.table().contains("DOES NOT fit"));
        let none = SweepReport { knee_orders_per_sec: None, ..sweep };
        assert!(plan(&none, &input()).is_err());
    }
}
