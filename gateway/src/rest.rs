//! REST routes of `shared/API.md`, thin handlers over [`Gateway`].

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tachyon_proto::api::{
    AccountFill, Book, Candle, ErrorBody, Order, OrderRequest, OrderStatus, PublicTrade, SymbolInfo, Ticker,
};
use tachyon_proto::{AccountId, Timestamp};

use crate::error::ApiError;
use crate::idempotency::{fingerprint, Begin, StoredResponse};
use crate::market::Interval;
use crate::service::{Gateway, ResponseMode};

/// Extra `/metrics` lines and readiness from the process around the gateway (shards,
/// backbone).
pub trait Probe: Send + Sync {
    fn ready(&self) -> bool;
    fn metrics(&self, out: &mut String);
}

/// What every handler gets.
#[derive(Clone)]
#[allow(missing_debug_implementations)] // A handle of handles; nothing to print.
pub struct AppState {
    pub gateway: Arc<Gateway>,
    pub probe: Arc<dyn Probe>,
}

/// The authenticated caller of a private route.
#[derive(Clone, Copy, Debug)]
pub struct Caller(pub AccountId);

/// A JSON answer with its status, kept as bytes so idempotent replays are exact.
#[derive(Clone, Debug)]
pub struct ApiResponse {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

impl ApiResponse {
    pub fn json(status: StatusCode, value: &impl Serialize) -> Self {
        let body = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
        Self { status, body }
    }

    pub fn error(error: &ApiError) -> Self {
        Self::json(error.status, &error.body())
    }
}

impl IntoResponse for ApiResponse {
    fn into_response(self) -> Response {
        (self.status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], self.body).into_response()
    }
}

type ApiResult = Result<ApiResponse, ApiError>;

/// The REST router (WebSocket and OpenAPI routes are added by [`crate::server::router`]).
pub fn routes(state: AppState) -> Router<AppState> {
    let private = Router::new()
        .route("/v1/orders", post(place_order).get(list_orders).delete(cancel_all))
        .route("/v1/orders/batch", post(place_batch))
        .route("/v1/orders/{order_id}", get(get_order).delete(cancel_order).patch(amend_order))
        .route("/v1/fills", get(fills))
        .route("/v1/admin/latency", get(admin_latency).delete(admin_latency))
        .route("/v1/balances", get(crate::rest_balances::balances))
        .route("/v1/admin/deposits", post(crate::rest_balances::deposit))
        .route("/v1/admin/withdrawals", post(crate::rest_balances::withdraw))
        .route("/v1/admin/fees", get(crate::rest_balances::fees))
        .route("/v1/admin/ledger", get(crate::rest_balances::ledger))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    let public = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/symbols", get(symbols))
        .route("/v1/book/{symbol}", get(book))
        .route("/v1/trades/{symbol}", get(trades))
        .route("/v1/ticker/{symbol}", get(ticker))
        .route("/v1/candles/{symbol}", get(candles));
    // A market-data-only server has no private routes: they answer 404.
    let routes = if state.gateway.config.order_entry { public.merge(private) } else { public };
    routes.layer(DefaultBodyLimit::max(state.gateway.config.max_body_bytes))
}

/// Counts every response by route and status (the `/metrics` counter).
pub async fn count_responses(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route =
        request.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(request).await;
    state.gateway.metrics.response(&route, response.status().as_u16());
    response
}

/// Authenticates and rate-limits private routes; adds the `X-RateLimit-*` headers.
async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let key = request.headers().get("x-api-key").and_then(|v| v.to_str().ok());
    let account = match state.gateway.authenticate(key) {
        Ok(account) => account,
        Err(e) => return e.into_response(),
    };
    let decision = state.gateway.rate_check(account);
    let mut response = if decision.allowed {
        request.extensions_mut().insert(Caller(account));
        next.run(request).await
    } else {
        ApiError {
            retry_after: Some(decision.retry_after),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many requests for this API key")
        }
        .into_response()
    };
    let headers = response.headers_mut();
    headers.insert("x-ratelimit-limit", HeaderValue::from(decision.limit));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(decision.remaining));
    response
}

/// The single place where JSON bodies are parsed: the API's error shape for every failure.
pub(crate) fn parse_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the request body is too large")
        } else {
            ApiError::bad_request("invalid_request", e.body_text())
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::bad_request("invalid_request", e.to_string()),
        _ => ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}")),
    })
}

fn parse_query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query.map(|Query(q)| q).map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
}

