//! The benchmark suite: every benchmark in one command, one table per part, each
//! comparison measured side by side within its part, the machine described first.
//!
//! | part | benchmark | what |
//! |---|---|---|
//! | throughput: files | `bench` | the single-thread yardstick against `-w 1`, `-w 2`, `-n 2`, with and without the lake, with PostgreSQL, and a lake replay; every run must find the yardstick's windows and anomalies |
//! | throughput: Kafka | `kafka_bench` | a Kafka replay at `-w 1`/`-w 2` with and without the lake; checkpoints on against off; time to resume after a SIGKILL |
//! | latency | `latency_bench` | the Finnhub-compatible server at fixed rates into PostgreSQL: commit delay p50/p95/p99/max |
//! | PostgreSQL sink | `pg_bench` | rows/s and the commit delay with many keys |
//! | memory over time | `memory_bench` | RSS sampled over long runs (1,000, 10 and 10,000 symbols; 1 s, 1 min, 1 h windows): peak and slope |
//! | memory at scale | `scale_bench` | peak RSS and open files at 1,000 to 100,000 symbols, both lake layouts |
//! | storage | `storage_bench` | bytes per trade of each lake dataset of the default job, GB per day, objects per hour (an hour of the job) |
//!
//! `--quick` runs every part at a reduced size (seconds, not minutes): what CI runs
//! (`.ci/run`, on the debug build) so that the suite cannot rot. It asserts only that each
//! part completes and that its runs agree on their results, never a speed.
//!
//! ```text
//! cargo build --release -p tradeflow -p tradeflow-examples --bins --examples && target/release/examples/suite [--quick]
//! ```
//!
//! The parts need what the tests need: PostgreSQL's server binaries (Debian's
//! postgresql-15) and `tansu` (see `tests/src/kafka.rs`); a part whose server is missing
//! fails with the reason.

use anyhow::{Context, bail};
use std::process::Command;
use std::time::Instant;

/// (title, benchmark, full-size arguments, `--quick` arguments).
const PARTS: &[(&str, &str, &[&str], &[&str])] = &[
    ("Throughput: files, the yardstick, the lake, PostgreSQL, two processes", "bench", &["5"], &["0.1"]),
    ("Throughput: Kafka replay; checkpoints on and off; time to resume", "kafka_bench", &["5"], &["0.2", "2"]),
    ("Latency: Finnhub-compatible server -> PostgreSQL", "latency_bench", &["20"], &["2", "2000"]),
    ("PostgreSQL sink", "pg_bench", &["10"], &["2"]),
    ("Memory over time", "memory_bench", &["100"], &["0.02"]),
    ("Memory and open files at scale", "scale_bench", &[], &["1000", "--trades", "2"]),
    ("Storage per trade and objects per hour (the default job, for an hour)", "storage_bench", &["3600"], &["3"]),
];

fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let here = std::env::current_exe()?.parent().context("the examples directory")?.to_owned();
    println!("# tradeflow benchmark suite{}\n", if quick { " (--quick: reduced sizes)" } else { "" });
    println!("{}", tradeflow_examples::machine());
    let started = Instant::now();
    for (title, name, full, reduced) in PARTS {
        let path = here.join(name);
        if !path.exists() {
            bail!(
                "{} not found: build every benchmark first (cargo build --release -p tradeflow -p tradeflow-examples --bins --examples)",
                path.display()
            );
        }
        let args = if quick { reduced } else { full };
        println!("\n## {title}\n\n`{name} {}`\n", args.join(" "));
        let part = Instant::now();
        let status = Command::new(&path).args(*args).status().with_context(|| format!("running {name}"))?;
        if !status.success() {
            bail!("the part {title:?} ({name}) failed: {status}");
        }
        println!("\n({name}: {:.0} s)", part.elapsed().as_secs_f64());
    }
    println!("\nevery part completed in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}
