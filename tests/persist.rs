//! Persistence of the whole exchange to a real PostgreSQL (`infra/local/postgres.sh`):
//! thousands of orders end in the database exactly as the API reports them; a SIGKILL of
//! the process mid-stream loses and doubles nothing; a database that goes away mid-stream
//! makes `/readyz` say so, and everything is caught up once it is back. And the binary
//! persisting to PostgreSQL and DynamoDB (moto, `infra/local/dynamodb.sh`) at once.

mod common;
#[path = "support/dynamodb.rs"]
mod ddb;
#[path = "support/kafka.rs"]
mod kafka;
#[path = "support/local_server.rs"]
mod local_server;
#[path = "support/postgres.rs"]
mod pg;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::process::{client, free_port, sigkill, start, start_command, start_with_env};
use common::{Client, Server};
use deadpool_postgres::tokio_postgres::Client as Db;
use serde_json::{json, Value};
use tachyon::config::Config;
use tachyon_gateway::KeyRing;
use tachyon_proto::symbol::default_symbols;
use tachyon_proto::SymbolSpec;

const SYMBOLS: [&str; 3] = ["BTC-USD", "ETH-USD", "SOL-USD"];
const ACCOUNTS: [&str; 4] = ["ann", "ben", "cat", "dan"];

/// Fast retries, so a test sees the circuit open and close within moments.
fn persist_to(config: &mut Config, url: &str) {
    config.postgres.url = url.to_owned();
    config.rate_limit.per_second = 1_000_000;
    config.rate_limit.burst = 1_000_000;
    config.persist.retry_attempts = 2;
    config.persist.retry_base_ms = 5;
    config.persist.retry_max_ms = 20;
    config.persist.circuit_open_ms = 50;
    config.persist.circuit_max_open_ms = 200;
    config.persist.store_check_ms = 100;
}

/// A batch of 100 orders that rest and cross (limits around 100, some IOC and market).
fn batch(round: u32) -> Value {
    let orders: Vec<Value> = (0..100u32)
        .map(|i| {
            let n = round * 100 + i;
            let symbol = SYMBOLS[(n % 3) as usize];
            let side = if (n / 3) % 2 == 0 { "sell" } else { "buy" };
            let price = format!("{}.00", 97 + (n * 7) % 7);
            match n % 10 {
                0 => json!({"symbol": symbol, "side": side, "type": "market", "quantity": "2"}),
                1 => json!({"symbol": symbol, "side": side, "type": "limit", "time_in_force": "ioc",
                            "price": price, "quantity": "3"}),
                _ => json!({"symbol": symbol, "side": side, "type": "limit", "price": price,
                            "quantity": format!("{}", 1 + n % 4)}),
            }
        })
        .collect();
    json!({ "orders": orders })
}

/// Sends `rounds` batches spread over the accounts; returns (account index, order id).
async fn trade(clients: &[Client], rounds: std::ops::Range<u32>, ack: bool) -> Vec<(usize, String)> {
    let mut ids = Vec::new();
    let path = if ack { "/v1/orders/batch?response=ack" } else { "/v1/orders/batch" };
    for round in rounds {
        let who = round as usize % clients.len();
        let a = clients[who].post(path, &batch(round)).await;
        assert!(a.status.is_success(), "{} {}", a.status, a.body);
        for r in a.body["results"].as_array().expect("results") {
            ids.push((who, r["order_id"].as_str().expect("an order, not an error").to_owned()));
        }
    }
    ids
}

