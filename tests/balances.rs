//! The balances contract of `shared/API.md` ("Balances, holds, settlement and fees") over
//! real HTTP and WebSocket, against `tachyon run --balances` on 127.0.0.1:0: transfers and
//! their idempotency, holds refused with `insufficient_funds` on every order-entry route,
//! fills settling both sides with maker and taker fees, releases, amends, the ledger's
//! conservation law, and all of it surviving a restart.

mod common;

use common::{Client, Server, Ws};
use serde_json::{json, Value};
use tachyon::config::Config;

/// BTC-USD with maker 10 / taker 20 bps, an admin account, balances on.
fn funded(config: &mut Config) {
    config.risk.balances = true;
    config.gateway.admin_accounts = vec!["admin".into()];
    config.symbols.truncate(2);
    config.symbols[0].maker_fee_bps = 10;
    config.symbols[0].taker_fee_bps = 20;
}

async fn transfer(admin: &Client, kind: &str, account: &str, asset: &str, amount: &str, id: &str) -> common::Answer {
    let body = json!({"account_id": account, "asset": asset, "amount": amount, "transfer_id": id});
    admin.post(&format!("/v1/admin/{kind}"), &body).await
}

/// The caller's balance of `asset` as (available, hold).
async fn balance(client: &Client, asset: &str) -> (String, String) {
    let all = client.get("/v1/balances").await.body;
    let b = all.as_array().and_then(|a| a.iter().find(|b| b["asset"] == asset)).cloned().unwrap_or(Value::Null);
    let text = |v: &Value| v.as_str().unwrap_or("none").to_owned();
    (text(&b["available"]), text(&b["hold"]))
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_owned(), b.to_owned())
}

