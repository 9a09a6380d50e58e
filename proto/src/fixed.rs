//! Fixed-point prices and quantities.
//!
//! - [`Price`] is a signed count of ticks (`i64`), [`Qty`] an unsigned count of lots (`u64`).
//!   The engine compares and adds them as plain integers; nothing is ever a float.
//! - A symbol's tick and lot are each a [`Step`]: `units × 10^-scale` (tick `0.01` is
//!   `1 × 10^-2`, tick `0.005` is `5 × 10^-3`). A decimal string converts to a step count only
//!   when it lies exactly on the grid; otherwise it is rejected, never rounded.
//! - Notional (`price × quantity`) is computed in `i128` "tick·lot" units, which cannot
//!   overflow for any `i64 × u64` product.
//! - Rendering: a price shows exactly the tick's decimal places (`"30000.00"`), a quantity
//!   its shortest exact form (`"0.5"`, `"1000"`, `"0"`).

use std::fmt;

use thiserror::Error;

/// A price in ticks of its symbol.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct Price(pub i64);

/// A quantity in lots of its symbol.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct Qty(pub u64);

impl Qty {
    pub const ZERO: Qty = Qty(0);

    /// `true` for zero lots.
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl Price {
    /// Notional of `qty` at this price, in tick·lot units.
    pub fn notional(self, qty: Qty) -> i128 {
        i128::from(self.0) * i128::from(qty.0)
    }
}

/// Order side.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    utoipa::ToSchema,
)]
#[rkyv(derive(Debug))]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Side {
    Buy = 0,
    Sell = 1,
}

impl Side {
    /// The other side.
    #[must_use]
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }
}

/// Why a decimal string is not a valid step count.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecimalError {
    #[error("is not a decimal number")]
    Malformed,
    #[error("has more decimal places than the grid allows")]
    TooPrecise,
    #[error("is not a multiple of the step {0}")]
    OffGrid(String),
    #[error("is out of range")]
    Overflow,
    #[error("must be positive")]
    NotPositive,
}

/// A grid step (`units × 10^-scale`): a symbol's tick size or lot size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Step {
    units: u64,
    scale: u32,
}

/// The most decimal places a step may have; keeps every intermediate in `u128`.
pub const MAX_SCALE: u32 = 18;

impl Step {
    /// A step of `units × 10^-scale`.
    ///
    /// # Errors
    /// [`DecimalError::NotPositive`] for a zero step, [`DecimalError::TooPrecise`] beyond
    /// [`MAX_SCALE`] decimal places.
    pub fn new(units: u64, scale: u32) -> Result<Self, DecimalError> {
        if units == 0 {
            return Err(DecimalError::NotPositive);
        }
        if scale > MAX_SCALE {
            return Err(DecimalError::TooPrecise);
        }
        Ok(Self { units, scale })
    }

    /// Parses a step such as `"0.01"` or `"5"`; trailing zeros after the point are dropped.
    ///
    /// # Errors
    /// [`DecimalError`] if it is not a positive decimal with at most [`MAX_SCALE`] places.
    pub fn parse(s: &str) -> Result<Self, DecimalError> {
        let (mut mantissa, mut scale) = parse_decimal(s)?;
        while scale > 0 && mantissa % 10 == 0 && mantissa != 0 {
            mantissa /= 10;
            scale -= 1;
        }
        let units = u64::try_from(mantissa).map_err(|_| DecimalError::Overflow)?;
        Self::new(units, scale)
    }

    /// Decimal places of this step.
    pub fn scale(self) -> u32 {
        self.scale
    }

    /// Units of `10^-scale` per step.
    pub fn units(self) -> u64 {
        self.units
    }

