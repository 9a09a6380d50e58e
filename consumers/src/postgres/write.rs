//! One batch → one transaction: the rows of [`crate::rows`] as column arrays, each table
//! written with one `INSERT … SELECT FROM UNNEST(…)` round trip.

use deadpool_postgres::tokio_postgres::types::ToSql;
use deadpool_postgres::tokio_postgres::Row;
use deadpool_postgres::ClientWrapper;
use tachyon_proto::api::OrderStatus;
use tachyon_proto::order::OrderRecord;
use tachyon_proto::wire::ShardOutput;
use tachyon_proto::{
    AccountId, CancelReason, ClientOrderId, Event, OrderId, OrderType, Price, Qty, RejectReason, Side, TimeInForce,
    Timestamp,
};

use super::classify;
use super::schema::month_index;
use crate::rows::{build, touched_orders, Rows, StoredOrder};
use crate::symbols::SymbolTable;
use tachyon_runtime::consumer::SinkError;

/// Trades are kept for years 1970-9999 (partition names and SQL dates need that range).
const YEARS: std::ops::RangeInclusive<i64> = 1970..=9999;

/// The months the batch's trades fall in.
///
/// # Errors
/// Permanent, for a trade whose timestamp is outside [`YEARS`].
pub fn trade_months<'a>(batch: impl IntoIterator<Item = &'a ShardOutput>) -> Result<Vec<i64>, SinkError> {
    let mut months = Vec::new();
    for output in batch {
        for event in &output.events {
            if let Event::Trade(t) = event {
                let ym = t.timestamp.year_month();
                if !YEARS.contains(&ym.0) {
                    return Err(SinkError::Permanent(format!("trade timestamp {} out of range", t.timestamp.0)));
                }
                months.push(month_index(ym));
            }
        }
    }
    months.sort_unstable();
    months.dedup();
    Ok(months)
}

fn permanent(what: impl std::fmt::Display) -> SinkError {
    SinkError::Permanent(what.to_string())
}

fn lots(q: Qty) -> Result<i64, SinkError> {
    i64::try_from(q.0).map_err(|_| permanent(format!("quantity {} exceeds the database's range", q.0)))
}

fn id(v: u64) -> Result<i64, SinkError> {
    i64::try_from(v).map_err(|_| permanent(format!("id {v} exceeds the database's range")))
}

