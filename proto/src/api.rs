//! The public API's JSON types (`shared/API.md`), and validation of order requests.
//!
//! Field names here are the contract: clients depend on them. Prices and quantities are
//! decimal strings; ids are strings. [`OrderRequest::validate`] is the edge where decimal
//! strings become integers, exactly, against a [`SymbolSpec`].

use serde::{Deserialize, Serialize};

use crate::command::{OrderType, SelfTradePrevention, TimeInForce};
use crate::event::{CancelReason, RejectReason};
use crate::fixed::{Price, Qty, Side};
use crate::ids::ClientOrderId;
use crate::symbol::SymbolSpec;

/// `{"error": {"code", "message"}}`, the body of every error response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// An error's machine code and human sentence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { error: ErrorDetail { code: code.into(), message: message.into() } }
    }
}

/// One entry of `GET /v1/symbols`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SymbolInfo {
    pub symbol: String,
    pub tick_size: String,
    pub lot_size: String,
    pub min_quantity: String,
    pub max_quantity: String,
}

impl From<&SymbolSpec> for SymbolInfo {
    fn from(s: &SymbolSpec) -> Self {
        Self {
            symbol: s.name.clone(),
            tick_size: s.tick.to_string(),
            lot_size: s.lot.to_string(),
            min_quantity: s.format_qty(s.min_qty),
            max_quantity: s.format_qty(s.max_qty),
        }
    }
}

/// Body of `POST /v1/orders` (and of each entry of a batch).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"symbol": "BTC-USD", "side": "buy", "type": "limit", "price": "30000.00",
    "quantity": "0.5", "time_in_force": "gtc", "post_only": false, "client_order_id": "my-1", "stp": "cancel_newest"}))]
pub struct OrderRequest {
    /// A symbol of `GET /v1/symbols` (another → 404 `unknown_symbol`).
    #[schema(pattern = "^[A-Z0-9-]{1,16}$")]
    pub symbol: String,
    pub side: Side,
    #[serde(rename = "type")]
    pub order_type: OrderType,
    /// Limit orders: a positive multiple of the symbol's `tick_size`; market orders have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[0-9]+(\\.[0-9]+)?$")]
    pub price: Option<String>,
    /// A positive multiple of the symbol's `lot_size`, from `min_quantity` to `max_quantity`.
    #[schema(pattern = "^[0-9]+(\\.[0-9]+)?$")]
    pub quantity: String,
    /// `gtc` (the default for limit orders), `ioc` or `fok`; market orders are `ioc` or `fok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_in_force: Option<TimeInForce>,
    /// Rejected (`post_only_would_take`) rather than taking liquidity; gtc limit orders only.
    #[serde(default)]
    pub post_only: bool,
    /// Unique per account among its open orders (else 409 `duplicate_client_order_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[A-Za-z0-9_-]{1,36}$")]
    pub client_order_id: Option<String>,
    /// Self-trade prevention, default `cancel_newest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stp: Option<SelfTradePrevention>,
}

/// An order request whose fields are all valid for its symbol (ids and time still to stamp).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValidOrder {
    pub side: Side,
    pub order_type: OrderType,
    pub time_in_force: TimeInForce,
    pub post_only: bool,
    pub stp: SelfTradePrevention,
    pub price: Option<Price>,
    pub qty: Qty,
    pub client_order_id: Option<ClientOrderId>,
}

/// A field that failed validation: the API answers 400 with this code and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub code: &'static str,
    pub message: String,
}

impl FieldError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

