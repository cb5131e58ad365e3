//! Held windows: pane aggregates become window aggregates, and a window is retracted once
//! nothing can read it (differential's delay + negate pattern, driven by the watermark).
//!
//! Background: sources send, per epoch, the exact aggregate of each (symbol, pane) they
//! saw, carried as a differential *difference* ([`WindowAgg`]). This operator sends each
//! pane aggregate to the `W/S` windows holding the pane, keyed by (symbol, window start),
//! for `count_total` to sum in an arrangement ([`crate::analytics`]). A window's rows are
//! derived from the windows before it (volatility reads `K_v` back, a spike `K_b`, a
//! price jump the volatility of a window up to `K_b` back), so a window is needed until
//! every window that reads it is final: until the watermark reaches
//! `start + (K_b + K_v − 1)·S + W`. Then this operator retracts it, with the negation of
//! everything it sent for it ([`WindowAgg::negated`]), and the arrangement drops it once
//! compacted: state is bounded by the windows in that horizon, whatever the run's length.
//!
//! It also sends the *readers*: the held windows not yet final, the only ones whose rows
//! can still change, and so the only ones the analytics compute rows for.
//!
//! Semantics, per epoch `t`, in order (epochs are applied in order, as
//! [`crate::epochs`] describes):
//! 1. each pane aggregate goes to its windows at `t`, except to a window already final
//!    (its end at or before the watermark): dropped and counted, which never happens
//!    while sources honour their watermark reports; a window held for the first time
//!    becomes a reader at `t`;
//! 2. the epoch's watermark reports are applied;
//! 3. every reader the watermark has made final, and every window it has released, is
//!    retracted at the next tick. Not at `t`: the finality gate ([`crate::finality`])
//!    finalises at `t` the windows the watermark closes at `t`, and their rows must be
//!    computed from every window they read.
//!
//! Times: what epoch `t` sends goes out at [`tick_of`]`(t)`, the last millisecond of its
//! tick, so the differential operators downstream see one time per tick.
//!
//! Checkpoints: the state (the sum sent for each held window, and the watermark) is
//! saved at each boundary. A resumed run sends every held window's sum, and the readers
//! among them, at epoch [`REPLAY`], before any epoch it reads, so the differential operators downstream rebuild
//! their arrangements from it; the gate, restored with the rows it had passed on, passes
//! nothing at [`REPLAY`].

use crate::agg::WindowAgg;
use crate::analytics::AnalyticsParams;
use crate::analytics::Pane;
use crate::epochs::{EpochQueue, OutputCaps, combined_frontier};
use crate::watermark::GlobalWatermark;
use differential_dataflow::{AsCollection, VecCollection};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use tradeflow_model::checkpoint::{Part, Saver};
use tradeflow_model::{Symbol, Time, WatermarkReport};

/// The epoch at which a resumed run replays its restored state: before any epoch a run
/// reads (epochs are wall-clock milliseconds).
pub const REPLAY: Time = 0;

/// The analytics' tick by default, ms: see [`tick_of`].
pub const TICK_MS: Time = 5;

/// The tick of a run whose checkpoint boundaries are `interval_ms` apart (if
/// checkpointed): [`TICK_MS`], or a divisor of it that also divides the interval, so that
/// no tick straddles a boundary.
pub fn tick_for(interval_ms: Option<u64>) -> Time {
    let gcd = |mut a: u64, mut b: u64| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    interval_ms.map_or(TICK_MS, |i| gcd(TICK_MS, i).max(1))
}

/// The time at which the analytics apply epoch `time`: the last millisecond of its tick
/// (`[k·tick, (k+1)·tick)`). The differential operators then work once per tick rather
/// than once per millisecond, which is what their cost is proportional to (it matters
/// with many symbols: each changed symbol costs a `reduce` per time), at the price of up
/// to `tick − 1` ms of latency. With `tick` = 1 every epoch is its own time.
pub fn tick_of(time: Time, tick: Time) -> Time {
    time - time % tick + (tick - 1)
}

/// `stream` with each batch moved to the end of its tick ([`tick_of`]).
pub fn at_ticks<'scope, D: timely::ExchangeData>(
    stream: StreamVec<'scope, Time, D>,
    tick: Time,
) -> StreamVec<'scope, Time, D> {
    stream.unary(Pipeline, "AtTicks", move |_, _| {
        move |input, output| {
            input.for_each(|cap, data| {
                let Some(&time) = cap.least() else { return };
                output.session(&cap.delayed(&tick_of(time, tick), 0)).give_container(data);
            });
        }
    })
}

/// A (symbol, window start) key.
pub type WindowKey = (Symbol, i64);

