//! `GET /v1/openapi.json`: the document [`crate::rest::ApiDoc`] generates from the code.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;

/// The OpenAPI document as JSON, rendered once.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| crate::rest::ApiDoc::openapi().to_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")))
}

pub async fn serve() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document()).into_response()
}