impl OrderRequest {
    /// Checks every field against the symbol's grid and limits and converts the decimals.
    /// The symbol name must already have been resolved to `spec`.
    ///
    /// # Errors
    /// A [`FieldError`] naming the first invalid field.
    pub fn validate(&self, spec: &SymbolSpec) -> Result<ValidOrder, FieldError> {
        let qty = spec
            .lot
            .qty(&self.quantity)
            .map_err(|e| FieldError::new("invalid_quantity", format!("quantity {e} (lot size {})", spec.lot)))?;
        if qty < spec.min_qty {
            let min = spec.format_qty(spec.min_qty);
            return Err(FieldError::new("quantity_below_min", format!("quantity is below the minimum {min}")));
        }
        if qty > spec.max_qty {
            let max = spec.format_qty(spec.max_qty);
            return Err(FieldError::new("quantity_above_max", format!("quantity is above the maximum {max}")));
        }
        let price = match (self.order_type, &self.price) {
            (OrderType::Limit, Some(p)) => Some(
                spec.tick
                    .price(p)
                    .map_err(|e| FieldError::new("invalid_price", format!("price {e} (tick size {})", spec.tick)))?,
            ),
            (OrderType::Limit, None) => return Err(FieldError::new("invalid_price", "a limit order needs a price")),
            (OrderType::Market, Some(_)) => {
                return Err(FieldError::new("invalid_price", "a market order must not have a price"))
            }
            (OrderType::Market, None) => None,
        };
        if let Some(p) = price {
            if p.notional(qty) > spec.max_notional {
                return Err(FieldError::new("notional_above_max", "price × quantity is above the symbol's maximum"));
            }
        }
        let time_in_force = match (self.order_type, self.time_in_force) {
            (OrderType::Limit, tif) => tif.unwrap_or(TimeInForce::Gtc),
            (OrderType::Market, None | Some(TimeInForce::Ioc)) => TimeInForce::Ioc,
            (OrderType::Market, Some(TimeInForce::Fok)) => TimeInForce::Fok,
            (OrderType::Market, Some(TimeInForce::Gtc)) => {
                return Err(FieldError::new("invalid_time_in_force", "a market order cannot be gtc"))
            }
        };
        if self.post_only && (self.order_type == OrderType::Market || time_in_force != TimeInForce::Gtc) {
            return Err(FieldError::new("invalid_time_in_force", "post_only needs a gtc limit order"));
        }
        let client_order_id = self
            .client_order_id
            .as_deref()
            .map(ClientOrderId::parse)
            .transpose()
            .map_err(|e| FieldError::new("invalid_client_order_id", format!("client_order_id {e}")))?;
        Ok(ValidOrder {
            side: self.side,
            order_type: self.order_type,
            time_in_force,
            post_only: self.post_only,
            stp: self.stp.unwrap_or_default(),
            price,
            qty,
            client_order_id,
        })
    }
}

/// `status` of an order object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Pending,
    New,
    PartiallyFilled,
    Filled,
    Cancelled,
    Rejected,
}

/// `liquidity` of a fill.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Liquidity {
    Maker,
    Taker,
}

/// One fill inside an order object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderFill {
    pub trade_id: String,
    pub price: String,
    pub quantity: String,
    pub liquidity: Liquidity,
    pub timestamp: String,
    /// The fee this side paid (balances on; absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee: Option<String>,
    /// The asset of `fee`: the symbol's QUOTE (balances on; absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee_asset: Option<String>,
}

/// The order object of `POST/GET/DELETE/PATCH /v1/orders…`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Order {
    pub order_id: String,
    pub client_order_id: Option<String>,
    pub account_id: String,
    pub symbol: String,
    pub side: Side,
    #[serde(rename = "type")]
    pub order_type: OrderType,
    pub time_in_force: TimeInForce,
    pub post_only: bool,
    pub price: Option<String>,
    pub quantity: String,
    pub filled_quantity: String,
    pub remaining_quantity: String,
    pub average_fill_price: Option<String>,
    pub status: OrderStatus,
    pub reject_reason: Option<RejectReason>,
    pub cancel_reason: Option<CancelReason>,
    pub fills: Vec<OrderFill>,
    pub created_at: String,
    pub updated_at: String,
}

/// One entry of `GET /v1/fills` (an order fill plus the order it belongs to).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AccountFill {
    pub trade_id: String,
    pub order_id: String,
    pub symbol: String,
    pub side: Side,
    pub price: String,
    pub quantity: String,
    pub liquidity: Liquidity,
    pub timestamp: String,
    /// As in [`OrderFill`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee_asset: Option<String>,
}

/// `GET /v1/book/{symbol}`: levels as `[price, quantity]`, best first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Book {
    pub symbol: String,
    pub sequence: u64,
    /// `[price, quantity]`, best first.
    #[schema(value_type = Vec<Vec<String>>)]
    pub bids: Vec<[String; 2]>,
    #[schema(value_type = Vec<Vec<String>>)]
    pub asks: Vec<[String; 2]>,
}

/// `GET /v1/trades/{symbol}` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PublicTrade {
    pub trade_id: String,
    pub price: String,
    pub quantity: String,
    pub taker_side: Side,
    pub timestamp: String,
}

/// `GET /v1/ticker/{symbol}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Ticker {
    pub symbol: String,
    pub best_bid: Option<String>,
    pub best_bid_quantity: Option<String>,
    pub best_ask: Option<String>,
    pub best_ask_quantity: Option<String>,
    pub last_price: Option<String>,
    pub volume_24h: String,
    pub sequence: u64,
}