/// Per asset, `balances + fees == deposits - withdrawals` (the ledger's decimals are on
/// the asset's scale, so comparing them as scaled integers is exact).
async fn assert_conserved(admin: &Client) {
    let ledger = admin.get("/v1/admin/ledger").await.body;
    let units = |v: &Value| -> i128 { v.as_str().expect("decimal").replace('.', "").parse().expect("digits") };
    for row in ledger.as_array().expect("rows") {
        let (d, w, b, f) =
            (units(&row["deposits"]), units(&row["withdrawals"]), units(&row["balances"]), units(&row["fees"]));
        assert_eq!(b + f, d - w, "conservation of {}: {row}", row["asset"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_balances_the_balance_routes_are_not_there_and_orders_need_no_funds() {
    let server = Server::start().await;
    let alice = server.client("alice");
    alice.get("/v1/balances").await.expect_error(404, "not_found");
    let order = alice.limit("BTC-USD", "buy", "30000.00", "1").await;
    assert_eq!(order["status"], "new");
    // Fills carry no fee fields with balances off (the v1 shape, unchanged).
    let fill = server.client("bob").limit("BTC-USD", "sell", "30000.00", "1").await;
    assert_eq!(fill["fills"][0].as_object().map(|f| f.contains_key("fee")), Some(false), "{fill}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_are_idempotent_admin_only_and_exact_on_the_asset_scale() {
    let server = Server::start_with(funded).await;
    let (admin, alice) = (server.client("admin"), server.client("alice"));
    let first = transfer(&admin, "deposits", "alice", "USD", "1000.5", "dep-1").await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(
        first.body,
        json!({"transfer_id": "dep-1", "account_id": "alice", "asset": "USD", "amount": "1000.50000000",
               "balance": {"asset": "USD", "available": "1000.50000000", "hold": "0.00000000", "total": "1000.50000000"}})
    );
    // The same id and body: the first result, nothing moved; another body: 409.
    assert_eq!(transfer(&admin, "deposits", "alice", "USD", "1000.5", "dep-1").await.body, first.body);
    transfer(&admin, "deposits", "alice", "USD", "1", "dep-1").await.expect_error(409, "duplicate_transfer_id");
    assert_eq!(balance(&alice, "USD").await, pair("1000.50000000", "0.00000000"));
    // Bad input is refused precisely, and only admins move funds.
    transfer(&admin, "deposits", "alice", "USD", "0.000000001", "dep-2").await.expect_error(400, "invalid_amount");
    transfer(&admin, "deposits", "alice", "USD", "0", "dep-2").await.expect_error(400, "invalid_amount");
    transfer(&admin, "deposits", "alice", "USD", "-5", "dep-2").await.expect_error(400, "invalid_amount");
    transfer(&admin, "deposits", "alice", "EUR", "5", "dep-2").await.expect_error(404, "unknown_asset");
    transfer(&admin, "deposits", "alice", "USD", "5", "bad id!").await.expect_error(400, "invalid_transfer_id");
    transfer(&admin, "deposits", "not valid", "USD", "5", "dep-2").await.expect_error(400, "invalid_account");
    transfer(&alice, "deposits", "alice", "USD", "5", "dep-2").await.expect_error(403, "not_admin");
    // A withdrawal above available moves nothing and leaves its id unused.
    transfer(&admin, "withdrawals", "alice", "USD", "2000", "wd-1").await.expect_error(400, "insufficient_funds");
    let w = transfer(&admin, "withdrawals", "alice", "USD", "0.5", "wd-1").await;
    assert_eq!(w.body["balance"]["available"], "1000.00000000", "{}", w.body);
    assert_eq!(balance(&alice, "USD").await, pair("1000.00000000", "0.00000000"));
    assert_conserved(&admin).await;
    // An account that never held anything has no balances.
    assert_eq!(server.client("bob").get("/v1/balances").await.body, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_hold_funds_fills_settle_both_sides_with_fees_and_a_restart_keeps_it_all() {
    let server = Server::start_with(funded).await;
    let (admin, alice, bob) = (server.client("admin"), server.client("alice"), server.client("bob"));
    transfer(&admin, "deposits", "alice", "USD", "40000", "d1").await;
    transfer(&admin, "deposits", "bob", "BTC", "1", "d2").await;

    // 0.5 at 30,000 holds 15,000 + 20 bps (the higher rate) = 15,030.
    let bid = alice.limit("BTC-USD", "buy", "30000.00", "0.5").await;
    assert_eq!(bid["status"], "new");
    assert_eq!(balance(&alice, "USD").await, pair("24970.00000000", "15030.00000000"));
    // More than is available: refused on REST, batch and WebSocket; nothing reaches a book.
    let big = json!({"symbol": "BTC-USD", "side": "buy", "type": "limit", "price": "30000.00", "quantity": "1"});
    alice.post("/v1/orders", &big).await.expect_error(400, "insufficient_funds");
    alice.post("/v1/orders?response=ack", &big).await.expect_error(400, "insufficient_funds");
    let batch = alice.post("/v1/orders/batch", &json!({"orders": [big.clone()]})).await.body;
    assert_eq!(batch["results"][0]["error"]["code"], "insufficient_funds", "{batch}");
    let mut ws = Ws::connect(&server.ws_url(), Some(&server.key("alice"))).await;
    let mut frame = big.clone();
    frame["op"] = json!("order.new");
    frame["request_id"] = json!("r1");
    ws.send(&frame).await;
    let answer = ws.next_where(|m| m["request_id"] == "r1").await;
    assert_eq!(answer["error"]["code"], "insufficient_funds", "{answer}");
    let book = server.public().get("/v1/book/BTC-USD").await.body;
    assert_eq!(book["bids"], json!([["30000.00", "0.5"]]));
    // Selling BTC bob does not have; a market buy without funds.
    bob.post(
        "/v1/orders",
        &json!({"symbol": "BTC-USD", "side": "sell", "type": "limit", "price": "31000.00", "quantity": "2"}),
    )
    .await
    .expect_error(400, "insufficient_funds");
    bob.post("/v1/orders", &json!({"symbol": "BTC-USD", "side": "buy", "type": "market", "quantity": "0.1"}))
        .await
        .expect_error(400, "invalid_funds");

    // Bob sells 0.2 into alice's bid: 6,000 USD at the maker's price; alice (maker) pays
    // 10 bps = 6, bob (taker) 20 bps = 12.
    let ask = bob.limit("BTC-USD", "sell", "29000.00", "0.2").await;
    assert_eq!(ask["status"], "filled");
    // Fills say what each side paid, in the QUOTE asset.
    assert_eq!(
        (&ask["fills"][0]["fee"], &ask["fills"][0]["fee_asset"]),
        (&json!("12.00000000"), &json!("USD")),
        "{ask}"
    );
    let maker = alice.get(&format!("/v1/orders/{}", bid["order_id"].as_str().expect("id"))).await.body;
    assert_eq!(maker["fills"][0]["fee"], "6.00000000", "{maker}");
    let fills = alice.get("/v1/fills").await.body;
    assert_eq!((&fills[0]["fee"], &fills[0]["fee_asset"]), (&json!("6.00000000"), &json!("USD")), "{fills}");
    assert_eq!(balance(&alice, "BTC").await, pair("0.20000000", "0.00000000"));
    // 0.3 left at 30,000 holds 9,018; 40,000 − 6,006 − 9,018 available.
    assert_eq!(balance(&alice, "USD").await, pair("24976.00000000", "9018.00000000"));
    assert_eq!(balance(&bob, "USD").await, pair("5988.00000000", "0.00000000"));
    assert_eq!(balance(&bob, "BTC").await, pair("0.80000000", "0.00000000"));
    let fees = admin.get("/v1/admin/fees").await.body;
    assert!(fees.as_array().expect("list").contains(&json!({"asset": "USD", "amount": "18.00000000"})), "{fees}");
    assert_conserved(&admin).await;

    // Amend up beyond available: refused, the order unchanged; within it: held first.
    let path = format!("/v1/orders/{}", bid["order_id"].as_str().expect("id"));
    alice.patch(&path, &json!({"quantity": "2"})).await.expect_error(400, "insufficient_funds");
    assert_eq!(alice.get(&path).await.body["quantity"], "0.5");
    let amended = alice.patch(&path, &json!({"quantity": "0.6"})).await;
    assert_eq!(amended.status, 200, "{}", amended.body);
    // 0.4 left: 12,024 held.
    assert_eq!(balance(&alice, "USD").await, pair("21970.00000000", "12024.00000000"));
    // A cancel releases everything.
    assert_eq!(alice.delete(&path).await.body["status"], "cancelled");
    assert_eq!(balance(&alice, "USD").await, pair("33994.00000000", "0.00000000"));
    assert_conserved(&admin).await;

    // A restart rebuilds the same balances from the journal.
    let ledger = admin.get("/v1/admin/ledger").await.body;
    let server = server.restart(funded).await;
    let (admin, alice) = (server.client("admin"), server.client("alice"));
    assert_eq!(balance(&alice, "USD").await, pair("33994.00000000", "0.00000000"));
    assert_eq!(admin.get("/v1/admin/ledger").await.body, ledger);
    // The transfer ids are remembered too.
    transfer(&admin, "deposits", "alice", "USD", "1", "d1").await.expect_error(409, "duplicate_transfer_id");
    server.stop().await.expect("stops cleanly");
}
