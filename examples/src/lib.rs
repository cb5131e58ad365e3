//! Runnable tradeflow examples (see `examples/`): each is one file with a doc header
//! saying what it shows and how to run it. The test suite compiles them all.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The `tradeflow` binary next to the running example (target/<profile>/tradeflow), for
/// the benchmarks that run it.
pub fn tradeflow_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let binary = exe.parent().and_then(Path::parent).map(|d| d.join("tradeflow")).context("locating target dir")?;
    if !binary.exists() {
        bail!("{} not found: run `cargo build --release -p tradeflow` first", binary.display());
    }
    Ok(binary)
}

/// `tradeflow run --source SOURCE -w WORKERS` into a fresh lake `lake_dir` (or with
/// `--no-lake`), timed: its wall-clock seconds and its stderr (progress off), or an error
/// with the stderr when it fails.
pub fn timed_run(
    binary: &Path,
    source: &str,
    workers: usize,
    lake_dir: &Path,
    lake: bool,
) -> anyhow::Result<(f64, String)> {
    timed_run_with(binary, source, workers, lake_dir, lake, &[])
}

/// [`timed_run`] with `extra` flags.
pub fn timed_run_with(
    binary: &Path,
    source: &str,
    workers: usize,
    lake_dir: &Path,
    lake: bool,
    extra: &[&str],
) -> anyhow::Result<(f64, String)> {
    let _ = std::fs::remove_dir_all(lake_dir);
    let mut command = Command::new(binary);
    command.args(["run", "--source", source, "-w", &workers.to_string(), "--progress-interval", "0"]).args(extra);
    if lake {
        command.arg("--lake").arg(format!("file://{}", lake_dir.display()));
    } else {
        command.arg("--no-lake");
    }
    let started = Instant::now();
    let output = command.output()?;
    let seconds = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        bail!("tradeflow run --source {source} -w {workers} failed:\n{stderr}");
    }
    Ok((seconds, stderr))
}

/// The number on the summary line that starts with `name` (`trades accepted`, `peak
/// memory`, ...) of a run's stderr; 0 when there is none.
pub fn summary_field(stderr: &str, name: &str) -> u64 {
    stderr
        .lines()
        .find(|l| l.trim_start().starts_with(name))
        .and_then(|l| l.trim_start()[name.len()..].split_whitespace().next().map(|v| v.replace(',', "")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
