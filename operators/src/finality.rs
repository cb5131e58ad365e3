//! The finality gate: window rows assembled from the differential collections and
//! passed at once as provisional; a window's rows become final when the pipeline
//! watermark passes its end, and nothing about that window passes after.
//!
//! Background: the analytics ([`crate::analytics`]) maintain, per window (symbol,
//! start), three differential collections: its sum (`count_total`), and, while it is
//! not final, its volatility ([`Rated`]) and anomalies (the `Derive` reduce). They
//! change whenever a window does, and also once it is final: a window's volatility and
//! anomalies are retracted the tick after it is final (it is no longer a reader,
//! [`crate::windows`]), its sum when it is released. Both are changes to windows
//! already final.
//! Downstream, sinks must see each final row once and never corrected, and must not
//! mistake a release for a correction: this gate is where the two meet. (The gate never
//! retracts a final row; the arrangement the sinks read expires it a tick later, a
//! retraction the sinks know for what it is: [`crate::rows`].) It is also where
//! a row is assembled (sum and volatility, [`window_row`]), once per change, so that the
//! differential operators carry small values rather than whole rows.
//!
//! Semantics, per tick `t` (the analytics' time: [`crate::windows::tick_of`]; the reports
//! of every epoch in the tick apply there), in order, once the tick is complete:
//! 1. the updates of `t` to windows not yet final (end after the watermark) are applied
//!    to the gate's open windows; updates to final windows are releases, and are dropped;
//! 2. each changed window's row is assembled again, and if it differs from the row
//!    passed on before, that row is retracted and the new one inserted, at `t`;
//!    anomalies pass as they come;
//! 3. the epoch's watermark reports are applied;
//! 4. every open window whose end the watermark has reached has its row and anomalies
//!    retracted and inserted again with `is_final`, at `t`. The windows it read are all
//!    final by then and none is released before `t + 1`, so it holds the SPEC's final
//!    values.
//!
//! State: the open windows (sum, volatility, row and anomalies passed on). Checkpoints
//! save them with the watermark; a resumed run drops what reaches it at [`REPLAY`], the
//! collections the restored windows rebuild, since its state already holds them.

use crate::agg::WindowAgg;
use crate::epochs::{EpochQueue, OutputCaps, combined_frontier};
use crate::metrics::window_row;
use crate::volatility::Rated;
use crate::watermark::GlobalWatermark;
use crate::windows::{REPLAY, WindowKey, tick_of};
use differential_dataflow::consolidation::consolidate;
use differential_dataflow::{AsCollection, VecCollection};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use tradeflow_model::checkpoint::{Part, Saver};
use tradeflow_model::{Anomaly, Symbol, Time, WatermarkReport, WindowMetrics, WindowSpec};

/// One open window: what the collections hold for it, and what was passed on.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Open {
    /// Its sum, when it has trades.
    sum: Option<WindowAgg>,
    /// Its volatility.
    rated: Option<Rated>,
    /// The row passed on.
    row: Option<WindowMetrics>,
    /// The anomalies passed on, with their counts.
    anomalies: Vec<(Anomaly, isize)>,
    /// Changed in the tick being applied.
    #[serde(skip)]
    changed: bool,
}

impl Open {
    fn is_empty(&self) -> bool {
        self.sum.is_none() && self.rated.is_none() && self.row.is_none() && self.anomalies.is_empty()
    }
}

/// Sets `slot` to `value` for an insertion, and clears it for the retraction of what it
/// holds: a change is one of each, in either order.
fn apply<T: PartialEq>(slot: &mut Option<T>, value: T, diff: isize) {
    if diff > 0 {
        *slot = Some(value);
    } else if slot.as_ref() == Some(&value) {
        *slot = None;
    }
}

#[derive(Default)]
struct Epoch {
    sums: Vec<((WindowKey, WindowAgg), isize)>,
    rated: Vec<((Symbol, Rated), isize)>,
    anomalies: Vec<(Anomaly, isize)>,
    reports: Vec<WatermarkReport>,
}

/// What one tick passes on.
#[derive(Default)]
struct Changes {
    metrics: Vec<(WindowMetrics, Time, isize)>,
    anomalies: Vec<(Anomaly, Time, isize)>,
}

/// The gate's state.
struct State {
    spec: WindowSpec,
    watermark: GlobalWatermark,
    /// Open windows by start, then symbol.
    open: BTreeMap<i64, FxHashMap<Symbol, Open>>,
    /// The windows changed in the tick being applied.
    changed: Vec<WindowKey>,
    /// Open windows with a provisional row.
    rows: usize,
}

/// The state as a checkpoint keeps it.
#[derive(Serialize, Deserialize)]
struct Saved {
    watermark: GlobalWatermark,
    open: Vec<(WindowKey, Open)>,
}