/// Runs `work` under the request's `Idempotency-Key`, if it has one: a retry with the
/// same body gets the first answer, another body 422, a retry while the first runs 409.
async fn idempotent<F>(
    state: &AppState,
    caller: Caller,
    headers: &HeaderMap,
    method: &Method,
    path: &str,
    body: &[u8],
    work: F,
) -> Response
where
    F: std::future::Future<Output = ApiResult>,
{
    let run = |r: ApiResult| r.unwrap_or_else(|e| ApiResponse::error(&e));
    // Errors answer through `ApiError`, which adds `Retry-After` where one applies.
    let Some(key) = headers.get("idempotency-key") else {
        return work.await.map_or_else(IntoResponse::into_response, IntoResponse::into_response);
    };
    let Ok(key) = key.to_str() else {
        return ApiError::bad_request("invalid_idempotency_key", "Idempotency-Key must be printable ASCII")
            .into_response();
    };
    let store = &state.gateway.idempotency;
    let print = fingerprint(method.as_str(), path, body);
    let ticket = match store.begin(caller.0, key, print, Instant::now()) {
        Err(e) => return ApiError::bad_request("invalid_idempotency_key", e.to_string()).into_response(),
        Ok(Begin::Replay(stored)) => {
            let mut response = ApiResponse {
                status: StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK),
                body: stored.body,
            }
            .into_response();
            response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
            return response;
        }
        Ok(Begin::InFlight) => {
            return ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_in_flight",
                "a request with this Idempotency-Key is still running",
            )
            .into_response()
        }
        Ok(Begin::Mismatch) => {
            return ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was used with another request",
            )
            .into_response()
        }
        Ok(Begin::Proceed(ticket)) => ticket,
    };
    let outcome = work.await;
    if let Err(error) = &outcome {
        if error.status.is_server_error() {
            store.abandon(ticket); // No outcome: a retry may run it.
            return error.clone().into_response();
        }
    }
    let response = run(outcome);
    if response.status.is_server_error() {
        store.abandon(ticket);
    } else {
        store.complete(ticket, StoredResponse { status: response.status.as_u16(), body: response.body.clone() });
    }
    response.into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponseQuery {
    response: Option<String>,
}

fn response_mode(q: &ResponseQuery) -> Result<ResponseMode, ApiError> {
    match q.response.as_deref() {
        None | Some("result") => Ok(ResponseMode::Result),
        Some("ack") => Ok(ResponseMode::Ack),
        Some(other) => {
            Err(ApiError::bad_request("invalid_query", format!("response must be ack or result, not {other:?}")))
        }
    }
}

#[utoipa::path(post, path = "/v1/orders", tag = "orders", request_body = OrderRequest,
    params(("response" = Option<String>, Query, description = "`result` (default): wait for the engine; `ack`: answer 202 once durable"),
           ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key and body get the first answer")),
    responses((status = 201, description = "The order as the engine left it, with its immediate fills (status `rejected` with `reject_reason` when the engine refused it)", body = Order),
              (status = 202, description = "Durable but not yet matched (`?response=ack`, or no engine reply within gateway.reply_timeout_ms): status `pending`", body = Order),
              (status = 404, description = "Unknown symbol", body = ErrorBody), (status = 409, description = "Duplicate client_order_id, or an idempotent retry still running", body = ErrorBody),
              (status = 413, description = "Body too large", body = ErrorBody), (status = 422, description = "Idempotency-Key reused with another body", body = ErrorBody), (status = 400, description = "Invalid request", body = ErrorBody), (status = 401, description = "Missing or invalid X-API-Key", body = ErrorBody), (status = 429, description = "Rate limited (Retry-After)", body = ErrorBody), (status = 503, description = "Backbone unavailable (Retry-After)", body = ErrorBody)),
    security(("api_key" = [])))]
async fn place_order(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    method: Method,
    headers: HeaderMap,
    query: Result<Query<ResponseQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let gw = Arc::clone(&state.gateway);
    let request = OrderPost { state: &state, caller, method: &method, headers: &headers, path: "/v1/orders" };
    request
        .run(query, body, |mode, order: OrderRequest| async move {
            let placed = gw.place(caller.0, &order, mode)?;
            let (status, order) = gw.placed(placed).await?;
            Ok(ApiResponse::json(status, &order))
        })
        .await
}

/// What the order-entry POSTs share: `?response=`, a JSON body, `Idempotency-Key`.
struct OrderPost<'a> {
    state: &'a AppState,
    caller: Caller,
    method: &'a Method,
    headers: &'a HeaderMap,
    path: &'a str,
}

