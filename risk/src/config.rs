//! What the risk core needs to know about assets, symbols and fees, built once at start-up.
//!
//! Every symbol `BASE-QUOTE` trades asset `BASE` against asset `QUOTE`. Amounts of an
//! asset are integers on its scale (`scale` decimal places). A symbol's lot must be a
//! whole number of BASE units and its tick × lot a whole number of QUOTE units, so that a
//! quantity in lots and a notional in tick·lot units convert to amounts exactly:
//! `base = lots × base_per_lot`, `quote = ticks × lots × quote_per_unit`. A configuration
//! where that does not hold is refused here, with the symbol and asset named.

use rustc_hash::FxHashMap;
use tachyon_proto::{AccountId, SymbolId, SymbolSpec};
use thiserror::Error;

/// An asset's index in [`RiskConfig::assets`].
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct AssetId(pub u16);

/// One asset and its scale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Asset {
    pub name: String,
    /// Decimal places of every amount of this asset.
    pub scale: u32,
}

/// Maker and taker fee rates in basis points (1 bps = 0.01%).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FeeRates {
    pub maker_bps: u32,
    pub taker_bps: u32,
}

impl FeeRates {
    /// The rate a buy holds for: the higher of the two.
    pub fn max_bps(self) -> u32 {
        self.maker_bps.max(self.taker_bps)
    }
}

/// Per-account fee rates overriding every symbol's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeeTier {
    pub accounts: Vec<AccountId>,
    pub rates: FeeRates,
}

/// One symbol as the risk core sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Market {
    pub symbol: SymbolId,
    pub base: AssetId,
    pub quote: AssetId,
    /// BASE units in one lot.
    pub base_per_lot: u64,
    /// QUOTE units in one tick·lot of notional.
    pub quote_per_unit: u64,
    pub fees: FeeRates,
}

/// The risk core's whole configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RiskConfig {
    pub assets: Vec<Asset>,
    pub markets: Vec<Market>,
    /// Account → its own fee rates.
    pub tiers: FxHashMap<AccountId, FeeRates>,
    /// This risk shard and how many there are: the shard settles only the accounts that
    /// [`risk_partition_for`] puts on it.
    pub partition: u32,
    pub partitions: u32,
    /// symbol id → index in `markets`.
    by_symbol: Vec<Option<u16>>,
}

/// Why a risk configuration is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RiskConfigError {
    #[error("symbol {0} is not named BASE-QUOTE")]
    NotAPair(String),
    #[error("symbol {symbol}: asset {asset} is not configured")]
    UnknownAsset { symbol: String, asset: String },
    #[error("asset {0} is configured twice")]
    DuplicateAsset(String),
    #[error("asset {asset}: scale {scale} is above 18")]
    ScaleTooLarge { asset: String, scale: u32 },
    #[error(
        "symbol {symbol}: its lot needs {needed} decimal places but asset {asset} has scale {scale} (raise the scale)"
    )]
    LotOffScale { symbol: String, asset: String, needed: u32, scale: u32 },
    #[error(
        "symbol {symbol}: tick × lot needs {needed} decimal places but asset {asset} has scale {scale} (raise the scale)"
    )]
    NotionalOffScale { symbol: String, asset: String, needed: u32, scale: u32 },
    #[error("symbol {symbol}: its largest order does not fit 64-bit amounts on these scales (lower the scale or the limits)")]
    TooLarge { symbol: String },
    #[error("fee rate {0} bps is above 10000 (100%)")]
    FeeTooHigh(u32),
    #[error("more than 65535 assets or symbols")]
    TooMany,
    #[error("partition {partition} is outside 0..{partitions}")]
    BadPartition { partition: u32, partitions: u32 },
}

/// Default scale of an asset that `[[assets]]` does not list.
pub const DEFAULT_SCALE: u32 = 8;

/// The risk shard of an account (every process uses this function).
pub fn risk_partition_for(account: AccountId, partitions: u32) -> u32 {
    // FNV-1a over the packed name: stable across builds and platforms.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in account.to_raw().to_le_bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(partitions.max(1))) as u32
}

fn pow10(exp: u32) -> Option<u64> {
    10u64.checked_pow(exp)
}