/// `GET /v1/candles/{symbol}` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Candle {
    pub start: String,
    pub open: String,
    pub high: String,
    pub low: String,
    pub close: String,
    pub volume: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbol::default_symbols;

    fn btc() -> SymbolSpec {
        default_symbols().remove(0)
    }

    fn request(json: &str) -> OrderRequest {
        serde_json::from_str(json).expect("valid request JSON")
    }

    #[test]
    fn parses_and_validates_the_api_example() {
        let r = request(
            r#"{"symbol": "BTC-USD", "side": "buy", "type": "limit", "price": "30000.00",
                "quantity": "0.5", "time_in_force": "gtc", "post_only": false,
                "client_order_id": "my-1", "stp": "cancel_newest"}"#,
        );
        let v = r.validate(&btc()).expect("valid");
        assert_eq!(v.price, Some(Price(3_000_000)));
        assert_eq!(v.qty, Qty(5000));
        assert_eq!(v.time_in_force, TimeInForce::Gtc);
        assert_eq!(v.client_order_id.map(|c| c.to_string()), Some("my-1".into()));
    }

    #[test]
    fn defaults_follow_the_contract() {
        let v = request(r#"{"symbol":"BTC-USD","side":"sell","type":"market","quantity":"1"}"#)
            .validate(&btc())
            .expect("valid");
        assert_eq!(
            (v.time_in_force, v.stp, v.post_only, v.price),
            (TimeInForce::Ioc, SelfTradePrevention::CancelNewest, false, None)
        );
    }

    #[test]
    fn rejects_each_invalid_field_with_its_code() {
        let cases = [
            (r#"{"symbol":"BTC-USD","side":"buy","type":"limit","price":"1.001","quantity":"1"}"#, "invalid_price"),
            (r#"{"symbol":"BTC-USD","side":"buy","type":"limit","quantity":"1"}"#, "invalid_price"),
            (r#"{"symbol":"BTC-USD","side":"buy","type":"market","price":"1","quantity":"1"}"#, "invalid_price"),
            (
                r#"{"symbol":"BTC-USD","side":"buy","type":"limit","price":"1","quantity":"0.00001"}"#,
                "invalid_quantity",
            ),
            (r#"{"symbol":"BTC-USD","side":"buy","type":"limit","price":"1","quantity":"0"}"#, "invalid_quantity"),
            (
                r#"{"symbol":"BTC-USD","side":"buy","type":"limit","price":"1","quantity":"1000.0001"}"#,
                "quantity_above_max",
            ),
            (
                r#"{"symbol":"BTC-USD","side":"buy","type":"limit","price":"100000","quantity":"101"}"#,
                "notional_above_max",
            ),
            (
                r#"{"symbol":"BTC-USD","side":"buy","type":"market","quantity":"1","time_in_force":"gtc"}"#,
                "invalid_time_in_force",
            ),
            (
                r#"{"symbol":"BTC-USD","side":"buy","type":"limit","price":"1","quantity":"1","time_in_force":"ioc","post_only":true}"#,
                "invalid_time_in_force",
            ),
            (
                r#"{"symbol":"BTC-USD","side":"buy","type":"limit","price":"1","quantity":"1","client_order_id":"no spaces"}"#,
                "invalid_client_order_id",
            ),
        ];
        for (json, code) in cases {
            assert_eq!(request(json).validate(&btc()).map_err(|e| e.code), Err(code), "{json}");
        }
    }

    #[test]
    fn unknown_fields_and_bad_enums_fail_to_parse() {
        for json in [
            r#"{"symbol":"BTC-USD","side":"buy","type":"limit","price":"1","quantity":"1","quantitiy":"2"}"#,
            r#"{"symbol":"BTC-USD","side":"long","type":"limit","price":"1","quantity":"1"}"#,
            r#"{"symbol":"BTC-USD","side":"buy","type":"limit","price":1,"quantity":"1"}"#,
        ] {
            assert!(serde_json::from_str::<OrderRequest>(json).is_err(), "{json}");
        }
    }

    #[test]
    fn symbol_info_matches_the_contract() {
        let info = serde_json::to_value(SymbolInfo::from(&btc())).expect("serialises");
        assert_eq!(
            info,
            serde_json::json!({"symbol": "BTC-USD", "tick_size": "0.01", "lot_size": "0.0001",
                               "min_quantity": "0.0001", "max_quantity": "1000"})
        );
    }

    #[test]
    fn reasons_serialise_to_snake_case_codes() {
        assert_eq!(serde_json::to_string(&RejectReason::PostOnlyWouldTake).expect("ok"), r#""post_only_would_take""#);
        assert_eq!(serde_json::to_string(&CancelReason::MarketNoLiquidity).expect("ok"), r#""market_no_liquidity""#);
        assert_eq!(serde_json::to_string(&SelfTradePrevention::None).expect("ok"), r#""none""#);
        assert_eq!(RejectReason::PostOnlyWouldTake.as_str(), "post_only_would_take");
    }
}
