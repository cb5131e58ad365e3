//! SPEC 4 and 8: for the same input, final results are bit-identical whatever the number
//! of worker threads or processes. The lake's `window_metrics`, `anomalies` and `trades`
//! trees must hold the same object names with the same bytes at `-w 1`, `-w 2` and on
//! `-n 2` processes, and equal a from-scratch recomputation.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::time::Duration;
use tradeflow_model::AnomalyKind;
use tradeflow_sources::format::{Item, parse_line};
use tradeflow_tests::expect::{Expected, Knobs};
use tradeflow_tests::lake::{
    assert_same_tree, consolidate, read_anomalies, read_metrics_changelog, read_window_metrics, results_tree,
};
use tradeflow_tests::process::Running;
use tradeflow_tests::{Finished, Summary, file_url, run_two_processes, simulate, temp_dir, tradeflow_command};

const TIMEOUT: Duration = Duration::from_secs(180);

/// Several windows per symbol and anomalies on simulated data (5 s windows over ~20
/// minutes of simulated trading).
fn knobs() -> Knobs {
    Knobs {
        window_ms: 5_000,
        slide_ms: None,
        lateness_ms: 5_000,
        volatility_windows: 5,
        baseline_windows: 5,
        min_history: 2,
        spike_factor: 2.0,
        jump_sigma: 2.0,
    }
}

/// The greatest valid ts of an NDJSON file.
fn max_ts(path: &Path) -> i64 {
    let bytes = std::fs::read(path).expect("reading the input");
    let mut max = i64::MIN;
    for line in bytes.split(|b| *b == b'\n') {
        parse_line(line, &mut |item| {
            if let Item::Trade(t) = item {
                max = max.max(t.ts);
            }
        });
    }
    max
}

