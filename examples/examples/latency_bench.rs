//! End-to-end latency from the Finnhub-compatible WebSocket server into PostgreSQL: the
//! original design's path (a live feed, windows upserted as they change).
//!
//! Starts a throwaway PostgreSQL server (durable: fsync on, synchronous commits, as in
//! production), then for each rate (default 10 000, 100 000 and 300 000 trades/s) serves
//! the simulated market at that rate with `tradeflow simulate --serve` and runs the release
//! `tradeflow` binary from it (`finnhub://`, `--no-lake`, `--postgres`) for a while
//! (default 20 s), then stops it with SIGTERM and reads its summary:
//!
//! * the trades accepted, and the rate reached (below the served rate when the pipeline,
//!   the server or the two cores cannot keep up: then the server's buffers grow and the
//!   delay with them);
//! * the commit delay: for every epoch (the wall-clock millisecond at which its trades
//!   were received from the socket) that changed a window row, the wall-clock time of the
//!   commit that made the row visible, minus the epoch. Every trade of an epoch was
//!   received within that millisecond, so this is each trade's receipt-to-visible delay
//!   to within 1 ms, counted per epoch rather than per trade: p50, p95, p99 and max.
//!
//! The server and the pipeline share the machine's cores, as on a single host.
//!
//! ```text
//! cargo build --release -p tradeflow && cargo run --release -p tradeflow-examples --example latency_bench -- [SECONDS] [RATE...]
//! ```

use anyhow::{Context, bail};
use std::process::Stdio;
use std::time::Duration;
use tradeflow_tests::Running;
use tradeflow_tests::postgres::PgCluster;

/// The symbols served: the simulator's default universe.
const SYMBOLS: &str = "AAPL,MSFT,NVDA,TSLA,AMZN,BINANCE:BTCUSDT,BINANCE:ETHUSDT,KRAKEN:XBT/USD,OANDA:EUR_USD";

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().map_or(Ok(20), |a| a.parse()).context("the first argument is seconds per rate")?;
    let rates: Vec<u64> = args.map(|a| a.parse()).collect::<Result<_, _>>().context("rates are trades/s")?;
    let rates = if rates.is_empty() { vec![10_000, 100_000, 300_000] } else { rates };
    let binary = tradeflow_examples::tradeflow_binary()?;
    let cluster = PgCluster::start_durable().context("no PostgreSQL server binaries to start a throwaway server")?;
    println!("{}", tradeflow_examples::machine());
    println!(
        "Finnhub-compatible server -> tradeflow (finnhub://, --no-lake) -> PostgreSQL (fsync on), {seconds} s per rate\n"
    );
    println!(
        "| served trades/s | trades accepted | trades/s reached | epochs committed | delay p50 | p95 | p99 | max |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for rate in rates {
        let port = tradeflow_tests::free_ports(1)[0];
        let mut server = tradeflow_examples::command(&binary)
            .args(["simulate", "--serve", &format!("127.0.0.1:{port}"), "--symbols", SYMBOLS])
            .args(["--rate", &rate.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the simulator's server")?;
        if !tradeflow_tests::finnhub::wait_for_port(port, Duration::from_secs(30)) {
            let _ = server.kill();
            bail!("the simulator's server did not listen on port {port}");
        }
        let db = cluster.database(&format!("latency_{rate}"));
        let source = format!("finnhub://?symbols={SYMBOLS}&endpoint=ws://127.0.0.1:{port}");
        let mut command = tradeflow_examples::command(&binary);
        command.env("FINNHUB_API_KEY", "benchmark").args([
            "run",
            "--source",
            &source,
            "--no-lake",
            "--postgres",
            &db.url(),
            "--progress-interval",
            "0",
        ]);
        let mut run = Running::spawn(command);
        std::thread::sleep(Duration::from_secs(seconds));
        run.terminate();
        let output = run.finish(Duration::from_secs(120));
        let _ = server.kill();
        let _ = server.wait();
        let stderr = output.stderr;
        if !output.status.success() {
            bail!("tradeflow run at {rate} trades/s failed ({}):\n{stderr}", output.status);
        }
        let trades = tradeflow_examples::summary_field(&stderr, "trades accepted");
        let delay = Delay::parse(&stderr).with_context(|| format!("no commit delay in the summary:\n{stderr}"))?;
        println!(
            "| {rate} | {trades} | {:.0} | {} | {} ms | {} ms | {} ms | {} ms |",
            trades as f64 / seconds as f64,
            delay.epochs,
            delay.p50,
            delay.p95,
            delay.p99,
            delay.max
        );
    }
    Ok(())
}

/// The summary's commit delay line: "postgres commit delay p50 3 ms, p95 5 ms, p99 9 ms,
/// max 31 ms (trade read -> window row committed, 1,234 epochs; ...)".
struct Delay {
    p50: u64,
    p95: u64,
    p99: u64,
    max: u64,
    epochs: u64,
}

impl Delay {
    fn parse(stderr: &str) -> Option<Delay> {
        let line = stderr.lines().find(|l| l.contains("postgres commit delay p50"))?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let after = |key: &str| {
            let i = words.iter().position(|w| *w == key)?;
            words.get(i + 1)?.trim_end_matches(',').replace(',', "").parse().ok()
        };
        let before = |key: &str| {
            let i = words.iter().position(|w| w.trim_end_matches([';', ',']) == key)?;
            words.get(i.checked_sub(1)?)?.replace(',', "").parse().ok()
        };
        Some(Delay {
            p50: after("p50")?,
            p95: after("p95")?,
            p99: after("p99")?,
            max: after("max")?,
            epochs: before("epochs")?,
        })
    }
}
