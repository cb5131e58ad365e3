//! The rows the sinks read: the gated window metrics and anomalies, each arranged once,
//! by its table's key, and bounded by expiry.
//!
//! Background: the finality gate ([`crate::finality`]) passes each window's provisional
//! rows as they change, then its final row, which never changes. Arranged as they are,
//! the collections would hold every final row ever made: a trace that grows with the
//! run. So a final row is *expired*: retracted one tick after it is passed on (the
//! `negate` + `delay` pattern); sinks read each update at its own time, so one batch may
//! carry both. A retraction of a final row is therefore never a correction, and the sinks tell the
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
//! batches, so it does not keep the trace (and the arrangement then holds nothing: the
//! expiry is for a reader that keeps it).
//!
//! A resumed run's gate passes nothing for the windows it restored ([`crate::finality`]),
//! so this run's arrangement never held the rows the interrupted run passed on for them.
//! When such a window changes, its old row's retraction stays in a kept trace: at most
//! one per window open at the checkpoint. The batches, which the sinks read, are exact.

use differential_dataflow::operators::arrange::arrangement::arrange_core;
use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::trace::SpanOf;
use differential_dataflow::trace::cursor::{Cursor, Navigable};
use differential_dataflow::trace::implementations::{ValBatcher, ValSpine};
use differential_dataflow::{AsCollection, ExchangeData, VecCollection};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
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
/// finals, the dashboard's charts). Each update travels at its own time, as the gate sent
/// it (a batch's message is stamped no later than the earliest time it holds, and a sink that
/// takes the message's time for its updates' would put a row in an earlier epoch, and in
/// a checkpoint taken before it was made).
pub fn kept<'scope, R: Row>(rows: &ArrangedRows<'scope, R>) -> VecCollection<'scope, Time, R> {
    let stream = rows.stream.clone().unary::<CapacityContainerBuilder<Vec<(R, Time, isize)>>, _, _, _>(
        Pipeline,
        "Kept",
        |_, _| {
            let mut updates: Vec<(R, Time, isize)> = Vec::new();
            move |input, output| {
                input.for_each(|cap, spans| {
                    for_each_update(spans, |row, time, diff| {
                        if !is_expiry(row, diff) {
                            updates.push((row.clone(), time, diff));
                        }
                    });
                    updates.sort_by_key(|(_, time, _)| *time);
                    let mut updates = updates.drain(..).peekable();
                    while let Some(first) = updates.next() {
                        let time = first.1;
                        let at = cap.delayed(&time, output.output_index());
                        let mut session = output.session(&at);
                        session.give(first);
                        while let Some(update) = updates.next_if(|(_, t, _)| *t == time) {
                            session.give(update);
                        }
                    }
                });
            }
        },
    );
    stream.as_collection()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agg::WindowAgg;
    use crate::metrics::window_row;
    use differential_dataflow::input::Input;
    use std::cell::RefCell;
    use std::rc::Rc;
    use timely::dataflow::operators::{Inspect, Probe};
    use tradeflow_model::{Price, Qty, WindowSpec};

    fn row(is_final: bool) -> WindowMetrics {
        let mut sum = WindowAgg::default();
        sum.add_trade(60_500, Price(1_000_000_000), Qty(100_000_000));
        let spec = WindowSpec::tumbling(60_000).unwrap();
        WindowMetrics { is_final, ..window_row(&Symbol::parse("AAPL").unwrap(), 60_000, &sum, None, spec) }
    }

    type Seen = Rc<RefCell<Vec<(WindowMetrics, Time, isize)>>>;

    /// Several epochs complete at once, so one batch spans them: `kept` still passes each
    /// update at its own time, without the expiry the arrangement holds.
    #[test]
    fn kept_rows_travel_at_their_own_times_without_expiries() {
        let (mut kept, arranged) = timely::execute_directly(move |worker| {
            let (kept_seen, arranged_seen): (Seen, Seen) = Default::default();
            let (k, a) = (kept_seen.clone(), arranged_seen.clone());
            let probe = timely::dataflow::ProbeHandle::new();
            let (mut metrics, _anomalies) = worker.dataflow::<Time, _, _>(|scope| {
                let (metrics_in, metrics) = scope.new_collection::<WindowMetrics, isize>();
                let (anomalies_in, anomalies) = scope.new_collection::<Anomaly, isize>();
                let rows = arrange_rows(metrics, anomalies, 5);
                let kept = kept(&rows.metrics).inner.inspect_core(move |event| {
                    if let Ok((stamp, updates)) = event {
                        for update in updates {
                            assert_eq!(stamp.as_singleton(), Some(&update.1), "an update travels at another time");
                            k.borrow_mut().push(update.clone());
                        }
                    }
                });
                kept.probe_with(&probe);
                rows.metrics.stream.inspect(move |spans| {
                    for_each_update(std::slice::from_ref(spans), |row, time, diff| {
                        a.borrow_mut().push((row.clone(), time, diff))
                    })
                });
                (metrics_in, anomalies_in)
            });
            metrics.advance_to(4);
            metrics.insert(row(false));
            metrics.advance_to(9);
            metrics.remove(row(false));
            metrics.insert(row(true));
            metrics.advance_to(20);
            metrics.flush();
            worker.step_while(|| probe.less_than(&20));
            (kept_seen.take(), arranged_seen.take())
        });
        kept.sort_by_key(|u| (u.1, u.2));
        assert_eq!(kept, vec![(row(false), 4, 1), (row(false), 9, -1), (row(true), 9, 1)]);
        assert!(arranged.contains(&(row(true), 14, -1)), "the final row expires a tick later: {arranged:?}");
        assert_eq!(arranged.len(), 4);
    }
}
