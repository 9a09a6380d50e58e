//! `GET /v1/ws`: market-data channels, the account's order updates and order entry.
//!
//! Each connection has one bounded outbound queue drained by a writer task. Market-data
//! subscriptions are tasks that forward from the symbol's broadcast channel into that
//! queue: a client too slow to keep up makes its forwarder wait, the broadcast channel
//! then reports it lagged, and the book subscriber is sent a fresh snapshot (the trades
//! subscriber an explicit `lagged` error) instead of unbounded buffering or silent gaps.
//! Order entry validates and produces in the order frames arrive, then answers each
//! request from its own task when the engine's report comes back.
//!
//! A frame is read once ([`Frame`]: keys and raw value slices, no JSON tree); the writer
//! task sends whatever is queued for the connection and flushes the socket once per
//! wake-up, not once per message.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use tachyon_proto::api::OrderRequest;
use tachyon_proto::AccountId;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::auth::Identity;
use crate::error::ApiError;
use crate::frame::{Frame, FrameError};
use crate::market::{Channel, MdMessage};
use crate::rest::AppState;
use crate::service::{Gateway, ResponseMode};

static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// The upgrade: an `X-API-Key` header, if present, must be valid.
pub async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    // The key first: a bad or revoked key is 401 whether or not the request is a valid upgrade.
    let identity = match headers.get("x-api-key") {
        None => None,
        Some(key) => match state.gateway.authenticate(key.to_str().ok()) {
            Ok(identity) => Some(identity),
            Err(e) => return e.into_response(),
        },
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => return ApiError::bad_request("websocket_required", e.body_text()).into_response(),
    };
    let max = state.gateway.config.max_frame_bytes;
    ws.max_message_size(max).max_frame_size(max).on_upgrade(move |socket| run(state.gateway, socket, identity))
}

fn error_frame(code: &str, message: &str) -> Message {
    text(&json!({"type": "error", "error": {"code": code, "message": message}}))
}

fn text(value: &Value) -> Message {
    Message::Text(Utf8Bytes::from(value.to_string()))
}

struct Connection {
    gateway: Arc<Gateway>,
    id: u64,
    out: mpsc::Sender<Message>,
    /// The key the connection authenticated with: its account, its scope, and its id to
    /// close the connection when it is revoked.
    identity: Option<Identity>,
    /// (channel, symbol) → forwarding task.
    subscriptions: HashMap<(String, String), JoinHandle<()>>,
}

