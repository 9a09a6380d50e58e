//! API keys with scopes and revocation (API.md "API keys: scopes and revocation"), on the
//! real binary: `tachyon keys mint|list|revoke` against a running `tachyon run` on the
//! same data directory.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::process::{free_port, start};
use common::{Client, Ws};
use serde_json::{json, Value};

fn keys(dir: &std::path::Path, args: &[&str]) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tachyon"))
        .arg("keys")
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .expect("tachyon keys runs");
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(out.status.success(), "tachyon keys {args:?}: {stderr}");
    (stdout, stderr)
}

/// `keys mint`: the key (stdout) and its id (stderr `key_id: …`).
fn mint(dir: &std::path::Path, account: &str, scope: &str) -> (String, String) {
    let (key, report) = keys(dir, &["mint", account, "--scope", scope]);
    let id = report.lines().find_map(|l| l.strip_prefix("key_id: ")).expect("key_id on stderr").to_string();
    (key.trim().to_string(), id)
}

fn list(dir: &std::path::Path, account: &str) -> Vec<Value> {
    keys(dir, &["list", account]).0.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

fn client(base: &str, key: &str) -> Client {
    Client { base: base.to_string(), key: Some(key.to_string()), http: reqwest::Client::new() }
}

fn order(price: &str) -> Value {
    json!({"symbol": "BTC-USD", "side": "buy", "type": "limit", "price": price, "quantity": "0.1"})
}

/// Polls `probe` until it answers `status`; panics after 2 s (API.md's bound).
async fn within_two_seconds(what: &str, mut probe: impl AsyncFnMut() -> u16, status: u16) -> Duration {
    let start = Instant::now();
    loop {
        if probe().await == status {
            return start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(2), "{what}: still not {status} after 2 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_keys_only_look_and_revoked_keys_are_refused_everywhere_within_two_seconds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let process = start(dir.path(), free_port(), &[]).await;
    let (trade_key, trade_id) = mint(dir.path(), "alice", "trade");
    let (read_key, read_id) = mint(dir.path(), "alice", "read");
    assert!(read_key.starts_with(&format!("tk2.alice.read.{read_id}.")), "the key carries its id and scope");
    let (trader, reader) = (client(&process.base, &trade_key), client(&process.base, &read_key));

    // A read key sees everything of its account and changes nothing.
    let placed = trader.post("/v1/orders", &order("100.00")).await;
    assert_eq!(placed.status, 201, "{}", placed.body);
    let id = placed.body["order_id"].as_str().expect("id").to_string();
    for path in ["/v1/orders", "/v1/fills", &format!("/v1/orders/{id}")] {
        assert_eq!(reader.get(path).await.status, 200, "{path}");
    }
    reader.post("/v1/orders", &order("101.00")).await.expect_error(403, "insufficient_scope");
    reader
        .post("/v1/orders/batch", &json!({"orders": [order("101.00")]}))
        .await
        .expect_error(403, "insufficient_scope");
    reader
        .patch(&format!("/v1/orders/{id}"), &json!({"quantity": "0.05"}))
        .await
        .expect_error(403, "insufficient_scope");
    reader.delete(&format!("/v1/orders/{id}")).await.expect_error(403, "insufficient_scope");
    reader.delete("/v1/orders").await.expect_error(403, "insufficient_scope");
    assert_eq!(trader.get(&format!("/v1/orders/{id}")).await.body["status"], "new", "nothing changed");
    // Over the WebSocket: the orders channel yes, order entry no.
    let mut ws = Ws::connect(&format!("{}/v1/ws", process.base.replacen("http", "ws", 1)), Some(&read_key)).await;
    ws.send(&json!({"op": "subscribe", "channel": "orders"})).await;
    ws.send(&json!({"op": "order.new", "request_id": "r1", "symbol": "BTC-USD", "side": "buy", "type": "limit", "price": "1.00", "quantity": "1"})).await;
    let answer = ws.next_where(|m| m["type"] == "response").await;
    assert_eq!(answer["error"]["code"], "insufficient_scope", "{answer}");

    // Listing names every key of the account (and its first-format key), never a secret.
    let listed = list(dir.path(), "alice");
    let ids: Vec<&str> = listed.iter().map(|k| k["key_id"].as_str().expect("id")).collect();
    assert!(ids.contains(&trade_id.as_str()) && ids.contains(&read_id.as_str()), "{listed:?}");
    for k in &listed {
        assert_eq!(k.as_object().expect("object").len(), 4, "key_id, account_id, scope, revoked: {k}");
        assert_eq!(k["revoked"], false);
    }
    let text = keys(dir.path(), &["list", "alice"]).0;
    assert!(!text.contains(trade_key.rsplit('.').next().expect("tag")), "no secret in the listing");

    // Revoking the trade key: 401 key_revoked within 2 s; its WebSocket session is closed,
    // the read key's session and key are unaffected.
    let ws_url = format!("{}/v1/ws", process.base.replacen("http", "ws", 1));
    let mut doomed = Ws::connect(&ws_url, Some(&trade_key)).await;
    doomed.send(&json!({"op": "ping"})).await;
    assert_eq!(doomed.next().await["type"], "pong");
    keys(dir.path(), &["revoke", &trade_id]);
    let took = within_two_seconds("REST", || async { trader.get("/v1/orders").await.status.as_u16() }, 401).await;
    trader.get("/v1/orders").await.expect_error(401, "key_revoked");
    eprintln!("revocation reached the gateway in {took:?}");
    let error = doomed.next_where(|m| m["type"] == "error").await;
    assert_eq!(error["error"]["code"], "key_revoked", "{error}");
    assert!(doomed.closed_within(Duration::from_secs(2)).await, "the revoked key's session is closed");
    let upgrade = reqwest::Client::new()
        .get(format!("{}/v1/ws", process.base))
        .header("x-api-key", &trade_key)
        .send()
        .await
        .expect("answers");
    assert_eq!(upgrade.status(), 401, "a revoked key cannot open a session");
    ws.send(&json!({"op": "ping"})).await;
    assert_eq!(ws.next_where(|m| m["type"] == "pong").await["type"], "pong");
    assert_eq!(reader.get("/v1/orders").await.status, 200);
    assert!(list(dir.path(), "alice").iter().any(|k| k["key_id"] == trade_id.as_str() && k["revoked"] == true));

    // A first-format key (minted before scopes) keeps working, is listed, and revokes too.
    let keyring = tachyon_gateway::KeyRing::load_or_create(dir.path()).expect("key secret");
    let legacy = keyring.mint(tachyon_proto::AccountId::parse("bob").expect("valid")).expose().to_string();
    let bob = client(&process.base, &legacy);
    assert_eq!(bob.post("/v1/orders", &order("99.00")).await.status, 201, "tk1 keys trade");
    let legacy_id = list(dir.path(), "bob")[0]["key_id"].as_str().expect("id").to_string();
    keys(dir.path(), &["revoke", &legacy_id]);
    within_two_seconds("legacy key", || async { bob.get("/v1/orders").await.status.as_u16() }, 401).await;

    // Revocations outlive a restart: the gateway reads the key log when it starts.
    drop(process);
    let process = start(dir.path(), free_port(), &[]).await;
    client(&process.base, &trade_key).get("/v1/orders").await.expect_error(401, "key_revoked");
    assert_eq!(client(&process.base, &read_key).get("/v1/orders").await.status, 200);

    // Bad input to the commands is a clear error.
    let out = Command::new(env!("CARGO_BIN_EXE_tachyon"))
        .args(["keys", "revoke", "not-an-id", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("16 hexadecimal digits"));
    let out = Command::new(env!("CARGO_BIN_EXE_tachyon"))
        .args(["keys", "mint", "alice", "--scope", "admin", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("runs");
    assert!(!out.status.success());
}
