//! `GET /v1/openapi.json`: the document [`crate::rest::ApiDoc`] generates from the code,
//! completed with what every operation shares and with this gateway's limits.
//!
//! The handlers' annotations list what only they answer (their successes, 403, 404, 409,
//! 422, 503); the rules here add what follows from an operation's shape, so no operation
//! can forget one:
//! - a private operation (one with `security`) can answer 401 (no, unknown or revoked
//!   key) and 429 (rate limited, with `Retry-After`);
//! - an operation with query or header parameters or a body can answer 400, and one with
//!   a body 413 (over `limits.max_body_bytes`);
//! - request bodies allow no properties beyond the documented ones (the server rejects
//!   them with 400);
//! - every 429 and 503 carries `Retry-After`.
//!
//! A schema fuzzer (`scripts/fuzz-api`, and a bounded run in the test suite) holds the
//! server to this document.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use utoipa::OpenApi;

use crate::balances::BalanceConfig;
use crate::rest::AppState;
use crate::service::GatewayConfig;

/// The request-body schemas (each rejects unknown fields).
const REQUEST_SCHEMAS: [&str; 4] = ["OrderRequest", "AmendRequest", "BatchRequest", "TransferRequest"];

/// The document for a gateway with `config` (and `assets`, balances on), as JSON.
pub fn document(config: &GatewayConfig, assets: Option<&BalanceConfig>) -> String {
    let mut doc = serde_json::to_value(crate::rest::ApiDoc::openapi()).unwrap_or(Value::Null);
    complete(&mut doc, config);
    if let (Some(assets), Some(transfer)) = (assets, doc.pointer_mut("/components/schemas/TransferRequest")) {
        state_assets(transfer, assets);
    }
    doc.to_string()
}

pub async fn serve(State(state): State<AppState>) -> Response {
    let gateway = &state.gateway;
    let doc = gateway.openapi.get_or_init(|| document(&gateway.config, gateway.balances.as_ref().map(|b| &b.config)));
    ([(header::CONTENT_TYPE, "application/json")], doc.clone()).into_response()
}

/// Balances on, a transfer's `asset` is one of the configured ones and its `amount` has
/// that asset's scale: the schema says so exactly (one branch per scale).
fn state_assets(transfer: &mut Value, assets: &BalanceConfig) {
    let mut scales: Vec<u32> = assets.assets.iter().map(|a| a.scale).collect();
    scales.sort_unstable();
    scales.dedup();
    let branch = |scale: u32| {
        let names: Vec<&str> = assets.assets.iter().filter(|a| a.scale == scale).map(|a| a.name.as_str()).collect();
        json!({"properties": {
            "asset": {"enum": names},
            "amount": {"pattern": positive_amount_pattern(scale)},
        }})
    };
    if let Some(properties) = transfer.get_mut("properties") {
        properties["asset"].as_object_mut().map(|a| a.remove("pattern"));
        properties["amount"].as_object_mut().map(|a| a.remove("pattern"));
    }
    transfer["oneOf"] = Value::Array(scales.into_iter().map(branch).collect());
}

/// The decimal strings [`BalanceConfig::parse`] accepts at `scale`: positive, at most
/// `scale` significant decimal places (trailing zeros are free), below
/// [`crate::balances::MAX_AMOUNT_UNITS`] units (leading zeros are free).
pub fn positive_amount_pattern(scale: u32) -> String {
    let int_digits = 18u32.saturating_sub(scale);
    let fraction = if scale == 0 { "0+".to_string() } else { format!("[0-9]{{1,{scale}}}0*") };
    let mut branches = Vec::new();
    if int_digits > 0 {
        branches.push(format!("0*[1-9][0-9]{{0,{}}}(\\.{fraction})?", int_digits - 1));
    }
    if scale > 0 {
        branches.push(format!("0+\\.[0-9]{{0,{}}}[1-9]0*", scale - 1));
    }
    format!("^({})$", branches.join("|"))
}

fn complete(doc: &mut Value, config: &GatewayConfig) {
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut().filter_map(Value::as_object_mut) {
            for (method, operation) in item.iter_mut() {
                let changes = !matches!(method.as_str(), "get" | "head");
                if let Some(operation) = operation.as_object_mut() {
                    complete_operation(operation, changes, config);
                }
            }
        }
    }
    let Some(schemas) = doc.pointer_mut("/components/schemas").and_then(Value::as_object_mut) else { return };
    for name in REQUEST_SCHEMAS {
        if let Some(schema) = schemas.get_mut(name).and_then(Value::as_object_mut) {
            schema.insert("additionalProperties".into(), Value::Bool(false));
        }
    }
    // "A new price, a new quantity or both" (utoipa has no attribute that renders this).
    if let Some(amend) = schemas.get_mut("AmendRequest").and_then(Value::as_object_mut) {
        amend.insert("minProperties".into(), json!(1));
    }
    if let Some(orders) = schemas.get_mut("BatchRequest").and_then(|s| s.pointer_mut("/properties/orders")) {
        orders["maxItems"] = json!(config.max_batch_orders);
    }
}

