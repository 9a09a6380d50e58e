//! `GET /v1/openapi.json`.

use axum::response::{IntoResponse, Response};

/// The OpenAPI document.
pub async fn serve() -> Response {
    axum::Json(serde_json::json!({"openapi": "3.1.0"})).into_response()
}
