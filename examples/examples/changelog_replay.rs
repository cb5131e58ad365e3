//! Replays a run's changelog from the lake into a new dataflow, and maintains from it,
//! incrementally, each symbol's session VWAP and the anomalies the run withdrew.
//!
//! The lake's changelog is differential's capture protocol in Parquet (README, "The
//! changelog"). This program reads one run of it (the latest, or `--run ID`) and hands it
//! to differential's own `capture::source`, which replays the run's window metrics and
//! anomalies as collections at the run's processing times. From them, with differential
//! operators:
//!
//! * **session VWAP** per symbol: the windows that tile time (those starting at a multiple
//!   of their length, so sliding windows are not counted twice), `reduce`d per symbol to
//!   Σ(vwap·volume) / Σ volume over the windows present — provisional rows count until
//!   their final row replaces them;
//! * **withdrawn anomalies** per kind: anomalies the run ever inserted (`distinct`) minus
//!   those it holds (`negate`, `concat`), `count`ed: provisional anomalies that late trades
//!   retracted before their window was final;
//! * **retractions** per kind: every retraction of an anomaly row, `count`ed (a provisional
//!   row replaced by its final one counts too).
//!
//! Run:
//!
//! ```text
//! cargo run --release -p tradeflow-examples --example changelog_replay -- LAKE_DIR [--run ID] [--changes] [-w N]
//! ```
//!
//! `--changes` prints every change of the derived collections as it happens, at the run's
//! processing time (`+`/`-`, time, then the row); without it, the collections at the end.

use differential_dataflow::AsCollection;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::probe::Handle;
use timely::dataflow::operators::vec::{Filter, Map};
use timely::dataflow::operators::{Inspect, Probe};
use tradeflow_lake::changelog::{read_run, runs};
use tradeflow_model::{Anomaly, Symbol, Time, WindowMetrics};
use tradeflow_sources::changelog::replay;

struct Args {
    lake: PathBuf,
    run: Option<String>,
    changes: bool,
    workers: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut lake, mut run, mut changes, mut workers) = (None, None, false, 1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--run" => run = Some(args.next().ok_or("--run needs a run id")?),
            "--changes" => changes = true,
            "-w" | "--workers" => {
                let n = args.next().ok_or("-w needs a number")?;
                workers = n.parse().ok().filter(|w| *w > 0).ok_or(format!("-w {n:?}: not a positive number"))?;
            }
            "-h" | "--help" => return Err(String::new()),
            _ if lake.is_none() && !arg.starts_with('-') => lake = Some(PathBuf::from(arg)),
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    let lake = lake.ok_or("which lake? give its directory")?;
    Ok(Args { lake, run, changes, workers })
}

