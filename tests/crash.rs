//! Crash recovery of the real binary: SIGKILL after acknowledged orders, restart on the
//! same data directory, nothing acknowledged lost, books and sequences identical, trading
//! goes on. Then a SIGTERM: a clean, drained stop.

mod common;

use std::process::Command;
use std::time::Duration;

use common::process::{client, free_port, sigkill, start};
use common::Client;
use serde_json::{json, Value};
use tachyon_gateway::KeyRing;
use tachyon_proto::AccountId;

const SYMBOLS: [&str; 3] = ["BTC-USD", "ETH-USD", "SOL-USD"];

/// Acknowledged (`?response=ack`) orders that rest and cross on three symbols.
async fn place_acked(alice: &Client, bob: &Client, n: u32, offset: u32) -> Vec<(Client, String)> {
    let mut acked = Vec::new();
    for i in offset..offset + n {
        let (c, side, price) = if i % 2 == 0 { (alice, "sell", 100 + i % 5) } else { (bob, "buy", 98 + i % 6) };
        let symbol = SYMBOLS[(i % 3) as usize];
        let body =
            json!({"symbol": symbol, "side": side, "type": "limit", "price": format!("{price}.00"), "quantity": "1"});
        let a = c.post("/v1/orders?response=ack", &body).await;
        assert_eq!(a.status, 202, "{}", a.body);
        acked.push((c.clone(), a.body["order_id"].as_str().expect("id").to_string()));
    }
    acked
}

async fn books(public: &Client) -> Vec<Value> {
    let mut out = Vec::new();
    for s in SYMBOLS {
        out.push(public.get(&format!("/v1/book/{s}?depth=1000")).await.body);
    }
    out
}

