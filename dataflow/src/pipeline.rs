//! The pipeline, as each worker builds it: sources -> operators -> sinks.

use crate::config::RunConfig;
use crate::stats::RunStats;
use differential_dataflow::AsCollection;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::vec::ToStream;
use timely::dataflow::operators::{Concatenate, Inspect, Probe};
use timely::dataflow::{ProbeHandle, Scope};
use tradeflow_model::Time;
use tradeflow_model::checkpoint::{Checkpoints, Saver};
use tradeflow_operators::ingest::{Ingested, ingest};
use tradeflow_operators::rows::{arrange_rows, kept};
use tradeflow_operators::{GlobalWatermark, window_analytics};
use tradeflow_sinks::lake::{
    ChangelogConfig, Lake, TradesFiles, TradesLayout, write_changelog, write_dead_letters, write_finals, write_trades,
    write_trades_by_hour,
};
use tradeflow_sinks::postgres::{PgSink, write_postgres};
use tradeflow_sources::driver::Backlog;
use tradeflow_sources::source::Context;

/// `--lake-final-rows` by default: rows per `window_metrics` and `anomalies` file, the
/// most final rows the lake holds per dataset (an hour of 1-minute windows over 4,000
/// symbols fits one file).
pub const FINALS_FILE_ROWS: usize = 250_000;

/// What every worker shares with the rest of its process.
pub struct Shared {
    /// Counters.
    pub stats: Arc<RunStats>,
    /// The lake, if written.
    pub lake: Option<Arc<Lake>>,
    /// The PostgreSQL sink, if on.
    pub postgres: Option<Arc<PgSink>>,
    /// Set on Ctrl-C: sources stop and the run finishes what it has.
    pub stop: Arc<AtomicBool>,
    /// The live dashboard, if served.
    pub dashboard: Option<Arc<crate::web::Dashboard>>,
    /// Where components save their state, when the run is checkpointed.
    pub checkpoints: Option<Arc<dyn Checkpoints>>,
}