/// Writes the batch in one transaction (see the module docs of [`super`]).
pub async fn write_batch<'a>(
    client: &mut ClientWrapper,
    symbols: &SymbolTable,
    batch: impl IntoIterator<Item = &'a ShardOutput> + Clone,
) -> Result<(), SinkError> {
    let ids = touched_orders(batch.clone()).iter().map(|o| id(o.0)).collect::<Result<Vec<i64>, _>>()?;
    let tx = client.transaction().await.map_err(|e| classify(&e))?;
    let load = tx
        .prepare_cached(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE order_id = ANY($1)"))
        .await
        .map_err(|e| classify(&e))?;
    let stored = tx.query(&load, &[&ids]).await.map_err(|e| classify(&e))?;
    let stored = stored.iter().map(|row| stored_order(row, symbols)).collect::<Result<Vec<_>, _>>()?;
    let rows = build(batch, stored);
    write_orders(&tx, &rows, symbols).await?;
    write_events(&tx, &rows, symbols).await?;
    write_trades(&tx, &rows, symbols).await?;
    tx.commit().await.map_err(|e| classify(&e))
}

/// The columns [`stored_order`] reads, in its order.
pub const ORDER_COLUMNS: &str = "order_id, account, symbol, side, order_type, time_in_force, post_only, price_ticks, \
     quantity_lots, filled_lots, filled_notional::text, client_order_id, status, reject_reason, cancel_reason, \
     tachyon_us(created_at), tachyon_us(updated_at), shard, shard_seq";

/// A stored order back from its row (selected as [`ORDER_COLUMNS`]).
pub fn stored_order(row: &Row, symbols: &SymbolTable) -> Result<StoredOrder, SinkError> {
    let bad = |column: &str| permanent(format!("orders row has an invalid {column}"));
    let text = |i: usize| -> Result<&str, SinkError> { row.try_get(i).map_err(permanent) };
    let opt_text = |i: usize| -> Result<Option<&str>, SinkError> { row.try_get(i).map_err(permanent) };
    let int = |i: usize| -> Result<i64, SinkError> { row.try_get(i).map_err(permanent) };
    let qty = |i: usize| -> Result<Qty, SinkError> { u64::try_from(int(i)?).map(Qty).map_err(|_| bad("quantity")) };
    let record = OrderRecord {
        id: OrderId(u64::try_from(int(0)?).map_err(|_| bad("order_id"))?),
        account: AccountId::parse(text(1)?).map_err(|_| bad("account"))?,
        symbol: symbols.id(text(2)?).ok_or_else(|| bad("symbol"))?,
        side: Side::from_code(text(3)?).ok_or_else(|| bad("side"))?,
        order_type: OrderType::from_code(text(4)?).ok_or_else(|| bad("order_type"))?,
        time_in_force: TimeInForce::from_code(text(5)?).ok_or_else(|| bad("time_in_force"))?,
        post_only: row.try_get(6).map_err(permanent)?,
        price: row.try_get::<_, Option<i64>>(7).map_err(permanent)?.map(Price),
        qty: qty(8)?,
        filled: qty(9)?,
        notional: text(10)?.parse().map_err(|_| bad("filled_notional"))?,
        client_order_id: opt_text(11)?
            .map(|c| ClientOrderId::parse(c).map_err(|_| bad("client_order_id")))
            .transpose()?,
        status: OrderStatus::from_code(text(12)?).ok_or_else(|| bad("status"))?,
        reject_reason: opt_text(13)?
            .map(|r| RejectReason::from_code(r).ok_or_else(|| bad("reject_reason")))
            .transpose()?,
        cancel_reason: opt_text(14)?
            .map(|r| CancelReason::from_code(r).ok_or_else(|| bad("cancel_reason")))
            .transpose()?,
        fills: Vec::new(),
        created: Timestamp(int(15)?.saturating_mul(1_000)),
        updated: Timestamp(int(16)?.saturating_mul(1_000)),
    };
    let shard: i32 = row.try_get(17).map_err(permanent)?;
    Ok(StoredOrder {
        record,
        shard: u32::try_from(shard).map_err(|_| bad("shard"))?,
        seq: u64::try_from(int(18)?).map_err(|_| bad("shard_seq"))?,
    })
}

/// One column of a multi-row insert: `f` of every row, failing on the first bad value.
fn column<R, T>(rows: &[R], f: impl Fn(&R) -> Result<T, SinkError>) -> Result<Vec<T>, SinkError> {
    rows.iter().map(f).collect()
}

/// A column whose values cannot fail.
fn plain<R, T>(rows: &[R], f: impl Fn(&R) -> T) -> Vec<T> {
    rows.iter().map(f).collect()
}

async fn execute(
    tx: &deadpool_postgres::Transaction<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<(), SinkError> {
    let stmt = tx.prepare_cached(sql).await.map_err(|e| classify(&e))?;
    tx.execute(&stmt, params).await.map_err(|e| classify(&e))?;
    Ok(())
}

async fn write_orders(
    tx: &deadpool_postgres::Transaction<'_>,
    rows: &Rows,
    symbols: &SymbolTable,
) -> Result<(), SinkError> {
    let o = rows.orders.as_slice();
    if o.is_empty() {
        return Ok(());
    }
    execute(
        tx,
        "INSERT INTO orders (order_id, account, symbol, side, order_type, time_in_force, post_only, price_ticks,
             quantity_lots, filled_lots, filled_notional, client_order_id, status, reject_reason, cancel_reason,
             created_at, updated_at, shard, shard_seq)
         SELECT o, a, s, sd, ty, tif, po, p, q, f, fn::numeric, c, st, rr, cr, tachyon_ts(ca), tachyon_ts(ua), sh, sq
         FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bool[],
                     $8::bigint[], $9::bigint[], $10::bigint[], $11::text[], $12::text[], $13::text[], $14::text[],
                     $15::text[], $16::bigint[], $17::bigint[], $18::int[], $19::bigint[])
              AS t(o, a, s, sd, ty, tif, po, p, q, f, fn, c, st, rr, cr, ca, ua, sh, sq)
         ON CONFLICT (order_id) DO UPDATE SET
             price_ticks = EXCLUDED.price_ticks, quantity_lots = EXCLUDED.quantity_lots,
             filled_lots = EXCLUDED.filled_lots, filled_notional = EXCLUDED.filled_notional,
             status = EXCLUDED.status, reject_reason = EXCLUDED.reject_reason,
             cancel_reason = EXCLUDED.cancel_reason, updated_at = EXCLUDED.updated_at,
             shard = EXCLUDED.shard, shard_seq = EXCLUDED.shard_seq
         WHERE orders.shard_seq < EXCLUDED.shard_seq",
        &[
            &column(o, |o| id(o.record.id.0))?,
            &plain(o, |o| o.record.account.to_string()),
            &column(o, |o| symbols.name(o.record.symbol))?,
            &plain(o, |o| o.record.side.as_str()),
            &plain(o, |o| o.record.order_type.as_str()),
            &plain(o, |o| o.record.time_in_force.as_str()),
            &plain(o, |o| o.record.post_only),
            &plain(o, |o| o.record.price.map(|p| p.0)),
            &column(o, |o| lots(o.record.qty))?,
            &column(o, |o| lots(o.record.filled))?,
            &plain(o, |o| o.record.notional.to_string()),
            &plain(o, |o| o.record.client_order_id.map(|c| c.to_string())),
            &plain(o, |o| o.record.status.as_str()),
            &plain(o, |o| o.record.reject_reason.map(RejectReason::as_str)),
            &plain(o, |o| o.record.cancel_reason.map(CancelReason::as_str)),
            &plain(o, |o| o.record.created.as_micros()),
            &plain(o, |o| o.record.updated.as_micros()),
            &plain(o, |o| o.shard as i32),
            &column(o, |o| id(o.seq))?,
        ],
    )
    .await
}

