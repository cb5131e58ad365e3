//! Running the pipeline on timely: workers, Ctrl-C, progress lines, the summary.

use crate::config::RunConfig;
use crate::pipeline::{Shared, build};
use crate::stats::{RunStats, Totals, summary};
use anyhow::Context;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use timely::dataflow::operators::{Exchange, Input, Inspect, Probe};
use tradeflow_model::Time;
use tradeflow_sinks::lake::Lake;

/// Runs `config` to completion (bounded sources) or until Ctrl-C.
pub fn run(config: RunConfig) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    install_ctrl_c(stop.clone(), config.bounded);
    let lake = match &config.lake {
        Some(url) => Some(Arc::new(Lake::open(url)?)),
        None => None,
    };
    let stats = Arc::new(RunStats::default());
    let started = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let progress = config.progress_interval.map(|every| {
        let (stats, done) = (stats.clone(), done.clone());
        std::thread::spawn(move || {
            let mut last = (Instant::now(), 0);
            let mut next = Instant::now() + every;
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(50));
                if Instant::now() >= next {
                    eprintln!("{}", stats.progress_line(&mut last));
                    next += every;
                }
            }
        })
    });

    let workers = config.threads * config.processes;
    let total: Arc<Mutex<Totals>> = Arc::default();
    let failed = Arc::new(AtomicBool::new(false));
    let shared = (stats.clone(), lake.clone(), stop.clone(), total.clone(), failed.clone());
    let timely_config = config.timely.clone();
    let (threads, process) = (config.threads, config.process);
    let guards = timely::execute(timely_config, move |worker| {
        let (stats, lake, stop, total, failed) = shared.clone();
        let handles = Shared { stats: stats.clone(), lake: lake.clone(), stop };
        let probe = worker.dataflow::<Time, _, _>(|scope| build(scope, &config, &handles));
        worker.step_while(|| !probe.done());
        while worker.has_dataflows() {
            worker.step();
        }
        // Every worker of every process is past the pipeline once epoch 0 of this small
        // dataflow completes; then each process finishes its lake uploads and sends its
        // counters to worker 0 for the summary.
        let first_of_process = worker.index() % threads == 0;
        let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, stream) = scope.new_input::<Vec<Totals>>();
            let probe = stream.exchange(|_| 0).inspect(move |t| total.lock().expect("totals lock").add(t)).probe().0;
            (input, probe)
        });
        input.advance_to(1);
        worker.step_while(|| probe.less_than(&1));
        if first_of_process {
            let mut mine = stats.totals();
            if let Some(lake) = &lake {
                if let Err(e) = lake.finish() {
                    eprintln!("error: {e}");
                    failed.store(true, Ordering::Relaxed);
                }
                let written = lake.stats();
                (mine.lake_files, mine.lake_bytes) = (written.files, written.bytes);
            }
            input.send(mine);
        }
        drop(input);
        while worker.has_dataflows() {
            worker.step();
        }
    })
    .map_err(|e| anyhow::anyhow!("starting timely: {e}"))?;
    let results = guards.join();
    done.store(true, Ordering::Relaxed);
    if let Some(p) = progress {
        let _ = p.join();
    }
    for result in results {
        result.map_err(|e| anyhow::anyhow!("a worker failed: {e}"))?;
    }
    if let Some(lake) = &lake {
        lake.finish().context("the lake")?;
    }
    if failed.load(Ordering::Relaxed) {
        anyhow::bail!("the run did not complete; see the errors above");
    }
    if process == 0 {
        let totals = total.lock().expect("totals lock").clone();
        eprintln!("{}", summary(&totals, started.elapsed(), workers));
    }
    if stop.load(Ordering::Relaxed) {
        eprintln!("stopped by Ctrl-C after flushing everything read");
    }
    Ok(())
}

/// Ctrl-C once: stop reading and finish cleanly; twice: exit at once.
fn install_ctrl_c(stop: Arc<AtomicBool>, bounded: bool) {
    let _ = ctrlc::set_handler(move || {
        if stop.swap(true, Ordering::SeqCst) {
            eprintln!("second Ctrl-C: exiting without flushing");
            std::process::exit(130);
        }
        if bounded {
            eprintln!("Ctrl-C: stopping the sources; finishing what was read (Ctrl-C again to abort)");
        } else {
            eprintln!("Ctrl-C: stopping; finalising open windows and flushing the lake (Ctrl-C again to abort)");
        }
    });
}
