//! Symbol specifications and the symbol → partition function.
//!
//! A [`SymbolSpec`] is what the gateway validates against and what the engine enforces: tick
//! and lot grids, minimum and maximum order quantity, maximum order notional. Every
//! component (gateway, engine shards, consumers) uses [`partition_for`] so that all the
//! commands of one symbol land, in order, on one partition.

use thiserror::Error;

use crate::fixed::{DecimalError, Price, Qty, Step};
use crate::ids::SymbolId;

/// One tradable symbol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SymbolSpec {
    /// Permanent numeric id (never reused for another symbol).
    pub id: SymbolId,
    /// Name such as `BTC-USD`: 1–16 characters of `[A-Z0-9-]`.
    pub name: String,
    pub tick: Step,
    pub lot: Step,
    pub min_qty: Qty,
    pub max_qty: Qty,
    /// Largest `price × quantity` of one order, in tick·lot units.
    pub max_notional: i128,
}

/// Why a symbol definition is invalid.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SymbolError {
    #[error("symbol name {0:?} must be 1-16 characters of A-Z, 0-9 and '-'")]
    BadName(String),
    #[error("symbol {name}: {field} {source}")]
    BadNumber { name: String, field: &'static str, source: DecimalError },
    #[error("symbol {0}: min_quantity exceeds max_quantity")]
    MinAboveMax(String),
    #[error("symbol {0}: max_quantity exceeds 2^31 lots")]
    MaxQtyTooLarge(String),
}

/// The largest order quantity any symbol may allow, in lots. With at most 2^32 resting
/// orders per engine (slots are `u32`), a price level's total stays below 2^63, so the
/// engine's quantity sums cannot overflow.
pub const MAX_ORDER_LOTS: Qty = Qty(1 << 31);

/// A symbol as written in configuration: decimal strings, as in `GET /v1/symbols`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SymbolDef<'a> {
    pub id: u32,
    pub name: &'a str,
    pub tick_size: &'a str,
    pub lot_size: &'a str,
    pub min_quantity: &'a str,
    pub max_quantity: &'a str,
    pub max_notional: &'a str,
}

impl SymbolSpec {
    /// Builds a spec from its decimal definition.
    ///
    /// # Errors
    /// [`SymbolError`] for a bad name, a malformed or off-grid number, or min above max.
    pub fn from_def(def: &SymbolDef<'_>) -> Result<Self, SymbolError> {
        let name = def.name.to_owned();
        if name.is_empty()
            || name.len() > 16
            || !name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(SymbolError::BadName(name));
        }
        let bad = |field: &'static str| {
            let name = name.clone();
            move |source| SymbolError::BadNumber { name, field, source }
        };
        let tick = Step::parse(def.tick_size).map_err(bad("tick_size"))?;
        let lot = Step::parse(def.lot_size).map_err(bad("lot_size"))?;
        let min_qty = lot.qty(def.min_quantity).map_err(bad("min_quantity"))?;
        let max_qty = lot.qty(def.max_quantity).map_err(bad("max_quantity"))?;
        if min_qty > max_qty {
            return Err(SymbolError::MinAboveMax(name));
        }
        if max_qty > MAX_ORDER_LOTS {
            return Err(SymbolError::MaxQtyTooLarge(name));
        }
        // Notional unit = tick × lot; the limit is floored to whole units, which is exact
        // because price × qty is itself a whole number of units.
        let unit = Step::new(1, tick.scale() + lot.scale()).map_err(bad("max_notional"))?;
        let whole = unit.steps(def.max_notional).or_else(|e| match e {
            DecimalError::Overflow => Ok(i64::MAX),
            other => Err(other),
        });
        let max_notional = i128::from(whole.map_err(bad("max_notional"))?) / i128::from(tick.units() * lot.units());
        Ok(Self { id: SymbolId(def.id), name, tick, lot, min_qty, max_qty, max_notional })
    }

    /// Renders a price of this symbol.
    pub fn format_price(&self, p: Price) -> String {
        self.tick.format_price(p)
    }

    /// Renders a quantity of this symbol.
    pub fn format_qty(&self, q: Qty) -> String {
        self.lot.format_qty(q)
    }
}

