//! `changelog/<collection>/*.parquet`: the captured differential update streams.
//!
//! Background: differential's `capture` module records a collection as `Updates`
//! messages, batches of `(data, time, diff)`, and `Progress` messages, statements of how
//! many distinct updates there are at each time of an interval `[lower, upper)`, so that a
//! reader (differential's `capture::source`) can tell when it holds the whole collection
//! up to a time. This sink writes both as Parquet (the format is in
//! [`tradeflow_lake::changelog`]): each worker writes the updates of its shard, in epoch
//! order, consolidated, in files covering whole epochs (each file's `lower`/`upper`
//! epochs are also in its key-value metadata), and sends the number of updates at each
//! time to worker 0, whose [`super::progress`] writer states them for the whole run. A
//! notebook rebuilds a collection as of time `t` by summing `diff` per row over
//! `time <= t` (for one `run_id`), and sees each metric's provisional values and the
//! moment it became final.
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
use super::progress::{ProgressConfig, write_progress};
use super::store::{Lake, Payload};
use differential_dataflow::VecCollection;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::CapabilitySet;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use tradeflow_lake::changelog::{parse_updates_name, updates_key};
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
    /// The first epoch that brought updates (the operator holds a capability for it).
    first: Time,
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

    /// Its net updates, each stamped with the interval's last epoch; their count at that
    /// epoch goes to `counts`.
    fn close(mut self, buffer: &mut Vec<(R, Time, isize)>, counts: &mut Vec<(Time, u64)>) {
        differential_dataflow::consolidation::consolidate(&mut self.updates);
        if !self.updates.is_empty() {
            counts.push((self.last, self.updates.len() as u64));
        }
        buffer.extend(self.updates.into_iter().map(|(row, diff)| (row, self.last, diff)));
    }
}

/// One worker's updates on their way to files: the interval still being consolidated,
/// the buffer of the next file, and the update counts of the epochs in that buffer.
struct Files<R> {
    lake: Arc<Lake>,
    worker: usize,
    open: Option<Interval<R>>,
    buffer: Vec<(R, Time, isize)>,
    /// The number of updates at each epoch in the buffer; once their file is written,
    /// they are ready to announce (so that no statement precedes the updates it counts).
    announce: Vec<(Time, u64)>,
    ready: Vec<(Time, u64)>,
    /// The next file's sequence number, and the first epoch it may hold.
    seq: u64,
    lower: Time,
}

impl<R: LakeRow + Ord> Files<R> {
    /// Moves the open interval's net updates into the buffer.
    fn close_interval(&mut self) {
        if let Some(interval) = self.open.take() {
            interval.close(&mut self.buffer, &mut self.announce);
        }
    }

    /// Writes the buffer as the file of epochs `[lower, upper)`; its counts are then
    /// ready to announce.
    fn write(&mut self, run_id: &str, upper: Time) {
        let key = updates_key(R::DATASET, run_id, self.worker, self.seq);
        let metadata = vec![
            ("tradeflow.lower".to_owned(), self.lower.to_string()),
            ("tradeflow.upper".to_owned(), upper.to_string()),
            ("tradeflow.run_id".to_owned(), run_id.to_owned()),
        ];
        match encode(R::changelog_schema(), &[R::changelog_batch(&self.buffer, run_id)], metadata) {
            Ok(bytes) => self.lake.publish(key, Payload::Bytes(bytes), self.buffer.len() as u64),
            Err(e) => self.lake.report_error(format!("encoding {key}: {e}")),
        }
        self.buffer.clear();
        self.seq += 1;
        self.lower = upper;
        self.ready.append(&mut self.announce);
    }

    /// At a boundary (`upto`: the next epoch, or the frontier; none at a stop, when the
    /// file ends after the last epoch `applied`) the open interval is closed and the
    /// buffer written out, so the checkpoint part is just the file sequence.
    fn cut(&mut self, run_id: &str, upto: Option<Time>, applied: Option<Time>) -> Part {
        self.close_interval();
        if !self.buffer.is_empty() {
            let upper = upto.or(applied.map(|a| a + 1)).unwrap_or(self.lower).max(self.lower);
            self.write(run_id, upper);
        }
        Part { state: to_json(&(self.lower, self.seq)), ..Part::default() }
    }
}

/// Captures `rows` into the lake's changelog (see the module documentation). `run_id`
/// carries the run's identifier (sent once, by worker 0, to everyone, so that every
/// process of a run uses the same). `saver` keeps this worker's file sequence,
/// `progress_saver` the progress writer's; `suspended` tells, once the input is done,
/// whether the run stopped to be resumed (its progress then ends at the last epoch
/// instead of closing the stream).
pub fn write_changelog<'scope, R: LakeRow + Clone + Ord>(
    rows: VecCollection<'scope, Time, R>,
    run_id: StreamVec<'scope, Time, String>,
    lake: Arc<Lake>,
    config: ChangelogConfig,
    saver: Option<Saver>,
    progress_saver: Option<Saver>,
    suspended: Rc<dyn Fn() -> bool>,
) -> Result<(), String> {
    let counts = write_updates(rows, run_id.clone(), lake.clone(), config.clone(), saver)?;
    let progress = ProgressConfig { max_rows: config.max_rows, max_age: config.max_age };
    write_progress::<R>(counts, run_id, lake, progress, progress_saver, suspended)
}

