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
//! Files are cut at `max_rows` updates, after `max_age` of wall-clock time on live runs,
//! at every checkpoint boundary of a checkpointed run (so a checkpoint keeps only the
//! file sequence number), and at the end. Epochs are wall-clock milliseconds, so every
//! run has its own history:
//! files are named `<run_id>-w<worker>-<seq>.parquet` and rows carry `run_id`.

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
}

/// Captures `rows` into the lake's changelog (see the module documentation). `run_id`
/// carries the run's identifier (sent once, by worker 0, to everyone, so that every
/// process of a run uses the same).
pub fn write_changelog<'scope, R: LakeRow + Clone>(
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
        let mut started = Instant::now();
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
            // At a boundary (`upto`: the next epoch, or the frontier) the buffer is written
            // out, so the part is just the file sequence.
            let cut = |upto: Option<Time>, buffer: &mut Vec<_>, seq: &mut u64, lower: &mut Time| {
                if !buffer.is_empty() {
                    write(buffer, upto.unwrap_or(Time::MAX), seq, lower);
                }
                Part { state: to_json(&(*lower, *seq)), ..Part::default() }
            };
            while let Some((time, mut updates)) = queue.pop_complete(frontier) {
                if let Some(saver) = saver.as_mut() {
                    saver.before_epoch(time, |_| cut(Some(time), &mut buffer, &mut seq, &mut lower));
                }
                if buffer.is_empty() {
                    started = Instant::now();
                }
                buffer.append(&mut updates);
            }
            if let Some(saver) = saver.as_mut() {
                saver.at_frontier(frontier, |_| cut(frontier, &mut buffer, &mut seq, &mut lower));
            }
            let upper = frontier.unwrap_or(Time::MAX);
            let aged = config.max_age.is_some_and(|age| started.elapsed() >= age);
            if !buffer.is_empty() && (buffer.len() >= config.max_rows || aged || frontier.is_none()) {
                write(&mut buffer, upper, &mut seq, &mut lower);
            }
        }
    });
    Ok(())
}
