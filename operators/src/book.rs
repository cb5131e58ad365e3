//! The window book: one worker's live windows, their rows, finality and eviction.
//!
//! Background: the book holds, for every symbol this worker owns, the exact aggregate
//! of each window that is open or still needed as history, and the metrics and anomaly
//! rows it last emitted for it. It is the state behind [`crate::analytics`], kept free
//! of timely so it can be tested against a from-scratch recomputation.
//!
//! Semantics, per epoch, in this order:
//! 1. [`WindowBook::apply`] adds a pane aggregate to the `W/S` windows containing the pane
//!    and marks the range of windows touched as dirty.
//! 2. [`WindowBook::end_epoch`] recomputes the rows of every dirty window and of the
//!    windows after it that read it (volatility reads `K_v` windows back, a price jump
//!    reads the previous window's volatility, a spike `K_b` windows back), emitting a
//!    retraction of each old row and an insertion of each new one; then, with the
//!    pipeline watermark, it finalises every window whose end the watermark has reached
//!    (the provisional row is replaced by the same row with `is_final`), and evicts
//!    windows that no window still to be finalised can read.
//!
//! A window `c` is read by windows up to `c + (K_b + K_v − 1)·S`; those are all final
//! once the watermark reaches `c + (K_b + K_v − 1)·S + W`, and new windows start after
//! the watermark minus `W`, so `c` is evicted then. State is bounded by the windows in
//! that horizon: memory stays flat over an unbounded run.

use crate::agg::WindowAgg;
use crate::anomalies::{self, AnomalyParams, Finding};
use crate::metrics::base_metrics;
use crate::volatility::{Volatility, rolling_volatility};
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use tradeflow_model::{Anomaly, AnomalyKind, F64, Symbol, WindowMetrics, WindowSpec};

/// What the analytics compute and how.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct AnalyticsParams {
    /// Window size and slide.
    pub windows: WindowSpec,
    /// K_v: how many windows the rolling volatility spans.
    pub volatility_windows: usize,
    /// Anomaly rule parameters (K_b is `anomalies.baseline_windows`).
    pub anomalies: AnomalyParams,
}

/// Row changes produced by the book, to be emitted as differential updates.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Changes {
    /// Window metrics rows with +1 (insert) or −1 (retract).
    pub metrics: Vec<(WindowMetrics, isize)>,
    /// Anomaly rows with +1 or −1.
    pub anomalies: Vec<(Anomaly, isize)>,
}

impl Changes {
    /// True when there is nothing to emit.
    pub fn is_empty(&self) -> bool {
        self.metrics.is_empty() && self.anomalies.is_empty()
    }
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Entry {
    agg: WindowAgg,
    vwap: Option<f64>,
    row: Option<WindowMetrics>,
    anomalies: [Option<Anomaly>; 2],
    is_final: bool,
}

#[derive(Debug, Default)]
struct SymbolWindows {
    /// Boxed: a B-tree node has room for 11 entries, so unboxed a symbol with one open
    /// window would cost eleven windows' bytes (5 KB; 0.5 GB for 100 000 symbols).
    windows: BTreeMap<i64, Box<Entry>>,
    /// The oldest and newest window changed since the last refresh.
    dirty: Option<(i64, i64)>,
}

/// One worker's windows (see the module documentation).
#[derive(Debug)]
pub struct WindowBook {
    params: AnalyticsParams,
    symbols: FxHashMap<Symbol, SymbolWindows>,
    dirty: Vec<Symbol>,
    to_finalize: BTreeMap<i64, Vec<(Symbol, i64)>>,
    to_evict: BTreeMap<i64, Vec<(Symbol, i64)>>,
    watermark: i64,
    open_windows: usize,
    dropped_late: u64,
    scratch: Vec<f64>,
}

impl WindowBook {
    /// An empty book.
    pub fn new(params: AnalyticsParams) -> Self {
        WindowBook {
            params,
            symbols: FxHashMap::default(),
            dirty: Vec::new(),
            to_finalize: BTreeMap::new(),
            to_evict: BTreeMap::new(),
            watermark: i64::MIN,
            open_windows: 0,
            dropped_late: 0,
            scratch: Vec::new(),
        }
    }

    /// The parameters.
    pub fn params(&self) -> &AnalyticsParams {
        &self.params
    }

    /// Windows that are not final yet.
    pub fn open_windows(&self) -> usize {
        self.open_windows
    }

    /// Windows held in memory (open, or final and still needed as history).
    pub fn held_windows(&self) -> usize {
        self.symbols.values().map(|s| s.windows.len()).sum()
    }

    /// Pane aggregates that arrived for windows already final, and were dropped. Always
    /// 0 when sources honour their watermark reports.
    pub fn dropped_late(&self) -> u64 {
        self.dropped_late
    }

