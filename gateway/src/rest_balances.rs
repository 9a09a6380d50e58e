//! The balance routes of API.md ("Balances, holds, settlement and fees"): an account's
//! balances, and the admin deposits, withdrawals, fees and ledger. With balances off each
//! answers 404 `not_found`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use tachyon_proto::balance::TransferKind;

use crate::balances::{BalanceJson, FeeJson, LedgerJson, TransferJson, TransferRequest};
use crate::error::ApiError;
use crate::rest::{parse_body, AppState, Caller};
use tachyon_proto::api::ErrorBody;

#[utoipa::path(get, path = "/v1/balances", tag = "balances",
    description = "The caller's balances, one per asset it ever held, in asset order; amounts are decimal strings on the asset's scale. Balances on only (`[risk] balances`).",
    responses((status = 200, description = "The caller's balances", body = [BalanceJson]), (status = 404, description = "Balances are off", body = ErrorBody)),
    security(("api_key" = [])))]
pub(crate) async fn balances(State(state): State<AppState>, Extension(caller): Extension<Caller>) -> Response {
    match state.gateway.balances() {
        Ok(b) => Json(b.of(caller.0)).into_response(),
        Err(e) => e.into_response(),
    }
}

fn admin(state: &AppState, caller: &Caller) -> Result<(), ApiError> {
    if state.gateway.config.admin_accounts.contains(&caller.0) {
        return Ok(());
    }
    Err(ApiError::new(StatusCode::FORBIDDEN, "not_admin", "this endpoint needs an admin key"))
}

async fn transfer(
    state: AppState,
    caller: Caller,
    kind: TransferKind,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let work = async {
        state.gateway.balances()?;
        admin(&state, &caller)?;
        let request: TransferRequest = parse_body(body)?;
        state.gateway.transfer(kind, &request).await
    };
    match work.await {
        Ok(done) => Json(done).into_response(),
        Err(e) => e.into_response(),
    }
}

#[utoipa::path(post, path = "/v1/admin/deposits", tag = "balances",
    request_body = TransferRequest,
    description = "Credits an account. `transfer_id` is unique per exchange: the same id and body again return the first result and move nothing; the same id with another body is 409. Admin keys only.",
    responses((status = 200, description = "The deposit and the balance right after it", body = TransferJson), (status = 400, description = "Invalid account (`invalid_account`), amount (`invalid_amount`: not positive or off the asset's scale) or transfer id (`invalid_transfer_id`)", body = ErrorBody), (status = 403, description = "Not an admin key", body = ErrorBody), (status = 404, description = "Balances are off (`not_found`), or an unknown asset (`unknown_asset`)", body = ErrorBody), (status = 409, description = "`duplicate_transfer_id`", body = ErrorBody), (status = 503, description = "Order path unavailable (Retry-After)", body = ErrorBody)),
    security(("api_key" = [])))]
pub(crate) async fn deposit(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    transfer(state, caller, TransferKind::Deposit, body).await
}

#[utoipa::path(post, path = "/v1/admin/withdrawals", tag = "balances",
    request_body = TransferRequest,
    description = "Debits an account's available balance; above it, 400 `insufficient_funds` and nothing moves (the id stays unused). Idempotent by `transfer_id` like deposits. Admin keys only.",
    responses((status = 200, description = "The withdrawal and the balance right after it", body = TransferJson), (status = 400, description = "Invalid input, or `insufficient_funds`", body = ErrorBody), (status = 403, description = "Not an admin key", body = ErrorBody), (status = 404, description = "Balances are off (`not_found`), or an unknown asset (`unknown_asset`)", body = ErrorBody), (status = 409, description = "`duplicate_transfer_id`", body = ErrorBody), (status = 503, description = "Order path unavailable (Retry-After)", body = ErrorBody)),
    security(("api_key" = [])))]
pub(crate) async fn withdraw(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    transfer(state, caller, TransferKind::Withdrawal, body).await
}

#[utoipa::path(get, path = "/v1/admin/fees", tag = "balances",
    description = "Fees collected by the exchange's fee account, per asset. Admin keys only.",
    responses((status = 200, description = "Fees per asset", body = [FeeJson]), (status = 403, description = "Not an admin key", body = ErrorBody), (status = 404, description = "Balances are off", body = ErrorBody)),
    security(("api_key" = [])))]
pub(crate) async fn fees(State(state): State<AppState>, Extension(caller): Extension<Caller>) -> Response {
    let work = || -> Result<Vec<FeeJson>, ApiError> {
        let b = state.gateway.balances()?;
        admin(&state, &caller)?;
        Ok(b.fees())
    };
    match work() {
        Ok(fees) => Json(fees).into_response(),
        Err(e) => e.into_response(),
    }
}

#[utoipa::path(get, path = "/v1/admin/ledger", tag = "balances",
    description = "Per asset: deposits, withdrawals, every account's `available + hold` (`balances`) and the fees; conservation says `balances + fees = deposits - withdrawals`. Admin keys only.",
    responses((status = 200, description = "The ledger per asset", body = [LedgerJson]), (status = 403, description = "Not an admin key", body = ErrorBody), (status = 404, description = "Balances are off", body = ErrorBody)),
    security(("api_key" = [])))]
pub(crate) async fn ledger(State(state): State<AppState>, Extension(caller): Extension<Caller>) -> Response {
    let work = || -> Result<Vec<LedgerJson>, ApiError> {
        let b = state.gateway.balances()?;
        admin(&state, &caller)?;
        Ok(b.ledger())
    };
    match work() {
        Ok(ledger) => Json(ledger).into_response(),
        Err(e) => e.into_response(),
    }
}
