//! From batches to the pipeline's streams: trades, pane aggregates, rejects, watermarks.
//!
//! Every source's batches go through here, once, on the worker that read them. Accepted
//! trades are pre-aggregated per (symbol, pane) into exact [`WindowAgg`]s: one
//! differential update per pane per epoch instead of one per trade, so what crosses
//! between workers is small whatever the input rate. The trades themselves continue to
//! the lake, the rejects to the dead-letter output, and the watermark reports to every
//! worker.
//!
//! An epoch's pane aggregates are sent once the source has moved past it (the input's
//! frontier), not batch by batch: a backlog's epoch spans many reader budgets, and
//! with thousands of symbols a budget brings one or two trades per pane, so sending per
//! batch made as many updates as trades for every operator downstream to sort and merge.
//! Nothing downstream could use them earlier: every operator there waits for the epoch
//! to complete, and the held capability keeps it incomplete until they are sent.

use crate::{Pane, WindowAgg};
use differential_dataflow::{AsCollection, VecCollection};
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use tradeflow_model::metrics::{Counter, registry};
use tradeflow_model::{Reject, RejectReason, Symbol, Time, Trade, WatermarkReport, WindowSpec};
use tradeflow_sources::batch::Batch;

/// Counters of one process's sources, read by progress lines and the summary.
#[derive(Debug, Default)]
pub struct IngestCounters {
    /// Accepted trades.
    pub accepted: AtomicU64,
    /// Rejected records by reason (index = `RejectReason::index`).
    pub rejected: [AtomicU64; 7],
    /// Largest accepted event time.
    pub max_ts: AtomicI64,
}

impl IngestCounters {
    /// Rejects of one reason.
    pub fn rejected(&self, reason: RejectReason) -> u64 {
        self.rejected[reason.index()].load(Ordering::Relaxed)
    }
    /// All rejects.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// The streams a source contributes to the pipeline.
pub struct Ingested<'scope> {
    /// Accepted trades, on the worker that read them.
    pub trades: StreamVec<'scope, Time, Trade>,
    /// Exact aggregates per (symbol, pane), as a differential collection.
    pub panes: VecCollection<'scope, Time, Pane, WindowAgg>,
    /// Rejected records.
    pub rejects: StreamVec<'scope, Time, Reject>,
    /// This source instance's watermark reports (not yet broadcast).
    pub watermarks: StreamVec<'scope, Time, WatermarkReport>,
}

type Out<D> = OutputBuilder<Time, CapacityContainerBuilder<Vec<D>>>;

/// The pane aggregates of an epoch not yet complete, with a capability to send them at it.
type EpochPanes = (Capability<Time>, FxHashMap<(Symbol, i64), WindowAgg>);

/// The Prometheus series one source instance (one source on one worker) updates.
struct SourceMetrics {
    /// `tradeflow_trades_total{source, partition}`.
    trades: Counter,
    /// `tradeflow_rejects_total{source, reason}`, by `RejectReason::index`.
    rejects: Vec<Counter>,
    /// `tradeflow_late_trades_total{source}`.
    late: Counter,
}

impl SourceMetrics {
    fn new(source: &str, partition: usize) -> SourceMetrics {
        let r = registry();
        let partition = partition.to_string();
        SourceMetrics {
            trades: r.counter(
                "tradeflow_trades_total",
                "Trades accepted (valid and not late), by source and partition (the worker reading it).",
                &[("source", source), ("partition", &partition)],
            ),
            rejects: RejectReason::ALL
                .iter()
                .map(|reason| {
                    r.counter(
                        "tradeflow_rejects_total",
                        "Records rejected, by source and reason (late included).",
                        &[("source", source), ("reason", reason.as_str())],
                    )
                })
                .collect(),
            late: r.counter(
                "tradeflow_late_trades_total",
                "Trades below their partition's watermark on arrival: dead-lettered, not applied.",
                &[("source", source)],
            ),
        }
    }
}

