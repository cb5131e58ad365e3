//! `--lake-layout hour`: an hour's trades of every symbol in files sorted by symbol, for
//! large universes. The same trades, the same results and the same determinism as the
//! default layout; readers prune by symbol; a replay reads it back.

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use tradeflow_tests::expect::Expected;
use tradeflow_tests::lake::{dataset_bytes, read_trades, read_window_metrics};
use tradeflow_tests::{Finished, file_url, run_tradeflow, simulate, temp_dir};

const TIMEOUT: Duration = Duration::from_secs(120);

fn run(source: &str, lake: &Path, extra: &[&str]) -> Finished {
    let lake = file_url(lake);
    let mut args = vec!["run", "--source", source, "--lake", &lake, "--progress-interval", "0", "--window", "30s"];
    args.extend_from_slice(extra);
    let out = run_tradeflow(&args, TIMEOUT);
    out.assert_success("tradeflow run");
    out
}

#[test]
fn the_hour_layout_holds_every_trade_once_sorted_by_symbol_at_any_worker_count() {
    let dir = temp_dir();
    let input = dir.path().join("market.ndjson");
    // About two and a half hours of 21 symbols, crossing midnight.
    simulate(&input, &["--count", "40000", "--rate", "4", "--seed", "9", "--start", "2023-11-14T22:40:00Z"]);
    let source = file_url(&input);
    // Files of 3 000 rows: several per hour, and hours spilled to sorted runs and merged.
    let hour = ["--lake-layout", "hour", "--lake-file-rows", "3000"];
    let (one, two, by_symbol) = (dir.path().join("w1"), dir.path().join("w2"), dir.path().join("symbol"));
    let summary = run(&source, &one, &hour).summary();
    run(&source, &two, &[&hour[..], &["-w", "2"]].concat());
    run(&source, &by_symbol, &[]);

    let files = dataset_bytes(&one, "trades");
    assert_eq!(files, dataset_bytes(&two, "trades"), "-w 1 and -w 2 write the same objects, byte for byte");
    let names: Vec<&String> = files.keys().collect();
    assert!(names.iter().all(|n| n.contains("/hour=") && !n.contains("symbol=")), "{names:?}");
    assert!(names.iter().any(|n| n.ends_with("-0002.parquet")), "busy hours are split: {names:?}");
    let hours: std::collections::BTreeSet<&str> = names.iter().filter_map(|n| n.split('/').nth(2)).collect();
    assert!(hours.len() >= 3, "{hours:?}");

    // Every accepted trade once, as the per-file reading expects, and as the default layout holds.
    let mut trades = read_trades(&one);
    assert_eq!(trades.len() as u64, summary.accepted);
    trades.sort();
    let expected = Expected::from_files(&[input.as_path()], 5_000);
    assert!(trades == expected.lake_trades(), "the trades differ from the per-file reading");
    let mut default = read_trades(&by_symbol);
    default.sort();
    assert!(trades == default, "the two layouts hold the same trades");
    assert_eq!(dataset_bytes(&one, "window_metrics"), dataset_bytes(&by_symbol, "window_metrics"));

    // A replay of the by-hour lake computes the same final windows.
    let replayed = dir.path().join("replayed");
    run(&format!("lake://{}", one.display()), &replayed, &[]);
    let (mut got, mut want) = (read_window_metrics(&replayed), read_window_metrics(&one));
    got.sort();
    want.sort();
    assert!(!want.is_empty() && got == want, "the replay's final windows differ");

    // Readers: DuckDB with hive partitions sees date, hour and symbol; pyarrow finds min/max
    // symbol statistics in every row group, which is what lets readers prune by symbol.
    if let Some(python) = tradeflow_tests::python::python() {
        let script = r#"
import sys, glob, duckdb, pyarrow.parquet as pq
root = sys.argv[1]
con = duckdb.connect()
n, symbols = con.execute(f"SELECT count(*), count(DISTINCT symbol) FROM read_parquet('{root}/trades/**/*.parquet', hive_partitioning=true) WHERE hour IS NOT NULL").fetchone()
aapl = con.execute(f"SELECT count(*) FROM read_parquet('{root}/trades/**/*.parquet', hive_partitioning=true) WHERE symbol = 'AAPL'").fetchone()[0]
groups = 0
for path in glob.glob(f"{root}/trades/**/*.parquet", recursive=True):
    meta = pq.ParquetFile(path).metadata
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(0).statistics
        assert meta.row_group(g).column(0).path_in_schema == "symbol" and stats.has_min_max, path
        groups += 1
print(n, symbols, aapl, groups)
"#;
        let out = Command::new(python).args(["-c", script]).arg(&one).output().expect("running python");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        let fields: Vec<u64> = text.split_whitespace().map(|f| f.parse().expect("a number")).collect();
        let aapl = trades.iter().filter(|t| t.symbol == "AAPL").count() as u64;
        assert_eq!(fields[..3], [summary.accepted, 21, aapl], "DuckDB: {text}");
        assert!(fields[3] >= files.len() as u64, "a row group at least per file: {text}");
    }
}
