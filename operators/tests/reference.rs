//! The analytics dataflow checked against a from-scratch
//! recomputation (differential's `tests/reduce_reference.rs` pattern): random trades,
//! random batching into epochs, random legal watermark progress, random parameters.
//! Whatever the schedule, the final rows must equal the reference bit for bit, final
//! rows must never be retracted, and all state must be released at the end.

use differential_dataflow::input::Input;
use proptest::prelude::*;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use timely::dataflow::ProbeHandle;
use timely::dataflow::operators::Input as TimelyInput;
use tradeflow_model::{Anomaly, Price, Qty, Symbol, WatermarkReport, WindowMetrics, WindowSpec};
use tradeflow_operators::reference::reference;
use tradeflow_operators::rows::{arrange_rows, kept};
use tradeflow_operators::{AnalyticsParams, AnomalyParams, Pane, WindowAgg, window_analytics};

type Trades = Vec<(Symbol, i64, Price, Qty)>;

fn params() -> impl Strategy<Value = AnalyticsParams> {
    (
        prop_oneof![Just((1000, 1000)), Just((2000, 1000)), Just((3000, 1000)), Just((2000, 2000))],
        1usize..6,
        1usize..6,
        0usize..4,
        prop_oneof![Just(1.2), Just(3.0)],
        prop_oneof![Just(0.5), Just(1.5), Just(4.0)],
    )
        .prop_map(|((size, slide), kv, kb, h, f, z)| AnalyticsParams {
            windows: WindowSpec::hopping(size, slide).unwrap(),
            volatility_windows: kv,
            anomalies: AnomalyParams { spike_factor: f, baseline_windows: kb, min_history: h.min(kb), jump_sigma: z },
        })
}

/// Trades of up to three symbols over ~30 s, in arrival order (ts mostly increasing with
/// local disorder), with jumps in price and volume so that anomalies fire.
fn trades() -> impl Strategy<Value = Trades> {
    let trade =
        (0usize..3, 0i64..30_000, 1i64..40, prop_oneof![3 => 1i64..1000, 1 => Just(0i64), 1 => 5_000i64..50_000]);
    prop::collection::vec(trade, 1..300).prop_map(|raw| {
        let symbols = [
            Symbol::parse("AAPL").unwrap(),
            Symbol::parse("BINANCE:BTCUSDT").unwrap(),
            Symbol::parse("IC MARKETS:1").unwrap(),
        ];
        let mut list: Trades = raw
            .into_iter()
            .map(|(s, ts, p, v)| {
                (
                    symbols[s].clone(),
                    1_700_000_000_000 + ts,
                    Price(10_000_000_000 + p * p * 7_000_000),
                    Qty(v * 1_000_000),
                )
            })
            .collect();
        list.sort_by_key(|t| t.1 / 700); // coarse order: disorder within 700 ms buckets
        list
    })
}

/// One epoch's output.
#[derive(Clone, Debug, Default)]
struct Changes {
    metrics: Vec<(WindowMetrics, isize)>,
    anomalies: Vec<(Anomaly, isize)>,
}

/// The net count of every row the arranged rows held.
type Arranged = (BTreeMap<WindowMetrics, isize>, BTreeMap<Anomaly, isize>);

/// The dataflow's own account of its state once every epoch is applied.
#[derive(Debug)]
struct End {
    /// Windows held (not yet released).
    held: usize,
    /// Windows with a provisional row.
    open: usize,
    /// Pane aggregates dropped as late.
    dropped_late: u64,
    /// Rows the arrangement the sinks read still holds (final rows expire).
    arranged: usize,
}

