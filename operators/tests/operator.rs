//! The analytics operator on two timely workers: panes exchanged by symbol, epochs
//! processed in order, watermark reports from every worker. The final rows must equal
//! the reference recomputation exactly, and provisional rows must appear before the
//! watermark closes their windows.

use differential_dataflow::input::Input;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::Input as TimelyInput;
use timely::dataflow::operators::vec::Broadcast;
use tradeflow_model::{Anomaly, Price, Qty, Symbol, WatermarkReport, WindowMetrics, WindowSpec};
use tradeflow_operators::reference::reference;
use tradeflow_operators::{AnalyticsParams, AnomalyParams, Pane, WindowAgg, window_analytics};

fn market() -> Vec<(Symbol, i64, Price, Qty)> {
    // A deterministic market: three symbols, a volume burst and a price jump.
    let symbols = ["AAPL", "BINANCE:BTCUSDT", "KRAKEN:XBT/USD"].map(|s| Symbol::parse(s).unwrap());
    let mut state: u64 = 7;
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        state >> 33
    };
    let mut trades = Vec::new();
    for i in 0..3000i64 {
        let symbol = symbols[(next() % 3) as usize].clone();
        let ts = 1_700_000_000_000 + i * 100 + (next() % 400) as i64;
        let jump = if i > 2000 { 1_200_000_000 } else { 0 };
        let price = Price(10_000_000_000 + (next() % 50_000_000) as i64 + jump);
        let burst = if (1500..1560).contains(&i) { 40 } else { 1 };
        let volume = Qty((next() % 1000) as i64 * 1_000_000 * burst);
        trades.push((symbol, ts, price, volume));
    }
    trades
}

type Captured = Arc<Mutex<(Vec<(WindowMetrics, u64, isize)>, Vec<(Anomaly, u64, isize)>)>>;

#[test]
fn two_workers_match_the_reference() {
    let params = AnalyticsParams {
        windows: WindowSpec::hopping(20_000, 5_000).unwrap(),
        volatility_windows: 5,
        anomalies: AnomalyParams { spike_factor: 2.0, baseline_windows: 4, min_history: 2, jump_sigma: 2.0 },
    };
    let trades = market();
    let captured: Captured = Arc::default();
    let sink = captured.clone();
    let input = trades.clone();
    timely::execute(timely::Config::process(2), move |worker| {
        let sink = sink.clone();
        let peers = worker.peers();
        let (mut panes, mut marks) = worker.dataflow::<u64, _, _>(|scope| {
            let (panes_in, panes) = scope.new_collection::<Pane, WindowAgg>();
            let (marks_in, marks) = scope.new_input::<Vec<WatermarkReport>>();
            let out = window_analytics(panes, marks.broadcast(), params, peers, 1, &|_| None).expect("no checkpoint");
            let (s1, s2) = (sink.clone(), sink.clone());
            out.metrics.inspect(move |(row, t, d)| s1.lock().unwrap().0.push((row.clone(), *t, *d)));
            out.anomalies.inspect(move |(row, t, d)| s2.lock().unwrap().1.push((row.clone(), *t, *d)));
            (panes_in, marks_in)
        });
        let me = worker.index();
        // Worker 0 reads the odd trades, worker 1 the even ones, in batches of 100; each
        // reports the least ts it may still send (its next batches' minimum).
        let mine: Vec<_> = input.iter().enumerate().filter(|(i, _)| i % peers == me).map(|(_, t)| t.clone()).collect();
        let chunks: Vec<_> = mine.chunks(100).collect();
        for (epoch, chunk) in chunks.iter().enumerate() {
            let mut batch: BTreeMap<Pane, WindowAgg> = BTreeMap::new();
            for (symbol, ts, price, volume) in chunk.iter() {
                batch
                    .entry(Pane { symbol: symbol.clone(), start: params.windows.pane_of(*ts) })
                    .or_default()
                    .add_trade(*ts, *price, *volume);
            }
            for (pane, agg) in batch {
                panes.update(pane, agg);
            }
            let low = chunks[epoch + 1..].iter().flat_map(|c| c.iter().map(|t| t.1)).min().unwrap_or(i64::MAX);
            marks.send(WatermarkReport { reporter: me as u32, low, stop: false });
            panes.advance_to(epoch as u64 + 1);
            marks.advance_to(epoch as u64 + 1);
            panes.flush();
            worker.step();
        }
    })
    .unwrap();

    let (metrics, anomalies) = std::mem::take(&mut *captured.lock().unwrap());
    let (want_metrics, want_anomalies) = reference(&trades, &params);
    let finals = |rows: Vec<(WindowMetrics, u64, isize)>| {
        let mut f: Vec<WindowMetrics> =
            rows.into_iter().filter(|(r, _, d)| r.is_final && *d > 0).map(|(r, _, _)| r).collect();
        f.sort();
        f
    };
    let provisional = metrics.iter().filter(|(r, _, d)| !r.is_final && *d > 0).count();
    assert!(provisional > 0, "provisional rows must flow before windows close");
    let mut want = want_metrics;
    want.sort();
    assert_eq!(finals(metrics), want);
    let mut got_anomalies: Vec<Anomaly> =
        anomalies.into_iter().filter(|(r, _, d)| r.is_final && *d > 0).map(|(r, _, _)| r).collect();
    got_anomalies.sort();
    let mut want_anomalies = want_anomalies;
    want_anomalies.sort();
    assert!(!want_anomalies.is_empty(), "the market must trigger anomalies for this test to mean anything");
    assert_eq!(got_anomalies, want_anomalies);
}
