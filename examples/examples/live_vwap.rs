//! Live VWAP, volatility and anomalies over a simulated market, printed as they change.
//!
//! This builds its own small dataflow from the `tradeflow-operators` crate used as a
//! library: the simulator feeds [`ingest`] (exact per-pane aggregates), and
//! [`window_analytics`] maintains the window metrics and anomalies as differential
//! collections. Every update prints as it happens: `+` inserts a row, `-` retracts one.
//! A window's provisional row is replaced as trades arrive, and replaced one last time
//! by its `FINAL` row once the watermark passes the window's end — the incremental view
//! a researcher wants.
//!
//! Run:
//!
//! ```text
//! cargo run --release -p tradeflow-examples --example live_vwap -- [SYMBOLS] [TRADES]
//! cargo run --release -p tradeflow-examples --example live_vwap -- AAPL,BINANCE:BTCUSDT 20000
//! ```

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use timely::dataflow::operators::Inspect;
use timely::dataflow::operators::vec::Broadcast;
use tradeflow_model::{WindowSpec, format_ts};
use tradeflow_operators::ingest::ingest;
use tradeflow_operators::{AnalyticsParams, AnomalyParams, window_analytics};
use tradeflow_sources::driver::polled_source;
use tradeflow_sources::sim::{SimConfig, SimReader};

fn main() {
    let mut args = std::env::args().skip(1);
    let symbols: Vec<String> =
        args.next().unwrap_or_else(|| "AAPL,BINANCE:BTCUSDT".into()).split(',').map(str::to_owned).collect();
    let count: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(20_000);
    let sim = SimConfig { symbols, rate: 0, count: Some(count), seed: 7, start_ms: 1_700_000_000_000 };
    if let Err(e) = sim.check() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
    // One-minute windows; a short volatility span and baseline so anomalies show quickly.
    let params = AnalyticsParams {
        windows: WindowSpec::tumbling(60_000).expect("one minute is a valid window"),
        volatility_windows: 5,
        anomalies: AnomalyParams { spike_factor: 3.0, baseline_windows: 5, min_history: 3, jump_sigma: 3.0 },
    };

    timely::execute_directly(move |worker| {
        worker.dataflow::<u64, _, _>(|scope| {
            let reader =
                SimReader::new(sim.clone(), 0, 1, 5_000, Duration::from_secs(10), Arc::new(AtomicBool::new(false)));
            let batches = polled_source(scope, "Simulator", reader);
            let input = ingest(batches, "sim", 0, params.windows, Arc::default());
            let out = window_analytics(input.panes, input.watermarks.broadcast(), params, 1, 1, &|_| None)
                .expect("no checkpoint");
            out.metrics.inner.inspect(|(row, epoch, diff)| {
                println!(
                    "{} epoch {epoch} {:<16} {} trades {:>5} vwap {:>12} vol {:>10} {}",
                    if *diff > 0 { '+' } else { '-' },
                    row.symbol.as_str(),
                    format_ts(row.window_start),
                    row.trade_count,
                    row.vwap.map_or("NULL".into(), |v| format!("{:.4}", v.0)),
                    row.volatility.map_or("NULL".into(), |v| format!("{:.6}", v.0)),
                    if row.is_final { "FINAL" } else { "provisional" },
                );
            });
            out.anomalies.inner.inspect(|(row, epoch, diff)| {
                println!(
                    "{} epoch {epoch} ANOMALY {} {} at {} severity {:.2} ({})",
                    if *diff > 0 { '+' } else { '-' },
                    row.kind,
                    row.symbol.as_str(),
                    format_ts(row.window_start),
                    row.severity.0,
                    if row.is_final { "FINAL" } else { "provisional" },
                );
            });
        });
    });
}
