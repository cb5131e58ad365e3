//! Scale benchmark: peak memory and open files against the number of symbols, lake on.
//!
//! For each symbol count (default 1 000, 10 000 and 100 000) it writes an NDJSON file of
//! that many symbols with a few trades each (default 4), all in one UTC hour, and runs
//! the release `tradeflow` binary over it into a fresh local lake, once per lake layout,
//! sampling the process every 10 ms: its resident memory (peak, from the kernel's
//! high-water mark) and its open file descriptors (peak). It prints one row per run: the
//! symbols, trades, seconds, peak RSS, peak open files, and the trades files written.
//!
//! Run (release, after building the binary):
//!
//! ```text
//! cargo build --release -p tradeflow && cargo run --release -p tradeflow-examples --example scale_bench -- [SYMBOLS...] [--trades N] [-w N] [--bin PATH]...
//! ```
//!
//! `--bin PATH` (repeatable) measures other binaries side by side, e.g. a build of an
//! earlier commit, in the same run.

use anyhow::{Context, bail};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// What one run used at most.
struct Peak {
    seconds: f64,
    rss_mib: f64,
    open_files: usize,
    trades_files: usize,
}

fn main() -> anyhow::Result<()> {
    let mut symbols: Vec<usize> = Vec::new();
    let mut trades_each = 4usize;
    let mut workers = 1usize;
    let mut binaries: Vec<PathBuf> = Vec::new();
    let mut layouts: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--trades" => trades_each = args.next().context("--trades N")?.parse()?,
            "-w" => workers = args.next().context("-w N")?.parse()?,
            "--bin" => binaries.push(args.next().context("--bin PATH")?.into()),
            "--layout" => layouts.push(args.next().context("--layout NAME")?),
            n => symbols
                .push(n.parse().with_context(|| format!("{n:?}: a symbol count, --trades N, -w N or --bin PATH"))?),
        }
    }
    if symbols.is_empty() {
        symbols = vec![1_000, 10_000, 100_000];
    }
    if binaries.is_empty() {
        binaries.push(tradeflow_examples::tradeflow_binary()?);
    }
    if layouts.is_empty() {
        layouts.push(String::new());
    }
    let dir = std::env::temp_dir().join(format!("tradeflow-scale-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    println!(
        "machine: {} cores; -w {workers}; {trades_each} trades per symbol in one hour; lake on (local)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "{:<28} {:<10} {:>9} {:>10} {:>8} {:>12} {:>11} {:>13}",
        "binary", "layout", "symbols", "trades", "seconds", "peak RSS MiB", "peak files", "trades files"
    );
    for &n in &symbols {
        let input = dir.join(format!("market-{n}.ndjson"));
        write_market(&input, n, trades_each)?;
        for binary in &binaries {
            for layout in &layouts {
                let lake = dir.join("lake");
                let _ = std::fs::remove_dir_all(&lake);
                let name = binary.display().to_string().chars().rev().take(28).collect::<String>();
                let name: String = name.chars().rev().collect();
                let layout_name = if layout.is_empty() { "default" } else { layout.as_str() };
                let peak = match measure(binary, &input, &lake, workers, layout) {
                    Ok(peak) => peak,
                    Err(e) => {
                        let why = e.to_string();
                        let first =
                            why.lines().find(|l| l.contains("ERROR") || l.contains("error")).unwrap_or("failed");
                        println!("{name:<28} {layout_name:<10} {n:>9} {:>10}  FAILED: {first}", n * trades_each);
                        continue;
                    }
                };
                println!(
                    "{:<28} {:<10} {:>9} {:>10} {:>8.2} {:>12.0} {:>11} {:>13}",
                    name,
                    layout_name,
                    n,
                    n * trades_each,
                    peak.seconds,
                    peak.rss_mib,
                    peak.open_files,
                    peak.trades_files
                );
            }
        }
        std::fs::remove_file(&input)?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// `symbols` symbols (`X000001`, ...) with `each` trades each, in time order over one
/// hour (2023-11-14T22:00Z).
fn write_market(path: &Path, symbols: usize, each: usize) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let hour = 1_699_999_200_000i64;
    let total = symbols * each;
    for i in 0..total {
        let ts = hour + (i as i64 * 3_599_000) / total as i64;
        let symbol = i % symbols;
        writeln!(
            out,
            "{{\"s\":\"X{symbol:06}\",\"p\":{}.{:02},\"t\":{ts},\"v\":{}}}",
            10 + i % 90,
            i % 100,
            1 + i % 9
        )?;
    }
    out.flush()?;
    Ok(())
}

fn measure(binary: &Path, input: &Path, lake: &Path, workers: usize, layout: &str) -> anyhow::Result<Peak> {
    let mut command = tradeflow_examples::command(binary);
    command
        .args(["run", "--progress-interval", "0", "-w", &workers.to_string()])
        .arg("--source")
        .arg(format!("file://{}", input.display()))
        .arg("--lake")
        .arg(format!("file://{}", lake.display()));
    if !layout.is_empty() {
        command.args(["--lake-layout", layout]);
    }
    let started = Instant::now();
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
    let pid = child.id();
    let stderr = child.stderr.take().context("piped stderr")?;
    let collected = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let (mut rss_kib, mut open_files) = (0u64, 0usize);
    loop {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            let field = |name: &str| {
                status.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            };
            rss_kib = rss_kib.max(field("VmHWM:").unwrap_or(0));
        }
        if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
            open_files = open_files.max(fds.count());
        }
        if child.try_wait()?.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = child.wait()?;
    let stderr = collected.join().unwrap_or_default();
    if !status.success() {
        bail!("{} failed ({status}):\n{stderr}", binary.display());
    }
    Ok(Peak {
        seconds: started.elapsed().as_secs_f64(),
        rss_mib: rss_kib as f64 / 1024.0,
        open_files,
        trades_files: count_files(&lake.join("trades")),
    })
}

fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| {
            if e.path().is_dir() {
                count_files(&e.path())
            } else {
                usize::from(e.path().extension().is_some_and(|x| x == "parquet"))
            }
        })
        .sum()
}
