//! `tradeflow check` (issue 13): a range's final results recomputed from the lake's raw
//! trades reconcile, bit for bit, with the lake and PostgreSQL after a good run; and the
//! check fails, naming the first differing (symbol, window, column, both values), on a
//! lake file with one value rewritten, a PostgreSQL row with one column updated, and a
//! lake with a trades file removed. Its JSON output is parsed and checked against what
//! the run wrote.

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMillisecondType};
use arrow_array::{Array, ArrayRef, Float64Array, RecordBatch};
use parquet::arrow::ArrowWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tradeflow_model::WindowMetrics;
use tradeflow_tests::expect::Knobs;
use tradeflow_tests::lake::{files_under, read_anomalies, read_batches, read_trades, read_window_metrics};
use tradeflow_tests::postgres::{PASSWORD, PgCluster};
use tradeflow_tests::process::Running;
use tradeflow_tests::s3::S3Server;
use tradeflow_tests::{Finished, file_url, simulate, temp_dir, tradeflow_command};

const TIMEOUT: Duration = Duration::from_secs(180);
/// The simulator's default start: every trade is on this UTC day.
const DAY: &str = "2023-11-14";

/// Several windows per symbol, and anomalies, on a small simulated market.
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

/// The analytics flags shared by `run` and `check` (`--allowed-lateness` is run's only).
fn analytics_args(knobs: &Knobs) -> Vec<String> {
    let args = knobs.args();
    let lateness = args.iter().position(|a| a == "--allowed-lateness").expect("set by Knobs");
    args.iter().enumerate().filter(|(i, _)| *i != lateness && *i != lateness + 1).map(|(_, a)| a.clone()).collect()
}

/// `tradeflow run` of a simulated market into `lake` (and `extra` flags); its output.
fn run_market(dir: &Path, lake: &Path, count: &str, extra: &[&str]) -> Finished {
    let input = dir.join("market.ndjson");
    if !input.exists() {
        simulate(&input, &["--count", count, "--rate", "40", "--seed", "5", "--format", "mixed"]);
    }
    let mut command = tradeflow_command();
    command.args(["run", "--source", &file_url(&input), "--lake", &file_url(lake), "--progress-interval", "0"]);
    command.args(knobs().args()).args(extra);
    let out = Running::spawn(command).finish(TIMEOUT);
    out.assert_success("tradeflow run");
    out
}

/// `tradeflow check --format json` of `lake` for the simulator's day, with `extra` flags
/// and environment; its output and the parsed report.
fn check(lake: &Path, extra: &[&str], env: &[(&str, String)]) -> (Finished, serde_json::Value) {
    check_with(&knobs(), lake, extra, env)
}

/// [`check`] with other analytics settings.
fn check_with(knobs: &Knobs, lake: &Path, extra: &[&str], env: &[(&str, String)]) -> (Finished, serde_json::Value) {
    let mut command = tradeflow_command();
    command.args(["check", "--lake", &file_url(lake), "--date", DAY, "--format", "json"]);
    command.args(analytics_args(knobs)).args(extra);
    for (name, value) in env {
        command.env(name, value);
    }
    let out = Running::spawn(command).finish(TIMEOUT);
    let report = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("check printed no JSON ({e}):\n{}\nstderr:\n{}", out.stdout, out.stderr));
    assert!(!out.stdout.contains(PASSWORD) && !out.stderr.contains(PASSWORD), "the password was printed");
    (out, report)
}

fn int(v: &serde_json::Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("{v} is not an integer"))
}

fn target<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    let targets = report["targets"].as_array().expect("targets");
    targets.iter().find(|t| t["name"] == name).unwrap_or_else(|| panic!("no target {name} in {targets:?}"))
}