impl OrderPost<'_> {
    /// Parses the query and body and runs `handle` under the request's idempotency key.
    async fn run<T, F, Fut>(
        self,
        query: Result<Query<ResponseQuery>, QueryRejection>,
        body: Result<Bytes, BytesRejection>,
        handle: F,
    ) -> Response
    where
        T: DeserializeOwned,
        F: FnOnce(ResponseMode, T) -> Fut,
        Fut: std::future::Future<Output = ApiResult>,
    {
        let raw = body.as_ref().map(Bytes::clone).unwrap_or_default();
        let work = async {
            let mode = response_mode(&parse_query(query)?)?;
            handle(mode, parse_body(body)?).await
        };
        idempotent(self.state, self.caller, self.headers, self.method, self.path, &raw, work).await
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchRequest {
    orders: Vec<serde_json::Value>,
}

#[utoipa::path(get, path = "/v1/admin/latency", tag = "admin",
    description = "Server-side latency per hop (HdrHistogram): exact percentiles in microseconds and each histogram in HdrHistogram's compressed base64 form. `DELETE` answers the same and then resets the histograms. Admin keys only (`gateway.admin_accounts`).",
    responses((status = 200, description = "`{\"unit\", \"since\", \"hops\": {\"ack\"|\"engine_in\"|\"engine\"|\"reply\"|\"marketdata\": {\"count\", \"mean\", \"p50\", \"p90\", \"p99\", \"p999\", \"p9999\", \"max\", \"hdr\"}}}`", body = serde_json::Value), (status = 401, description = "Missing or invalid X-API-Key", body = ErrorBody), (status = 403, description = "Not an admin key", body = ErrorBody)),
    security(("api_key" = [])))]
async fn admin_latency(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    method: Method,
) -> Response {
    if !state.gateway.config.admin_accounts.contains(&caller.0) {
        return ApiError::new(StatusCode::FORBIDDEN, "not_admin", "this endpoint needs an admin key").into_response();
    }
    let dump = state.gateway.latency().dump();
    if method == Method::DELETE {
        state.gateway.latency().reset();
    }
    Json(dump).into_response()
}

#[utoipa::path(post, path = "/v1/orders/batch", tag = "orders",
    request_body(content = serde_json::Value, description = "`{\"orders\": [<order body>, …]}`, at most limits.max_batch_orders"),
    responses((status = 200, description = "`{\"results\": [<order> | {\"error\": …}, …]}` in request order; each order validated and matched independently, in sequence", body = serde_json::Value), (status = 400, description = "Invalid request", body = ErrorBody), (status = 401, description = "Missing or invalid X-API-Key", body = ErrorBody), (status = 429, description = "Rate limited (Retry-After)", body = ErrorBody), (status = 503, description = "Backbone unavailable (Retry-After)", body = ErrorBody)),
    security(("api_key" = [])))]
async fn place_batch(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    method: Method,
    headers: HeaderMap,
    query: Result<Query<ResponseQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let gw = Arc::clone(&state.gateway);
    let request = OrderPost { state: &state, caller, method: &method, headers: &headers, path: "/v1/orders/batch" };
    request
        .run(query, body, |mode, batch: BatchRequest| async move {
            if batch.orders.len() > gw.config.max_batch_orders {
                return Err(ApiError::bad_request(
                    "too_many_orders",
                    format!("a batch holds at most {} orders", gw.config.max_batch_orders),
                ));
            }
            // Validate and send in order first, then wait for every answer.
            let placed: Vec<Result<_, ApiError>> = batch
                .orders
                .into_iter()
                .map(|value| {
                    let request: OrderRequest = serde_json::from_value(value)
                        .map_err(|e| ApiError::bad_request("invalid_request", e.to_string()))?;
                    gw.place(caller.0, &request, mode)
                })
                .collect();
            let mut results = Vec::with_capacity(placed.len());
            for p in placed {
                let result = match p {
                    Ok(p) => gw.placed(p).await,
                    Err(e) => Err(e),
                };
                results.push(match result {
                    Ok((_, order)) => serde_json::to_value(order).unwrap_or_default(),
                    Err(e) => serde_json::to_value(e.body()).unwrap_or_default(),
                });
            }
            Ok(ApiResponse::json(StatusCode::OK, &serde_json::json!({ "results": results })))
        })
        .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    symbol: Option<String>,
    status: Option<String>,
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/orders", tag = "orders",
    params(("symbol" = Option<String>, Query), ("status" = Option<String>, Query, description = "`open`, or any order status"), ("limit" = Option<usize>, Query, description = "1-1000, default 100 (ignored for open)")),
    responses((status = 200, description = "The account's orders: open ones oldest first; otherwise newest first", body = Vec<Order>), (status = 400, description = "Invalid request", body = ErrorBody), (status = 401, description = "Missing or invalid X-API-Key", body = ErrorBody), (status = 429, description = "Rate limited (Retry-After)", body = ErrorBody), (status = 503, description = "Backbone unavailable (Retry-After)", body = ErrorBody)),
    security(("api_key" = [])))]
