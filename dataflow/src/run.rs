//! Running the pipeline on timely: workers, Ctrl-C, progress lines, the summary.

use crate::cli::MigrateArgs;
use crate::config::{ConfigError, RunConfig, postgres_target};
use crate::pipeline::{Shared, build};
use crate::stats::{RunStats, Totals, summary};
use anyhow::Context;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::dataflow::operators::{Exchange, Input, Inspect, Probe};
use timely::worker::Worker;
use tradeflow_model::Time;
use tradeflow_sinks::checkpoint::{CheckpointStore, JobCheckpoints, LakeStore};
use tradeflow_sinks::lake::Lake;
use tradeflow_sinks::postgres::checkpoints::PgCheckpointStore;
use tradeflow_sinks::postgres::{PgOptions, PgSink, PgStats, migrate_database};

/// Runs `config` to completion (bounded sources) or until Ctrl-C or SIGTERM.
pub fn run(mut config: RunConfig) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let lake = match &config.lake {
        Some(url) => Some(Arc::new(Lake::open(url, config.lake_retry_for)?)),
        None => None,
    };
    // A lake that fails for good (an upload still failing after --lake-retry-for) stops
    // the run with its error, as a failed PostgreSQL sink does.
    if let Some(lake) = &lake {
        lake.on_failure(config.checkpoint.is_some(), fail_run(&stop));
    }
    // One writer per job and process: another live run of the job stops this one here.
    let _lease = match &lake {
        Some(lake) => Some(
            tradeflow_sinks::lease::Lease::acquire(lake, &config.job, config.process, &config.run_id, fail_run(&stop))
                .map_err(ConfigError)?,
        ),
        None => None,
    };
    // The job's checkpoint: found (and its settings checked) before anything runs. In the
    // lake; without one, in PostgreSQL (whose lock then keeps one writer per job).
    let checkpoints = match &config.checkpoint {
        Some(settings) => {
            let store: Arc<dyn CheckpointStore> = match (&lake, &config.postgres) {
                (Some(lake), _) => Arc::new(LakeStore::new(lake.clone()).map_err(ConfigError)?),
                (None, Some(pg)) => Arc::new(PgCheckpointStore::open(
                    pg.target.clone(),
                    pg.retry_for,
                    &settings.header.job,
                    config.process,
                )?),
                (None, None) => return Err(ConfigError("checkpoints need a lake or PostgreSQL".into()).into()),
            };
            let (checkpoints, start) = JobCheckpoints::open(
                store,
                settings.header.clone(),
                settings.interval,
                config.process,
                config.processes,
                settings.from_scratch,
            )
            .map_err(ConfigError)?;
            tracing::info!("{start}");
            checkpoints.on_failure(fail_run(&stop));
            config.run_id = checkpoints.run_id().to_owned();
            Some(checkpoints)
        }
        None => {
            if let Some(why) = &config.checkpoint_off {
                tracing::debug!("checkpoints are off: {why}");
            }
            None
        }
    };
    let suspend = checkpoints.is_some() && !config.drain;
    tradeflow_sources::batch::set_suspend_on_stop(suspend);
    install_signals(stop.clone(), config.bounded, suspend);
    // Connects and migrates before anything runs: bad credentials stop the run here.
    let postgres = match &config.postgres {
        Some(pg) => {
            let options = PgOptions { retry_for: pg.retry_for, process: config.process, workers: config.threads };
            Some(Arc::new(PgSink::start(pg.target.clone(), options, stop.clone())?))
        }
        None => None,
    };
    let coordinator = checkpoints.as_ref().map(|c| {
        if let Some(postgres) = &postgres {
            c.set_postgres(postgres.clone());
        }
        c.start()
    });
    let stats = Arc::new(RunStats::default());
    // Binds --metrics-addr and --dashboard-addr before anything runs.
    let dashboard = crate::web::start(&config, &stats, lake.as_ref(), postgres.as_ref())?;
    let started = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let progress = crate::logging::progress(&config, stats.clone(), done.clone());

    let workers = config.threads * config.processes;
    let total: Arc<Mutex<Totals>> = Arc::default();
    let failed = Arc::new(AtomicBool::new(false));
    let pg_stats: Arc<Mutex<Option<PgStats>>> = Arc::default();
    let shared = (
        stats.clone(),
        lake.clone(),
        postgres.clone(),
        pg_stats.clone(),
        stop.clone(),
        total.clone(),
        failed.clone(),
        dashboard,
        checkpoints.clone(),
    );
    let timely_config = config.timely.clone();
    let (threads, process, config_processes) = (config.threads, config.process, config.processes);
    // A fault for the tests: this worker panics once the pipeline is running.
    let panic_worker = std::env::var("TRADEFLOW_PANIC_WORKER").ok().and_then(|v| v.parse::<usize>().ok());
    let guards = crate::cluster::execute(timely_config, move |worker| {
        let (stats, lake, postgres, pg_stats, stop, total, failed, dashboard, checkpoints) = shared.clone();
        let handles = Shared {
            stats: stats.clone(),
            lake: lake.clone(),
            postgres: postgres.clone(),
            stop: stop.clone(),
            dashboard,
            checkpoints: checkpoints.clone().map(|c| c as Arc<dyn tradeflow_model::checkpoint::Checkpoints>),
        };
        let probe = worker.dataflow::<Time, _, _>(|scope| build(scope, &config, &handles));
        // Every worker builds the same dataflow, so a checkpoint that cannot be restored
        // fails on every worker alike.
        let probe = probe.unwrap_or_else(|e| panic!("{e}"));
        if panic_worker == Some(worker.index()) {
            let running = Instant::now();
            step_until(worker, |_| running.elapsed() > Duration::from_millis(300));
            panic!("injected by TRADEFLOW_PANIC_WORKER={}", worker.index());
        }
        step_until(worker, |_| probe.done());
        step_until(worker, |w| !w.has_dataflows());
        // Every worker of every process is past the pipeline once epoch 0 of this small
        // dataflow completes; then each process commits what its PostgreSQL sink holds,
        // finishes its lake uploads and sends its counters to worker 0 for the summary.
        let first_of_process = worker.index() % threads == 0;
        let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, stream) = scope.new_input::<Vec<Totals>>();
            let probe = stream.exchange(|_| 0).inspect(move |t| total.lock().expect("totals lock").add(t)).probe().0;
            (input, probe)
        });
        input.advance_to(1);
        step_until(worker, |_| !probe.less_than(&1));
        if first_of_process {
            if let Some(postgres) = &postgres {
                match postgres.finish() {
                    Ok(committed) => *pg_stats.lock().expect("postgres stats lock") = Some(committed),
                    Err(e) => {
                        tracing::error!("{e}");
                        failed.store(true, Ordering::Relaxed);
                    }
                }
            }
            let mut mine = stats.totals();
            if let Some(checkpoints) = &checkpoints {
                // The checkpoint of the end, never after a failure; complete only if every
                // source of every process ended its watermark (read everything, or
                // drained): what the pipeline's watermark shows.
                let ok = !failed.load(Ordering::Relaxed) && tradeflow_sources::batch::failure().is_none();
                let complete = stats.watermark.load(Ordering::Relaxed) == i64::MAX;
                if let Err(e) = checkpoints.finish(ok, complete) {
                    tracing::error!("the checkpoint of the end was not written: {e}");
                    failed.store(true, Ordering::Relaxed);
                }
            }
            if let Some(lake) = &lake {
                if let Err(e) = lake.finish() {
                    tracing::error!("{e}");
                    failed.store(true, Ordering::Relaxed);
                }
                let written = lake.stats();
                (mine.lake_files, mine.lake_bytes) = (written.files, written.bytes);
            }
            input.send(mine);
        }
        drop(input);
        step_until(worker, |w| !w.has_dataflows());
    })?;
    let results = guards.join();
    done.store(true, Ordering::Relaxed);
    if let (Some(checkpoints), Some(coordinator)) = (&checkpoints, coordinator) {
        let _ = checkpoints.finish(false, false);
        let _ = coordinator.join();
    }
    if let Some(p) = progress {
        let _ = p.join();
    }
    for result in results {
        result.map_err(|e| anyhow::anyhow!("a worker failed: {e}"))?;
    }
    if let Some(lake) = &lake {
        lake.finish().context("the lake")?;
    }
    if let Some(postgres) = &postgres {
        // Already finished by the workers unless one of them failed.
        postgres.finish()?;
    }
    if let Some(failure) = tradeflow_sources::batch::failure() {
        anyhow::bail!("the run did not complete: {failure}");
    }
    if failed.load(Ordering::Relaxed) {
        anyhow::bail!("the run did not complete; see the errors above");
    }
    // Everything read is flushed: only now do the Kafka sources' groups move on.
    let committed = tradeflow_sources::kafka::commit_offsets().map_err(|e| anyhow::anyhow!("{e}"))?;
    if committed > 0 {
        tracing::info!("committed the offsets of {committed} Kafka partition(s) to their consumer groups");
    }
    if process == 0 {
        let totals = total.lock().expect("totals lock").clone();
        crate::say!("{}", summary(&totals, started.elapsed(), workers));
    }
    if let (Some(postgres), Some(committed)) = (&postgres, pg_stats.lock().expect("postgres stats lock").take()) {
        let server = if config_processes > 1 {
            format!("{} (process {process})", postgres.target().name())
        } else {
            postgres.target().name().to_owned()
        };
        crate::say!("{}", committed.summary_lines(&server));
    }
    if stop.load(Ordering::Relaxed) {
        if suspend {
            crate::say!(
                "stopped: everything read is flushed and checkpointed; open windows stay provisional. Run the same command again to resume"
            );
        } else {
            crate::say!("stopped (Ctrl-C or SIGTERM) after flushing everything read");
        }
    }
    Ok(())
}

