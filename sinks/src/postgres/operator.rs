//! The sink operator: each worker hands its complete epochs to the process's writer.
//!
//! Background: the sink reads the batches of the arranged rows ([`Rows`]), which are
//! arranged on the worker the analytics routed each symbol to: each key is written by
//! exactly one worker, and that worker's epochs reach the writer in order. A batch holds
//! the consolidated updates of the epochs between two frontiers of its arrangement (their
//! timely time, the wall-clock millisecond their trades were read). Once both
//! arrangements' frontiers have passed an epoch, its updates become per-key states
//! ([`Changes::apply_epoch`], which drops the expiries of final rows). Everything that
//! completes in one activation is handed over at once, with the epoch up to which this
//! worker is complete (for the progress table). Nothing waits for the watermark:
//! provisional rows flow as soon as their epoch completes, final rows when the watermark
//! makes them so.

use super::changes::Changes;
use super::writer::PgSink;
use std::sync::Arc;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use tradeflow_model::{Anomaly, Time, WindowMetrics};
use tradeflow_operators::epochs::{EpochQueue, combined_frontier};
use tradeflow_operators::rows::{Rows, for_each_update};

#[derive(Default)]
struct Epoch {
    metrics: Vec<(WindowMetrics, isize)>,
    anomalies: Vec<(Anomaly, isize)>,
}

/// Writes the arranged `rows` to `sink`; `slot` is this worker's index within its
/// process. `run_id` carries the run's identifier (for the progress table).
pub fn write_postgres<'scope>(
    rows: &Rows<'scope>,
    run_id: StreamVec<'scope, Time, String>,
    sink: Arc<PgSink>,
    slot: usize,
) {
    let mut builder = OperatorBuilder::new("PostgreSQL".to_owned(), run_id.scope());
    let mut metrics_in = builder.new_input(rows.metrics.stream.clone(), Pipeline);
    let mut anomalies_in = builder.new_input(rows.anomalies.stream.clone(), Pipeline);
    let mut run_in = builder.new_input(run_id, Pipeline);
    builder.build(move |_| {
        let mut queue = EpochQueue::<Epoch>::default();
        let mut completed: Option<Time> = None;
        let mut done = false;
        move |frontiers| {
            metrics_in.for_each(|_, spans| {
                for_each_update(spans, |row, time, diff| queue.at(time).metrics.push((row.clone(), diff)));
            });
            anomalies_in.for_each(|_, spans| {
                for_each_update(spans, |row, time, diff| queue.at(time).anomalies.push((row.clone(), diff)));
            });
            run_in.for_each(|_, ids| {
                if let Some(id) = ids.first() {
                    sink.set_run_id(id);
                }
            });
            if done {
                return;
            }
            // The run id's input does not hold epochs back.
            let frontier = combined_frontier(&frontiers[..2]);
            let mut changes = Changes::default();
            while let Some((time, epoch)) = queue.pop_complete(frontier) {
                changes.apply_epoch(time, epoch.metrics, epoch.anomalies);
                completed = completed.max(Some(time));
            }
            let now_complete = match frontier {
                Some(f) => f.checked_sub(1).max(completed),
                None => completed,
            };
            let moved = now_complete > completed;
            completed = now_complete;
            if !changes.is_empty() || moved || frontier.is_none() {
                sink.hand_over(slot, changes, completed);
            }
            done = frontier.is_none();
        }
    });
}