/// A passing check: every row of `lake` (and the second target, if any) reconciles.
fn assert_passes(out: &Finished, report: &serde_json::Value, lake: &Path, run: &Finished, targets: &[&str]) {
    out.assert_success("tradeflow check");
    let summary = run.summary();
    let (metrics, anomalies) = (read_window_metrics(lake), read_anomalies(lake));
    assert_eq!(metrics.len() as u64, summary.windows_final);
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(int(&report["mismatches"]), 0);
    let names: Vec<&str> = report["targets"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, targets);
    for name in targets {
        let t = target(report, name);
        assert_eq!(int(&t["windows"]["checked"]), metrics.len() as i64, "{name}: {t:#}");
        assert_eq!(int(&t["windows"]["matching"]), metrics.len() as i64, "{name}: {t:#}");
        assert_eq!(int(&t["anomalies"]["checked"]), anomalies.len() as i64, "{name}: {t:#}");
        assert_eq!(int(&t["anomalies"]["matching"]), anomalies.len() as i64, "{name}: {t:#}");
        assert!(t["first_mismatch"].is_null());
    }
    assert!(!anomalies.is_empty(), "the market should have anomalies");
    // Completeness: every accepted trade, every rejected record (all of this day).
    let q = &report["quality"];
    assert_eq!(int(&q["accepted"]) as u64, summary.accepted, "{q:#}");
    assert_eq!(int(&q["rejected"]) as u64, summary.rejected, "{q:#}");
    assert_eq!(int(&q["windows"]), metrics.len() as i64);
    assert_eq!(q["reconciled_share"], 1.0);
    let acceptance = summary.accepted as f64 / (summary.accepted + summary.rejected) as f64;
    assert_eq!(q["score"].as_f64(), Some(acceptance));
    let symbols = report["symbols"].as_array().unwrap();
    let trades = read_trades(lake);
    for s in symbols {
        let symbol = s["symbol"].as_str().unwrap();
        assert_eq!(int(&s["trades"]) as usize, trades.iter().filter(|t| t.symbol == symbol).count(), "{symbol}");
        assert_eq!(int(&s["windows"]) as usize, metrics.iter().filter(|m| m.symbol.as_str() == symbol).count());
        assert_eq!(s["windows"], s["reconciled"]);
    }
    let late: i64 = symbols.iter().map(|s| int(&s["late"])).sum();
    assert_eq!(late as u64, summary.by_reason.get("late").copied().unwrap_or(0));
}

/// The first mismatch of `target` in a failing check's report.
fn first_mismatch<'a>(out: &Finished, report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    assert!(!out.success(), "the check should fail:\n{}", out.stdout);
    assert_eq!(report["ok"], false);
    assert!(out.stderr.contains("check failed"), "{}", out.stderr);
    let m = &target(report, name)["first_mismatch"];
    assert!(m.is_object(), "no first mismatch for {name}: {report:#}");
    // The error line names it too.
    let (symbol, start, column) =
        (m["symbol"].as_str().unwrap(), m["window_start"].as_str().unwrap(), m["column"].as_str().unwrap());
    assert!(
        out.stderr.contains(symbol) && out.stderr.contains(start) && out.stderr.contains(&format!("column {column}")),
        "{}",
        out.stderr
    );
    m
}

