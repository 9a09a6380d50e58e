//! Connection floods and stalls, on the real binary: one client that opens connections
//! and never finishes a request cannot lock the traders out (the per-IP and total caps of
//! `[gateway]`), and a connection that stops moving is closed (the header-read and idle
//! timeouts, the WebSocket ping).

mod common;

use std::time::Duration;

use common::process::{free_port, start};
use common::{Client, Ws};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A connection from `source` that sends half a request line and stops.
async fn half_open(source: [u8; 4], port: u16) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind((source, 0).into()).expect("a loopback source address");
    let mut stream = socket.connect(([127, 0, 0, 1], port).into()).await.expect("connects");
    stream.write_all(b"GET /v1/orders HTTP/1.1\r\nHo").await.expect("writes");
    stream
}

/// The server closed `stream` (end of file or a reset) within 5 s.
async fn closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte)).await, Ok(Ok(0) | Err(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_over_the_per_ip_cap_are_closed_and_traders_still_trade() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("tachyon.toml");
    std::fs::write(&config, "[gateway]\nmax_connections = 100\nmax_connections_per_ip = 40\n").expect("config");
    let port = free_port();
    let process = start(dir.path(), port, &["--config", config.to_str().expect("utf-8")]).await;
    let keys = tachyon_gateway::KeyRing::load_or_create(dir.path()).expect("key secret");
    let key = keys.mint(tachyon_proto::AccountId::parse("alice").expect("valid")).expose().to_string();
    let trader = Client { base: process.base.clone(), key: Some(key), http: reqwest::Client::new() };

    // One flooder on 127.0.0.2: 40 connections are held, the next 20 are closed at once.
    let mut held = Vec::new();
    for _ in 0..40 {
        held.push(half_open([127, 0, 0, 2], port).await);
    }
    let mut refused = 0;
    for _ in 0..20 {
        let mut extra = half_open([127, 0, 0, 2], port).await;
        refused += usize::from(closed(&mut extra).await);
    }
    assert_eq!(refused, 20, "every connection over the per-IP cap is closed");
    // A second flooder on 127.0.0.3 holds 40 more: 80 of the 100 the gateway allows.
    for _ in 0..40 {
        held.push(half_open([127, 0, 0, 3], port).await);
    }

    // The trader, from 127.0.0.1, is under both caps: it places and reads as usual.
    let placed = trader
        .post(
            "/v1/orders",
            &json!({"symbol": "BTC-USD", "side": "buy", "type": "limit", "price": "100.00", "quantity": "0.1"}),
        )
        .await;
    assert_eq!(placed.status, 201, "{}", placed.body);
    assert_eq!(trader.get("/v1/orders").await.status, 200);
    let metrics = reqwest::get(format!("{}/metrics", process.base)).await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("tachyon_gateway_connections_refused_total{cap=\"per_ip\"} 20"), "{metrics}");
    let open: usize = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tachyon_gateway_connections "))
        .and_then(|v| v.parse().ok())
        .expect("the open-connections gauge");
    assert!((80..=100).contains(&open), "the held connections count: {open}");

    // Closing the flood frees its places.
    drop(held);
    let mut fresh = half_open([127, 0, 0, 2], port).await;
    fresh.write_all(b"st: x\r\n\r\n").await.expect("completes the request");
    let mut answer = vec![0u8; 12];
    fresh.read_exact(&mut answer).await.expect("an answer");
    assert!(answer.starts_with(b"HTTP/1.1 401"), "{}", String::from_utf8_lossy(&answer));
}

/// The gateway's `tachyon_gateway_connections_timed_out_total`.
async fn timed_out(base: &str) -> u64 {
    let metrics = reqwest::get(format!("{base}/metrics")).await.expect("metrics").text().await.expect("text");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("tachyon_gateway_connections_timed_out_total "))
        .and_then(|v| v.parse().ok())
        .expect("the timed-out counter")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_stuck_and_silent_connections_are_closed_and_live_ones_are_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("tachyon.toml");
    std::fs::write(
        &config,
        "[gateway]\nheader_read_timeout_ms = 300\nidle_timeout_ms = 600\nws_ping_interval_ms = 150\n",
    )
    .expect("config");
    let port = free_port();
    let process = start(dir.path(), port, &["--config", config.to_str().expect("utf-8")]).await;
    let connect = || TcpStream::connect(("127.0.0.1", port));

    // Half a request head, then nothing: cut by the header-read timeout.
    let mut half = half_open([127, 0, 0, 1], port).await;
    assert!(closed(&mut half).await, "a request head that never ends is cut");

    // A head trickled one byte every 50 ms (slowloris) is cut too, never answered.
    let mut slow = connect().await.expect("connects");
    let head = format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n", "a".repeat(40));
    for byte in head.as_bytes() {
        if slow.write_all(std::slice::from_ref(byte)).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut answer)).await;
    assert!(!answer.starts_with(b"HTTP/1.1 200"), "a trickled head is not served");

    // A keep-alive connection is served, then closed once idle.
    let mut idle = connect().await.expect("connects");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("writes");
    let mut status = [0u8; 12];
    idle.read_exact(&mut status).await.expect("an answer");
    assert_eq!(&status, b"HTTP/1.1 200");
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut rest)).await;
    assert!(matches!(ended, Ok(Ok(_) | Err(_))), "an idle keep-alive connection is closed");

    // A client that asks for large answers and never reads them: the server's writes stop
    // moving and the connection is closed, with its queue, after the idle timeout.
    let before = timed_out(&process.base).await;
    let stuck = connect().await.expect("connects");
    let (mut stuck_read, mut stuck_write) = stuck.into_split();
    let writer = tokio::spawn(async move {
        for _ in 0..400 {
            if stuck_write.write_all(b"GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n").await.is_err() {
                return;
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut drained = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(10), stuck_read.read_to_end(&mut drained)).await;
    assert!(matches!(ended, Ok(Ok(_) | Err(_))), "a connection that never reads is closed");
    let one =
        reqwest::get(format!("{}/v1/openapi.json", process.base)).await.expect("spec").bytes().await.expect("body");
    assert!(drained.len() < 400 * one.len(), "it was closed before every answer went out ({} bytes)", drained.len());
    writer.abort();
    assert!(timed_out(&process.base).await > before, "the stall is counted");

    // A WebSocket peer that never reads (so never answers a ping) is dropped with a reason.
    // (Raw bytes: a WebSocket library would answer the pings as soon as it reads them.)
    let mut silent = connect().await.expect("connects");
    silent
        .write_all(
            b"GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .expect("writes");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut frames = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut frames)).await;
    assert!(matches!(ended, Ok(Ok(_))), "the server closes a silent WebSocket");
    let frames = String::from_utf8_lossy(&frames);
    assert!(frames.starts_with("HTTP/1.1 101"), "{frames}");
    assert!(frames.contains(r#""code":"idle_timeout""#), "with a reason: {frames}");
    let url = format!("ws://127.0.0.1:{port}/v1/ws");

    // A peer that reads (its library answers the pings) but sends nothing stays, well
    // past the idle timeout, and is served.
    let mut live = Ws::connect(&url, None).await;
    assert!(!live.closed_within(Duration::from_secs(2)).await, "a peer that answers pings is kept");
    live.send(&json!({"op": "ping"})).await;
    assert_eq!(live.next().await["type"], "pong");
}