async fn list_orders(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult {
    let q = parse_query(query)?;
    let gw = &state.gateway;
    let symbol = gw.symbol_filter(q.symbol.as_deref())?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let orders = match q.status.as_deref() {
        Some("open") => gw.orders.open_orders(caller.0, symbol),
        None => gw.orders.orders(caller.0, symbol, None, limit),
        Some(s) => {
            let status: OrderStatus = serde_json::from_value(serde_json::Value::String(s.to_string()))
                .map_err(|_| ApiError::bad_request("invalid_query", format!("unknown status {s:?}")))?;
            gw.orders.orders(caller.0, symbol, Some(status), limit)
        }
    };
    Ok(ApiResponse::json(StatusCode::OK, &orders))
}

#[utoipa::path(get, path = "/v1/orders/{order_id}", tag = "orders", params(("order_id" = String, Path)),
    responses((status = 200, description = "The order; `remaining_quantity` is what still works on the book (0 once done)", body = Order), (status = 403, description = "Another account's order", body = ErrorBody), (status = 404, description = "Unknown order", body = ErrorBody), (status = 400, description = "Invalid request", body = ErrorBody), (status = 401, description = "Missing or invalid X-API-Key", body = ErrorBody), (status = 429, description = "Rate limited (Retry-After)", body = ErrorBody), (status = 503, description = "Backbone unavailable (Retry-After)", body = ErrorBody)),
    security(("api_key" = [])))]
async fn get_order(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult {
    let order = state.gateway.find_order(caller.0, Gateway::order_id(&id)?).await?;
    Ok(ApiResponse::json(StatusCode::OK, &order))
}

#[utoipa::path(delete, path = "/v1/orders/{order_id}", tag = "orders", params(("order_id" = String, Path)),
    responses((status = 200, description = "Cancelled", body = Order), (status = 202, description = "No engine reply in time: the order as known", body = Order), (status = 403, description = "Another account's order", body = ErrorBody), (status = 404, description = "Unknown order", body = ErrorBody), (status = 409, description = "order_not_open", body = ErrorBody), (status = 400, description = "Invalid request", body = ErrorBody), (status = 401, description = "Missing or invalid X-API-Key", body = ErrorBody), (status = 429, description = "Rate limited (Retry-After)", body = ErrorBody), (status = 503, description = "Backbone unavailable (Retry-After)", body = ErrorBody)),
    security(("api_key" = [])))]
async fn cancel_order(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult {
    let gw = &state.gateway;
    let id = Gateway::order_id(&id)?;
    let submitted = gw.cancel(caller.0, id)?;
    let (status, order) = gw.changed(id, submitted).await?;
    Ok(ApiResponse::json(status, &order))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AmendRequest {
    price: Option<String>,
    quantity: Option<String>,
}

#[utoipa::path(patch, path = "/v1/orders/{order_id}", tag = "orders", params(("order_id" = String, Path)),
    request_body(content = serde_json::Value, description = "`{\"quantity\": \"…\", \"price\": \"…\"}`, either or both"),
    responses((status = 200, description = "Amended: a lower quantity keeps time priority; a new price or a higher quantity loses it; a quantity at or below the filled one finishes the order", body = Order), (status = 403, description = "Another account's order", body = ErrorBody), (status = 404, description = "Unknown order", body = ErrorBody), (status = 409, description = "order_not_open", body = ErrorBody), (status = 400, description = "Invalid request", body = ErrorBody), (status = 401, description = "Missing or invalid X-API-Key", body = ErrorBody), (status = 429, description = "Rate limited (Retry-After)", body = ErrorBody), (status = 503, description = "Backbone unavailable (Retry-After)", body = ErrorBody)),
    security(("api_key" = [])))]