/// Rewrites row `row` of the window_metrics file `path` with a `vwap` one ulp higher;
/// the row's (symbol, window start, vwap) as they were.
fn tamper_vwap(path: &Path, row: usize) -> (String, i64, f64) {
    let batches = read_batches(path);
    let schema = batches[0].schema();
    let mut writer = ArrowWriter::try_new(Vec::new(), schema.clone(), None).expect("a writer");
    let mut offset = 0;
    let mut changed = None;
    for batch in &batches {
        let index = schema.index_of("vwap").unwrap();
        let vwap = batch.column(index).as_primitive::<Float64Type>();
        if (offset..offset + batch.num_rows()).contains(&row) {
            let i = row - offset;
            assert!(!vwap.is_null(i), "row {row} has no vwap");
            let symbol = batch.column_by_name("symbol").unwrap().as_string::<i32>().value(i).to_owned();
            let start =
                batch.column_by_name("window_start").unwrap().as_primitive::<TimestampMillisecondType>().value(i);
            changed = Some((symbol, start, vwap.value(i)));
        }
        let values: Float64Array = (0..batch.num_rows())
            .map(|i| {
                let v = (!vwap.is_null(i)).then(|| vwap.value(i));
                if offset + i == row { v.map(|v| f64::from_bits(v.to_bits() + 1)) } else { v }
            })
            .collect();
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        columns[index] = Arc::new(values);
        writer.write(&RecordBatch::try_new(schema.clone(), columns).unwrap()).unwrap();
        offset += batch.num_rows();
    }
    std::fs::write(path, writer.into_inner().unwrap()).unwrap();
    changed.unwrap_or_else(|| panic!("{} has no row {row}", path.display()))
}

fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .map(|p| dir.join(p))
        .collect()
}

#[test]
fn a_good_run_reconciles_and_a_tampered_lake_value_is_named() {
    let dir = temp_dir();
    let lake = dir.path().join("lake");
    let run = run_market(dir.path(), &lake, "20000", &[]);

    // The lake's digests are the model's, in the last column.
    let rows = read_window_metrics(&lake);
    let mut digests = Vec::new();
    for path in parquet_files(&lake.join("window_metrics")) {
        for batch in read_batches(&path) {
            assert_eq!(batch.schema().fields().last().unwrap().name(), "digest", "digest is the last column");
            let column = batch.column_by_name("digest").expect("a digest column").as_primitive::<Int64Type>();
            digests.extend(column.values().iter().copied());
        }
    }
    assert_eq!(digests, rows.iter().map(WindowMetrics::digest_i64).collect::<Vec<_>>());

    let (out, report) = check(&lake, &[], &[]);
    assert_passes(&out, &report, &lake, &run, &["lake"]);
    assert_eq!(report["from"], "2023-11-14T00:00:00.000Z");
    assert_eq!(report["params"]["window_ms"], 5000);

    // The table says the same.
    let mut command = tradeflow_command();
    command.args([
        "check",
        "--lake",
        &file_url(&lake),
        "--from",
        "2023-11-14T00:00:00Z",
        "--to",
        "2023-11-15T00:00:00Z",
    ]);
    command.args(analytics_args(&knobs()));
    let table = Running::spawn(command).finish(TIMEOUT);
    table.assert_success("tradeflow check (table)");
    assert!(table.stdout.contains("OK: every window and anomaly of the range reconciles (lake)"), "{}", table.stdout);
    assert!(table.stdout.contains("data quality"), "{}", table.stdout);

    // Other analytics settings than the run's: the check fails.
    let (wrong, report) = check_with(&Knobs { volatility_windows: 6, ..knobs() }, &lake, &[], &[]);
    assert_eq!(first_mismatch(&wrong, &report, "lake")["column"], "volatility");

    // One value rewritten, one ulp off: named with both values.
    let file = parquet_files(&lake.join("window_metrics")).into_iter().next().expect("a window_metrics file");
    let (symbol, start, vwap) = tamper_vwap(&file, 7);
    let (out, report) = check(&lake, &[], &[]);
    let m = first_mismatch(&out, &report, "lake");
    assert_eq!(m["symbol"], symbol.as_str());
    assert_eq!(int(&m["window_start_ms"]), start);
    assert_eq!(m["column"], "vwap");
    assert_eq!(m["expected"], format!("{vwap:?}"));
    assert_eq!(m["found"], format!("{:?}", f64::from_bits(vwap.to_bits() + 1)));
    assert_eq!(int(&report["mismatches"]), 1, "{report:#}");
    assert_eq!(int(&target(&report, "lake")["windows"]["differing"]), 1);
    assert!(report["quality"]["reconciled_share"].as_f64().unwrap() < 1.0);

    // Clear errors for bad input, and for a range with nothing in it.
    let lake_url = file_url(&lake);
    for (args, expected) in [
        (vec!["--date", "2023-14-01"], "--date \"2023-14-01\""),
        (vec!["--from", "2023-11-15T00:00:00Z", "--to", "2023-11-14T00:00:00Z"], "is not before --to"),
        (vec!["--date", DAY, "--lake", "file:///no/such/lake"], "does not exist"),
        (vec!["--date", "2023-11-20", "--lake", lake_url.as_str()], "nothing to check"),
    ] {
        let mut command = tradeflow_command();
        command.arg("check").args(&args);
        let out = Running::spawn(command).finish(TIMEOUT);
        assert!(!out.success() && out.stderr.contains(expected), "{args:?}: {}", out.stderr);
    }
    let help = tradeflow_tests::run_tradeflow(&["check", "--help"], TIMEOUT);
    assert!(help.success() && help.stdout.contains("--gap-windows") && help.stdout.contains("--postgres"));
}