impl RiskConfig {
    /// Builds the configuration of risk shard `partition` of `partitions`.
    ///
    /// `assets` lists the configured assets; an asset that a symbol names but `assets`
    /// does not gets [`DEFAULT_SCALE`]. `fees` gives each symbol's rates (by position,
    /// missing = 0).
    ///
    /// # Errors
    /// [`RiskConfigError`] for a symbol that is not a pair, an asset whose scale cannot
    /// hold a symbol's lot or tick × lot, amounts that could overflow, fee rates above
    /// 100%, or a partition out of range.
    pub fn build(
        assets: &[Asset],
        symbols: &[SymbolSpec],
        fees: &[FeeRates],
        tiers: &[FeeTier],
        partition: u32,
        partitions: u32,
    ) -> Result<Self, RiskConfigError> {
        if partition >= partitions {
            return Err(RiskConfigError::BadPartition { partition, partitions });
        }
        let mut all: Vec<Asset> = Vec::new();
        for a in assets {
            if all.iter().any(|b| b.name == a.name) {
                return Err(RiskConfigError::DuplicateAsset(a.name.clone()));
            }
            if a.scale > 18 {
                return Err(RiskConfigError::ScaleTooLarge { asset: a.name.clone(), scale: a.scale });
            }
            all.push(a.clone());
        }
        let explicit = !assets.is_empty();
        let mut markets = Vec::with_capacity(symbols.len());
        for (i, spec) in symbols.iter().enumerate() {
            let (base, quote) =
                spec.name.split_once('-').ok_or_else(|| RiskConfigError::NotAPair(spec.name.clone()))?;
            if base.is_empty() || quote.is_empty() || quote.contains('-') {
                return Err(RiskConfigError::NotAPair(spec.name.clone()));
            }
            let mut index = |name: &str| -> Result<AssetId, RiskConfigError> {
                if let Some(i) = all.iter().position(|a| a.name == name) {
                    return u16::try_from(i).map(AssetId).map_err(|_| RiskConfigError::TooMany);
                }
                if explicit {
                    return Err(RiskConfigError::UnknownAsset { symbol: spec.name.clone(), asset: name.to_owned() });
                }
                all.push(Asset { name: name.to_owned(), scale: DEFAULT_SCALE });
                u16::try_from(all.len() - 1).map(AssetId).map_err(|_| RiskConfigError::TooMany)
            };
            let base = index(base)?;
            let quote = index(quote)?;
            let fees = fees.get(i).copied().unwrap_or_default();
            markets.push(Self::market(spec, &all, base, quote, fees)?);
        }
        let mut by_symbol = Vec::new();
        for (i, m) in markets.iter().enumerate() {
            let id = m.symbol.0 as usize;
            if by_symbol.len() <= id {
                by_symbol.resize(id + 1, None);
            }
            by_symbol[id] = Some(u16::try_from(i).map_err(|_| RiskConfigError::TooMany)?);
        }
        let mut tier_map = FxHashMap::default();
        for t in tiers {
            check_fee(t.rates)?;
            for &a in &t.accounts {
                tier_map.insert(a, t.rates);
            }
        }
        Ok(Self { assets: all, markets, tiers: tier_map, partition, partitions, by_symbol })
    }

    fn market(
        spec: &SymbolSpec,
        assets: &[Asset],
        base: AssetId,
        quote: AssetId,
        fees: FeeRates,
    ) -> Result<Market, RiskConfigError> {
        check_fee(fees)?;
        let (b, q) = (&assets[usize::from(base.0)], &assets[usize::from(quote.0)]);
        let lot_scale = spec.lot.scale();
        if b.scale < lot_scale {
            return Err(RiskConfigError::LotOffScale {
                symbol: spec.name.clone(),
                asset: b.name.clone(),
                needed: lot_scale,
                scale: b.scale,
            });
        }
        let unit_scale = spec.tick.scale() + lot_scale;
        if q.scale < unit_scale {
            return Err(RiskConfigError::NotionalOffScale {
                symbol: spec.name.clone(),
                asset: q.name.clone(),
                needed: unit_scale,
                scale: q.scale,
            });
        }
        let too_large = || RiskConfigError::TooLarge { symbol: spec.name.clone() };
        let base_per_lot =
            pow10(b.scale - lot_scale).and_then(|p| p.checked_mul(spec.lot.units())).ok_or_else(too_large)?;
        let quote_per_unit = pow10(q.scale - unit_scale)
            .and_then(|p| p.checked_mul(spec.tick.units()))
            .and_then(|p| p.checked_mul(spec.lot.units()))
            .ok_or_else(too_large)?;
        // The largest order's amounts, fee included, must stay far from u64::MAX so sums
        // of many of them in one account still fit (`u64` balances, checked arithmetic).
        let max_base = u128::from(spec.max_qty.0) * u128::from(base_per_lot);
        let max_quote = spec.max_notional.max(0) as u128 * u128::from(quote_per_unit) * 2;
        if max_base > u128::from(u64::MAX >> 8) || max_quote > u128::from(u64::MAX >> 8) {
            return Err(too_large());
        }
        Ok(Market { symbol: spec.id, base, quote, base_per_lot, quote_per_unit, fees })
    }

    /// The market of `symbol`, by index.
    pub fn market_of(&self, symbol: SymbolId) -> Option<u16> {
        self.by_symbol.get(symbol.0 as usize).copied().flatten()
    }

