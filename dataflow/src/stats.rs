//! What a run has done so far: counters shared by the workers of a process, progress
//! lines, and the end-of-run summary (summed over all processes).

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tradeflow_model::{RejectReason, format_ts};
use tradeflow_operators::ingest::IngestCounters;

/// Counters of one process.
#[derive(Debug)]
pub struct RunStats {
    /// Source counters.
    pub ingest: Arc<IngestCounters>,
    /// Provisional metric rows inserted (live updates).
    pub provisional_updates: AtomicU64,
    /// Windows open now (provisional rows in the collection).
    pub open_windows: AtomicI64,
    /// Windows finalised.
    pub final_windows: AtomicU64,
    /// Final anomalies.
    pub final_anomalies: AtomicU64,
    /// The pipeline watermark.
    pub watermark: AtomicI64,
    /// When the run started.
    pub started: Instant,
}

impl Default for RunStats {
    fn default() -> Self {
        RunStats {
            ingest: Arc::default(),
            provisional_updates: AtomicU64::new(0),
            open_windows: AtomicI64::new(0),
            final_windows: AtomicU64::new(0),
            final_anomalies: AtomicU64::new(0),
            watermark: AtomicI64::new(i64::MIN),
            started: Instant::now(),
        }
    }
}

/// A process's totals, sent to process 0 for the summary.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Accepted trades.
    pub accepted: u64,
    /// Rejects by reason.
    pub rejected: [u64; 7],
    /// Windows finalised.
    pub final_windows: u64,
    /// Final anomalies.
    pub final_anomalies: u64,
    /// Provisional updates.
    pub provisional_updates: u64,
    /// Lake objects written.
    pub lake_files: u64,
    /// Lake bytes written.
    pub lake_bytes: u64,
    /// Largest peak resident memory of a process, KiB.
    pub peak_rss_kib: u64,
}

impl Totals {
    /// Adds another process's totals.
    pub fn add(&mut self, other: &Totals) {
        self.accepted += other.accepted;
        for (a, b) in self.rejected.iter_mut().zip(other.rejected) {
            *a += b;
        }
        self.final_windows += other.final_windows;
        self.final_anomalies += other.final_anomalies;
        self.provisional_updates += other.provisional_updates;
        self.lake_files += other.lake_files;
        self.lake_bytes += other.lake_bytes;
        self.peak_rss_kib = self.peak_rss_kib.max(other.peak_rss_kib);
    }
}

impl RunStats {
    /// This process's totals now.
    pub fn totals(&self) -> Totals {
        let mut rejected = [0; 7];
        for reason in RejectReason::ALL {
            rejected[reason.index()] = self.ingest.rejected(reason);
        }
        Totals {
            accepted: self.ingest.accepted.load(Ordering::Relaxed),
            rejected,
            final_windows: self.final_windows.load(Ordering::Relaxed),
            final_anomalies: self.final_anomalies.load(Ordering::Relaxed),
            provisional_updates: self.provisional_updates.load(Ordering::Relaxed),
            lake_files: 0,
            lake_bytes: 0,
            peak_rss_kib: peak_rss_kib(),
        }
    }

    /// One progress line.
    pub fn progress_line(&self, last: &mut (Instant, u64)) -> String {
        let t = self.totals();
        let now = Instant::now();
        let rate = (t.accepted - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-9);
        *last = (now, t.accepted);
        let watermark = self.watermark.load(Ordering::Relaxed);
        let lag = if watermark > i64::MIN && watermark < i64::MAX {
            let lag = tradeflow_sources::batch::wall_ms() - watermark;
            if lag.abs() < 3_600_000 { format!(" (lag {:.1}s)", lag as f64 / 1000.0) } else { String::new() }
        } else {
            String::new()
        };
        format!(
            "[{:>7.1}s] trades {} ({}/s) | rejects {}{} | watermark {}{} | open windows {} | final windows {} | anomalies {}",
            self.started.elapsed().as_secs_f64(),
            group(t.accepted),
            group(rate as u64),
            group(t.rejected.iter().sum()),
            reasons(&t.rejected),
            format_ts(watermark),
            lag,
            group(self.open_windows.load(Ordering::Relaxed).max(0) as u64),
            group(t.final_windows),
            group(t.final_anomalies)
        )
    }
}

/// The end-of-run summary.
pub fn summary(totals: &Totals, elapsed: Duration, workers: usize) -> String {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let rejected: u64 = totals.rejected.iter().sum();
    let mut out = String::new();
    out.push_str(&format!("tradeflow run finished in {:.2}s on {workers} worker(s)\n", secs));
    out.push_str(&format!(
        "  trades accepted   {:>14}  ({}/s)\n",
        group(totals.accepted),
        group((totals.accepted as f64 / secs) as u64)
    ));
    out.push_str(&format!("  records rejected  {:>14}{}\n", group(rejected), reasons(&totals.rejected)));
    out.push_str(&format!("  windows final     {:>14}\n", group(totals.final_windows)));
    out.push_str(&format!("  anomalies final   {:>14}\n", group(totals.final_anomalies)));
    out.push_str(&format!("  live updates      {:>14}\n", group(totals.provisional_updates)));
    out.push_str(&format!(
        "  lake files        {:>14}  ({:.1} MiB)\n",
        group(totals.lake_files),
        totals.lake_bytes as f64 / 1048576.0
    ));
    out.push_str(&format!("  peak memory       {:>10} MiB", totals.peak_rss_kib / 1024));
    out
}

fn reasons(rejected: &[u64; 7]) -> String {
    let parts: Vec<String> = RejectReason::ALL
        .iter()
        .filter(|r| rejected[r.index()] > 0)
        .map(|r| format!("{} {}", r.as_str(), group(rejected[r.index()])))
        .collect();
    if parts.is_empty() { String::new() } else { format!(" ({})", parts.join(", ")) }
}

pub use tradeflow_model::group_thousands as group;

/// Peak resident memory of this process in KiB (Linux `VmHWM`; 0 elsewhere).
pub fn peak_rss_kib() -> u64 {
    proc_status("VmHWM:")
}

/// The number on the `field` line of `/proc/self/status` (KiB for memory fields; 0 when
/// absent, as off Linux).
pub fn proc_status(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}
