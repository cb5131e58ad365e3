//! The window analytics: pane aggregates in, window metrics and anomalies out, through
//! differential's own operators.
//!
//! Background: sources send, per epoch, the exact aggregate of each (symbol, pane) they
//! saw (a differential collection whose *difference* is a [`WindowAgg`]), plus
//! [`WatermarkReport`]s. The dataflow:
//!
//! | step | operator | what it maintains |
//! |---|---|---|
//! | [`crate::windows`] | pane → its `W/S` windows; release by the watermark | `((symbol, start), agg)`, each window retracted once nothing reads it |
//! | window sums | `count_total` (an arrangement keyed by (symbol, start), the sums carried in the difference) | one exact aggregate per held window |
//! | [`crate::volatility`] | `map` to (start, vwap, volume), then `reduce` by symbol | each window's rolling volatility |
//! | [`crate::anomalies`] | `reduce` by symbol | the spikes and jumps of each window |
//! | [`crate::finality`] | the gate, by the watermark | each window's row (sum and volatility, [`crate::metrics::window_row`]): provisional changes, then the final row once |
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
use crate::anomalies::{AnomalyParams, detect};
use crate::finality::{Derived, gate};
use crate::metrics::vwap_f64;
use crate::volatility::{Window, with_volatility};
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
    let (windows, held) = held_windows(panes, watermarks.clone(), params, reporters, tick, saver(COMPONENTS[0]))?;
    let sums = windows.count_total();
    let facts = sums.clone().map(|((symbol, start), sum)| {
        (symbol, Window { start, vwap: vwap_f64(sum.notional, sum.volume).map(F64), volume: sum.volume })
    });
    let rated = with_volatility(facts, params.volatility_windows, spec.slide());
    let anomalies = detect(rated.clone(), params.anomalies, spec);
    let derived = Derived { sums, rated, anomalies };
    let gated = gate(derived, watermarks.clone(), spec, reporters, tick, saver(COMPONENTS[1]))?;
    Ok(Analytics {
        metrics: gated.metrics,
        anomalies: gated.anomalies,
        held,
        open_windows: gated.open_windows,
        watermarks: at_ticks(watermarks, tick),
    })
}
