//! PostgreSQL sink benchmark: upserted rows/s and the commit delay (trade read -> window
//! row committed, p50/p99) with the simulator at 100 000 trades/s.
//!
//! Starts a throwaway PostgreSQL server (Debian's postgresql-15, as the tests do, but
//! durable: fsync on, synchronous commits), or uses `--postgres URL` / `DATABASE_URL`,
//! then runs the release `tradeflow` binary
//! without the lake, into a fresh database each time, on:
//!
//! * the default market (21 symbols, 1-minute windows) at 100 000 trades/s: the live
//!   case — few keys, each updated at every epoch;
//! * 1 000 symbols with 1-second windows at 100 000 trades/s: many keys change per
//!   epoch, and a thousand windows become final every second;
//! * the same 1 000 symbols as fast as the pipeline goes (`rate=0`): the sink's capacity.
//!
//! For each it prints the trades/s reached, rows written (upserts + deletes), the
//! transactions, rows/s while a transaction was in flight and over the whole run, and
//! the commit delay per epoch (the wall time of the commit minus the epoch, which is the
//! wall-clock millisecond its trades were read), as the run's summary reports it, and
//! the part of it spent before the changes reached the writer (the dataflow's share).
//!
//! Run (release, after building the binary):
//!
//! ```text
//! cargo build --release -p tradeflow && cargo run --release -p tradeflow-examples --example pg_bench -- [SECONDS] [--fsync-off]
//! ```
//!
//! `--fsync-off` starts the throwaway server with `fsync=off`, which takes the disk's
//! flush latency out of the figures (the sink's and the server's CPU cost remain).

use anyhow::{Context, bail};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use tradeflow_tests::postgres::PgCluster;

struct Scenario {
    label: &'static str,
    source: String,
    window: &'static str,
}

struct Outcome {
    trades: u64,
    seconds: f64,
    rows: u64,
    transactions: u64,
    busy_rate: u64,
    p50: String,
    p99: String,
    max: String,
    handover: String,
}

fn main() -> anyhow::Result<()> {
    let seconds: u64 = std::env::args()
        .nth(1)
        .map_or(Ok(30), |a| a.parse())
        .context("the argument is seconds per scenario, e.g. 30")?;
    let binary = tradeflow_examples::tradeflow_binary()?;
    let given = given_url();
    let cluster: Option<Arc<PgCluster>> = match given {
        Some(_) => None,
        None if std::env::args().any(|a| a == "--fsync-off") => {
            Some(PgCluster::start().context("no PostgreSQL server binaries to start a throwaway server")?)
        }
        None => Some(PgCluster::start_durable().context("no PostgreSQL server binaries to start a throwaway server")?),
    };

    let many: Vec<String> = (1..=1000).map(|i| format!("S{i:04}")).collect();
    let count = 100_000 * seconds;
    let scenarios = [
        Scenario {
            label: "21 symbols, 1m windows, 100k trades/s",
            source: format!("sim://?rate=100000&count={count}&seed=1"),
            window: "1m",
        },
        Scenario {
            label: "1000 symbols, 1s windows, 100k trades/s",
            source: format!("sim://?rate=100000&count={count}&seed=1&symbols={}", many.join(",")),
            window: "1s",
        },
        Scenario {
            label: "1000 symbols, 1s windows, unpaced",
            source: format!("sim://?rate=0&count={}&seed=1&symbols={}", count * 2, many.join(",")),
            window: "1s",
        },
    ];

    println!(
        "| scenario | trades/s | rows written | transactions | rows/s writing | rows/s overall | commit delay p50 | p99 | max | of which to the writer (p50 / p99) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (i, scenario) in scenarios.iter().enumerate() {
        let url = match (&cluster, &given) {
            (Some(cluster), _) => cluster.database(&format!("bench_{i}")).url(),
            (None, Some(url)) => url.clone(),
            (None, None) => unreachable!("either a cluster or a URL"),
        };
        let o = run(&binary, scenario, &url)?;
        println!(
            "| {} | {:.0} | {} | {} | {} | {:.0} | {} | {} | {} | {} |",
            scenario.label,
            o.trades as f64 / o.seconds,
            o.rows,
            o.transactions,
            o.busy_rate,
            o.rows as f64 / o.seconds,
            o.p50,
            o.p99,
            o.max,
            o.handover
        );
    }
    Ok(())
}

/// `--postgres URL` or `DATABASE_URL`, if given.
fn given_url() -> Option<String> {
    std::env::args()
        .skip_while(|a| a != "--postgres")
        .nth(1)
        .or_else(|| std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()))
}

fn run(binary: &Path, scenario: &Scenario, url: &str) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let output = tradeflow_examples::command(binary)
        .args(["run", "--no-lake", "--progress-interval", "0", "--source", &scenario.source])
        .args(["--window", scenario.window, "--postgres", url])
        .output()?;
    let seconds = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("{} failed:\n{stderr}", scenario.label);
    }
    let line = |label: &str| {
        stderr.lines().find(|l| l.trim_start().starts_with(label)).map(str::to_owned).context(format!("no {label:?}"))
    };
    let number = |text: &str| text.replace(',', "").parse::<u64>().ok();
    let words = |l: String| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    let trades = words(line("trades accepted")?).get(2).and_then(|w| number(w)).context("trades accepted")?;
    let rows_line = words(line("postgres rows")?);
    let rows = rows_line.get(2).and_then(|w| number(w)).context("postgres rows")?;
    let after = |key: &str| rows_line.iter().position(|w| w == key).and_then(|i| rows_line.get(i - 1)).cloned();
    let transactions = after("transactions,").and_then(|w| number(&w)).context("transactions")?;
    let busy_rate = after("rows/s").and_then(|w| number(&w)).context("rows/s")?;
    // "postgres commit delay p50 3 ms, p99 9 ms, max 31 ms (... handed to the writer after p50 1 ms, p99 4 ms)"
    let delay = words(line("postgres commit delay")?);
    let pick = |key: &str, nth: usize| {
        delay.iter().enumerate().filter(|(_, w)| *w == key).nth(nth).and_then(|(i, _)| delay.get(i + 1)).cloned()
    };
    let ms = |key: &str, nth: usize| pick(key, nth).map_or_else(|| "?".into(), |v| format!("{v} ms"));
    Ok(Outcome {
        trades,
        seconds,
        rows,
        transactions,
        busy_rate,
        p50: ms("p50", 0),
        p99: ms("p99", 0),
        max: ms("max", 0),
        handover: format!("{} / {}", ms("p50", 1), ms("p99", 1)),
    })
}