/// What a component that failed for good calls: the run stops, and ends with `why` as
/// its error.
fn fail_run(stop: &Arc<AtomicBool>) -> impl Fn(String) + Send + Sync + 'static {
    let stop = stop.clone();
    move |why| {
        tradeflow_sources::batch::report_failure(why);
        stop.store(true, Ordering::Relaxed);
    }
}

/// Longest a worker with nothing to do sleeps before looking again. Activations from
/// other threads (a source's waker, data or progress from another worker or process)
/// wake it at once, so this only bounds the cost of a missed wake-up.
const PARK: Duration = Duration::from_millis(20);

/// Steps `worker` until `done`, parking whenever no operator has work: an idle pipeline
/// (a quiet feed, a slow simulator, a broker with nothing new) then uses no CPU, where
/// timely's `step_while` would spin on a core.
fn step_until(worker: &mut Worker, mut done: impl FnMut(&Worker) -> bool) {
    while !done(worker) {
        worker.step_or_park(Some(PARK));
    }
}

/// `tradeflow migrate`: brings the PostgreSQL schema up to date.
pub fn migrate(args: &MigrateArgs) -> anyhow::Result<()> {
    let target = postgres_target(args.postgres.as_deref())?.ok_or_else(|| {
        ConfigError(
            "no database given: use --postgres postgres://user:password@host:5432/database, or set DATABASE_URL or POSTGRES_HOST/PORT/DB/USER/PASSWORD".into(),
        )
    })?;
    let retry_for = crate::config::duration("--retry-for", &args.retry_for)?;
    let report = migrate_database(&target, retry_for)?;
    if report.applied.is_empty() {
        println!("PostgreSQL {}: schema already at version {}; nothing to do", target.name(), report.version);
    } else {
        println!(
            "PostgreSQL {}: schema migrated to version {} (applied {:?})",
            target.name(),
            report.version,
            report.applied
        );
    }
    Ok(())
}