/// `changes`: the operation is not a GET (a read-scope key is refused it).
fn complete_operation(operation: &mut Map<String, Value>, changes: bool, config: &GatewayConfig) {
    let private = operation.contains_key("security");
    let has_body = operation.contains_key("requestBody");
    let has_parameters = operation
        .get("parameters")
        .and_then(Value::as_array)
        .is_some_and(|p| p.iter().any(|p| p["in"] == "query" || p["in"] == "header"));
    let responses = operation.entry("responses").or_insert_with(|| json!({}));
    let Some(responses) = responses.as_object_mut() else { return };
    let mut add = |status: &str, description: String| {
        responses.entry(status).or_insert_with(|| error_response(&description));
    };
    if has_body || has_parameters {
        add("400", "Malformed request: invalid JSON, a missing, unknown or invalid field, or an unknown or invalid query parameter (`invalid_request`, `invalid_json`, `invalid_query`, …)".into());
    }
    if has_body {
        add("413", format!("Body over {} bytes (`payload_too_large`)", config.max_body_bytes));
    }
    if private {
        add("401", "No X-API-Key, or an invalid or revoked one (`unauthorized`, `key_revoked`)".into());
        add("429", "Rate limited (`rate_limited`); retry after `Retry-After` seconds".into());
    }
    if private && changes {
        const READ_KEY: &str = "A read-scope key, which may only look (`insufficient_scope`)";
        match responses.get_mut("403").and_then(|r| r.get_mut("description")) {
            Some(Value::String(description)) => *description = format!("{description}; or: {READ_KEY}"),
            _ => {
                responses.insert("403".into(), error_response(READ_KEY));
            }
        }
    }
    for status in ["429", "503"] {
        if let Some(response) = responses.get_mut(status).and_then(Value::as_object_mut) {
            let headers = response.entry("headers").or_insert_with(|| json!({}));
            headers["Retry-After"] = json!({
                "description": "Seconds to wait before retrying",
                "required": true,
                "schema": {"type": "integer", "minimum": 0},
            });
        }
    }
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Value {
        serde_json::from_str(&document(&GatewayConfig::default(), None)).expect("the document is JSON")
    }

    #[test]
    fn every_private_operation_documents_auth_and_rate_limit_errors() {
        let doc = doc();
        let mut private = 0;
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                if op.get("security").is_none() {
                    continue;
                }
                private += 1;
                for status in ["401", "429"] {
                    assert!(op["responses"].get(status).is_some(), "{method} {path} lacks {status}");
                }
                assert_eq!(op["responses"]["429"]["headers"]["Retry-After"]["required"], true);
                if op.get("requestBody").is_some() {
                    assert!(op["responses"].get("400").is_some() && op["responses"].get("413").is_some());
                }
                let forbidden = op["responses"]["403"]["description"].as_str().unwrap_or_default();
                assert_eq!(forbidden.contains("insufficient_scope"), method != "get", "{method} {path}: {forbidden}");
            }
        }
        assert!(private >= 15, "{private} private operations");
    }

    #[test]
    fn request_bodies_are_closed_and_the_batch_limit_is_the_configured_one() {
        let config = GatewayConfig { max_batch_orders: 7, ..GatewayConfig::default() };
        let doc: Value = serde_json::from_str(&document(&config, None)).expect("JSON");
        for name in REQUEST_SCHEMAS {
            assert_eq!(doc["components"]["schemas"][name]["additionalProperties"], false, "{name}");
        }
        assert_eq!(doc["components"]["schemas"]["BatchRequest"]["properties"]["orders"]["maxItems"], 7);
    }

    #[test]
    fn query_bounds_and_enums_are_stated() {
        let doc = doc();
        let params = doc["paths"]["/v1/orders"]["get"]["parameters"].as_array().expect("parameters").clone();
        let by_name = |name: &str| params.iter().find(|p| p["name"] == name).cloned().expect(name);
        assert_eq!(by_name("limit")["schema"]["minimum"], 1);
        assert_eq!(by_name("limit")["schema"]["maximum"], 1000);
        let status = by_name("status")["schema"].to_string();
        for value in ["open", "partially_filled", "rejected"] {
            assert!(status.contains(value), "{status}");
        }
        let post = doc["paths"]["/v1/orders"]["post"]["parameters"].to_string();
        assert!(post.contains("\"ack\"") && post.contains("Idempotency-Key"), "{post}");
    }

    /// The amount pattern accepts exactly what the server parses, checked against the
    /// parser on every string of a small alphabet up to a length, at scales 0, 2 and 8.
    #[test]
    fn the_amount_pattern_is_exactly_the_parser() {
        use crate::balances::AssetInfo;
        for scale in [0, 2, 8] {
            let config = BalanceConfig { assets: vec![AssetInfo { name: "USD".into(), scale }] };
            let pattern = positive_amount_pattern(scale);
            let regex = regex_lite::Regex::new(&pattern).expect("a valid pattern");
            let alphabet = ['0', '1', '9', '.', 'x'];
            let mut strings = vec![String::new()];
            for _ in 0..6 {
                strings = strings.iter().flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}"))).collect();
                for s in &strings {
                    assert_eq!(regex.is_match(s), config.parse(0, s).is_some(), "{s:?} at scale {scale}: {pattern}");
                }
            }
            for s in ["0.000000010", "00001.5000000000", "9999999999", "10000000000", "999999999999999999"] {
                assert_eq!(regex.is_match(s), config.parse(0, s).is_some(), "{s:?} at scale {scale}");
            }
        }
    }
}
