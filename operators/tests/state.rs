//! State is released: over a long run the analytics' arrangements, and the arranged rows
//! the sinks read, hold only the windows still needed, not every window ever seen. Sizes come from differential's own
//! arrangement log ("differential/arrange": batches made, merged and dropped), as its
//! `dd_mgmt` tooling reads them.

use differential_dataflow::input::Input;
use differential_dataflow::logging::{DifferentialEvent, DifferentialEventBuilder};
use differential_dataflow::trace::TraceReader;
use std::cell::Cell;
use std::rc::Rc;
use timely::dataflow::ProbeHandle;
use timely::dataflow::operators::Input as TimelyInput;
use timely::dataflow::operators::Probe;
use timely::progress::frontier::AntichainRef;
use tradeflow_model::{Price, Qty, Symbol, WatermarkReport, WindowSpec};
use tradeflow_operators::rows::arrange_rows;
use tradeflow_operators::{AnalyticsParams, AnomalyParams, Pane, WindowAgg, window_analytics};

const SYMBOLS: usize = 4;
const EPOCHS: u64 = 3_000;

#[test]
fn arrangements_hold_only_the_windows_still_needed() {
    // 1-second windows; a window is needed until K_b + K_v - 1 = 5 windows after it are
    // final, so about 7 windows per symbol are held at any time.
    let params = AnalyticsParams {
        windows: WindowSpec::tumbling(1_000).unwrap(),
        volatility_windows: 3,
        anomalies: AnomalyParams { spike_factor: 3.0, baseline_windows: 3, min_history: 2, jump_sigma: 4.0 },
    };
    let sizes = timely::execute_directly(move |worker| {
        // Updates held by every arrangement of the dataflow, from differential's log.
        let held = Rc::new(Cell::new(0isize));
        let count = held.clone();
        worker.log_register().expect("logging is on").insert::<DifferentialEventBuilder, _>(
            "differential/arrange",
            move |_time, events| {
                for (_, event) in events.iter().flatten() {
                    let change = match event {
                        DifferentialEvent::Batch(b) => b.length as isize,
                        DifferentialEvent::Merge(m) => match m.complete {
                            Some(merged) => merged as isize - (m.length1 + m.length2) as isize,
                            None => 0,
                        },
                        DifferentialEvent::Drop(d) => -(d.length as isize),
                        _ => 0,
                    };
                    count.set(count.get() + change);
                }
            },
        );
        let probe = ProbeHandle::new();
        let (mut panes, mut marks, windows, mut traces) = worker.dataflow::<u64, _, _>(|scope| {
            let (panes_in, panes) = scope.new_collection::<Pane, WindowAgg>();
            let (marks_in, marks) = scope.new_input::<Vec<WatermarkReport>>();
            let out = window_analytics(panes, marks, params, 1, 1, &|_| None).expect("no checkpoint");
            // The rows the sinks read, with their traces kept as a reader would keep them.
            let rows = arrange_rows(out.metrics, out.anomalies, 1);
            rows.metrics.stream.probe_with(&probe);
            rows.anomalies.stream.probe_with(&probe);
            (panes_in, marks_in, out.held.held, (rows.metrics.trace, rows.anomalies.trace))
        });
        let symbols: Vec<Symbol> = (0..SYMBOLS).map(|i| Symbol::parse(&format!("SYM{i}")).unwrap()).collect();
        let base = 1_700_000_000_000i64;
        let mut sizes = Vec::new();
        for epoch in 1..=EPOCHS {
            // Each epoch: two trades per symbol in the next second, then the watermark.
            let second = base + epoch as i64 * 1_000;
            for (i, symbol) in symbols.iter().enumerate() {
                let mut agg = WindowAgg::default();
                let price = 10_000_000_000 + ((epoch as i64 * 7 + i as i64 * 13) % 50) * 10_000_000;
                agg.add_trade(second + 100, Price(price), Qty(100_000_000 * (1 + (epoch % 9) as i64)));
                agg.add_trade(second + 600, Price(price + 5_000_000), Qty(100_000_000));
                panes.update(Pane { symbol: symbol.clone(), start: second }, agg);
            }
            marks.send(WatermarkReport { reporter: 0, low: second + 1_000, stop: false });
            panes.advance_to(epoch + 1);
            marks.advance_to(epoch + 1);
            panes.flush();
            worker.step_while(|| probe.less_than(&(epoch + 1)));
            // The readers have read everything before the next epoch.
            let read = [epoch + 1];
            traces.0.set_logical_compaction(AntichainRef::new(&read));
            traces.0.set_physical_compaction(AntichainRef::new(&read));
            traces.1.set_logical_compaction(AntichainRef::new(&read));
            traces.1.set_physical_compaction(AntichainRef::new(&read));
            worker.log_register().expect("logging is on").flush();
            sizes.push((held.get(), windows.get()));
        }
        sizes
    });

    let seen = SYMBOLS * EPOCHS as usize;
    let (late_updates, late_windows) =
        sizes[sizes.len() / 2..].iter().fold((0, 0), |(u, w), (su, sw)| (u.max(*su), w.max(*sw)));
    let (early_updates, _) = sizes[..sizes.len() / 10].iter().fold((0, 0), |(u, w), (su, sw)| (u.max(*su), w.max(*sw)));
    println!(
        "windows seen {seen}; held at most {late_windows}; arranged updates at most {early_updates} early, {late_updates} late"
    );
    assert!(late_windows <= SYMBOLS * 8, "held windows {late_windows} must stay within the horizon");
    // Five arrangements (window sums; the derive reduce's input, the held windows and the
    // readers, and its output, the readers' rows; the rows the sinks read, whose final rows
    // expire) over ~28 held windows, plus batches not merged yet: a small constant, not
    // the 12,000 windows seen.
    assert!(late_updates <= 1_500, "arrangements hold {late_updates} updates: compaction must release windows");
    assert!(
        late_updates <= 2 * early_updates.max(200),
        "arranged state must stay flat: {early_updates} → {late_updates}"
    );
}
