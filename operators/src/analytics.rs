//! The window analytics: pane aggregates in, window metrics and anomalies out, through
//! differential's own operators.
//!
//! Background: sources send, per epoch, the exact aggregate of each (symbol, pane) they
//! saw (a differential collection whose *difference* is a [`WindowAgg`]), plus
//! [`WatermarkReport`]s. The dataflow:
//!
//! | step | operator | what it maintains |
//! |---|---|---|
//! | [`crate::windows`] | pane → its `W/S` windows; release by the watermark | `((symbol, start), agg)`, each window retracted once nothing reads it; and the *readers*, the windows not yet final |
//! | window sums | `count_total` (an arrangement keyed by (symbol, start), the sums carried in the difference) | one exact aggregate per held window |
//! | derive | `map` to (start, vwap, volume), `concat` the readers, `reduce` by symbol | each reader's volatility ([`crate::volatility`]) and anomalies ([`crate::anomalies`]) |
//! | [`crate::finality`] | the gate, by the watermark | each window's row (sum and volatility, [`crate::metrics::window_row`]): provisional changes, then the final row once |
//!
//! Cost: the `reduce` replays a changed symbol's held windows (up to `K_b + K_v − 1`
//! before its oldest reader, and the readers), takes their returns once, and computes the
//! rows of its readers only, a few, not of the ~40 windows already final: its output, which
//! differential compares with the last one at every change, stays that small. Keyed by
//! symbol with every window's row in its output (and a second `reduce` for the anomalies),
//! it took about twice as long at 1,000 symbols (README, Performance).
//!
//! Semantics: outputs are differential collections of [`WindowMetrics`] and [`Anomaly`]
//! rows at the tick of the input that caused them (the last millisecond of its
//! `tick`-ms slot of epochs, [`crate::windows::tick_of`]). As a tick completes (milliseconds
//! after its trades were read) each changed window's provisional row is retracted and
//! re-inserted with its new values; when the pipeline watermark (the minimum report)
//! passes a window's end, its row is replaced by the final row (`is_final`), which never
//! changes again. Final rows are exactly the SPEC 4-5 values over the accepted trades,
//! whatever the worker count or batching. `watermarks` must already be broadcast, so
//! every worker sees every report.
//!
//! State: the arrangements hold the held windows only, and compact as epochs complete
//! (`count_total` and `reduce` advance their traces' compaction frontiers as they go),
//! so memory is bounded by the windows in the horizon over an unbounded run.

use crate::agg::WindowAgg;
use crate::anomalies::{AnomalyParams, anomalies_of_last};
use crate::finality::{Derived, gate};
use crate::metrics::vwap_f64;
use crate::volatility::{Rated, Run, Window};
use crate::windows::{HeldGauges, at_ticks, held_windows};
use differential_dataflow::VecCollection;
use differential_dataflow::operators::CountTotal;
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::rc::Rc;
use timely::dataflow::StreamVec;
use tradeflow_model::checkpoint::Saver;
use tradeflow_model::{Anomaly, F64, Symbol, Time, WatermarkReport, WindowMetrics, WindowSpec};

/// What the analytics compute and how.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct AnalyticsParams {
    /// Window size and slide.
    pub windows: WindowSpec,
    /// K_v: how many windows the rolling volatility spans.
    pub volatility_windows: usize,
    /// Anomaly rule parameters (K_b is `anomalies.baseline_windows`).
    pub anomalies: AnomalyParams,
}

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
    /// This worker's held windows, and late panes dropped.
    pub held: HeldGauges,
    /// Windows with a provisional row on this worker.
    pub open_windows: Rc<Cell<usize>>,
    /// The watermark reports, each at the tick at which the analytics apply it
    /// ([`crate::windows::tick_of`]). The final rows of the windows a report closes come out
    /// at that tick, not at the report's epoch, so a sink that holds final rows until the
    /// watermark has passed them must read these.
    pub watermarks: StreamVec<'scope, Time, WatermarkReport>,
}

/// The checkpoint components of the analytics.
pub const COMPONENTS: [&str; 2] = ["analytics-windows", "analytics-finality"];