/// What the held-windows operator reports about itself (this worker's share).
#[derive(Clone, Default)]
pub struct HeldGauges {
    /// Windows held: sent and not yet retracted.
    pub held: Rc<Cell<usize>>,
    /// Pane aggregates that arrived for windows already final, and were dropped.
    pub dropped_late: Rc<Cell<u64>>,
}

#[derive(Default)]
struct Epoch {
    panes: Vec<(Pane, WindowAgg)>,
    reports: Vec<WatermarkReport>,
}

/// The held windows of one worker.
struct Held {
    params: AnalyticsParams,
    watermark: GlobalWatermark,
    sums: FxHashMap<WindowKey, WindowAgg>,
    /// Windows by the watermark that releases them.
    expiry: BTreeMap<i64, Vec<WindowKey>>,
    /// The windows not yet final (the readers), by end.
    readers: BTreeMap<i64, Vec<WindowKey>>,
    dropped_late: u64,
}

/// The state a checkpoint keeps.
#[derive(Serialize, Deserialize)]
struct Saved {
    watermark: GlobalWatermark,
    windows: Vec<(WindowKey, WindowAgg)>,
    dropped_late: u64,
}

/// How far back from its start a window's rows read: `(K_b + K_v − 1)·S` (a price jump
/// compares with the volatility of a window up to `K_b` back, which reads `K_v − 1` back).
fn reach(params: &AnalyticsParams) -> i64 {
    let slides = (params.anomalies.baseline_windows + params.volatility_windows).saturating_sub(1);
    slides as i64 * params.windows.slide()
}

impl Held {
    /// Distance from a window's start to the watermark that releases it: once the last
    /// window that reads it is final.
    fn release_after(params: &AnalyticsParams) -> i64 {
        reach(params) + params.windows.size()
    }

    /// Adds `agg` to the window `key`; true when the window was not held before, and so
    /// becomes a reader (when not final: a restored window may be).
    fn hold(&mut self, key: &WindowKey, agg: &WindowAgg) -> bool {
        match self.sums.get_mut(key) {
            Some(sum) => {
                sum.merge(agg);
                false
            }
            None => {
                let release = key.1 + Self::release_after(&self.params);
                self.expiry.entry(release).or_default().push(key.clone());
                let end = self.params.windows.end_of(key.1);
                if end > self.watermark.get() {
                    self.readers.entry(end).or_default().push(key.clone());
                }
                self.sums.insert(key.clone(), agg.clone());
                true
            }
        }
    }

    fn save(&self) -> Part {
        let mut windows: Vec<(WindowKey, WindowAgg)> = self.sums.iter().map(|(k, a)| (k.clone(), a.clone())).collect();
        windows.sort_by(|a, b| a.0.cmp(&b.0));
        let saved = Saved { watermark: self.watermark.clone(), windows, dropped_late: self.dropped_late };
        Part { state: tradeflow_model::checkpoint::to_json(&saved), ..Part::default() }
    }
}

/// What [`held_windows`] maintains.
pub struct HeldWindows<'scope> {
    /// Window aggregates keyed by (symbol, window start), each retracted once released.
    pub sums: VecCollection<'scope, Time, WindowKey, WindowAgg>,
    /// The readers: the held windows not yet final, each present from the tick its first
    /// pane arrives to the tick after the watermark makes it final.
    pub readers: VecCollection<'scope, Time, WindowKey>,
    /// This worker's held windows, and late panes dropped.
    pub gauges: HeldGauges,
}

