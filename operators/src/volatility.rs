//! Rolling volatility of vwap log returns (SPEC 4).
//!
//! Background: for window `w` of a symbol, take the windows `w'` of the same symbol with
//! `w - (K-1)·S <= w' <= w` whose vwap is not NULL, in time order `w1 < ... < wm`
//! (K = `--volatility-windows`, S the slide, = W for tumbling windows). Empty windows
//! are skipped, not zero-filled. The returns are `r_j = ln(vwap(w_{j+1}) / vwap(w_j))`.
//!
//! Formula, evaluated exactly in this order so results are bit-identical everywhere:
//! `mean = (Σ r_j) / n`, `var = Σ (r_j − mean)² / (n − 1)`, sums left to right,
//! `volatility = sqrt(var)`; NULL when fewer than 2 returns. Not annualised.
//!
//! Lateness: the inputs are window vwaps, provisional until their windows are final;
//! the volatility of `w` is final when `w` is, since it reads only windows `<= w`.
//!
//! Operator: the analytics' `reduce` by symbol ([`crate::analytics`]) reads the symbol's
//! held windows, each as a small [`Window`] (start, vwap, volume) rather than a whole row,
//! takes their returns once ([`Run`]), and computes the volatility of each window not yet
//! final (and of the one its price-jump rule compares with, whose [`Volatility`] the rule
//! reads with the mean of its returns) as a slice of them. The window's [`Rated`] carries
//! its volatility to the gate.

use serde::{Deserialize, Serialize};
use tradeflow_model::F64;

/// One window of a symbol, as the derived rules read it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Window {
    /// Window start, ms since the epoch (windows order by it).
    pub start: i64,
    /// The window's vwap, `None` when its volume is 0.
    pub vwap: Option<F64>,
    /// Σ volume, 10^-8 units.
    pub volume: i128,
}

/// A window with its rolling volatility (`None` with fewer than two returns): what the
/// gate reads to assemble the window's row.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Rated {
    /// The window.
    pub window: Window,
    /// Its volatility: the sample standard deviation of the returns.
    pub sigma: Option<F64>,
}

/// The volatility of a run of vwaps, with the mean of the returns behind it.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct Volatility {
    /// Sample standard deviation of the log returns.
    pub sigma: f64,
    /// Mean of the log returns.
    pub mean: f64,
}

/// The volatility of `vwaps` (present windows, in time order); `None` with fewer than
/// two returns.
pub fn rolling_volatility(vwaps: &[f64]) -> Option<Volatility> {
    volatility_of_returns(vwaps.windows(2).map(|pair| log_return(pair[0], pair[1])))
}

/// The log return from a vwap to the next, `ln(next / previous)`.
pub fn log_return(previous: f64, next: f64) -> f64 {
    (next / previous).ln()
}

/// The volatility of consecutive log `returns` ([`log_return`]), read twice in order;
/// `None` with fewer than two.
fn volatility_of_returns(returns: impl ExactSizeIterator<Item = f64> + Clone) -> Option<Volatility> {
    if returns.len() < 2 {
        return None;
    }
    let n = returns.len() as f64;
    let mut sum = 0.0;
    for r in returns.clone() {
        sum += r;
    }
    let mean = sum / n;
    let mut squares = 0.0;
    for r in returns {
        squares += (r - mean) * (r - mean);
    }
    Some(Volatility { sigma: (squares / (n - 1.0)).sqrt(), mean })
}

/// The volatility of the present vwaps `first..last` of a symbol, given `returns`, the
/// returns between its consecutive present vwaps ([`log_return`]): that of
/// [`rolling_volatility`] over those vwaps, bit for bit, without taking their logs again.
fn volatility_of_run(returns: &[f64], first: usize, last: usize) -> Option<Volatility> {
    // The vwaps first..last, and so the returns first..last - 1 between them.
    if last > first { volatility_of_returns(returns[first..last - 1].iter().copied()) } else { None }
}

/// The present vwaps of a run of one symbol's windows, in time order, with the returns
/// between consecutive ones computed once: every window's volatility over the run is a
/// slice of them ([`Run::volatility_at`]).
#[derive(Debug, Default)]
pub struct Run {
    /// (window start, vwap) of the windows with a vwap.
    vwaps: Vec<(i64, f64)>,
    /// `returns[j]`: the return from `vwaps[j]` to `vwaps[j + 1]`.
    returns: Vec<f64>,
}

