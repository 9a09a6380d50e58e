//! Reads for the gateway: orders and fills older than it keeps in memory, in the API's
//! shapes (rendered by the same [`tachyon_proto::order`] code as the gateway's own).

use tachyon_proto::api::{AccountFill, Liquidity, Order};
use tachyon_proto::order::{AccountFillRecord, FillRecord};
use tachyon_proto::{AccountId, OrderId, Price, Qty, Side, SymbolId, Timestamp, TradeId};

use super::write::{stored_order, ORDER_COLUMNS};
use super::{classify, PostgresSink};
use tachyon_runtime::consumer::SinkError;

fn transient(e: impl std::fmt::Display) -> SinkError {
    SinkError::Transient(e.to_string())
}

impl PostgresSink {
    /// An order with its fills, as the API shows it, and its account; `None` if the
    /// database does not know it.
    ///
    /// # Errors
    /// The database's, or a row that does not read back.
    pub async fn order(&self, id: OrderId) -> Result<Option<(AccountId, Order)>, SinkError> {
        let Ok(key) = i64::try_from(id.0) else { return Ok(None) };
        let client = self.pool.get().await.map_err(transient)?;
        let sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE order_id = $1");
        let Some(row) = client.query_opt(&sql, &[&key]).await.map_err(|e| classify(&e))? else { return Ok(None) };
        let mut stored = stored_order(&row, &self.symbols)?;
        let fills = client
            .query(
                "SELECT trade_id, price_ticks, quantity_lots, liquidity, tachyon_us(executed_at)
                 FROM fills WHERE order_id = $1 ORDER BY executed_at, trade_id",
                &[&key],
            )
            .await
            .map_err(|e| classify(&e))?;
        for f in fills {
            stored.record.fills.push(FillRecord {
                trade_id: TradeId(u64::try_from(f.get::<_, i64>(0)).unwrap_or_default()),
                price: Price(f.get(1)),
                qty: Qty(u64::try_from(f.get::<_, i64>(2)).unwrap_or_default()),
                liquidity: Liquidity::from_code(f.get(3)).unwrap_or(Liquidity::Taker),
                timestamp: Timestamp(f.get::<_, i64>(4).saturating_mul(1_000)),
                // Fees are not persisted yet (balances on is embedded-only).
                fee: None,
            });
        }
        let record = stored.record;
        Ok(Some((record.account, record.render(self.symbols.spec(record.symbol)?))))
    }

    /// The account's newest `limit` fills (on one symbol, or all), newest first.
    ///
    /// # Errors
    /// The database's.
    pub async fn account_fills(
        &self,
        account: AccountId,
        symbol: Option<SymbolId>,
        limit: usize,
    ) -> Result<Vec<AccountFill>, SinkError> {
        let client = self.pool.get().await.map_err(transient)?;
        let symbol = symbol.map(|s| self.symbols.name(s)).transpose()?;
        let rows = client
            .query(
                "SELECT order_id, symbol, side, trade_id, price_ticks, quantity_lots, liquidity, tachyon_us(executed_at)
                 FROM fills WHERE account = $1 AND ($2::text IS NULL OR symbol = $2)
                 ORDER BY executed_at DESC, trade_id DESC LIMIT $3",
                &[&account.to_string(), &symbol, &(limit as i64)],
            )
            .await
            .map_err(|e| classify(&e))?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let symbol = self.symbols.id(r.get::<_, &str>(1))?;
                let record = AccountFillRecord {
                    order_id: OrderId(u64::try_from(r.get::<_, i64>(0)).ok()?),
                    symbol,
                    side: Side::from_code(r.get(2))?,
                    fill: FillRecord {
                        trade_id: TradeId(u64::try_from(r.get::<_, i64>(3)).ok()?),
                        price: Price(r.get(4)),
                        qty: Qty(u64::try_from(r.get::<_, i64>(5)).ok()?),
                        liquidity: Liquidity::from_code(r.get(6))?,
                        timestamp: Timestamp(r.get::<_, i64>(7).saturating_mul(1_000)),
                        fee: None,
                    },
                };
                Some(record.render(self.symbols.spec(symbol).ok()?))
            })
            .collect())
    }
}
