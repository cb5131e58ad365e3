//! Anomaly rules (SPEC 5): volume spikes and price jumps.
//!
//! Parameters: `--spike-factor` F, `--baseline-windows` K, `--min-history` H,
//! `--jump-sigma` Z. "The K windows before w" are the windows starting at
//! `w - S, w - 2S, …, w - K·S` (S = W for tumbling windows).
//!
//! * `volume_spike` on (s, w): baseline = (Σ volume of s over the K windows before w) / K,
//!   windows without trades counting as 0. Fires when at least H of those K windows have
//!   trades, baseline > 0 and volume(w) > F · baseline. severity = volume / baseline;
//!   observed = volume(w); baseline = the baseline volume.
//! * `price_jump` on (s, w): p = the latest of the K windows before w whose vwap is not
//!   NULL; r = ln(vwap(w) / vwap(p)); σ = volatility(s, p), μ the mean of the returns
//!   behind it. Fires when vwap(w) is not NULL, σ is not NULL and > 0, and
//!   |r − μ| > Z · σ. severity = |r − μ| / σ (a z-score, so a steady trend does not
//!   fire); observed = r; baseline = σ.
//!
//! Floats are computed from exact integer sums in the order written here, so every
//! worker count and replay gives the same bits. Lateness: an anomaly is provisional
//! while its window is; a changed window can create or retract one.
//!
//! Operator: the analytics' `reduce` by symbol ([`crate::analytics`]) applies the rules
//! to each window not yet final ([`anomalies_of_last`]), from the same held windows and
//! returns it takes the window's volatility from.

use crate::metrics::volume_f64;
use crate::volatility::{Run, Volatility, Window, log_return};
use tradeflow_model::{Anomaly, AnomalyKind, F64, Symbol, WindowSpec};

/// Anomaly detection parameters.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct AnomalyParams {
    /// F: a spike is volume > F × baseline.
    pub spike_factor: f64,
    /// K: how many windows before w form the baseline.
    pub baseline_windows: usize,
    /// H: how many of those K windows must have trades.
    pub min_history: usize,
    /// Z: a jump is |r − μ| > Z × σ.
    pub jump_sigma: f64,
}

impl Default for AnomalyParams {
    fn default() -> Self {
        AnomalyParams { spike_factor: 3.0, baseline_windows: 20, min_history: 5, jump_sigma: 4.0 }
    }
}

/// A rule that fired: severity, the observed value and the baseline it was held against.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct Finding {
    /// How far beyond normal (volume / baseline, or a z-score).
    pub severity: f64,
    /// The window's volume, or its log return.
    pub observed: f64,
    /// The baseline volume, or the volatility.
    pub baseline: f64,
}

/// The volume-spike rule for a window with `volume` (10^-8 units), given the total volume
/// of the K windows before it and how many of them had trades.
pub fn volume_spike(
    volume: i128,
    prior_volume: i128,
    prior_windows_with_trades: usize,
    params: &AnomalyParams,
) -> Option<Finding> {
    if prior_windows_with_trades < params.min_history {
        return None;
    }
    let baseline = volume_f64(prior_volume) / params.baseline_windows as f64;
    let observed = volume_f64(volume);
    if baseline > 0.0 && observed > params.spike_factor * baseline {
        Some(Finding { severity: observed / baseline, observed, baseline })
    } else {
        None
    }
}

/// The price-jump rule for a window with `vwap`, given the vwap of the previous present
/// window p and the volatility of p.
pub fn price_jump(
    vwap: Option<f64>,
    previous_vwap: f64,
    previous_volatility: Option<Volatility>,
    params: &AnomalyParams,
) -> Option<Finding> {
    let vwap = vwap?;
    let vol = previous_volatility?;
    // sigma is never NaN here (finite positive vwaps), so `<= 0` is the same as `!(> 0)`.
    if vol.sigma <= 0.0 || vol.sigma.is_nan() {
        return None;
    }
    let r = log_return(previous_vwap, vwap);
    let deviation = (r - vol.mean).abs();
    if deviation > params.jump_sigma * vol.sigma {
        Some(Finding { severity: deviation / vol.sigma, observed: r, baseline: vol.sigma })
    } else {
        None
    }
}

