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
        .route("/v1/admin/latency", get(admin_latency).delete(admin_latency_reset))
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
    let identity = match state.gateway.authenticate(key) {
        Ok(identity) => identity,
        Err(e) => return e.into_response(),
    };
    // A read key may only look: every private route that changes something is not a GET.
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        if let Err(e) = Gateway::may_trade(&identity) {
            return e.into_response();
        }
    }
    let account = identity.account;
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

/// `?response=` of the order-entry POSTs.
#[derive(Clone, Copy, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
enum ResponseParam {
    /// Wait for the engine: 201 with the order as matched.
    #[default]
    Result,
    /// Answer 202 `pending` once the order is durable.
    Ack,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ResponseQuery {
    /// `result` (default): wait for the engine and answer 201; `ack`: answer 202 `pending`
    /// once the order is durable.
    #[param(inline)]
    response: Option<ResponseParam>,
}

fn response_mode(q: &ResponseQuery) -> ResponseMode {
    match q.response.unwrap_or_default() {
        ResponseParam::Result => ResponseMode::Result,
        ResponseParam::Ack => ResponseMode::Ack,
    }
}

/// A `limit` or `depth` query value: `default` when absent, else within `1..=max` (the
/// bounds the document states; outside them 400 `invalid_query`).
fn bounded(name: &str, value: Option<u32>, default: u32, max: u32) -> Result<usize, ApiError> {
    match value.unwrap_or(default) {
        n @ 1.. if n <= max => Ok(n as usize),
        n => Err(ApiError::bad_request("invalid_query", format!("{name} must be from 1 to {max}, not {n}"))),
    }
}

#[utoipa::path(post, path = "/v1/orders", tag = "orders", request_body = OrderRequest,
    params(ResponseQuery, IdempotencyKey),
    responses(
        (status = 201, description = "The order as the engine left it, with its immediate fills (status `rejected` with `reject_reason` when the engine refused it)", body = Order),
        (status = 202, description = "Durable but not yet matched (`?response=ack`, or no engine reply within gateway.reply_timeout_ms): status `pending`", body = Order),
        (status = 400, description = "Invalid field (`invalid_price`, `invalid_quantity`, `quantity_below_min`, `notional_above_max`, `invalid_time_in_force`, …), `insufficient_funds` with balances on, or a bad query or Idempotency-Key", body = ErrorBody),
        (status = 404, description = "Unknown symbol (`unknown_symbol`)", body = ErrorBody),
        (status = 409, description = "`duplicate_client_order_id`, or an idempotent retry still running (`idempotency_in_flight`)", body = ErrorBody),
        (status = 422, description = "Idempotency-Key reused with another body (`idempotency_key_reused`)", body = ErrorBody),
        (status = 503, description = "Order path unavailable (Retry-After)", body = ErrorBody)),
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
            let mode = response_mode(&parse_query(query)?);
            handle(mode, parse_body(body)?).await
        };
        idempotent(self.state, self.caller, self.headers, self.method, self.path, &raw, work).await
    }
}

/// The body of `POST /v1/orders/batch`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct BatchRequest {
    /// Order bodies as `POST /v1/orders` takes them, at most limits.max_batch_orders (100
    /// by default). An entry that is not a valid order gets an error in its place in the
    /// results; the others still run.
    #[schema(max_items = 100)]
    orders: Vec<serde_json::Value>,
}

/// One entry of a batch's results.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // Only the document builds it: the handler writes the JSON directly.
enum BatchResult {
    Order(Box<Order>),
    Error(ErrorBody),
}

/// The answer to `POST /v1/orders/batch`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[allow(dead_code)] // As `BatchResult`.
struct BatchResults {
    results: Vec<BatchResult>,
}

/// The answer to `DELETE /v1/orders`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct CancelledOrders {
    /// The ids of the orders cancelled.
    cancelled: Vec<String>,
}

/// The `Idempotency-Key` header of the order-entry POSTs.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // Read from the headers; the struct only describes it.
struct IdempotencyKey {
    /// Retries with the same key and body get the first answer (`Idempotent-Replayed:
    /// true`); 1-64 printable ASCII characters.
    #[param(rename = "Idempotency-Key", value_type = String, required = false, pattern = "^[!-~]{1,64}$")]
    key: Option<String>,
}