/// Builds the pipeline in `scope`; the probe tells when it has finished. Fails if a
/// checkpoint being resumed cannot be restored.
pub fn build<'scope>(
    scope: Scope<'scope, Time>,
    config: &RunConfig,
    shared: &Shared,
) -> Result<ProbeHandle<Time>, String> {
    let (index, peers) = (scope.index(), scope.peers());
    let windows = config.params.windows;
    let saver = |component: &str| shared.checkpoints.as_ref().map(|c| Saver::new(c.clone(), component, index));
    // The pipeline's end: checkpointed sources wait while it lags behind them.
    let probe = ProbeHandle::new();
    let backlog = shared.checkpoints.as_ref().map(|c| Backlog::new(probe.clone(), c.clone(), shared.stop.clone()));

    // Sources: each source on each worker is one watermark reporter.
    let mut inputs: Vec<Ingested<'scope>> = Vec::new();
    for (number, source) in config.sources.iter().enumerate() {
        let reporter = (number * peers + index) as u32;
        let saver = || saver(&format!("source{number}"));
        let context = Context {
            lateness_ms: config.lateness_ms,
            idle_timeout: config.idle_timeout,
            kafka_retry_for: config.kafka_retry_for,
            stop: shared.stop.clone(),
            saver: &saver,
            backlog: backlog.clone(),
        };
        let batches = source.build(scope, &context).map_err(|e| e.to_string())?;
        inputs.push(ingest(batches, &config.source_names[number], reporter, windows, shared.stats.ingest.clone()));
    }
    let reporters = config.sources.len() * peers;
    let trades = scope.concatenate(inputs.iter().map(|i| i.trades.clone()));
    let rejects = scope.concatenate(inputs.iter().map(|i| i.rejects.clone()));
    let panes = scope.concatenate(inputs.iter().map(|i| i.panes.inner.clone())).as_collection();
    let watermarks = scope.concatenate(inputs.iter().map(|i| i.watermarks.clone())).broadcast();

    // Operators.
    let tick = tradeflow_operators::windows::tick_for(shared.checkpoints.as_ref().map(|c| c.interval_ms()));
    let analytics = window_analytics(panes, watermarks.clone(), config.params, reporters, tick, &saver)?;

    // Sinks, all reading the rows arranged once (each sink its batches, the trace is not
    // kept). Worker 0's run id, for every process.
    let rows = arrange_rows(analytics.metrics.clone(), analytics.anomalies.clone(), tick);
    let (metrics, anomalies) = (kept(&rows.metrics), kept(&rows.anomalies));
    let run_id = if index == 0 { vec![config.run_id.clone()] } else { Vec::new() }.to_stream(scope).broadcast();
    if let Some(postgres) = &shared.postgres {
        let slot = index % config.threads;
        write_postgres(&rows, run_id.clone(), postgres.clone(), slot);
    }
    if let Some(lake) = &shared.lake {
        let file_rows = config.lake_file_rows;
        match config.lake_layout {
            TradesLayout::Symbol => {
                let files = TradesFiles { max_rows: file_rows, buffer_rows: config.lake_buffer_rows };
                write_trades(trades, watermarks.clone(), reporters, lake.clone(), files, saver("lake-trades"))?
            }
            TradesLayout::Hour => {
                let saved = saver("lake-trades-by-hour");
                write_trades_by_hour(trades, watermarks.clone(), reporters, lake.clone(), file_rows, saved)?
            }
        }
        // Final rows come out at the analytics' ticks, and so must the watermark they wait for.
        let (marks, saved) = (analytics.watermarks.clone(), saver("lake-window_metrics"));
        let final_rows = config.lake_final_rows;
        write_finals(metrics.clone(), marks.clone(), reporters, windows, lake.clone(), final_rows, saved)?;
        let saved = saver("lake-anomalies");
        write_finals(anomalies.clone(), marks, reporters, windows, lake.clone(), final_rows, saved)?;
        let changelog = ChangelogConfig {
            worker: index,
            max_rows: 250_000,
            max_age: (!config.bounded).then_some(Duration::from_secs(300)),
            resolution: config.changelog_resolution_ms,
        };
        // A stop of a checkpointed run (not drained) is resumed later: sinks then leave
        // their output open instead of ending it.
        let (stop, suspend) = (shared.stop.clone(), shared.checkpoints.is_some() && !config.drain);
        let suspended: Rc<dyn Fn() -> bool> = Rc::new(move || suspend && stop.load(Ordering::Relaxed));
        let (saved, progress) = (saver("changelog-window_metrics"), saver("changelog-progress-window_metrics"));
        write_changelog(
            metrics.clone(),
            run_id.clone(),
            lake.clone(),
            changelog.clone(),
            saved,
            progress,
            suspended.clone(),
        )?;
        let (saved, progress) = (saver("changelog-anomalies"), saver("changelog-progress-anomalies"));
        write_changelog(anomalies.clone(), run_id, lake.clone(), changelog, saved, progress, suspended.clone())?;
        let age = (!config.bounded).then_some(Duration::from_secs(600));
        write_dead_letters(rejects, lake.clone(), age, saver("dead-letters"), move || suspended())?;
    }
    if let Some(dashboard) = &shared.dashboard {
        crate::web::feed_dashboard(metrics, anomalies, dashboard.clone());
    }

    // Counters for progress and the summary.
    let stats = shared.stats.clone();
    let mut watermark = GlobalWatermark::new(reporters);
    // A source that stopped because its process was asked to stops every process: a
    // signal to one process of a `-n` run stops them all (the reports reach every worker).
    let stop = shared.stop.clone();
    watermarks.inspect(move |report| {
        watermark.observe(report);
        stats.watermark.fetch_max(watermark.get(), Ordering::Relaxed);
        if report.stop && !stop.swap(true, Ordering::SeqCst) {
            tracing::info!("another worker of the run stopped: stopping too");
        }
    });
    let stats = shared.stats.clone();
    // Open windows are the gate's count (a resumed run's restored windows included, whose
    // rows are not passed on again), added to the process's sum as it changes.
    let open = analytics.open_windows.clone();
    let mut counted = open.get() as i64;
    stats.open_windows.fetch_add(counted, Ordering::Relaxed);
    let metrics = analytics.metrics.inner.inspect(move |(row, _, diff)| {
        if row.is_final {
            stats.final_windows.fetch_add(*diff as u64, Ordering::Relaxed);
        } else if *diff > 0 {
            stats.provisional_updates.fetch_add(1, Ordering::Relaxed);
        }
        let now = open.get() as i64;
        stats.open_windows.fetch_add(now - counted, Ordering::Relaxed);
        counted = now;
    });
    let stats = shared.stats.clone();
    analytics.anomalies.inner.inspect(move |(row, _, diff)| {
        if row.is_final {
            stats.final_anomalies.fetch_add(*diff as u64, Ordering::Relaxed);
        }
    });
    metrics.probe_with(&probe);
    Ok(probe)
}