    /// The asset named `name`.
    pub fn asset(&self, name: &str) -> Option<AssetId> {
        self.assets.iter().position(|a| a.name == name).and_then(|i| u16::try_from(i).ok()).map(AssetId)
    }

    /// `account`'s fee rates on `market`.
    pub fn rates(&self, account: AccountId, market: &Market) -> FeeRates {
        self.tiers.get(&account).copied().unwrap_or(market.fees)
    }

    /// Whether this shard settles `account`.
    pub fn owns(&self, account: AccountId) -> bool {
        self.partitions <= 1 || risk_partition_for(account, self.partitions) == self.partition
    }
}

fn check_fee(rates: FeeRates) -> Result<(), RiskConfigError> {
    for bps in [rates.maker_bps, rates.taker_bps] {
        if bps > 10_000 {
            return Err(RiskConfigError::FeeTooHigh(bps));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tachyon_proto::symbol::{SymbolDef, DEFAULT_SYMBOLS};

    fn defaults() -> Vec<SymbolSpec> {
        DEFAULT_SYMBOLS.iter().map(|d| SymbolSpec::from_def(d).expect("valid defaults")).collect()
    }

    #[test]
    fn default_symbols_get_scale_8_assets_and_exact_conversions() {
        let c = RiskConfig::build(&[], &defaults(), &[], &[], 0, 1).expect("fits");
        let names: Vec<_> = c.assets.iter().take(4).map(|a| (a.name.as_str(), a.scale)).collect();
        assert_eq!(names, [("BTC", 8), ("USD", 8), ("ETH", 8), ("SOL", 8)]);
        assert!(c.assets.iter().all(|a| a.scale == 8));
        let btc = &c.markets[0];
        // lot 0.0001 BTC = 10^4 units at scale 8; tick·lot = 0.000001 USD = 100 units.
        assert_eq!((btc.base_per_lot, btc.quote_per_unit), (10_000, 100));
        assert_eq!(c.market_of(btc.symbol), Some(0));
    }

    #[test]
    fn a_quote_scale_too_small_for_tick_times_lot_is_refused_with_names() {
        let assets = [Asset { name: "BTC".into(), scale: 8 }, Asset { name: "USD".into(), scale: 2 }];
        let err = RiskConfig::build(&assets, &defaults()[..1], &[], &[], 0, 1).expect_err("USD scale 2 < 6");
        assert_eq!(
            err.to_string(),
            "symbol BTC-USD: tick × lot needs 6 decimal places but asset USD has scale 2 (raise the scale)"
        );
        let assets = [Asset { name: "BTC".into(), scale: 2 }, Asset { name: "USD".into(), scale: 8 }];
        let err = RiskConfig::build(&assets, &defaults()[..1], &[], &[], 0, 1).expect_err("BTC scale 2 < 4");
        assert!(matches!(err, RiskConfigError::LotOffScale { needed: 4, scale: 2, .. }), "{err}");
    }

    #[test]
    fn symbols_must_be_pairs_of_configured_assets() {
        let def = SymbolDef { name: "BTCUSD", ..DEFAULT_SYMBOLS[0].clone() };
        let spec = SymbolSpec::from_def(&def).expect("valid symbol");
        assert_eq!(RiskConfig::build(&[], &[spec], &[], &[], 0, 1), Err(RiskConfigError::NotAPair("BTCUSD".into())));
        let assets = [Asset { name: "BTC".into(), scale: 8 }];
        let err = RiskConfig::build(&assets, &defaults()[..1], &[], &[], 0, 1).expect_err("USD missing");
        assert_eq!(err, RiskConfigError::UnknownAsset { symbol: "BTC-USD".into(), asset: "USD".into() });
    }

    #[test]
    fn fees_above_100_percent_and_scales_that_overflow_are_refused() {
        let fees = [FeeRates { maker_bps: 10_001, taker_bps: 0 }];
        assert_eq!(RiskConfig::build(&[], &defaults(), &fees, &[], 0, 1), Err(RiskConfigError::FeeTooHigh(10_001)));
        let assets = [Asset { name: "BTC".into(), scale: 18 }, Asset { name: "USD".into(), scale: 18 }];
        let err = RiskConfig::build(&assets, &defaults()[..1], &[], &[], 0, 1).expect_err("1000 BTC at 10^18");
        assert!(matches!(err, RiskConfigError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn accounts_spread_over_risk_partitions_stably() {
        let a = AccountId::parse("alice").expect("valid");
        assert_eq!(risk_partition_for(a, 1), 0);
        let p = risk_partition_for(a, 4);
        assert_eq!(p, risk_partition_for(a, 4));
        let hit: std::collections::BTreeSet<u32> =
            (0..64).map(|i| risk_partition_for(AccountId::parse(&format!("acct-{i}")).expect("valid"), 4)).collect();
        assert_eq!(hit.len(), 4);
    }
}