/// The `{order_id}` of `/v1/orders/{order_id}`.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Axum's `Path` extracts it; the struct only describes it.
struct OrderIdPath {
    /// As the order object gives it (decimal digits); another value is an unknown order (404).
    #[param(pattern = "^[0-9]{1,20}$")]
    order_id: String,
}

/// The `{symbol}` of the market-data paths.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // As `OrderIdPath`.
struct SymbolPath {
    /// A symbol of `GET /v1/symbols` (another → 404 `unknown_symbol`).
    #[param(pattern = "^[A-Z0-9-]{1,16}$")]
    symbol: String,
}

#[utoipa::path(get, path = "/v1/admin/latency", tag = "admin",
    description = "Server-side latency per hop (HdrHistogram): exact percentiles in microseconds and each histogram in HdrHistogram's compressed base64 form. Admin keys only (`gateway.admin_accounts`).",
    responses(
        (status = 200, description = "`{\"unit\", \"since\", \"hops\": {\"ack\"|\"engine_in\"|\"engine\"|\"reply\"|\"marketdata\": {\"count\", \"mean\", \"p50\", \"p90\", \"p99\", \"p999\", \"p9999\", \"max\", \"hdr\"}}}`", body = serde_json::Value),
        (status = 403, description = "Not an admin key (`not_admin`)", body = ErrorBody)),
    security(("api_key" = [])))]
async fn admin_latency(State(state): State<AppState>, Extension(caller): Extension<Caller>) -> Response {
    latency_dump(&state, caller, false)
}

#[utoipa::path(delete, path = "/v1/admin/latency", tag = "admin",
    description = "As `GET /v1/admin/latency`, then resets every histogram (to measure one run). Admin keys only.",
    responses(
        (status = 200, description = "The histograms as they were before the reset (see `GET`)", body = serde_json::Value),
        (status = 403, description = "Not an admin key (`not_admin`)", body = ErrorBody)),
    security(("api_key" = [])))]
async fn admin_latency_reset(State(state): State<AppState>, Extension(caller): Extension<Caller>) -> Response {
    latency_dump(&state, caller, true)
}

fn latency_dump(state: &AppState, caller: Caller, reset: bool) -> Response {
    if !state.gateway.config.admin_accounts.contains(&caller.0) {
        return ApiError::new(StatusCode::FORBIDDEN, "not_admin", "this endpoint needs an admin key").into_response();
    }
    let dump = state.gateway.latency().dump();
    if reset {
        state.gateway.latency().reset();
    }
    Json(dump).into_response()
}

#[utoipa::path(post, path = "/v1/orders/batch", tag = "orders", request_body = BatchRequest,
    params(ResponseQuery, IdempotencyKey),
    responses(
        (status = 200, description = "One result per order, in request order: the order (as `POST /v1/orders` answers it) or its error; each order is validated and matched independently, in sequence", body = BatchResults),
        (status = 400, description = "Not `{\"orders\": [...]}`, more than limits.max_batch_orders orders (`too_many_orders`), or a bad query or Idempotency-Key", body = ErrorBody),
        (status = 409, description = "An idempotent retry still running (`idempotency_in_flight`)", body = ErrorBody),
        (status = 422, description = "Idempotency-Key reused with another body (`idempotency_key_reused`)", body = ErrorBody)),
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

/// `?status=` of `GET /v1/orders`: `open`, or one order status.
#[derive(Clone, Copy, Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
enum StatusParam {
    /// Every open order (`new` or `partially_filled`), oldest first.
    Open,
    Pending,
    New,
    PartiallyFilled,
    Filled,
    Cancelled,
    Rejected,
}

impl StatusParam {
    fn status(self) -> Option<OrderStatus> {
        Some(match self {
            Self::Open => return None,
            Self::Pending => OrderStatus::Pending,
            Self::New => OrderStatus::New,
            Self::PartiallyFilled => OrderStatus::PartiallyFilled,
            Self::Filled => OrderStatus::Filled,
            Self::Cancelled => OrderStatus::Cancelled,
            Self::Rejected => OrderStatus::Rejected,
        })
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only this symbol's orders (an unknown symbol → 404 `unknown_symbol`).
    #[param(pattern = "^[A-Z0-9-]{1,16}$")]
    symbol: Option<String>,
    /// `open`: the open orders, oldest first; a status: the orders in it, newest first;
    /// absent: every order, newest first.
    #[param(inline)]
    status: Option<StatusParam>,
    /// At most this many (default 100; ignored for `open`, which lists them all).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/orders", tag = "orders", params(ListQuery),
    responses(
        (status = 200, description = "The account's orders: open ones oldest first; otherwise newest first", body = Vec<Order>),
        (status = 404, description = "Unknown symbol (`unknown_symbol`)", body = ErrorBody)),
    security(("api_key" = [])))]
