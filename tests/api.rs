//! The REST contract of `shared/API.md` over real HTTP against an exchange on 127.0.0.1:0.

mod common;

use common::Server;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn id(order: &Value) -> String {
    order["order_id"].as_str().expect("order_id is a string").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_orders_rest_match_fill_amend_and_cancel() {
    let server = Server::start().await;
    let (alice, bob) = (server.client("alice"), server.client("bob"));

    let ask = alice.limit("BTC-USD", "sell", "30000.00", "0.5").await;
    assert_eq!((ask["status"].as_str(), ask["remaining_quantity"].as_str()), (Some("new"), Some("0.5")));
    assert_eq!(ask["account_id"], "alice");
    assert_eq!(ask["time_in_force"], "gtc");
    assert!(ask["created_at"].as_str().is_some_and(|t| t.ends_with('Z') && t.len() == 27), "{ask}");

    // Bob crosses: fills 0.2 at the maker's price.
    let bid = bob.limit("BTC-USD", "buy", "30001.00", "0.2").await;
    assert_eq!(bid["status"], "filled");
    assert_eq!(bid["average_fill_price"], "30000.00");
    assert_eq!(bid["fills"][0]["liquidity"], "taker");
    assert_eq!(bid["fills"][0]["quantity"], "0.2");

    let ask = alice.get(&format!("/v1/orders/{}", id(&ask))).await.body;
    assert_eq!(
        (ask["status"].as_str(), ask["filled_quantity"].as_str(), ask["remaining_quantity"].as_str()),
        (Some("partially_filled"), Some("0.2"), Some("0.3"))
    );
    assert_eq!(ask["fills"][0]["liquidity"], "maker");

    // Open orders and fills are per account.
    let open = alice.get("/v1/orders?symbol=BTC-USD&status=open").await.body;
    assert_eq!(open.as_array().map(Vec::len), Some(1));
    assert_eq!(bob.get("/v1/orders?status=open").await.body, json!([]));
    let fills = alice.get("/v1/fills?symbol=BTC-USD").await.body;
    assert_eq!((fills[0]["liquidity"].as_str(), fills[0]["price"].as_str()), (Some("maker"), Some("30000.00")));
    assert_eq!(bob.get("/v1/fills").await.body[0]["liquidity"], "taker");

    // Another account's order: 403 to read, cancel or amend; an unknown one 404.
    let path = format!("/v1/orders/{}", id(&ask));
    bob.get(&path).await.expect_error(403, "not_order_owner");
    bob.delete(&path).await.expect_error(403, "not_order_owner");
    bob.patch(&path, &json!({"quantity": "0.1"})).await.expect_error(403, "not_order_owner");
    alice.get("/v1/orders/999").await.expect_error(404, "order_not_found");
    alice.get("/v1/orders/not-a-number").await.expect_error(404, "order_not_found");

    // Amend: smaller quantity keeps the price; a new price moves it.
    let amended = alice.patch(&path, &json!({"quantity": "0.4"})).await;
    assert_eq!(amended.status, StatusCode::OK, "{}", amended.body);
    assert_eq!(
        (amended.body["quantity"].as_str(), amended.body["remaining_quantity"].as_str()),
        (Some("0.4"), Some("0.2"))
    );
    let moved = alice.patch(&path, &json!({"price": "30010.00"})).await.body;
    assert_eq!(moved["price"], "30010.00");
    let book = server.public().get_when("/v1/book/BTC-USD", |b| b["asks"][0][0] == "30010.00").await;
    assert_eq!(book["asks"], json!([["30010.00", "0.2"]]));
    alice.patch(&path, &json!({})).await.expect_error(400, "invalid_request");
    alice.patch(&path, &json!({"price": "1.001"})).await.expect_error(400, "invalid_price");

    // Amend to at or below the filled quantity finishes the order.
    let done = alice.patch(&path, &json!({"quantity": "0.2"})).await.body;
    assert_eq!((done["status"].as_str(), done["remaining_quantity"].as_str()), (Some("filled"), Some("0")));
    alice.delete(&path).await.expect_error(409, "order_not_open");

    // Cancel.
    let resting = alice.limit("ETH-USD", "buy", "2000.00", "1").await;
    let cancelled = alice.delete(&format!("/v1/orders/{}", id(&resting))).await;
    assert_eq!(cancelled.status, StatusCode::OK);
    assert_eq!(
        (cancelled.body["status"].as_str(), cancelled.body["cancel_reason"].as_str()),
        (Some("cancelled"), Some("user"))
    );
    alice.delete(&format!("/v1/orders/{}", id(&resting))).await.expect_error(409, "order_not_open");
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_types_time_in_force_post_only_and_self_trade_prevention() {
    let server = Server::start().await;
    let (alice, bob) = (server.client("alice"), server.client("bob"));
    let order = |body: Value| {
        let c = alice.clone();
        async move { c.post("/v1/orders", &body).await }
    };

    // Market order with nothing to trade against.
    let m = order(json!({"symbol": "SOL-USD", "side": "buy", "type": "market", "quantity": "1"})).await;
    assert_eq!(m.status, StatusCode::CREATED);
    assert_eq!(
        (m.body["status"].as_str(), m.body["cancel_reason"].as_str()),
        (Some("cancelled"), Some("market_no_liquidity"))
    );
    assert_eq!((m.body["time_in_force"].as_str(), m.body["price"].clone()), (Some("ioc"), Value::Null));

    bob.limit("SOL-USD", "sell", "20.000", "2").await;
    // IOC: fills what it can, cancels the rest.
    let ioc = order(json!({"symbol": "SOL-USD", "side": "buy", "type": "limit", "price": "20.000", "quantity": "3", "time_in_force": "ioc"})).await.body;
    assert_eq!(
        (ioc["status"].as_str(), ioc["cancel_reason"].as_str(), ioc["filled_quantity"].as_str()),
        (Some("cancelled"), Some("ioc"), Some("2"))
    );

    bob.limit("SOL-USD", "sell", "21.000", "1").await;
    // FOK that cannot fill completely: cancelled, no fills, the book untouched.
    let fok = order(json!({"symbol": "SOL-USD", "side": "buy", "type": "limit", "price": "21.000", "quantity": "2", "time_in_force": "fok"})).await.body;
    assert_eq!((fok["status"].as_str(), fok["cancel_reason"].as_str()), (Some("cancelled"), Some("fok")));
    assert_eq!(fok["fills"], json!([]));
    // Market buy fills it.
    let mkt = order(json!({"symbol": "SOL-USD", "side": "buy", "type": "market", "quantity": "1"})).await.body;
    assert_eq!((mkt["status"].as_str(), mkt["average_fill_price"].as_str()), (Some("filled"), Some("21.000")));

    // Post-only that would take is rejected, never partially filled.
    bob.limit("SOL-USD", "sell", "22.000", "1").await;
    let po = order(json!({"symbol": "SOL-USD", "side": "buy", "type": "limit", "price": "22.000", "quantity": "1", "post_only": true})).await;
    assert_eq!(po.status, StatusCode::CREATED);
    assert_eq!(
        (po.body["status"].as_str(), po.body["reject_reason"].as_str()),
        (Some("rejected"), Some("post_only_would_take"))
    );
    let po_ok = order(json!({"symbol": "SOL-USD", "side": "buy", "type": "limit", "price": "21.999", "quantity": "1", "post_only": true})).await.body;
    assert_eq!(po_ok["status"], "new");

    // Self-trade prevention: default cancel_newest. The taker trades bob's 22.000 ask,
    // then meets alice's own ask: its remainder is cancelled, the resting order stays.
    let own = alice.limit("SOL-USD", "sell", "25.000", "1").await;
    let stp = order(json!({"symbol": "SOL-USD", "side": "buy", "type": "limit", "price": "25.000", "quantity": "2"}))
        .await
        .body;
    assert_eq!(
        (stp["status"].as_str(), stp["cancel_reason"].as_str(), stp["filled_quantity"].as_str()),
        (Some("cancelled"), Some("stp"), Some("1"))
    );
    assert_eq!(alice.get(&format!("/v1/orders/{}", id(&own))).await.body["status"], "new");
    // cancel_oldest removes the resting order and trades on.
    let oldest = order(json!({"symbol": "SOL-USD", "side": "buy", "type": "limit", "price": "25.000", "quantity": "1", "stp": "cancel_oldest"})).await.body;
    assert_eq!(oldest["status"], "new", "{oldest}");
    let own = alice.get(&format!("/v1/orders/{}", id(&own))).await.body;
    assert_eq!((own["status"].as_str(), own["cancel_reason"].as_str()), (Some("cancelled"), Some("stp")));
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_has_the_api_shape_and_status() {
    let server = Server::start_with(|c| c.limits.max_body_bytes = 2048).await;
    let alice = server.client("alice");
    let good = json!({"symbol": "BTC-USD", "side": "buy", "type": "limit", "price": "100.00", "quantity": "1"});

    // 401: no key, a bad key, a forged key for another account.
    server.public().post("/v1/orders", &good).await.expect_error(401, "unauthorized");
    let mut forged = server.client("alice");
    forged.key = Some(alice.key.clone().expect("key").replace("alice", "bob"));
    forged.get("/v1/orders").await.expect_error(401, "unauthorized");
    let mut garbage = server.client("alice");
    garbage.key = Some("tk1.nope".into());
    garbage.get("/v1/fills").await.expect_error(401, "unauthorized");

    // 400: malformed JSON, wrong types, unknown fields, invalid values.
    let raw = |body: &str| {
        let c = alice.clone();
        let body = body.as_bytes().to_vec();
        async move { c.raw(Method::POST, "/v1/orders", Some(body), &[]).await }
    };
    raw("{not json").await.expect_error(400, "invalid_json");
    raw("").await.expect_error(400, "invalid_json");
    raw(r#"{"symbol":"BTC-USD","side":"buy","type":"limit","price":100,"quantity":"1"}"#)
        .await
        .expect_error(400, "invalid_request");
    raw(r#"{"symbol":"BTC-USD","side":"buy","type":"limit","price":"100","quantity":"1","colour":"red"}"#)
        .await
        .expect_error(400, "invalid_request");
    let with = |field: &str, value: Value| {
        let mut body = good.clone();
        body[field] = value;
        body
    };
    for (body, code) in [
        (with("price", json!("100.001")), "invalid_price"),
        (with("quantity", json!("0.00001")), "invalid_quantity"),
        (with("quantity", json!("-1")), "invalid_quantity"),
        (with("quantity", json!("1000.0001")), "quantity_above_max"),
        (
            json!({"symbol": "BTC-USD", "side": "buy", "type": "limit", "price": "100000", "quantity": "101"}),
            "notional_above_max",
        ),
        (
            json!({"symbol": "BTC-USD", "side": "buy", "type": "limit", "price": "1", "quantity": "1",
                   "time_in_force": "ioc", "post_only": true}),
            "invalid_time_in_force",
        ),
        (with("client_order_id", json!("has space")), "invalid_client_order_id"),
        (with("client_order_id", json!("x".repeat(37))), "invalid_client_order_id"),
    ] {
        alice.post("/v1/orders", &body).await.expect_error(400, code);
    }
    alice.get("/v1/orders?status=bogus").await.expect_error(400, "invalid_query");
    alice.get("/v1/orders?nope=1").await.expect_error(400, "invalid_query");
    alice.post("/v1/orders?response=maybe", &good).await.expect_error(400, "invalid_query");

    // 404: unknown symbol (order entry and market data), unknown route.
    alice.post("/v1/orders", &with("symbol", json!("NOPE-USD"))).await.expect_error(404, "unknown_symbol");
    server.public().get("/v1/book/NOPE-USD").await.expect_error(404, "unknown_symbol");
    server.public().get("/v1/nothing-here").await.expect_error(404, "not_found");

    // 409: duplicate client_order_id among open orders.
    let first = alice.post("/v1/orders", &with("client_order_id", json!("my-1"))).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(first.body["client_order_id"], "my-1");
    alice
        .post("/v1/orders", &with("client_order_id", json!("my-1")))
        .await
        .expect_error(409, "duplicate_client_order_id");
    // Unique among *open* orders only: once my-1 is done, the id is free again.
    let first_id = first.body["order_id"].as_str().expect("id");
    assert_eq!(alice.delete(&format!("/v1/orders/{first_id}")).await.status, StatusCode::OK);
    let reused = alice.post("/v1/orders", &with("client_order_id", json!("my-1"))).await;
    assert_eq!(reused.status, StatusCode::CREATED, "{}", reused.body);

    // 413: body too large; the server stays up.
    let big = format!(r#"{{"symbol":"BTC-USD","pad":"{}"}}"#, "x".repeat(4096));
    raw(&big).await.expect_error(413, "payload_too_large");
    assert_eq!(server.public().get("/healthz").await.status, StatusCode::OK);
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_with_retry_after_and_headers() {
    let server = Server::start_with(|c| {
        c.rate_limit.per_second = 1;
        c.rate_limit.burst = 3;
    })
    .await;
    let alice = server.client("alice");
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let a = alice.get("/v1/orders").await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.headers["x-ratelimit-limit"], "1");
        remaining.push(a.headers["x-ratelimit-remaining"].to_str().expect("ascii").to_string());
    }
    assert_eq!(remaining, ["2", "1", "0"]);
    let limited = alice.get("/v1/orders").await;
    limited.expect_error(429, "rate_limited");
    assert!(limited.headers["retry-after"].to_str().expect("ascii").parse::<u64>().expect("seconds") >= 1);
    // Another key has its own bucket.
    assert_eq!(server.client("bob").get("/v1/orders").await.status, StatusCode::OK);
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_replay_or_refuse() {
    let server = Server::start().await;
    let alice = server.client("alice");
    let body = json!({"symbol": "ETH-USD", "side": "buy", "type": "limit", "price": "1500.00", "quantity": "1"});
    let send = |body: &Value, key: &str| {
        let (c, b, k) = (alice.clone(), body.to_string().into_bytes(), key.to_string());
        async move { c.raw(Method::POST, "/v1/orders", Some(b), &[("Idempotency-Key", &k)]).await }
    };
    let first = send(&body, "k-1").await;
    assert_eq!(first.status, StatusCode::CREATED);
    let again = send(&body, "k-1").await;
    assert_eq!((again.status, &again.body), (first.status, &first.body), "the same answer, not a second order");
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(alice.get("/v1/orders?status=open").await.body.as_array().map(Vec::len), Some(1));
    let mut other = body.clone();
    other["quantity"] = json!("2");
    send(&other, "k-1").await.expect_error(422, "idempotency_key_reused");
    // Keys are per account.
    let bob = server.client("bob");
    let b =
        bob.raw(Method::POST, "/v1/orders", Some(body.to_string().into_bytes()), &[("Idempotency-Key", "k-1")]).await;
    assert_eq!(b.status, StatusCode::CREATED);
    assert_ne!(b.body["order_id"], first.body["order_id"]);
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_mode_batches_and_cancel_all() {
    let server = Server::start().await;
    let alice = server.client("alice");
    let ack = alice
        .post(
            "/v1/orders?response=ack",
            &json!({"symbol": "BTC-USD", "side": "buy", "type": "limit", "price": "100.00", "quantity": "1"}),
        )
        .await;
    assert_eq!(ack.status, StatusCode::ACCEPTED);
    assert_eq!(ack.body["status"], "pending");
    // The engine gets to it: the order becomes visible as new.
    let path = format!("/v1/orders/{}", id(&ack.body));
    let mut seen = Value::Null;
    for _ in 0..100 {
        let a = alice.get(&path).await;
        if a.status == StatusCode::OK {
            seen = a.body;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(seen["status"], "new");

    let batch = alice
        .post(
            "/v1/orders/batch",
            &json!({"orders": [
                {"symbol": "BTC-USD", "side": "buy", "type": "limit", "price": "101.00", "quantity": "1"},
                {"symbol": "BTC-USD", "side": "buy", "type": "limit", "price": "1.001", "quantity": "1"},
                {"symbol": "ETH-USD", "side": "sell", "type": "limit", "price": "2000.00", "quantity": "1"},
                {"symbol": "NOPE", "side": "sell", "type": "limit", "price": "1", "quantity": "1"},
                {"symbol": "ETH-USD", "side": "buy", "type": "market", "quantity": "0.5"}
            ]}),
        )
        .await;
    assert_eq!(batch.status, StatusCode::OK);
    let results = batch.body["results"].as_array().expect("results").clone();
    assert_eq!(results.len(), 5);
    assert_eq!(results[0]["status"], "new");
    assert_eq!(results[1]["error"]["code"], "invalid_price");
    assert_eq!(results[2]["status"], "new");
    assert_eq!(results[3]["error"]["code"], "unknown_symbol");
    assert_eq!(results[4]["cancel_reason"], "stp", "alice's market buy meets alice's own ask: {}", results[4]);
    let too_many = json!({"orders": vec![json!({"symbol": "BTC-USD"}); 101]});
    alice.post("/v1/orders/batch", &too_many).await.expect_error(400, "too_many_orders");

    // Cancel-all on one symbol, then on all.
    let bob = server.client("bob");
    bob.limit("BTC-USD", "sell", "500.00", "1").await;
    let cancelled = alice.delete("/v1/orders?symbol=BTC-USD").await;
    assert_eq!(cancelled.status, StatusCode::OK);
    assert_eq!(cancelled.body["cancelled"].as_array().map(Vec::len), Some(2));
    assert_eq!(alice.get("/v1/orders?status=open").await.body.as_array().map(Vec::len), Some(1));
    let all = alice.delete("/v1/orders").await.body;
    assert_eq!(all["cancelled"].as_array().map(Vec::len), Some(1));
    assert_eq!(alice.get("/v1/orders?status=open").await.body, json!([]));
    let gone = alice.get(&path).await.body;
    assert_eq!(gone["cancel_reason"], "cancel_all");
    assert_eq!(
        bob.get("/v1/orders?status=open").await.body.as_array().map(Vec::len),
        Some(1),
        "bob's order is untouched"
    );
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn market_data_endpoints() {
    let server = Server::start().await;
    let (alice, bob, public) = (server.client("alice"), server.client("bob"), server.public());
    let symbols = public.get("/v1/symbols").await.body;
    assert_eq!(
        symbols[0],
        json!({"symbol": "BTC-USD", "tick_size": "0.01", "lot_size": "0.0001", "min_quantity": "0.0001", "max_quantity": "1000"})
    );
    assert_eq!(symbols[2]["tick_size"], "0.001");
    let empty = public.get("/v1/ticker/ETH-USD").await.body;
    assert_eq!(
        empty,
        json!({"symbol": "ETH-USD", "best_bid": null, "best_bid_quantity": null, "best_ask": null,
                              "best_ask_quantity": null, "last_price": null, "volume_24h": "0", "sequence": 0})
    );
    alice.limit("ETH-USD", "sell", "2000.00", "1").await;
    alice.limit("ETH-USD", "sell", "2001.00", "2").await;
    bob.limit("ETH-USD", "buy", "1999.00", "3").await;
    bob.limit("ETH-USD", "buy", "2000.00", "0.25").await;
    let book = public.get_when("/v1/book/ETH-USD?depth=1", |b| b["sequence"] == 4).await;
    assert_eq!(
        book,
        json!({"symbol": "ETH-USD", "sequence": 4, "bids": [["1999.00", "3"]], "asks": [["2000.00", "0.75"]]})
    );
    let trades = public.get("/v1/trades/ETH-USD?limit=10").await.body;
    assert_eq!(trades.as_array().map(Vec::len), Some(1));
    assert_eq!(
        (trades[0]["price"].as_str(), trades[0]["quantity"].as_str(), trades[0]["taker_side"].as_str()),
        (Some("2000.00"), Some("0.25"), Some("buy"))
    );
    let ticker = public.get("/v1/ticker/ETH-USD").await.body;
    assert_eq!(
        (
            ticker["best_bid"].as_str(),
            ticker["best_ask_quantity"].as_str(),
            ticker["last_price"].as_str(),
            ticker["volume_24h"].as_str(),
            ticker["sequence"].as_u64()
        ),
        (Some("1999.00"), Some("0.75"), Some("2000.00"), Some("0.25"), Some(4))
    );
    let candles = public.get("/v1/candles/ETH-USD?interval=1m&limit=5").await.body;
    assert_eq!((candles[0]["open"].as_str(), candles[0]["volume"].as_str()), (Some("2000.00"), Some("0.25")));
    public.get("/v1/candles/ETH-USD?interval=7m").await.expect_error(400, "invalid_query");
    let metrics = reqwest::get(format!("{}/metrics", server.base)).await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("tachyon_engine_commands_total{partition="), "{metrics}");
    assert!(metrics.contains("tachyon_gateway_orders_submitted_total 4"), "{metrics}");
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_generated_from_the_code() {
    let server = Server::start().await;
    let doc = server.public().get("/v1/openapi.json").await;
    assert_eq!(doc.status, StatusCode::OK);
    let paths = doc.body["paths"].as_object().expect("paths");
    for path in [
        "/v1/orders",
        "/v1/orders/batch",
        "/v1/orders/{order_id}",
        "/v1/fills",
        "/v1/symbols",
        "/v1/book/{symbol}",
        "/v1/trades/{symbol}",
        "/v1/ticker/{symbol}",
        "/v1/candles/{symbol}",
    ] {
        assert!(paths.contains_key(path), "{path} missing");
    }
    for method in ["post", "get", "delete"] {
        assert!(paths["/v1/orders"].get(method).is_some(), "{method} /v1/orders");
    }
    let order = &doc.body["components"]["schemas"]["Order"]["properties"];
    for field in
        ["order_id", "client_order_id", "status", "reject_reason", "cancel_reason", "fills", "average_fill_price"]
    {
        assert!(order.get(field).is_some(), "Order.{field} missing");
    }
    assert!(doc.body["components"]["securitySchemes"]["api_key"].is_object());
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_latency_is_exported_as_histograms_and_dumped_for_admins_only() {
    let server = Server::start().await;
    let (alice, admin) = (server.client("alice"), server.client("admin"));
    alice.limit("BTC-USD", "sell", "30000.00", "0.5").await;
    alice.limit("BTC-USD", "buy", "30000.00", "0.1").await;
    let ack = alice
        .post(
            "/v1/orders?response=ack",
            &json!({"symbol": "BTC-USD", "side": "buy", "type": "limit",
        "price": "29000.00", "quantity": "0.1"}),
        )
        .await;
    assert_eq!(ack.status, StatusCode::ACCEPTED);

    alice.get("/v1/admin/latency").await.expect_error(403, "not_admin");
    server.public().get("/v1/admin/latency").await.expect_error(401, "unauthorized");
    let dump = admin.get("/v1/admin/latency").await;
    assert_eq!(dump.status, StatusCode::OK);
    assert_eq!(dump.body["unit"], "microseconds");
    let hops = &dump.body["hops"];
    assert!(hops["ack"]["count"].as_u64() >= Some(3), "every command is timed to its durable ack: {hops}");
    assert!(hops["engine_in"]["count"].as_u64() >= Some(2), "{hops}");
    assert!(hops["engine"]["count"].as_u64() >= Some(2), "{hops}");
    assert_eq!(hops["reply"]["count"], 2, "the two result-mode orders: {hops}");
    for hop in ["ack", "engine_in", "engine", "reply", "marketdata"] {
        assert!(hops[hop]["p99"].is_number() && hops[hop]["hdr"].is_string(), "{hop}: {hops}");
    }

    let text = reqwest::get(format!("{}/metrics", server.base)).await.expect("metrics").text().await.expect("text");
    assert!(text.contains("tachyon_hop_latency_seconds_bucket{hop=\"reply\",le=\"+Inf\"} 2"), "{text}");

    // DELETE answers the dump and resets.
    let reset = admin.delete("/v1/admin/latency").await;
    assert_eq!(reset.body["hops"]["reply"]["count"], 2);
    assert_eq!(admin.get("/v1/admin/latency").await.body["hops"]["reply"]["count"], 0);
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_bounds_are_enforced_and_even_axums_own_errors_have_the_api_shape() {
    let server = Server::start().await;
    let alice = server.client("alice");
    // Out of the documented bounds: 400, never silently clamped.
    for path in ["/v1/orders?limit=0", "/v1/orders?limit=1001", "/v1/fills?limit=0", "/v1/orders?status=done"] {
        alice.get(path).await.expect_error(400, "invalid_query");
    }
    for path in ["/v1/book/BTC-USD?depth=0", "/v1/book/BTC-USD?depth=10001", "/v1/candles/BTC-USD?interval=2m"] {
        server.public().get(path).await.expect_error(400, "invalid_query");
    }
    assert_eq!(alice.get("/v1/orders?limit=1000&status=open").await.status, StatusCode::OK);
    assert_eq!(server.public().get("/v1/book/BTC-USD?depth=10000").await.status, StatusCode::OK);
    // A method the route does not have: 405 in the API's shape, with `Allow`.
    let answer = alice.raw(Method::PUT, "/v1/admin/latency", None, &[]).await;
    answer.expect_error(405, "method_not_allowed");
    let allow = answer.headers.get("allow").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(allow.contains("GET") && allow.contains("DELETE"), "Allow: {allow}");
    // An amend field is a string or absent; null is neither.
    let answer = alice.raw(Method::PATCH, "/v1/orders/1", Some(br#"{"price": null}"#.to_vec()), &[]).await;
    answer.expect_error(400, "invalid_request");
    server.stop().await.expect("clean stop");
}
