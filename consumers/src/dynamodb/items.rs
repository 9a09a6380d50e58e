//! The pure part of the DynamoDB sink: stored orders and trades as items and back.
//!
//! Numbers are DynamoDB `N` values of the integer ticks, lots and ids; codes are the API's
//! strings; times are microseconds since the epoch (`*_us`).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use tachyon_proto::api::OrderStatus;
use tachyon_proto::order::OrderRecord;
use tachyon_proto::{
    AccountId, CancelReason, ClientOrderId, OrderId, OrderType, Price, Qty, RejectReason, Side, TimeInForce, Timestamp,
};

use crate::rows::{StoredOrder, TradeRow};
use crate::symbols::SymbolTable;
use tachyon_runtime::consumer::SinkError;

pub type Item = HashMap<String, AttributeValue>;

/// The orders table's key attribute.
pub const ORDER_KEY: &str = "order_id";
/// The version attribute: the sequence of the last output applied.
pub const VERSION: &str = "version";
/// Sparse attribute `account#client_order_id`, the key of the client-order-id index.
pub const ACCOUNT_CLIENT_ID: &str = "account_client_order_id";

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn permanent(what: impl std::fmt::Display) -> SinkError {
    SinkError::Permanent(what.to_string())
}

/// The partition key of a trade: its symbol and one of `shards` write shards, so one hot
/// symbol spreads over `shards` partitions instead of one (readers query every shard of
/// the symbol and merge by trade id).
pub fn trade_key(symbol: &str, trade_id: u64, shards: u32) -> String {
    format!("{symbol}#{}", trade_id % u64::from(shards.max(1)))
}

/// An order as its item.
pub fn order_item(o: &StoredOrder, symbols: &SymbolTable) -> Result<Item, SinkError> {
    let r = &o.record;
    let symbol = symbols.name(r.symbol)?;
    let mut item = Item::from([
        (ORDER_KEY.to_owned(), n(r.id.0)),
        ("account".to_owned(), s(r.account.to_string())),
        ("symbol".to_owned(), s(symbol)),
        ("side".to_owned(), s(r.side.as_str())),
        ("order_type".to_owned(), s(r.order_type.as_str())),
        ("time_in_force".to_owned(), s(r.time_in_force.as_str())),
        ("post_only".to_owned(), AttributeValue::Bool(r.post_only)),
        ("quantity_lots".to_owned(), n(r.qty.0)),
        ("filled_lots".to_owned(), n(r.filled.0)),
        ("filled_notional".to_owned(), n(r.notional)),
        ("status".to_owned(), s(r.status.as_str())),
        ("created_us".to_owned(), n(r.created.as_micros())),
        ("updated_us".to_owned(), n(r.updated.as_micros())),
        ("shard".to_owned(), n(o.shard)),
        (VERSION.to_owned(), n(o.seq)),
    ]);
    if let Some(p) = r.price {
        item.insert("price_ticks".to_owned(), n(p.0));
    }
    if let Some(c) = r.client_order_id {
        item.insert("client_order_id".to_owned(), s(c.as_str()));
        item.insert(ACCOUNT_CLIENT_ID.to_owned(), s(format!("{}#{}", r.account, c.as_str())));
    }
    if let Some(reason) = r.reject_reason {
        item.insert("reject_reason".to_owned(), s(reason.as_str()));
    }
    if let Some(reason) = r.cancel_reason {
        item.insert("cancel_reason".to_owned(), s(reason.as_str()));
    }
    Ok(item)
}