async fn list_orders(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult {
    let q = parse_query(query)?;
    let gw = &state.gateway;
    let symbol = gw.symbol_filter(q.symbol.as_deref())?;
    let limit = bounded("limit", q.limit, 100, 1000)?;
    let orders = match q.status {
        Some(StatusParam::Open) => gw.orders.open_orders(caller.0, symbol),
        status => gw.orders.orders(caller.0, symbol, status.and_then(StatusParam::status), limit),
    };
    Ok(ApiResponse::json(StatusCode::OK, &orders))
}

#[utoipa::path(get, path = "/v1/orders/{order_id}", tag = "orders", params(OrderIdPath),
    responses(
        (status = 200, description = "The order; `remaining_quantity` is what still works on the book (0 once done)", body = Order),
        (status = 403, description = "Another account's order (`not_your_order`)", body = ErrorBody),
        (status = 404, description = "Unknown order (`order_not_found`)", body = ErrorBody),
        (status = 503, description = "The history store cannot answer (Retry-After)", body = ErrorBody)),
    security(("api_key" = [])))]
async fn get_order(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult {
    let order = state.gateway.find_order(caller.0, Gateway::order_id(&id)?).await?;
    Ok(ApiResponse::json(StatusCode::OK, &order))
}

#[utoipa::path(delete, path = "/v1/orders/{order_id}", tag = "orders", params(OrderIdPath),
    responses(
        (status = 200, description = "Cancelled", body = Order),
        (status = 202, description = "No engine reply in time: the order as known", body = Order),
        (status = 403, description = "Another account's order (`not_your_order`)", body = ErrorBody),
        (status = 404, description = "Unknown order (`order_not_found`)", body = ErrorBody),
        (status = 409, description = "The order is done (`order_not_open`)", body = ErrorBody),
        (status = 503, description = "Order path unavailable (Retry-After)", body = ErrorBody)),
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

/// The body of `PATCH /v1/orders/{order_id}`: a new price, a new quantity, or both.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"quantity": "0.25"}))]
struct AmendRequest {
    /// A positive multiple of the symbol's `tick_size`.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, pattern = "^[0-9]+(\\.[0-9]+)?$")]
    price: Option<String>,
    /// A positive multiple of the symbol's `lot_size`, at most `max_quantity`; at or below
    /// the filled quantity it finishes the order.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, pattern = "^[0-9]+(\\.[0-9]+)?$")]
    quantity: Option<String>,
}

/// An amend field is absent or a string: `null` is neither a new value nor "unchanged".
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    String::deserialize(d).map(Some)
}

#[utoipa::path(patch, path = "/v1/orders/{order_id}", tag = "orders", params(OrderIdPath), request_body = AmendRequest,
    responses(
        (status = 200, description = "Amended: a lower quantity keeps time priority; a new price or a higher quantity loses it; a quantity at or below the filled one finishes the order", body = Order),
        (status = 202, description = "No engine reply in time: the order as known", body = Order),
        (status = 400, description = "Neither field, or an invalid one (`invalid_price`, `invalid_quantity`, `quantity_above_max`, …), or `insufficient_funds` with balances on", body = ErrorBody),
        (status = 403, description = "Another account's order (`not_your_order`)", body = ErrorBody),
        (status = 404, description = "Unknown order (`order_not_found`)", body = ErrorBody),
        (status = 409, description = "The order is done (`order_not_open`)", body = ErrorBody),
        (status = 503, description = "Order path unavailable (Retry-After)", body = ErrorBody)),
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct SymbolQuery {
    /// Only this symbol's orders (an unknown symbol → 404 `unknown_symbol`).
    #[param(pattern = "^[A-Z0-9-]{1,16}$")]
    symbol: Option<String>,
}

