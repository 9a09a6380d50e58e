//! Orders and fills older than the gateway keeps in memory, from a store that has them all
//! (PostgreSQL, when persistence is configured). The store lags the engine a little, so
//! the gateway asks it only for what memory cannot answer, and merges.

use std::future::Future;
use std::pin::Pin;

use tachyon_proto::api::{AccountFill, Order};
use tachyon_proto::{AccountId, OrderId, SymbolId};

/// A boxed future (the trait is used as `dyn History`).
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// The history store (see the module docs).
pub trait History: Send + Sync {
    /// An order and its account, `None` if the store does not know it.
    fn order(&self, id: OrderId) -> Pending<'_, Option<(AccountId, Order)>>;

    /// The account's newest `limit` fills (on one symbol, or all), newest first.
    fn fills(&self, account: AccountId, symbol: Option<SymbolId>, limit: usize) -> Pending<'_, Vec<AccountFill>>;
}

/// `memory` (the newest fills) and `stored` merged, each fill once, newest first (by
/// timestamp, then trade id), at most `limit`.
pub fn merge_fills(memory: Vec<AccountFill>, stored: Vec<AccountFill>, limit: usize) -> Vec<AccountFill> {
    let mut all = memory;
    for f in stored {
        let seen = all.iter().any(|m| m.trade_id == f.trade_id && m.symbol == f.symbol && m.liquidity == f.liquidity);
        if !seen {
            all.push(f);
        }
    }
    // RFC 3339 with fixed microseconds sorts as text.
    let trade = |f: &AccountFill| f.trade_id.parse::<u64>().unwrap_or(0);
    all.sort_by(|a, b| b.timestamp.cmp(&a.timestamp).then_with(|| trade(b).cmp(&trade(a))));
    all.truncate(limit);
    all
}
