//! Kafka replay benchmark: trades/s from a local Kafka-protocol broker into the pipeline.
//!
//! Starts a `tansu` broker on 127.0.0.1 (in-memory storage; see `tests/src/kafka.rs` for
//! where the binary is found), fills a topic of P partitions with N million simulated
//! trades with `tradeflow produce` (key = symbol, lz4), then replays the whole topic
//! bounded (`end=latest`) at `-w 1`, `-w 2` and `-n 2` (two processes of one worker on
//! this machine), without and with the lake, and at `-w 2` with PostgreSQL on (a
//! throwaway server; skipped when its binaries are missing), and prints trades/s for
//! each and its ratio to the single-thread yardstick (`bench`'s) reading the same trades
//! from a file. Every replay must find the same final windows and anomalies (the
//! yardstick may differ: its lateness rule sees one partition, a replay four). The broker
//! runs on the same cores as the pipeline, as on a single machine.
//!
//! Then the cost of checkpoints (issue 11): the same replay into the lake with checkpoints
//! off, every 10 s (the default) and every second, in turn over five rounds, the median
//! of each as a ratio to "off"; and
//! the time a replay killed with SIGKILL three quarters of the way takes to resume (from
//! its start to the first record read) and to finish.
//!
//! ```text
//! cargo build --release -p tradeflow && cargo run --release -p tradeflow-examples --example kafka_bench -- [MILLIONS] [PARTITIONS]
//! ```