    /// The watermark the book has finalised up to.
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// The book's windows and watermark, for a checkpoint: taken between epochs (nothing
    /// dirty), restored by [`WindowBook::restore`].
    pub fn snapshot(&self) -> String {
        assert!(self.dirty.is_empty(), "a window book is saved between epochs");
        let mut symbols: Vec<(&Symbol, Vec<(&i64, &Entry)>)> =
            self.symbols.iter().map(|(s, w)| (s, w.windows.iter().map(|(s, e)| (s, &**e)).collect())).collect();
        symbols.sort_by(|a, b| a.0.cmp(b.0));
        String::from_utf8(tradeflow_model::checkpoint::to_json(&(self.watermark, symbols))).expect("JSON is UTF-8")
    }

    /// A book as [`WindowBook::snapshot`] saved it.
    pub fn restore(params: AnalyticsParams, state: &str) -> Result<Self, String> {
        type Saved = (i64, Vec<(Symbol, Vec<(i64, Entry)>)>);
        let (watermark, symbols): Saved = tradeflow_model::checkpoint::from_json("the window book", state.as_bytes())?;
        let mut book = WindowBook::new(params);
        book.watermark = watermark;
        let spec = params.windows;
        let evict_after = book.reach() + spec.size();
        for (symbol, windows) in symbols {
            let mut held = SymbolWindows::default();
            for (start, entry) in windows {
                if !entry.is_final {
                    book.to_finalize.entry(spec.end_of(start)).or_default().push((symbol.clone(), start));
                    book.open_windows += 1;
                }
                book.to_evict.entry(start + evict_after).or_default().push((symbol.clone(), start));
                held.windows.insert(start, Box::new(entry));
            }
            book.symbols.insert(symbol, held);
        }
        Ok(book)
    }

    /// Distance from a window's start to the last window that reads it.
    fn reach(&self) -> i64 {
        let slides = (self.params.anomalies.baseline_windows + self.params.volatility_windows).saturating_sub(1);
        slides as i64 * self.params.windows.slide()
    }

    /// Adds the aggregate of a pane of `symbol` to every window containing it.
    pub fn apply(&mut self, symbol: &Symbol, pane_start: i64, agg: &WindowAgg) {
        let spec = self.params.windows;
        let evict_after = self.reach() + spec.size();
        let watermark = self.watermark;
        if !self.symbols.contains_key(symbol) {
            self.symbols.insert(symbol.clone(), SymbolWindows::default());
        }
        let book = self.symbols.get_mut(symbol).expect("inserted above");
        for start in spec.windows_of_pane(pane_start) {
            let end = spec.end_of(start);
            match book.windows.get_mut(&start) {
                Some(entry) if entry.is_final => {
                    self.dropped_late += 1;
                    continue;
                }
                Some(entry) => entry.agg.merge(agg),
                None if end <= watermark => {
                    self.dropped_late += 1;
                    continue;
                }
                None => {
                    book.windows.insert(
                        start,
                        Box::new(Entry {
                            agg: agg.clone(),
                            vwap: None,
                            row: None,
                            anomalies: [None, None],
                            is_final: false,
                        }),
                    );
                    self.to_finalize.entry(end).or_default().push((symbol.clone(), start));
                    self.to_evict.entry(start + evict_after).or_default().push((symbol.clone(), start));
                    self.open_windows += 1;
                }
            }
            book.dirty = match book.dirty {
                None => {
                    self.dirty.push(symbol.clone());
                    Some((start, start))
                }
                Some((from, to)) => Some((from.min(start), to.max(start))),
            };
        }
    }

    /// Ends an epoch: recomputes dirty rows, then finalises and evicts up to `watermark`.
    pub fn end_epoch(&mut self, watermark: i64, out: &mut Changes) {
        self.refresh(out);
        if watermark > self.watermark {
            self.watermark = watermark;
            self.finalize(out);
            self.evict();
        }
    }

    /// Recomputes the rows of dirty windows and of the windows that read them.
    fn refresh(&mut self, out: &mut Changes) {
        let reach = self.reach();
        for symbol in std::mem::take(&mut self.dirty) {
            let Some(book) = self.symbols.get_mut(&symbol) else {
                continue;
            };
            let Some((from, to)) = book.dirty.take() else {
                continue;
            };
            let starts: Vec<i64> = book.windows.range(from..=to.saturating_add(reach)).map(|(s, _)| *s).collect();
            for start in &starts {
                let entry = book.windows.get_mut(start).expect("listed above");
                entry.vwap = base_metrics(&entry.agg).vwap;
            }
            for start in starts {
                let (row, found) = derive(&self.params, &symbol, &book.windows, start, &mut self.scratch);
                let entry = book.windows.get_mut(&start).expect("listed above");
                replace_row(entry, row, found, out);
            }
        }
    }