#[test]
fn a_removed_trades_file_is_named_in_the_hour_layout() {
    let dir = temp_dir();
    let lake = dir.path().join("lake");
    let run = run_market(dir.path(), &lake, "20000", &["--lake-layout", "hour", "--lake-file-rows", "3000"]);
    let (out, report) = check(&lake, &["--gap-windows", "0"], &[]);
    assert_passes(&out, &report, &lake, &run, &["lake"]);

    // Remove the second file of the hour: the first window it fed is the first named.
    let files = parquet_files(&lake.join("trades"));
    assert!(files.len() >= 3, "{files:?}");
    let removed = &files[1];
    let w = knobs().window_ms;
    let mut first: Option<(i64, String)> = None;
    let mut removed_trades = Vec::new();
    for batch in read_batches(removed) {
        let symbols = batch.column_by_name("symbol").unwrap().as_string::<i32>().clone();
        let ts = batch.column_by_name("ts").unwrap().as_primitive::<TimestampMillisecondType>().clone();
        for i in 0..batch.num_rows() {
            let key = (ts.value(i).div_euclid(w) * w, symbols.value(i).to_owned());
            removed_trades.push(key.clone());
            first = Some(first.map_or(key.clone(), |f| f.min(key)));
        }
    }
    let (start, symbol) = first.expect("the file has trades");
    std::fs::remove_file(removed).unwrap();
    let (out, report) = check(&lake, &[], &[]);
    let m = first_mismatch(&out, &report, "lake");
    assert_eq!((int(&m["window_start_ms"]), m["symbol"].as_str().unwrap()), (start, symbol.as_str()), "{m:#}");
    let lake_row = read_window_metrics(&lake)
        .into_iter()
        .find(|r| r.window_start == start && r.symbol.as_str() == symbol)
        .expect("the lake has the window");
    let gone = removed_trades.iter().filter(|k| **k == (start, symbol.clone())).count() as u64;
    if gone < lake_row.trade_count {
        // Part of the window's trades were in the removed file.
        assert_eq!(m["column"], "trade_count", "{m:#}");
        assert_eq!(m["expected"], (lake_row.trade_count - gone).to_string());
        assert_eq!(m["found"], lake_row.trade_count.to_string());
    } else {
        assert_eq!(m["column"], "row", "{m:#}");
        assert_eq!(m["found"], format!("a row (trade_count {})", lake_row.trade_count));
    }
    assert!(int(&report["mismatches"]) > 1);
    // Completeness shows the hole: fewer trades, and the symbols lost windows.
    assert!((int(&report["quality"]["accepted"]) as u64) < run.summary().accepted);
}

