//! SPEC 7: the lake read back by real readers. pyarrow (`partitioning="hive"`) and DuckDB
//! (`read_parquet(..., hive_partitioning=true)`) must see every accepted trade exactly
//! once, symbols with `:`, `/`, spaces and other escaped characters round-tripping
//! through their percent-encoded partition values, the final window metrics and
//! anomalies bit for bit, and every dead letter. No file in the lake may be partial or
//! anything but Parquet.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tradeflow_model::{RejectReason, date_of};
use tradeflow_sources::format::{Item, parse_line};
use tradeflow_tests::expect::{Expected, Knobs};
use tradeflow_tests::lake::{codecs, files_under, read_batches, read_trades, read_window_metrics};
use tradeflow_tests::process::Running;
use tradeflow_tests::python::{python, read_lake};
use tradeflow_tests::{file_url, simulate, temp_dir, tradeflow_command};

/// Symbols whose partition values need escaping, or look like they might.
const TRICKY: &[&str] = &[
    "IC MARKETS:1",
    "KRAKEN:XBT/USD",
    "BINANCE:BTCUSDT",
    "OANDA:EUR_USD",
    "BRK.B",
    "100%=X",
    "%41",
    "K#1",
    "Q?x",
    "[x]{y}^*",
    "back\\slash",
    "it's \"q\"",
    "x=y",
    "two  spaces",
    "A+B",
    "Ünïcödé €",
];

fn knobs() -> Knobs {
    Knobs {
        window_ms: 10_000,
        volatility_windows: 4,
        baseline_windows: 4,
        min_history: 2,
        spike_factor: 2.0,
        jump_sigma: 2.0,
        ..Knobs::default()
    }
}