async fn amend_order(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let gw = &state.gateway;
    let id = Gateway::order_id(&id)?;
    let amend: AmendRequest = parse_body(body)?;
    let submitted = gw.amend(caller.0, id, amend.price.as_deref(), amend.quantity.as_deref())?;
    let (status, order) = gw.changed(id, submitted).await?;
    Ok(ApiResponse::json(status, &order))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SymbolQuery {
    symbol: Option<String>,
}

#[utoipa::path(delete, path = "/v1/orders", tag = "orders", params(("symbol" = Option<String>, Query)),
    responses((status = 200, description = "`{\"cancelled\": [order_id, …]}`", body = serde_json::Value), (status = 202, description = "Some partition did not answer in time: the ids confirmed so far", body = serde_json::Value), (status = 400, description = "Invalid request", body = ErrorBody), (status = 401, description = "Missing or invalid X-API-Key", body = ErrorBody), (status = 429, description = "Rate limited (Retry-After)", body = ErrorBody), (status = 503, description = "Backbone unavailable (Retry-After)", body = ErrorBody)),
    security(("api_key" = [])))]
async fn cancel_all(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<SymbolQuery>, QueryRejection>,
) -> ApiResult {
    let q = parse_query(query)?;
    let gw = &state.gateway;
    let submitted = gw.cancel_all(caller.0, q.symbol.as_deref())?;
    let (complete, cancelled) = gw.cancelled_all(submitted).await?;
    let status = if complete { StatusCode::OK } else { StatusCode::ACCEPTED };
    Ok(ApiResponse::json(status, &serde_json::json!({ "cancelled": cancelled })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FillsQuery {
    symbol: Option<String>,
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/fills", tag = "orders", params(("symbol" = Option<String>, Query), ("limit" = Option<usize>, Query, description = "1-1000, default 100")),
    responses((status = 200, description = "The account's fills, newest first", body = Vec<AccountFill>), (status = 400, description = "Invalid request", body = ErrorBody), (status = 401, description = "Missing or invalid X-API-Key", body = ErrorBody), (status = 429, description = "Rate limited (Retry-After)", body = ErrorBody), (status = 503, description = "Backbone unavailable (Retry-After)", body = ErrorBody)),
    security(("api_key" = [])))]
async fn fills(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<FillsQuery>, QueryRejection>,
) -> ApiResult {
    let q = parse_query(query)?;
    let gw = &state.gateway;
    let symbol = gw.symbol_filter(q.symbol.as_deref())?;
    let fills = gw.fills(caller.0, symbol, q.limit.unwrap_or(100).clamp(1, 1000)).await?;
    Ok(ApiResponse::json(StatusCode::OK, &fills))
}

#[utoipa::path(get, path = "/v1/symbols", tag = "market data", responses((status = 200, body = Vec<SymbolInfo>)))]
async fn symbols(State(state): State<AppState>) -> ApiResponse {
    let list: Vec<SymbolInfo> = state.gateway.symbols.all().iter().map(SymbolInfo::from).collect();
    ApiResponse::json(StatusCode::OK, &list)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DepthQuery {
    depth: Option<usize>,
}

#[utoipa::path(get, path = "/v1/book/{symbol}", tag = "market data", params(("symbol" = String, Path), ("depth" = Option<usize>, Query, description = "levels per side, default 50")),
    responses((status = 200, description = "Aggregated levels, best first; `sequence` is the symbol's book sequence shared with the WebSocket", body = Book), (status = 404, description = "Unknown symbol", body = ErrorBody)))]
async fn book(
    State(state): State<AppState>,
    Path(symbol): Path<String>,
    query: Result<Query<DepthQuery>, QueryRejection>,
) -> ApiResult {
    let depth = parse_query(query)?.depth.unwrap_or(50).clamp(1, 10_000);
    let book = state.gateway.market.book(&symbol, depth).ok_or_else(|| ApiError::unknown_symbol(&symbol))?;
    Ok(ApiResponse::json(StatusCode::OK, &book))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitQuery {
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/trades/{symbol}", tag = "market data", params(("symbol" = String, Path), ("limit" = Option<usize>, Query)),
    responses((status = 200, description = "Newest first", body = Vec<PublicTrade>), (status = 404, description = "Unknown symbol", body = ErrorBody)))]
async fn trades(
    State(state): State<AppState>,
    Path(symbol): Path<String>,
    query: Result<Query<LimitQuery>, QueryRejection>,
) -> ApiResult {
    let limit = parse_query(query)?.limit.unwrap_or(100).clamp(1, 1000);
    let trades = state.gateway.market.trades(&symbol, limit).ok_or_else(|| ApiError::unknown_symbol(&symbol))?;
    Ok(ApiResponse::json(StatusCode::OK, &trades))
}

#[utoipa::path(get, path = "/v1/ticker/{symbol}", tag = "market data", params(("symbol" = String, Path)),
    responses((status = 200, body = Ticker), (status = 404, description = "Unknown symbol", body = ErrorBody)))]