/// Maintains window metrics and anomalies from pane aggregates (see the module docs).
/// `reporters` is the number of distinct watermark reporters; `tick` is the analytics'
/// time resolution in ms ([`crate::windows::tick_of`]; 1: every epoch). `saver` gives each
/// checkpointed component ([`COMPONENTS`]) its handle when the run is checkpointed.
pub fn window_analytics<'scope>(
    panes: VecCollection<'scope, Time, Pane, WindowAgg>,
    watermarks: StreamVec<'scope, Time, WatermarkReport>,
    params: AnalyticsParams,
    reporters: usize,
    tick: Time,
    saver: &dyn Fn(&str) -> Option<Saver>,
) -> Result<Analytics<'scope>, String> {
    let spec = params.windows;
    let held = held_windows(panes, watermarks.clone(), params, reporters, tick, saver(COMPONENTS[0]))?;
    let sums = held.sums.count_total();
    let facts = sums.clone().map(|((symbol, start), sum)| {
        (symbol, Slot::Window(Window { start, vwap: vwap_f64(sum.notional, sum.volume).map(F64), volume: sum.volume }))
    });
    let readers = held.readers.map(|(symbol, start)| (symbol, Slot::Reader(start)));
    let (rated, anomalies) = derive(facts.concat(readers), params);
    let derived = Derived { sums, rated, anomalies };
    let gated = gate(derived, watermarks.clone(), spec, reporters, tick, saver(COMPONENTS[1]))?;
    Ok(Analytics {
        metrics: gated.metrics,
        anomalies: gated.anomalies,
        held: held.gauges,
        open_windows: gated.open_windows,
        watermarks: at_ticks(watermarks, tick),
    })
}

/// What the derive `reduce` reads of a symbol: its held windows, and which of them are
/// readers (not yet final).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum Slot {
    /// A held window.
    Window(Window),
    /// The start of a reader.
    Reader(i64),
}

/// What the analytics derive for one reader.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Derivation {
    /// Its volatility.
    Rated(Rated),
    /// One of its anomalies.
    Anomaly(Anomaly),
}

/// The volatility and anomalies of each reader, from `slots`: each symbol's held windows
/// and readers. One `reduce` per symbol that changed: it takes the returns of the held
/// windows once, and computes the readers' rows only, not those of the windows already
/// final.
fn derive<'scope>(
    slots: VecCollection<'scope, Time, (Symbol, Slot)>,
    params: AnalyticsParams,
) -> (VecCollection<'scope, Time, (Symbol, Rated)>, VecCollection<'scope, Time, Anomaly>) {
    let spec = params.windows;
    let volatility_span = (params.volatility_windows as i64 - 1) * spec.slide();
    let mut run = Run::default();
    let mut windows: Vec<Window> = Vec::new();
    let derived = slots.reduce_named("Derive", move |symbol, input: &[(&Slot, isize)], output| {
        // Windows come first, in window order, then the readers.
        windows.clear();
        windows.extend(input.iter().filter_map(|(slot, _)| match slot {
            Slot::Window(window) => Some(*window),
            Slot::Reader(_) => None,
        }));
        let readers = &input[windows.len()..];
        if readers.is_empty() {
            return;
        }
        run.load(windows.iter());
        for (slot, _) in readers {
            let Slot::Reader(start) = slot else { continue };
            // A reader's window is held until after it is final.
            let Ok(at) = windows.binary_search_by_key(start, |w| w.start) else { continue };
            let sigma = run.volatility_at(*start, volatility_span).map(|v| F64(v.sigma));
            let rated = Rated { window: windows[at], sigma };
            output.push((Derivation::Rated(rated), 1));
            anomalies_of_last(symbol, &windows[..=at], &run, volatility_span, &params.anomalies, spec, |anomaly| {
                output.push((Derivation::Anomaly(anomaly), 1))
            });
        }
    });
    let rated = derived.clone().flat_map(|(symbol, derivation)| match derivation {
        Derivation::Rated(rated) => Some((symbol, rated)),
        Derivation::Anomaly(_) => None,
    });
    let anomalies = derived.flat_map(|(_, derivation)| match derivation {
        Derivation::Anomaly(anomaly) => Some(anomaly),
        Derivation::Rated(_) => None,
    });
    (rated, anomalies)
}
