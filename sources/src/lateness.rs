//! Per-partition watermarks and lateness (SPEC 6).
//!
//! Each source partition (a file, a simulator symbol stream, a Kafka partition, a
//! WebSocket connection) tracks `watermark = max ts of its accepted trades − allowed
//! lateness` and decides each record against its own watermark, in partition order: a
//! trade below it is late (rejected, counted, dead-lettered, not applied).
//!
//! A source instance (one source on one worker) reports to the pipeline the least
//! watermark of its partitions: the promise that nothing it emits later is below it.
//! On live sources a partition silent for `idle_timeout` stops holding that report back,
//! and if every partition is silent the report follows the wall clock; a partition that
//! wakes up again starts from the last report, so its trades below it are late and no
//! final window ever changes.

use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// The watermark of one partition.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionClock {
    max_ts: Option<i64>,
    floor: i64,
    lateness: i64,
}

impl PartitionClock {
    /// A partition that has accepted nothing yet.
    pub fn new(lateness_ms: i64) -> Self {
        PartitionClock { max_ts: None, floor: i64::MIN, lateness: lateness_ms }
    }

    /// Max accepted ts − lateness, or the floor if higher (`i64::MIN` before any trade).
    pub fn watermark(&self) -> i64 {
        let own = self.max_ts.map_or(i64::MIN, |m| m.saturating_sub(self.lateness));
        own.max(self.floor)
    }

    /// Decides a valid trade: `true` (accepted, raising the max) or `false` (late).
    #[inline]
    pub fn admit(&mut self, ts: i64) -> bool {
        if ts < self.watermark() {
            return false;
        }
        if self.max_ts.is_none_or(|m| ts > m) {
            self.max_ts = Some(ts);
        }
        true
    }

    /// Accounts for trades accepted elsewhere in this partition (an earlier chunk of a
    /// file parsed by another worker) whose greatest ts was `max_ts`.
    pub fn observe(&mut self, max_ts: i64) {
        if self.max_ts.is_none_or(|m| max_ts > m) {
            self.max_ts = Some(max_ts);
        }
    }

    /// Never lets the watermark be below `floor` again.
    pub fn raise_floor(&mut self, floor: i64) {
        self.floor = self.floor.max(floor);
    }
}

#[derive(Debug)]
struct Partition {
    clock: PartitionClock,
    last_seen: Instant,
    done: bool,
    idle: bool,
}

/// The partitions of one source instance, and the watermark it reports.
#[derive(Debug)]
pub struct Partitions {
    partitions: Vec<Partition>,
    idle_timeout: Option<Duration>,
    lateness: i64,
    reported: i64,
}

impl Partitions {
    /// `count` partitions; `idle_timeout` is `Some` for live sources only.
    pub fn new(count: usize, lateness_ms: i64, idle_timeout: Option<Duration>) -> Self {
        let now = Instant::now();
        let partitions = (0..count)
            .map(|_| Partition { clock: PartitionClock::new(lateness_ms), last_seen: now, done: false, idle: false })
            .collect();
        Partitions { partitions, idle_timeout, lateness: lateness_ms, reported: i64::MIN }
    }

    /// Each partition's clock and the last report: what lateness decisions depend on,
    /// for a checkpoint.
    pub fn clocks(&self) -> (Vec<PartitionClock>, i64) {
        (self.partitions.iter().map(|p| p.clock).collect(), self.reported)
    }

    /// Restores what [`Partitions::clocks`] returned (a resumed run). Every partition's
    /// floor is raised to the last report, as a partition idle at the checkpoint would
    /// have had it raised when it woke up (a partition still holding the watermark was at
    /// or above the report already).
    pub fn restore_clocks(&mut self, clocks: &[PartitionClock], reported: i64) {
        for (partition, clock) in self.partitions.iter_mut().zip(clocks) {
            partition.clock = *clock;
            partition.clock.raise_floor(reported);
        }
        self.reported = reported;
    }

    /// The watermark of partition `p`.
    pub fn watermark(&self, p: usize) -> i64 {
        self.partitions[p].clock.watermark()
    }

    /// Decides a valid trade of partition `p` (see [`PartitionClock::admit`]).
    #[inline]
    pub fn admit(&mut self, p: usize, ts: i64, now: Instant) -> bool {
        let reported = self.reported;
        let partition = &mut self.partitions[p];
        partition.last_seen = now;
        if partition.idle {
            partition.idle = false;
            partition.clock.raise_floor(reported);
        }
        partition.clock.admit(ts)
    }

    /// The source was held back (back-pressure) for `held`, reading nothing: that time does
    /// not count towards any partition's idle timeout, or a partition whose records were
    /// waiting would be taken for idle and its records, once read, for late.
    pub fn postpone_idle(&mut self, held: Duration) {
        let now = Instant::now();
        for partition in &mut self.partitions {
            partition.last_seen = (partition.last_seen + held).min(now);
        }
    }

    /// Partition `p` has records waiting to be read (its source knows, e.g. from a
    /// broker's high watermark): it is not idle, however long since it delivered.
    pub fn waiting(&mut self, p: usize, now: Instant) {
        let partition = &mut self.partitions[p];
        if !partition.idle {
            partition.last_seen = now;
        }
    }

    /// Marks partition `p` as finished: it no longer holds the watermark back.
    pub fn finish(&mut self, p: usize) {
        self.partitions[p].done = true;
    }

    /// True when every partition has finished.
    pub fn all_done(&self) -> bool {
        self.partitions.iter().all(|p| p.done)
    }

