//! The batch recomputation behind `tradeflow check`: final window metrics and anomalies
//! of a set of accepted trades, bit for bit what the pipeline writes.
//!
//! Background: the pipeline maintains windows incrementally ([`window_analytics`]); a check
//! has every trade of a range at once, so it aggregates each trade once into its pane
//! (`[j·S, (j+1)·S)`, a hash lookup per trade), sorts each symbol's panes, merges the
//! `W/S` panes of each window with two binary searches, and sweeps the sorted windows for
//! volatility and anomalies: O(trades + windows · (K_v + K_b)), the pipeline's own cost,
//! never the O(trades · windows) scan of `tradeflow_operators::reference`.
//!
//! Semantics: the same as the pipeline's `volatility` and `anomalies` reduces, through the same pure functions
//! ([`base_metrics`], [`rolling_volatility`], [`anomalies::volume_spike`],
//! [`anomalies::price_jump`]), fed the same inputs in the same order, so every float has
//! the pipeline's bits. A window's row reads the windows back to
//! `start − (K_b + K_v − 1)·S` ([`reach`]); only windows whose inputs were all read are
//! derived (the caller reads that much before its range).
//!
//! [`window_analytics`]: tradeflow_operators::window_analytics

use std::collections::{BTreeMap, HashMap};
use tradeflow_model::{Anomaly, AnomalyKind, F64, Symbol, WindowMetrics};
use tradeflow_operators::AnalyticsParams;
use tradeflow_operators::agg::WindowAgg;
use tradeflow_operators::anomalies::{self, Finding};
use tradeflow_operators::metrics::{base_metrics, window_row};
use tradeflow_operators::volatility::{Volatility, rolling_volatility};

/// How far back (ms) the row of a window reads: `(K_b + K_v − 1)·S`.
pub fn reach(params: &AnalyticsParams) -> i64 {
    let slides = (params.anomalies.baseline_windows + params.volatility_windows).saturating_sub(1);
    slides as i64 * params.windows.slide()
}

/// One symbol's trades, aggregated per pane as they are read.
#[derive(Debug, Default)]
pub struct SymbolPanes {
    panes: HashMap<i64, WindowAgg>,
}

/// Every symbol's panes.
#[derive(Debug)]
pub struct Panes {
    params: AnalyticsParams,
    symbols: BTreeMap<Symbol, SymbolPanes>,
}

impl Panes {
    /// No trades yet.
    pub fn new(params: AnalyticsParams) -> Self {
        Panes { params, symbols: BTreeMap::new() }
    }

    /// Adds one accepted trade.
    pub fn add(&mut self, symbol: &Symbol, ts: i64, price: tradeflow_model::Price, volume: tradeflow_model::Qty) {
        let pane = self.params.windows.pane_of(ts);
        let panes = match self.symbols.get_mut(symbol) {
            Some(panes) => panes,
            None => self.symbols.entry(symbol.clone()).or_default(),
        };
        panes.panes.entry(pane).or_default().add_trade(ts, price, volume);
    }

    /// The symbols seen, with the starts of their non-empty panes, sorted.
    pub fn pane_starts(&self) -> BTreeMap<Symbol, Vec<i64>> {
        self.symbols
            .iter()
            .map(|(s, p)| {
                let mut starts: Vec<i64> = p.panes.keys().copied().collect();
                starts.sort_unstable();
                (s.clone(), starts)
            })
            .collect()
    }

    /// The final rows of the windows starting in `[from, to)`, which must have all their
    /// inputs among the trades added (see the module documentation).
    pub fn rows(self, from: i64, to: i64) -> (Vec<WindowMetrics>, Vec<Anomaly>) {
        let params = self.params;
        let (mut metrics, mut found) = (Vec::new(), Vec::new());
        for (symbol, panes) in self.symbols {
            let windows = windows_of(&params, panes);
            derive_symbol(&params, &symbol, &windows, from, to, &mut metrics, &mut found);
        }
        (metrics, found)
    }
}

/// A window's aggregate and vwap.
struct Window {
    start: i64,
    agg: WindowAgg,
    vwap: Option<f64>,
}

/// The non-empty windows of one symbol, sorted by start.
fn windows_of(params: &AnalyticsParams, panes: SymbolPanes) -> Vec<Window> {
    let spec = params.windows;
    let mut panes: Vec<(i64, WindowAgg)> = panes.panes.into_iter().collect();
    panes.sort_unstable_by_key(|(start, _)| *start);
    let mut starts: Vec<i64> = panes.iter().flat_map(|(pane, _)| spec.windows_of_pane(*pane)).collect();
    starts.sort_unstable();
    starts.dedup();
    starts
        .into_iter()
        .map(|start| {
            let lo = panes.partition_point(|(p, _)| *p < start);
            let hi = panes.partition_point(|(p, _)| *p < spec.end_of(start));
            let mut agg = WindowAgg::default();
            for (_, pane) in &panes[lo..hi] {
                agg.merge(pane);
            }
            let vwap = base_metrics(&agg).vwap;
            Window { start, agg, vwap }
        })
        .collect()
}

/// The windows with a start in `[from, to)`.
fn range(windows: &[Window], from: i64, to: i64) -> std::ops::Range<usize> {
    windows.partition_point(|w| w.start < from)..windows.partition_point(|w| w.start < to)
}