/// One line of output: what changed, when, and by how much.
type Line = (Time, String, isize);

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("error: {e}");
            }
            eprintln!("usage: changelog_replay LAKE_DIR [--run ID] [--changes] [-w N]");
            std::process::exit(2);
        }
    };
    let run = match args.run.clone() {
        Some(run) => run,
        None => match runs(&args.lake, "window_metrics") {
            Ok(runs) if !runs.is_empty() => runs.last().expect("not empty").clone(),
            Ok(_) => fail(format!("{}: no changelog (was it written with --no-lake?)", args.lake.display())),
            Err(e) => fail(e),
        },
    };
    let metrics = read_run::<WindowMetrics>(&args.lake, &run).unwrap_or_else(|e| fail(e));
    let anomalies = read_run::<Anomaly>(&args.lake, &run).unwrap_or_else(|e| fail(e));
    eprintln!(
        "run {run}: {} updates files and {} progress statements of window_metrics, {} and {} of anomalies",
        metrics.updates.len(),
        metrics.progress.len(),
        anomalies.updates.len(),
        anomalies.progress.len()
    );
    // Where the run's statements end (`None`: the run ended); a run stopped to be resumed
    // leaves each collection's stream open at its own time: the replay ends at the first.
    let end = [&metrics.progress, &anomalies.progress].iter().filter_map(|p| p.last().and_then(|s| s.upper)).min();

    let lines: Arc<Mutex<Vec<Line>>> = Arc::default();
    let collected = lines.clone();
    let changes = args.changes;
    let config = timely::Config::process(args.workers);
    timely::execute(config, move |worker| {
        let print = |lines: Arc<Mutex<Vec<Line>>>| {
            move |(line, time, diff): &(String, Time, isize)| {
                if changes {
                    println!("{} {time} {line}", if *diff > 0 { '+' } else { '-' });
                }
                lines.lock().expect("no panics hold it").push((*time, line.clone(), *diff));
            }
        };
        let probe = Handle::new();
        let (metrics, anomalies) = (metrics.clone(), anomalies.clone());
        let tokens = worker.dataflow::<Time, _, _>(|scope| {
            let (metrics_token, metrics) = replay(scope, metrics);
            let (anomalies_token, anomalies) = replay(scope, anomalies);

            // Session VWAP: the tiling windows of each symbol, reduced to one row.
            let session = metrics
                .filter(|row| {
                    let size = row.window_end - row.window_start;
                    row.vwap.is_some() && size > 0 && row.window_start.rem_euclid(size) == 0
                })
                .map(|row| (row.symbol, (row.window_start, row.volume, row.vwap.map(|v| v.0.to_bits()))))
                .reduce(|_symbol, windows, out| {
                    let (mut volume, mut weighted) = (0i128, 0f64);
                    for ((_, window_volume, vwap), count) in windows {
                        let vwap = f64::from_bits(vwap.expect("filtered"));
                        let units = *window_volume * *count as i128;
                        volume += units;
                        weighted += vwap * units as f64;
                    }
                    if volume > 0 {
                        out.push((((weighted / volume as f64).to_bits(), volume), 1));
                    }
                });
            session
                .inner
                .map(|((symbol, (vwap, volume)), time, diff): ((Symbol, (u64, i128)), Time, isize)| {
                    let line = format!(
                        "session_vwap {} {:.6} volume {}",
                        symbol.as_str(),
                        f64::from_bits(vwap),
                        volume as f64 / 1e8
                    );
                    (line, time, diff)
                })
                .inspect(print(lines.clone()))
                .probe_with(&probe);

            // Withdrawn anomalies: ever inserted, minus held now.
            let key = |a: &Anomaly| (a.symbol.clone(), a.window_start, a.kind.as_str().to_owned());
            let ever = anomalies
                .inner
                .clone()
                .filter(|(_, _, diff)| *diff > 0)
                .map(move |(a, time, _)| (key(&a), time, 1isize))
                .as_collection()
                .distinct();
            let held = anomalies.clone().map(move |a| key(&a)).distinct();
            let withdrawn = ever.concat(held.negate()).map(|(_, _, kind)| kind).count();
            withdrawn
                .inner
                .map(|((kind, n), time, diff)| (format!("withdrawn {kind} {n}"), time, diff))
                .inspect(print(lines.clone()))
                .probe_with(&probe);

            // Retractions of anomaly rows.
            let retractions = anomalies
                .inner
                .filter(|(_, _, diff)| *diff < 0)
                .map(|(a, time, diff)| (a.kind.as_str().to_owned(), time, -diff))
                .as_collection()
                .count();
            retractions
                .inner
                .map(|((kind, n), time, diff)| (format!("retractions {kind} {n}"), time, diff))
                .inspect(print(lines.clone()))
                .probe_with(&probe);
            (metrics_token, anomalies_token)
        });
        // Until the run's end; a run that stopped to be resumed leaves its stream open at
        // `end`, so the sources are stopped there.
        while probe.with_frontier(|f| match end {
            Some(end) => f.less_than(&end),
            None => !f.is_empty(),
        }) {
            worker.step();
        }
        drop(tokens);
    })
    .unwrap_or_else(|e| fail(e));

    if !changes {
        let mut lines = collected.lock().expect("the workers are done").clone();
        let mut net: std::collections::BTreeMap<String, isize> = std::collections::BTreeMap::new();
        for (_, line, diff) in lines.drain(..) {
            *net.entry(line).or_default() += diff;
        }
        for (line, diff) in net {
            if diff != 0 {
                println!("{line}");
            }
        }
    }
}

fn fail(message: impl std::fmt::Display) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}