    /// Marks every window whose end the watermark has reached as final.
    fn finalize(&mut self, out: &mut Changes) {
        while let Some(entry) = self.to_finalize.first_entry() {
            if *entry.key() > self.watermark {
                break;
            }
            for (symbol, start) in entry.remove() {
                let Some(entry) = self.symbols.get_mut(&symbol).and_then(|b| b.windows.get_mut(&start)) else {
                    continue;
                };
                entry.is_final = true;
                self.open_windows -= 1;
                if let Some(row) = entry.row.take() {
                    out.metrics.push((row.clone(), -1));
                    let row = WindowMetrics { is_final: true, ..row };
                    out.metrics.push((row.clone(), 1));
                    entry.row = Some(row);
                }
                for slot in entry.anomalies.iter_mut().flatten() {
                    out.anomalies.push((slot.clone(), -1));
                    slot.is_final = true;
                    out.anomalies.push((slot.clone(), 1));
                }
            }
        }
    }

    /// Drops windows no future window can read.
    fn evict(&mut self) {
        while let Some(entry) = self.to_evict.first_entry() {
            if *entry.key() > self.watermark {
                break;
            }
            for (symbol, start) in entry.remove() {
                if let Some(book) = self.symbols.get_mut(&symbol) {
                    book.windows.remove(&start);
                    if book.windows.is_empty() && book.dirty.is_none() {
                        self.symbols.remove(&symbol);
                    }
                }
            }
        }
    }
}

/// Replaces an entry's rows by freshly derived ones, emitting the difference.
fn replace_row(entry: &mut Entry, mut row: WindowMetrics, found: [Option<Anomaly>; 2], out: &mut Changes) {
    row.is_final = entry.is_final;
    if entry.row.as_ref() != Some(&row) {
        if let Some(old) = entry.row.take() {
            out.metrics.push((old, -1));
        }
        out.metrics.push((row.clone(), 1));
        entry.row = Some(row);
    }
    for (slot, mut new) in entry.anomalies.iter_mut().zip(found) {
        if let Some(new) = new.as_mut() {
            new.is_final = entry.is_final;
        }
        if *slot != new {
            if let Some(old) = slot.take() {
                out.anomalies.push((old, -1));
            }
            if let Some(new) = new {
                out.anomalies.push((new.clone(), 1));
                *slot = Some(new);
            }
        }
    }
}

/// The vwaps of the present windows in `[start − (K_v − 1)·S, start]`, in order.
fn volatility_at(
    params: &AnalyticsParams,
    windows: &BTreeMap<i64, Box<Entry>>,
    start: i64,
    scratch: &mut Vec<f64>,
) -> Option<Volatility> {
    let span = (params.volatility_windows as i64 - 1) * params.windows.slide();
    scratch.clear();
    scratch.extend(windows.range(start - span..=start).filter_map(|(_, e)| e.vwap));
    rolling_volatility(scratch)
}

/// The metrics row and anomalies of the window at `start`, from the windows around it.
fn derive(
    params: &AnalyticsParams,
    symbol: &Symbol,
    windows: &BTreeMap<i64, Box<Entry>>,
    start: i64,
    scratch: &mut Vec<f64>,
) -> (WindowMetrics, [Option<Anomaly>; 2]) {
    let spec = params.windows;
    let entry = &windows[&start];
    let base = base_metrics(&entry.agg);
    let volatility = volatility_at(params, windows, start, scratch);
    let end = spec.end_of(start);
    let row = WindowMetrics {
        symbol: symbol.clone(),
        window_start: start,
        window_end: end,
        trade_count: base.trade_count,
        volume: base.volume,
        vwap: base.vwap.map(F64),
        min_price: base.min_price,
        max_price: base.max_price,
        avg_price: F64(base.avg_price),
        open: base.open,
        close: base.close,
        volatility: volatility.map(|v| F64(v.sigma)),
        is_final: false,
    };

    // The K_b windows before this one.
    let before = start - params.anomalies.baseline_windows as i64 * spec.slide()..start;
    let (mut prior_volume, mut prior_windows) = (0i128, 0usize);
    let mut previous: Option<(i64, f64)> = None;
    for (s, e) in windows.range(before) {
        prior_volume += e.agg.volume;
        prior_windows += 1;
        if let Some(vwap) = e.vwap {
            previous = Some((*s, vwap));
        }
    }
    let anomaly = |kind, f: Finding| Anomaly {
        symbol: symbol.clone(),
        window_start: start,
        window_end: end,
        kind,
        severity: F64(f.severity),
        detected_at: end,
        observed: F64(f.observed),
        baseline: F64(f.baseline),
        is_final: false,
    };
    let spike = anomalies::volume_spike(base.volume, prior_volume, prior_windows, &params.anomalies)
        .map(|f| anomaly(AnomalyKind::VolumeSpike, f));
    let jump = previous.and_then(|(p, vwap_p)| {
        let vol_p = volatility_at(params, windows, p, scratch);
        anomalies::price_jump(base.vwap, vwap_p, vol_p, &params.anomalies).map(|f| anomaly(AnomalyKind::PriceJump, f))
    });
    (row, [spike, jump])
}