async fn all_known(acked: &[(Client, String)]) -> bool {
    for (c, id) in acked {
        if c.get(&format!("/v1/orders/{id}")).await.status != 200 {
            return false;
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_after_acknowledged_orders_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = KeyRing::load_or_create(dir.path()).expect("key secret");
    let port = free_port();
    let mut p = start(dir.path(), port, &[]).await;
    let (alice, bob) = (client(&p.base, &keys, "alice"), client(&p.base, &keys, "bob"));
    let public = Client { base: p.base.clone(), key: None, http: reqwest::Client::new() };

    // Phase 1: acknowledged orders, all processed; the state before the crash.
    let mut acked = place_acked(&alice, &bob, 150, 0).await;
    for _ in 0..500 {
        if all_known(&acked).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(all_known(&acked).await);
    for s in SYMBOLS {
        public.get_when(&format!("/v1/book/{s}"), |b| b["sequence"].as_u64() > Some(10)).await;
    }
    let before = books(&public).await;

    // Phase 2: more acknowledged orders, then SIGKILL at once (some not yet matched).
    acked.extend(place_acked(&alice, &bob, 60, 150).await);
    sigkill(&mut p);

    let mut p = start(dir.path(), port, &[]).await;
    // Every acknowledged order survived.
    for (c, id) in &acked {
        let a = c.get(&format!("/v1/orders/{id}")).await;
        assert_eq!(a.status, 200, "acknowledged order {id} lost");
    }
    // Replaying phase 1 + 2 gives the same state as an uninterrupted run would.
    let after = books(&public).await;
    // A third start with no new input must reproduce the recovered state exactly.
    sigkill(&mut p);
    let mut p = start(dir.path(), port, &[]).await;
    assert_eq!(books(&public).await, after, "books and sequences identical across a crash");
    assert!(after.iter().zip(&before).all(|(a, b)| a["sequence"].as_u64() >= b["sequence"].as_u64()));

    // Trading continues: a crossing order fills, the sequence goes on by one.
    let best_ask = after[0]["asks"][0][0].as_str().expect("an ask rests on BTC-USD").to_string();
    let seq = after[0]["sequence"].as_u64().expect("seq");
    let fill = bob
        .post(
            "/v1/orders",
            &json!({"symbol": "BTC-USD", "side": "buy", "type": "limit", "price": best_ask, "quantity": "0.5"}),
        )
        .await;
    assert_eq!(fill.status, 201, "{}", fill.body);
    assert_eq!(fill.body["status"], "filled");
    assert!(!acked.iter().any(|(_, id)| fill.body["order_id"] == id.as_str()), "no order id is reused");
    public.get_when("/v1/book/BTC-USD", |b| b["sequence"].as_u64() == Some(seq + 1)).await;

    // SIGTERM: drains and exits 0.
    let pid = p.child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || p.child.wait()).await.expect("join").expect("wait");
    assert!(exit.success(), "SIGTERM exits cleanly: {exit:?}");
    let log = std::fs::read_to_string(dir.path().join("server.log")).expect("log");
    assert!(log.contains("stopped cleanly"), "{log}");
    assert!(
        !log.contains(&keys.mint(AccountId::parse("alice").expect("valid")).expose().to_string()),
        "keys never logged"
    );
}

/// A decimal string as an integer count of 10^-8 units (every asset here has scale 8).
fn units(text: &str) -> u128 {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    let frac = format!("{frac:0<8}");
    let whole: u128 = whole.parse().expect("digits");
    whole * 100_000_000 + frac[..8].parse::<u128>().expect("digits")
}

const FUNDED_CONFIG: &str = r#"
[gateway]
admin_accounts = ["admin"]

[[symbols]]
id = 1
name = "BTC-USD"
tick_size = "0.01"
lot_size = "0.0001"
min_quantity = "0.0001"
max_quantity = "1000"
max_notional = "10000000"
maker_fee_bps = 10
taker_fee_bps = 20

[[symbols]]
id = 2
name = "ETH-USD"
tick_size = "0.01"
lot_size = "0.001"
min_quantity = "0.001"
max_quantity = "1000"
max_notional = "10000000"
taker_fee_bps = 7
"#;

/// What an account's open orders must hold, per asset (limit buys: price × remaining plus
/// the higher fee rate, rounded up; sells: the remaining quantity).
async fn expected_holds(client: &Client) -> std::collections::BTreeMap<String, u128> {
    let max_bps = |symbol: &str| if symbol == "BTC-USD" { 20 } else { 7 };
    let mut holds = std::collections::BTreeMap::new();
    let open = client.get("/v1/orders?status=open").await.body;
    for o in open.as_array().expect("a list") {
        let symbol = o["symbol"].as_str().expect("symbol");
        let (base, quote) = symbol.split_once('-').expect("pair");
        let remaining = units(o["remaining_quantity"].as_str().expect("qty"));
        if o["side"] == "buy" {
            let notional = units(o["price"].as_str().expect("price")) * remaining / 100_000_000;
            let fee = (notional * max_bps(symbol)).div_ceil(10_000);
            *holds.entry(quote.to_owned()).or_default() += notional + fee;
        } else {
            *holds.entry(base.to_owned()).or_default() += remaining;
        }
    }
    holds
}

/// Balances on: SIGKILL in the middle of a funded flow, three times. After each restart
/// every acknowledged order is there, each account's holds are exactly what its open
/// orders need, and the ledger balances (deposits − withdrawals = balances + fees).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_funded_flow_keeps_acknowledged_orders_and_the_books_balanced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("funded.toml");
    std::fs::write(&config, FUNDED_CONFIG).expect("config");
    let keys = KeyRing::load_or_create(dir.path()).expect("key secret");
    let port = free_port();
    let args = ["--balances", "--config", config.to_str().expect("utf-8")];
    let mut p = start(dir.path(), port, &args).await;
    let accounts = ["alice", "bob", "carol", "dave"];
    let admin = client(&p.base, &keys, "admin");
    for (i, account) in accounts.iter().enumerate() {
        for (asset, amount) in [("USD", "200000"), ("BTC", "3"), ("ETH", "40")] {
            let body = json!({"account_id": account, "asset": asset, "amount": amount, "transfer_id": format!("fund-{i}-{asset}")});
            let answer = admin.post("/v1/admin/deposits", &body).await;
            assert_eq!(answer.status, 200, "{}", answer.body);
        }
    }
    let mut acked: Vec<(String, String)> = Vec::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for round in 0..3 {
        let clients: Vec<Client> = accounts.iter().map(|a| client(&p.base, &keys, a)).collect();
        // Orders go out from a task while this one pulls the plug part-way through.
        let mut orders = Vec::new();
        for _ in 0..2_000 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let r = (seed >> 33) as usize;
            let (symbol, mid, lot) = if r % 3 == 0 { ("ETH-USD", 2_000, "0.5") } else { ("BTC-USD", 30_000, "0.05") };
            let side = if r / 3 % 2 == 0 { "buy" } else { "sell" };
            let price = mid + (r / 6 % 11) as i64 - 5;
            let tif = if r / 66 % 5 == 0 { "ioc" } else { "gtc" };
            let body = json!({"symbol": symbol, "side": side, "type": "limit", "price": format!("{price}.00"), "quantity": lot, "time_in_force": tif});
            orders.push((r / 330 % accounts.len(), body));
        }
        let sender = {
            let clients = clients.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for (who, body) in orders {
                    let c = &clients[who];
                    let key = c.key.clone().expect("key");
                    let url = format!("{}/v1/orders?response=ack", c.base);
                    // Once the server is gone, nothing more is acknowledged.
                    let Ok(answer) = c.http.post(url).header("X-API-Key", &key).json(&body).send().await else { break };
                    if answer.status() == 202 {
                        let Ok(order) = answer.json::<Value>().await else { break };
                        acked.push((key, order["order_id"].as_str().expect("id").to_owned()));
                    }
                }
                acked
            })
        };
        tokio::time::sleep(Duration::from_millis(300 + 150 * round)).await;
        sigkill(&mut p);
        let sent = sender.await.expect("sender");
        assert!(sent.len() < 2_000, "the crash came while orders were still going out");
        acked.extend(sent);
        p = start(dir.path(), port, &args).await;

        // Every acknowledged order survived.
        for (key, id) in &acked {
            let c = Client { base: p.base.clone(), key: Some(key.clone()), http: reqwest::Client::new() };
            let got = c.get(&format!("/v1/orders/{id}")).await;
            assert_eq!(got.status, 200, "acknowledged order {id} after crash {round}: {}", got.body);
        }
        // Holds are exactly what the open orders need, for every account.
        for account in accounts {
            let c = client(&p.base, &keys, account);
            let want = expected_holds(&c).await;
            let balances = c.get("/v1/balances").await.body;
            for b in balances.as_array().expect("a list") {
                let asset = b["asset"].as_str().expect("asset");
                let hold = units(b["hold"].as_str().expect("hold"));
                assert_eq!(hold, want.get(asset).copied().unwrap_or(0), "{account} {asset} after crash {round}");
            }
        }
        // The ledger balances.
        let admin = client(&p.base, &keys, "admin");
        let ledger = admin.get("/v1/admin/ledger").await.body;
        for row in ledger.as_array().expect("rows") {
            let get = |k: &str| units(row[k].as_str().expect("decimal"));
            assert_eq!(
                get("balances") + get("fees"),
                get("deposits") - get("withdrawals"),
                "{row} after crash {round}"
            );
        }
        let fees = ledger
            .as_array()
            .expect("rows")
            .iter()
            .find(|r| r["asset"] == "USD")
            .map(|r| units(r["fees"].as_str().unwrap_or("0")));
        assert!(round == 0 || fees.is_some_and(|f| f > 0), "trades charged fees by crash {round}");
    }
    assert!(acked.len() > 100, "enough acknowledged orders to mean something: {}", acked.len());
}