#[utoipa::path(delete, path = "/v1/orders", tag = "orders", params(SymbolQuery),
    responses(
        (status = 200, description = "Every open order of the account (on `symbol`, or on all symbols) cancelled", body = CancelledOrders),
        (status = 202, description = "Some partition did not answer in time: the ids confirmed so far", body = CancelledOrders),
        (status = 404, description = "Unknown symbol (`unknown_symbol`)", body = ErrorBody),
        (status = 503, description = "Order path unavailable (Retry-After)", body = ErrorBody)),
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
    Ok(ApiResponse::json(status, &CancelledOrders { cancelled }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct FillsQuery {
    /// Only this symbol's fills (an unknown symbol → 404 `unknown_symbol`).
    #[param(pattern = "^[A-Z0-9-]{1,16}$")]
    symbol: Option<String>,
    /// At most this many (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/fills", tag = "orders", params(FillsQuery),
    responses(
        (status = 200, description = "The account's fills, newest first", body = Vec<AccountFill>),
        (status = 404, description = "Unknown symbol (`unknown_symbol`)", body = ErrorBody),
        (status = 503, description = "The history store cannot answer (Retry-After)", body = ErrorBody)),
    security(("api_key" = [])))]
async fn fills(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<FillsQuery>, QueryRejection>,
) -> ApiResult {
    let q = parse_query(query)?;
    let gw = &state.gateway;
    let symbol = gw.symbol_filter(q.symbol.as_deref())?;
    let fills = gw.fills(caller.0, symbol, bounded("limit", q.limit, 100, 1000)?).await?;
    Ok(ApiResponse::json(StatusCode::OK, &fills))
}

#[utoipa::path(get, path = "/v1/symbols", tag = "market data",
    responses((status = 200, description = "Every symbol with its grids and limits", body = Vec<SymbolInfo>)))]
async fn symbols(State(state): State<AppState>) -> ApiResponse {
    let list: Vec<SymbolInfo> = state.gateway.symbols.all().iter().map(SymbolInfo::from).collect();
    ApiResponse::json(StatusCode::OK, &list)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DepthQuery {
    /// Price levels per side (default 50).
    #[param(minimum = 1, maximum = 10000)]
    depth: Option<u32>,
}

#[utoipa::path(get, path = "/v1/book/{symbol}", tag = "market data", params(SymbolPath, DepthQuery),
    responses(
        (status = 200, description = "Aggregated levels, best first; `sequence` is the symbol's book sequence shared with the WebSocket", body = Book),
        (status = 404, description = "Unknown symbol (`unknown_symbol`)", body = ErrorBody)))]
async fn book(
    State(state): State<AppState>,
    Path(symbol): Path<String>,
    query: Result<Query<DepthQuery>, QueryRejection>,
) -> ApiResult {
    let depth = bounded("depth", parse_query(query)?.depth, 50, 10_000)?;
    let book = state.gateway.market.book(&symbol, depth).ok_or_else(|| ApiError::unknown_symbol(&symbol))?;
    Ok(ApiResponse::json(StatusCode::OK, &book))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct LimitQuery {
    /// At most this many (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/trades/{symbol}", tag = "market data", params(SymbolPath, LimitQuery),
    responses(
        (status = 200, description = "Newest first", body = Vec<PublicTrade>),
        (status = 404, description = "Unknown symbol (`unknown_symbol`)", body = ErrorBody)))]
async fn trades(
    State(state): State<AppState>,
    Path(symbol): Path<String>,
    query: Result<Query<LimitQuery>, QueryRejection>,
) -> ApiResult {
    let limit = bounded("limit", parse_query(query)?.limit, 100, 1000)?;
    let trades = state.gateway.market.trades(&symbol, limit).ok_or_else(|| ApiError::unknown_symbol(&symbol))?;
    Ok(ApiResponse::json(StatusCode::OK, &trades))
}

#[utoipa::path(get, path = "/v1/ticker/{symbol}", tag = "market data", params(SymbolPath),
    responses(
        (status = 200, description = "Best prices, last price and 24-hour volume (null where none)", body = Ticker),
        (status = 404, description = "Unknown symbol (`unknown_symbol`)", body = ErrorBody)))]
async fn ticker(State(state): State<AppState>, Path(symbol): Path<String>) -> ApiResult {
    let ticker =
        state.gateway.market.ticker(&symbol, Timestamp::now()).ok_or_else(|| ApiError::unknown_symbol(&symbol))?;
    Ok(ApiResponse::json(StatusCode::OK, &ticker))
}