/// Simulated trades (flat lines and Finnhub messages) plus tricky lines at the end.
fn write_input(path: &Path) {
    simulate(path, &["--format", "mixed", "--count", "120000", "--rate", "100", "--seed", "7"]);
    let t = max_ts(path);
    let mut file = std::fs::OpenOptions::new().append(true).open(path).expect("opening the input");
    let lines = [
        // Ties on ts (open/close tie-breaks), tricky symbols, zero and 8-decimal volumes.
        format!(r#"{{"s":"AAPL","p":190.01,"t":{t},"v":1,"c":["1"]}}"#),
        format!(r#"{{"s":"AAPL","p":189.99,"t":{t},"v":2,"c":null}}"#),
        format!(
            r#"{{"type":"trade","data":[{{"s":"IC MARKETS:1","p":1.1,"t":{t},"v":0}},{{"s":"KRAKEN:XBT/USD","p":37000.5,"t":{t},"v":0.00000001}},{{"s":"BINANCE:BTCUSDT","p":-1,"t":{t},"v":1}},7]}}"#
        ),
        format!(r#"{{"s":"OANDA:EUR_USD","p":1.0812345678,"t":{},"v":0}}"#, t - 4_000),
        // Late, bad and garbage records.
        format!(r#"{{"s":"MSFT","p":370,"t":{},"v":5}}"#, t - 60_000),
        format!(r#"{{"s":"MSFT","p":0,"t":{t},"v":5}}"#),
        "not json".to_owned(),
        r#"{"type":"ping"}"#.to_owned(),
    ];
    for line in lines {
        writeln!(file, "{line}").expect("appending to the input");
    }
    // At least three chunks, so that -w 2 parses the file on both workers and decides
    // lateness across chunk boundaries.
    let size = std::fs::metadata(path).expect("the input").len();
    assert!(size > 2 * tradeflow_sources::file::DEFAULT_CHUNK_BYTES, "the input is only {size} bytes");
}

fn run_args(input: &Path, lake: &Path) -> Vec<String> {
    let mut args = vec![
        "run".to_owned(),
        "--source".to_owned(),
        file_url(input),
        "--lake".to_owned(),
        file_url(lake),
        "--progress-interval".to_owned(),
        "0".to_owned(),
        // Small trades files, so that a busy symbol's hour is split across several.
        "--lake-file-rows".to_owned(),
        "1500".to_owned(),
    ];
    args.extend(knobs().args());
    args
}

fn run_with(input: &Path, lake: &Path, timely: &[&str]) -> Finished {
    let mut command = tradeflow_command();
    command.args(run_args(input, lake)).args(timely);
    let out = Running::spawn(command).finish(TIMEOUT);
    out.assert_success(&format!("tradeflow run {timely:?}"));
    out
}

fn counts(s: &Summary) -> (u64, u64, BTreeMap<String, u64>, u64, u64) {
    (s.accepted, s.rejected, s.by_reason.clone(), s.windows_final, s.anomalies_final)
}

#[test]
fn final_results_are_bit_identical_across_workers_and_processes() {
    let dir = temp_dir();
    let input = dir.path().join("input.ndjson");
    write_input(&input);
    let lakes = ["w1", "w2", "n2"].map(|name| dir.path().join(name));

    let one = run_with(&input, &lakes[0], &["-w", "1"]);
    let two = run_with(&input, &lakes[1], &["-w", "2"]);
    let (processes, _) = run_two_processes(&run_args(&input, &lakes[2]), dir.path(), TIMEOUT);

    // The runs agree with each other...
    let summary = one.summary();
    assert_eq!(counts(&two.summary()), counts(&summary), "-w 2 summary vs -w 1");
    assert_eq!(counts(&processes.summary()), counts(&summary), "-n 2 summary vs -w 1");
    let reference = results_tree(&lakes[0]);
    assert_same_tree("-w 2 vs -w 1", &results_tree(&lakes[1]), &reference);
    assert_same_tree("-n 2 vs -w 1", &results_tree(&lakes[2]), &reference);

    // ...on a non-trivial output...
    let metrics = read_window_metrics(&lakes[0]);
    let anomalies = read_anomalies(&lakes[0]);
    assert!(metrics.len() > 2_000, "only {} windows", metrics.len());
    for kind in [AnomalyKind::VolumeSpike, AnomalyKind::PriceJump] {
        assert!(anomalies.iter().filter(|a| a.kind == kind).count() > 10, "too few {kind} anomalies");
    }
    assert!(summary.by_reason.get("late").is_some_and(|n| *n > 0), "no late trade: {summary:?}");
    assert!(reference.keys().any(|k| k.starts_with("trades/") && k.ends_with("-0001.parquet")), "no split file");

    // The changelog of every run rebuilds its window metrics, under one run id even
    // across processes, and no final row is ever retracted. It is differential's capture
    // protocol: one update per row and epoch, and one run of progress statements (from
    // process 0) counting every worker's updates (issue 14).
    for lake in &lakes {
        for collection in ["window_metrics", "anomalies"] {
            tradeflow_tests::lake::assert_capture_protocol(lake, collection);
        }
        let updates = read_metrics_changelog(lake);
        let distinct: BTreeSet<_> = updates.iter().map(|u| (&u.row, u.time)).collect();
        assert_eq!(distinct.len(), updates.len(), "{}: a row updated twice in one epoch", lake.display());
        let run_ids: BTreeSet<_> = updates.iter().map(|u| u.run_id.as_str()).collect();
        assert_eq!(run_ids.len(), 1, "{}: run ids {run_ids:?}", lake.display());
        assert!(!updates.iter().any(|u| u.row.is_final && u.diff < 0), "{}: a final row retracted", lake.display());
        let rebuilt = consolidate(&updates);
        assert!(rebuilt.values().all(|d| *d == 1), "{}: a net diff other than 1", lake.display());
        let rebuilt: Vec<_> = rebuilt.into_keys().collect();
        let mut finals = read_window_metrics(lake);
        finals.sort();
        assert!(rebuilt == finals, "{}: the changelog does not rebuild window_metrics", lake.display());
    }

    // ...and with a from-scratch recomputation.
    let knobs = knobs();
    let expected = Expected::from_files(&[&input], knobs.lateness_ms);
    assert_eq!(summary.accepted, expected.accepted.len() as u64);
    assert_eq!(summary.by_reason, expected.reject_counts());
    let (want_metrics, want_anomalies) = expected.results(&knobs);
    let mut metrics = metrics;
    metrics.sort();
    let mut anomalies = anomalies;
    anomalies.sort();
    assert!(metrics == want_metrics, "window_metrics differ from the reference");
    assert!(anomalies == want_anomalies, "anomalies differ from the reference");
}

/// A bounded simulator source (`count`, unpaced) simulates each symbol as one stream
/// whichever worker owns it: the accepted trades, hence every result, are the same at
/// any worker count, here with hopping windows.
#[test]
fn a_bounded_simulator_gives_the_same_lake_on_any_worker_count() {
    let dir = temp_dir();
    let source = "sim://?count=40000&rate=0&seed=5&start=2023-11-14T22:13:20Z";
    let mut summaries = Vec::new();
    let mut trees = Vec::new();
    for workers in ["1", "3"] {
        let lake = dir.path().join(format!("w{workers}"));
        let mut command = tradeflow_command();
        command.args(["run", "--source", source, "--lake", &file_url(&lake), "--progress-interval", "0"]);
        command.args(["--window", "200ms", "--slide", "50ms", "--min-history", "2", "-w", workers]);
        let out = Running::spawn(command).finish(TIMEOUT);
        out.assert_success(&format!("tradeflow run -w {workers}"));
        summaries.push(counts(&out.summary()));
        trees.push(results_tree(&lake));
    }
    let (accepted, rejected, ..) = summaries[0].clone();
    assert_eq!(accepted + rejected, 40_000, "count=40000 is the number of records");
    assert!(summaries[0].4 > 0, "no anomaly: {:?}", summaries[0]);
    assert_eq!(summaries[1], summaries[0], "-w 3 summary vs -w 1");
    assert_same_tree("-w 3 vs -w 1", &trees[1], &trees[0]);
}