    /// The watermark to report now: the least watermark of the partitions still holding
    /// it (not finished, not idle), never lower than the last report. With no partition
    /// left it is `i64::MAX`; on a live source whose partitions are all idle it follows
    /// the wall clock (`wall_ms − lateness`).
    pub fn low(&mut self, now: Instant, wall_ms: i64) -> i64 {
        let mut low = i64::MAX;
        let mut idle = false;
        for partition in &mut self.partitions {
            if partition.done {
                continue;
            }
            if let Some(timeout) = self.idle_timeout
                && now.duration_since(partition.last_seen) >= timeout
            {
                partition.idle = true;
                idle = true;
                continue;
            }
            low = low.min(partition.clock.watermark());
        }
        if low == i64::MAX && idle {
            low = wall_ms.saturating_sub(self.lateness);
        }
        self.reported = self.reported.max(low);
        self.reported
    }
}

/// Explains a late trade: how far below which watermark, and the knob that decides it.
pub fn late_detail(ts: i64, watermark: i64, lateness_ms: i64) -> String {
    format!(
        "ts {} is {:.3} s below the partition watermark {} (max ts seen − --allowed-lateness {} ms); raise --allowed-lateness to accept it",
        tradeflow_model::format_ts(ts),
        watermark.saturating_sub(ts) as f64 / 1000.0,
        tradeflow_model::format_ts(watermark),
        lateness_ms
    )
}

/// Decides a parsed trade of a live stream's `partition`: into `batch.trades` when it is
/// on time, else into `batch.rejects` as late (or, unreachable since the parser checks the
/// same, with a bad symbol); `reject` builds the dead letter from a reason, its detail,
/// the raw record and its element index.
pub fn admit_parsed(
    partitions: &mut Partitions,
    partition: usize,
    trade: &crate::format::RawTrade<'_>,
    now: Instant,
    lateness_ms: i64,
    batch: &mut crate::batch::Batch,
    reject: impl Fn(tradeflow_model::RejectReason, String, &[u8], u32) -> tradeflow_model::Reject,
) {
    use tradeflow_model::RejectReason;
    if !partitions.admit(partition, trade.ts, now) {
        // The watermark that decided: admit may have just raised an idle partition's floor.
        let detail = late_detail(trade.ts, partitions.watermark(partition), lateness_ms);
        batch.rejects.push(reject(RejectReason::Late, detail, trade.raw, trade.element));
        return;
    }
    match trade.to_trade() {
        Ok(accepted) => batch.trades.push(accepted),
        Err(e) => {
            batch.rejects.push(reject(RejectReason::BadSymbol, format!("field \"s\": {e}"), trade.raw, trade.element))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_is_below_max_minus_lateness() {
        let mut c = PartitionClock::new(5_000);
        assert!(c.admit(100_000));
        assert!(c.admit(95_000), "exactly at the watermark is on time");
        assert!(!c.admit(94_999));
        assert!(c.admit(120_000));
        assert_eq!(c.watermark(), 115_000);
        assert!(!c.admit(100_000));
    }

    #[test]
    fn report_is_the_least_active_partition_and_never_goes_back() {
        let now = Instant::now();
        let mut p = Partitions::new(2, 1_000, None);
        assert!(p.admit(0, 10_000, now));
        assert_eq!(p.low(now, 0), i64::MIN, "partition 1 has not started");
        assert!(p.admit(1, 5_000, now));
        assert_eq!(p.low(now, 0), 4_000);
        p.finish(1);
        assert_eq!(p.low(now, 0), 9_000);
        p.finish(0);
        assert_eq!(p.low(now, 0), i64::MAX);
    }

    #[test]
    fn idle_partitions_are_released_and_wake_up_at_the_report() {
        let start = Instant::now();
        let mut p = Partitions::new(2, 1_000, Some(Duration::from_secs(10)));
        assert!(p.admit(0, 50_000, start));
        assert!(p.admit(1, 20_000, start));
        let later = start + Duration::from_secs(11);
        assert!(p.admit(0, 60_000, later));
        assert_eq!(p.low(later, 0), 59_000, "partition 1 is idle");
        // It wakes up: anything below the last report is now late for it.
        assert!(!p.admit(1, 30_000, later));
        assert!(p.admit(1, 59_500, later));
        // All idle: the report follows the wall clock.
        let much_later = later + Duration::from_secs(20);
        assert_eq!(p.low(much_later, 100_000), 99_000);
    }

    #[test]
    fn a_partition_idle_before_its_first_trade_explains_its_late_trade() {
        // 10,000 symbols, some idle before their first trade: the rejected trade's detail
        // used the watermark from before `admit` (i64::MIN) and overflowed.
        let start = Instant::now();
        let mut p = Partitions::new(2, 1_000, Some(Duration::from_secs(1)));
        assert!(p.admit(0, 50_000, start));
        let later = start + Duration::from_secs(2);
        assert!(p.admit(0, 60_000, later));
        assert_eq!(p.low(later, 0), 59_000, "partition 1 never started: idle");
        assert!(!p.admit(1, 30_000, later), "below the report it woke up to");
        let detail = late_detail(30_000, p.watermark(1), 1_000);
        assert!(detail.contains("29.000 s below"), "{detail}");
        assert!(late_detail(0, i64::MIN, 1_000).contains("s below"), "no overflow on an unset watermark");
    }

    #[test]
    fn time_held_back_does_not_count_as_silence() {
        let start = Instant::now();
        let mut p = Partitions::new(2, 1_000, Some(Duration::from_millis(500)));
        assert!(p.admit(0, 10_000, start));
        assert!(p.admit(1, 10_000, start));
        std::thread::sleep(Duration::from_millis(700));
        p.postpone_idle(Duration::from_millis(700));
        assert_eq!(p.low(Instant::now(), 0), 9_000, "neither partition counts as idle after a hold");
    }
}
