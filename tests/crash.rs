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
