//! The dashboard's in-process state: recent windows and anomalies per symbol, fed by a
//! sink operator on every worker ([`super::feed`]), read by the page's event streams.
//!
//! The metrics and anomalies collections change by retraction and insertion: a row is
//! replaced by its new version, in either order within an epoch. A stored row is
//! replaced by any inserted one and removed only by the retraction of exactly that row,
//! so either order leaves the newest version. Windows older than [`KEEP_WINDOWS`]
//! slides behind a symbol's newest window are dropped, so memory stays flat over an
//! unbounded run.
//!
//! Updates are coalesced: changed windows are remembered, and every [`TICK`] the
//! publisher turns what changed into one [`Tick`] for every connected page, whatever the
//! rate of trades. A page subscribes to one symbol: its stream sends a snapshot of that
//! symbol first, then each tick's changes to it, the recent anomalies when they changed,
//! and the health panel.

use super::health::Health;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::broadcast;
use tradeflow_model::metrics::{Gauge, Histogram, end_to_end_latency, registry};
use tradeflow_model::{Anomaly, AnomalyKind, Symbol, Time, WindowMetrics};

/// How often changes are pushed to the pages.
pub const TICK: Duration = Duration::from_millis(200);
/// Windows (slides) kept per symbol behind its newest one.
pub const KEEP_WINDOWS: i64 = 720;
/// Anomalies in the recent-anomalies table.
pub const RECENT_ANOMALIES: usize = 100;
/// Ticks a slow page may fall behind before it gets a fresh snapshot instead.
const BACKLOG: usize = 64;

/// What the page shows about the run, fixed at start.
#[derive(Clone, Debug, Serialize)]
pub struct RunInfo {
    /// Window size, ms.
    pub window_ms: i64,
    /// Slide between window starts, ms.
    pub slide_ms: i64,
    /// This process's index.
    pub process: usize,
    /// Number of processes (each serves its own workers' symbols).
    pub processes: usize,
    /// Worker threads of this process.
    pub workers: usize,
    /// The `source` label of each source.
    pub sources: Vec<String>,
    /// tradeflow's version.
    pub version: &'static str,
}

#[derive(Default)]
struct SymbolSeries {
    windows: BTreeMap<i64, WindowMetrics>,
    anomalies: BTreeMap<(i64, AnomalyKind), Anomaly>,
}

impl SymbolSeries {
    /// Drops what is more than [`KEEP_WINDOWS`] slides behind the newest window.
    fn trim(&mut self, slide_ms: i64) {
        let Some(&newest) = self.windows.keys().next_back() else { return };
        let oldest = newest.saturating_sub(KEEP_WINDOWS * slide_ms);
        if self.windows.first_key_value().is_some_and(|(start, _)| *start < oldest) {
            self.windows = self.windows.split_off(&oldest);
        }
        if self.anomalies.first_key_value().is_some_and(|((start, _), _)| *start < oldest) {
            self.anomalies = self.anomalies.split_off(&(oldest, AnomalyKind::VolumeSpike));
        }
    }

    fn point(&self, start: i64) -> Option<Point> {
        let row = self.windows.get(&start)?;
        let marks = self.anomalies.range((start, AnomalyKind::VolumeSpike)..=(start, AnomalyKind::PriceJump));
        let anomalies = marks.fold(0, |bits, ((_, kind), _)| bits | kind_bit(*kind));
        Some(Point::of(row, anomalies))
    }
}

fn kind_bit(kind: AnomalyKind) -> u8 {
    match kind {
        AnomalyKind::VolumeSpike => 1,
        AnomalyKind::PriceJump => 2,
    }
}

/// One window on the charts: `[start ms, open, high, low, close, vwap, volume, trades,
/// final (0/1), anomalies (bit 1 volume spike, bit 2 price jump)]`.
#[derive(Serialize)]
struct Point(i64, f64, f64, f64, f64, Option<f64>, f64, u64, u8, u8);

impl Point {
    fn of(row: &WindowMetrics, anomalies: u8) -> Point {
        Point(
            row.window_start,
            row.open.to_f64(),
            row.max_price.to_f64(),
            row.min_price.to_f64(),
            row.close.to_f64(),
            row.vwap.map(|v| v.0),
            tradeflow_operators::metrics::volume_f64(row.volume),
            row.trade_count,
            u8::from(row.is_final),
            anomalies,
        )
    }
}

/// One row of the anomalies table.
#[derive(Serialize)]
struct AnomalyRow<'a> {
    symbol: &'a str,
    window_start: i64,
    window_end: i64,
    kind: &'static str,
    severity: f64,
    observed: f64,
    baseline: f64,
    #[serde(rename = "final")]
    is_final: bool,
}