impl Run {
    /// Replaces the run by `windows` (one symbol's, in time order).
    pub fn load<'a>(&mut self, windows: impl Iterator<Item = &'a Window>) {
        self.vwaps.clear();
        self.vwaps.extend(windows.filter_map(|w| w.vwap.map(|v| (w.start, v.0))));
        self.returns.clear();
        self.returns.extend(self.vwaps.windows(2).map(|pair| log_return(pair[0].1, pair[1].1)));
    }

    /// The volatility of the window at `start`: over the present vwaps from
    /// `start − span` to `start` (span = (K − 1)·S), bit for bit that of
    /// [`rolling_volatility`] over them. The run must reach back to `start − span`.
    pub fn volatility_at(&self, start: i64, span: i64) -> Option<Volatility> {
        let first = self.vwaps.partition_point(|(s, _)| *s < start - span);
        let last = self.vwaps.partition_point(|(s, _)| *s <= start);
        volatility_of_run(&self.returns, first, last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_two_returns() {
        assert_eq!(rolling_volatility(&[]), None);
        assert_eq!(rolling_volatility(&[100.0, 101.0]), None);
        assert!(rolling_volatility(&[100.0, 101.0, 100.0]).is_some());
    }

    #[test]
    fn matches_a_hand_computation() {
        let v = rolling_volatility(&[100.0, 110.0, 99.0, 99.0]).unwrap();
        let r = [(110.0f64 / 100.0).ln(), (99.0f64 / 110.0).ln(), 0.0];
        let mean = (r[0] + r[1] + r[2]) / 3.0;
        let var = ((r[0] - mean).powi(2) + (r[1] - mean).powi(2) + (r[2] - mean).powi(2)) / 2.0;
        assert_eq!(v.mean, mean);
        assert!((v.sigma - var.sqrt()).abs() < 1e-15);
    }

    /// The returns computed once and sliced give the bits of the vwaps' own volatility.
    #[test]
    fn sliced_returns_give_the_same_bits() {
        let vwaps = [101.25, 99.5, 100.125, 102.0, 98.75, 100.0, 100.0, 103.5];
        let returns: Vec<f64> = vwaps.windows(2).map(|p| log_return(p[0], p[1])).collect();
        for first in 0..vwaps.len() {
            for last in first..=vwaps.len() {
                let sliced = volatility_of_run(&returns, first, last);
                let own = rolling_volatility(&vwaps[first..last]);
                assert_eq!(
                    sliced.map(|v| (v.sigma.to_bits(), v.mean.to_bits())),
                    own.map(|v| (v.sigma.to_bits(), v.mean.to_bits()))
                );
            }
        }
    }

    /// A run's volatility at each window is that of the present vwaps in its span.
    #[test]
    fn a_run_slices_each_windows_span() {
        let vwaps = [Some(101.25), None, Some(99.5), Some(100.125), None, Some(102.0), Some(98.75), Some(100.0)];
        let windows: Vec<Window> = vwaps
            .iter()
            .enumerate()
            .map(|(i, v)| Window { start: i as i64 * 10, vwap: v.map(F64), volume: 1 })
            .collect();
        let mut run = Run::default();
        run.load(windows.iter());
        for span in [0, 10, 20, 30, 70] {
            for w in &windows {
                let own: Vec<f64> = windows
                    .iter()
                    .filter(|o| o.start >= w.start - span && o.start <= w.start)
                    .filter_map(|o| o.vwap.map(|v| v.0))
                    .collect();
                let bits = |v: Option<Volatility>| v.map(|v| (v.sigma.to_bits(), v.mean.to_bits()));
                assert_eq!(bits(run.volatility_at(w.start, span)), bits(rolling_volatility(&own)), "{w:?} {span}");
            }
        }
    }

    #[test]
    fn a_steady_trend_has_zero_volatility() {
        let v = rolling_volatility(&[100.0, 200.0, 400.0, 800.0]).unwrap();
        assert!(v.sigma.abs() < 1e-15, "{v:?}");
        assert!((v.mean - 2f64.ln()).abs() < 1e-15);
    }
}
