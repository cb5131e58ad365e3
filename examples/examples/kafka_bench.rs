//! Kafka replay benchmark: trades/s from a local Kafka-protocol broker into the pipeline.
//!
//! Starts a `tansu` broker on 127.0.0.1 (in-memory storage; see `tests/src/kafka.rs` for
//! where the binary is found), fills a topic of P partitions with N million simulated
//! trades with `tradeflow produce` (key = symbol, lz4), then replays the whole topic
//! bounded (`end=latest`) at `-w 1` and `-w 2`, without and with the lake, and prints
//! trades/s for each. Every replay must find the same final windows and anomalies. The
//! broker runs on the same cores as the pipeline, as on a single machine.
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
    let out = Command::new(&binary)
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

    println!("| replay (end=latest, {partitions} partitions) | trades | seconds | trades/s | windows | anomalies |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut seen = None;
    for (workers, lake) in [(1, false), (2, false), (1, true), (2, true)] {
        let source = broker.url(&topic, "end=latest");
        let (seconds, stderr) = tradeflow_examples::timed_run(&binary, &source, workers, &dir.join("lake"), lake)?;
        let field = |name: &str| tradeflow_examples::summary_field(&stderr, name);
        let (accepted, rejected) = (field("trades accepted"), field("records rejected"));
        let results = (accepted, field("windows final"), field("anomalies final"));
        if *seen.get_or_insert(results) != results {
            bail!("-w {workers} found {results:?}, not {seen:?}");
        }
        if accepted + rejected != trades {
            bail!("-w {workers} read {} records, not {trades}", accepted + rejected);
        }
        let label = format!("-w {workers}{}", if lake { ", lake" } else { ", --no-lake" });
        println!(
            "| {label} | {accepted} | {seconds:.2} | {:.0} | {} | {} |",
            (accepted + rejected) as f64 / seconds,
            results.1,
            results.2
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