impl<'a> AnomalyRow<'a> {
    fn of(a: &'a Anomaly) -> Self {
        AnomalyRow {
            symbol: a.symbol.as_str(),
            window_start: a.window_start,
            window_end: a.window_end,
            kind: a.kind.as_str(),
            severity: a.severity.0,
            observed: a.observed.0,
            baseline: a.baseline.0,
            is_final: a.is_final,
        }
    }
}

#[derive(Default)]
struct Book {
    symbols: BTreeMap<Symbol, SymbolSeries>,
    /// Windows changed since the last tick, by symbol.
    changed: BTreeMap<Symbol, BTreeSet<i64>>,
    symbols_changed: bool,
    anomalies_changed: bool,
    /// Epochs whose changes the next tick publishes.
    epochs: BTreeSet<Time>,
}

/// What one tick publishes, shared by every page's stream.
pub struct Tick {
    seq: u64,
    health: String,
    /// The symbol list, when it changed.
    symbols: Option<String>,
    /// The recent anomalies, when they changed.
    anomalies: Option<String>,
    /// Changed windows by symbol, as a JSON array of points.
    points: HashMap<Symbol, String>,
}

impl Tick {
    /// The server-sent event of this tick for a page showing `symbol`.
    pub fn event_for(&self, symbol: Option<&Symbol>) -> String {
        let points = symbol.and_then(|s| self.points.get(s)).map_or("[]", String::as_str);
        let mut out = String::with_capacity(self.health.len() + points.len() + 128);
        let _ = write!(
            out,
            "event: update\ndata: {{\"seq\":{},\"health\":{},\"symbols\":{},\"anomalies\":{},\"points\":{}}}\n\n",
            self.seq,
            self.health,
            self.symbols.as_deref().unwrap_or("null"),
            self.anomalies.as_deref().unwrap_or("null"),
            points
        );
        out
    }

    /// True when this tick brought the symbol list (new symbols appeared).
    pub fn has_symbols(&self) -> bool {
        self.symbols.is_some()
    }
}

/// The dashboard of one process.
pub struct Dashboard {
    info: RunInfo,
    book: Mutex<Book>,
    health: Mutex<Health>,
    ticks: broadcast::Sender<Arc<Tick>>,
    seq: AtomicU64,
    latency: Histogram,
    clients: Gauge,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Dashboard {
    /// An empty dashboard of a run described by `info`, its health read from `health`.
    pub fn new(info: RunInfo, health: Health) -> Dashboard {
        Dashboard {
            info,
            book: Mutex::default(),
            health: Mutex::new(health),
            ticks: broadcast::channel(BACKLOG).0,
            seq: AtomicU64::new(0),
            latency: end_to_end_latency("dashboard"),
            clients: registry().gauge("tradeflow_dashboard_clients", "Dashboard pages connected now.", &[]),
        }
    }

    /// Applies one worker's updates (row, epoch, diff) of the metrics and anomalies
    /// collections.
    pub fn apply(&self, metrics: &[(WindowMetrics, Time, isize)], anomalies: &[(Anomaly, Time, isize)]) {
        let slide = self.info.slide_ms;
        let mut book = lock(&self.book);
        let book = &mut *book;
        for (row, time, diff) in metrics {
            let series = match book.symbols.get_mut(&row.symbol) {
                Some(series) => series,
                None => {
                    book.symbols_changed = true;
                    book.symbols.entry(row.symbol.clone()).or_default()
                }
            };
            if *diff > 0 {
                series.windows.insert(row.window_start, row.clone());
            } else if series.windows.get(&row.window_start) == Some(row) {
                series.windows.remove(&row.window_start);
            }
            book.changed.entry(row.symbol.clone()).or_default().insert(row.window_start);
            book.epochs.insert(*time);
        }
        for (row, time, diff) in anomalies {
            let Some(series) = book.symbols.get_mut(&row.symbol) else { continue };
            let key = (row.window_start, row.kind);
            if *diff > 0 {
                series.anomalies.insert(key, row.clone());
            } else if series.anomalies.get(&key) == Some(row) {
                series.anomalies.remove(&key);
            }
            book.changed.entry(row.symbol.clone()).or_default().insert(row.window_start);
            book.anomalies_changed = true;
            book.epochs.insert(*time);
        }
        for symbol in book.changed.keys() {
            if let Some(series) = book.symbols.get_mut(symbol) {
                series.trim(slide);
            }
        }
    }

    /// Takes what changed since the last tick, records its end-to-end latency, and
    /// publishes it to every connected page.
    pub fn publish(&self) {
        let tick = self.tick();
        let _ = self.ticks.send(Arc::new(tick));
    }

    fn tick(&self) -> Tick {
        let health = self.health_json();
        let mut book = lock(&self.book);
        let changed = std::mem::take(&mut book.changed);
        let mut points = HashMap::with_capacity(changed.len());
        for (symbol, starts) in changed {
            let Some(series) = book.symbols.get(&symbol) else { continue };
            let list: Vec<Point> = starts.into_iter().filter_map(|start| series.point(start)).collect();
            points.insert(symbol, serde_json::to_string(&list).unwrap_or_else(|_| "[]".into()));
        }
        let symbols = std::mem::take(&mut book.symbols_changed).then(|| symbols_json(&book));
        let anomalies = std::mem::take(&mut book.anomalies_changed).then(|| recent_anomalies_json(&book));
        let epochs = std::mem::take(&mut book.epochs);
        drop(book);
        let now = tradeflow_sources::driver::epoch_now();
        for epoch in epochs {
            self.latency.observe(now.saturating_sub(epoch) as f64 / 1000.0);
        }
        Tick { seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1, health, symbols, anomalies, points }
    }

    /// A new page's subscription to the ticks.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Tick>> {
        self.ticks.subscribe()
    }

