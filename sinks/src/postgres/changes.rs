//! What the sink writes: per key, the latest row or a deletion, coalesced across epochs.
//!
//! Background: the arranged rows ([`tradeflow_operators::rows`]) change, per epoch, by a
//! retraction of each changed row's old version and an insertion of its new one, and by
//! the expiry of final rows (their retraction a tick after they came). An epoch's
//! updates are consolidated (summing diffs per row) and its expiries dropped: a final
//! row stays in its table. Then, per key, a row with a positive count is the key's new
//! state, and a key with only retractions is deleted. Epochs are applied
//! in order into [`Changes`], a later state replacing an earlier one, so while the
//! writer is busy with one transaction the next one gathers only the newest state of
//! each key: the work per transaction is bounded by the number of live keys, not by the
//! number of updates, and the sink keeps up under any load.
//!
//! Keys are kept sorted, so every transaction touches rows in the same order: two
//! writers never deadlock on each other.

use differential_dataflow::consolidation::consolidate;
use std::collections::BTreeMap;
use tradeflow_model::{Anomaly, Time, WindowMetrics};
use tradeflow_operators::rows::{AnomalyKey, MetricsKey, Row, is_expiry};

/// Coalesced changes: per key the latest row (`Some`) or a deletion (`None`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Changes {
    /// `window_metrics` rows by (symbol, window_start).
    pub metrics: BTreeMap<MetricsKey, Option<WindowMetrics>>,
    /// `anomalies` rows by (symbol, window_start, kind).
    pub anomalies: BTreeMap<AnomalyKey, Option<Anomaly>>,
    /// The epochs whose changes are included (for the commit delay), in order of arrival.
    pub epochs: Vec<Time>,
}

impl Changes {
    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.metrics.is_empty() && self.anomalies.is_empty()
    }

    /// Rows to upsert or delete.
    pub fn len(&self) -> usize {
        self.metrics.len() + self.anomalies.len()
    }

    /// Applies one complete epoch's updates, after every earlier epoch.
    pub fn apply_epoch(
        &mut self,
        time: Time,
        mut metrics: Vec<(WindowMetrics, isize)>,
        mut anomalies: Vec<(Anomaly, isize)>,
    ) {
        consolidate(&mut metrics);
        consolidate(&mut anomalies);
        metrics.retain(|(row, diff)| !is_expiry(row, *diff));
        anomalies.retain(|(row, diff)| !is_expiry(row, *diff));
        if metrics.is_empty() && anomalies.is_empty() {
            return;
        }
        apply(&mut self.metrics, metrics);
        apply(&mut self.anomalies, anomalies);
        self.epochs.push(time);
    }

    /// Adds `newer` changes (made after all of these): its states replace these.
    pub fn absorb_newer(&mut self, newer: Changes) {
        self.metrics.extend(newer.metrics);
        self.anomalies.extend(newer.anomalies);
        self.epochs.extend(newer.epochs);
    }
}