#[test]
fn the_lake_and_postgresql_reconcile_and_a_tampered_row_is_named() {
    let Some(cluster) = PgCluster::shared() else { return };
    let db = cluster.database("check");
    let dir = temp_dir();
    let lake = dir.path().join("lake");
    let run = run_market(dir.path(), &lake, "20000", &["--postgres", &db.url()]);
    assert_eq!(db.scalar("SELECT count(*) FROM window_metrics WHERE digest IS NULL").as_deref(), Some("0"));

    let (out, report) = check(&lake, &["--postgres", &db.url()], &[]);
    assert_passes(&out, &report, &lake, &run, &["lake", "postgres"]);
    assert_eq!(target(&report, "postgres")["location"], db.server_name());

    // One column of one row updated.
    let rows = db.query(
        "UPDATE window_metrics SET trade_count = trade_count + 1
         WHERE (symbol, window_start) = (SELECT symbol, window_start FROM window_metrics ORDER BY window_start, symbol OFFSET 5 LIMIT 1)
         RETURNING symbol, floor(extract(epoch FROM window_start) * 1000)::bigint, trade_count",
    );
    let (symbol, start, count) = (
        rows[0][0].clone().unwrap(),
        rows[0][1].as_deref().unwrap().parse::<i64>().unwrap(),
        rows[0][2].as_deref().unwrap().parse::<u64>().unwrap(),
    );
    // From DATABASE_URL, as `run` reads it.
    let (out, report) = check(&lake, &[], &[("DATABASE_URL", db.url())]);
    let m = first_mismatch(&out, &report, "postgres");
    assert_eq!((m["symbol"].as_str().unwrap(), int(&m["window_start_ms"])), (symbol.as_str(), start));
    assert_eq!(m["column"], "trade_count");
    assert_eq!(
        (m["expected"].as_str().unwrap(), m["found"].as_str().unwrap()),
        ((count - 1).to_string().as_str(), count.to_string().as_str())
    );
    assert_eq!(target(&report, "lake")["ok"], true, "the lake is untouched");
    assert_eq!(int(&report["mismatches"]), 1);

    // The same check of the lake alone passes.
    let (out, report) = check(&lake, &["--no-postgres"], &[("DATABASE_URL", db.url())]);
    out.assert_success("tradeflow check --no-postgres");
    assert_eq!(report["targets"].as_array().unwrap().len(), 1);
}

#[test]
fn a_lake_on_s3_is_checked_through_the_s3_api() {
    let Some(server) = S3Server::start() else { return };
    server.create_bucket("checked");
    let dir = temp_dir();
    let input = dir.path().join("market.ndjson");
    simulate(&input, &["--count", "5000", "--rate", "40", "--seed", "9", "--format", "mixed"]);
    let lake = "s3://checked/some/prefix";
    let mut run = server.tradeflow(&["run", "--source", &file_url(&input), "--lake", lake, "--progress-interval", "0"]);
    // No checkpoints: the final one costs a bounded run to S3 tens of seconds.
    run.args(knobs().args()).args(["--checkpoint-interval", "0"]);
    let run = Running::spawn(run).finish(TIMEOUT);
    run.assert_success("tradeflow run to S3");
    let mut command = server.tradeflow(&["check", "--lake", lake, "--date", DAY, "--format", "json"]);
    command.args(analytics_args(&knobs()));
    let out = Running::spawn(command).finish(TIMEOUT);
    out.assert_success("tradeflow check of an S3 lake");
    let report: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    let lake_target = target(&report, "lake");
    assert_eq!(lake_target["location"], lake);
    assert_eq!(int(&lake_target["windows"]["matching"]) as u64, run.summary().windows_final);
    assert_eq!(int(&report["quality"]["accepted"]) as u64, run.summary().accepted);
    // A bucket that does not exist is named, with the fix.
    let out =
        Running::spawn(server.tradeflow(&["check", "--lake", "s3://no-such-bucket/x", "--date", DAY])).finish(TIMEOUT);
    assert!(!out.success() && out.stderr.contains("no-such-bucket"), "{}", out.stderr);
}