    /// Counts a connected page while the guard lives.
    pub fn client(self: &Arc<Self>) -> ClientGuard {
        self.clients.add(1.0);
        ClientGuard(self.clients.clone())
    }

    /// `requested` if it has data, else the first symbol with data; `None` before any.
    pub fn pick_symbol(&self, requested: Option<&str>) -> Option<Symbol> {
        let book = lock(&self.book);
        requested
            .and_then(|r| book.symbols.keys().find(|s| s.as_str() == r))
            .or_else(|| book.symbols.keys().next())
            .cloned()
    }

    /// The snapshot event a page starts from: run info, symbols, every kept window of
    /// `symbol`, the recent anomalies and the health panel.
    pub fn snapshot_event(&self, symbol: Option<&Symbol>) -> String {
        format!("event: snapshot\ndata: {}\n\n", self.snapshot_json(symbol))
    }

    /// The snapshot as JSON (also `/api/snapshot`).
    pub fn snapshot_json(&self, symbol: Option<&Symbol>) -> String {
        let health = self.health_json();
        let book = lock(&self.book);
        let points: Vec<Point> = symbol
            .and_then(|s| book.symbols.get(s))
            .map(|series| series.windows.keys().filter_map(|start| series.point(*start)).collect())
            .unwrap_or_default();
        format!(
            "{{\"seq\":{},\"info\":{},\"symbol\":{},\"symbols\":{},\"anomalies\":{},\"points\":{},\"health\":{}}}",
            self.seq.load(Ordering::Relaxed),
            serde_json::to_string(&self.info).unwrap_or_else(|_| "null".into()),
            serde_json::to_string(&symbol.map(Symbol::as_str)).unwrap_or_else(|_| "null".into()),
            symbols_json(&book),
            recent_anomalies_json(&book),
            serde_json::to_string(&points).unwrap_or_else(|_| "[]".into()),
            health
        )
    }

    fn health_json(&self) -> String {
        lock(&self.health).json()
    }
}

/// Decrements the connected-pages gauge when dropped.
pub struct ClientGuard(Gauge);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.add(-1.0);
    }
}

fn symbols_json(book: &Book) -> String {
    let names: Vec<&str> = book.symbols.keys().map(Symbol::as_str).collect();
    serde_json::to_string(&names).unwrap_or_else(|_| "[]".into())
}