async fn write_events(
    tx: &deadpool_postgres::Transaction<'_>,
    rows: &Rows,
    symbols: &SymbolTable,
) -> Result<(), SinkError> {
    let e = rows.events.as_slice();
    if e.is_empty() {
        return Ok(());
    }
    execute(
        tx,
        "INSERT INTO order_events (shard, shard_seq, event_index, order_id, account, symbol, kind, status,
             price_ticks, quantity_lots, filled_lots, trade_id, fill_price_ticks, fill_lots, liquidity, reason, at)
         SELECT sh, sq, ix, o, a, s, k, st, p, q, f, t, fp, fl, l, r, tachyon_ts(at)
         FROM UNNEST($1::int[], $2::bigint[], $3::int[], $4::bigint[], $5::text[], $6::text[], $7::text[],
                     $8::text[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[],
                     $14::bigint[], $15::text[], $16::text[], $17::bigint[])
              AS t(sh, sq, ix, o, a, s, k, st, p, q, f, t, fp, fl, l, r, at)
         ON CONFLICT DO NOTHING",
        &[
            &plain(e, |e| e.shard as i32),
            &column(e, |e| id(e.seq))?,
            &plain(e, |e| e.index as i32),
            &column(e, |e| id(e.order_id.0))?,
            &plain(e, |e| e.account.to_string()),
            &column(e, |e| symbols.name(e.symbol))?,
            &plain(e, |e| e.kind.as_str()),
            &plain(e, |e| e.status.as_str()),
            &plain(e, |e| e.price.map(|p| p.0)),
            &column(e, |e| lots(e.qty))?,
            &column(e, |e| lots(e.filled))?,
            &column(e, |e| e.fill.map(|f| id(f.trade_id.0)).transpose())?,
            &plain(e, |e| e.fill.map(|f| f.price.0)),
            &column(e, |e| e.fill.map(|f| lots(f.qty)).transpose())?,
            &plain(e, |e| e.fill.map(|f| f.liquidity.as_str())),
            &plain(e, |e| e.reason),
            &plain(e, |e| e.at.as_micros()),
        ],
    )
    .await
}

/// Trades, and both sides of each as fills, from one set of columns in one statement.
async fn write_trades(
    tx: &deadpool_postgres::Transaction<'_>,
    rows: &Rows,
    symbols: &SymbolTable,
) -> Result<(), SinkError> {
    let t = rows.trades.as_slice();
    if t.is_empty() {
        return Ok(());
    }
    execute(
        tx,
        "WITH x AS (
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::bigint[],
                                  $7::text[], $8::bigint[], $9::text[], $10::int[], $11::bigint[], $12::bigint[])
                  AS x(s, t, p, q, sd, tor, ta, mo, ma, sh, sq, at)
         ), inserted AS (
             INSERT INTO trades (symbol, trade_id, price_ticks, quantity_lots, taker_side, taker_order_id,
                 taker_account, maker_order_id, maker_account, shard, shard_seq, executed_at)
             SELECT s, t, p, q, sd, tor, ta, mo, ma, sh, sq, tachyon_ts(at) FROM x
             ON CONFLICT DO NOTHING
         )
         INSERT INTO fills (symbol, trade_id, liquidity, account, order_id, side, price_ticks, quantity_lots,
             executed_at)
         SELECT s, t, l.liquidity,
                CASE WHEN l.liquidity = 'maker' THEN ma ELSE ta END,
                CASE WHEN l.liquidity = 'maker' THEN mo ELSE tor END,
                CASE WHEN (l.liquidity = 'maker') = (sd = 'buy') THEN 'sell' ELSE 'buy' END,
                p, q, tachyon_ts(at)
         FROM x CROSS JOIN (VALUES ('maker'), ('taker')) AS l(liquidity)
         ON CONFLICT DO NOTHING",
        &[
            &column(t, |r| symbols.name(r.trade.symbol))?,
            &column(t, |r| id(r.trade.trade_id.0))?,
            &plain(t, |r| r.trade.price.0),
            &column(t, |r| lots(r.trade.qty))?,
            &plain(t, |r| r.trade.taker_side.as_str()),
            &column(t, |r| id(r.trade.taker_order_id.0))?,
            &plain(t, |r| r.trade.taker_account.to_string()),
            &column(t, |r| id(r.trade.maker_order_id.0))?,
            &plain(t, |r| r.trade.maker_account.to_string()),
            &plain(t, |r| r.shard as i32),
            &column(t, |r| id(r.seq))?,
            &plain(t, |r| r.trade.timestamp.as_micros()),
        ],
    )
    .await
}
