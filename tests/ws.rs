//! The WebSocket contract: the book stream reconstructs the REST book with consecutive
//! sequences, trades and ticker channels, the orders channel, order entry, and garbage
//! that gets errors while the connection stays up.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Server, Ws};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

type Side = BTreeMap<String, String>;

fn levels(v: &Value) -> Side {
    v.as_array()
        .expect("levels")
        .iter()
        .map(|l| (l[0].as_str().expect("price").to_string(), l[1].as_str().expect("qty").to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn book_stream_snapshot_and_consecutive_updates_reconstruct_the_rest_book() {
    let server = Server::start().await;
    let (alice, bob) = (server.client("alice"), server.client("bob"));
    alice.limit("BTC-USD", "sell", "101.00", "1").await; // before the subscription: in the snapshot
    let mut ws = Ws::connect(&server.ws_url(), None).await;
    ws.send(&json!({"op": "subscribe", "channel": "book", "symbol": "BTC-USD"})).await;
    let snapshot = ws.next().await;
    assert_eq!((snapshot["channel"].as_str(), snapshot["type"].as_str()), (Some("book"), Some("snapshot")));
    let mut sequence = snapshot["sequence"].as_u64().expect("sequence");
    assert_eq!(sequence, 1);
    let (mut bids, mut asks) = (levels(&snapshot["bids"]), levels(&snapshot["asks"]));

    // Resting, crossing, cancelling and amending on both sides.
    let mut placed = Vec::new();
    for i in 0..40u32 {
        let (client, side) = if i % 2 == 0 { (&alice, "sell") } else { (&bob, "buy") };
        let price = if side == "sell" { 100 + i % 7 } else { 95 + i % 9 };
        let order = client.limit("BTC-USD", side, &format!("{price}.00"), &format!("0.{}", 1 + i % 9)).await;
        placed.push((client.clone(), order["order_id"].as_str().expect("id").to_string(), order["status"].clone()));
    }
    for (client, id, status) in placed.iter().step_by(5) {
        if status == "new" {
            client.delete(&format!("/v1/orders/{id}")).await;
        }
    }
    // Every order has been answered; the updates follow until the stream goes quiet.
    while let Some(update) = ws.next_within(Duration::from_millis(500)).await {
        assert_eq!(update["type"], "update", "{update}");
        let next = update["sequence"].as_u64().expect("sequence");
        assert_eq!(next, sequence + 1, "updates follow with consecutive sequences");
        sequence = next;
        for change in update["changes"].as_array().expect("changes") {
            let side = if change[0] == "buy" { &mut bids } else { &mut asks };
            let (price, qty) = (change[1].as_str().expect("price"), change[2].as_str().expect("qty"));
            if qty == "0" {
                assert!(side.remove(price).is_some(), "a removed level existed");
            } else {
                side.insert(price.to_string(), qty.to_string());
            }
        }
    }
    assert!(sequence > 30, "the scenario changed the book many times");
    let book = server.public().get("/v1/book/BTC-USD?depth=1000").await.body;
    assert_eq!(book["sequence"].as_u64(), Some(sequence));
    assert_eq!(levels(&book["bids"]), bids);
    assert_eq!(levels(&book["asks"]), asks);
    assert!(!bids.is_empty() && !asks.is_empty(), "the scenario leaves both sides populated");
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trades_and_ticker_channels() {
    let server = Server::start().await;
    let (alice, bob) = (server.client("alice"), server.client("bob"));
    let mut ws = Ws::connect(&server.ws_url(), None).await;
    ws.send(&json!({"op": "subscribe", "channel": "trades", "symbol": "SOL-USD"})).await;
    ws.send(&json!({"op": "subscribe", "channel": "ticker", "symbol": "SOL-USD"})).await;
    ws.send(&json!({"op": "ping"})).await;
    assert_eq!(ws.next().await, json!({"type": "pong"})); // the subscriptions are in place
    alice.limit("SOL-USD", "sell", "20.000", "2").await;
    let ticker = ws.next_where(|m| m["channel"] == "ticker").await;
    assert_eq!((ticker["best_ask"].as_str(), ticker["best_ask_quantity"].as_str()), (Some("20.000"), Some("2")));
    bob.limit("SOL-USD", "buy", "20.000", "0.5").await;
    // Each channel is in order; across channels the interleaving is not promised.
    let (mut trade, mut ticker) = (Value::Null, Value::Null);
    while trade.is_null() || ticker.is_null() {
        let m = ws.next().await;
        match m["channel"].as_str() {
            Some("trades") => trade = m,
            Some("ticker") => ticker = m,
            _ => panic!("unexpected {m}"),
        }
    }
    assert_eq!(
        (trade["symbol"].as_str(), trade["price"].as_str(), trade["quantity"].as_str(), trade["taker_side"].as_str()),
        (Some("SOL-USD"), Some("20.000"), Some("0.5"), Some("buy"))
    );
    assert_eq!(trade["sequence"], 2);
    assert!(trade["trade_id"].is_string() && trade["timestamp"].is_string());
    assert_eq!((ticker["best_ask_quantity"].as_str(), ticker["last_price"].as_str()), (Some("1.5"), Some("20.000")));
    ws.send(&json!({"op": "unsubscribe", "channel": "trades", "symbol": "SOL-USD"})).await;
    ws.send(&json!({"op": "unsubscribe", "channel": "ticker", "symbol": "SOL-USD"})).await;
    ws.send(&json!({"op": "ping"})).await;
    assert_eq!(ws.next().await, json!({"type": "pong"}));
    bob.limit("SOL-USD", "buy", "20.000", "0.5").await;
    assert!(ws.quiet_for(Duration::from_millis(200)).await, "nothing after unsubscribing");
    server.stop().await.expect("clean stop");
}

/// The next response, keeping the orders-channel messages that arrive meanwhile.
async fn next_response(ws: &mut Ws, orders: &mut Vec<Value>) -> Value {
    loop {
        let m = ws.next().await;
        if m["type"] == "response" {
            return m;
        }
        assert_eq!(m["channel"], "orders", "{m}");
        orders.push(m);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_entry_and_the_orders_channel() {
    let server = Server::start().await;
    let mut ws = Ws::connect(&server.ws_url(), None).await;
    // Order entry and the orders channel need authentication.
    ws.send(&json!({"op": "order.new", "request_id": "r0", "symbol": "BTC-USD", "side": "buy", "type": "limit", "price": "100.00", "quantity": "1"})).await;
    let r = ws.next().await;
    assert_eq!(
        (r["type"].as_str(), r["request_id"].as_str(), r["error"]["code"].as_str()),
        (Some("response"), Some("r0"), Some("unauthorized"))
    );
    ws.send(&json!({"op": "subscribe", "channel": "orders"})).await;
    assert_eq!(ws.next().await["error"]["code"], "unauthorized");
    ws.send(&json!({"op": "auth", "api_key": "tk1.bad"})).await;
    assert_eq!(ws.next().await["error"]["code"], "unauthorized");
    ws.send(&json!({"op": "auth", "api_key": server.key("alice")})).await;
    ws.send(&json!({"op": "subscribe", "channel": "orders"})).await;
    let mut orders = Vec::new();

    ws.send(&json!({"op": "order.new", "request_id": "r1", "symbol": "BTC-USD", "side": "buy", "type": "limit", "price": "100.00", "quantity": "1", "client_order_id": "ws-1"})).await;
    let response = next_response(&mut ws, &mut orders).await;
    assert_eq!(response["request_id"], "r1");
    assert_eq!(
        (response["result"]["status"].as_str(), response["result"]["client_order_id"].as_str()),
        (Some("new"), Some("ws-1"))
    );
    let id = response["result"]["order_id"].as_str().expect("id").to_string();

    // Bob fills part of it: alice's orders channel shows it.
    server.client("bob").limit("BTC-USD", "sell", "100.00", "0.4").await;
    ws.send(&json!({"op": "order.cancel", "request_id": "r2", "order_id": id})).await;
    let cancelled = next_response(&mut ws, &mut orders).await;
    assert_eq!(
        (cancelled["request_id"].as_str(), cancelled["result"]["status"].as_str()),
        (Some("r2"), Some("cancelled"))
    );
    ws.send(&json!({"op": "order.new", "request_id": "r3", "symbol": "BTC-USD", "side": "buy", "type": "limit", "price": "1.001", "quantity": "1"})).await;
    assert_eq!(next_response(&mut ws, &mut orders).await["error"]["code"], "invalid_price");
    ws.send(&json!({"op": "order.new", "request_id": "r4", "symbol": "ETH-USD", "side": "buy", "type": "limit", "price": "10.00", "quantity": "1"})).await;
    next_response(&mut ws, &mut orders).await;
    ws.send(&json!({"op": "order.cancel_all", "request_id": "r5"})).await;
    let all = next_response(&mut ws, &mut orders).await;
    assert_eq!(all["result"]["cancelled"].as_array().map(Vec::len), Some(1));

    // The orders channel: one message per change, consecutive per connection.
    while orders.len() < 5 {
        orders.push(ws.next_where(|m| m["channel"] == "orders").await);
    }
    let mut updates = Vec::new();
    for (i, m) in orders.iter().enumerate() {
        assert_eq!(m["sequence"].as_u64(), Some(i as u64 + 1));
        updates.push((m["order"]["status"].as_str().expect("status").to_string(), m["order"]["account_id"].clone()));
    }
    let statuses: Vec<&str> = updates.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(statuses, ["new", "partially_filled", "cancelled", "new", "cancelled"]);
    assert!(updates.iter().all(|(_, a)| a == "alice"), "only alice's orders");
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_gets_errors_and_the_connection_stays_up() {
    let server = Server::start().await;
    let mut ws = Ws::connect(&server.ws_url(), Some(&server.key("alice"))).await;
    let cases: [(&str, &str); 8] = [
        ("{not json", "invalid_json"),
        ("[1,2,3]", "invalid_message"),
        (r#"{"no_op": 1}"#, "invalid_message"),
        (r#"{"op": "fly"}"#, "unknown_op"),
        (r#"{"op": "subscribe", "channel": "weather", "symbol": "BTC-USD"}"#, "unknown_channel"),
        (r#"{"op": "subscribe", "channel": "book", "symbol": "NOPE"}"#, "unknown_symbol"),
        (r#"{"op": "subscribe", "channel": "book"}"#, "invalid_message"),
        (r#"{"op": "unsubscribe", "channel": "book", "symbol": "BTC-USD"}"#, "not_subscribed"),
    ];
    for (frame, code) in cases {
        ws.send_text(frame).await;
        let m = ws.next().await;
        assert_eq!((m["type"].as_str(), m["error"]["code"].as_str()), (Some("error"), Some(code)), "{frame}");
    }
    ws.send_raw(Message::binary(vec![0u8, 159, 146, 150])).await;
    assert_eq!(ws.next().await["error"]["code"], "invalid_message");
    ws.send(&json!({"op": "order.new", "request_id": 7, "symbol": "BTC-USD", "side": "sideways"})).await;
    let m = ws.next().await;
    assert_eq!((m["request_id"].as_u64(), m["error"]["code"].as_str()), (Some(7), Some("invalid_request")));
    ws.send(&json!({"op": "ping"})).await;
    assert_eq!(ws.next().await, json!({"type": "pong"}));
    // An oversized frame closes that connection (the limit protects the server) but the
    // server carries on.
    ws.send_text(&"x".repeat(200_000)).await;
    let mut other = Ws::connect(&server.ws_url(), None).await;
    other.send(&json!({"op": "ping"})).await;
    assert_eq!(other.next().await, json!({"type": "pong"}));
    // A bad key on the upgrade is refused with 401.
    let refused = reqwest::Client::new()
        .get(format!("{}/v1/ws", server.base))
        .header("x-api-key", "tk1.bad")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .expect("sent");
    assert_eq!(refused.status(), 401);
    server.stop().await.expect("clean stop");
}
