//! An exchange running in-process on `127.0.0.1:0` with its own data directory, and a
//! small client for its REST API and WebSocket.

#![allow(dead_code, reason = "each test file uses a different part")]

pub mod process;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tachyon::config::Config;
use tachyon_gateway::KeyRing;
use tachyon_proto::AccountId;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

pub struct Server {
    pub base: String,
    pub dir: tempfile::TempDir,
    keys: KeyRing,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Test defaults: a data directory of its own, no fsync (the journal's durability has its
/// own tests; this keeps the suite fast on a shared disk).
pub fn test_config(dir: &std::path::Path) -> Config {
    let mut config = Config { data_dir: dir.to_path_buf(), ..Config::default() };
    config.journal.fsync = tachyon::config::FsyncSetting::None;
    config
}

impl Server {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts with the test defaults changed by `adjust`, and waits until it is ready.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        Self::start_in(tempfile::tempdir().expect("tempdir"), adjust).await
    }

    /// Starts on `dir` (a fresh one, or a stopped server's).
    pub async fn start_in(dir: tempfile::TempDir, adjust: impl FnOnce(&mut Config)) -> Self {
        let mut config = test_config(dir.path());
        adjust(&mut config);
        let keys = KeyRing::load_or_create(dir.path()).expect("key secret");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let (stop, stopped) = oneshot::channel::<()>();
        let roles = tachyon::exchange::Roles::all(config.partitions);
        let task = tokio::spawn(tachyon::exchange::run(config, roles, listener, async {
            let _ = stopped.await;
        }));
        let server = Self { base, dir, keys, stop: Some(stop), task: Some(task) };
        server.wait_ready().await;
        server
    }

    pub async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        for _ in 0..500 {
            if let Ok(r) = client.get(format!("{}/readyz", self.base)).send().await {
                if r.status() == StatusCode::OK {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the server did not become ready");
    }

    pub fn key(&self, account: &str) -> String {
        self.keys.mint(AccountId::parse(account).expect("valid account")).expose().to_string()
    }

    pub fn client(&self, account: &str) -> Client {
        Client { base: self.base.clone(), key: Some(self.key(account)), http: reqwest::Client::new() }
    }

    pub fn public(&self) -> Client {
        Client { base: self.base.clone(), key: None, http: reqwest::Client::new() }
    }

    pub fn ws_url(&self) -> String {
        format!("{}/v1/ws", self.base.replacen("http", "ws", 1))
    }

    /// Graceful shutdown; returns the exchange's result.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.take().expect("running").await.expect("exchange task")
    }

    /// Stops gracefully and starts again on the same data directory.
    pub async fn restart(mut self, adjust: impl FnOnce(&mut Config)) -> Self {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.take().expect("running").await.expect("exchange task").expect("stops cleanly");
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
        Self::start_in(dir, adjust).await
    }
}

#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub key: Option<String>,
    pub http: reqwest::Client,
}

/// A response: status, headers and JSON body.
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    /// Asserts the API's error shape with `code`.
    pub fn expect_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(self.body["error"]["code"], code, "body: {}", self.body);
        assert!(self.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "message: {}", self.body);
    }
}

impl Client {
    pub async fn raw(&self, method: Method, path: &str, body: Option<Vec<u8>>, headers: &[(&str, &str)]) -> Answer {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(key) = &self.key {
            request = request.header("X-API-Key", key);
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("{status} body is not JSON: {bytes:?}"))
        };
        Answer { status, headers, body }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.raw(Method::GET, path, None, &[]).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        self.raw(Method::POST, path, Some(body.to_string().into_bytes()), &[]).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Answer {
        self.raw(Method::PATCH, path, Some(body.to_string().into_bytes()), &[]).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.raw(Method::DELETE, path, None, &[]).await
    }

    /// GETs `path` until `ready` holds (public market data follows the engine a moment
    /// after the private reply: they are separate streams), within 5 s.
    pub async fn get_when(&self, path: &str, ready: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..500 {
            let a = self.get(path).await;
            if ready(&a.body) {
                return a.body;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let last = self.get(path).await;
        panic!("GET {path} never satisfied the condition: {} {}", last.status, last.body);
    }

    /// Places a limit order and returns the order object (asserting 201).
    pub async fn limit(&self, symbol: &str, side: &str, price: &str, qty: &str) -> Value {
        let a = self
            .post(
                "/v1/orders",
                &json!({"symbol": symbol, "side": side, "type": "limit", "price": price, "quantity": qty}),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        a.body
    }
}

/// A WebSocket client.
pub struct Ws {
    stream: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
}

impl Ws {
    pub async fn connect(url: &str, key: Option<&str>) -> Self {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = url.into_client_request().expect("request");
        if let Some(key) = key {
            request.headers_mut().insert("x-api-key", key.parse().expect("header value"));
        }
        let (stream, _) = tokio_tungstenite::connect_async(request).await.expect("connects");
        Self { stream }
    }

    pub async fn send(&mut self, value: &Value) {
        self.send_text(&value.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.stream.send(Message::text(text)).await.expect("sent");
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.stream.send(message).await.expect("sent");
    }

    /// The next JSON message (skipping control frames), within 5 s.
    pub async fn next(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(5), self.stream.next())
                .await
                .expect("a message within 5 s")
                .expect("stream open")
                .expect("frame");
            match frame {
                Message::Text(t) => return serde_json::from_str(t.as_str()).expect("JSON message"),
                Message::Close(_) => panic!("the server closed the connection"),
                _ => {}
            }
        }
    }

    /// The next JSON message if one arrives within `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Value> {
        loop {
            let frame =
                tokio::time::timeout(wait, self.stream.next()).await.ok()?.expect("stream open").expect("frame");
            if let Message::Text(t) = frame {
                return Some(serde_json::from_str(t.as_str()).expect("JSON message"));
            }
        }
    }

    /// The next message that satisfies `pred`, skipping others.
    pub async fn next_where(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            let m = self.next().await;
            if pred(&m) {
                return m;
            }
        }
    }

    /// Waits up to `wait` for the server to close the connection, skipping messages;
    /// `true` if it did.
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return false,
                Ok(None | Some(Err(_) | Ok(Message::Close(_)))) => return true,
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// `true` if nothing arrives within `wait`.
    pub async fn quiet_for(&mut self, wait: Duration) -> bool {
        tokio::time::timeout(wait, self.stream.next()).await.is_err()
    }
}
