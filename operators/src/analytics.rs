//! The window analytics operator: pane aggregates in, window metrics and anomalies out.
//!
//! Background: sources send, per epoch, the exact aggregate of each (symbol, pane) they
//! saw (a differential collection whose *difference* is a [`WindowAgg`]), plus
//! [`WatermarkReport`]s. This operator routes panes to the worker owning the symbol and
//! maintains a [`WindowBook`] there.
//!
//! Semantics: outputs are differential collections of [`WindowMetrics`] and [`Anomaly`]
//! rows at the epoch of the input that caused them. As an epoch completes (milliseconds
//! after its trades were read) each changed window's provisional row is retracted and
//! re-inserted with its new values; when the pipeline watermark (the minimum report)
//! passes a window's end, its row is replaced by the final row (`is_final`), which never
//! changes again. Final rows are exactly the SPEC 4-5 values over the accepted trades,
//! whatever the worker count or batching. `watermarks` must already be broadcast, so
//! every worker sees every report.

use crate::agg::WindowAgg;
use crate::book::{AnalyticsParams, Changes, WindowBook};
use crate::epochs::{EpochQueue, combined_frontier};
use crate::watermark::GlobalWatermark;
use differential_dataflow::{AsCollection, VecCollection};
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::CapabilitySet;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use tradeflow_model::checkpoint::{Part, Saver};
use tradeflow_model::{Anomaly, Symbol, Time, WatermarkReport, WindowMetrics};

/// A (symbol, pane) key: the pane `[start, start + S)` of one symbol.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Pane {
    /// The instrument.
    pub symbol: Symbol,
    /// Pane start, ms since the epoch (a multiple of the slide).
    pub start: i64,
}

/// The live and final window rows.
pub struct Analytics<'scope> {
    /// Window metrics, provisional and final.
    pub metrics: VecCollection<'scope, Time, WindowMetrics>,
    /// Anomalies, provisional and final.
    pub anomalies: VecCollection<'scope, Time, Anomaly>,
}

#[derive(Default)]
struct Epoch {
    panes: Vec<(Pane, WindowAgg)>,
    reports: Vec<WatermarkReport>,
}

/// The state a checkpoint keeps of one worker's analytics.
#[derive(Serialize, Deserialize)]
struct Saved {
    book: String,
    watermark: GlobalWatermark,
}

/// Maintains window metrics and anomalies from pane aggregates (see the module docs).
/// `reporters` is the number of distinct watermark reporters. With `saver`, the book is
/// saved at every checkpoint boundary and restored from the checkpoint a run resumes.
pub fn window_analytics<'scope>(
    panes: VecCollection<'scope, Time, Pane, WindowAgg>,
    watermarks: StreamVec<'scope, Time, WatermarkReport>,
    params: AnalyticsParams,
    reporters: usize,
    mut saver: Option<Saver>,
) -> Result<Analytics<'scope>, String> {
    let (mut book, mut watermark) = match saver.as_ref().and_then(Saver::restore) {
        Some(restored) => {
            let saved: Saved = tradeflow_model::checkpoint::from_json("the window analytics", &restored.state)?;
            (WindowBook::restore(params, &saved.book)?, saved.watermark)
        }
        None => (WindowBook::new(params), GlobalWatermark::new(reporters)),
    };
    let mut builder = OperatorBuilder::new("WindowAnalytics".to_owned(), panes.inner.scope());
    let route = Exchange::new(|(pane, _time, _agg): &(Pane, Time, WindowAgg)| pane.symbol.route());
    let mut panes_in = builder.new_input(panes.inner, route);
    let mut marks_in = builder.new_input(watermarks, Pipeline);
    let (metrics_out, metrics) = builder.new_output();
    let (anomalies_out, anomalies) = builder.new_output();
    let mut metrics_out =
        OutputBuilder::<_, CapacityContainerBuilder<Vec<(WindowMetrics, Time, isize)>>>::from(metrics_out);
    let mut anomalies_out =
        OutputBuilder::<_, CapacityContainerBuilder<Vec<(Anomaly, Time, isize)>>>::from(anomalies_out);

    builder.build(move |initial| {
        drop(initial);
        let mut caps = [CapabilitySet::new(), CapabilitySet::new()];
        let mut queue = EpochQueue::<Epoch>::default();
        let mut changes = Changes::default();
        move |frontiers| {
            panes_in.for_each_stamp(|cap, batches| {
                for (port, set) in caps.iter_mut().enumerate() {
                    if let Some(cap) = cap.retain_least(port) {
                        set.insert(cap);
                    }
                }
                for batch in batches {
                    for (pane, time, agg) in batch.drain(..) {
                        queue.at(time).panes.push((pane, agg));
                    }
                }
            });
            marks_in.for_each_stamp(|cap, batches| {
                let Some(&time) = cap.least() else { return };
                for (port, set) in caps.iter_mut().enumerate() {
                    if let Some(cap) = cap.retain_least(port) {
                        set.insert(cap);
                    }
                }
                let epoch = queue.at(time);
                for batch in batches {
                    epoch.reports.append(batch);
                }
            });

            let frontier = combined_frontier(frontiers);
            while let Some((time, epoch)) = queue.pop_complete(frontier) {
                if let Some(saver) = saver.as_mut() {
                    saver.before_epoch(time, |_| save(&book, &watermark));
                }
                for (pane, agg) in &epoch.panes {
                    book.apply(&pane.symbol, pane.start, agg);
                }
                for report in &epoch.reports {
                    watermark.observe(report);
                }
                book.end_epoch(watermark.get(), &mut changes);
                if !changes.metrics.is_empty() {
                    let cap = caps[0].delayed(&time);
                    let mut out = metrics_out.activate();
                    out.session(&cap).give_iterator(changes.metrics.drain(..).map(|(row, diff)| (row, time, diff)));
                }
                if !changes.anomalies.is_empty() {
                    let cap = caps[1].delayed(&time);
                    let mut out = anomalies_out.activate();
                    out.session(&cap).give_iterator(changes.anomalies.drain(..).map(|(row, diff)| (row, time, diff)));
                }
            }
            if let Some(saver) = saver.as_mut() {
                saver.at_frontier(frontier, |_| save(&book, &watermark));
            }
            // Hold capabilities only for the epochs still stashed.
            for set in caps.iter_mut() {
                match queue.first_time() {
                    Some(t) => set.downgrade([t]),
                    None => *set = CapabilitySet::new(),
                }
            }
        }
    });

    Ok(Analytics { metrics: metrics.as_collection(), anomalies: anomalies.as_collection() })
}

fn save(book: &WindowBook, watermark: &GlobalWatermark) -> Part {
    let saved = Saved { book: book.snapshot(), watermark: watermark.clone() };
    Part { state: tradeflow_model::checkpoint::to_json(&saved), ..Part::default() }
}