/// Volatility at `start`: the vwaps of the present windows in `[start − (K_v − 1)·S, start]`.
fn volatility_at(
    params: &AnalyticsParams,
    windows: &[Window],
    start: i64,
    scratch: &mut Vec<f64>,
) -> Option<Volatility> {
    let span = (params.volatility_windows as i64 - 1) * params.windows.slide();
    scratch.clear();
    scratch.extend(windows[range(windows, start - span, start + 1)].iter().filter_map(|w| w.vwap));
    rolling_volatility(scratch)
}

/// The rows of one symbol's windows starting in `[from, to)` (as the pipeline's reduces).
fn derive_symbol(
    params: &AnalyticsParams,
    symbol: &Symbol,
    windows: &[Window],
    from: i64,
    to: i64,
    metrics: &mut Vec<WindowMetrics>,
    found: &mut Vec<Anomaly>,
) {
    let spec = params.windows;
    let mut scratch = Vec::new();
    for window in &windows[range(windows, from, to)] {
        let (start, end) = (window.start, spec.end_of(window.start));
        let volatility = volatility_at(params, windows, start, &mut scratch).map(|v| F64(v.sigma));
        let row = WindowMetrics { is_final: true, ..window_row(symbol, start, &window.agg, volatility, spec) };
        let (volume, vwap) = (row.volume, row.vwap.map(|v| v.0));
        metrics.push(row);

        // The K_b windows before this one.
        let before = &windows[range(windows, start - params.anomalies.baseline_windows as i64 * spec.slide(), start)];
        let (mut prior_volume, mut prior_windows) = (0i128, 0usize);
        let mut previous: Option<(i64, f64)> = None;
        for w in before {
            prior_volume += w.agg.volume;
            prior_windows += 1;
            if let Some(vwap) = w.vwap {
                previous = Some((w.start, vwap));
            }
        }
        let anomaly = |kind, f: Finding| Anomaly { is_final: true, ..anomalies::anomaly(symbol, start, end, kind, f) };
        if let Some(f) = anomalies::volume_spike(volume, prior_volume, prior_windows, &params.anomalies) {
            found.push(anomaly(AnomalyKind::VolumeSpike, f));
        }
        if let Some((p, vwap_p)) = previous {
            let vol_p = volatility_at(params, windows, p, &mut scratch);
            if let Some(f) = anomalies::price_jump(vwap, vwap_p, vol_p, &params.anomalies) {
                found.push(anomaly(AnomalyKind::PriceJump, f));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tradeflow_model::{Price, Qty, WindowSpec};
    use tradeflow_operators::AnomalyParams;
    use tradeflow_operators::reference::reference;

    /// A deterministic pseudo-random market: a few symbols, gaps, bursts, zero volumes.
    fn market(n: usize, seed: u64) -> Vec<(Symbol, i64, Price, Qty)> {
        let mut x = seed;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let symbols = ["AAPL", "BINANCE:BTCUSDT", "OANDA:EUR_USD"].map(|s| Symbol::parse(s).unwrap());
        let mut ts = 1_700_000_000_000i64;
        (0..n)
            .map(|_| {
                ts += (next() % 900) as i64 + if next() % 50 == 0 { 20_000 } else { 0 };
                let symbol = symbols[(next() % 3) as usize].clone();
                let price = Price(10_000_000_000 + (next() % 500_000_000) as i64);
                let volume = Qty(if next() % 10 == 0 { 0 } else { (next() % 1_000_000_000) as i64 });
                (symbol, ts, price, volume)
            })
            .collect()
    }

    fn params(windows: WindowSpec) -> AnalyticsParams {
        AnalyticsParams {
            windows,
            volatility_windows: 4,
            anomalies: AnomalyParams { spike_factor: 1.5, baseline_windows: 3, min_history: 1, jump_sigma: 1.0 },
        }
    }

    #[test]
    fn equals_the_reference_bit_for_bit() {
        for windows in [WindowSpec::tumbling(5_000).unwrap(), WindowSpec::hopping(6_000, 2_000).unwrap()] {
            let params = params(windows);
            let trades = market(3_000, 7);
            let mut panes = Panes::new(params);
            for (s, ts, p, v) in &trades {
                panes.add(s, *ts, *p, *v);
            }
            let (mut metrics, mut found) = panes.rows(i64::MIN / 2, i64::MAX / 2);
            let (mut want_metrics, mut want_found) = reference(&trades, &params);
            metrics.sort();
            found.sort();
            want_metrics.sort();
            want_found.sort();
            assert_eq!(metrics, want_metrics, "{windows:?}");
            assert!(!want_found.is_empty(), "the market should have anomalies");
            assert_eq!(found, want_found, "{windows:?}");
        }
    }

    #[test]
    fn a_range_with_its_reach_read_before_it_gives_the_same_rows() {
        let params = params(WindowSpec::tumbling(5_000).unwrap());
        let trades = market(3_000, 11);
        let (all, all_found) = reference(&trades, &params);
        let (from, to) = (trades[1_000].1, trades[2_000].1);
        let mut panes = Panes::new(params);
        for (s, ts, p, v) in trades.iter().filter(|t| t.1 >= from - reach(&params) && t.1 < to + 5_000) {
            panes.add(s, *ts, *p, *v);
        }
        let (mut metrics, mut found) = panes.rows(from, to);
        metrics.sort();
        found.sort();
        let mut want: Vec<_> = all.into_iter().filter(|m| m.window_start >= from && m.window_start < to).collect();
        let mut want_found: Vec<_> =
            all_found.into_iter().filter(|a| a.window_start >= from && a.window_start < to).collect();
        want.sort();
        want_found.sort();
        assert!(!want.is_empty());
        assert_eq!(metrics, want);
        assert_eq!(found, want_found);
    }
}