/// Simulated trades, then trades of the tricky symbols and a few bad records.
fn write_input(path: &Path) {
    simulate(path, &["--format", "mixed", "--count", "20000", "--rate", "40", "--seed", "11"]);
    let bytes = std::fs::read(path).expect("reading the input");
    let mut t = i64::MIN;
    for line in bytes.split(|b| *b == b'\n') {
        parse_line(line, &mut |item| {
            if let Item::Trade(trade) = item {
                t = t.max(trade.ts);
            }
        });
    }
    let mut file = std::fs::OpenOptions::new().append(true).open(path).expect("opening the input");
    for (i, symbol) in TRICKY.iter().enumerate() {
        let s = serde_json::to_string(symbol).expect("a string serializes");
        for k in 0..4i64 {
            let ts = t + k * 10_000 + i as i64;
            let price = format!("{}.{:02}", 10 + k, i);
            writeln!(file, r#"{{"s":{s},"p":{price},"t":{ts},"v":0.5,"c":["{k}"]}}"#).expect("writing");
        }
    }
    writeln!(file, "{{broken").expect("writing");
    writeln!(file, r#"{{"s":"AAPL","p":-1,"t":{t},"v":1}}"#).expect("writing");
    writeln!(file, r#"{{"s":"AAPL","p":1,"t":{},"v":1}}"#, t - 600_000).expect("writing");
}

/// Runs the pipeline over the input into `<dir>/lake`; returns (input, lake, pid).
fn build_lake(dir: &Path) -> (PathBuf, PathBuf, u32) {
    let input = dir.join("input.ndjson");
    write_input(&input);
    let lake = dir.join("lake");
    let mut command = tradeflow_command();
    command.args(["run", "--source", &file_url(&input), "--lake", &file_url(&lake), "--progress-interval", "0"]);
    command.args(knobs().args()).args(["-w", "2"]);
    let run = Running::spawn(command);
    let pid = run.pid();
    run.finish(Duration::from_secs(120)).assert_success("tradeflow run");
    (input, lake, pid)
}

#[test]
fn every_object_is_a_complete_compressed_parquet_file() {
    let dir = temp_dir();
    let (_, lake, pid) = build_lake(dir.path());

    // Nothing partial: every object is a complete Parquet file (besides the job's
    // checkpoint manifest, JSON), and the spool is gone.
    let files: Vec<_> = files_under(&lake).into_iter().filter(|f| !f.starts_with("_checkpoints")).collect();
    assert!(!files.is_empty());
    for file in &files {
        assert!(file.extension().is_some_and(|e| e == "parquet"), "{} is not a Parquet object", file.display());
        read_batches(&lake.join(file));
    }
    let spool = std::env::temp_dir().join(format!("tradeflow-spool-{pid}"));
    assert!(!spool.exists(), "the spool directory {} is left behind", spool.display());

    // Compressed with zstd, and not a flood of tiny files: at most one trades file per
    // symbol and hour, one results file per hour.
    for file in &files {
        let codecs = codecs(&lake.join(file));
        assert!(codecs.iter().all(|c| c == "ZSTD"), "{} is compressed with {codecs:?}", file.display());
    }
    let count = |dataset: &str| files.iter().filter(|f| f.starts_with(dataset)).count();
    let hour = |ts: i64| ts.div_euclid(3_600_000);
    let symbol_hours: BTreeSet<_> = read_trades(&lake).iter().map(|t| (t.symbol.clone(), hour(t.ts))).collect();
    let trades_files = count("trades");
    assert!(trades_files <= symbol_hours.len(), "{trades_files} trades files for {} symbol-hours", symbol_hours.len());
    let hours: BTreeSet<_> = read_window_metrics(&lake).iter().map(|w| hour(w.window_start)).collect();
    assert!(count("window_metrics") <= hours.len(), "{} window_metrics files", count("window_metrics"));
}

#[test]
fn pyarrow_and_duckdb_read_every_dataset_exactly_once() {
    let Some(python) = python() else { return };
    let dir = temp_dir();
    let (input, lake, _) = build_lake(dir.path());
    let knobs = knobs();

    let expected = Expected::from_files(&[&input], knobs.lateness_ms);
    let want_trades: Vec<_> = expected.lake_trades().into_iter().map(|t| (date_of(t.ts), t)).collect();
    let (metrics, anomalies) = expected.results(&knobs);
    let want_metrics: Vec<_> = metrics.into_iter().map(|m| (date_of(m.window_start), m)).collect();
    let want_anomalies: Vec<_> = anomalies.into_iter().map(|a| (date_of(a.window_start), a)).collect();
    assert!(!want_anomalies.is_empty(), "no anomaly to read back");
    for symbol in TRICKY {
        assert!(want_trades.iter().any(|(_, t)| t.symbol == *symbol), "{symbol} was not accepted");
    }
    let source = file_url(&input);
    let mut want_letters: Vec<_> =
        expected.rejects.iter().map(|r| (r.source.clone(), r.position as i64, r.element as i32, r.reason)).collect();
    want_letters.sort();
    assert!(want_letters.iter().any(|l| l.3 == RejectReason::Late));

    for reader in ["pyarrow", "duckdb"] {
        let mut view = read_lake(&python, &lake, reader);
        view.trades.sort();
        view.window_metrics.sort();
        view.anomalies.sort();
        assert_eq!(view.trades.len(), want_trades.len(), "{reader}: number of trades");
        let symbols = |v: &[(String, tradeflow_tests::lake::LakeTrade)]| {
            v.iter().map(|(_, t)| t.symbol.clone()).collect::<std::collections::BTreeSet<_>>()
        };
        assert_eq!(symbols(&view.trades), symbols(&want_trades), "{reader}: symbols");
        assert!(view.trades == want_trades, "{reader}: the trades differ from the accepted trades");
        assert_eq!(view.window_metrics.len(), want_metrics.len(), "{reader}: number of windows");
        assert!(view.window_metrics == want_metrics, "{reader}: window_metrics differ from the reference");
        assert!(view.anomalies == want_anomalies, "{reader}: anomalies differ from the reference");

        let mut letters: Vec<_> = view
            .dead_letters
            .iter()
            .map(|l| {
                let reason = RejectReason::ALL.into_iter().find(|r| r.as_str() == l.reason).expect("a known reason");
                (l.source.clone(), l.position, l.element, reason)
            })
            .collect();
        letters.sort();
        assert_eq!(letters, want_letters, "{reader}: dead letters");
        // Payloads are the raw records (late elements of messages are pinned in rules.rs).
        let payloads: BTreeMap<_, _> =
            view.dead_letters.iter().map(|l| ((l.position, l.element), l.payload.clone())).collect();
        for r in expected.rejects.iter().filter(|r| r.reason != RejectReason::Late) {
            assert_eq!(payloads[&(r.position as i64, r.element as i32)], r.payload, "{reader}: payload");
        }
        assert!(view.dead_letters.iter().all(|l| l.source == source && l.date.len() == 10));
    }
}