/// The symbols a default configuration ships.
pub const DEFAULT_SYMBOLS: &[SymbolDef<'static>] = &[
    SymbolDef {
        id: 1,
        name: "BTC-USD",
        tick_size: "0.01",
        lot_size: "0.0001",
        min_quantity: "0.0001",
        max_quantity: "1000",
        max_notional: "10000000",
    },
    SymbolDef {
        id: 2,
        name: "ETH-USD",
        tick_size: "0.01",
        lot_size: "0.001",
        min_quantity: "0.001",
        max_quantity: "1000",
        max_notional: "10000000",
    },
    SymbolDef {
        id: 3,
        name: "SOL-USD",
        tick_size: "0.001",
        lot_size: "0.01",
        min_quantity: "0.01",
        max_quantity: "1000",
        max_notional: "10000000",
    },
    SymbolDef {
        id: 4,
        name: "XRP-USD",
        tick_size: "0.0001",
        lot_size: "0.1",
        min_quantity: "0.1",
        max_quantity: "1000000",
        max_notional: "10000000",
    },
    SymbolDef {
        id: 5,
        name: "DOGE-USD",
        tick_size: "0.00001",
        lot_size: "1",
        min_quantity: "1",
        max_quantity: "10000000",
        max_notional: "10000000",
    },
    SymbolDef {
        id: 6,
        name: "ADA-USD",
        tick_size: "0.0001",
        lot_size: "0.1",
        min_quantity: "0.1",
        max_quantity: "1000000",
        max_notional: "10000000",
    },
    SymbolDef {
        id: 7,
        name: "AVAX-USD",
        tick_size: "0.001",
        lot_size: "0.01",
        min_quantity: "0.01",
        max_quantity: "10000",
        max_notional: "10000000",
    },
    SymbolDef {
        id: 8,
        name: "LINK-USD",
        tick_size: "0.001",
        lot_size: "0.01",
        min_quantity: "0.01",
        max_quantity: "10000",
        max_notional: "10000000",
    },
    SymbolDef {
        id: 9,
        name: "ETH-BTC",
        tick_size: "0.00001",
        lot_size: "0.001",
        min_quantity: "0.001",
        max_quantity: "1000",
        max_notional: "1000",
    },
    SymbolDef {
        id: 10,
        name: "SOL-ETH",
        tick_size: "0.000001",
        lot_size: "0.01",
        min_quantity: "0.01",
        max_quantity: "10000",
        max_notional: "10000",
    },
];

/// The default symbol set as specs.
pub fn default_symbols() -> Vec<SymbolSpec> {
    DEFAULT_SYMBOLS
        .iter()
        .map(|d| SymbolSpec::from_def(d).expect("the built-in symbol table is valid (pinned by a test)"))
        .collect()
}

/// The backbone partition of a symbol: FNV-1a (64-bit) of the name, modulo `partitions`.
///
/// Stable across versions, platforms and processes: every producer and consumer uses it.
///
/// # Panics
/// If `partitions` is zero (a configuration that is rejected at start-up).
pub fn partition_for(symbol: &str, partitions: u32) -> u32 {
    assert!(partitions > 0, "partition count must be positive");
    let hash = symbol.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    (hash % u64::from(partitions)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_symbols_are_valid_and_pinned() {
        let specs = default_symbols();
        assert!(specs.len() >= 10);
        let btc = &specs[0];
        assert_eq!((btc.id, btc.name.as_str()), (SymbolId(1), "BTC-USD"));
        assert_eq!(btc.tick.to_string(), "0.01");
        assert_eq!(btc.lot.to_string(), "0.0001");
        assert_eq!(btc.min_qty, Qty(1));
        assert_eq!(btc.max_qty, Qty(10_000_000));
        // 10,000,000 USD / (0.01 × 0.0001) = 1e13 tick·lots.
        assert_eq!(btc.max_notional, 10_000_000_000_000);
        let sol = &specs[2];
        assert_eq!((sol.tick.to_string(), sol.lot.to_string()), ("0.001".into(), "0.01".into()));
        let mut ids: Vec<_> = specs.iter().map(|s| s.id).collect();
        ids.dedup();
        assert_eq!(ids.len(), specs.len());
    }

    #[test]
    fn rejects_bad_definitions() {
        let mut d = DEFAULT_SYMBOLS[0].clone();
        d.name = "btc-usd";
        assert!(matches!(SymbolSpec::from_def(&d), Err(SymbolError::BadName(_))));
        let mut d = DEFAULT_SYMBOLS[0].clone();
        d.min_quantity = "0.00005";
        assert!(matches!(SymbolSpec::from_def(&d), Err(SymbolError::BadNumber { field: "min_quantity", .. })));
        let mut d = DEFAULT_SYMBOLS[0].clone();
        d.min_quantity = "2000";
        assert!(matches!(SymbolSpec::from_def(&d), Err(SymbolError::MinAboveMax(_))));
        let mut d = DEFAULT_SYMBOLS[0].clone();
        d.max_quantity = "214748.3649"; // 2^31 + 1 lots of 0.0001
        assert!(matches!(SymbolSpec::from_def(&d), Err(SymbolError::MaxQtyTooLarge(_))));
        d.max_quantity = "214748.3648";
        assert!(SymbolSpec::from_def(&d).is_ok());
    }

    #[test]
    fn partition_function_is_pinned() {
        // Changing these values would re-shard every deployment: do not.
        assert_eq!(partition_for("BTC-USD", 1), 0);
        let p: Vec<u32> = ["BTC-USD", "ETH-USD", "SOL-USD"].iter().map(|s| partition_for(s, 16)).collect();
        assert_eq!(p, vec![1, 5, 12]);
        let p: Vec<u32> = ["BTC-USD", "ETH-USD", "SOL-USD"].iter().map(|s| partition_for(s, 4)).collect();
        assert_eq!(p, vec![1, 1, 0]);
        let spread: std::collections::BTreeSet<u32> =
            DEFAULT_SYMBOLS.iter().map(|d| partition_for(d.name, 4)).collect();
        assert!(spread.len() >= 3, "default symbols should spread over 4 partitions: {spread:?}");
    }
}