use anyhow::{Context, bail};
use std::process::Command;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let millions: f64 =
        std::env::args().nth(1).map_or(Ok(5.0), |a| a.parse()).context("the first argument is millions of trades")?;
    let partitions: u32 =
        std::env::args().nth(2).map_or(Ok(4), |a| a.parse()).context("the second argument is a partition count")?;
    let trades = (millions * 1e6) as u64;
    let binary = tradeflow_examples::tradeflow_binary()?;
    let Some(broker) = tradeflow_tests::kafka::Broker::start_bare() else {
        bail!("no tansu broker: `cargo install tansu --features dynostore --locked`");
    };
    let topic = format!("bench-{trades}");
    let dir = std::env::temp_dir().join(format!("tradeflow-kafka-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;

    // Unpaced: as fast as the producer takes them (event times at the simulator's
    // unpaced rate), 21 symbols.
    let source = format!("sim://?count={trades}&rate=0&seed=1&start=2023-11-14T22:13:20Z");
    let started = Instant::now();
    let out = tradeflow_examples::command(&binary)
        .args(["produce", "--from", &source, "--to", &broker.url(&topic, "")])
        .args(["--partitions", &partitions.to_string(), "--progress-interval", "0"])
        .output()?;
    let produce_seconds = started.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("tradeflow produce failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    println!(
        "produced {trades} trades into {partitions} partitions in {produce_seconds:.2}s ({:.0} trades/s, lz4, idempotent)\n",
        trades as f64 / produce_seconds
    );

    // The yardstick reads the same trades from a file (the simulator's unpaced event rate
    // is 50,000 trades/s), at the start, in the middle and at the end; the ratios are to
    // the median (the machine's load moves during the runs).
    let file = dir.join("trades.ndjson");
    let status = tradeflow_examples::command(&binary)
        .args(["simulate", "--out"])
        .arg(&file)
        .args(["--count", &trades.to_string(), "--seed", "1", "--rate", "50000", "--start", "2023-11-14T22:13:20Z"])
        .args(["--format", "flat"])
        .status()?;
    if !status.success() {
        bail!("tradeflow simulate failed");
    }
    let mut yardsticks = vec![tradeflow_examples::yardstick(&file)?.seconds];
    let pg = tradeflow_tests::postgres::PgCluster::start();
    if pg.is_none() {
        println!("(no PostgreSQL server binaries: the PostgreSQL rows are skipped)");
    }
    let mut rows = Vec::new();
    let mut seen = None;
    // (processes, workers, lake, PostgreSQL)
    let runs = [
        (1, 1, false, false),
        (1, 2, false, false),
        (2, 1, false, false),
        (1, 1, true, false),
        (1, 2, true, false),
        (2, 1, true, false),
        (1, 2, false, true),
        (1, 2, true, true),
    ];
    for (i, (processes, workers, lake, postgres)) in runs.into_iter().enumerate() {
        if i == runs.len() / 2 {
            yardsticks.push(tradeflow_examples::yardstick(&file)?.seconds);
        }
        let db = match (&pg, postgres) {
            (Some(cluster), true) => Some(cluster.database(&format!("kafka{i}"))),
            (None, true) => continue,
            _ => None,
        };
        let url = db.as_ref().map(|db| db.url());
        let extra: Vec<&str> = url.iter().flat_map(|url| ["--postgres", url.as_str()]).collect();
        let source = broker.url(&topic, "end=latest");
        let lake_dir = dir.join("lake");
        let (seconds, stderr) = if processes == 1 {
            tradeflow_examples::timed_run_with(&binary, &source, workers, &lake_dir, lake, &extra)?
        } else {
            tradeflow_examples::timed_processes(&binary, &source, processes, &lake_dir, lake, &extra)?
        };
        let label = format!(
            "{}-w {workers}{}{}",
            if processes == 1 { String::new() } else { format!("-n {processes} ") },
            if lake { ", lake" } else { ", --no-lake" },
            if postgres { ", PostgreSQL" } else { "" }
        );
        let field = |name: &str| tradeflow_examples::summary_field(&stderr, name);
        let (accepted, rejected) = (field("trades accepted"), field("records rejected"));
        let results = (accepted, field("windows final"), field("anomalies final"));
        if *seen.get_or_insert(results) != results {
            bail!("{label} found {results:?}, not {seen:?}");
        }
        if accepted + rejected != trades {
            bail!("{label} read {} records, not {trades}", accepted + rejected);
        }
        rows.push((label, seconds, accepted, rejected, results));
    }
    yardsticks.push(tradeflow_examples::yardstick(&file)?.seconds);
    println!(
        "yardstick on the same trades from a file (1 thread), at the start, in the middle and at the end: {} s; the ratios are to the median\n",
        yardsticks.iter().map(|s| format!("{s:.2}")).collect::<Vec<_>>().join(", ")
    );
    yardsticks.sort_by(f64::total_cmp);
    let base = yardsticks[1];
    println!(
        "| replay (end=latest, {partitions} partitions) | trades | seconds | trades/s | vs yardstick | windows | anomalies |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    println!(
        "| yardstick (1 thread, the same trades from a file) | {trades} | {base:.2} | {:.0} | 1.00x | | |",
        trades as f64 / base
    );
    for (label, seconds, accepted, rejected, results) in rows {
        println!(
            "| {label} | {accepted} | {seconds:.2} | {:.0} | {:.2}x | {} | {} |",
            (accepted + rejected) as f64 / seconds,
            base / seconds,
            results.1,
            results.2
        );
    }
    checkpoint_costs(&binary, &broker.url(&topic, "end=latest"), &dir, trades)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Rounds of the checkpoint comparison: each configuration runs once per round, in
/// turn, and the median of its rounds is reported (the machine is shared and a single
/// run moves by ±10%).
const ROUNDS: usize = 5;

/// Throughput with checkpoints off and on, and the time to resume after a SIGKILL.
fn checkpoint_costs(binary: &std::path::Path, source: &str, dir: &std::path::Path, trades: u64) -> anyhow::Result<()> {
    println!("\n| replay into the lake | checkpoints | median seconds ({ROUNDS} rounds) | trades/s | vs off | runs |");
    println!("|---|---|---:|---:|---:|---|");
    let mut off_seconds = [0.0; 3];
    let configurations = [("0", "off"), ("10s", "every 10 s (default)"), ("1s", "every 1 s")];
    for workers in [1, 2] {
        let mut seconds = vec![Vec::new(); configurations.len()];
        for _ in 0..ROUNDS {
            for (i, (interval, _)) in configurations.iter().enumerate() {
                let extra = ["--checkpoint-interval", interval];
                let (took, stderr) =
                    tradeflow_examples::timed_run_with(binary, source, workers, &dir.join("lake"), true, &extra)?;
                let read = tradeflow_examples::summary_field(&stderr, "trades accepted")
                    + tradeflow_examples::summary_field(&stderr, "records rejected");
                if read != trades {
                    bail!("-w {workers} --checkpoint-interval {interval} read {read} records, not {trades}");
                }
                seconds[i].push(took);
            }
        }
        for (i, (interval, label)) in configurations.iter().enumerate() {
            let runs = &mut seconds[i];
            runs.sort_by(f64::total_cmp);
            let median = runs[runs.len() / 2];
            if *interval == "0" {
                off_seconds[workers] = median;
            }
            let ratio = off_seconds[workers] / median;
            let runs: Vec<String> = runs.iter().map(|s| format!("{s:.2}")).collect();
            println!(
                "| -w {workers} | {label} | {median:.2} | {:.0} | {ratio:.3}x | {} |",
                trades as f64 / median,
                runs.join(", ")
            );
        }
    }

    // Killed at three quarters (of the time of the run without checkpoints), then resumed.
    let lake = dir.join("killed");
    let _ = std::fs::remove_dir_all(&lake);
    let args = |command: &mut Command| {
        command.args([
            "run",
            "--source",
            source,
            "-w",
            "2",
            "--progress-interval",
            "0",
            "--checkpoint-interval",
            "500ms",
        ]);
        command.arg("--lake").arg(format!("file://{}", lake.display()));
    };
    let mut first = tradeflow_examples::command(binary);
    args(&mut first);
    let mut child = first.stderr(std::process::Stdio::null()).spawn()?;
    let kill_after = off_seconds[2] * 0.75;
    std::thread::sleep(std::time::Duration::from_secs_f64(kill_after));
    child.kill()?;
    child.wait()?;
    let mut resumed = tradeflow_examples::command(binary);
    args(&mut resumed);
    let started_ms = tradeflow_model::wall_ms();
    let started = Instant::now();
    let out = resumed.output()?;
    let seconds = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || !stderr.contains("resuming job") {
        bail!("the resumed run failed or did not resume:\n{stderr}");
    }
    // The first "reads partition" line: the checkpoint is restored and reading starts.
    let reading_ms = stderr
        .lines()
        .find(|l| l.contains(" reads partition"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|ts| chrono::DateTime::parse_from_rfc3339(ts).ok())
        .map(|ts| ts.timestamp_millis())
        .context("the resumed run logged no `reads partition` line")?;
    let accepted = tradeflow_examples::summary_field(&stderr, "trades accepted");
    println!(
        "\nkilled (SIGKILL) after {kill_after:.2}s at -w 2 with checkpoints every 500 ms; the same command resumed: reading again {:.2}s after its start, finished in {seconds:.2}s, reading {accepted} of {trades} trades again or for the first time",
        (reading_ms - started_ms) as f64 / 1000.0,
    );
    Ok(())
}
