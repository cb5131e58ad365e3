//! The skeleton of a sink that writes what the watermark has made complete.
//!
//! Background: lake files are immutable and named deterministically, so a sink may only
//! write data that can no longer change. It learns that from the pipeline watermark: it
//! applies its input epoch by epoch, in order, together with the watermark reports of
//! the same epochs, and hands its [`SinkLogic`] each epoch's data with the watermark
//! reached. Anything with event time below that watermark is complete.
//!
//! Checkpoints: between two epochs, when a checkpoint boundary lies between them, the
//! sink saves its watermark and the logic's [`SinkLogic::save`]; a resumed run restores
//! both before its first epoch. A run that stops (rather than ends) never makes the
//! final call: what is still open stays open for the resumed run.

use std::fmt::Debug;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::{ParallelizationContract, Pipeline};
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use tradeflow_model::checkpoint::{Part, Restored, Saver, Validity, join_state, split_state};
use tradeflow_model::{Time, WatermarkReport};
use tradeflow_operators::GlobalWatermark;
use tradeflow_operators::epochs::{EpochQueue, combined_frontier};

/// One completed epoch as a watermarked sink sees it.
pub struct Step<'a, D> {
    /// The epoch.
    pub time: Time,
    /// The epoch's data, in the batches it arrived in (moved, not copied, out of timely's
    /// messages: a fast replay's epochs hold megabytes, and gathering them in one vector
    /// copied every record and faulted in fresh pages as it grew).
    pub data: &'a mut Vec<Vec<D>>,
    /// The pipeline watermark after the epoch.
    pub watermark: i64,
    /// True for the last call: every input is done and the watermark is at its end.
    pub done: bool,
}

/// What a watermarked sink does with its epochs, and what it keeps at a checkpoint.
pub trait SinkLogic<D>: 'static {
    /// Handles one epoch.
    fn step(&mut self, step: Step<'_, D>);
    /// The state between epochs, for the checkpoint boundaries `valid`.
    fn save(&mut self, _valid: Validity) -> Part {
        Part::default()
    }
    /// Restores what [`SinkLogic::save`] saved (state and needed payloads).
    fn restore(&mut self, _restored: Restored) -> Result<(), String> {
        Ok(())
    }
}

impl<D, F: FnMut(Step<'_, D>) + 'static> SinkLogic<D> for F {
    fn step(&mut self, step: Step<'_, D>) {
        self(step)
    }
}

struct Epoch<D> {
    data: Vec<Vec<D>>,
    reports: Vec<WatermarkReport>,
}

impl<D> Default for Epoch<D> {
    fn default() -> Self {
        Epoch { data: Vec::new(), reports: Vec::new() }
    }
}

/// Builds a sink named `name` over `data` (distributed by `pact`) and the broadcast
/// `watermarks` of `reporters` reporters. `logic` sees every epoch in order, then a final
/// call with `done` once all input is complete and the watermark has reached its end.
/// With `saver`, the sink is checkpointed (see the module documentation).
pub fn watermarked_sink<'scope, D, P, L>(
    name: &str,
    data: StreamVec<'scope, Time, D>,
    pact: P,
    watermarks: StreamVec<'scope, Time, WatermarkReport>,
    reporters: usize,
    mut saver: Option<Saver>,
    mut logic: L,
) -> Result<(), String>
where
    D: Clone + Debug + 'static,
    P: ParallelizationContract<Time, Vec<D>>,
    L: SinkLogic<D>,
{
    let mut watermark = GlobalWatermark::new(reporters);
    if let Some(restored) = saver.as_ref().and_then(Saver::restore) {
        let (head, tail) = split_state(&restored.state)?;
        watermark = tradeflow_model::checkpoint::from_json(name, head)?;
        logic.restore(Restored { state: tail.to_vec(), ..restored })?;
    }
    let mut builder = OperatorBuilder::new(name.to_owned(), data.scope());
    let mut data_in = builder.new_input(data, pact);
    let mut marks_in = builder.new_input(watermarks, Pipeline);
    builder.build(move |_| {
        let mut queue = EpochQueue::<Epoch<D>>::default();
        let mut finished = false;
        move |frontiers| {
            data_in.for_each(|cap, batch| {
                let Some(&time) = cap.least() else { return };
                let epoch = queue.at(time);
                if !batch.is_empty() {
                    epoch.data.push(std::mem::take(batch));
                }
            });
            marks_in.for_each(|cap, batch| {
                let Some(&time) = cap.least() else { return };
                queue.at(time).reports.append(batch);
            });
            let frontier = combined_frontier(frontiers);
            // The watermark, then the logic's state.
            let save = |logic: &mut L, watermark: &GlobalWatermark, valid| {
                let part = logic.save(valid);
                Part { state: join_state(&tradeflow_model::checkpoint::to_json(watermark), &part.state), ..part }
            };
            while let Some((time, mut epoch)) = queue.pop_complete(frontier) {
                if let Some(saver) = saver.as_mut() {
                    saver.before_epoch(time, |valid| save(&mut logic, &watermark, valid));
                }
                for report in &epoch.reports {
                    watermark.observe(report);
                }
                logic.step(Step { time, data: &mut epoch.data, watermark: watermark.get(), done: false });
            }
            if frontier.is_none() && !finished && watermark.get() == i64::MAX {
                finished = true;
                logic.step(Step { time: Time::MAX, data: &mut Vec::new(), watermark: i64::MAX, done: true });
            }
            if let Some(saver) = saver.as_mut() {
                saver.at_frontier(frontier, |valid| save(&mut logic, &watermark, valid));
            }
        }
    });
    Ok(())
}
