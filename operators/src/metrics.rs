//! Window metrics from an exact aggregate (SPEC 4).
//!
//! | column | definition |
//! |---|---|
//! | trade_count | number of trades |
//! | volume | Σ v (exact, 10^-8 units) |
//! | vwap | Σ(p·v) / Σ v; NULL when Σ v = 0 |
//! | min_price, max_price | min and max of p |
//! | avg_price | Σ p / trade_count (unweighted) |
//! | open | p of the trade with the smallest ts; ties: the lowest such p |
//! | close | p of the trade with the largest ts; ties: the highest such p |
//!
//! All sums are exact integers; the only floating-point steps are the conversions
//! below, applied to final integers, so the result depends only on the set of trades.
//! These conversion functions are *the* definition of the float columns: every
//! computation (the operator, the reference, the yardstick) goes through them.

use crate::agg::WindowAgg;
use ethnum::I256;
use tradeflow_model::{F64, Price, SCALE, Symbol, WindowMetrics, WindowSpec};

/// The base metrics of one window (everything but volatility).
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct BaseMetrics {
    /// Number of trades.
    pub trade_count: u64,
    /// Σ volume, 10^-8 units.
    pub volume: i128,
    /// Volume-weighted average price, `None` when Σ volume = 0.
    pub vwap: Option<f64>,
    /// Lowest price.
    pub min_price: Price,
    /// Highest price.
    pub max_price: Price,
    /// Unweighted average price.
    pub avg_price: f64,
    /// Price of the earliest trade.
    pub open: Price,
    /// Price of the latest trade.
    pub close: Price,
}

/// The base metrics of a non-empty aggregate.
pub fn base_metrics(agg: &WindowAgg) -> BaseMetrics {
    BaseMetrics {
        trade_count: agg.count,
        volume: agg.volume,
        vwap: vwap_f64(agg.notional, agg.volume),
        min_price: Price(agg.min),
        max_price: Price(agg.max),
        avg_price: avg_f64(agg.price_sum, agg.count),
        open: Price(agg.open.1),
        close: Price(agg.close.1),
    }
}

/// The provisional row of the window of `symbol` at `start` holding `agg` (non-empty),
/// with its `volatility` ([`crate::volatility`]).
pub fn window_row(
    symbol: &Symbol,
    start: i64,
    agg: &WindowAgg,
    volatility: Option<F64>,
    spec: WindowSpec,
) -> WindowMetrics {
    let base = base_metrics(agg);
    WindowMetrics {
        symbol: symbol.clone(),
        window_start: start,
        window_end: spec.end_of(start),
        trade_count: base.trade_count,
        volume: base.volume,
        vwap: base.vwap.map(F64),
        min_price: base.min_price,
        max_price: base.max_price,
        avg_price: F64(base.avg_price),
        open: base.open,
        close: base.close,
        volatility,
        is_final: false,
    }
}

/// Σ(p·v) (10^-16 units) / Σv (10^-8 units) as a price in whole units; `None` when Σv = 0.
pub fn vwap_f64(notional: I256, volume: i128) -> Option<f64> {
    if volume == 0 {
        return None;
    }
    Some(notional.as_f64() / volume as f64 / SCALE as f64)
}

/// Σp (10^-8 units) / count as a price in whole units.
pub fn avg_f64(price_sum: i128, count: u64) -> f64 {
    price_sum as f64 / count as f64 / SCALE as f64
}

/// A volume in 10^-8 units as whole units.
pub fn volume_f64(units: i128) -> f64 {
    units as f64 / SCALE as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use tradeflow_model::Qty;

    fn agg(trades: &[(i64, f64, f64)]) -> WindowAgg {
        let mut agg = WindowAgg::default();
        for (ts, p, v) in trades {
            agg.add_trade(*ts, Price::from_f64(*p), Qty::from_f64(*v));
        }
        agg
    }

    #[test]
    fn computes_every_column() {
        let m = base_metrics(&agg(&[(3, 10.0, 1.0), (1, 12.0, 3.0), (2, 11.0, 0.0)]));
        assert_eq!(m.trade_count, 3);
        assert_eq!(m.volume, 400_000_000);
        assert_eq!(m.vwap, Some((10.0 + 36.0) / 4.0));
        assert_eq!((m.min_price.to_f64(), m.max_price.to_f64()), (10.0, 12.0));
        assert_eq!(m.avg_price, 11.0);
        assert_eq!((m.open.to_f64(), m.close.to_f64()), (12.0, 10.0));
    }

    #[test]
    fn vwap_is_null_without_volume() {
        let m = base_metrics(&agg(&[(1, 1.08, 0.0), (2, 1.09, 0.0)]));
        assert_eq!(m.vwap, None);
        assert_eq!(m.avg_price, 1.085);
    }
}