/// Writes this worker's updates; returns the number of updates at each time it wrote,
/// at that time, once the file holding them is published.
fn write_updates<'scope, R: LakeRow + Clone + Ord>(
    rows: VecCollection<'scope, Time, R>,
    run_id: StreamVec<'scope, Time, String>,
    lake: Arc<Lake>,
    config: ChangelogConfig,
    mut saver: Option<Saver>,
) -> Result<StreamVec<'scope, Time, (Time, u64)>, String> {
    let restored = saver.as_ref().and_then(Saver::restore);
    let (lower, seq): (Time, u64) = match &restored {
        Some(restored) => from_json(R::DATASET, &restored.state)?,
        None => (0, 0),
    };
    // A resumed run first takes back the files the interrupted run wrote after the
    // checkpoint: it writes their epochs again (at its own epochs).
    let mut take_back = restored.map(|_| seq);
    let mut builder = OperatorBuilder::new(format!("Changelog:{}", R::DATASET), rows.inner.scope());
    let mut input = builder.new_input(rows.inner, Pipeline);
    let mut run_in = builder.new_input(run_id, Pipeline);
    let (counts_out, counts) = builder.new_output();
    let mut counts_out = OutputBuilder::<_, CapacityContainerBuilder<Vec<(Time, u64)>>>::from(counts_out);
    builder.build(move |_| {
        let mut run_id: Option<String> = None;
        let mut caps = CapabilitySet::new();
        let mut queue = EpochQueue::<Vec<(R, Time, isize)>>::default();
        let mut files = Files {
            lake: lake.clone(),
            worker: config.worker,
            open: None,
            buffer: Vec::new(),
            announce: Vec::new(),
            ready: Vec::new(),
            seq,
            lower,
        };
        // When the oldest row in the buffer arrived (the file's age, for `max_age`).
        let mut oldest: Option<Instant> = None;
        // The last epoch applied: a cut with no next epoch (a stop) ends the file there.
        let mut applied: Option<Time> = None;
        move |frontiers| {
            input.for_each(|cap, batch| {
                let Some(&time) = cap.least() else { return };
                if let Some(cap) = cap.retain_least(0) {
                    caps.insert(cap);
                }
                // Updates may be stamped later than the message that carries them.
                if batch.iter().all(|u| u.1 == time) {
                    queue.at(time).append(batch);
                } else {
                    for update in batch.drain(..) {
                        queue.at(update.1).push(update);
                    }
                }
            });
            run_in.for_each(|_, ids| {
                if let Some(id) = ids.pop() {
                    run_id = Some(id);
                }
            });
            let frontier = combined_frontier(frontiers);
            let Some(run_id) = run_id.as_deref() else { return };
            if let Some(from) = take_back.take() {
                let worker = config.worker;
                take_back_files(&lake, R::DATASET, "changelog", |name| {
                    parse_updates_name(name).is_some_and(|(run, w, seq)| run == run_id && w == worker && seq >= from)
                });
            }
            while let Some((time, mut updates)) = queue.pop_complete(frontier) {
                if let Some(saver) = saver.as_mut() {
                    saver.before_epoch(time, |_| files.cut(run_id, Some(time), applied));
                }
                applied = applied.max(Some(time));
                if config.resolution == 0 {
                    // One update per row and time, as the capture protocol counts them (a
                    // row can be inserted and retracted within one epoch).
                    differential_dataflow::consolidation::consolidate_updates(&mut updates);
                    if !updates.is_empty() {
                        files.announce.push((time, updates.len() as u64));
                    }
                    files.buffer.append(&mut updates);
                    continue;
                }
                let index = time / config.resolution;
                if files.open.as_ref().is_some_and(|i| i.index != index) {
                    files.close_interval();
                }
                let interval = files.open.get_or_insert_with(|| Interval {
                    index,
                    first: time,
                    last: time,
                    updates: Vec::new(),
                    consolidated: 0,
                });
                interval.add(time, updates);
            }
            if let Some(saver) = saver.as_mut() {
                saver.at_frontier(frontier, |_| files.cut(run_id, frontier, applied));
            }
            // An interval the frontier has left is complete.
            if files.open.as_ref().is_some_and(|i| frontier.is_none_or(|f| f / config.resolution > i.index)) {
                files.close_interval();
            }
            // What the open interval will hold is not covered by a file written now.
            let upper = match (&files.open, frontier) {
                (Some(interval), _) => (interval.index * config.resolution).max(files.lower),
                (None, Some(f)) => f,
                (None, None) => Time::MAX,
            };
            if files.buffer.is_empty() {
                oldest = None;
            } else if oldest.is_none() {
                oldest = Some(Instant::now());
            }
            let aged = config.max_age.is_some_and(|age| oldest.is_some_and(|o| o.elapsed() >= age));
            if !files.buffer.is_empty() && (files.buffer.len() >= config.max_rows || aged || frontier.is_none()) {
                files.write(run_id, upper);
            }
            if !files.ready.is_empty() {
                let mut out = counts_out.activate();
                for (time, count) in files.ready.drain(..) {
                    out.session(&caps.delayed(&time)).give((time, count));
                }
            }
            // Hold a capability only for the epochs still to announce: stashed, in the open
            // interval, or in the buffer (counts are in epoch order).
            let pending =
                [queue.first_time(), files.open.as_ref().map(|i| i.first), files.announce.first().map(|c| c.0)];
            match pending.into_iter().flatten().min() {
                Some(t) => caps.downgrade([t]),
                None => caps = CapabilitySet::new(),
            }
        }
    });
    Ok(counts)
}

/// Removes the objects of `collection` in `dataset` (`changelog` or
/// `changelog/_progress`) that `doomed` selects by name; a failure fails the run.
pub(super) fn take_back_files(lake: &Lake, collection: &str, dataset: &str, doomed: impl Fn(&str) -> bool) {
    match lake.destination().remove_where(&format!("{dataset}/{collection}"), doomed) {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            "{dataset}/{collection}: removed {n} file(s) the interrupted run wrote after its checkpoint; the resumed run writes their updates again"
        ),
        Err(e) => lake.report_error(e.to_string()),
    }
}