/// `?interval=` of the candles.
#[derive(Clone, Copy, Debug, Default, Deserialize, utoipa::ToSchema)]
enum IntervalParam {
    #[default]
    #[serde(rename = "1m")]
    OneMinute,
    #[serde(rename = "5m")]
    FiveMinutes,
    #[serde(rename = "15m")]
    FifteenMinutes,
    #[serde(rename = "1h")]
    OneHour,
    #[serde(rename = "4h")]
    FourHours,
    #[serde(rename = "1d")]
    OneDay,
}

impl IntervalParam {
    fn interval(self) -> Interval {
        Interval::minutes(match self {
            Self::OneMinute => 1,
            Self::FiveMinutes => 5,
            Self::FifteenMinutes => 15,
            Self::OneHour => 60,
            Self::FourHours => 240,
            Self::OneDay => 1440,
        })
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct CandleQuery {
    /// Candle width (default `1m`).
    #[param(inline)]
    interval: Option<IntervalParam>,
    /// At most this many (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/candles/{symbol}", tag = "market data", params(SymbolPath, CandleQuery),
    responses(
        (status = 200, description = "Newest first; intervals without trades are left out", body = Vec<Candle>),
        (status = 404, description = "Unknown symbol (`unknown_symbol`)", body = ErrorBody)))]
async fn candles(
    State(state): State<AppState>,
    Path(symbol): Path<String>,
    query: Result<Query<CandleQuery>, QueryRejection>,
) -> ApiResult {
    let q = parse_query(query)?;
    let interval = q.interval.unwrap_or_default().interval();
    let limit = bounded("limit", q.limit, 100, 1000)?;
    let candles =
        state.gateway.market.candles(&symbol, interval, limit).ok_or_else(|| ApiError::unknown_symbol(&symbol))?;
    Ok(ApiResponse::json(StatusCode::OK, &candles))
}

#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is up: `{\"status\": \"ok\"}`", body = serde_json::Value)))]
pub(crate) async fn healthz() -> ApiResponse {
    ApiResponse::json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
}

#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Backbone healthy, every shard caught up: `{\"ready\": true, \"backbone\": true}`", body = serde_json::Value),
              (status = 503, description = "Not ready: `{\"ready\": false, \"backbone\": …}`", body = serde_json::Value)))]
async fn readyz(State(state): State<AppState>) -> ApiResponse {
    let backbone = state.gateway.backbone_healthy();
    let ready = state.gateway.is_ready() && state.probe.ready();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    ApiResponse::json(status, &serde_json::json!({"ready": ready, "backbone": backbone}))
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain", body = String)))]
async fn metrics(State(state): State<AppState>) -> Response {
    let mut out = String::with_capacity(16 * 1024);
    state.gateway.metrics.render(&mut out);
    state.gateway.connections.render(&mut out);
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

/// Every error in the API's shape: axum answers some requests itself (405 with its
/// `Allow` header, a path that is not valid UTF-8, a failed WebSocket upgrade) in plain
/// text or with no body; those are rewritten here, keeping their status and headers.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json =
        response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let message = match text.trim() {
        "" => status.canonical_reason().unwrap_or("error").to_lowercase(),
        t => t.to_string(),
    };
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UPGRADE_REQUIRED => "upgrade_required",
        s if s.is_server_error() => "internal_error",
        _ => "invalid_request",
    };
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = serde_json::to_vec(&ErrorBody::new(code, message)).unwrap_or_default();
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// 404 in the API's shape for unknown routes.
pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

/// The OpenAPI document, generated from the handlers' annotations and the API types.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Tachyon API", version = "1", description = "The public API of shared/API.md. Prices and quantities are decimal strings; every error is {\"error\": {\"code\", \"message\"}}. The WebSocket at /v1/ws is described in the README."),
    paths(place_order, place_batch, list_orders, get_order, cancel_order, amend_order, cancel_all, fills, admin_latency, admin_latency_reset, crate::rest_balances::balances, crate::rest_balances::deposit, crate::rest_balances::withdraw, crate::rest_balances::fees, crate::rest_balances::ledger, symbols, book, trades, ticker, candles, healthz, readyz, metrics),
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
