//! The load tester against a real exchange on 127.0.0.1:0: every transport completes its
//! schedule without errors, answers are interpreted (resting orders are later cancelled
//! and amended, trades are matched with the market-data stream), and the summary has the
//! fields scripts depend on. Small, bounded rates: this checks behaviour, not speed.

mod common;

use std::time::Duration;

use common::Server;
use tachyon_loadtest::flow::Mix;
use tachyon_loadtest::report::{Judgement, Summary};
use tachyon_loadtest::run::{self, ResponseMode, RunConfig, RunOutput, Transport};
use tachyon_loadtest::schedule::Schedule;

fn config(server: &Server, transport: Transport, response: ResponseMode, per_sec: f64) -> RunConfig {
    RunConfig {
        target: server.base.clone(),
        schedule: Schedule::constant(per_sec, 1.5).expect("schedule"),
        warmup_secs: 0.5,
        transport,
        response,
        batch_size: 10,
        symbols: Some(vec!["BTC-USD".into(), "ETH-USD".into()]),
        zipf: 1.1,
        mix: Mix { passive: 50, aggressive: 30, cancel: 15, amend: 5 },
        seed: 7,
        threads: 1,
        max_connections: 64,
        timeout: Duration::from_secs(10),
        timer_resolution: Duration::from_micros(100),
        end_to_end: true,
        progress: false,
    }
}

async fn drive(server: &Server, config: RunConfig) -> RunOutput {
    let keys = tachyon_loadtest::keys::mint(server.dir.path(), 4).expect("keys from the data dir");
    tokio::task::spawn_blocking(move || run::run(&config, &keys, None)).await.expect("joins").expect("runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_result_mode_trades_cancels_amends_and_measures_end_to_end() {
    let server = Server::start().await;
    let config = config(&server, Transport::Rest, ResponseMode::Result, 300.0);
    let out = drive(&server, config.clone()).await;
    let t = &out.total;
    assert_eq!(t.errors, 0, "{:?}", t.codes);
    assert!((440..=460).contains(&t.requests), "1.5 s at 300/s: {}", t.requests);
    assert!(t.trades > 0, "aggressive orders traded against resting ones");
    assert!(!t.e2e.is_empty(), "trades were matched on the market-data stream");
    assert!(out.end_to_end);

    let summary = Summary::new(&config, &out, &Judgement::default());
    let json = serde_json::to_value(&summary).expect("serialises");
    for field in ["target_rps", "achieved_rps", "requests", "errors"] {
        assert!(json[field].is_number(), "{field}: {json}");
    }
    for p in ["p50", "p90", "p99", "p999", "max"] {
        assert!(json["latency_ms"][p].is_number(), "latency_ms.{p}");
    }
    assert_eq!(json["target_rps"], 300.0);
    let dir = tempfile::tempdir().expect("tempdir");
    tachyon_loadtest::report::write_run(dir.path(), &summary, &out).expect("written");
    for file in ["summary.json", "latency.hgrm", "service_time.hgrm", "end_to_end.hgrm", "latency.hlog", "report.html"]
    {
        assert!(dir.path().join(file).exists(), "{file}");
    }
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_and_batch_order_entry_complete_their_schedules() {
    let server = Server::start().await;
    let ws = drive(&server, config(&server, Transport::Ws, ResponseMode::Result, 300.0)).await;
    assert_eq!(ws.total.errors, 0, "{:?}", ws.total.codes);
    assert!((440..=460).contains(&ws.total.requests), "{}", ws.total.requests);
    assert!(ws.total.trades > 0);

    // 300 orders/s in batches of 10: 30 requests/s.
    let mut batch = config(&server, Transport::Batch, ResponseMode::Ack, 30.0);
    batch.end_to_end = false;
    let out = drive(&server, batch).await;
    assert_eq!(out.total.errors, 0, "{:?}", out.total.codes);
    assert!((44..=46).contains(&out.total.requests), "{}", out.total.requests);
    assert_eq!(out.total.orders, out.total.requests * 10);
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_receive_the_book_and_trades_and_measure_delivery() {
    let server = Server::start().await;
    let config = tachyon_loadtest::subscribers::SubscriberConfig {
        target: server.base.clone(),
        subscribers: 3,
        channels: vec!["book".into(), "trades".into()],
        symbols: vec!["BTC-USD".into()],
        duration: Duration::from_millis(2500),
        threads: 1,
    };
    let out = tempfile::tempdir().expect("tempdir");
    let dir = out.path().to_path_buf();
    let listening = tokio::task::spawn_blocking(move || tachyon_loadtest::subscribers::run(&config, &dir));
    // Give the subscribers time to connect, then trade five times.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (alice, bob) = (server.client("alice"), server.client("bob"));
    for _ in 0..5 {
        alice.limit("BTC-USD", "sell", "30000.00", "0.1").await;
        bob.limit("BTC-USD", "buy", "30000.00", "0.1").await;
    }
    let report = listening.await.expect("joins").expect("runs");
    assert_eq!(report.connected, 3);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    // Every subscriber saw the five trades (and their book updates).
    assert_eq!(report.trade_delay_ms.count, 15, "{report:?}");
    assert!(report.messages >= 3 * (1 + 5 + 10), "a snapshot, five trades, ten book updates each: {report:?}");
    assert_eq!(report.book_resyncs, 0);
    for file in ["subscribers.json", "trade_delay.hgrm", "fanout_spread.hgrm", "report.html"] {
        assert!(out.path().join(file).exists(), "{file}");
    }
    server.stop().await.expect("clean stop");
}