impl State {
    /// The open window (symbol, start), marked changed.
    fn window(&mut self, symbol: &Symbol, start: i64) -> &mut Open {
        let open = self.open.entry(start).or_default().entry(symbol.clone()).or_default();
        if !open.changed {
            open.changed = true;
            self.changed.push((symbol.clone(), start));
        }
        open
    }

    /// Applies one tick's updates (steps 1 and 2 of the module docs).
    fn apply(&mut self, mut epoch: Epoch, time: Time, out: &mut Changes) {
        let final_through = self.watermark.get();
        let spec = self.spec;
        let live = |start: i64| spec.end_of(start) > final_through;
        // A window's sum and volatility change at most once a time (a retraction and an
        // insertion, `apply` takes them in either order), so only anomalies consolidate.
        for (((symbol, start), sum), diff) in epoch.sums {
            if live(start) {
                apply(&mut self.window(&symbol, start).sum, sum, diff);
            }
        }
        for ((symbol, rated), diff) in epoch.rated {
            if live(rated.window.start) {
                apply(&mut self.window(&symbol, rated.window.start).rated, rated, diff);
            }
        }
        consolidate(&mut epoch.anomalies);
        for (anomaly, diff) in epoch.anomalies {
            if live(anomaly.window_start) {
                let open = self.window(&anomaly.symbol, anomaly.window_start);
                match open.anomalies.iter().position(|(a, _)| *a == anomaly) {
                    Some(i) => {
                        open.anomalies[i].1 += diff;
                        if open.anomalies[i].1 == 0 {
                            open.anomalies.swap_remove(i);
                        }
                    }
                    None => open.anomalies.push((anomaly.clone(), diff)),
                }
                out.anomalies.push((anomaly, time, diff));
            }
        }
        for (symbol, start) in std::mem::take(&mut self.changed) {
            let windows = self.open.get_mut(&start).expect("a changed window is open");
            let open = windows.get_mut(&symbol).expect("a changed window is open");
            open.changed = false;
            let volatility = open.rated.and_then(|r| r.sigma);
            let row = open.sum.as_ref().map(|sum| window_row(&symbol, start, sum, volatility, spec));
            if row != open.row {
                self.rows = self.rows + usize::from(row.is_some()) - usize::from(open.row.is_some());
                out.metrics.extend(open.row.take().map(|old| (old, time, -1)));
                out.metrics.extend(row.clone().map(|new| (new, time, 1)));
                open.row = row;
            }
            if open.is_empty() {
                windows.remove(&symbol);
                if windows.is_empty() {
                    self.open.remove(&start);
                }
            }
        }
    }

    /// Replaces the rows of every open window ending at or before the watermark by their
    /// final rows (step 4).
    fn finalize(&mut self, time: Time, out: &mut Changes) {
        let watermark = self.watermark.get();
        while let Some(entry) = self.open.first_entry() {
            if self.spec.end_of(*entry.key()) > watermark {
                break;
            }
            for (_symbol, open) in entry.remove() {
                if let Some(row) = open.row {
                    out.metrics.push((WindowMetrics { is_final: true, ..row.clone() }, time, 1));
                    self.rows -= 1;
                    out.metrics.push((row, time, -1));
                }
                for (anomaly, count) in open.anomalies {
                    out.anomalies.push((Anomaly { is_final: true, ..anomaly.clone() }, time, count));
                    out.anomalies.push((anomaly, time, -count));
                }
            }
        }
    }
}

/// The gated rows (see the module docs), on the worker that owns each symbol.
pub struct Gated<'scope> {
    /// Window metrics: provisional changes, then the final row.
    pub metrics: VecCollection<'scope, Time, WindowMetrics>,
    /// Anomalies, likewise.
    pub anomalies: VecCollection<'scope, Time, Anomaly>,
    /// Windows with a provisional row on this worker.
    pub open_windows: Rc<Cell<usize>>,
}

/// The collections the gate reads, per window.
pub struct Derived<'scope> {
    /// Each held window's sum (`count_total`'s output).
    pub sums: VecCollection<'scope, Time, (WindowKey, WindowAgg)>,
    /// Each open window's volatility.
    pub rated: VecCollection<'scope, Time, (Symbol, Rated)>,
    /// The open windows' anomalies.
    pub anomalies: VecCollection<'scope, Time, Anomaly>,
}

