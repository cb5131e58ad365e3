//! A small Prometheus metrics registry shared by every crate of a process.
//!
//! Counters, gauges and histograms with labels, cheap to update from hot paths (one
//! atomic operation; look the handle up once and keep it), rendered in the Prometheus
//! text exposition format (0.0.4) by whoever serves `/metrics`. Names and labels follow
//! Prometheus conventions: `tradeflow_` prefix, base units (`_seconds`, `_bytes`),
//! `_total` for counters.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// The process-wide registry.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::default)
}

/// Label pairs, sorted by name, as rendered.
type Labels = Vec<(String, String)>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Debug)]
struct Family {
    help: String,
    kind: Kind,
    series: BTreeMap<Labels, Series>,
}

#[derive(Clone)]
enum Series {
    Value(Arc<AtomicU64>),
    Histogram(Arc<HistogramCore>),
    /// A value read when rendered (a counter or gauge kept elsewhere).
    Func(Arc<ValueFn>),
}

/// How a [`Registry::counter_fn`] or [`Registry::gauge_fn`] series reads its value.
type ValueFn = dyn Fn() -> f64 + Send + Sync;

impl std::fmt::Debug for Series {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Series::Value(v) => f.debug_tuple("Value").field(v).finish(),
            Series::Histogram(h) => f.debug_tuple("Histogram").field(h).finish(),
            Series::Func(_) => f.write_str("Func"),
        }
    }
}

/// A set of metric families.
#[derive(Debug, Default)]
pub struct Registry {
    families: Mutex<BTreeMap<String, Family>>,
}

/// A monotonically increasing count.
#[derive(Clone, Debug)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// The current count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (stored as `f64`).
#[derive(Clone, Debug)]
pub struct Gauge(Arc<AtomicU64>);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }
    /// Adds `delta` (may be negative).
    pub fn add(&self, delta: f64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| Some((f64::from_bits(bits) + delta).to_bits()));
    }
    /// The current value.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

#[derive(Debug)]
struct HistogramCore {
    bounds: Vec<f64>,
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum: AtomicU64,
}

/// A distribution of observations in fixed buckets.
#[derive(Clone, Debug)]
pub struct Histogram(Arc<HistogramCore>);

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, value: f64) {
        let core = &self.0;
        let i = core.bounds.partition_point(|b| *b < value);
        if let Some(bucket) = core.buckets.get(i) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        core.count.fetch_add(1, Ordering::Relaxed);
        let _ = core
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| Some((f64::from_bits(bits) + value).to_bits()));
    }
    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.0.count.load(Ordering::Relaxed)
    }
    /// The smallest bucket bound below which at least `q` (0..=1) of the observations lie
    /// (`+Inf` if beyond the last bound; `NaN` with no observations).
    pub fn quantile(&self, q: f64) -> f64 {
        let total = self.count();
        if total == 0 {
            return f64::NAN;
        }
        let target = (q * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, bucket) in self.0.buckets.iter().enumerate() {
            seen += bucket.load(Ordering::Relaxed);
            if seen >= target {
                return self.0.bounds.get(i).copied().unwrap_or(f64::INFINITY);
            }
        }
        f64::INFINITY
    }
}

/// Latency buckets in seconds, 0.5 ms to 60 s.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// What every sink records, labelled `sink="<name>"` (`lake`, `postgres`).
#[derive(Clone, Debug)]
pub struct SinkMetrics {
    /// `tradeflow_sink_rows_total`: rows durably written (uploaded in a lake object,
    /// committed in a PostgreSQL transaction).
    pub rows: Counter,
    /// `tradeflow_sink_errors_total`: failed attempts (each retry counts; a failure the
    /// sink gives up on counts once more).
    pub errors: Counter,
    /// `tradeflow_sink_commit_seconds`: how long one commit took (a lake object's
    /// upload, a PostgreSQL transaction).
    pub commit_seconds: Histogram,
}

impl SinkMetrics {
    /// The series of `sink` in the process-wide registry (shared by every caller).
    pub fn of(sink: &str) -> SinkMetrics {
        let r = registry();
        let labels = [("sink", sink)];
        SinkMetrics {
            rows: r.counter("tradeflow_sink_rows_total", "Rows durably written by the sink.", &labels),
            errors: r.counter(
                "tradeflow_sink_errors_total",
                "Failed write attempts of the sink, retried or not.",
                &labels,
            ),
            commit_seconds: r.histogram(
                "tradeflow_sink_commit_seconds",
                "Duration of one commit: a lake object's upload, a PostgreSQL transaction.",
                &labels,
                LATENCY_BUCKETS,
            ),
        }
    }
}