/// Splits `batches` of the source instance `reporter` (the source labelled `source` in
/// metrics) into the pipeline's streams.
pub fn ingest<'scope>(
    batches: StreamVec<'scope, Time, Batch>,
    source: &str,
    reporter: u32,
    windows: WindowSpec,
    counters: Arc<IngestCounters>,
) -> Ingested<'scope> {
    let metrics = SourceMetrics::new(source, batches.scope().index());
    let mut builder = OperatorBuilder::new("Ingest".to_owned(), batches.scope());
    let mut input = builder.new_input(batches, Pipeline);
    let (trades_out, trades) = builder.new_output();
    let (panes_out, panes) = builder.new_output();
    let (rejects_out, rejects) = builder.new_output();
    let (marks_out, watermarks) = builder.new_output();
    let mut trades_out: Out<Trade> = OutputBuilder::from(trades_out);
    let mut panes_out: Out<(Pane, Time, WindowAgg)> = OutputBuilder::from(panes_out);
    let mut rejects_out: Out<Reject> = OutputBuilder::from(rejects_out);
    let mut marks_out: Out<WatermarkReport> = OutputBuilder::from(marks_out);

    builder.build(move |_| {
        let mut reported = i64::MIN;
        let mut pending: BTreeMap<Time, EpochPanes> = BTreeMap::new();
        move |frontiers| {
            let (mut trades_out, mut panes_out) = (trades_out.activate(), panes_out.activate());
            let (mut rejects_out, mut marks_out) = (rejects_out.activate(), marks_out.activate());
            input.for_each_stamp(|cap, batches| {
                let Some(&time) = cap.least() else { return };
                let caps: Vec<_> = (0..4).filter_map(|port| cap.retain_least(port)).collect();
                let (_, panes) = pending.entry(time).or_insert_with(|| (caps[1].clone(), FxHashMap::default()));
                let mut trades = trades_out.session(&caps[0]);
                let mut rejects = rejects_out.session(&caps[2]);
                let (mut low, mut stop) = (None, false);
                for batch in batches.flat_map(|container| container.iter_mut()) {
                    // Aggregate by reference first: no per-trade clone of the symbol.
                    let mut max_ts = i64::MIN;
                    let mut local: FxHashMap<(&Symbol, i64), WindowAgg> = FxHashMap::default();
                    for trade in &batch.trades {
                        max_ts = max_ts.max(trade.ts);
                        local
                            .entry((&trade.symbol, windows.pane_of(trade.ts)))
                            .and_modify(|a| a.add_trade(trade.ts, trade.price, trade.volume))
                            .or_insert_with(|| WindowAgg::of_trade(trade.ts, trade.price, trade.volume));
                    }
                    for ((symbol, pane), agg) in local {
                        panes.entry((symbol.clone(), pane)).or_default().merge(&agg);
                    }
                    counters.accepted.fetch_add(batch.trades.len() as u64, Ordering::Relaxed);
                    counters.max_ts.fetch_max(max_ts, Ordering::Relaxed);
                    metrics.trades.add(batch.trades.len() as u64);
                    for reject in &batch.rejects {
                        counters.rejected[reject.reason.index()].fetch_add(1, Ordering::Relaxed);
                        metrics.rejects[reject.reason.index()].inc();
                        if reject.reason == RejectReason::Late {
                            metrics.late.inc();
                        }
                    }
                    trades.give_iterator(batch.trades.drain(..));
                    tradeflow_sources::batch::recycle_trades(std::mem::take(&mut batch.trades));
                    rejects.give_iterator(batch.rejects.drain(..));
                    low = batch.low.or(low);
                    stop |= batch.stop;
                }
                drop((trades, rejects));
                if let Some(low) = low
                    && low > reported
                {
                    reported = low;
                    marks_out.session(&caps[3]).give(WatermarkReport { reporter, low, stop });
                } else if stop {
                    marks_out.session(&caps[3]).give(WatermarkReport { reporter, low: reported, stop });
                }
            });
            while let Some(entry) = pending.first_entry() {
                if frontiers[0].less_equal(entry.key()) {
                    break; // the source may still send trades of this epoch
                }
                let (time, (cap, panes)) = entry.remove_entry();
                panes_out
                    .session(&cap)
                    .give_iterator(panes.into_iter().map(|((symbol, start), agg)| (Pane { symbol, start }, time, agg)));
            }
        }
    });

    Ingested { trades, panes: panes.as_collection(), rejects, watermarks }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;
    use timely::dataflow::operators::{Input, Inspect, Probe};
    use tradeflow_model::{Price, Qty};

    fn trade(symbol: &str, ts: i64, price: i64) -> Trade {
        Trade::new(Symbol::parse(symbol).expect("a symbol"), ts, Price(price), Qty(100_000_000))
    }

    fn batch(trades: Vec<Trade>) -> Batch {
        Batch { trades, rejects: Vec::new(), low: None, stop: false }
    }

    /// An epoch's trades arrive in several batches, activations apart (a backlog's epoch
    /// spans many read budgets): its pane aggregates are sent once, when the input has
    /// moved past the epoch, one exact update per (symbol, pane), and not before.
    #[test]
    fn an_epochs_pane_aggregates_are_sent_once_when_it_is_complete() {
        let seen = timely::execute_directly(|worker| {
            let seen: Rc<RefCell<Vec<(Pane, Time, WindowAgg)>>> = Rc::default();
            let sink = seen.clone();
            let probe = timely::dataflow::ProbeHandle::new();
            let spec = WindowSpec::tumbling(1_000).expect("a window");
            let mut input = worker.dataflow::<Time, _, _>(|scope| {
                let (input, batches) = scope.new_input::<Vec<Batch>>();
                let ingested = ingest(batches, "test", 0, spec, Arc::default());
                ingested.panes.inner.inspect(move |update| sink.borrow_mut().push(update.clone())).probe_with(&probe);
                input
            });
            let t0 = 1_700_000_000_000;
            let mut while_open = 0;
            for (i, price) in [100, 300, 200].into_iter().enumerate() {
                input.send(batch(vec![trade("A", t0 + i as i64, price), trade("B", t0 + 1_500, price)]));
                input.flush();
                for _ in 0..10 {
                    worker.step();
                }
                while_open += seen.borrow().len();
            }
            input.advance_to(1);
            worker.step_while(|| probe.less_than(&1));
            assert_eq!(while_open, 0, "pane aggregates were sent while their epoch was open");
            seen.take()
        });
        let mut seen = seen;
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        let t0 = 1_700_000_000_000;
        let mut a = WindowAgg::default();
        for (i, price) in [100, 300, 200].into_iter().enumerate() {
            a.add_trade(t0 + i as i64, Price(price), Qty(100_000_000));
        }
        let mut b = WindowAgg::default();
        for price in [100, 300, 200] {
            b.add_trade(t0 + 1_500, Price(price), Qty(100_000_000));
        }
        let pane = |symbol: &str, start: i64| Pane { symbol: Symbol::parse(symbol).expect("a symbol"), start };
        assert_eq!(seen, vec![(pane("A", t0), 0, a), (pane("B", t0 + 1_000), 0, b)]);
    }
}