    /// Converts a decimal string to a whole number of steps, exactly.
    ///
    /// # Errors
    /// [`DecimalError`] if the string is malformed, has non-zero digits beyond the step's
    /// scale, is not a multiple of the step, or does not fit in an `i64` of steps.
    pub fn steps(self, s: &str) -> Result<i64, DecimalError> {
        let (mantissa, scale) = parse_decimal(s)?;
        let at_scale = if scale <= self.scale {
            mantissa.checked_mul(pow10(self.scale - scale)).ok_or(DecimalError::Overflow)?
        } else {
            let div = pow10(scale - self.scale);
            if mantissa % div != 0 {
                return Err(DecimalError::TooPrecise);
            }
            mantissa / div
        };
        if at_scale % u128::from(self.units) != 0 {
            return Err(DecimalError::OffGrid(self.to_string()));
        }
        i64::try_from(at_scale / u128::from(self.units)).map_err(|_| DecimalError::Overflow)
    }

    /// A price in ticks of this step, from its decimal string; must be positive.
    ///
    /// # Errors
    /// As [`Step::steps`], plus [`DecimalError::NotPositive`] for zero.
    pub fn price(self, s: &str) -> Result<Price, DecimalError> {
        match self.steps(s)? {
            0 => Err(DecimalError::NotPositive),
            n => Ok(Price(n)),
        }
    }

    /// A quantity in lots of this step, from its decimal string; must be positive.
    ///
    /// # Errors
    /// As [`Step::steps`], plus [`DecimalError::NotPositive`] for zero.
    pub fn qty(self, s: &str) -> Result<Qty, DecimalError> {
        match self.steps(s)? {
            0 => Err(DecimalError::NotPositive),
            n => Ok(Qty(n.unsigned_abs())),
        }
    }

    /// Renders `steps` with exactly this step's decimal places (prices: `"30000.00"`).
    pub fn format_fixed(self, steps: i64) -> String {
        let value = i128::from(steps) * i128::from(self.units);
        render(value, self.scale, false)
    }

    /// Renders `steps` in its shortest exact form (quantities: `"0.5"`, `"1000"`).
    pub fn format_trimmed(self, steps: u64) -> String {
        let value = i128::from(steps) * i128::from(self.units);
        render(value, self.scale, true)
    }

    /// Renders a price.
    pub fn format_price(self, price: Price) -> String {
        self.format_fixed(price.0)
    }

    /// Renders a quantity.
    pub fn format_qty(self, qty: Qty) -> String {
        self.format_trimmed(qty.0)
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&render(i128::from(self.units), self.scale, true))
    }
}

fn pow10(exp: u32) -> u128 {
    10u128.pow(exp)
}

/// Parses `digits[.digits]` into (mantissa, scale). No sign, exponent, spaces or `+`.
fn parse_decimal(s: &str) -> Result<(u128, u32), DecimalError> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !all_digits(int) || !all_digits(frac) || (s.contains('.') && frac.is_empty()) {
        return Err(DecimalError::Malformed);
    }
    // Trailing zeros carry no value; dropping them lets "1.2500" fit a 0.01 grid.
    let frac = frac.trim_end_matches('0');
    let scale = u32::try_from(frac.len()).map_err(|_| DecimalError::TooPrecise)?;
    if scale > MAX_SCALE {
        return Err(DecimalError::TooPrecise);
    }
    let int = int.trim_start_matches('0');
    if int.len() + frac.len() > 38 {
        return Err(DecimalError::Overflow);
    }
    let mut mantissa: u128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        mantissa =
            mantissa.checked_mul(10).and_then(|m| m.checked_add(u128::from(b - b'0'))).ok_or(DecimalError::Overflow)?;
    }
    Ok((mantissa, scale))
}

