//! The skeleton of a sink that writes what the watermark has made complete.
//!
//! Background: lake files are immutable and named deterministically, so a sink may only
//! write data that can no longer change. It learns that from the pipeline watermark: it
//! applies its input epoch by epoch, in order, together with the watermark reports of
//! the same epochs, and hands `logic` each epoch's data with the watermark reached.
//! Anything with event time below that watermark is complete.

use std::fmt::Debug;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::{ParallelizationContract, Pipeline};
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use tradeflow_model::{Time, WatermarkReport};
use tradeflow_operators::GlobalWatermark;
use tradeflow_operators::epochs::{EpochQueue, combined_frontier};

/// One completed epoch as a watermarked sink sees it.
pub struct Step<'a, D> {
    /// The epoch.
    pub time: Time,
    /// The epoch's data.
    pub data: &'a mut Vec<D>,
    /// The pipeline watermark after the epoch.
    pub watermark: i64,
    /// True for the last call: every input is done and nothing more will arrive.
    pub done: bool,
}

struct Epoch<D> {
    data: Vec<D>,
    reports: Vec<WatermarkReport>,
}

impl<D> Default for Epoch<D> {
    fn default() -> Self {
        Epoch { data: Vec::new(), reports: Vec::new() }
    }
}

/// Builds a sink named `name` over `data` (distributed by `pact`) and the broadcast
/// `watermarks` of `reporters` reporters. `logic` sees every epoch in order, then a final
/// call with `done` once all input is complete.
pub fn watermarked_sink<'scope, D, P, L>(
    name: &str,
    data: StreamVec<'scope, Time, D>,
    pact: P,
    watermarks: StreamVec<'scope, Time, WatermarkReport>,
    reporters: usize,
    mut logic: L,
) where
    D: Clone + Debug + 'static,
    P: ParallelizationContract<Time, Vec<D>>,
    L: FnMut(Step<'_, D>) + 'static,
{
    let mut builder = OperatorBuilder::new(name.to_owned(), data.scope());
    let mut data_in = builder.new_input(data, pact);
    let mut marks_in = builder.new_input(watermarks, Pipeline);
    builder.build(move |_| {
        let mut queue = EpochQueue::<Epoch<D>>::default();
        let mut watermark = GlobalWatermark::new(reporters);
        let mut finished = false;
        move |frontiers| {
            data_in.for_each(|cap, batch| {
                let Some(&time) = cap.least() else { return };
                queue.at(time).data.append(batch);
            });
            marks_in.for_each(|cap, batch| {
                let Some(&time) = cap.least() else { return };
                queue.at(time).reports.append(batch);
            });
            let frontier = combined_frontier(frontiers);
            while let Some((time, mut epoch)) = queue.pop_complete(frontier) {
                for report in &epoch.reports {
                    watermark.observe(report);
                }
                logic(Step { time, data: &mut epoch.data, watermark: watermark.get(), done: false });
            }
            if frontier.is_none() && !finished {
                finished = true;
                logic(Step { time: Time::MAX, data: &mut Vec::new(), watermark: i64::MAX, done: true });
            }
        }
    });
}
