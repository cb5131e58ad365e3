//! The dashboard's health panel: throughput, watermark lag, rejects by reason, windows,
//! memory and the status of each sink, read from the run's counters.

use crate::metrics::watermark_lag_seconds;
use crate::stats::{RunStats, proc_status};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tradeflow_model::RejectReason;
use tradeflow_model::metrics::SinkMetrics;

/// Throughput is averaged over this much recent time.
const RATE_SPAN: Duration = Duration::from_secs(2);
/// A sink whose errors grew this recently shows as `retrying`.
const ERROR_SPAN: Duration = Duration::from_secs(30);

/// A sink as the health panel shows it.
pub struct SinkHealth {
    name: &'static str,
    target: String,
    metrics: SinkMetrics,
    errors_seen: u64,
    last_error: Option<Instant>,
}

impl SinkHealth {
    /// The sink `name` writing to `target` (shown as is: a lake URL, PostgreSQL's
    /// `user@host:port/database`; never anything holding a secret).
    pub fn new(name: &'static str, target: String) -> SinkHealth {
        SinkHealth { name, target, metrics: SinkMetrics::of(name), errors_seen: 0, last_error: None }
    }
}

/// The health panel's sources.
pub struct Health {
    stats: Arc<RunStats>,
    sinks: Vec<SinkHealth>,
    samples: VecDeque<(Instant, u64)>,
}

#[derive(Serialize)]
struct SinkJson<'a> {
    name: &'a str,
    target: &'a str,
    status: &'static str,
    rows: u64,
    errors: u64,
    commits: u64,
    commit_p50_ms: Option<f64>,
}

#[derive(Serialize)]
struct HealthJson<'a> {
    now: i64,
    uptime_s: f64,
    trades: u64,
    rate: f64,
    rejected: u64,
    rejects: BTreeMap<&'static str, u64>,
    watermark: Option<i64>,
    lag_s: Option<f64>,
    open_windows: i64,
    final_windows: u64,
    anomalies: u64,
    live_updates: u64,
    rss_bytes: u64,
    sinks: Vec<SinkJson<'a>>,
}

impl Health {
    /// The health of a run counting into `stats` and writing to `sinks`.
    pub fn new(stats: Arc<RunStats>, sinks: Vec<SinkHealth>) -> Health {
        Health { stats, sinks, samples: VecDeque::new() }
    }

    /// An empty health panel, for tests.
    #[cfg(test)]
    pub fn for_tests() -> Health {
        Health::new(Arc::default(), Vec::new())
    }

    /// The panel as JSON, now.
    pub fn json(&mut self) -> String {
        let now = Instant::now();
        let stats = &self.stats;
        let trades = stats.ingest.accepted.load(Ordering::Relaxed);
        self.samples.push_back((now, trades));
        while self.samples.len() > 2 && self.samples.front().is_some_and(|(t, _)| now.duration_since(*t) > RATE_SPAN) {
            self.samples.pop_front();
        }
        let rate = match (self.samples.front(), self.samples.back()) {
            (Some((t0, n0)), Some((t1, n1))) if t1 > t0 => (n1 - n0) as f64 / t1.duration_since(*t0).as_secs_f64(),
            _ => 0.0,
        };
        let rejects: BTreeMap<&'static str, u64> =
            RejectReason::ALL.iter().map(|r| (r.as_str(), stats.ingest.rejected(*r))).collect();
        let watermark = stats.watermark.load(Ordering::Relaxed);
        let sinks = self
            .sinks
            .iter_mut()
            .map(|sink| {
                let errors = sink.metrics.errors.get();
                if errors > sink.errors_seen {
                    sink.errors_seen = errors;
                    sink.last_error = Some(now);
                }
                let retrying = sink.last_error.is_some_and(|t| now.duration_since(t) < ERROR_SPAN);
                let commits = sink.metrics.commit_seconds.count();
                SinkJson {
                    name: sink.name,
                    target: &sink.target,
                    status: if retrying { "retrying" } else { "ok" },
                    rows: sink.metrics.rows.get(),
                    errors,
                    commits,
                    commit_p50_ms: (commits > 0).then(|| sink.metrics.commit_seconds.quantile(0.5) * 1000.0),
                }
            })
            .collect();
        let json = HealthJson {
            now: tradeflow_sources::batch::wall_ms(),
            uptime_s: stats.started.elapsed().as_secs_f64(),
            trades,
            rate,
            rejected: rejects.values().sum(),
            rejects,
            watermark: (watermark > i64::MIN && watermark < i64::MAX).then_some(watermark),
            lag_s: watermark_lag_seconds(watermark),
            open_windows: stats.open_windows.load(Ordering::Relaxed).max(0),
            final_windows: stats.final_windows.load(Ordering::Relaxed),
            anomalies: stats.final_anomalies.load(Ordering::Relaxed),
            live_updates: stats.provisional_updates.load(Ordering::Relaxed),
            rss_bytes: proc_status("VmRSS:") * 1024,
            sinks,
        };
        // serde_json writes non-finite numbers (a quantile beyond the last bucket) as null.
        serde_json::to_string(&json).unwrap_or_else(|_| "null".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_throughput_rejects_and_sinks() {
        let stats = Arc::new(RunStats::default());
        let mut health = Health::new(stats.clone(), vec![SinkHealth::new("lake", "file:///tmp/lake".into())]);
        let first: serde_json::Value = serde_json::from_str(&health.json()).unwrap();
        assert_eq!(first["trades"], 0);
        assert_eq!(first["watermark"], serde_json::Value::Null);
        stats.ingest.accepted.fetch_add(500, Ordering::Relaxed);
        stats.ingest.rejected[RejectReason::Late.index()].fetch_add(2, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(20));
        let second: serde_json::Value = serde_json::from_str(&health.json()).unwrap();
        assert_eq!(second["trades"], 500);
        assert!(second["rate"].as_f64().unwrap() > 0.0);
        assert_eq!(second["rejects"]["late"], 2);
        assert_eq!(second["rejected"], 2);
        assert_eq!(second["sinks"][0]["name"], "lake");
        assert_eq!(second["sinks"][0]["target"], "file:///tmp/lake");
    }
}
