//! The exact aggregate of a set of trades, carried as a differential *difference*.
//!
//! Background: differential dataflow lets any commutative monoid play the role of the
//! multiplicity of a record (differential's TPC-H Q1 sums prices this way). tradeflow's
//! sources pre-aggregate the trades of a batch per (symbol, pane) into one [`WindowAgg`]
//! and send `((symbol, pane), epoch, agg)`: the sums Σv, Σp·v, Σp and the count add up
//! in O(1) per trade, whatever the order, batching or worker that saw each trade.
//!
//! Semantics: `plus_equals` is the union of two sets of trades. Integer sums are exact
//! (`i128`, and 256 bits for Σp·v, which exceeds `i128` after ~170 trades at the 10^10
//! limits); min/max and open/close are order-free because ties are broken by price
//! (open = lowest (ts, p), close = highest (ts, p), SPEC 4).
//!
//! Retraction: min/max and open/close have no inverse, so the aggregate is a monoid, not
//! a group, and a trade is never retracted (a late trade is rejected, not applied). One
//! retraction is exact all the same: [`WindowAgg::negated`] of a *whole* window's
//! aggregate. Added to that aggregate it gives count 0 and sums 0, which is zero
//! ([`IsZero`] is `count == 0`), so differential drops the window from an arrangement
//! once its expiry is compacted in (see `crate::windows`). Counts add with wrapping
//! arithmetic so that such a partial sum is representable.

use differential_dataflow::difference::{IsZero, Monoid, Semigroup};
use ethnum::I256;
use serde::{Deserialize, Serialize};
use tradeflow_model::{Price, Qty};

/// The aggregate of a set of trades of one symbol.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WindowAgg {
    /// Number of trades.
    pub count: u64,
    /// Σ volume, 10^-8 units.
    pub volume: i128,
    /// Σ price·volume, 10^-16 units.
    pub notional: I256,
    /// Σ price, 10^-8 units.
    pub price_sum: i128,
    /// Lowest price (`i64::MAX` when empty).
    pub min: i64,
    /// Highest price (`i64::MIN` when empty).
    pub max: i64,
    /// (ts, price) of the open: the least pair.
    pub open: (i64, i64),
    /// (ts, price) of the close: the greatest pair.
    pub close: (i64, i64),
}

impl Default for WindowAgg {
    fn default() -> Self {
        WindowAgg {
            count: 0,
            volume: 0,
            notional: I256::ZERO,
            price_sum: 0,
            min: i64::MAX,
            max: i64::MIN,
            open: (i64::MAX, i64::MAX),
            close: (i64::MIN, i64::MIN),
        }
    }
}

impl WindowAgg {
    /// The aggregate of one trade.
    pub fn of_trade(ts: i64, price: Price, volume: Qty) -> Self {
        let (p, v) = (price.units(), volume.units());
        WindowAgg {
            count: 1,
            volume: v as i128,
            notional: I256::from(p as i128 * v as i128),
            price_sum: p as i128,
            min: p,
            max: p,
            open: (ts, p),
            close: (ts, p),
        }
    }

    /// Adds one trade.
    #[inline]
    pub fn add_trade(&mut self, ts: i64, price: Price, volume: Qty) {
        let (p, v) = (price.units(), volume.units());
        self.count = self.count.wrapping_add(1);
        self.volume += v as i128;
        self.notional += I256::from(p as i128 * v as i128);
        self.price_sum += p as i128;
        self.min = self.min.min(p);
        self.max = self.max.max(p);
        self.open = self.open.min((ts, p));
        self.close = self.close.max((ts, p));
    }

    /// Adds every trade of `other`.
    pub fn merge(&mut self, other: &WindowAgg) {
        self.count = self.count.wrapping_add(other.count);
        self.volume += other.volume;
        self.notional += other.notional;
        self.price_sum += other.price_sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.open = self.open.min(other.open);
        self.close = self.close.max(other.close);
    }

    /// The retraction of this whole aggregate: its count and sums negated, its extremes
    /// the identity. Only the aggregate of everything a window holds may be retracted.
    pub fn negated(&self) -> WindowAgg {
        WindowAgg {
            count: self.count.wrapping_neg(),
            volume: -self.volume,
            notional: -self.notional,
            price_sum: -self.price_sum,
            ..WindowAgg::default()
        }
    }
}

impl IsZero for WindowAgg {
    fn is_zero(&self) -> bool {
        self.count == 0
    }
}

impl Semigroup for WindowAgg {
    fn plus_equals(&mut self, rhs: &Self) {
        self.merge(rhs);
    }
}

impl Monoid for WindowAgg {
    fn zero() -> Self {
        WindowAgg::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_is_order_free() {
        let trades = [(5, 100, 2), (1, 300, 1), (5, 90, 0), (1, 310, 4), (9, 200, 3), (9, 201, 1)];
        let mut forward = WindowAgg::default();
        for (ts, p, v) in trades {
            forward.add_trade(ts, Price(p), Qty(v));
        }
        let mut backward = WindowAgg::default();
        for (ts, p, v) in trades.iter().rev() {
            backward.merge(&WindowAgg::of_trade(*ts, Price(*p), Qty(*v)));
        }
        assert_eq!(forward, backward);
        assert_eq!(forward.open, (1, 300)); // earliest ts, lowest price among ties
        assert_eq!(forward.close, (9, 201)); // latest ts, highest price among ties
        assert_eq!((forward.min, forward.max), (90, 310));
        assert_eq!(forward.notional, I256::from(200 + 300 + 1240 + 600 + 201));
    }

    #[test]
    fn a_whole_aggregate_and_its_negation_add_to_zero() {
        let mut whole = WindowAgg::default();
        let mut parts = Vec::new();
        for (ts, p, v) in [(5, 100, 2), (1, 300, 1), (9, 200, 3)] {
            let part = WindowAgg::of_trade(ts, Price(p), Qty(v));
            whole.merge(&part);
            parts.push(part);
        }
        // In any order, the partial sums are not zero and the full sum is.
        let mut sum = whole.negated();
        for part in &parts {
            assert!(!sum.is_zero());
            sum.plus_equals(part);
        }
        assert!(sum.is_zero());
        assert_eq!((sum.volume, sum.notional, sum.price_sum), (0, I256::ZERO, 0));
    }

    #[test]
    fn notional_does_not_overflow_at_the_limits() {
        let max = tradeflow_model::UNITS_LIMIT - 1;
        let mut agg = WindowAgg::default();
        for _ in 0..1000 {
            agg.add_trade(0, Price(max), Qty(max));
        }
        assert_eq!(agg.notional, I256::from(max as i128 * max as i128) * I256::from(1000));
    }
}