/// An order back from its item.
pub fn stored_order(item: &Item, symbols: &SymbolTable) -> Result<StoredOrder, SinkError> {
    let bad = |attr: &str| permanent(format!("orders item has an invalid {attr}"));
    let text = |a: &str| item.get(a).and_then(|v| v.as_s().ok()).map(String::as_str);
    let num = |a: &str| -> Result<u64, SinkError> {
        item.get(a).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok()).ok_or_else(|| bad(a))
    };
    let signed = |a: &str| -> Result<i64, SinkError> {
        item.get(a).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok()).ok_or_else(|| bad(a))
    };
    let code = |a: &'static str| text(a).ok_or_else(|| bad(a));
    let record = OrderRecord {
        id: OrderId(num(ORDER_KEY)?),
        account: AccountId::parse(code("account")?).map_err(|_| bad("account"))?,
        symbol: symbols.id(code("symbol")?).ok_or_else(|| bad("symbol"))?,
        side: Side::from_code(code("side")?).ok_or_else(|| bad("side"))?,
        order_type: OrderType::from_code(code("order_type")?).ok_or_else(|| bad("order_type"))?,
        time_in_force: TimeInForce::from_code(code("time_in_force")?).ok_or_else(|| bad("time_in_force"))?,
        post_only: item.get("post_only").and_then(|v| v.as_bool().ok()).copied().ok_or_else(|| bad("post_only"))?,
        price: item.contains_key("price_ticks").then(|| signed("price_ticks").map(Price)).transpose()?,
        qty: Qty(num("quantity_lots")?),
        filled: Qty(num("filled_lots")?),
        notional: item
            .get("filled_notional")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| bad("filled_notional"))?,
        client_order_id: text("client_order_id")
            .map(|c| ClientOrderId::parse(c).map_err(|_| bad("client_order_id")))
            .transpose()?,
        status: OrderStatus::from_code(code("status")?).ok_or_else(|| bad("status"))?,
        reject_reason: text("reject_reason")
            .map(|r| RejectReason::from_code(r).ok_or_else(|| bad("reject_reason")))
            .transpose()?,
        cancel_reason: text("cancel_reason")
            .map(|r| CancelReason::from_code(r).ok_or_else(|| bad("cancel_reason")))
            .transpose()?,
        fills: Vec::new(),
        created: Timestamp(signed("created_us")?.saturating_mul(1_000)),
        updated: Timestamp(signed("updated_us")?.saturating_mul(1_000)),
    };
    let shard = u32::try_from(num("shard")?).map_err(|_| bad("shard"))?;
    Ok(StoredOrder { record, shard, seq: num(VERSION)? })
}

/// A trade as its item.
pub fn trade_item(t: &TradeRow, symbols: &SymbolTable, shards: u32) -> Result<Item, SinkError> {
    let trade = &t.trade;
    let symbol = symbols.name(trade.symbol)?;
    Ok(Item::from([
        ("pk".to_owned(), s(trade_key(symbol, trade.trade_id.0, shards))),
        ("trade_id".to_owned(), n(trade.trade_id.0)),
        ("symbol".to_owned(), s(symbol)),
        ("price_ticks".to_owned(), n(trade.price.0)),
        ("quantity_lots".to_owned(), n(trade.qty.0)),
        ("taker_side".to_owned(), s(trade.taker_side.as_str())),
        ("taker_order_id".to_owned(), n(trade.taker_order_id.0)),
        ("taker_account".to_owned(), s(trade.taker_account.to_string())),
        ("maker_order_id".to_owned(), n(trade.maker_order_id.0)),
        ("maker_account".to_owned(), s(trade.maker_account.to_string())),
        ("executed_us".to_owned(), n(trade.timestamp.as_micros())),
        ("shard".to_owned(), n(t.shard)),
        ("shard_seq".to_owned(), n(t.seq)),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tachyon_proto::symbol::default_symbols;
    use tachyon_proto::NewOrder;

    #[test]
    fn an_order_round_trips_through_its_item() {
        let symbols = SymbolTable::new(&default_symbols());
        let mut record = OrderRecord::from_new(
            &NewOrder {
                order_id: OrderId(42),
                account: AccountId::parse("ann").expect("valid"),
                symbol: tachyon_proto::SymbolId(1),
                side: Side::Sell,
                order_type: OrderType::Limit,
                time_in_force: TimeInForce::Gtc,
                post_only: true,
                stp: tachyon_proto::SelfTradePrevention::CancelNewest,
                price: Some(Price(3_000_000)),
                qty: Qty(50),
                client_order_id: Some(ClientOrderId::parse("c-1").expect("valid")),
                timestamp: Timestamp(1_796_083_190_000_001_000),
            },
            OrderStatus::New,
        );
        record.filled = Qty(20);
        record.notional = i128::from(i64::MAX) * 3;
        record.status = OrderStatus::Cancelled;
        record.cancel_reason = Some(CancelReason::Stp);
        let stored = StoredOrder { record, shard: 1, seq: 99 };
        let item = order_item(&stored, &symbols).expect("an item");
        assert_eq!(item[ACCOUNT_CLIENT_ID], s("ann#c-1"));
        assert_eq!(stored_order(&item, &symbols).expect("reads back"), stored);
    }

    #[test]
    fn trade_keys_spread_a_symbol_over_its_shards() {
        let keys: std::collections::HashSet<String> = (0..1000).map(|id| trade_key("BTC-USD", id, 16)).collect();
        assert_eq!(keys.len(), 16);
        assert_eq!(trade_key("BTC-USD", 17, 16), "BTC-USD#1");
    }
}