fn render(value: i128, scale: u32, trim: bool) -> String {
    let sign = if value < 0 { "-" } else { "" };
    let abs = value.unsigned_abs();
    if scale == 0 {
        return format!("{sign}{abs}");
    }
    let div = pow10(scale);
    let frac = format!("{:0width$}", abs % div, width = scale as usize);
    let frac = if trim { frac.trim_end_matches('0') } else { &frac };
    if frac.is_empty() {
        format!("{sign}{}", abs / div)
    } else {
        format!("{sign}{}.{frac}", abs / div)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn step(s: &str) -> Step {
        Step::parse(s).expect("valid step")
    }

    #[test]
    fn parses_on_grid_values_exactly() {
        let tick = step("0.01");
        assert_eq!(tick.price("30000.25"), Ok(Price(3_000_025)));
        assert_eq!(tick.price("30000.2500"), Ok(Price(3_000_025)));
        assert_eq!(tick.price("30000"), Ok(Price(3_000_000)));
        assert_eq!(tick.price("0.01"), Ok(Price(1)));
        let lot = step("0.0001");
        assert_eq!(lot.qty("0.5"), Ok(Qty(5000)));
        assert_eq!(lot.qty("1000"), Ok(Qty(10_000_000)));
        let five = step("0.005");
        assert_eq!(five, Step::new(5, 3).expect("valid"));
        assert_eq!(five.price("1.015"), Ok(Price(203)));
    }

    #[test]
    fn rejects_instead_of_rounding() {
        let tick = step("0.01");
        assert_eq!(tick.price("30000.255"), Err(DecimalError::TooPrecise));
        assert_eq!(step("0.005").price("1.013"), Err(DecimalError::OffGrid("0.005".into())));
        assert_eq!(tick.price("0"), Err(DecimalError::NotPositive));
        assert_eq!(tick.price("0.00"), Err(DecimalError::NotPositive));
        for bad in ["", ".", "1.", ".5", "-1", "+1", "1e3", " 1", "1 ", "1,5", "0x10", "1.2.3", "NaN", "١"] {
            assert_eq!(tick.price(bad), Err(DecimalError::Malformed), "{bad:?}");
        }
        assert_eq!(tick.price("92233720368547758.08"), Err(DecimalError::Overflow));
        assert_eq!(tick.price(&"9".repeat(60)), Err(DecimalError::Overflow));
        assert_eq!(tick.price(&format!("1.{}", "0".repeat(100))), Ok(Price(100)));
    }

    #[test]
    fn renders_prices_fixed_and_quantities_trimmed() {
        let tick = step("0.01");
        assert_eq!(tick.format_price(Price(3_000_000)), "30000.00");
        assert_eq!(tick.format_price(Price(5)), "0.05");
        let lot = step("0.0001");
        assert_eq!(lot.format_qty(Qty(5000)), "0.5");
        assert_eq!(lot.format_qty(Qty(10_000_000)), "1000");
        assert_eq!(lot.format_qty(Qty(0)), "0");
        assert_eq!(step("5").format_qty(Qty(3)), "15");
        assert_eq!(step("0.01").to_string(), "0.01");
        assert_eq!(step("0.010").to_string(), "0.01");
    }

    #[test]
    fn notional_never_overflows() {
        assert_eq!(Price(i64::MAX).notional(Qty(u64::MAX)), i128::from(i64::MAX) * i128::from(u64::MAX));
    }

    proptest! {
        #[test]
        fn price_string_round_trips(units in 1u64..1000, scale in 0u32..9, steps in 1i64..1_000_000_000_000) {
            let s = Step::new(units, scale).expect("valid");
            let text = s.format_fixed(steps);
            prop_assert_eq!(s.steps(&text), Ok(steps));
            let text = s.format_trimmed(steps.unsigned_abs());
            prop_assert_eq!(s.steps(&text), Ok(steps));
        }

        #[test]
        fn off_grid_is_never_accepted(steps in 1i64..1_000_000_000, extra in 1u64..4) {
            // A value strictly between two grid points of a 0.005 step.
            let s = Step::new(5, 3).expect("valid");
            let thousandths = steps * 5 + extra as i64;
            let text = format!("{}.{:03}", thousandths / 1000, thousandths % 1000);
            prop_assert!(s.steps(&text).is_err());
        }
    }
}
