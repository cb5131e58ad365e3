//! Storage per trade of the default job.
//!
//! Runs the release `tradeflow run` as a newcomer does (the simulator at its default
//! 10,000 trades/s over its default symbols, one-minute windows, the lake on), into a
//! fresh local lake, for a while (default 120 s), then stops it with SIGTERM (the
//! simulator is not checkpointed, so the stop finalises every window and writes every
//! file). It prints, per lake dataset, the bytes and files written, the bytes per
//! accepted trade, and the resulting GB per day at 10,000 trades/s.
//!
//! ```text
//! cargo build --release -p tradeflow && cargo run --release -p tradeflow-examples --example storage_bench -- [SECONDS]
//! ```

use anyhow::{Context, bail};
use std::path::Path;
use std::time::Duration;
use tradeflow_tests::Running;

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
    std::thread::sleep(Duration::from_secs(seconds));
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
    println!("| dataset | bytes | files | bytes per trade | GB per day at 10k trades/s |");
    println!("|---|---:|---:|---:|---:|");
    let per_day = |bytes_per_trade: f64| bytes_per_trade * 10_000.0 * 86_400.0 / 1e9;
    let (mut all_bytes, mut all_files) = (0, 0);
    for dataset in DATASETS {
        let (bytes, files) = size_of(&lake.join(dataset));
        all_bytes += bytes;
        all_files += files;
        let per_trade = bytes as f64 / trades as f64;
        println!("| `{dataset}` | {bytes} | {files} | {per_trade:.3} | {:.3} |", per_day(per_trade));
    }
    let per_trade = all_bytes as f64 / trades as f64;
    println!("| total | {all_bytes} | {all_files} | {per_trade:.3} | {:.3} |", per_day(per_trade));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Bytes and files under `dir` (every file, recursively; 0 when it does not exist).
fn size_of(dir: &Path) -> (u64, u64) {
    let Ok(entries) = std::fs::read_dir(dir) else { return (0, 0) };
    let (mut bytes, mut files) = (0, 0);
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            let (b, f) = size_of(&entry.path());
            (bytes, files) = (bytes + b, files + f);
        } else if let Ok(meta) = entry.metadata() {
            (bytes, files) = (bytes + meta.len(), files + 1);
        }
    }
    (bytes, files)
}
