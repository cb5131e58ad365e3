//! The rows the sinks read: the gated window metrics and anomalies, each arranged once,
//! by its table's key, and bounded by expiry.
//!
//! Background: the finality gate ([`crate::finality`]) passes each window's provisional
//! rows as they change, then its final row, which never changes. Arranged as they are,
//! the collections would hold every final row ever made: a trace that grows with the
//! run. So a final row is *expired*: retracted one tick after it is passed on (the
//! `negate` + `delay` pattern), once every sink has read it from the batch of its tick.
//! A retraction of a final row is therefore never a correction, and the sinks tell the
//! two apart by that alone: PostgreSQL keeps the row, the lake's finals and the changelog
//! do not write the expiry ([`kept`]), the dashboard keeps its chart point.
//!
//! | arrangement | key | value |
//! |---|---|---|
//! | `window_metrics` | (symbol, window_start) | the row |
//! | `anomalies` | (symbol, window_start, kind) | the row |
//!
//! Each is arranged on the worker the gate routed the symbol to (no exchange), so every
//! key is on exactly one worker, as the sinks require. The arrangement's batches, each
//! the consolidated updates of the ticks between two frontiers, are what every sink
//! reads; its trace holds the open windows' rows and the final rows of the last tick
//! (`operators/tests/state.rs` bounds it over a long run). The pipeline reads only the
//! batches, so it does not keep the trace.
//!
//! A resumed run's gate passes nothing for the windows it restored until they change
//! ([`crate::finality`]), so until then the trace holds only their retraction, not the
//! row the interrupted run passed on: the batches, which the sinks read, are exact.

use differential_dataflow::operators::arrange::arrangement::arrange_core;
use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::trace::SpanOf;
use differential_dataflow::trace::cursor::{Cursor, Navigable};
use differential_dataflow::trace::implementations::{ValBatcher, ValSpine};
use differential_dataflow::{AsCollection, ExchangeData, VecCollection};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::vec::Filter;
use tradeflow_model::{Anomaly, AnomalyKind, Symbol, Time, WindowMetrics};

/// The key of a `window_metrics` row.
pub type MetricsKey = (Symbol, i64);
/// The key of an `anomalies` row.
pub type AnomalyKey = (Symbol, i64, AnomalyKind);

/// A gated row: its table's key, and whether it is final.
pub trait Row: ExchangeData + Ord {
    /// The table's key.
    type Key: ExchangeData + Ord;
    /// Its table's key.
    fn key(&self) -> Self::Key;
    /// True for a final row.
    fn is_final(&self) -> bool;
}

impl Row for WindowMetrics {
    type Key = MetricsKey;
    fn key(&self) -> MetricsKey {
        (self.symbol.clone(), self.window_start)
    }
    fn is_final(&self) -> bool {
        self.is_final
    }
}

impl Row for Anomaly {
    type Key = AnomalyKey;
    fn key(&self) -> AnomalyKey {
        (self.symbol.clone(), self.window_start, self.kind)
    }
    fn is_final(&self) -> bool {
        self.is_final
    }
}

/// The trace of an arrangement of rows by key.
pub type RowTrace<R> = TraceAgent<ValSpine<<R as Row>::Key, R, Time, isize>>;

/// An arrangement of rows by key.
pub type ArrangedRows<'scope, R> = Arranged<'scope, RowTrace<R>>;

/// The arranged window metrics and anomalies.
pub struct Rows<'scope> {
    /// `window_metrics`, by (symbol, window_start).
    pub metrics: ArrangedRows<'scope, WindowMetrics>,
    /// `anomalies`, by (symbol, window_start, kind).
    pub anomalies: ArrangedRows<'scope, Anomaly>,
}

/// Arranges the gate's `metrics` and `anomalies` (see the module docs); `tick` is the
/// analytics' tick, after which final rows expire.
pub fn arrange_rows<'scope>(
    metrics: VecCollection<'scope, Time, WindowMetrics>,
    anomalies: VecCollection<'scope, Time, Anomaly>,
    tick: Time,
) -> Rows<'scope> {
    Rows { metrics: arrange(metrics, tick, "window_metrics"), anomalies: arrange(anomalies, tick, "anomalies") }
}

/// `rows` with each final row retracted `tick` after it came, arranged by key as `name`.
fn arrange<'scope, R: Row>(rows: VecCollection<'scope, Time, R>, tick: Time, name: &str) -> ArrangedRows<'scope, R> {
    let expiries = rows.clone().filter(R::is_final).negate().delay(move |time| time + tick);
    let keyed = rows.concat(expiries).map(|row| (row.key(), row));
    arrange_core::<_, _, ValBatcher<R::Key, R, Time, isize>, ValSpine<R::Key, R, Time, isize>>(
        keyed.inner,
        Pipeline,
        name,
        ValBatcher::new,
    )
}

/// The arranged rows as a collection without the expiries: the table as the SPEC has it,
/// where final rows stay. For sinks that keep every final row (the lake's changelog and
/// finals, the dashboard's charts).
pub fn kept<'scope, R: Row>(rows: &ArrangedRows<'scope, R>) -> VecCollection<'scope, Time, R> {
    let updates = rows.clone().flat_map_ref(|_key, row: &R| Some(row.clone()));
    updates.inner.filter(|(row, _, diff)| !is_expiry(row, *diff)).as_collection()
}

/// True for the retraction of a final row: its expiry, never a correction.
pub fn is_expiry<R: Row>(row: &R, diff: isize) -> bool {
    diff < 0 && row.is_final()
}

/// Calls `logic` with every update (row, time, diff) of the batches in `spans`, by key.
pub fn for_each_update<R: Row>(spans: &[SpanOf<RowTrace<R>>], mut logic: impl FnMut(&R, Time, isize)) {
    for span in spans {
        let Some(batch) = span.inner.as_ref() else { continue };
        let mut cursor = batch.cursor();
        while cursor.key_valid(batch) {
            while let Some(row) = cursor.get_val(batch) {
                cursor.map_times(batch, |time, diff| logic(row, *time, *diff));
                cursor.step_val(batch);
            }
            cursor.step_key(batch);
        }
    }
}
