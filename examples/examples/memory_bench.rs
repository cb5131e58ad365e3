//! Memory over time: does a long run stay flat?
//!
//! Runs the release `tradeflow` binary on the simulator as fast as it goes (`sim://`,
//! `rate=0`), N simulated trades (default 100 million) into a fresh local lake, once per
//! configuration: 1,000 symbols with one-minute windows (the default window), then 10 and
//! 10,000 symbols, then 1,000 symbols with 1-second and with 1-hour windows. Event time
//! starts at the beginning of an hour, so a run of up to 180 million trades stays in one
//! event hour and every trades file stays open (the symbol layout's worst case). It samples
//! the process's resident memory every 500 ms and prints, per run: trades/s, the peak,
//! the memory after warm-up (the first fifth of the run) and at the end, and the slope
//! after warm-up (a least-squares line through the samples, MiB per minute and per 10
//! million trades). Flat means a slope near zero: state is released as windows close.
//!
//! ```text
//! cargo build --release -p tradeflow && cargo run --release -p tradeflow-examples --example memory_bench -- [MILLIONS] [-w N]
//! ```

use anyhow::{Context, bail};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// One run's configuration.
struct Case {
    symbols: usize,
    window: &'static str,
}

/// The simulation's start: the beginning of an hour (see `main`).
const START: &str = "2023-11-14T22:00:00Z";

const CASES: &[Case] = &[
    Case { symbols: 1_000, window: "1m" },
    Case { symbols: 10, window: "1m" },
    Case { symbols: 10_000, window: "1m" },
    Case { symbols: 1_000, window: "1s" },
    Case { symbols: 1_000, window: "1h" },
];

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let millions: f64 = args.first().map_or(Ok(100.0), |a| a.parse()).context("the first argument is millions")?;
    let workers = args.iter().position(|a| a == "-w").and_then(|i| args.get(i + 1)).map_or("1", String::as_str);
    let trades = (millions * 1e6) as u64;
    let binary = tradeflow_examples::tradeflow_binary()?;
    let dir = std::env::temp_dir().join(format!("tradeflow-memory-bench-{}", std::process::id()));
    println!("{}", tradeflow_examples::machine());
    println!("{trades} simulated trades per run (sim://, rate=0), -w {workers}, the lake on, RSS every 500 ms\n");
    println!("| symbols | window | seconds | trades/s | peak RSS | after warm-up | at the end | slope after warm-up |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    for case in CASES {
        let symbols: Vec<String> = (0..case.symbols).map(|i| format!("SYM{i:05}")).collect();
        // Event time from the start of an hour, not the wall clock: at the simulator's
        // unpaced spacing (50,000 trades/s) 100M trades then fill 33 minutes of one hour,
        // so every symbol's trades file stays open for the whole run (the symbol layout's
        // worst case), whatever the time of day. From the wall clock, a run crossed an
        // hour at a different point each time, and its files closed there.
        let source = format!("sim://?symbols={}&rate=0&count={trades}&seed=7&start={START}", symbols.join(","));
        let lake = dir.join("lake");
        let _ = std::fs::remove_dir_all(&lake);
        std::fs::create_dir_all(&dir)?;
        let log = dir.join("run.log");
        let started = Instant::now();
        let mut child = tradeflow_examples::command(&binary)
            .args(["run", "--source", &source, "--window", case.window, "-w", workers, "--progress-interval", "0"])
            .arg("--lake")
            .arg(format!("file://{}", lake.display()))
            .stdout(Stdio::null())
            // To a file: a pipe nobody reads while the run goes on could fill and stall it.
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting tradeflow run")?;
        // (seconds since the start, MiB)
        let mut samples: Vec<(f64, f64)> = Vec::new();
        while child.try_wait()?.is_none() {
            if let Some(mib) = rss_mib(child.id()) {
                samples.push((started.elapsed().as_secs_f64(), mib));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let seconds = started.elapsed().as_secs_f64();
        let status = child.wait()?;
        let stderr = std::fs::read_to_string(&log).unwrap_or_default();
        if !status.success() {
            bail!("{} symbols, {} windows: the run failed:\n{stderr}", case.symbols, case.window);
        }
        let accepted = tradeflow_examples::summary_field(&stderr, "trades accepted");
        let peak = tradeflow_examples::summary_field(&stderr, "peak memory");
        let warm: Vec<(f64, f64)> = samples.iter().copied().filter(|(t, _)| *t >= seconds / 5.0).collect();
        let after_warm_up = if warm.len() < 2 {
            "(too short to sample) | | |".to_owned()
        } else {
            let (after, end) = (warm[0].1, warm[warm.len() - 1].1);
            let per_minute = slope(&warm) * 60.0;
            let per_10m = per_minute / 60.0 * seconds / (accepted.max(1) as f64 / 1e7);
            format!("{after:.0} MiB | {end:.0} MiB | {per_minute:+.1} MiB/min ({per_10m:+.1} MiB per 10M trades) |")
        };
        println!(
            "| {} | {} | {seconds:.1} | {:.0} | {peak} MiB | {after_warm_up}",
            case.symbols,
            case.window,
            accepted as f64 / seconds
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Resident set size of `pid`, MiB.
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The least-squares slope of `points` (y per unit of x); 0 with fewer than two.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let (mx, my) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}