/// The newest [`RECENT_ANOMALIES`] anomalies over all symbols, newest window first.
fn recent_anomalies_json(book: &Book) -> String {
    let mut recent: Vec<&Anomaly> =
        book.symbols.values().flat_map(|s| s.anomalies.values().rev().take(RECENT_ANOMALIES)).collect();
    recent.sort_by(|a, b| b.window_start.cmp(&a.window_start).then_with(|| a.symbol.cmp(&b.symbol)));
    recent.truncate(RECENT_ANOMALIES);
    let rows: Vec<AnomalyRow<'_>> = recent.into_iter().map(AnomalyRow::of).collect();
    serde_json::to_string(&rows).unwrap_or_else(|_| "[]".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tradeflow_model::{F64, Price};

    fn info() -> RunInfo {
        RunInfo {
            window_ms: 1000,
            slide_ms: 1000,
            process: 0,
            processes: 1,
            workers: 1,
            sources: vec!["sim".into()],
            version: "test",
        }
    }

    fn row(symbol: &str, start: i64, count: u64, is_final: bool) -> WindowMetrics {
        let p = Price::from_f64(100.0 + count as f64);
        WindowMetrics {
            symbol: Symbol::parse(symbol).unwrap(),
            window_start: start,
            window_end: start + 1000,
            trade_count: count,
            volume: count as i128 * 100_000_000,
            vwap: Some(F64(p.to_f64())),
            min_price: p,
            max_price: p,
            avg_price: F64(p.to_f64()),
            open: p,
            close: p,
            volatility: None,
            is_final,
        }
    }

    fn anomaly(symbol: &str, start: i64, severity: f64) -> Anomaly {
        Anomaly {
            symbol: Symbol::parse(symbol).unwrap(),
            window_start: start,
            window_end: start + 1000,
            kind: AnomalyKind::VolumeSpike,
            severity: F64(severity),
            detected_at: start + 1000,
            observed: F64(10.0),
            baseline: F64(1.0),
            is_final: false,
        }
    }

    fn dashboard() -> Dashboard {
        Dashboard::new(info(), Health::for_tests())
    }

    #[test]
    fn a_replaced_row_keeps_the_newest_version_in_either_order() {
        let d = dashboard();
        d.apply(&[(row("AAPL", 0, 1, false), 1, 1)], &[]);
        // Insertion first, then the retraction of the old version.
        d.apply(&[(row("AAPL", 0, 2, false), 2, 1), (row("AAPL", 0, 1, false), 2, -1)], &[]);
        // Retraction first, then the insertion.
        d.apply(&[(row("AAPL", 0, 2, false), 3, -1), (row("AAPL", 0, 3, true), 3, 1)], &[]);
        let book = lock(&d.book);
        let stored = &book.symbols[&Symbol::parse("AAPL").unwrap()].windows[&0];
        assert_eq!((stored.trade_count, stored.is_final), (3, true));
    }

    #[test]
    fn ticks_carry_only_what_changed_and_snapshots_everything() {
        let d = dashboard();
        let observed = d.latency.count();
        d.apply(&[(row("AAPL", 0, 1, false), 1, 1), (row("MSFT", 0, 1, false), 1, 1)], &[]);
        d.apply(&[], &[(anomaly("AAPL", 0, 5.0), 1, 1)]);
        let aapl = Symbol::parse("AAPL").unwrap();
        let tick = d.tick();
        assert!(tick.has_symbols());
        let event = tick.event_for(Some(&aapl));
        assert!(event.starts_with("event: update\ndata: {\"seq\":1,"), "{event}");
        assert!(event.contains("\"symbols\":[\"AAPL\",\"MSFT\"]"), "{event}");
        assert!(event.contains("\"kind\":\"volume_spike\""), "{event}");
        // The spike marks its window (bit 1).
        assert!(event.contains("\"points\":[[0,101.0,101.0,101.0,101.0,101.0,1.0,1,0,1]]"), "{event}");
        let quiet = d.tick().event_for(Some(&aapl));
        assert!(quiet.contains("\"symbols\":null,\"anomalies\":null,\"points\":[]"), "{quiet}");
        // A retracted anomaly leaves the table.
        d.apply(&[], &[(anomaly("AAPL", 0, 5.0), 2, -1)]);
        assert!(d.tick().event_for(Some(&aapl)).contains("\"anomalies\":[]"));
        let snapshot = d.snapshot_json(Some(&aapl));
        let parsed: serde_json::Value = serde_json::from_str(&snapshot).unwrap();
        assert_eq!(parsed["symbol"], "AAPL");
        assert_eq!(parsed["points"].as_array().unwrap().len(), 1);
        assert_eq!(parsed["info"]["window_ms"], 1000);
        assert_eq!(d.latency.count() - observed, 2, "one observation per epoch published");
    }

    #[test]
    fn old_windows_are_dropped() {
        let d = dashboard();
        let updates: Vec<_> = (0..KEEP_WINDOWS + 10).map(|i| (row("AAPL", i * 1000, 1, true), 1, 1)).collect();
        d.apply(&updates, &[]);
        let book = lock(&d.book);
        let windows = &book.symbols[&Symbol::parse("AAPL").unwrap()].windows;
        assert_eq!(windows.len() as i64, KEEP_WINDOWS + 1);
        assert_eq!(*windows.keys().next().unwrap(), 9_000);
    }

    #[test]
    fn picks_the_requested_symbol_or_the_first() {
        let d = dashboard();
        assert_eq!(d.pick_symbol(Some("AAPL")), None);
        d.apply(&[(row("MSFT", 0, 1, false), 1, 1), (row("AAPL", 0, 1, false), 1, 1)], &[]);
        assert_eq!(d.pick_symbol(Some("MSFT")).unwrap().as_str(), "MSFT");
        assert_eq!(d.pick_symbol(Some("nope")).unwrap().as_str(), "AAPL");
        assert_eq!(d.pick_symbol(None).unwrap().as_str(), "AAPL");
    }
}