/// Runs `epochs` (each: pane aggregates and the watermark reported after them) through
/// the analytics dataflow on one worker with the given tick, and returns each tick's
/// changes in order, as the sinks read them (the arranged rows, without expiries).
fn run_epochs(params: AnalyticsParams, tick: u64, epochs: Vec<(Vec<(Pane, WindowAgg)>, i64)>) -> (Vec<Changes>, End) {
    timely::execute_directly(move |worker| {
        let log: Rc<RefCell<BTreeMap<u64, Changes>>> = Rc::default();
        let probe = ProbeHandle::new();
        let arranged: Rc<RefCell<Arranged>> = Rc::default();
        let (mut panes, mut marks, held, open) = worker.dataflow::<u64, _, _>(|scope| {
            let (panes_in, panes) = scope.new_collection::<Pane, WindowAgg>();
            let (marks_in, marks) = scope.new_input::<Vec<WatermarkReport>>();
            let out = window_analytics(panes, marks, params, 1, tick, &|_| None).expect("no checkpoint");
            let rows = arrange_rows(out.metrics, out.anomalies, tick);
            let (l1, l2) = (log.clone(), log.clone());
            kept(&rows.metrics)
                .inspect(move |(row, t, d)| l1.borrow_mut().entry(*t).or_default().metrics.push((row.clone(), *d)))
                .probe_with(&probe);
            kept(&rows.anomalies)
                .inspect(move |(row, t, d)| l2.borrow_mut().entry(*t).or_default().anomalies.push((row.clone(), *d)))
                .probe_with(&probe);
            // Everything the arrangement holds, expiries included.
            let (a1, a2) = (arranged.clone(), arranged.clone());
            rows.metrics.as_collection(|_, row| row.clone()).inspect(move |(row, _, d)| {
                *a1.borrow_mut().0.entry(row.clone()).or_default() += d;
            });
            rows.anomalies.as_collection(|_, row| row.clone()).inspect(move |(row, _, d)| {
                *a2.borrow_mut().1.entry(row.clone()).or_default() += d;
            });
            (panes_in, marks_in, out.held, out.open_windows)
        });
        // Epoch 0 is the replay epoch of a resumed run; a fresh one starts at 1.
        for (epoch, (batch, watermark)) in epochs.into_iter().enumerate() {
            let time = epoch as u64 + 1;
            for (pane, agg) in batch {
                panes.update(pane, agg);
            }
            marks.send(WatermarkReport { reporter: 0, low: watermark, stop: false });
            panes.advance_to(time + 1);
            marks.advance_to(time + 1);
            panes.flush();
            worker.step_while(|| probe.less_than(&(time + 1)));
        }
        drop((panes, marks));
        worker.step_while(|| !probe.done());
        let arranged = {
            let (metrics, anomalies) = &*arranged.borrow();
            metrics.values().chain(anomalies.values()).filter(|d| **d != 0).count()
        };
        let end = End { held: held.held.get(), open: open.get(), dropped_late: held.dropped_late.get(), arranged };
        let log = std::mem::take(&mut *log.borrow_mut());
        (log.into_values().collect(), end)
    })
}

/// Replays `trades` into the dataflow in epochs cut at `cuts`, with the watermark after
/// each epoch set to the least ts still to come minus `slack` (always legal), and
/// returns every change in order.
fn run_book(trades: &Trades, params: AnalyticsParams, cuts: &[usize], slack: i64, tick: u64) -> (End, Vec<Changes>) {
    let mut epochs = Vec::new();
    let mut begin = 0;
    let mut ends: Vec<usize> = cuts.iter().map(|c| c % (trades.len() + 1)).collect();
    ends.push(trades.len());
    ends.sort();
    for end in ends {
        // Pre-aggregate the epoch per (symbol, pane), as sources do.
        let mut panes: BTreeMap<Pane, WindowAgg> = BTreeMap::new();
        for (symbol, ts, price, volume) in &trades[begin..end] {
            let pane = Pane { symbol: symbol.clone(), start: params.windows.pane_of(*ts) };
            panes.entry(pane).or_default().add_trade(*ts, *price, *volume);
        }
        begin = end;
        let next = trades[end..].iter().map(|t| t.1).min().map_or(i64::MAX, |ts| ts - slack);
        epochs.push((panes.into_iter().collect(), next));
    }
    let (log, end) = run_epochs(params, tick, epochs);
    (end, log)
}