/// Passes to `found` the anomalies of the last window of `windows` (one symbol's, in time
/// order, reaching back at least `K_b + K_v − 1` slides before it), given `run`, the
/// present vwaps of those windows (or more of the symbol's), and `volatility_span`,
/// `(K_v − 1)·S`: the rules read the `K_b` windows before it, and the volatility of the
/// latest of those with a vwap.
pub fn anomalies_of_last(
    symbol: &Symbol,
    windows: &[Window],
    run: &Run,
    volatility_span: i64,
    params: &AnomalyParams,
    spec: WindowSpec,
    mut found: impl FnMut(Anomaly),
) {
    let Some((window, before)) = windows.split_last() else { return };
    let span = params.baseline_windows as i64 * spec.slide();
    let (mut prior_volume, mut prior_windows) = (0i128, 0usize);
    let mut previous: Option<&Window> = None;
    for before in before.iter().rev().take_while(|b| b.start >= window.start - span) {
        prior_volume += before.volume;
        prior_windows += 1;
        if previous.is_none() && before.vwap.is_some() {
            previous = Some(before);
        }
    }
    let anomaly = |kind, f| anomaly(symbol, window.start, spec.end_of(window.start), kind, f);
    if let Some(f) = volume_spike(window.volume, prior_volume, prior_windows, params) {
        found(anomaly(AnomalyKind::VolumeSpike, f));
    }
    if let Some(p) = previous {
        let previous_vwap = p.vwap.expect("chosen for its vwap").0;
        let volatility = run.volatility_at(p.start, volatility_span);
        if let Some(f) = price_jump(window.vwap.map(|v| v.0), previous_vwap, volatility, params) {
            found(anomaly(AnomalyKind::PriceJump, f));
        }
    }
}

/// The provisional anomaly of `kind` for the window `[start, end)` of `symbol`.
pub fn anomaly(symbol: &Symbol, start: i64, end: i64, kind: AnomalyKind, f: Finding) -> Anomaly {
    Anomaly {
        symbol: symbol.clone(),
        window_start: start,
        window_end: end,
        kind,
        severity: F64(f.severity),
        detected_at: end,
        observed: F64(f.observed),
        baseline: F64(f.baseline),
        is_final: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: AnomalyParams = AnomalyParams { spike_factor: 3.0, baseline_windows: 4, min_history: 2, jump_sigma: 4.0 };
    const UNIT: i128 = 100_000_000;

    #[test]
    fn spike_needs_history_and_a_factor() {
        // baseline = (10 + 10) / 4 = 5 ; volume 16 > 15 fires with severity 3.2.
        let f = volume_spike(16 * UNIT, 20 * UNIT, 2, &P).unwrap();
        assert_eq!((f.severity, f.observed, f.baseline), (3.2, 16.0, 5.0));
        assert!(volume_spike(15 * UNIT, 20 * UNIT, 2, &P).is_none(), "must be strictly greater");
        assert!(volume_spike(100 * UNIT, 20 * UNIT, 1, &P).is_none(), "too little history");
        assert!(volume_spike(100 * UNIT, 0, 3, &P).is_none(), "zero baseline");
    }

    #[test]
    fn jump_is_a_z_score_against_the_previous_volatility() {
        let vol = Volatility { sigma: 0.01, mean: 0.001 };
        let f = price_jump(Some(105.0), 100.0, Some(vol), &P).unwrap();
        let r = (105.0f64 / 100.0).ln();
        assert_eq!(f.observed, r);
        assert_eq!(f.severity, (r - 0.001).abs() / 0.01);
        assert!(price_jump(Some(100.5), 100.0, Some(vol), &P).is_none());
        assert!(price_jump(None, 100.0, Some(vol), &P).is_none());
        assert!(price_jump(Some(200.0), 100.0, None, &P).is_none());
        assert!(price_jump(Some(200.0), 100.0, Some(Volatility { sigma: 0.0, mean: 0.0 }), &P).is_none());
    }
}