/// Window aggregates keyed by (symbol, window start), each retracted once released, and the
/// windows not yet final (see the module docs). `reporters` is the number of distinct
/// watermark reporters; `watermarks` must be broadcast. With `saver`, the held windows are
/// saved at every checkpoint boundary and restored (and replayed) when a run resumes.
pub fn held_windows<'scope>(
    panes: VecCollection<'scope, Time, Pane, WindowAgg>,
    watermarks: StreamVec<'scope, Time, WatermarkReport>,
    params: AnalyticsParams,
    reporters: usize,
    tick: Time,
    mut saver: Option<Saver>,
) -> Result<HeldWindows<'scope>, String> {
    let mut held = Held {
        params,
        watermark: GlobalWatermark::new(reporters),
        sums: FxHashMap::default(),
        expiry: BTreeMap::new(),
        readers: BTreeMap::new(),
        dropped_late: 0,
    };
    let restored = match saver.as_ref() {
        Some(saver) => saver.restore_required("the window analytics")?,
        None => None,
    };
    let mut replay = Vec::new();
    let mut replay_readers = Vec::new();
    if let Some(restored) = restored {
        let saved: Saved = tradeflow_model::checkpoint::from_json("the held windows", &restored.state)?;
        held.watermark = saved.watermark;
        held.dropped_late = saved.dropped_late;
        for (key, agg) in &saved.windows {
            held.hold(key, agg);
        }
        replay_readers = held.readers.values().flatten().cloned().collect();
        replay = saved.windows;
    }
    let gauges = HeldGauges::default();
    let reported = gauges.clone();
    reported.held.set(held.sums.len());

    let mut builder = OperatorBuilder::new("HeldWindows".to_owned(), panes.inner.scope());
    let route = Exchange::new(|(pane, _time, _agg): &(Pane, Time, WindowAgg)| pane.symbol.route());
    let mut panes_in = builder.new_input(panes.inner, route);
    let mut marks_in = builder.new_input(watermarks, Pipeline);
    let (windows_out, windows) = builder.new_output();
    let (readers_out, readers) = builder.new_output();
    let mut windows_out =
        OutputBuilder::<_, CapacityContainerBuilder<Vec<(WindowKey, Time, WindowAgg)>>>::from(windows_out);
    let mut readers_out =
        OutputBuilder::<_, CapacityContainerBuilder<Vec<(WindowKey, Time, isize)>>>::from(readers_out);

    builder.build(move |initial| {
        let mut replay_caps = if replay.is_empty() { None } else { Some(initial) };
        let mut caps = OutputCaps::<2>::default();
        let mut queue = EpochQueue::<Epoch>::default();
        move |frontiers| {
            if let Some(initial) = replay_caps.take() {
                debug_assert!(initial.iter().all(|cap| *cap.time() == REPLAY));
                windows_out
                    .activate()
                    .session(&initial[0])
                    .give_iterator(replay.drain(..).map(|(key, agg)| (key, REPLAY, agg)));
                readers_out
                    .activate()
                    .session(&initial[1])
                    .give_iterator(replay_readers.drain(..).map(|key| (key, REPLAY, 1)));
            }
            panes_in.for_each_stamp(|cap, batches| {
                caps.keep(&cap);
                for batch in batches {
                    for (pane, time, agg) in batch.drain(..) {
                        queue.at(time).panes.push((pane, agg));
                    }
                }
            });
            marks_in.for_each_stamp(|cap, batches| {
                let Some(&time) = cap.least() else { return };
                caps.keep(&cap);
                let epoch = queue.at(time);
                for batch in batches {
                    epoch.reports.append(batch);
                }
            });

            let frontier = combined_frontier(frontiers);
            while let Some((time, epoch)) = queue.pop_complete(frontier) {
                if let Some(saver) = saver.as_mut() {
                    saver.before_epoch(time, |_| held.save());
                }
                let spec = held.params.windows;
                let at = tick_of(time, tick);
                let mut sent = Vec::with_capacity(epoch.panes.len() * spec.windows_per_pane() as usize);
                let mut new_readers = Vec::new();
                let final_through = held.watermark.get();
                for (pane, agg) in epoch.panes {
                    for start in spec.windows_of_pane(pane.start) {
                        let key = (pane.symbol.clone(), start);
                        if spec.end_of(start) <= final_through {
                            held.dropped_late += 1;
                            continue;
                        }
                        if held.hold(&key, &agg) {
                            new_readers.push((key.clone(), at, 1));
                        }
                        sent.push((key, at, agg.clone()));
                    }
                }
                if !sent.is_empty() {
                    windows_out.activate().session(&caps.at(0, at)).give_iterator(sent.into_iter());
                }
                if !new_readers.is_empty() {
                    readers_out.activate().session(&caps.at(1, at)).give_iterator(new_readers.into_iter());
                }
                for report in &epoch.reports {
                    held.watermark.observe(report);
                }
                let watermark = held.watermark.get();
                let mut finished = Vec::new();
                while let Some(entry) = held.readers.first_entry() {
                    if *entry.key() > watermark {
                        break;
                    }
                    finished.extend(entry.remove().into_iter().map(|key| (key, at + tick, -1)));
                }
                if !finished.is_empty() {
                    readers_out.activate().session(&caps.at(1, at + tick)).give_iterator(finished.into_iter());
                }
                let mut released = Vec::new();
                while let Some(entry) = held.expiry.first_entry() {
                    if *entry.key() > watermark {
                        break;
                    }
                    for key in entry.remove() {
                        let sum = held.sums.remove(&key).expect("a scheduled window is held");
                        released.push((key, at + tick, sum.negated()));
                    }
                }
                if !released.is_empty() {
                    windows_out.activate().session(&caps.at(0, at + tick)).give_iterator(released.into_iter());
                }
            }
            if let Some(saver) = saver.as_mut() {
                saver.at_frontier(frontier, |_| held.save());
            }
            reported.held.set(held.sums.len());
            reported.dropped_late.set(held.dropped_late);
            caps.hold(&queue);
        }
    });

    Ok(HeldWindows { sums: windows.as_collection(), readers: readers.as_collection(), gauges })
}
