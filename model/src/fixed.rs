//! Exact fixed-point prices and quantities.
//!
//! Prices and volumes carry at most 8 decimal places (SPEC 4): a value is stored as an
//! integer number of 10^-8 units. Both must be below 10^10, so every value fits an `i64`
//! and a product of two fits an `i128`. Sums travel as `i128` (or wider, see
//! `tradeflow-operators`), so aggregation is exact and independent of order.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Number of 10^-8 units in one whole unit.
pub const SCALE: i64 = 100_000_000;

/// Exclusive upper bound of a price or volume in units: 10^10 whole units.
pub const UNITS_LIMIT: i64 = 1_000_000_000_000_000_000;

/// A trade price in units of 10^-8. Always `> 0` and `< UNITS_LIMIT` for an accepted trade.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Price(pub i64);

/// A traded quantity in units of 10^-8. Always `>= 0` and `< UNITS_LIMIT` for an accepted trade.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Qty(pub i64);

macro_rules! fixed_point {
    ($ty:ident) => {
        impl $ty {
            /// The value in whole units as an `f64` (the nearest double to units / 10^8 when
            /// units < 2^53).
            pub fn to_f64(self) -> f64 {
                self.0 as f64 / SCALE as f64
            }
            /// Builds a value from a float, rounding to the nearest unit. For tests and the
            /// simulator, never for parsing input (which is exact, see [`crate::decimal`]).
            pub fn from_f64(value: f64) -> Self {
                $ty((value * SCALE as f64).round() as i64)
            }
            /// The raw number of 10^-8 units.
            pub fn units(self) -> i64 {
                self.0
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_units(f, self.0 as i128)
            }
        }
    };
}
fixed_point!(Price);
fixed_point!(Qty);

/// Writes `units` (10^-8) as an exact decimal without trailing zeros: `18712000000` -> `187.12`.
pub(crate) fn write_units(f: &mut impl fmt::Write, units: i128) -> fmt::Result {
    let sign = if units < 0 { "-" } else { "" };
    let abs = units.unsigned_abs();
    let whole = abs / SCALE as u128;
    let frac = abs % SCALE as u128;
    if frac == 0 {
        return write!(f, "{sign}{whole}");
    }
    let digits = format!("{frac:08}");
    write!(f, "{sign}{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_exact_and_trimmed() {
        assert_eq!(Price(18_712_000_000).to_string(), "187.12");
        assert_eq!(Qty(1).to_string(), "0.00000001");
        assert_eq!(Qty(0).to_string(), "0");
        assert_eq!(Price(UNITS_LIMIT - 1).to_string(), "9999999999.99999999");
    }

    #[test]
    fn to_f64_is_the_nearest_double_for_small_values() {
        assert_eq!(Price(18_712_000_000).to_f64(), 187.12);
        assert_eq!(Qty(150_000_000).to_f64(), 1.5);
    }
}