/// Checks the change log: final rows are never retracted, every row's net count is 0 or
/// 1, and the rows left at the end are exactly `expected`.
fn check_log(log: &[Changes], expected: &(Vec<WindowMetrics>, Vec<Anomaly>)) {
    let mut metrics: BTreeMap<WindowMetrics, isize> = BTreeMap::new();
    let mut anomalies: BTreeMap<Anomaly, isize> = BTreeMap::new();
    for changes in log {
        for (row, diff) in &changes.metrics {
            assert!(!(row.is_final && *diff < 0), "a final row was retracted: {row:?}");
            *metrics.entry(row.clone()).or_default() += diff;
        }
        for (row, diff) in &changes.anomalies {
            assert!(!(row.is_final && *diff < 0), "a final anomaly was retracted: {row:?}");
            *anomalies.entry(row.clone()).or_default() += diff;
        }
    }
    assert!(metrics.values().all(|d| *d == 0 || *d == 1));
    assert!(anomalies.values().all(|d| *d == 0 || *d == 1));
    let live_metrics: Vec<WindowMetrics> = metrics.into_iter().filter(|(_, d)| *d == 1).map(|(r, _)| r).collect();
    let live_anomalies: Vec<Anomaly> = anomalies.into_iter().filter(|(_, d)| *d == 1).map(|(r, _)| r).collect();
    let mut want_metrics = expected.0.clone();
    let mut want_anomalies = expected.1.clone();
    want_metrics.sort();
    want_anomalies.sort();
    assert_eq!(live_metrics, want_metrics);
    assert_eq!(live_anomalies, want_anomalies);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn book_matches_reference(trades in trades(), params in params(), cuts in prop::collection::vec(0usize..400, 0..12), slack in 0i64..3000, tick in prop_oneof![Just(1u64), Just(3u64)]) {
        let expected = reference(&trades, &params);
        let (end, log) = run_book(&trades, params, &cuts, slack, tick);
        check_log(&log, &expected);
        prop_assert_eq!(end.open, 0);
        prop_assert_eq!(end.held, 0, "state must be released once everything is final");
        prop_assert_eq!(end.dropped_late, 0);
        prop_assert_eq!(end.arranged, 0, "every final row must expire from the arranged rows");
    }

    #[test]
    fn final_rows_do_not_depend_on_batching(trades in trades(), params in params(), cuts_a in prop::collection::vec(0usize..400, 0..12), cuts_b in prop::collection::vec(0usize..400, 0..12)) {
        let finals = |log: Vec<Changes>| {
            let mut rows: Vec<WindowMetrics> = log.into_iter().flat_map(|c| c.metrics).filter(|(r, d)| r.is_final && *d > 0).map(|(r, _)| r).collect();
            rows.sort();
            rows
        };
        let (_, a) = run_book(&trades, params, &cuts_a, 0, 1);
        let (_, b) = run_book(&trades, params, &cuts_b, 2_500, 4);
        prop_assert_eq!(finals(a), finals(b));
    }
}

#[test]
fn provisional_rows_move_before_the_window_closes() {
    let params = AnalyticsParams {
        windows: WindowSpec::tumbling(60_000).unwrap(),
        volatility_windows: 20,
        anomalies: AnomalyParams::default(),
    };
    let aapl = Symbol::parse("AAPL").unwrap();
    let pane = |ts: i64, price: i64| {
        let mut agg = WindowAgg::default();
        agg.add_trade(ts, Price(price), Qty(100 * 100_000_000));
        vec![(Pane { symbol: aapl.clone(), start: params.windows.pane_of(ts) }, agg)]
    };
    let (log, _) = run_epochs(
        params,
        1,
        vec![
            (pane(1_700_000_001_000, 18_700_000_000), 1_699_999_990_000),
            // A second trade in the same window replaces the provisional row at once.
            (pane(1_700_000_002_000, 18_900_000_000), 1_699_999_990_000),
            // Passing the window's end makes it final.
            (Vec::new(), 1_700_000_040_000),
        ],
    );
    let changes = &log[0];
    assert_eq!(changes.metrics.len(), 1);
    let (row, diff) = &changes.metrics[0];
    assert_eq!((*diff, row.is_final, row.trade_count), (1, false, 1));
    assert_eq!(row.vwap.unwrap().0, 187.0);

    let mut changes = log[1].metrics.clone();
    changes.sort_by_key(|(_, d)| *d);
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[1].0.vwap.unwrap().0, 188.0);

    let mut changes = log[2].metrics.clone();
    changes.sort_by_key(|(_, d)| *d);
    assert_eq!(changes.len(), 2);
    assert!(changes[1].0.is_final && changes[1].1 == 1);
}

#[test]
fn the_generators_exercise_every_rule() {
    // Guards the property tests above against vacuity: across sampled cases the
    // reference must see spikes, jumps, volatilities and NULL vwaps.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use tradeflow_model::AnomalyKind;
    let mut runner = TestRunner::deterministic();
    let (mut spikes, mut jumps, mut vols, mut null_vwaps) = (0, 0, 0, 0);
    for _ in 0..300 {
        let t = trades().new_tree(&mut runner).unwrap().current();
        let p = params().new_tree(&mut runner).unwrap().current();
        let (metrics, anomalies) = reference(&t, &p);
        spikes += anomalies.iter().filter(|a| a.kind == AnomalyKind::VolumeSpike).count();
        jumps += anomalies.iter().filter(|a| a.kind == AnomalyKind::PriceJump).count();
        vols += metrics.iter().filter(|m| m.volatility.is_some()).count();
        null_vwaps += metrics.iter().filter(|m| m.vwap.is_none()).count();
    }
    assert!(
        spikes > 10 && jumps > 10 && vols > 100 && null_vwaps > 5,
        "spikes {spikes} jumps {jumps} vols {vols} null vwaps {null_vwaps}"
    );
}
