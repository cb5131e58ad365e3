//! What the PostgreSQL sink has done: rows, transactions, retries, and the commit delay.
//!
//! The commit delay of an epoch is the wall-clock time of the commit that made its
//! changes durable minus the epoch itself, which is the wall-clock millisecond at which
//! its trades were read: the delay from a trade entering the pipeline to its window row
//! being committed. It is recorded for every epoch that changed a row, in a histogram of
//! 1 ms buckets (the last bucket collects everything from 60 s on). The hand-over delay
//! (the epoch's changes reaching the writer, complete) is recorded beside it: the
//! difference is the sink's own share.

use std::time::Duration;

const BUCKETS: usize = 60_001;

/// A histogram of delays in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DelayHistogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for DelayHistogram {
    fn default() -> Self {
        DelayHistogram { counts: vec![0; BUCKETS], total: 0, max: 0 }
    }
}

impl DelayHistogram {
    /// Records one delay.
    pub fn record(&mut self, ms: u64) {
        self.counts[(ms as usize).min(BUCKETS - 1)] += 1;
        self.total += 1;
        self.max = self.max.max(ms);
    }

    /// Delays recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The largest delay, ms.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The `q`-quantile (0..=1) in ms: the least delay that at least `q` of all delays are
    /// at most. `None` when nothing was recorded.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (ms, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(if ms == BUCKETS - 1 { self.max } else { ms as u64 });
            }
        }
        Some(self.max)
    }
}

/// Counters of one process's sink.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PgStats {
    /// Transactions committed with changes.
    pub commits: u64,
    /// Rows upserted (staged; unchanged rows are skipped by the server).
    pub upserts: u64,
    /// Rows deleted (staged deletions).
    pub deletes: u64,
    /// Transactions retried after a temporary error.
    pub retries: u64,
    /// Wall time spent in transactions.
    pub busy: Duration,
    /// Commit delay per epoch.
    pub delay: DelayHistogram,
    /// Hand-over delay per epoch: from the epoch to its changes reaching the writer.
    pub handover: DelayHistogram,
}

impl PgStats {
    /// Two summary lines: rows and rate, then the commit delay.
    pub fn summary_lines(&self, server: &str) -> String {
        let rows = self.upserts + self.deletes;
        let rate = rows as f64 / self.busy.as_secs_f64().max(1e-9);
        let mut out = format!(
            "  postgres rows     {:>14}  ({} upserted, {} deleted in {} transactions, {} rows/s while writing; {} retries) to {server}\n",
            group(rows),
            group(self.upserts),
            group(self.deletes),
            group(self.commits),
            group(rate as u64),
            group(self.retries),
        );
        match (self.delay.quantile(0.5), self.delay.quantile(0.95), self.delay.quantile(0.99)) {
            (Some(p50), Some(p95), Some(p99)) => out.push_str(&format!(
                "  postgres commit delay p50 {p50} ms, p95 {p95} ms, p99 {p99} ms, max {} ms (trade read -> window row committed, {} epochs; handed to the writer after p50 {} ms, p99 {} ms)",
                self.delay.max(),
                group(self.delay.count()),
                self.handover.quantile(0.5).unwrap_or(0),
                self.handover.quantile(0.99).unwrap_or(0),
            )),
            _ => out.push_str("  postgres commit delay (nothing committed)"),
        }
        out
    }
}

use tradeflow_model::group_thousands as group;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        let mut h = DelayHistogram::default();
        assert_eq!(h.quantile(0.5), None);
        for ms in 1..=100 {
            h.record(ms);
        }
        assert_eq!((h.quantile(0.5), h.quantile(0.99), h.quantile(1.0)), (Some(50), Some(99), Some(100)));
        h.record(1_000_000);
        assert_eq!((h.quantile(1.0), h.max()), (Some(1_000_000), 1_000_000));
    }
}
