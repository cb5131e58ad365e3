//! `changelog/<collection>/*.parquet`: the captured differential update streams.
//!
//! Background: differential's `capture` module records a collection as batches of
//! `(data, time, diff)` updates plus progress statements (`lower`, `upper`). This sink
//! does the same in Parquet: each worker writes the updates of its shard, in epoch
//! order, in files covering whole epochs; a file's key-value metadata holds the
//! `lower`/`upper` epochs it covers (the progress statement). A notebook rebuilds a
//! collection as of time `t` by summing `diff` per row over `time <= t` (for one
//! `run_id`), and sees each metric's provisional values and the moment it became final.
//!
//! **Resolution** (`--changelog-resolution`, 1 s by default): the updates of one interval
//! of that length (aligned to the epoch) are consolidated before they are written, as
//! differential's `consolidate` would at a coarser timestamp: a row's retraction and
//! re-insertion within the interval cancel, and what is left is written once, stamped
//! with the interval's last epoch that changed anything. So the collection rebuilt as of
//! any interval's end is exact, every final row is there, and a window that changed with
//! every one of thousands of trades in a second costs two rows, not thousands. `0`
//! records every update as it happened.
//!
//! Files are cut at `max_rows` updates, after `max_age` of wall-clock time on live runs,
//! at every checkpoint boundary of a checkpointed run (so a checkpoint keeps only the
//! file sequence number: an interval still open at a boundary is consolidated up to it
//! and written), and at the end. Epochs are wall-clock milliseconds, so every run has its
//! own history: files are named `<run_id>-w<worker>-<seq>.parquet` and rows carry
//! `run_id`.

use super::parquet::{LakeRow, encode};
use super::store::{Lake, Payload};
use differential_dataflow::VecCollection;
use std::sync::Arc;
use std::time::{Duration, Instant};
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use tradeflow_model::Time;
use tradeflow_model::checkpoint::{Part, Saver, from_json, to_json};
use tradeflow_operators::epochs::{EpochQueue, combined_frontier};

/// Where and how a worker writes its changelog.
#[derive(Clone, Debug)]
pub struct ChangelogConfig {
    /// This worker's index.
    pub worker: usize,
    /// Updates per file at most.
    pub max_rows: usize,
    /// Wall-clock age after which a non-empty file is written (live runs).
    pub max_age: Option<Duration>,
    /// `--changelog-resolution`, ms: updates within one such interval are consolidated
    /// (0: none are).
    pub resolution: Time,
}

/// The updates of the interval not yet complete, to be consolidated.
struct Interval<R> {
    /// Its index (epoch / resolution).
    index: Time,
    /// The last epoch that brought updates.
    last: Time,
    updates: Vec<(R, isize)>,
    /// `updates.len()` after the last consolidation.
    consolidated: usize,
}

impl<R: Ord> Interval<R> {
    fn add(&mut self, time: Time, updates: Vec<(R, Time, isize)>) {
        self.last = self.last.max(time);
        self.updates.extend(updates.into_iter().map(|(row, _, diff)| (row, diff)));
        // Bounded by the distinct rows changed, not by the updates, however many come.
        if self.updates.len() > 2 * self.consolidated + 1024 {
            differential_dataflow::consolidation::consolidate(&mut self.updates);
            self.consolidated = self.updates.len();
        }
    }

    /// Its net updates, each stamped with the interval's last epoch.
    fn close(mut self, buffer: &mut Vec<(R, Time, isize)>) {
        differential_dataflow::consolidation::consolidate(&mut self.updates);
        buffer.extend(self.updates.into_iter().map(|(row, diff)| (row, self.last, diff)));
    }
}

