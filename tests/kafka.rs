//! Distributed mode against a real broker (tansu, started by `infra/local/kafka.sh`): the
//! roles as separate `tachyon` processes over Kafka, each test on topics of its own.
//!
//! - an order trades across gateway, engine and market-data processes, with two gateways;
//! - two engines each own one partition; a second engine for the same shards waits as a
//!   standby and takes over (lease) when the first is killed, with no gap or duplicate;
//! - SIGKILL of an engine (several times, mid-stream) leaves the executions and market-data
//!   topics equal, record for record, to the reference run: no gap, no duplicate;
//! - SIGKILL of a gateway loses no acknowledged order and duplicates none; a market-data
//!   server killed and restarted serves what an uninterrupted one serves;
//! - a poison command lands in the dead-letter topic and the shard goes on;
//! - without a broker the gateway answers 503 with `Retry-After`, and recovers.

mod common;
#[path = "support/kafka.rs"]
mod kafka;
#[path = "support/local_server.rs"]
mod local_server;
#[path = "support/reference.rs"]
mod reference;
use reference::read_outputs;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::process::{client, free_port, sigkill, spawn_command, start_command, Process};
use common::Client;
use serde_json::{json, Value};
use tachyon_bus::{Backbone, KafkaBus, KafkaConfig};
use tachyon_gateway::KeyRing;
use tachyon_proto::symbol::{default_symbols, partition_for};
use tachyon_proto::wire::{encode, CommandEnvelope};
use tachyon_proto::{Event, SymbolId, Topic};

const PARTITIONS: u32 = 2;

/// One test's exchange: a data directory (shared key secret, logs), a topic prefix and a
/// configuration file every process of the test uses.
struct Cluster {
    dir: tempfile::TempDir,
    prefix: String,
    brokers: String,
    keys: KeyRing,
}

impl Cluster {
    fn new(label: &str, config: &str) -> Self {
        Self::on(kafka::brokers(), label, config)
    }

