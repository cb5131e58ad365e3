//! Storage per trade of the default job.
//!
//! Runs the release `tradeflow run` as a newcomer does (the simulator at its default
//! 10,000 trades/s over its default symbols, one-minute windows, the lake on), into a
//! fresh local lake, for a while (default 120 s), then stops it with SIGTERM (the
//! simulator is not checkpointed, so the stop finalises every window and writes every
//! file). It prints, per lake dataset, the bytes and files written, the bytes per
//! accepted trade, the resulting GB per day at 10,000 trades/s, and the objects written
//! per hour: it lists the lake every second, so it tells the files written while the job
//! ran from those the stop wrote. The suite runs it for an hour, so that every kind of
//! file (trades files close with their hour) is counted over the span it is cut by.
//!
//! ```text
//! cargo build --release -p tradeflow && cargo run --release -p tradeflow-examples --example storage_bench -- [SECONDS]
//! ```

use anyhow::{Context, bail};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tradeflow_tests::Running;
use tradeflow_tests::lake::files_under;

const DATASETS: &[&str] = &["trades", "window_metrics", "anomalies", "changelog", "dead_letter"];

fn main() -> anyhow::Result<()> {
    let seconds: u64 =
        std::env::args().nth(1).map_or(Ok(120), |a| a.parse()).context("the first argument is seconds")?;
    let binary = tradeflow_examples::tradeflow_binary()?;
    let dir = std::env::temp_dir().join(format!("tradeflow-storage-bench-{}", std::process::id()));
    let lake = dir.join("lake");
    std::fs::create_dir_all(&dir)?;
    let mut command = tradeflow_examples::command(&binary);
    command.args(["run", "--progress-interval", "0", "--lake"]).arg(format!("file://{}", lake.display()));
    let mut run = Running::spawn(command);
    // Every object in the lake and when it first appeared: those written while the job
    // runs (at its own pace: files of hours that closed, changelog and dead-letter files
    // cut by age) against those the stop writes (every file still open).
    let started = std::time::Instant::now();
    let mut running: BTreeSet<PathBuf> = BTreeSet::new();
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(1).min(Duration::from_secs(seconds).saturating_sub(started.elapsed())));
        running.extend(objects(&lake));
    }
    run.terminate();
    let output = run.finish(Duration::from_secs(120));
    let stderr = output.stderr;
    if !output.status.success() {
        bail!("tradeflow run failed ({}):\n{stderr}", output.status);
    }
    let trades = tradeflow_examples::summary_field(&stderr, "trades accepted");
    if trades == 0 {
        bail!("the run accepted no trades:\n{stderr}");
    }
    println!("{}", tradeflow_examples::machine());
    println!(
        "the default job (`tradeflow run`: sim:// at 10,000 trades/s, 1-minute windows) for {seconds} s: {trades} trades\n"
    );
    println!(
        "| dataset | bytes | files | bytes per trade | GB per day at 10k trades/s | files written while running | of them per hour | files the stop wrote |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let per_day = |bytes_per_trade: f64| bytes_per_trade * 10_000.0 * 86_400.0 / 1e9;
    let per_hour = |files: usize| files as f64 * 3600.0 / seconds as f64;
    let (mut all_bytes, mut all_files, mut all_running) = (0, 0, 0);
    for dataset in DATASETS {
        let (bytes, files) = size_of(&lake.join(dataset));
        let while_running = running.iter().filter(|p| p.starts_with(lake.join(dataset))).count();
        all_bytes += bytes;
        all_files += files;
        all_running += while_running;
        let per_trade = bytes as f64 / trades as f64;
        println!(
            "| `{dataset}` | {bytes} | {files} | {per_trade:.3} | {:.3} | {while_running} | {:.0} | {} |",
            per_day(per_trade),
            per_hour(while_running),
            files as usize - while_running
        );
    }
    let per_trade = all_bytes as f64 / trades as f64;
    println!(
        "| total | {all_bytes} | {all_files} | {per_trade:.3} | {:.3} | {all_running} | {:.0} | {} |",
        per_day(per_trade),
        per_hour(all_running),
        all_files as usize - all_running
    );
    println!(
        "\nobjects per hour: those written while the job ran, over its {seconds} s (a run shorter than an hour extrapolates:
trades and window_metrics files are written when their hour closes, changelog files every 5 minutes, dead letters every 10)"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The lake's objects: every file under the datasets' directories.
fn objects(lake: &Path) -> Vec<PathBuf> {
    DATASETS
        .iter()
        .flat_map(|dataset| {
            let dir = lake.join(dataset);
            files_under(&dir).into_iter().map(move |file| dir.join(file))
        })
        .collect()
}

/// Bytes and files under `dir` (every file, recursively; 0 when it does not exist).
fn size_of(dir: &Path) -> (u64, u64) {
    let files = files_under(dir);
    let bytes = files.iter().filter_map(|file| std::fs::metadata(dir.join(file)).ok()).map(|m| m.len()).sum();
    (bytes, files.len() as u64)
}