fn metric_sum(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Waits (bounded) until the persister committed everything the engine published.
async fn wait_persisted(base: &str) {
    let http = reqwest::Client::new();
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let text = http.get(format!("{base}/metrics")).send().await.expect("metrics").text().await.expect("text");
        let lag = metric_sum(&text, "tachyon_consumer_lag_records");
        let committed = metric_sum(&text, "tachyon_consumer_committed_offset");
        if lag == 0 && committed > 0 {
            return;
        }
        assert!(Instant::now() < until, "persistence did not catch up (lag {lag})");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn spec(symbol: &str) -> SymbolSpec {
    default_symbols().into_iter().find(|s| s.name == symbol).expect("a default symbol")
}

/// The database holds every order the exchange holds (`acked` among them), each in the
/// state the API reports; trades and fills are consistent and stored once.
async fn assert_db_matches_api(db: &Db, base: &str, clients: &[Client], acked: &[(usize, String)]) {
    let rows = db
        .query("SELECT order_id, account, status, filled_lots, quantity_lots FROM orders", &[])
        .await
        .expect("orders");
    let http = reqwest::Client::new();
    let metrics = http.get(format!("{base}/metrics")).send().await.expect("metrics").text().await.expect("text");
    let held = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tachyon_gateway_orders_held "))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .expect("orders held");
    assert_eq!(rows.len(), held, "one row per order the exchange holds");
    let stored: HashMap<String, &deadpool_postgres::tokio_postgres::Row> =
        rows.iter().map(|r| (r.get::<_, i64>(0).to_string(), r)).collect();
    for (_, id) in acked {
        assert!(stored.contains_key(id), "acknowledged order {id} not persisted");
    }
    let mut fills_seen = 0usize;
    for (id, row) in &stored {
        let who = ACCOUNTS.iter().position(|a| *a == row.get::<_, &str>(1)).expect("a test account");
        let a = clients[who].get(&format!("/v1/orders/{id}")).await;
        assert_eq!(a.status, 200, "{}", a.body);
        let o = &a.body;
        let lot = spec(o["symbol"].as_str().expect("symbol")).lot;
        let filled = lot.steps(o["filled_quantity"].as_str().expect("filled")).expect("on the grid");
        let qty = lot.steps(o["quantity"].as_str().expect("quantity")).expect("on the grid");
        let db = (row.get::<_, &str>(2), row.get::<_, i64>(3), row.get::<_, i64>(4));
        assert_eq!(db, (o["status"].as_str().expect("status"), filled, qty), "order {id}");
        fills_seen += o["fills"].as_array().expect("fills").len();
    }
    let count = |sql: &'static str| async move { db.query_one(sql, &[]).await.expect("counts").get::<_, i64>(0) };
    assert!(fills_seen > 100, "the flow trades ({fills_seen} fills)");
    assert_eq!(count("SELECT count(*) FROM fills").await as usize, fills_seen);
    assert_eq!(count("SELECT count(*) FROM trades").await as usize * 2, fills_seen);
    let inconsistent = count(
        "SELECT count(*) FROM orders o
         WHERE filled_lots <> (SELECT coalesce(sum(quantity_lots), 0) FROM fills f WHERE f.order_id = o.order_id)",
    )
    .await;
    assert_eq!(inconsistent, 0, "an order's filled quantity is the sum of its fills");
}

/// DynamoDB's `<prefix>_orders` holds the same order states as PostgreSQL's `orders`.
async fn assert_dynamo_matches_postgres(prefix: &str, db: &Db) {
    let aws = ddb::aws_config().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&aws);
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let out = dynamo
            .scan()
            .table_name(format!("{prefix}_orders"))
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("scans");
        items.extend(out.items().iter().cloned());
        start = out.last_evaluated_key().cloned();
        if start.is_none() {
            break;
        }
    }
    let rows = db.query("SELECT order_id, status, filled_lots FROM orders", &[]).await.expect("orders");
    let in_pg: HashMap<String, (String, String)> =
        rows.iter().map(|r| (r.get::<_, i64>(0).to_string(), (r.get(1), r.get::<_, i64>(2).to_string()))).collect();
    assert_eq!(items.len(), in_pg.len());
    for item in &items {
        let field = |name: &str| {
            let v = &item[name];
            v.as_s().or_else(|_| v.as_n()).expect("a string or number").clone()
        };
        assert_eq!(in_pg[&field("order_id")], (field("status"), field("filled_lots")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_orders_end_in_postgres_as_the_api_reports_them() {
    let url = pg::fresh_database("api").await;
    let server = Server::start_with(|c| persist_to(c, &url)).await;
    let clients: Vec<Client> = ACCOUNTS.iter().map(|a| server.client(a)).collect();
    let ids = trade(&clients, 0..30, false).await;
    assert_eq!(ids.len(), 3_000);
    wait_persisted(&server.base).await;
    let db = pg::connect(&url).await;
    assert_db_matches_api(&db, &server.base, &clients, &ids).await;
    server.stop().await.expect("stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_mid_stream_is_reported_and_caught_up() {
    let private = pg::Private::start();
    let url = pg::create_database(&private.url, "outage").await;
    let server = Server::start_with(|c| persist_to(c, &url)).await;
    let clients: Vec<Client> = ACCOUNTS.iter().map(|a| server.client(a)).collect();
    let mut ids = trade(&clients, 0..5, false).await;
    wait_persisted(&server.base).await;

    private.stop();
    // The exchange keeps trading; persistence waits, and readiness says so.
    ids.extend(trade(&clients, 5..10, false).await);
    let public = server.public();
    let until = Instant::now() + Duration::from_secs(60);
    while public.get("/readyz").await.status != 503 {
        assert!(Instant::now() < until, "/readyz never reported the database outage");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = reqwest::get(format!("{}/metrics", server.base)).await.expect("metrics").text().await.expect("text");
    assert!(metric_sum(&metrics, "tachyon_consumer_circuit_open") > 0, "the circuit is reported open");
    assert!(metric_sum(&metrics, "tachyon_consumer_lag_records") > 0, "persistence waits");

    private.restart();
    wait_persisted(&server.base).await;
    let until = Instant::now() + Duration::from_secs(60);
    while public.get("/readyz").await.status != 200 {
        assert!(Instant::now() < until, "/readyz never recovered after the database came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let db = pg::connect(&url).await;
    assert_db_matches_api(&db, &server.base, &clients, &ids).await;
    server.stop().await.expect("stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_and_doubles_nothing_in_postgres() {
    let url = pg::fresh_database("crash").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = KeyRing::load_or_create(dir.path()).expect("keys");
    let port = free_port();
    let args = ["--postgres", url.as_str(), "--fsync", "none"];
    let mut p = start(dir.path(), port, &args).await;
    let clients: Vec<Client> = ACCOUNTS.iter().map(|a| client(&p.base, &keys, a)).collect();

    // Orders keep arriving (acknowledged once durable) while the process is killed.
    let streaming = {
        let clients = clients.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for round in 0..40u32 {
                let who = round as usize % clients.len();
                let sent = clients[who]
                    .http
                    .post(format!("{}/v1/orders/batch?response=ack", clients[who].base))
                    .header("X-API-Key", clients[who].key.as_deref().expect("key"))
                    .header("content-type", "application/json")
                    .body(batch(round).to_string())
                    .send()
                    .await;
                let Ok(answer) = sent else { break };
                let Ok(body) = answer.json::<Value>().await else { break };
                for r in body["results"].as_array().into_iter().flatten() {
                    if let Some(id) = r["order_id"].as_str() {
                        ids.push((who, id.to_owned()));
                    }
                }
            }
            ids
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    sigkill(&mut p);
    let mut ids = streaming.await.expect("streamed");
    assert!(!ids.is_empty(), "orders were acknowledged before the kill");

    let before = ids.len();
    let p = start(dir.path(), port, &args).await;
    ids.extend(trade(&clients, 40..45, true).await);
    // Wait until every acknowledged order has its final state (ack mode answers early).
    let until = Instant::now() + Duration::from_secs(60);
    for (n, (who, id)) in ids.iter().enumerate() {
        loop {
            let a = clients[*who].get(&format!("/v1/orders/{id}")).await;
            if a.status == 200 && a.body["status"] != "pending" {
                break;
            }
            assert!(
                Instant::now() < until,
                "order {id} (#{n} of {}, {before} before the kill) never settled: {} {}; log in {}",
                ids.len(),
                a.status,
                a.body,
                dir.path().display()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    wait_persisted(&p.base).await;
    let db = pg::connect(&url).await;
    assert_db_matches_api(&db, &p.base, &clients, &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_persists_to_postgres_and_dynamodb_at_once() {
    let url = pg::fresh_database("both").await;
    let endpoint = ddb::endpoint();
    let prefix = ddb::table_prefix("bin");
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = KeyRing::load_or_create(dir.path()).expect("keys");
    let args = [
        "--postgres",
        url.as_str(),
        "--dynamodb-endpoint",
        endpoint.as_str(),
        "--dynamodb-create-tables",
        "--fsync",
        "none",
    ];
    let env = ddb::CHILD_ENV;
    let config = dir.path().join("tachyon.toml");
    std::fs::write(&config, format!("[dynamodb]\ntable_prefix = \"{prefix}\"\n")).expect("config file");
    let mut all_args = vec!["--config", config.to_str().expect("utf-8 path")];
    all_args.extend(args);
    let p = start_with_env(dir.path(), free_port(), &all_args, &env).await;
    let clients: Vec<Client> = ACCOUNTS.iter().map(|a| client(&p.base, &keys, a)).collect();
    let ids = trade(&clients, 0..3, false).await;
    wait_persisted(&p.base).await;
    let db = pg::connect(&url).await;
    assert_db_matches_api(&db, &p.base, &clients, &ids).await;

    assert_dynamo_matches_postgres(&prefix, &db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_and_fills_beyond_memory_are_served_from_postgres() {
    let url = pg::fresh_database("history").await;
    let server = Server::start_with(|c| {
        persist_to(c, &url);
        // Memory keeps almost nothing: lookups must reach PostgreSQL.
        c.gateway.max_closed_orders = 10;
        c.gateway.max_fills_per_account = 5;
    })
    .await;
    let clients: Vec<Client> = ACCOUNTS.iter().map(|a| server.client(a)).collect();
    let ids = trade(&clients, 0..8, false).await;
    wait_persisted(&server.base).await;
    let db = pg::connect(&url).await;

    for (who, id) in &ids {
        let a = clients[*who].get(&format!("/v1/orders/{id}")).await;
        assert_eq!(a.status, 200, "order {id}: {}", a.body);
        let row = db
            .query_one("SELECT status, account FROM orders WHERE order_id = $1", &[&id.parse::<i64>().expect("id")])
            .await
            .expect("persisted");
        assert_eq!(a.body["status"], row.get::<_, &str>(0));
        assert_eq!(a.body["account_id"], row.get::<_, &str>(1));
        let fills = a.body["fills"].as_array().expect("fills").len();
        let filled = a.body["filled_quantity"].as_str().expect("filled");
        assert_eq!(fills == 0, filled == "0", "order {id}: fills and filled quantity agree");
        // Another account's order is refused, from history as from memory.
        let other = &clients[(*who + 1) % clients.len()];
        other.get(&format!("/v1/orders/{id}")).await.expect_error(403, "not_order_owner");
    }
    clients[0].get("/v1/orders/123456789").await.expect_error(404, "order_not_found");

    for (who, account) in ACCOUNTS.iter().enumerate() {
        let a = clients[who].get("/v1/fills?limit=1000").await;
        assert_eq!(a.status, 200);
        let got: Vec<(String, String)> = a
            .body
            .as_array()
            .expect("fills")
            .iter()
            .map(|f| (f["trade_id"].as_str().expect("id").to_owned(), f["liquidity"].as_str().expect("l").to_owned()))
            .collect();
        let rows = db
            .query(
                "SELECT trade_id, liquidity FROM fills WHERE account = $1 ORDER BY executed_at DESC, trade_id DESC",
                &[account],
            )
            .await
            .expect("fills");
        let expected: Vec<(String, String)> =
            rows.iter().map(|r| (r.get::<_, i64>(0).to_string(), r.get::<_, String>(1))).collect();
        assert!(expected.len() > 5, "{account} has more fills than memory keeps");
        assert_eq!(got.len(), expected.len(), "{account}: every fill, each once");
        let mut sorted_got = got.clone();
        let mut sorted_expected = expected.clone();
        sorted_got.sort();
        sorted_expected.sort();
        assert_eq!(sorted_got, sorted_expected, "{account}");
        let stamps: Vec<&str> =
            a.body.as_array().expect("fills").iter().map(|f| f["timestamp"].as_str().expect("ts")).collect();
        assert!(stamps.windows(2).all(|w| w[0] >= w[1]), "{account}: newest first");
    }
    server.stop().await.expect("stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persister_process_over_kafka_killed_mid_stream_loses_and_doubles_nothing() {
    let url = pg::fresh_database("kafka").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = KeyRing::load_or_create(dir.path()).expect("keys");
    let (brokers, prefix) = (kafka::brokers(), kafka::topic_prefix("persist"));
    let kafka_args = ["--kafka", brokers.as_str(), "--topic-prefix", prefix.as_str()];
    let exchange = start_command(dir.path(), free_port(), &["run"], &kafka_args, &[], "exchange.log").await;
    let persister_port = free_port();
    let persist = ["persist", "postgres", "--database-url", url.as_str()];
    let mut persister = start_command(dir.path(), persister_port, &persist, &kafka_args, &[], "persist.log").await;
    let clients: Vec<Client> = ACCOUNTS.iter().map(|a| client(&exchange.base, &keys, a)).collect();

    let streaming = {
        let clients = clients.clone();
        tokio::spawn(async move { trade(&clients, 0..30, true).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    sigkill(&mut persister);
    let mut ids = streaming.await.expect("streamed");
    let persister = start_command(dir.path(), persister_port, &persist, &kafka_args, &[], "persist.log").await;
    ids.extend(trade(&clients, 30..35, false).await);
    let until = Instant::now() + Duration::from_secs(60);
    for (who, id) in &ids {
        while clients[*who].get(&format!("/v1/orders/{id}")).await.body["status"] == "pending" {
            assert!(Instant::now() < until, "order {id} never settled");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    wait_persisted(&persister.base).await;
    let db = pg::connect(&url).await;
    assert_db_matches_api(&db, &exchange.base, &clients, &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_two_persister_roles_over_kafka_write_the_same_orders() {
    let url = pg::fresh_database("roles").await;
    let (endpoint, table_prefix) = (ddb::endpoint(), ddb::table_prefix("roles"));
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = KeyRing::load_or_create(dir.path()).expect("keys");
    let config = dir.path().join("tachyon.toml");
    std::fs::write(&config, format!("[dynamodb]\ntable_prefix = \"{table_prefix}\"\n")).expect("config file");
    let (brokers, prefix) = (kafka::brokers(), kafka::topic_prefix("roles"));
    let config = config.to_str().expect("utf-8 path");
    let kafka_args = ["--kafka", brokers.as_str(), "--topic-prefix", prefix.as_str(), "--config", config];
    let env = ddb::CHILD_ENV;
    let exchange = start_command(dir.path(), free_port(), &["run"], &kafka_args, &[], "exchange.log").await;
    let postgres = ["persist", "postgres", "--database-url", url.as_str()];
    let postgres = start_command(dir.path(), free_port(), &postgres, &kafka_args, &[], "pg.log").await;
    let dynamodb = ["persist", "dynamodb", "--endpoint-url", endpoint.as_str(), "--create-tables"];
    let dynamodb = start_command(dir.path(), free_port(), &dynamodb, &kafka_args, &env, "ddb.log").await;
    let clients: Vec<Client> = ACCOUNTS.iter().map(|a| client(&exchange.base, &keys, a)).collect();
    let ids = trade(&clients, 0..3, false).await;
    wait_persisted(&postgres.base).await;
    wait_persisted(&dynamodb.base).await;
    let db = pg::connect(&url).await;
    assert_db_matches_api(&db, &exchange.base, &clients, &ids).await;
    assert_dynamo_matches_postgres(&table_prefix, &db).await;
}