async fn run(gateway: Arc<Gateway>, socket: WebSocket, identity: Option<Identity>) {
    let (mut sink, mut stream) = socket.split();
    let (out, mut queue) = mpsc::channel::<Message>(gateway.config.ws_queue.max(1));
    let writer = tokio::spawn(async move {
        // Everything queued goes into the socket's buffer, then one flush (one write)
        // per wake-up.
        let mut batch = Vec::with_capacity(64);
        while queue.recv_many(&mut batch, 64).await > 0 {
            let mut sent = Ok(());
            for message in batch.drain(..) {
                sent = sink.feed(message).await;
                if sent.is_err() {
                    break;
                }
            }
            if sent.is_err() || sink.flush().await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    gateway.metrics.ws_connections.fetch_add(1, Ordering::Relaxed);
    let id = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
    let mut conn = Connection { gateway: Arc::clone(&gateway), id, out, identity, subscriptions: HashMap::new() };
    let mut revocations = gateway.revocations.watch();
    // A ping every interval keeps a live peer talking (browsers and WebSocket libraries
    // answer pings themselves); a peer silent for the idle timeout is dead or stuck and is
    // dropped, so its connection, queue and subscriptions do not linger.
    let limits = gateway.connections.limits();
    let mut ping =
        tokio::time::interval_at(tokio::time::Instant::now() + limits.ws_ping_interval, limits.ws_ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = tokio::time::Instant::now();
    loop {
        let frame = tokio::select! {
            frame = stream.next() => frame,
            _ = ping.tick() => {
                if last_heard.elapsed() >= limits.idle_timeout {
                    gateway.connections.count_stall();
                    gateway.metrics.ws_errors.fetch_add(1, Ordering::Relaxed);
                    let _ = conn.out.try_send(error_frame(
                        "idle_timeout",
                        "nothing was received for the idle timeout (pings unanswered); the connection closes",
                    ));
                    break;
                }
                // A full queue means the peer is not reading: the socket's own stall timer
                // handles that, and a ping would only wait behind the queue.
                let _ = conn.out.try_send(Message::Ping(axum::body::Bytes::new()));
                continue;
            }
            Ok(()) = revocations.changed() => {
                if conn.identity.is_some_and(|i| gateway.revocations.is_revoked(i.key_id)) {
                    conn.error("key_revoked", "this API key has been revoked; the connection closes").await;
                    break;
                }
                continue;
            }
        };
        let Some(frame) = frame else { break };
        last_heard = tokio::time::Instant::now();
        match frame {
            Ok(Message::Text(t)) => {
                gateway.metrics.ws_messages_in.fetch_add(1, Ordering::Relaxed);
                conn.handle(t.as_str()).await;
            }
            Ok(Message::Binary(_)) => {
                conn.error("invalid_message", "binary frames are not supported; send JSON text").await;
            }
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
        }
    }
    for (_, task) in conn.subscriptions.drain() {
        task.abort();
    }
    if let Some(account) = conn.account() {
        gateway.orders.unsubscribe(account, id);
    }
    drop(conn);
    let _ = writer.await;
    gateway.metrics.ws_connections.fetch_sub(1, Ordering::Relaxed);
}

impl Connection {
    fn account(&self) -> Option<AccountId> {
        self.identity.map(|i| i.account)
    }

    async fn send(&self, message: Message) {
        let _ = self.out.send(message).await;
    }

    async fn error(&self, code: &str, message: &str) {
        self.gateway.metrics.ws_errors.fetch_add(1, Ordering::Relaxed);
        self.send(error_frame(code, message)).await;
    }

    async fn handle(&mut self, text_frame: &str) {
        let frame = match Frame::parse(text_frame) {
            Ok(frame) => frame,
            Err(FrameError::NotAnObject) => {
                return self.error("invalid_message", "a message is one JSON object").await;
            }
            Err(FrameError::Json(e)) => {
                return self.error("invalid_json", &format!("the message is not valid JSON: {e}")).await;
            }
        };
        let Some(op) = frame.str("op") else {
            return self.error("invalid_message", "the message needs an \"op\" string").await;
        };
        let result = match op.as_ref() {
            "ping" => {
                self.send(Message::Text(Utf8Bytes::from_static(r#"{"type":"pong"}"#))).await;
                Ok(())
            }
            "auth" => self.auth(&frame),
            "subscribe" => self.subscribe(&frame),
            "unsubscribe" => self.unsubscribe(&frame),
            "order.new" | "order.cancel" | "order.cancel_all" => return self.order_op(&op, &frame).await,
            other => Err(ApiError::bad_request("unknown_op", format!("unknown op {other:?}"))),
        };
        if let Err(e) = result {
            self.error(e.code, &e.message).await;
        }
    }

    fn auth(&mut self, frame: &Frame<'_>) -> Result<(), ApiError> {
        let key = frame.str("api_key");
        let identity = self.gateway.authenticate(key.as_deref())?;
        let account = identity.account;
        if self.account().is_some_and(|a| a != account) {
            return Err(ApiError::bad_request(
                "already_authenticated",
                "this connection is authenticated as another account",
            ));
        }
        self.identity = Some(identity);
        Ok(())
    }

    fn channel_and_symbol(frame: &Frame<'_>) -> Result<(String, Option<String>), ApiError> {
        let channel = frame
            .str("channel")
            .ok_or_else(|| ApiError::bad_request("invalid_message", "subscribe needs a \"channel\""))?;
        let symbol = frame.str("symbol").map(String::from);
        Ok((channel.into_owned(), symbol))
    }

    fn subscribe(&mut self, frame: &Frame<'_>) -> Result<(), ApiError> {
        let (channel, symbol) = Self::channel_and_symbol(frame)?;
        let key = (channel.clone(), symbol.clone().unwrap_or_default());
        if self.subscriptions.contains_key(&key) {
            return Err(ApiError::bad_request("already_subscribed", "already subscribed to this channel"));
        }
        let task = match channel.as_str() {
            "orders" if self.gateway.config.order_entry => {
                let account = self
                    .account()
                    .ok_or_else(|| ApiError::unauthorized("the orders channel needs authentication (op auth)"))?;
                let rx = self.gateway.orders.subscribe(account, self.id, self.gateway.config.ws_queue);
                tokio::spawn(forward_orders(rx, self.out.clone()))
            }
            "book" | "trades" | "ticker" => {
                let symbol = symbol
                    .ok_or_else(|| ApiError::bad_request("invalid_message", "this channel needs a \"symbol\""))?;
                let kind = match channel.as_str() {
                    "book" => Channel::Book,
                    "trades" => Channel::Trades,
                    _ => Channel::Ticker,
                };
                let (snapshot, rx) = self
                    .gateway
                    .market
                    .subscribe(&symbol, kind == Channel::Book)
                    .ok_or_else(|| ApiError::unknown_symbol(&symbol))?;
                tokio::spawn(forward_market(Arc::clone(&self.gateway), symbol, kind, snapshot, rx, self.out.clone()))
            }
            other => return Err(ApiError::bad_request("unknown_channel", format!("unknown channel {other:?}"))),
        };
        self.subscriptions.insert(key, task);
        Ok(())
    }

    fn unsubscribe(&mut self, frame: &Frame<'_>) -> Result<(), ApiError> {
        let (channel, symbol) = Self::channel_and_symbol(frame)?;
        let task = self
            .subscriptions
            .remove(&(channel.clone(), symbol.unwrap_or_default()))
            .ok_or_else(|| ApiError::bad_request("not_subscribed", "no such subscription"))?;
        task.abort();
        if channel == "orders" {
            if let Some(account) = self.account() {
                self.gateway.orders.unsubscribe(account, self.id);
            }
        }
        Ok(())
    }

    /// Order entry: rate-limited per key like REST; answered from a task of its own.
    async fn order_op(&mut self, op: &str, frame: &Frame<'_>) {
        let request_id = frame.raw("request_id").map(RawValue::to_owned);
        let started = match self.start_order_op(op, frame) {
            Ok(started) => started,
            Err(e) => return self.send(response::<()>(request_id.as_deref(), Err(e))).await,
        };
        let gateway = Arc::clone(&self.gateway);
        let out = self.out.clone();
        tokio::spawn(async move {
            let id = request_id.as_deref();
            let message = match started {
                Started::New(placed) => response(id, gateway.placed(placed).await.map(|(_, order)| order)),
                Started::Cancel(order_id, submitted) => {
                    response(id, gateway.changed(order_id, submitted).await.map(|(_, order)| order))
                }
                Started::CancelAll(submitted) => response(
                    id,
                    gateway.cancelled_all(submitted).await.map(|(_, cancelled)| CancelledAll { cancelled }),
                ),
            };
            let _ = out.send(message).await;
        });
    }

    fn start_order_op(&self, op: &str, frame: &Frame<'_>) -> Result<Started, ApiError> {
        let identity =
            self.identity.ok_or_else(|| ApiError::unauthorized("order entry needs authentication (op auth)"))?;
        Gateway::may_trade(&identity)?;
        let account = identity.account;
        let decision = self.gateway.rate_check(account);
        if !decision.allowed {
            return Err(ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests for this API key; retry in {} ms", decision.retry_after.as_millis()),
            ));
        }
        let gw = &self.gateway;
        match op {
            "order.new" => {
                let request: OrderRequest = frame
                    .decode_rest(&["op", "request_id"])
                    .map_err(|e| ApiError::bad_request("invalid_request", e.to_string()))?;
                Ok(Started::New(gw.place(account, &request, ResponseMode::Result)?))
            }
            "order.cancel" => {
                let id = frame.str("order_id").ok_or_else(|| {
                    ApiError::bad_request("invalid_request", "order.cancel needs an \"order_id\" string")
                })?;
                let id = Gateway::order_id(&id)?;
                Ok(Started::Cancel(id, gw.cancel(account, id)?))
            }
            _ => {
                let symbol = frame.str("symbol");
                Ok(Started::CancelAll(gw.cancel_all(account, symbol.as_deref())?))
            }
        }
    }
}

/// What `order.cancel_all` answers with.
#[derive(serde::Serialize)]
struct CancelledAll {
    cancelled: Vec<String>,
}

/// `{"type": "response", "request_id": <as sent>, "result" | "error": …}`, rendered in one
/// pass (the request id is echoed byte for byte).
fn response<T: serde::Serialize>(request_id: Option<&RawValue>, result: Result<T, ApiError>) -> Message {
    let mut body = Vec::with_capacity(512);
    body.extend_from_slice(br#"{"type":"response","request_id":"#);
    body.extend_from_slice(request_id.map_or("null", RawValue::get).as_bytes());
    let written = match &result {
        Ok(answer) => {
            body.extend_from_slice(br#","result":"#);
            serde_json::to_writer(&mut body, answer)
        }
        Err(e) => {
            body.extend_from_slice(br#","error":"#);
            serde_json::to_writer(&mut body, &json!({"code": e.code, "message": e.message}))
        }
    };
    body.push(b'}');
    match written.ok().and_then(|()| String::from_utf8(body).ok()) {
        Some(text) => Message::Text(Utf8Bytes::from(text)),
        // Serializing owned strings and numbers cannot fail; if it ever did, say so.
        None => error_frame("internal", "the response could not be rendered"),
    }
}

enum Started {
    New(crate::service::PlacedOrder),
    Cancel(tachyon_proto::OrderId, crate::service::Submitted),
    CancelAll(Vec<crate::service::Submitted>),
}

/// The account's order updates with a per-connection consecutive sequence. If the store
/// had to drop this subscriber (too slow), the client is told instead of seeing a gap.
async fn forward_orders(mut rx: mpsc::Receiver<Arc<tachyon_proto::api::Order>>, out: mpsc::Sender<Message>) {
    let mut sequence = 0u64;
    while let Some(order) = rx.recv().await {
        sequence += 1;
        if out.send(text(&json!({"channel": "orders", "sequence": sequence, "order": *order}))).await.is_err() {
            return;
        }
    }
    let _ = out
        .send(error_frame("slow_consumer", "order updates fell too far behind; subscribe again and reload open orders"))
        .await;
}

async fn forward_market(
    gateway: Arc<Gateway>,
    symbol: String,
    kind: Channel,
    snapshot: Option<MdMessage>,
    mut rx: broadcast::Receiver<Arc<MdMessage>>,
    out: mpsc::Sender<Message>,
) {
    let mut last = 0;
    if let Some(s) = snapshot {
        last = s.sequence;
        if out.send(Message::Text(s.text.clone())).await.is_err() {
            return;
        }
    }
    loop {
        match rx.recv().await {
            Ok(m) if m.channel == kind => {
                if kind == Channel::Book && m.sequence <= last {
                    continue; // Already in the snapshot.
                }
                last = m.sequence;
                if out.send(Message::Text(m.text.clone())).await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                if kind == Channel::Book {
                    gateway.metrics.ws_snapshots_resent.fetch_add(1, Ordering::Relaxed);
                    let Some((Some(s), fresh)) = gateway.market.subscribe(&symbol, true) else { return };
                    rx = fresh;
                    last = s.sequence;
                    if out.send(Message::Text(s.text.clone())).await.is_err() {
                        return;
                    }
                } else {
                    let message = format!("{missed} messages were dropped because the connection fell behind");
                    if out.send(error_frame("lagged", &message)).await.is_err() {
                        return;
                    }
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