/// Retractions first, then insertions: an epoch that replaces a row leaves the new row,
/// one that only retracts leaves a deletion.
fn apply<R: Row>(into: &mut BTreeMap<R::Key, Option<R>>, updates: Vec<(R, isize)>) {
    let (inserts, retracts): (Vec<_>, Vec<_>) = updates.into_iter().partition(|(_, diff)| *diff > 0);
    for (row, _) in retracts {
        into.insert(row.key(), None);
    }
    for (row, _) in inserts {
        into.insert(row.key(), Some(row));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tradeflow_model::{AnomalyKind, F64, Price, Symbol};

    fn metrics(symbol: &str, start: i64, count: u64, is_final: bool) -> WindowMetrics {
        WindowMetrics {
            symbol: Symbol::parse(symbol).unwrap(),
            window_start: start,
            window_end: start + 1000,
            trade_count: count,
            volume: count as i128 * 100_000_000,
            vwap: Some(F64(10.0)),
            min_price: Price(1_000_000_000),
            max_price: Price(1_000_000_000),
            avg_price: F64(10.0),
            open: Price(1_000_000_000),
            close: Price(1_000_000_000),
            volatility: None,
            is_final,
        }
    }

    fn spike(symbol: &str, start: i64, severity: f64) -> Anomaly {
        Anomaly {
            symbol: Symbol::parse(symbol).unwrap(),
            window_start: start,
            window_end: start + 1000,
            kind: AnomalyKind::VolumeSpike,
            severity: F64(severity),
            detected_at: start + 1000,
            observed: F64(1.0),
            baseline: F64(1.0),
            is_final: false,
        }
    }

    #[test]
    fn an_epoch_leaves_the_new_row_of_a_replaced_key() {
        let mut changes = Changes::default();
        changes.apply_epoch(5, vec![(metrics("A", 0, 1, false), 1)], vec![(spike("A", 0, 4.0), 1)]);
        // Retraction and insertion in either order within an epoch.
        changes.apply_epoch(
            6,
            vec![(metrics("A", 0, 2, false), 1), (metrics("A", 0, 1, false), -1)],
            vec![(spike("A", 0, 4.0), -1)],
        );
        assert_eq!(changes.metrics[&(Symbol::parse("A").unwrap(), 0)], Some(metrics("A", 0, 2, false)));
        assert_eq!(changes.anomalies[&(Symbol::parse("A").unwrap(), 0, AnomalyKind::VolumeSpike)], None);
        assert_eq!(changes.epochs, vec![5, 6]);
        assert_eq!(changes.len(), 2);
    }

    #[test]
    fn the_expiry_of_a_final_row_leaves_it_in_its_table() {
        let mut changes = Changes::default();
        let (row, mark) = (metrics("A", 0, 1, true), Anomaly { is_final: true, ..spike("A", 0, 4.0) });
        changes.apply_epoch(5, vec![(row.clone(), 1), (metrics("A", 0, 1, false), -1)], vec![(mark.clone(), 1)]);
        changes.apply_epoch(9, vec![(row.clone(), -1)], vec![(mark.clone(), -1)]);
        assert_eq!(changes.metrics[&(Symbol::parse("A").unwrap(), 0)], Some(row));
        assert_eq!(changes.anomalies[&(Symbol::parse("A").unwrap(), 0, AnomalyKind::VolumeSpike)], Some(mark));
        // An epoch of expiries alone changes nothing.
        assert_eq!(changes.epochs, vec![5]);
        // A provisional row's retraction is a deletion.
        changes.apply_epoch(10, vec![(metrics("B", 0, 1, false), -1)], Vec::new());
        assert_eq!(changes.metrics[&(Symbol::parse("B").unwrap(), 0)], None);
    }

    #[test]
    fn an_update_that_cancels_out_is_no_change() {
        let mut changes = Changes::default();
        let row = metrics("A", 0, 1, false);
        changes.apply_epoch(5, vec![(row.clone(), 1), (row, -1)], Vec::new());
        assert!(changes.is_empty() && changes.epochs.is_empty());
    }

    #[test]
    fn newer_changes_win() {
        let mut older = Changes::default();
        older.apply_epoch(1, vec![(metrics("A", 0, 1, false), 1), (metrics("B", 0, 1, false), 1)], Vec::new());
        let mut newer = Changes::default();
        newer.apply_epoch(2, vec![(metrics("A", 0, 3, true), 1)], Vec::new());
        older.absorb_newer(newer);
        assert_eq!(older.metrics[&(Symbol::parse("A").unwrap(), 0)], Some(metrics("A", 0, 3, true)));
        assert_eq!(older.metrics[&(Symbol::parse("B").unwrap(), 0)], Some(metrics("B", 0, 1, false)));
        assert_eq!(older.epochs, vec![1, 2]);
    }
}