/// Captures `rows` into the lake's changelog (see the module documentation). `run_id`
/// carries the run's identifier (sent once, by worker 0, to everyone, so that every
/// process of a run uses the same).
pub fn write_changelog<'scope, R: LakeRow + Clone + Ord>(
    rows: VecCollection<'scope, Time, R>,
    run_id: StreamVec<'scope, Time, String>,
    lake: Arc<Lake>,
    config: ChangelogConfig,
    mut saver: Option<Saver>,
) -> Result<(), String> {
    let (mut lower, mut seq): (Time, u64) = match saver.as_ref().and_then(Saver::restore) {
        Some(restored) => from_json(R::DATASET, &restored.state)?,
        None => (0, 0),
    };
    let mut builder = OperatorBuilder::new(format!("Changelog:{}", R::DATASET), rows.inner.scope());
    let mut input = builder.new_input(rows.inner, Pipeline);
    let mut run_in = builder.new_input(run_id, Pipeline);
    builder.build(move |_| {
        let mut run_id: Option<String> = None;
        let mut queue = EpochQueue::<Vec<(R, Time, isize)>>::default();
        let mut buffer: Vec<(R, Time, isize)> = Vec::new();
        let mut open: Option<Interval<R>> = None;
        // When the oldest row in the buffer arrived (the file's age, for `max_age`).
        let mut oldest: Option<Instant> = None;
        // The last epoch applied: a cut with no next epoch (a stop) ends the file there.
        let mut applied: Option<Time> = None;
        move |frontiers| {
            input.for_each(|cap, batch| {
                let Some(&time) = cap.least() else { return };
                queue.at(time).append(batch);
            });
            run_in.for_each(|_, ids| {
                if let Some(id) = ids.pop() {
                    run_id = Some(id);
                }
            });
            let frontier = combined_frontier(frontiers);
            let Some(run_id) = run_id.as_deref() else { return };
            let write = |buffer: &mut Vec<(R, Time, isize)>, upper: Time, seq: &mut u64, lower: &mut Time| {
                let key = format!("changelog/{}/{run_id}-w{:04}-{seq:06}.parquet", R::DATASET, config.worker);
                let metadata = vec![
                    ("tradeflow.lower".to_owned(), lower.to_string()),
                    ("tradeflow.upper".to_owned(), upper.to_string()),
                    ("tradeflow.run_id".to_owned(), run_id.to_owned()),
                ];
                match encode(R::changelog_schema(), &[R::changelog_batch(buffer, run_id)], metadata) {
                    Ok(bytes) => lake.publish(key, Payload::Bytes(bytes), buffer.len() as u64),
                    Err(e) => lake.report_error(format!("encoding {key}: {e}")),
                }
                buffer.clear();
                *seq += 1;
                *lower = upper;
            };
            // At a boundary (`upto`: the next epoch, or the frontier; none at a stop, when the
            // file ends after the last epoch applied) the open interval is closed and the
            // buffer written out, so the part is just the file sequence.
            let cut = |upto: Option<Time>,
                       applied: Option<Time>,
                       open: &mut Option<Interval<R>>,
                       buffer: &mut Vec<_>,
                       seq: &mut u64,
                       lower: &mut Time| {
                if let Some(interval) = open.take() {
                    interval.close(buffer);
                }
                if !buffer.is_empty() {
                    let upper = upto.or(applied.map(|a| a + 1)).unwrap_or(*lower).max(*lower);
                    write(buffer, upper, seq, lower);
                }
                Part { state: to_json(&(*lower, *seq)), ..Part::default() }
            };
            while let Some((time, mut updates)) = queue.pop_complete(frontier) {
                if let Some(saver) = saver.as_mut() {
                    let cut_here = |_| cut(Some(time), applied, &mut open, &mut buffer, &mut seq, &mut lower);
                    saver.before_epoch(time, cut_here);
                }
                applied = applied.max(Some(time));
                if config.resolution == 0 {
                    buffer.append(&mut updates);
                    continue;
                }
                let index = time / config.resolution;
                if open.as_ref().is_some_and(|i| i.index != index) {
                    open.take().expect("checked").close(&mut buffer);
                }
                let interval =
                    open.get_or_insert_with(|| Interval { index, last: time, updates: Vec::new(), consolidated: 0 });
                interval.add(time, updates);
            }
            if let Some(saver) = saver.as_mut() {
                saver.at_frontier(frontier, |_| cut(frontier, applied, &mut open, &mut buffer, &mut seq, &mut lower));
            }
            // An interval the frontier has left is complete.
            if open.as_ref().is_some_and(|i| frontier.is_none_or(|f| f / config.resolution > i.index)) {
                open.take().expect("checked").close(&mut buffer);
            }
            // What the open interval will hold is not covered by a file written now.
            let upper = match (&open, frontier) {
                (Some(interval), _) => (interval.index * config.resolution).max(lower),
                (None, Some(f)) => f,
                (None, None) => Time::MAX,
            };
            if buffer.is_empty() {
                oldest = None;
            } else if oldest.is_none() {
                oldest = Some(Instant::now());
            }
            let aged = config.max_age.is_some_and(|age| oldest.is_some_and(|o| o.elapsed() >= age));
            if !buffer.is_empty() && (buffer.len() >= config.max_rows || aged || frontier.is_none()) {
                write(&mut buffer, upper, &mut seq, &mut lower);
            }
        }
    });
    Ok(())
}
