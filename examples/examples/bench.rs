//! Throughput benchmark: the pipeline against a plain single-threaded loop.
//!
//! Generates N million simulated trades to an NDJSON file (`tradeflow simulate`), then, in
//! one run so that the ratios are comparable on a shared machine:
//!
//! * the **yardstick** — one thread that reads the file, parses and validates every line,
//!   applies the lateness rule, aggregates exactly per (symbol, window) with interned
//!   symbols, and computes the same final window metrics and anomalies;
//! * `tradeflow run` on that file at `-w 1` and `-w 2`, without and with the lake;
//! * the same with PostgreSQL (a throwaway server, as the tests start; skipped when its
//!   binaries are missing) at `-w 1` and `-w 2` without the lake and at `-w 2` with it,
//!   and on two processes (`-n 2`, one worker each, on this machine), without and with
//!   the lake;
//! * a replay of the lake a `-w 2` run wrote (`lake://`) at `-w 1`, `-w 2` and `-n 2`
//!   without the lake, at `-w 2` into a lake of its own, and at `-w 2` into PostgreSQL.
//!
//! The yardstick runs at the start, in the middle and at the end; the ratios are to the
//! median of the three (the load of a shared machine moves while the runs go on).
//! It prints trades/s, the ratio to the yardstick and peak memory for each, checks that
//! every run found the same final windows and anomalies as the yardstick, and runs the
//! pipeline on a quarter of the input to show that peak memory does not grow with the
//! length of the input.
//!
//! Run (release, after building the binary):
//!
//! ```text
//! cargo build --release -p tradeflow && cargo run --release -p tradeflow-examples --example bench -- [MILLIONS]
//! ```

use anyhow::{Context, bail};
use std::path::Path;
use std::process::Command;

struct Outcome {
    label: String,
    seconds: f64,
    windows: u64,
    anomalies: u64,
    peak_mib: u64,
}

/// The single-thread yardstick on `path` (see [`tradeflow_examples::yardstick`]).
fn yardstick(path: &Path) -> anyhow::Result<Outcome> {
    let y = tradeflow_examples::yardstick(path)?;
    Ok(Outcome {
        label: "yardstick (1 thread)".into(),
        seconds: y.seconds,
        windows: y.windows,
        anomalies: y.anomalies,
        peak_mib: y.peak_kib / 1024,
    })
}

