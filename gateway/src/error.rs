//! API errors: `{"error": {"code", "message"}}` with the status that fits (API.md).

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tachyon_bus::BusError;
use tachyon_proto::api::{ErrorBody, FieldError};
use tachyon_proto::RejectReason;

/// An error answer of the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Sent as `Retry-After` (whole seconds, at least 1).
    pub retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after: None }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn order_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "order_not_found", "no such order")
    }

    pub fn unknown_symbol(symbol: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "unknown_symbol", format!("unknown symbol {symbol:?}"))
    }

    pub fn not_yours() -> Self {
        Self::new(StatusCode::FORBIDDEN, "not_order_owner", "the order belongs to another account")
    }

    pub fn not_open() -> Self {
        Self::new(StatusCode::CONFLICT, "order_not_open", "the order is no longer open")
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(Duration::from_secs(1)),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
        }
    }

    /// The error the API gives for an engine reject of a cancel or amend (or a duplicate
    /// client order id); `None` where the reject is reported inside the order object.
    pub fn from_reject(reason: RejectReason) -> Option<Self> {
        Some(match reason {
            RejectReason::OrderNotOpen => Self::not_open(),
            RejectReason::NotOrderOwner => Self::not_yours(),
            RejectReason::InsufficientFunds => Self::bad_request(
                "insufficient_funds",
                "the account's available balance does not cover what the order needs held",
            ),
            RejectReason::InvalidFunds => Self::bad_request(
                "invalid_funds",
                "with balances on, a market buy needs funds, which this exchange does not take yet: use a limit order",
            ),
            RejectReason::DuplicateClientOrderId => Self::new(
                StatusCode::CONFLICT,
                "duplicate_client_order_id",
                "client_order_id is already used by an open order of this account",
            ),
            _ => return None,
        })
    }

    /// The body, as JSON text.
    pub fn body(&self) -> ErrorBody {
        ErrorBody::new(self.code, self.message.clone())
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        Self::bad_request(e.code, e.message)
    }
}

impl From<BusError> for ApiError {
    fn from(e: BusError) -> Self {
        match e {
            BusError::Full { .. } => Self::unavailable("the order queue is full, retry shortly"),
            other => Self::unavailable(format!("the backbone is unavailable: {other}")),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(after) = self.retry_after {
            let secs = after.as_secs_f64().ceil().max(1.0) as u64;
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