/// Signals that arrive within this long of the first count as one request: `timeout -s
/// INT` and a terminal's Ctrl-C deliver SIGINT to the process and to its group at once.
const SIGNAL_GRACE: Duration = Duration::from_secs(1);

/// Ctrl-C, SIGTERM or SIGHUP: the first calls `first` (to say what happens now) and then
/// sets `stop`; signals within [`SIGNAL_GRACE`] of it are the same request; a later one
/// calls `again` and exits at once with 130. `first` speaks before the stop is set: once
/// it is, the process may finish and exit before this thread writes anything.
pub(crate) fn on_signals(stop: Arc<AtomicBool>, first: impl Fn() + Send + 'static, again: impl Fn() + Send + 'static) {
    let at: Mutex<Option<Instant>> = Mutex::new(None);
    let _ = ctrlc::set_handler(move || {
        let mut at = at.lock().unwrap_or_else(|e| e.into_inner());
        match *at {
            Some(t) if t.elapsed() < SIGNAL_GRACE => return,
            Some(_) => {
                again();
                std::process::exit(130);
            }
            None => *at = Some(Instant::now()),
        }
        first();
        stop.store(true, Ordering::SeqCst);
    });
}

/// Ctrl-C or SIGTERM once: stop reading and finish cleanly (`suspend`: checkpoint and
/// leave open windows for a resumed run; otherwise finalise them); again, after
/// [`SIGNAL_GRACE`]: exit at once (the next start resumes from the last checkpoint).
fn install_signals(stop: Arc<AtomicBool>, bounded: bool, suspend: bool) {
    let first = move || {
        if suspend {
            tracing::info!(
                "stopping: flushing and checkpointing what was read; open windows stay open for the resumed run (a second Ctrl-C aborts)"
            );
        } else if bounded {
            tracing::info!(
                "stop requested (Ctrl-C or SIGTERM): stopping the sources; finishing what was read (a second Ctrl-C aborts)"
            );
        } else {
            tracing::info!(
                "stop requested (Ctrl-C or SIGTERM): finalising open windows and flushing the lake (a second Ctrl-C aborts)"
            );
        }
    };
    on_signals(stop, first, || tracing::warn!("second signal: exiting without flushing"));
}