fn main() -> anyhow::Result<()> {
    let millions: f64 =
        std::env::args().nth(1).map_or(Ok(5.0), |a| a.parse()).context("the argument is millions of trades, e.g. 5")?;
    let trades = (millions * 1e6) as u64;
    let binary = tradeflow_examples::tradeflow_binary()?;
    let dir = std::env::temp_dir().join(format!("tradeflow-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let input = dir.join("trades.ndjson");
    let quarter = dir.join("quarter.ndjson");
    for (path, count) in [(&input, trades), (&quarter, trades / 4)] {
        let status = Command::new(&binary)
            .args(["simulate", "--out"])
            .arg(path)
            // 500 trades/s of event time: hours of market, so windows close, anomalies fire
            // and state is evicted during the run; even the quarter input spans more than
            // the analytics' 40-minute history horizon, so peak memory is comparable.
            .args(["--count", &count.to_string(), "--seed", "1", "--format", "mixed", "--rate", "500"])
            .status()?;
        if !status.success() {
            bail!("tradeflow simulate failed");
        }
    }
    let bytes = std::fs::metadata(&input)?.len();
    println!(
        "input: {} trades, {:.0} MiB, {:.1} bytes/trade\n",
        trades,
        bytes as f64 / 1048576.0,
        bytes as f64 / trades as f64
    );

    // The yardstick runs three times, at the start, in the middle and at the end, and the
    // ratios are to the median: a shared machine's load moves while the runs go on.
    let mut outcomes = vec![yardstick(&input)?];
    let mut yardsticks = vec![outcomes[0].seconds];
    for (label, workers, lake) in [
        ("tradeflow -w 1 --no-lake", 1, false),
        ("tradeflow -w 2 --no-lake", 2, false),
        ("tradeflow -w 1 (lake)", 1, true),
        ("tradeflow -w 2 (lake)", 2, true),
    ] {
        outcomes.push(pipeline(&binary, &input, &dir, label, workers, lake)?);
    }
    let file = format!("file://{}", input.display());
    yardsticks.push(yardstick(&input)?.seconds);
    let cluster = tradeflow_tests::postgres::PgCluster::start();
    match &cluster {
        Some(cluster) => {
            for (workers, lake) in [(1, false), (2, false), (2, true)] {
                let db = cluster.database(&format!("bench{workers}{}", if lake { "lake" } else { "" }));
                let label = format!("tradeflow -w {workers} {}, PostgreSQL", if lake { "(lake)" } else { "--no-lake" });
                outcomes.push(pipeline_with(&binary, &file, &dir, &label, workers, lake, &["--postgres", &db.url()])?);
            }
        }
        None => println!("(no PostgreSQL server binaries: the PostgreSQL rows are skipped)"),
    }
    for (label, lake) in [("tradeflow -n 2 -w 1 --no-lake", false), ("tradeflow -n 2 -w 1 (lake)", true)] {
        outcomes.push(processes(&binary, &file, &dir, label, lake)?);
    }
    // The lake of a -w 2 run, kept, then replayed.
    let written = dir.join("written");
    let (_, stderr) = tradeflow_examples::timed_run(&binary, &file, 2, &written, true).context("writing the lake")?;
    if tradeflow_examples::summary_field(&stderr, "trades accepted") == 0 {
        bail!("the lake to replay holds no trades:\n{stderr}");
    }
    let replay = format!("lake://{}", written.display());
    for workers in [1, 2] {
        let label = format!("lake replay -w {workers} --no-lake");
        outcomes.push(pipeline_with(&binary, &replay, &dir, &label, workers, false, &[])?);
    }
    outcomes.push(processes(&binary, &replay, &dir, "lake replay -n 2 -w 1 --no-lake", false)?);
    // The replay writing a lake of its own, and into PostgreSQL.
    outcomes.push(pipeline_with(&binary, &replay, &dir, "lake replay -w 2 (lake)", 2, true, &[])?);
    if let Some(cluster) = &cluster {
        let db = cluster.database("benchreplay");
        let label = "lake replay -w 2 --no-lake, PostgreSQL";
        outcomes.push(pipeline_with(&binary, &replay, &dir, label, 2, false, &["--postgres", &db.url()])?);
    }
    yardsticks.push(yardstick(&input)?.seconds);
    let small = pipeline(&binary, &quarter, &dir, "tradeflow -w 1 --no-lake, N/4", 1, false)?;
    let small_lake = pipeline(&binary, &quarter, &dir, "tradeflow -w 1 (lake), N/4", 1, true)?;

    println!(
        "yardstick at the start, in the middle and at the end: {} s; the ratios are to the median\n",
        yardsticks.iter().map(|s| format!("{s:.2}")).collect::<Vec<_>>().join(", ")
    );
    yardsticks.sort_by(f64::total_cmp);
    let base = yardsticks[yardsticks.len() / 2];
    outcomes[0].seconds = base;
    println!("| run | trades/s | vs yardstick | peak memory |");
    println!("|---|---:|---:|---:|");
    for o in &outcomes {
        println!(
            "| {} | {:.2}M | {:.2}x | {} MiB |",
            o.label,
            trades as f64 / o.seconds / 1e6,
            base / o.seconds,
            o.peak_mib
        );
    }
    for (label, full, quarter) in [("--no-lake", &outcomes[1], &small), ("with the lake", &outcomes[3], &small_lake)] {
        println!(
            "\npeak memory -w 1 {label}: {} MiB at N = {trades} trades, {} MiB at N/4 (ratio {:.2})",
            full.peak_mib,
            quarter.peak_mib,
            full.peak_mib as f64 / quarter.peak_mib.max(1) as f64
        );
    }
    for o in &outcomes[1..] {
        if (o.windows, o.anomalies) != (outcomes[0].windows, outcomes[0].anomalies) {
            bail!(
                "{} found {} windows and {} anomalies; the yardstick {} and {}",
                o.label,
                o.windows,
                o.anomalies,
                outcomes[0].windows,
                outcomes[0].anomalies
            );
        }
    }
    println!(
        "every run found the yardstick's {} final windows and {} anomalies",
        outcomes[0].windows, outcomes[0].anomalies
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn pipeline(
    binary: &Path,
    input: &Path,
    dir: &Path,
    label: &str,
    workers: usize,
    lake: bool,
) -> anyhow::Result<Outcome> {
    pipeline_with(binary, &format!("file://{}", input.display()), dir, label, workers, lake, &[])
}

/// `tradeflow run --source SOURCE` with `extra` flags, timed, its results read.
fn pipeline_with(
    binary: &Path,
    source: &str,
    dir: &Path,
    label: &str,
    workers: usize,
    lake: bool,
    extra: &[&str],
) -> anyhow::Result<Outcome> {
    let (seconds, stderr) = tradeflow_examples::timed_run_with(binary, source, workers, &dir.join("lake"), lake, extra)
        .with_context(|| label.to_owned())?;
    Ok(outcome(label, seconds, &stderr))
}

fn outcome(label: &str, seconds: f64, stderr: &str) -> Outcome {
    let field = |name: &str| tradeflow_examples::summary_field(stderr, name);
    Outcome {
        label: label.into(),
        seconds,
        windows: field("windows final"),
        anomalies: field("anomalies final"),
        peak_mib: field("peak memory"),
    }
}

/// `source` on two processes of one worker each (`-n 2`, on this machine), timed until
/// both have exited; process 0's summary counts both (its peak memory is its own).
fn processes(binary: &Path, source: &str, dir: &Path, label: &str, lake: bool) -> anyhow::Result<Outcome> {
    let (seconds, stderr) = tradeflow_examples::timed_processes(binary, source, 2, &dir.join("lake"), lake, &[])
        .with_context(|| label.to_owned())?;
    Ok(outcome(label, seconds, &stderr))
}
