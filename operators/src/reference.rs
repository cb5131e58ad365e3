//! A naive, from-scratch recomputation of SPEC 4-5: the oracle for tests and the
//! benchmark's yardstick.
//!
//! Nothing here is incremental and nothing is shared with the operator beyond the
//! float conversions of [`crate::metrics`] (which define the float columns) and the
//! [`WindowAgg`] struct used as a plain record of sums. Each window's sums, open and
//! close are computed directly from its trades; each volatility and anomaly by scanning
//! the symbol's windows with the SPEC's own wording.

use crate::agg::WindowAgg;
use crate::analytics::AnalyticsParams;
use crate::metrics::{avg_f64, volume_f64, vwap_f64};
use ethnum::I256;
use std::collections::BTreeMap;
use tradeflow_model::{Anomaly, AnomalyKind, F64, Price, Qty, Symbol, WindowMetrics};

/// Final rows of a set of accepted trades `(symbol, ts, price, volume)`.
pub fn reference(trades: &[(Symbol, i64, Price, Qty)], params: &AnalyticsParams) -> (Vec<WindowMetrics>, Vec<Anomaly>) {
    let spec = params.windows;
    let mut by_symbol: BTreeMap<&Symbol, Vec<(i64, i64, i64)>> = BTreeMap::new();
    for (symbol, ts, price, volume) in trades {
        by_symbol.entry(symbol).or_default().push((*ts, price.units(), volume.units()));
    }
    let mut windows = BTreeMap::new();
    for (symbol, mut list) in by_symbol {
        list.sort();
        let mut starts: Vec<i64> = Vec::new();
        for (ts, _, _) in &list {
            // Every multiple of S whose window [start, start + W) holds ts.
            let mut start = ts.div_euclid(spec.slide()) * spec.slide();
            while start + spec.size() > *ts {
                starts.push(start);
                start -= spec.slide();
            }
        }
        starts.sort();
        starts.dedup();
        for start in starts {
            let inside: Vec<&(i64, i64, i64)> =
                list.iter().filter(|(ts, _, _)| *ts >= start && *ts < start + spec.size()).collect();
            let mut totals = WindowAgg { count: inside.len() as u64, ..WindowAgg::default() };
            for (_, p, v) in &inside {
                totals.volume += *v as i128;
                totals.notional += I256::from(*p as i128) * I256::from(*v as i128);
                totals.price_sum += *p as i128;
                totals.min = totals.min.min(*p);
                totals.max = totals.max.max(*p);
            }
            // `inside` is sorted by (ts, price): open is the first, close the last.
            let (first, last) = (inside[0], inside[inside.len() - 1]);
            totals.open = (first.0, first.1);
            totals.close = (last.0, last.1);
            windows.insert((symbol.clone(), start), totals);
        }
    }
    rows_from_windows(&windows, params)
}

/// Final rows from each window's totals, keyed by (symbol, window start).
pub fn rows_from_windows(
    windows: &BTreeMap<(Symbol, i64), WindowAgg>,
    params: &AnalyticsParams,
) -> (Vec<WindowMetrics>, Vec<Anomaly>) {
    let slide = params.windows.slide();
    let kv = params.volatility_windows as i64;
    let kb = params.anomalies.baseline_windows as i64;
    let a = &params.anomalies;
    let vwap_of = |symbol: &Symbol, start: i64| {
        windows.get(&(symbol.clone(), start)).and_then(|w| vwap_f64(w.notional, w.volume))
    };

    // volatility(s, w) and the mean of its returns, straight from the SPEC text.
    let volatility = |symbol: &Symbol, start: i64| -> Option<(f64, f64)> {
        let mut vwaps = Vec::new();
        let mut w = start - (kv - 1) * slide;
        while w <= start {
            if let Some(v) = vwap_of(symbol, w) {
                vwaps.push(v);
            }
            w += slide;
        }
        let returns: Vec<f64> = (0..vwaps.len().saturating_sub(1)).map(|j| (vwaps[j + 1] / vwaps[j]).ln()).collect();
        if returns.len() < 2 {
            return None;
        }
        let n = returns.len() as f64;
        let mut sum = 0.0;
        for r in &returns {
            sum += r;
        }
        let mean = sum / n;
        let mut sq = 0.0;
        for r in &returns {
            sq += (r - mean) * (r - mean);
        }
        Some(((sq / (n - 1.0)).sqrt(), mean))
    };

    let mut metrics = Vec::new();
    let mut anomalies = Vec::new();
    for ((symbol, start), w) in windows {
        let start = *start;
        let end = start + params.windows.size();
        let vwap = vwap_f64(w.notional, w.volume);
        metrics.push(WindowMetrics {
            symbol: symbol.clone(),
            window_start: start,
            window_end: end,
            trade_count: w.count,
            volume: w.volume,
            vwap: vwap.map(F64),
            min_price: Price(w.min),
            max_price: Price(w.max),
            avg_price: F64(avg_f64(w.price_sum, w.count)),
            open: Price(w.open.1),
            close: Price(w.close.1),
            volatility: volatility(symbol, start).map(|(s, _)| F64(s)),
            is_final: true,
        });
        let row = |kind, severity: f64, observed: f64, baseline: f64| Anomaly {
            symbol: symbol.clone(),
            window_start: start,
            window_end: end,
            kind,
            severity: F64(severity),
            detected_at: end,
            observed: F64(observed),
            baseline: F64(baseline),
            is_final: true,
        };

        // volume_spike: the K windows immediately before w, missing ones count as 0.
        let mut prior = 0i128;
        let mut with_trades = 0;
        for k in 1..=kb {
            if let Some(p) = windows.get(&(symbol.clone(), start - k * slide)) {
                prior += p.volume;
                with_trades += 1;
            }
        }
        let baseline = volume_f64(prior) / kb as f64;
        let volume = volume_f64(w.volume);
        if with_trades >= a.min_history && baseline > 0.0 && volume > a.spike_factor * baseline {
            anomalies.push(row(AnomalyKind::VolumeSpike, volume / baseline, volume, baseline));
        }

        // price_jump: p = the latest of the K windows before w with a vwap.
        let previous = (1..=kb).map(|k| start - k * slide).find(|p| vwap_of(symbol, *p).is_some());
        if let (Some(vwap), Some(p)) = (vwap, previous)
            && let Some((sigma, mean)) = volatility(symbol, p)
        {
            let r = (vwap / vwap_of(symbol, p).expect("found above")).ln();
            if sigma > 0.0 && (r - mean).abs() > a.jump_sigma * sigma {
                anomalies.push(row(AnomalyKind::PriceJump, (r - mean).abs() / sigma, r, sigma));
            }
        }
    }
    (metrics, anomalies)
}