/// `tradeflow_end_to_end_latency_seconds{sink}`: for each processing epoch that changed
/// a window row, the seconds from the epoch (the wall-clock millisecond at which the
/// trades of that epoch were read from their source) to the moment the changed row was
/// committed by PostgreSQL (`sink="postgres"`) or published to the dashboard's clients
/// (`sink="dashboard"`).
pub fn end_to_end_latency(sink: &str) -> Histogram {
    registry().histogram(
        "tradeflow_end_to_end_latency_seconds",
        "Seconds from the epoch a trade was read in to the commit (postgres) or publication (dashboard) of the window row it changed, per epoch.",
        &[("sink", sink)],
        LATENCY_BUCKETS,
    )
}

fn labels_of(labels: &[(&str, &str)]) -> Labels {
    let mut labels: Labels = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    labels.sort();
    labels
}

impl Registry {
    /// Runs `f` on the series of family `name` (created with `help` and `kind` on first
    /// use), under the registry's lock.
    fn with_family<R>(
        &self,
        name: &str,
        help: &str,
        kind: Kind,
        f: impl FnOnce(&mut BTreeMap<Labels, Series>) -> R,
    ) -> R {
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let family = families.entry(name.to_owned()).or_insert_with(|| Family {
            help: help.to_owned(),
            kind,
            series: BTreeMap::new(),
        });
        debug_assert_eq!(family.kind, kind, "metric {name} registered with two kinds");
        f(&mut family.series)
    }

    fn series(
        &self,
        name: &str,
        help: &str,
        kind: Kind,
        labels: &[(&str, &str)],
        make: impl FnOnce() -> Series,
    ) -> Series {
        self.with_family(name, help, kind, |series| series.entry(labels_of(labels)).or_insert_with(make).clone())
    }

    /// The counter `name{labels}` (created at 0 on first use).
    pub fn counter(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Counter {
        match self.series(name, help, Kind::Counter, labels, || Series::Value(Arc::default())) {
            Series::Value(v) => Counter(v),
            Series::Histogram(_) | Series::Func(_) => Counter(Arc::default()),
        }
    }

    /// The gauge `name{labels}` (created at 0 on first use).
    pub fn gauge(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Gauge {
        match self.series(name, help, Kind::Gauge, labels, || Series::Value(Arc::new(AtomicU64::new(0f64.to_bits())))) {
            Series::Value(v) => Gauge(v),
            Series::Histogram(_) | Series::Func(_) => Gauge(Arc::default()),
        }
    }

    /// The counter `name{labels}` whose value `read` returns when rendered: for a count
    /// kept elsewhere (it must never decrease). Replaces an earlier series of that name
    /// and labels. `read` runs under the registry's lock: it must not use the registry.
    pub fn counter_fn(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        read: impl Fn() -> f64 + Send + Sync + 'static,
    ) {
        self.set_fn(name, help, Kind::Counter, labels, Arc::new(read));
    }

    /// The gauge `name{labels}` whose value `read` returns when rendered. Replaces an
    /// earlier series of that name and labels. `read` runs under the registry's lock: it
    /// must not use the registry.
    pub fn gauge_fn(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        read: impl Fn() -> f64 + Send + Sync + 'static,
    ) {
        self.set_fn(name, help, Kind::Gauge, labels, Arc::new(read));
    }

    fn set_fn(&self, name: &str, help: &str, kind: Kind, labels: &[(&str, &str)], read: Arc<ValueFn>) {
        self.with_family(name, help, kind, |series| series.insert(labels_of(labels), Series::Func(read)));
    }

    /// The histogram `name{labels}` with upper bounds `buckets` (ascending).
    pub fn histogram(&self, name: &str, help: &str, labels: &[(&str, &str)], buckets: &[f64]) -> Histogram {
        let make = || {
            Series::Histogram(Arc::new(HistogramCore {
                bounds: buckets.to_vec(),
                buckets: (0..=buckets.len()).map(|_| AtomicU64::new(0)).collect(),
                count: AtomicU64::new(0),
                sum: AtomicU64::new(0f64.to_bits()),
            }))
        };
        match self.series(name, help, Kind::Histogram, labels, make) {
            Series::Histogram(h) => Histogram(h),
            Series::Value(_) | Series::Func(_) => Histogram(Arc::new(HistogramCore {
                bounds: Vec::new(),
                buckets: vec![AtomicU64::new(0)],
                count: AtomicU64::new(0),
                sum: AtomicU64::new(0),
            })),
        }
    }

    /// Every metric in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        for (name, family) in families.iter() {
            let kind = match family.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
            };
            let _ = writeln!(out, "# HELP {name} {}", escape_help(&family.help));
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, series) in &family.series {
                match series {
                    Series::Value(v) => {
                        let value = v.load(Ordering::Relaxed);
                        let value = if family.kind == Kind::Counter { value as f64 } else { f64::from_bits(value) };
                        let _ = writeln!(out, "{name}{} {}", render_labels(labels, None), number(value));
                    }
                    Series::Func(read) => {
                        let _ = writeln!(out, "{name}{} {}", render_labels(labels, None), number(read()));
                    }
                    Series::Histogram(h) => {
                        let mut cumulative = 0;
                        for (i, bucket) in h.buckets.iter().enumerate() {
                            cumulative += bucket.load(Ordering::Relaxed);
                            let le = h.bounds.get(i).map_or("+Inf".to_owned(), |b| number(*b));
                            let _ = writeln!(out, "{name}_bucket{} {cumulative}", render_labels(labels, Some(&le)));
                        }
                        let _ = writeln!(
                            out,
                            "{name}_sum{} {}",
                            render_labels(labels, None),
                            number(f64::from_bits(h.sum.load(Ordering::Relaxed)))
                        );
                        let _ = writeln!(
                            out,
                            "{name}_count{} {}",
                            render_labels(labels, None),
                            h.count.load(Ordering::Relaxed)
                        );
                    }
                }
            }
        }
        out
    }
}

fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value == f64::INFINITY {
        "+Inf".into()
    } else if value == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{value}")
    }
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

fn render_labels(labels: &Labels, le: Option<&str>) -> String {
    if labels.is_empty() && le.is_none() {
        return String::new();
    }
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    format!("{{{}}}", parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_text_format() {
        let r = Registry::default();
        r.counter("tradeflow_trades_total", "Trades accepted.", &[("source", "file:///x \"y\"")]).add(3);
        r.gauge("tradeflow_open_windows", "Open windows.", &[]).set(2.5);
        let h = r.histogram("tradeflow_latency_seconds", "Latency.", &[], &[0.1, 1.0]);
        h.observe(0.05);
        h.observe(0.5);
        h.observe(5.0);
        let text = r.render();
        assert!(
            text.contains(
                "# TYPE tradeflow_trades_total counter\ntradeflow_trades_total{source=\"file:///x \\\"y\\\"\"} 3\n"
            ),
            "{text}"
        );
        assert!(text.contains("tradeflow_open_windows 2.5\n"), "{text}");
        assert!(text.contains("tradeflow_latency_seconds_bucket{le=\"0.1\"} 1\n"), "{text}");
        assert!(text.contains("tradeflow_latency_seconds_bucket{le=\"1\"} 2\n"), "{text}");
        assert!(text.contains("tradeflow_latency_seconds_bucket{le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("tradeflow_latency_seconds_count 3\n"), "{text}");
        assert_eq!(h.quantile(0.5), 1.0);
        assert_eq!(h.quantile(1.0), f64::INFINITY);
    }

    #[test]
    fn function_series_are_read_when_rendered() {
        let r = Registry::default();
        let n = Arc::new(AtomicU64::new(7));
        let read = n.clone();
        r.counter_fn("tradeflow_windows_finalized_total", "Windows.", &[], move || read.load(Ordering::Relaxed) as f64);
        r.gauge_fn("tradeflow_watermark_lag_seconds", "Lag.", &[("process", "0")], || 1.5);
        n.store(9, Ordering::Relaxed);
        let text = r.render();
        assert!(
            text.contains("# TYPE tradeflow_windows_finalized_total counter\ntradeflow_windows_finalized_total 9\n"),
            "{text}"
        );
        assert!(text.contains("tradeflow_watermark_lag_seconds{process=\"0\"} 1.5\n"), "{text}");
    }

    #[test]
    fn the_same_series_is_shared() {
        let r = Registry::default();
        r.counter("c_total", "c", &[("a", "1")]).inc();
        r.counter("c_total", "c", &[("a", "1")]).inc();
        assert_eq!(r.counter("c_total", "c", &[("a", "1")]).get(), 2);
        assert_eq!(r.counter("c_total", "c", &[("a", "2")]).get(), 0);
    }
}