/// Gates the `derived` collections of windows of `spec` by the watermark (see the module
/// docs). `watermarks` must be broadcast; `reporters` is the number of distinct reporters.
pub fn gate<'scope>(
    derived: Derived<'scope>,
    watermarks: StreamVec<'scope, Time, WatermarkReport>,
    spec: WindowSpec,
    reporters: usize,
    tick: Time,
    mut saver: Option<Saver>,
) -> Result<Gated<'scope>, String> {
    let restored = match saver.as_ref() {
        Some(saver) => saver.restore_required("the window analytics")?,
        None => None,
    };
    let mut state =
        State { spec, watermark: GlobalWatermark::new(reporters), open: BTreeMap::new(), changed: Vec::new(), rows: 0 };
    let resumed = restored.is_some();
    if let Some(restored) = restored {
        let saved: Saved = tradeflow_model::checkpoint::from_json("the finality gate", &restored.state)?;
        state.watermark = saved.watermark;
        for ((symbol, start), open) in saved.open {
            state.rows += usize::from(open.row.is_some());
            state.open.entry(start).or_default().insert(symbol, open);
        }
    }
    let open_windows = Rc::new(Cell::new(state.rows));
    let reported = open_windows.clone();

    let scope = derived.sums.inner.scope();
    let mut builder = OperatorBuilder::new("Finality".to_owned(), scope);
    let mut sums_in = builder.new_input(
        derived.sums.inner,
        Exchange::new(|((key, _), _, _): &((WindowKey, WindowAgg), Time, isize)| key.0.route()),
    );
    let mut rated_in = builder.new_input(
        derived.rated.inner,
        Exchange::new(|((symbol, _), _, _): &((Symbol, Rated), Time, isize)| symbol.route()),
    );
    let mut anomalies_in = builder
        .new_input(derived.anomalies.inner, Exchange::new(|(row, _, _): &(Anomaly, Time, isize)| row.symbol.route()));
    let mut marks_in = builder.new_input(watermarks, Pipeline);
    let (metrics_out, metrics) = builder.new_output();
    let (anomalies_out, anomalies) = builder.new_output();
    let mut metrics_out =
        OutputBuilder::<_, CapacityContainerBuilder<Vec<(WindowMetrics, Time, isize)>>>::from(metrics_out);
    let mut anomalies_out =
        OutputBuilder::<_, CapacityContainerBuilder<Vec<(Anomaly, Time, isize)>>>::from(anomalies_out);

    builder.build(move |initial| {
        drop(initial);
        let mut caps = OutputCaps::<2>::default();
        let mut queue = EpochQueue::<Epoch>::default();
        let mut changes = Changes::default();
        move |frontiers| {
            sums_in.for_each_stamp(|cap, batches| {
                caps.keep(&cap);
                enqueue(&mut queue, tick, batches, |epoch| &mut epoch.sums);
            });
            rated_in.for_each_stamp(|cap, batches| {
                caps.keep(&cap);
                enqueue(&mut queue, tick, batches, |epoch| &mut epoch.rated);
            });
            anomalies_in.for_each_stamp(|cap, batches| {
                caps.keep(&cap);
                enqueue(&mut queue, tick, batches, |epoch| &mut epoch.anomalies);
            });
            marks_in.for_each_stamp(|cap, batches| {
                let Some(&time) = cap.least() else { return };
                caps.keep(&cap);
                let epoch = queue.at(tick_of(time, tick));
                for batch in batches {
                    epoch.reports.append(batch);
                }
            });

            let frontier = combined_frontier(frontiers);
            while let Some((time, mut epoch)) = queue.pop_complete(frontier) {
                if let Some(saver) = saver.as_mut() {
                    saver.before_epoch(time, |_| save(&state));
                }
                let reports = std::mem::take(&mut epoch.reports);
                if !(resumed && time == tick_of(REPLAY, tick)) {
                    state.apply(epoch, time, &mut changes);
                }
                for report in &reports {
                    state.watermark.observe(report);
                }
                state.finalize(time, &mut changes);
                if !changes.metrics.is_empty() {
                    let cap = caps.at(0, time);
                    metrics_out.activate().session(&cap).give_iterator(changes.metrics.drain(..));
                }
                if !changes.anomalies.is_empty() {
                    let cap = caps.at(1, time);
                    anomalies_out.activate().session(&cap).give_iterator(changes.anomalies.drain(..));
                }
            }
            if let Some(saver) = saver.as_mut() {
                saver.at_frontier(frontier, |_| save(&state));
            }
            reported.set(state.rows);
            caps.hold(&queue);
        }
    });

    Ok(Gated { metrics: metrics.as_collection(), anomalies: anomalies.as_collection(), open_windows })
}

/// Queues each update of `batches` in the `list` of its tick.
fn enqueue<'a, D: 'a>(
    queue: &mut EpochQueue<Epoch>,
    tick: Time,
    batches: impl Iterator<Item = &'a mut Vec<(D, Time, isize)>>,
    list: fn(&mut Epoch) -> &mut Vec<(D, isize)>,
) {
    for batch in batches {
        for (data, time, diff) in batch.drain(..) {
            list(queue.at(tick_of(time, tick))).push((data, diff));
        }
    }
}

fn save(state: &State) -> Part {
    let mut open: Vec<(WindowKey, Open)> = state
        .open
        .iter()
        .flat_map(|(start, windows)| windows.iter().map(|(symbol, open)| ((symbol.clone(), *start), open.clone())))
        .collect();
    open.sort_by(|a, b| a.0.cmp(&b.0));
    let saved = Saved { watermark: state.watermark.clone(), open };
    Part { state: tradeflow_model::checkpoint::to_json(&saved), ..Part::default() }
}
