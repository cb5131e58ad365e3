//! The run's Prometheus metrics: what `--metrics-addr` serves on `/metrics`.
//!
//! Series updated on hot paths live where the work happens, as handles in the
//! process-wide registry ([`tradeflow_model::metrics::registry`]), one atomic operation
//! per batch: trades and rejects in the sources' ingest, rows, errors and commit
//! durations in the sinks, end-to-end latency where a change is committed (PostgreSQL)
//! or published (the dashboard). This module registers the series that are read from the
//! run's own counters when scraped (windows, anomalies, the watermark, the process), and
//! pre-creates the series of the configured sinks so that they show from the first
//! scrape, at zero. Whatever else registers in the registry (other sources' metrics)
//! shows on `/metrics` too: [`render`] renders all of it.
//!
//! Every process of a `-n N` run serves its own counters (its own workers' sources and
//! symbols); Prometheus sums them across targets.

use crate::stats::{RunStats, proc_status};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};
use tradeflow_model::metrics::{SinkMetrics, end_to_end_latency, registry};
use tradeflow_sinks::lake::Lake;

/// The `Content-Type` of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Everything in the registry, in the Prometheus text format.
pub fn render() -> String {
    registry().render()
}

/// The `source` label of each `--source` URL, in order: its scheme (`sim`, `file`,
/// `lake`, `lake+s3`, `kafka`, `finnhub`, ...), suffixed with `#<index>` when several
/// sources share it.
pub fn source_names(urls: &[String]) -> Vec<String> {
    let schemes: Vec<&str> = urls
        .iter()
        .map(|u| if u == "-" { "stdin" } else { u.split_once("://").map_or(u.as_str(), |(s, _)| s) })
        .collect();
    schemes
        .iter()
        .enumerate()
        .map(|(i, s)| if schemes.iter().filter(|o| *o == s).count() > 1 { format!("{s}#{i}") } else { (*s).to_owned() })
        .collect()
}

/// Which sinks a run writes, for the series created up front.
pub struct Sinks<'a> {
    /// The lake, if written.
    pub lake: Option<&'a Arc<Lake>>,
    /// True when the PostgreSQL sink is on.
    pub postgres: bool,
    /// True when the dashboard is served.
    pub dashboard: bool,
}

/// Registers the series read from `stats` and the process, and creates the configured
/// sinks' series.
pub fn register(stats: &Arc<RunStats>, sinks: Sinks<'_>) {
    let r = registry();
    r.gauge(
        "tradeflow_build_info",
        "Always 1; the version of the running tradeflow as a label.",
        &[("version", env!("CARGO_PKG_VERSION"))],
    )
    .set(1.0);

    let s = stats.clone();
    r.gauge_fn("tradeflow_open_windows", "Windows with provisional (not yet final) results.", &[], move || {
        s.open_windows.load(Ordering::Relaxed).max(0) as f64
    });
    let s = stats.clone();
    r.counter_fn(
        "tradeflow_windows_finalized_total",
        "Windows made final by the watermark (their rows never change again).",
        &[],
        move || s.final_windows.load(Ordering::Relaxed) as f64,
    );
    let s = stats.clone();
    r.counter_fn("tradeflow_anomalies_total", "Final anomalies (volume spikes and price jumps).", &[], move || {
        s.final_anomalies.load(Ordering::Relaxed) as f64
    });
    let s = stats.clone();
    r.counter_fn(
        "tradeflow_live_updates_total",
        "Provisional window rows emitted (live updates before windows are final).",
        &[],
        move || s.provisional_updates.load(Ordering::Relaxed) as f64,
    );
    let s = stats.clone();
    r.gauge_fn(
        "tradeflow_watermark_timestamp_seconds",
        "The pipeline watermark (event time, Unix seconds): windows ending at or before it are final. NaN before the first report, +Inf once every source has ended.",
        &[],
        move || match s.watermark.load(Ordering::Relaxed) {
            i64::MIN => f64::NAN,
            i64::MAX => f64::INFINITY,
            ms => ms as f64 / 1000.0,
        },
    );
    let s = stats.clone();
    r.gauge_fn(
        "tradeflow_watermark_lag_seconds",
        "Wall clock minus the pipeline watermark, seconds (includes --allowed-lateness). NaN before the first report, 0 once every source has ended.",
        &[],
        move || watermark_lag_seconds(s.watermark.load(Ordering::Relaxed)).unwrap_or(f64::NAN),
    );

    r.gauge_fn("process_resident_memory_bytes", "Resident memory size in bytes.", &[], || {
        (proc_status("VmRSS:") * 1024) as f64
    });
    r.gauge_fn("process_virtual_memory_bytes", "Virtual memory size in bytes.", &[], || {
        (proc_status("VmSize:") * 1024) as f64
    });
    r.gauge_fn("process_threads", "Threads of the process.", &[], || proc_status("Threads:") as f64);
    r.counter_fn("process_cpu_seconds_total", "User and system CPU time spent, seconds.", &[], cpu_seconds);
    let started = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    r.gauge("process_start_time_seconds", "Start time of the process since the Unix epoch, seconds.", &[])
        .set(started.floor());

    if let Some(lake) = sinks.lake {
        SinkMetrics::of("lake");
        let weak = Arc::downgrade(lake);
        r.counter_fn("tradeflow_sink_files_total", "Objects written by the sink.", &[("sink", "lake")], move || {
            weak.upgrade().map_or(0.0, |l| l.stats().files as f64)
        });
        let weak = Arc::downgrade(lake);
        r.counter_fn("tradeflow_sink_bytes_total", "Bytes written by the sink.", &[("sink", "lake")], move || {
            weak.upgrade().map_or(0.0, |l| l.stats().bytes as f64)
        });
    }
    if sinks.postgres {
        SinkMetrics::of("postgres");
        end_to_end_latency("postgres");
    }
    if sinks.dashboard {
        end_to_end_latency("dashboard");
    }
}

/// Wall clock minus `watermark` (ms) in seconds; `None` before the first report, 0 once
/// every source has ended.
pub fn watermark_lag_seconds(watermark: i64) -> Option<f64> {
    match watermark {
        i64::MIN => None,
        i64::MAX => Some(0.0),
        ms => Some((tradeflow_sources::batch::wall_ms() - ms) as f64 / 1000.0),
    }
}

/// User + system CPU seconds of this process, from `/proc/self/stat` (Linux's fixed
/// 100 ticks per second, `USER_HZ`); 0 elsewhere.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // The command name (field 2) may hold spaces: count fields after its closing ')'.
    let Some((_, rest)) = stat.rsplit_once(')') else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')' come field 3 (state) onwards: utime is field 14, stime field 15.
    let ticks = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    (ticks(14) + ticks(15)) as f64 / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_names_are_schemes_made_unique() {
        let urls = ["sim://?rate=5".to_owned(), "file:///a".to_owned(), "file:///b".to_owned()];
        assert_eq!(source_names(&urls), ["sim", "file#1", "file#2"]);
        assert_eq!(source_names(&["lake+s3://b/p".to_owned()]), ["lake+s3"]);
    }

    #[test]
    fn reads_the_process() {
        assert!(proc_status("VmRSS:") > 0);
        assert!(proc_status("Threads:") >= 1);
        assert!(cpu_seconds() >= 0.0);
    }
}
