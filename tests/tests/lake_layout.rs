//! SPEC 6-8 beyond the single-file run: a `file://` directory source (its files read in
//! name order, each one partition with its own watermark), and replays into the same
//! lake, which must rewrite the same objects rather than add duplicates.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tradeflow_tests::expect::{Expected, Knobs};
use tradeflow_tests::lake::{
    dataset_bytes, files_under, read_anomalies, read_dead_letters, read_trades, read_window_metrics,
};
use tradeflow_tests::process::Running;
use tradeflow_tests::{Finished, file_url, run_tradeflow, simulate, temp_dir, tradeflow_command};

const TIMEOUT: Duration = Duration::from_secs(120);
const T0: i64 = 1_700_000_040_000;

fn run(source: &Path, lake: &Path, extra: &[&str]) -> Finished {
    let (source, lake) = (file_url(source), file_url(lake));
    let mut args = vec!["run", "--source", &source, "--lake", &lake, "--progress-interval", "0"];
    args.extend_from_slice(extra);
    let out = run_tradeflow(&args, TIMEOUT);
    out.assert_success("tradeflow run");
    out
}

fn trade(symbol: &str, price: f64, ts: i64, volume: u32) -> String {
    format!(r#"{{"s":"{symbol}","p":{price:.2},"t":{ts},"v":{volume}}}"#)
}

/// Minutes `from..to` of steady trading in two symbols, one line per 10 s.
fn session(from: i64, to: i64) -> Vec<String> {
    let mut lines = Vec::new();
    for step in from * 6..to * 6 {
        let ts = T0 + step * 10_000;
        lines.push(trade("AAPL", 190.0 + (step % 7) as f64 * 0.1, ts, 10 + (step % 5) as u32));
        lines.push(trade("KRAKEN:XBT/USD", 37_000.0 - (step % 3) as f64, ts + 1, 1));
    }
    lines
}

#[test]
fn a_directory_source_reads_each_file_as_its_own_partition() {
    let dir = temp_dir();
    let input = dir.path().join("input");
    std::fs::create_dir(&input).expect("creating the input directory");
    // a.ndjson trades later than b.ndjson: read as one stream in name order, all of b
    // would be late; each file being its own partition, all of it is on time.
    let mut a = session(30, 40);
    a.push(trade("AAPL", 190.0, T0 + 30 * 60_000 - 60_000, 1)); // late within a.ndjson
    a.push("not json".to_owned());
    let b = session(0, 20);
    std::fs::write(input.join("a.ndjson"), a.join("\n") + "\n").expect("writing a");
    // No newline after the last line: it is still a line.
    std::fs::write(input.join("b.ndjson"), b.join("\n")).expect("writing b");
    std::fs::write(input.join("c.ndjson"), "").expect("writing c");
    let files: Vec<PathBuf> = ["a.ndjson", "b.ndjson", "c.ndjson"].iter().map(|f| input.join(f)).collect();

    let lake = dir.path().join("lake");
    let knobs = Knobs::default();
    let out = run(&input, &lake, &[]);
    let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let expected = Expected::from_files(&paths, knobs.lateness_ms);
    assert_eq!(expected.accepted.len(), a.len() - 2 + b.len());
    let summary = out.summary();
    assert_eq!(summary.accepted, expected.accepted.len() as u64, "{}", out.stderr);
    assert_eq!(summary.by_reason, expected.reject_counts());

    let mut trades = read_trades(&lake);
    trades.sort();
    assert!(trades == expected.lake_trades(), "the trades differ from the per-file reading");
    let (metrics, anomalies) = expected.results(&knobs);
    let mut got = read_window_metrics(&lake);
    got.sort();
    assert!(got == metrics, "window_metrics differ from the reference");
    let mut got = read_anomalies(&lake);
    got.sort();
    assert!(got == anomalies, "anomalies differ from the reference");
    // Each dead letter names its own file.
    let mut letters: Vec<_> = read_dead_letters(&lake).into_iter().map(|l| (l.source, l.reason)).collect();
    letters.sort();
    let a_url = file_url(&files[0]);
    assert_eq!(letters, vec![(a_url.clone(), "invalid_json".to_owned()), (a_url, "late".to_owned())]);

    // The same files as repeated --source flags: the same results, object for object.
    let separate = dir.path().join("separate");
    let (a_url, b_url, c_url) = (file_url(&files[0]), file_url(&files[1]), file_url(&files[2]));
    let lake_url = file_url(&separate);
    let mut args = vec!["run", "--lake", &lake_url, "--progress-interval", "0", "-w", "2"];
    args.extend(["--source", &b_url, "--source", &a_url, "--source", &c_url]);
    let out = run_tradeflow(&args, TIMEOUT);
    out.assert_success("tradeflow run with three --source flags");
    assert_eq!(out.summary(), summary);
    for dataset in ["trades", "window_metrics", "anomalies"] {
        assert!(dataset_bytes(&separate, dataset) == dataset_bytes(&lake, dataset), "{dataset} differ");
    }
}

#[test]
fn overlapping_files_over_several_days_agree_with_the_reference_on_three_workers() {
    let dir = temp_dir();
    let input = dir.path().join("input");
    std::fs::create_dir(&input).expect("creating the input directory");
    // In name order: a later day first, two files overlapping in time, a midnight.
    let starts = ["2023-11-16T23:50:00Z", "2023-11-14T10:00:00Z", "2023-11-15T00:59:00Z", "2023-11-14T09:59:30Z"];
    let mut files = Vec::new();
    for (i, start) in starts.iter().enumerate() {
        let file = input.join(format!("part-{i}.ndjson"));
        let seed = (i + 1).to_string();
        simulate(&file, &["--count", "15000", "--rate", "20", "--seed", &seed, "--start", start, "--format", "mixed"]);
        files.push(file);
    }
    let knobs = Knobs { window_ms: 30_000, ..Knobs::default() };
    let lake = dir.path().join("lake");
    let summary = run(&input, &lake, &["--window", "30s", "-w", "3"]).summary();
    let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let expected = Expected::from_files(&paths, knobs.lateness_ms);
    assert_eq!(summary.accepted, expected.accepted.len() as u64);
    assert_eq!(summary.by_reason, expected.reject_counts());
    let mut trades = read_trades(&lake);
    trades.sort();
    assert!(trades == expected.lake_trades(), "the trades differ from the per-file reading");
    let (metrics, anomalies) = expected.results(&knobs);
    let mut got = read_window_metrics(&lake);
    got.sort();
    assert!(got == metrics, "window_metrics differ from the reference");
    let mut got = read_anomalies(&lake);
    got.sort();
    assert!(got == anomalies, "anomalies differ from the reference");
    let dates: std::collections::BTreeSet<_> =
        files_under(&lake.join("window_metrics")).iter().filter_map(|f| f.parent().map(Path::to_path_buf)).collect();
    assert!(dates.len() >= 4, "{dates:?}");
}

/// Every object of the lake with its bytes.
fn lake_objects(lake: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut all = BTreeMap::new();
    for dataset in ["trades", "window_metrics", "anomalies", "dead_letter", "changelog"] {
        all.extend(dataset_bytes(lake, dataset));
    }
    // Besides the five datasets, only the job's checkpoint manifest (`_checkpoints/`).
    let data: Vec<PathBuf> = files_under(lake).into_iter().filter(|f| !f.starts_with("_checkpoints")).collect();
    assert_eq!(all.len(), data.len(), "objects outside the five datasets: {data:?}");
    all
}

#[test]
fn a_replay_rewrites_the_same_objects() {
    let dir = temp_dir();
    let input = dir.path().join("input.ndjson");
    let mut lines = session(0, 30);
    lines.push("{\"s\":\"AAPL\",\"p\":-1,\"t\":1700000040000,\"v\":1}".to_owned());
    std::fs::write(&input, lines.join("\n") + "\n").expect("writing the input");
    let lake = dir.path().join("lake");
    let args = ["--window", "30s", "--run-id", "replay-test"];

    let first = run(&input, &lake, &args).summary();
    let before = lake_objects(&lake);
    let second = run(&input, &lake, &args).summary();
    let after = lake_objects(&lake);
    assert_eq!(first, second);
    assert_eq!(before.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>(), "the replay added objects");
    for (name, bytes) in &before {
        if name.starts_with("trades/") || name.starts_with("window_metrics/") || name.starts_with("anomalies/") {
            assert!(&after[name] == bytes, "the replay rewrote {name} differently");
        }
    }
    // Readers see each row once.
    assert_eq!(read_trades(&lake).len() as u64, second.accepted);
    assert_eq!(read_window_metrics(&lake).len() as u64, second.windows_final);
    assert_eq!(read_dead_letters(&lake).len() as u64, second.rejected);
}

/// Dead-letter objects are named after the first reject each *worker* read, so a replay
/// with another worker count names them differently and the lake then holds some rows
/// twice (SPEC 7: "a replay rewrites the same objects instead of adding duplicates";
/// readers "get each row exactly once").
#[test]
fn dead_letters_are_not_duplicated_by_a_replay_on_another_worker_count() {
    let dir = temp_dir();
    let input = dir.path().join("input.ndjson");
    simulate(&input, &["--count", "70000", "--rate", "50"]);
    let mut bytes = b"garbage at the start\n".to_vec();
    bytes.extend(std::fs::read(&input).expect("reading the input"));
    bytes.extend(b"garbage at the end\n");
    std::fs::write(&input, &bytes).expect("writing the input");
    assert!(bytes.len() as u64 > tradeflow_sources::file::DEFAULT_CHUNK_BYTES, "one chunk only");
    let lake = dir.path().join("lake");

    let on_two = run(&input, &lake, &["-w", "2"]).summary();
    let on_one = run(&input, &lake, &["-w", "1"]).summary();
    assert_eq!(on_one.rejected, on_two.rejected);
    let letters = read_dead_letters(&lake);
    assert_eq!(letters.len() as u64, on_one.rejected, "dead letters in the lake after the replay");
}

/// SPEC 7: files are "written atomically (no reader ever sees a partial file)". The local
/// store stages each object as `<name>.parquet#<n>` next to its final name and renames
/// it; a process that dies mid-write leaves that partial file inside the dataset, where
/// pyarrow's dataset discovery and Spark (which skip only names starting with `.` or `_`)
/// read it and fail. The same file is visible to any reader listing the directory while
/// a live run writes. Here the process dies deterministically: a file-size limit
/// (`ulimit -f`) kills it (SIGXFSZ) while it writes the large window_metrics object.
#[test]
fn a_crash_mid_write_leaves_no_partial_file_where_readers_look() {
    let dir = temp_dir();
    let input = dir.path().join("input.ndjson");
    // 300 symbols of 200 small trades each, 1 ms windows: small trades files, one large
    // window_metrics object.
    let lines: Vec<String> = (0..60_000i64)
        .map(|i| {
            format!(r#"{{"s":"S{:03}","p":{}.{:02},"t":{},"v":{}}}"#, i % 300, 100 + i % 7, i % 97, T0 + i, 1 + i % 5)
        })
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").expect("writing the input");
    let lake = dir.path().join("lake");
    let mut command = std::process::Command::new("sh");
    command.args(["-c", r#"ulimit -f 512 && exec "$0" "$@""#]).arg(tradeflow_tests::tradeflow_bin());
    command.args(["run", "--source", &file_url(&input), "--lake", &file_url(&lake), "--window", "1ms"]);
    // The dead process cannot clean its spool: keep it in the test's directory.
    command.args(["--progress-interval", "0"]).env("TMPDIR", dir.path());
    let out = tradeflow_tests::process::Running::spawn(command).finish(TIMEOUT);
    assert!(!out.success(), "the run was expected to die at the file-size limit:\n{}", out.stderr);
    // What a Hive-partitioned reader lists: everything but names starting with . or _.
    for file in files_under(&lake) {
        let listed = !file.components().any(|c| c.as_os_str().to_string_lossy().starts_with(['.', '_']));
        if listed {
            assert!(file.extension().is_some_and(|e| e == "parquet"), "a partial object is listed: {}", file.display());
            tradeflow_tests::lake::read_batches(&lake.join(&file));
        }
    }
}

/// The trades writer bounds what it holds back: only a few files (one per 32,768 rows of
/// `--lake-buffer-rows`) hand their rows to the encoder as they come, the others stage
/// whole row groups, and past the buffer the files holding the most spill their rows to
/// the spool. None of it may change what is written: six symbols, 30,000 trades each over
/// an hour boundary (several row groups per file, files split by `--lake-file-rows`),
/// written with a buffer of 5,000 rows (one streaming file, constant spilling) at `-w 1`
/// and `-w 2`, give the very objects the defaults give. They spill however the input is
/// cut into epochs: a writer holds at least two symbols that do not stream, each with
/// 15,000 rows an hour, and a file that takes the staged rows past the buffer within a
/// step spills at once.
#[test]
fn a_writer_that_spills_to_its_spool_writes_the_same_trades_files() {
    let dir = temp_dir();
    let input = dir.path().join("input.ndjson");
    let mut lines = Vec::new();
    for step in 0..30_000i64 {
        for (n, symbol) in ["AAPL", "MSFT", "NVDA", "AMZN", "BINANCE:BTCUSDT", "OANDA:EUR_USD"].iter().enumerate() {
            let price = 100.0 + ((step * 7 + n as i64 * 13) % 101) as f64 * 0.01;
            lines.push(trade(symbol, price, T0 + step * 150 + n as i64, 1 + (step % 9) as u32));
        }
    }
    std::fs::write(&input, lines.join("\n") + "\n").expect("writing the input");
    let args = ["--lake-file-rows", "15000", "--window", "5m"];
    let defaults = dir.path().join("defaults");
    let expected = run(&input, &defaults, &args).summary();
    let trades = dataset_bytes(&defaults, "trades");
    assert!(trades.len() > 12, "two hours of six symbols, some split: {:?}", trades.keys());

    for workers in ["1", "2"] {
        let lake = dir.path().join(format!("spilling-{workers}"));
        let mut command = tradeflow_command();
        command
            .args(["run", "--source", &file_url(&input), "--lake", &file_url(&lake), "--progress-interval", "0"])
            .args(args)
            .args(["--lake-buffer-rows", "5000", "-w", workers])
            .env("RUST_LOG", "info,tradeflow_sinks::lake::trades=debug");
        let out = Running::spawn(command).finish(TIMEOUT);
        out.assert_success("tradeflow run --lake-buffer-rows 5000");
        assert!(out.stderr.contains("spilled staged rows to the spool"), "nothing spilled:\n{}", out.stderr);
        assert_eq!(out.summary().accepted, expected.accepted);
        let written = dataset_bytes(&lake, "trades");
        assert_eq!(written.keys().collect::<Vec<_>>(), trades.keys().collect::<Vec<_>>(), "-w {workers}");
        for (name, bytes) in &trades {
            assert!(&written[name] == bytes, "-w {workers}: {name} differs from the defaults'");
        }
        assert_eq!(read_trades(&lake).len() as u64, expected.accepted);
    }
}