async fn ticker(State(state): State<AppState>, Path(symbol): Path<String>) -> ApiResult {
    let ticker =
        state.gateway.market.ticker(&symbol, Timestamp::now()).ok_or_else(|| ApiError::unknown_symbol(&symbol))?;
    Ok(ApiResponse::json(StatusCode::OK, &ticker))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CandleQuery {
    interval: Option<String>,
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/candles/{symbol}", tag = "market data", params(("symbol" = String, Path), ("interval" = Option<String>, Query, description = "1m (default), 5m, 15m, 1h, 4h, 1d"), ("limit" = Option<usize>, Query)),
    responses((status = 200, description = "Newest first; intervals without trades are left out", body = Vec<Candle>), (status = 404, description = "Unknown symbol", body = ErrorBody)))]
async fn candles(
    State(state): State<AppState>,
    Path(symbol): Path<String>,
    query: Result<Query<CandleQuery>, QueryRejection>,
) -> ApiResult {
    let q = parse_query(query)?;
    let text = q.interval.as_deref().unwrap_or("1m");
    let interval = Interval::parse(text).ok_or_else(|| {
        ApiError::bad_request("invalid_query", format!("interval must be 1m, 5m, 15m, 1h, 4h or 1d, not {text:?}"))
    })?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let candles =
        state.gateway.market.candles(&symbol, interval, limit).ok_or_else(|| ApiError::unknown_symbol(&symbol))?;
    Ok(ApiResponse::json(StatusCode::OK, &candles))
}

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "The process is up")))]
pub(crate) async fn healthz() -> ApiResponse {
    ApiResponse::json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
}

#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "Backbone healthy, every shard caught up"), (status = 503, description = "Not ready")))]
async fn readyz(State(state): State<AppState>) -> ApiResponse {
    let backbone = state.gateway.backbone_healthy();
    let ready = state.gateway.is_ready() && state.probe.ready();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    ApiResponse::json(status, &serde_json::json!({"ready": ready, "backbone": backbone}))
}

#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text")))]
async fn metrics(State(state): State<AppState>) -> Response {
    let mut out = String::with_capacity(16 * 1024);
    state.gateway.metrics.render(&mut out);
    state.gateway.latency().render_prometheus(&mut out);
    crate::metrics::write_metric(
        &mut out,
        "tachyon_gateway_pending_replies",
        "gauge",
        "",
        state.gateway.pending_replies(),
    );
    crate::metrics::write_metric(&mut out, "tachyon_gateway_orders_held", "gauge", "", state.gateway.orders.len());
    crate::metrics::write_metric(
        &mut out,
        "tachyon_gateway_md_subscribers",
        "gauge",
        "",
        state.gateway.market.subscribers(),
    );
    out.push_str(&probe_metrics(&state.probe).await);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// The probe's metrics, gathered off the async workers: over Kafka they include broker
/// round trips (end offsets, consumer lag).
pub(crate) async fn probe_metrics(probe: &Arc<dyn Probe>) -> String {
    let probe = Arc::clone(probe);
    tokio::task::spawn_blocking(move || {
        let mut out = String::with_capacity(4096);
        probe.metrics(&mut out);
        out
    })
    .await
    .unwrap_or_default()
}

/// 404 in the API's shape for unknown routes.
pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

/// The OpenAPI document, generated from the handlers' annotations and the API types.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Tachyon API", version = "1", description = "The public API of shared/API.md. Prices and quantities are decimal strings; every error is {\"error\": {\"code\", \"message\"}}. The WebSocket at /v1/ws is described in the README."),
    paths(place_order, place_batch, list_orders, get_order, cancel_order, amend_order, cancel_all, fills, admin_latency, crate::rest_balances::balances, crate::rest_balances::deposit, crate::rest_balances::withdraw, crate::rest_balances::fees, crate::rest_balances::ledger, symbols, book, trades, ticker, candles, healthz, readyz, metrics),
    modifiers(&ApiKeyScheme)
)]
#[derive(Debug)]
pub struct ApiDoc;

struct ApiKeyScheme;

impl utoipa::Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components
            .add_security_scheme("api_key", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))));
    }
}
