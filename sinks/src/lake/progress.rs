//! `changelog/_progress/<collection>/*.parquet`: the changelog's progress statements.
//!
//! Background: in differential's capture protocol a `Progress` message states, for an
//! interval of times `[lower, upper)`, exactly how many distinct updates the collection
//! has at each time in it. Every worker's changelog writer sends, at each epoch it
//! wrote, the number of updates there, once their file is queued for upload; this
//! operator gathers them on worker 0. Once its input frontier passes a time, every
//! worker's count for that time has arrived, so it can state `[lower, frontier)`. Its
//! files are uploaded after everything the process queued before them, so a statement
//! never appears before the files of its process that it counts.
//!
//! Semantics: statements tile the run's epochs from 0: each starts where the previous
//! one ended. Statements are written in files like the updates: every `max_age` on live
//! runs (also when nothing changed, so readers see time pass), after `max_rows` counts,
//! at a checkpoint boundary with counts to state (so a checkpoint keeps only `lower` and
//! the file sequence) and at the end. The last statement's `upper` is
//! null (the stream is complete) unless the run stopped to be resumed: it then ends
//! after the last epoch, and the resumed run goes on from there.

use super::changelog::take_back_files;
use super::parquet::{LakeRow, ProgressStatement, encode, progress_batch};
use super::store::{Lake, Payload};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use tradeflow_lake::changelog::{PROGRESS_DIR, parse_progress_name, progress_key};
use tradeflow_model::Time;
use tradeflow_model::checkpoint::{Part, Saver, from_json, to_json};
use tradeflow_operators::epochs::{EpochQueue, combined_frontier};

/// When the progress writer writes a file.
#[derive(Clone, Debug)]
pub struct ProgressConfig {
    /// Counts per file at most.
    pub max_rows: usize,
    /// Wall-clock time after which progress made is written (live runs).
    pub max_age: Option<Duration>,
}

/// The state a checkpoint keeps: where the next statement starts, and the file sequence.
#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    lower: Time,
    seq: u64,
}

/// States the updates counted in `counts` (`(time, number of updates)` at `time`, from
/// every worker) for `R`'s collection, from worker 0 (see the module documentation).
pub fn write_progress<'scope, R: LakeRow>(
    counts: StreamVec<'scope, Time, (Time, u64)>,
    run_id: StreamVec<'scope, Time, String>,
    lake: Arc<Lake>,
    config: ProgressConfig,
    mut saver: Option<Saver>,
    suspended: Rc<dyn Fn() -> bool>,
) -> Result<(), String> {
    let restored = saver.as_ref().and_then(Saver::restore);
    let Saved { mut lower, mut seq } = match &restored {
        Some(restored) => from_json("the changelog's progress", &restored.state)?,
        None => Saved { lower: 0, seq: 0 },
    };
    // As the updates writer: statements written after the checkpoint are taken back.
    let mut take_back = restored.map(|_| seq);
    // Every count goes to worker 0, which alone writes; the others only take part in
    // checkpoints.
    let writes = counts.scope().index() == 0;
    let mut builder = OperatorBuilder::new(format!("ChangelogProgress:{}", R::DATASET), counts.scope());
    let mut input = builder.new_input(counts, Exchange::new(|_: &(Time, u64)| 0));
    let mut run_in = builder.new_input(run_id, Pipeline);
    builder.build(move |_| {
        let mut run_id: Option<String> = None;
        let mut queue = EpochQueue::<Vec<(Time, u64)>>::default();
        // The counts of the times below the frontier not yet stated.
        let mut counted: BTreeMap<Time, u64> = BTreeMap::new();
        let mut last_write = Instant::now();
        let mut applied: Option<Time> = None;
        let mut ended = false;
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
            if ended {
                return;
            }
            if let Some(from) = take_back.take().filter(|_| writes) {
                take_back_files(&lake, R::DATASET, PROGRESS_DIR, |name| {
                    parse_progress_name(name).is_some_and(|(run, seq)| run == run_id && seq >= from)
                });
            }
            if !writes {
                if let Some(saver) = saver.as_mut() {
                    saver.at_frontier(frontier, |_| part(lower, seq));
                }
                ended = frontier.is_none();
                return;
            }
            // States `[lower, upper)` with the counts below `upper`, in one file.
            let state = |upper: Option<Time>, counted: &mut BTreeMap<Time, u64>, seq: &mut u64, lower: &mut Time| {
                let counts: Vec<(Time, u64)> = match upper {
                    Some(upper) => {
                        let later = counted.split_off(&upper);
                        std::mem::replace(counted, later).into_iter().collect()
                    }
                    None => std::mem::take(counted).into_iter().collect(),
                };
                let statement = ProgressStatement { lower: *lower, upper, counts };
                let key = progress_key(R::DATASET, run_id, *seq);
                let rows = statement.counts.len().max(1) as u64;
                match encode(super::parquet::progress_schema(), &[progress_batch(&[statement], run_id)], Vec::new()) {
                    Ok(bytes) => lake.publish_after_earlier(key, Payload::Bytes(bytes), rows),
                    Err(e) => lake.report_error(format!("encoding {key}: {e}")),
                }
                *seq += 1;
                if let Some(upper) = upper {
                    *lower = upper;
                }
            };
            // At a checkpoint boundary `upto`, every count below it is stated, so the part is
            // just where the next statement starts (no file when there is none to state: the
            // next statement covers the quiet interval too).
            let cut = |upto: Time, counted: &mut BTreeMap<Time, u64>, seq: &mut u64, lower: &mut Time| {
                if counted.first_key_value().is_some_and(|(t, _)| *t < upto) {
                    state(Some(upto), counted, seq, lower);
                }
                part(*lower, *seq)
            };
            while let Some((time, counts)) = queue.pop_complete(frontier) {
                if let Some(saver) = saver.as_mut() {
                    saver.before_epoch(time, |_| cut(time, &mut counted, &mut seq, &mut lower));
                }
                applied = applied.max(Some(time));
                for (at, count) in counts {
                    *counted.entry(at).or_default() += count;
                }
            }
            match frontier {
                Some(f) => {
                    if let Some(saver) = saver.as_mut() {
                        saver.at_frontier(frontier, |_| cut(f, &mut counted, &mut seq, &mut lower));
                    }
                    let aged = config.max_age.is_some_and(|age| last_write.elapsed() >= age);
                    if f > lower && (aged || counted.len() >= config.max_rows) {
                        state(Some(f), &mut counted, &mut seq, &mut lower);
                        last_write = Instant::now();
                    }
                }
                None => {
                    // The stream is complete, unless the run stopped to be resumed: then the
                    // statement ends after the last epoch, where the resumed run goes on.
                    let upper = suspended().then(|| applied.map_or(lower, |a| a + 1).max(lower));
                    if upper.is_none_or(|u| u > lower) {
                        state(upper, &mut counted, &mut seq, &mut lower);
                    }
                    ended = true;
                    if let Some(saver) = saver.as_mut() {
                        saver.at_frontier(None, |_| part(lower, seq));
                    }
                }
            }
        }
    });
    Ok(())
}

/// The checkpoint part of a progress writer whose next statement starts at `lower` and
/// whose next file is number `seq`.
fn part(lower: Time, seq: u64) -> Part {
    Part { state: to_json(&Saved { lower, seq }), ..Part::default() }
}