    fn on(brokers: String, label: &str, config: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("tachyon.toml"), config).expect("config file");
        let keys = KeyRing::load_or_create(dir.path()).expect("key secret");
        Self { dir, prefix: kafka::topic_prefix(label), brokers, keys }
    }

    fn args(&self) -> Vec<String> {
        let dir = self.dir.path();
        [
            "--kafka",
            &self.brokers,
            "--topic-prefix",
            &self.prefix,
            "--partitions",
            &PARTITIONS.to_string(),
            "--config",
            &dir.join("tachyon.toml").display().to_string(),
        ]
        .map(String::from)
        .to_vec()
    }

    /// Starts `tachyon <role…>` on `port`, waits until it is ready.
    async fn start(&self, role: &[&str], port: u16, log: &str) -> Process {
        let args = self.args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        start_command(self.dir.path(), port, role, &args, &[], log).await
    }

    /// The test's own client of the topics.
    fn bus(&self) -> KafkaBus {
        let mut config = KafkaConfig::new(&self.brokers, PARTITIONS);
        config.topic_prefix.clone_from(&self.prefix);
        config.client_id = "test".into();
        KafkaBus::connect(&config).expect("connects")
    }

    fn client(&self, p: &Process, account: &str) -> Client {
        client(&p.base, &self.keys, account)
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    /// The last lines of a log, warnings and errors only, for a failure message.
    fn tail(&self, name: &str) -> String {
        let log = self.log(name);
        let lines: Vec<&str> = log.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

fn public(p: &Process) -> Client {
    Client { base: p.base.clone(), key: None, http: reqwest::Client::new() }
}

fn produce(bus: &KafkaBus, partition: u32, commands: &[CommandEnvelope]) {
    let mut payloads: Vec<Vec<u8>> = commands.iter().map(|c| encode(c).expect("encodes")).collect();
    tachyon_bus::produce_blocking(bus, Topic::Orders, partition, &mut payloads).expect("produced");
}

/// The first default symbol on each partition.
fn symbol_per_partition() -> Vec<(u32, SymbolId, String)> {
    (0..PARTITIONS)
        .map(|p| {
            let spec = default_symbols()
                .into_iter()
                .find(|s| partition_for(&s.name, PARTITIONS) == p)
                .expect("a symbol on every partition");
            (p, spec.id, spec.name)
        })
        .collect()
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool, within: Duration) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_trades_across_gateway_engine_and_marketdata_processes() {
    let cluster = Cluster::new("roles", "[gateway]\nmarket_data = false\n");
    let engine = cluster.start(&["engine"], free_port(), "engine.log").await;
    let gateway = cluster.start(&["gateway", "--gateway-id", "7"], free_port(), "gateway.log").await;
    let other = cluster.start(&["gateway", "--gateway-id", "8"], free_port(), "gateway8.log").await;
    let market = cluster.start(&["marketdata"], free_port(), "marketdata.log").await;
    // Two gateways at once: each gets its own replies, and sees the other's orders.
    let (alice, bob) = (cluster.client(&gateway, "alice"), cluster.client(&other, "bob"));

    let resting = alice.limit("BTC-USD", "sell", "30000.00", "0.5").await;
    assert_eq!(resting["status"], "new", "{resting}");
    let id = resting["order_id"].as_str().expect("id");
    assert_eq!(id.parse::<u64>().expect("numeric id") & 1023, 7, "the gateway id is in the order id");
    let taker = bob.limit("BTC-USD", "buy", "30000.00", "0.5").await;
    assert_eq!(taker["status"], "filled", "{taker}");
    let taker_id = taker["order_id"].as_str().expect("id").parse::<u64>().expect("numeric");
    assert_eq!(taker_id & 1023, 8, "ids from the other gateway");
    let seen = alice.get_when(&format!("/v1/orders/{id}"), |o| o["status"] == "filled").await;
    assert_eq!(seen["filled_quantity"], "0.5", "{seen}");
    let elsewhere = cluster.client(&gateway, "bob").get(&format!("/v1/orders/{taker_id}")).await;
    assert_eq!(elsewhere.body["status"], "filled", "gateway 7 knows gateway 8's order: {}", elsewhere.body);
    let fills = bob.get("/v1/fills").await;
    assert_eq!(fills.body.as_array().map(Vec::len), Some(1), "{}", fills.body);

    // The market-data server saw the trade from the marketdata topic.
    let md = public(&market);
    let trades = md.get_when("/v1/trades/BTC-USD", |b| b.as_array().is_some_and(|t| t.len() == 1)).await;
    assert_eq!(trades[0]["price"], "30000.00", "{trades}");
    assert_eq!(trades[0]["quantity"], "0.5", "{trades}");
    // It takes no orders and has no private routes.
    let refused = client(&market.base, &cluster.keys, "alice")
        .post(
            "/v1/orders",
            &json!({"symbol": "BTC-USD", "side": "buy", "type": "limit", "price": "1.00", "quantity": "1"}),
        )
        .await;
    refused.expect_error(404, "not_found");
    // The engine process serves only operations endpoints.
    let metrics = reqwest::get(format!("{}/metrics", engine.base)).await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("tachyon_engine_commands_total{partition=\"0\"}"), "{metrics}");
}

/// `tachyon keys <args>` against the cluster's brokers with `data_dir`: (stdout, stderr).
fn keys_command(cluster: &Cluster, data_dir: &std::path::Path, args: &[&str]) -> (String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tachyon"))
        .arg("keys")
        .args(args)
        .args(cluster.args())
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("tachyon keys runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "tachyon keys {args:?}: {stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

/// A key revoked on one machine is refused by every gateway of the cluster within 2 s,
/// and by a gateway started later: the revocation travels on the keys topic, not through
/// a shared data directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reaches_every_gateway_through_the_keys_topic() {
    let cluster = Cluster::new("keys", "[gateway]\nmarket_data = false\n");
    let secret = std::fs::read(cluster.dir.path().join(tachyon_gateway::auth::SECRET_FILE)).expect("secret");
    // "Another machine": a data directory of its own that shares only the key secret.
    let machine = || {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(tachyon_gateway::auth::SECRET_FILE), &secret).expect("secret");
        dir
    };
    let _engine = cluster.start(&["engine"], free_port(), "engine.log").await;
    let here = cluster.start(&["gateway", "--gateway-id", "1"], free_port(), "gateway1.log").await;
    let (there_dir, later_dir, operator_dir) = (machine(), machine(), machine());
    let args = cluster.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let there =
        start_command(there_dir.path(), free_port(), &["gateway", "--gateway-id", "2"], &args, &[], "gateway2.log")
            .await;

    let (key, report) = keys_command(&cluster, cluster.dir.path(), &["mint", "alice"]);
    let (key, id) = (key.trim().to_string(), report.trim().strip_prefix("key_id: ").expect("key id").to_string());
    let client = |p: &Process| Client { base: p.base.clone(), key: Some(key.clone()), http: reqwest::Client::new() };
    for gateway in [&here, &there] {
        assert_eq!(client(gateway).get("/v1/orders").await.status, 200);
    }
    // The operator's machine knows the key from the topic alone.
    let listed = keys_command(&cluster, operator_dir.path(), &["list", "alice"]).0;
    assert!(listed.contains(&format!(r#""key_id":"{id}""#)), "{listed}");

    keys_command(&cluster, operator_dir.path(), &["revoke", &id]);
    let start = Instant::now();
    for gateway in [&here, &there] {
        loop {
            let answer = client(gateway).get("/v1/orders").await;
            if answer.status == 401 {
                answer.expect_error(401, "key_revoked");
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(2), "{}: the key still works after 2 s", gateway.base);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    eprintln!("the revocation reached both gateways over Kafka in {:?}", start.elapsed());
    assert!(keys_command(&cluster, operator_dir.path(), &["list", "alice"]).0.contains(r#""revoked":true"#));
    // A gateway that starts afterwards refuses the key from its first request.
    let later =
        start_command(later_dir.path(), free_port(), &["gateway", "--gateway-id", "3"], &args, &[], "gateway3.log")
            .await;
    client(&later).get("/v1/orders").await.expect_error(401, "key_revoked");
}

/// Read-your-writes on one gateway over Kafka: once it answered a command, its own REST
/// book and trades show it, with no wait (the answer waits for the command's market
/// data instead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateways_own_book_and_trades_reflect_what_it_answered() {
    let cluster = Cluster::new("ryw", "");
    let _engine = cluster.start(&["engine"], free_port(), "engine.log").await;
    let gateway = cluster.start(&["gateway"], free_port(), "gateway.log").await;
    let (alice, bob) = (cluster.client(&gateway, "alice"), cluster.client(&gateway, "bob"));
    let level = |book: &Value, side: &str, price: &str| {
        book[side].as_array().is_some_and(|levels| levels.iter().any(|l| l[0] == price))
    };
    for round in 0..20 {
        let price = format!("{}.00", 31_000 + round);
        let placed = alice.limit("BTC-USD", "sell", &price, "0.1").await;
        assert_eq!(placed["status"], "new", "{placed}");
        let book = alice.get("/v1/book/BTC-USD?depth=100").await.body;
        assert!(level(&book, "asks", &price), "round {round}: the placed ask is in the book: {book}");
        let id = placed["order_id"].as_str().expect("id");
        let cancelled = alice.delete(&format!("/v1/orders/{id}")).await;
        assert_eq!(cancelled.body["status"], "cancelled", "{}", cancelled.body);
        let book = alice.get("/v1/book/BTC-USD?depth=100").await.body;
        assert!(!level(&book, "asks", &price), "round {round}: the cancelled ask is gone: {book}");
    }
    // A trade answered to the taker is in the gateway's trades at once.
    alice.limit("BTC-USD", "sell", "30500.00", "0.2").await;
    let taker = bob.limit("BTC-USD", "buy", "30500.00", "0.2").await;
    assert_eq!(taker["status"], "filled", "{taker}");
    let trades = bob.get("/v1/trades/BTC-USD").await.body;
    assert!(
        trades.as_array().is_some_and(|t| t.iter().any(|t| t["price"] == "30500.00")),
        "the answered trade is listed: {trades}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_own_one_partition_each() {
    let cluster = Cluster::new("two", "");
    let zero = cluster.start(&["engine", "--shards", "0"], free_port(), "engine0.log").await;
    let one = cluster.start(&["engine", "--shards", "1"], free_port(), "engine1.log").await;
    let gateway = cluster.start(&["gateway"], free_port(), "gateway.log").await;
    let (alice, bob) = (cluster.client(&gateway, "alice"), cluster.client(&gateway, "bob"));
    for (_, _, symbol) in symbol_per_partition() {
        alice.limit(&symbol, "sell", "10.00", "1").await;
        let taker = bob.limit(&symbol, "buy", "10.00", "1").await;
        assert_eq!(taker["status"], "filled", "{symbol}: {taker}");
    }
    for (engine, mine, theirs) in [(&zero, "0", "1"), (&one, "1", "0")] {
        let text = reqwest::get(format!("{}/metrics", engine.base)).await.expect("metrics").text().await.expect("text");
        let commands = |p: &str| format!("tachyon_engine_commands_total{{partition=\"{p}\"}} 2");
        assert!(text.contains(&commands(mine)), "engine {mine} ran its two commands:\n{text}");
        assert!(!text.contains(&format!("partition=\"{theirs}\"}} ")), "engine {mine} has no shard {theirs}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_engine_for_the_same_shards_waits_and_takes_over() {
    let cluster = Cluster::new("standby", "[kafka]\nlease_ttl_ms = 1000\n");
    let mut first = cluster.start(&["engine"], free_port(), "engine-a.log").await;
    let gateway = cluster.start(&["gateway"], free_port(), "gateway.log").await;
    let (alice, bob) = (cluster.client(&gateway, "alice"), cluster.client(&gateway, "bob"));
    let args = cluster.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut second = spawn_command(cluster.dir.path(), free_port(), &["engine"], &args, &[], "engine-b.log");
    let http = reqwest::Client::new();
    for round in 0..5 {
        alice.limit("BTC-USD", "sell", "10.00", "1").await;
        assert_eq!(bob.limit("BTC-USD", "buy", "10.00", "1").await["status"], "filled", "round {round}");
        assert!(!second.is_ready(&http).await, "the standby does not run the shards");
    }
    sigkill(&mut first);
    second.wait_ready(Duration::from_secs(60)).await;
    for round in 5..10 {
        alice.limit("BTC-USD", "sell", "10.00", "1").await;
        assert_eq!(bob.limit("BTC-USD", "buy", "10.00", "1").await["status"], "filled", "round {round}");
    }
    // One writer at a time: the outputs are consecutive, each sequence once.
    let bus = cluster.bus();
    let partition = partition_for("BTC-USD", PARTITIONS);
    let mut sequences: Vec<u64> = read_outputs(&bus, Topic::Executions, partition).iter().map(|o| o.seq).collect();
    sequences.extend(read_outputs(&bus, Topic::MarketData, partition).iter().map(|o| o.seq));
    sequences.sort_unstable();
    assert_eq!(sequences, (1..=sequences.len() as u64).collect::<Vec<_>>(), "no gap, no duplicate");
    assert!(cluster.log("engine-b.log").contains("shard lease expired"), "took over after the ttl");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_engine_mid_stream_leaves_outputs_equal_to_the_reference() {
    // Small snapshot interval: the restarts recover from snapshots on the snapshots topic.
    // A short lease: each restart after a SIGKILL waits it out.
    let config = "[snapshots]\nevery_commands = 2500\nevery_secs = 1\n[kafka]\nlease_ttl_ms = 1000\n";
    let cluster = Cluster::new("enginekill", config);
    let per_partition = 10_000;
    let streams: Vec<(u32, Vec<CommandEnvelope>)> = symbol_per_partition()
        .into_iter()
        .map(|(p, symbol, _)| (p, reference::commands_on(symbol, 1_000_000 * u64::from(p + 1), 0..per_partition)))
        .collect();
    let bus = Arc::new(cluster.bus());
    let produced = Arc::new(AtomicBool::new(false));
    let producer = {
        let (bus, streams, produced) = (Arc::clone(&bus), streams.clone(), Arc::clone(&produced));
        std::thread::spawn(move || {
            for chunk in 0..20 {
                for (p, commands) in &streams {
                    let size = commands.len() / 20;
                    produce(&bus, *p, &commands[chunk * size..(chunk + 1) * size]);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            for (p, _) in &streams {
                bus.flush(Topic::Orders, *p, Duration::from_secs(30)).expect("flushed");
            }
            produced.store(true, Ordering::Release);
        })
    };

    let port = free_port();
    let mut engine = cluster.start(&["engine"], port, "engine.log").await;
    for pause_ms in [300, 700, 1_500] {
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        sigkill(&mut engine);
        engine = cluster.start(&["engine"], port, "engine.log").await;
    }
    producer.join().expect("producer");
    assert!(produced.load(Ordering::Acquire));

    for (p, commands) in &streams {
        let (executions, market_data) = reference::expected_on(*p, commands);
        wait_for(
            "the engine to publish every output",
            || {
                bus.end_offset(Topic::Executions, *p).expect("end") >= executions.len() as u64
                    && bus.end_offset(Topic::MarketData, *p).expect("end") >= market_data.len() as u64
            },
            Duration::from_secs(120),
        )
        .await;
        let got = read_outputs(bus.as_ref(), Topic::Executions, *p);
        assert_eq!(got.len(), executions.len(), "partition {p}: no gap, no duplicate in executions");
        assert!(got == executions, "partition {p}: executions equal the reference run");
        let got = read_outputs(bus.as_ref(), Topic::MarketData, *p);
        assert_eq!(got.len(), market_data.len(), "partition {p}: no gap, no duplicate in market data");
        assert!(got == market_data, "partition {p}: market data equals the reference run");
    }
    let log = cluster.log("engine.log");
    assert!(log.contains("snapshot written"), "snapshots were taken");
    assert!(log.matches("shard recovering").count() >= 8, "four starts of two shards");
    drop(engine);
}

/// Places acknowledged orders until `stop`; returns the ids the gateway acknowledged.
async fn place_until(alice: Client, bob: Client, stop: Arc<AtomicBool>) -> Vec<String> {
    let mut acked = Vec::new();
    let mut i = 0u32;
    while !stop.load(Ordering::Acquire) {
        let (c, side, price) = if i % 2 == 0 { (&alice, "sell", 100 + i % 5) } else { (&bob, "buy", 98 + i % 6) };
        let body = json!({"symbol": "BTC-USD", "side": side, "type": "limit", "price": format!("{price}.00"), "quantity": "1"});
        let request = c
            .http
            .post(format!("{}/v1/orders?response=ack", c.base))
            .header("X-API-Key", c.key.as_deref().expect("a key"));
        // A refused connection (the gateway is down) is not an acknowledgement.
        if let Ok(response) = request.json(&body).send().await {
            if response.status() == 202 {
                let body: Value = response.json().await.expect("json");
                acked.push(body["order_id"].as_str().expect("id").to_string());
            }
        }
        i += 1;
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_a_gateway_or_marketdata_server_loses_and_doubles_nothing() {
    let cluster = Cluster::new("gwkill", "");
    let _engine = cluster.start(&["engine"], free_port(), "engine.log").await;
    let gateway_port = free_port();
    let mut gateway = cluster.start(&["gateway"], gateway_port, "gateway.log").await;
    let steady = cluster.start(&["marketdata"], free_port(), "marketdata-steady.log").await;
    let killed_port = free_port();
    let mut killed = cluster.start(&["marketdata"], killed_port, "marketdata-killed.log").await;

    let stop = Arc::new(AtomicBool::new(false));
    let placing = tokio::spawn(place_until(
        cluster.client(&gateway, "alice"),
        cluster.client(&gateway, "bob"),
        Arc::clone(&stop),
    ));
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    sigkill(&mut gateway);
    sigkill(&mut killed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    gateway = cluster.start(&["gateway"], gateway_port, "gateway.log").await;
    killed = cluster.start(&["marketdata"], killed_port, "marketdata-killed.log").await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    stop.store(true, Ordering::Release);
    let acked = placing.await.expect("placing");
    assert!(acked.len() > 10, "orders flowed before and after the restart: {}", acked.len());

    // Every acknowledged order reached the engine exactly once.
    let bus = cluster.bus();
    let partition = partition_for("BTC-USD", PARTITIONS);
    let mut seen: HashMap<u64, usize> = HashMap::new();
    wait_for(
        "every acknowledged order in the executions",
        || {
            seen.clear();
            for output in read_outputs(&bus, Topic::Executions, partition) {
                let accepted = output.events.iter().find_map(|e| match e {
                    Event::Accepted(order) => Some(order.order_id),
                    _ => None,
                });
                if let Some(order_id) = accepted.or(output.rejected.map(|o| o.order_id)) {
                    *seen.entry(order_id.0).or_default() += 1;
                }
            }
            acked.iter().all(|id| seen.contains_key(&id.parse().expect("numeric")))
        },
        Duration::from_secs(60),
    )
    .await;
    assert!(seen.values().all(|&n| n == 1), "no command twice");
    // The restarted gateway knows them all (rebuilt from the executions topic).
    let alice = cluster.client(&gateway, "alice");
    let bob = cluster.client(&gateway, "bob");
    for id in &acked {
        let (a, b) = (alice.get(&format!("/v1/orders/{id}")).await, bob.get(&format!("/v1/orders/{id}")).await);
        assert!(a.status == 200 || b.status == 200, "order {id} known after the restart");
    }
    // The restarted market-data server serves what the uninterrupted one serves.
    let end = bus.end_offset(Topic::MarketData, partition).expect("end");
    let sequence_at_end = |b: &Value| b["sequence"].as_u64().is_some_and(|s| s > 0);
    let steady_book = public(&steady).get_when("/v1/book/BTC-USD?depth=1000", sequence_at_end).await;
    let mut killed_book = Value::Null;
    for _ in 0..100 {
        killed_book = public(&killed).get("/v1/book/BTC-USD?depth=1000").await.body;
        if killed_book == steady_book {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(end > 0);
    assert_eq!(killed_book, steady_book, "the same book after a SIGKILL and restart");
    let path = "/v1/trades/BTC-USD?limit=1000";
    assert_eq!(public(&killed).get(path).await.body, public(&steady).get(path).await.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_command_goes_to_the_dead_letter_topic_and_the_shard_goes_on() {
    let cluster = Cluster::new("poison", "");
    let bus = cluster.bus();
    let (partition, symbol, _) = symbol_per_partition()[1].clone();
    let commands = reference::commands_on(symbol, 5_000_000, 0..20);
    produce(&bus, partition, &commands[..10]);
    let mut poison = vec![b"\x01not a command".to_vec()];
    tachyon_bus::produce_blocking(&bus, Topic::Orders, partition, &mut poison).expect("produced");
    produce(&bus, partition, &commands[10..]);
    bus.flush(Topic::Orders, partition, Duration::from_secs(10)).expect("flushed");

    let _engine = cluster.start(&["engine"], free_port(), "engine.log").await;
    wait_for(
        "the commands after the poison",
        || bus.end_offset(Topic::Executions, partition).expect("end") >= 20,
        Duration::from_secs(30),
    )
    .await;
    let outputs = read_outputs(&bus, Topic::Executions, partition);
    assert_eq!(outputs.len(), 20, "every valid command, none for the poison");
    assert_eq!(outputs[10].input_offset, 11, "the shard went on past offset 10");
    let end = bus.end_offset(Topic::DeadLetter, partition).expect("end");
    assert_eq!(end, 1, "one dead letter");
    let mut reader = bus.reader(Topic::DeadLetter, partition, 0).expect("reader");
    let mut letters = Vec::new();
    reader.poll(&mut letters, 1, Duration::from_secs(10)).expect("poll");
    let letter: Value = serde_json::from_slice(&letters[0].payload).expect("json letter");
    assert_eq!(letter["source_topic"], "tachyon.orders");
    assert_eq!(letter["offset"], 10);
    assert!(letter["error"].as_str().is_some_and(|e| !e.is_empty()), "{letter}");
}

/// A broker of this test's own, so stopping it disturbs no other test.
struct OwnBroker {
    port: u16,
    dir: tempfile::TempDir,
}

impl OwnBroker {
    fn start() -> Self {
        let broker = Self { port: free_port(), dir: tempfile::tempdir().expect("tempdir") };
        broker.run("start");
        broker
    }

    fn run(&self, command: &str) -> String {
        local_server::run(&local_server::script("kafka.sh"), command, self.port, self.dir.path())
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        self.run("stop");
    }
}

async fn place(c: &Client) -> common::Answer {
    c.post(
        "/v1/orders?response=ack",
        &json!({"symbol": "BTC-USD", "side": "buy", "type": "limit", "price": "10.00", "quantity": "1"}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_broker_the_gateway_answers_503_and_recovers() {
    let broker = OwnBroker::start();
    let cluster = Cluster::on(broker.run("url"), "outage", "[kafka]\ndelivery_timeout_ms = 2000\n");
    let port = free_port();
    let mut exchange = cluster.start(&["run"], port, "run.log").await;
    let alice = cluster.client(&exchange, "alice");
    let first = place(&alice).await;
    assert_eq!(first.status, 202, "{}", first.body);
    let first = first.body["order_id"].as_str().expect("an id").to_string();

    broker.run("stop");
    let deadline = Instant::now() + Duration::from_secs(30);
    let refused = loop {
        let answer = place(&alice).await;
        if answer.status == 503 {
            break answer;
        }
        assert!(Instant::now() < deadline, "never refused: {} {}", answer.status, answer.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    refused.expect_error(503, "unavailable");
    assert!(refused.headers.contains_key("retry-after"), "{:?}", refused.headers);
    let ready = reqwest::get(format!("{}/readyz", exchange.base)).await.expect("readyz");
    assert_eq!(ready.status(), 503, "not ready without a broker");

    broker.run("start");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // tansu forgets idempotent-producer state when it restarts: an engine output that
        // was in flight then is refused, and the process stops into recovery (Kafka keeps
        // that state). Restart it as a supervisor would; nothing may be lost either way.
        if let Ok(Some(status)) = exchange.child.try_wait() {
            assert!(!status.success(), "it stops with an error, for its supervisor");
            exchange = cluster.start(&["run"], port, "run.log").await;
        }
        let answer = place(&alice).await;
        if answer.status == 202 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never recovered: {} {}\n{}",
            answer.status,
            answer.body,
            cluster.tail("run.log")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ready = reqwest::get(format!("{}/readyz", exchange.base)).await.expect("readyz");
    assert_eq!(ready.status(), 200, "ready again");
    // Its report may still be on its way (the engine's producer reconnects with backoff).
    let deadline = Instant::now() + Duration::from_secs(30);
    while alice.get(&format!("/v1/orders/{first}")).await.status != 200 {
        assert!(Instant::now() < deadline, "the order acknowledged before the outage was lost");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The engine and the feeds came back too: an order is matched and answered.
    let bob = cluster.client(&exchange, "bob");
    let answered = bob
        .post(
            "/v1/orders",
            &json!({"symbol": "BTC-USD", "side": "sell", "type": "limit", "price": "10.00", "quantity": "1"}),
        )
        .await;
    assert_eq!(
        answered.body["status"],
        "filled",
        "crosses alice's bids: {}\n{}",
        answered.body,
        cluster.tail("run.log")
    );
}
