//! The sink's writer: one background thread per process that owns the connection.
//!
//! Workers hand over the coalesced changes of their complete epochs ([`PgSink::hand_over`]);
//! the writer takes everything pending at once and applies it in one transaction (one
//! prepared statement over arrays of rows, see [`super::batch`]). While that
//! transaction is in flight, newer changes coalesce in the pending set, so the next
//! transaction carries only the latest state of each key. When idle, a hand-over wakes
//! the writer at once: rows reach the database milliseconds after their trades are read.
//!
//! A temporary failure (the server restarting, a dropped connection) drops the
//! connection and retries with exponential backoff (100 ms doubling to 5 s) for up to
//! `retry_for`; each retry re-applies the failed batch merged with anything newer, so
//! nothing is lost, and a batch whose commit was in doubt is simply applied again (every
//! write is idempotent). A permanent failure, or a temporary one that outlasts
//! `retry_for`, stops the run: the writer records the error, sets the run's stop flag and
//! discards further changes; [`PgSink::finish`] returns the error.

use super::batch::{Batch, MERGE, Progress};
use super::changes::Changes;
use super::error::{ErrorClass, Failure, PgError};
use super::migrations::{MigrationError, MigrationReport, migrate};
use super::stats::PgStats;
use super::target::PgTarget;
use postgres::{Client, Statement};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tradeflow_model::Time;
use tradeflow_model::metrics::{Histogram, SinkMetrics, end_to_end_latency};

/// How often the progress row is refreshed when only the epoch moved.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(5);

/// How a process's sink runs.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// How long temporary failures are retried before the run stops.
    pub retry_for: Duration,
    /// This process's index (the progress row's key).
    pub process: usize,
    /// Worker threads of this process that hand over changes.
    pub workers: usize,
}

/// A process's PostgreSQL sink: its writer thread and what the workers hand it.
pub struct PgSink {
    target: PgTarget,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    stats: Mutex<PgStats>,
}

struct State {
    pending: Changes,
    /// Per worker: the epoch up to which everything was handed over.
    completed: Vec<Option<Time>>,
    run_id: Option<String>,
    /// The epoch up to which every worker's changes are committed.
    committed: Option<Time>,
    closing: bool,
    failed: bool,
    error: Option<PgError>,
    /// The writer waits with no timeout (nothing pending, no progress row due): only then
    /// must a hand-over that merely moves `completed` wake it.
    asleep: bool,
}

impl State {
    /// The epoch up to which every worker has handed everything over.
    fn completed(&self) -> Option<Time> {
        self.completed.iter().copied().collect::<Option<Vec<Time>>>()?.into_iter().min()
    }
}

impl PgSink {
    /// Connects, migrates the schema (retrying temporary failures for
    /// `options.retry_for`), and starts the writer. Permanent failures (bad credentials,
    /// a missing database, an unknown host) return at once. `stop` is set if the sink
    /// fails later, so that the sources stop and the run ends with the error.
    pub fn start(target: PgTarget, options: PgOptions, stop: Arc<AtomicBool>) -> Result<PgSink, PgError> {
        let (mut client, report) = connect_with_retry(&target, options.retry_for)?;
        if !report.applied.is_empty() {
            tracing::info!(
                "PostgreSQL {}: migrated the schema to version {} (applied {:?})",
                target.name(),
                report.version,
                report.applied
            );
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                pending: Changes::default(),
                completed: vec![None; options.workers.max(1)],
                run_id: None,
                committed: None,
                closing: false,
                failed: false,
                error: None,
                asleep: false,
            }),
            wake: Condvar::new(),
            stats: Mutex::new(PgStats::default()),
        });
        let statement = client.prepare(MERGE).map_err(|e| Failure::Pg(e).into_error(&target, "preparing the merge"))?;
        let writer = Writer {
            target: target.clone(),
            shared: shared.clone(),
            options,
            stop,
            client: Some((client, statement)),
            metrics: SinkMetrics::of("postgres"),
            latency: end_to_end_latency("postgres"),
        };
        let thread = std::thread::Builder::new()
            .name("postgres-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| PgError::Config(format!("starting the PostgreSQL writer thread: {e}")))?;
        Ok(PgSink { target, shared, thread: Mutex::new(Some(thread)) })
    }

    /// The server, as messages name it.
    pub fn target(&self) -> &PgTarget {
        &self.target
    }

    /// Records the run's id (the progress row's key).
    pub fn set_run_id(&self, run_id: &str) {
        lock(&self.shared.state).run_id.get_or_insert_with(|| run_id.to_owned());
    }

    /// Worker `slot` (0..workers of this process) hands over the changes of its epochs
    /// up to `completed`, all of them complete and applied in order.
    pub fn hand_over(&self, slot: usize, changes: Changes, completed: Option<Time>) {
        if !changes.epochs.is_empty() {
            let now = wall_ms();
            let mut stats = lock(&self.shared.stats);
            for &epoch in &changes.epochs {
                stats.handover.record(now.saturating_sub(epoch));
            }
        }
        let mut state = lock(&self.shared.state);
        let mut moved = false;
        if let (Some(epoch), Some(entry)) = (completed, state.completed.get_mut(slot)) {
            let newer = Some(entry.map_or(epoch, |e| e.max(epoch)));
            moved = *entry != newer;
            *entry = newer;
        }
        if state.failed || (changes.is_empty() && !(moved && state.asleep)) {
            return;
        }
        if changes.is_empty() {
            // Only time moved: the writer records it in the progress row (at most every
            // PROGRESS_EVERY), which is what a checkpoint waits for; a writer asleep
            // with nothing to do must hear of it, or a quiet feed would hold every
            // checkpoint back.
        } else if state.pending.is_empty() {
            state.pending = changes;
        } else {
            state.pending.absorb_newer(changes);
        }
        drop(state);
        self.shared.wake.notify_one();
    }

    /// The epoch up to which every worker's changes are committed (`None` before the
    /// first commit): a checkpoint at a later boundary waits for it.
    pub fn committed(&self) -> Option<Time> {
        lock(&self.shared.state).committed
    }

    /// True once the sink has failed for good.
    pub fn failed(&self) -> bool {
        lock(&self.shared.state).failed
    }

    /// What has been committed so far.
    pub fn stats(&self) -> PgStats {
        lock(&self.shared.stats).clone()
    }

    /// Waits until everything handed over is committed and stops the writer; the error
    /// that stopped the sink, if any. Call once every worker is done.
    pub fn finish(&self) -> Result<PgStats, PgError> {
        lock(&self.shared.state).closing = true;
        self.shared.wake.notify_one();
        if let Some(thread) = lock(&self.thread).take()
            && thread.join().is_err()
        {
            return Err(PgError::Config(format!("PostgreSQL {}: the writer thread panicked", self.target.name())));
        }
        match lock(&self.shared.state).error.take() {
            Some(error) => Err(error),
            None => Ok(self.stats()),
        }
    }
}

impl Drop for PgSink {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// Brings the schema of `target` up to date (`tradeflow migrate`), retrying temporary
/// failures for `retry_for`.
pub fn migrate_database(target: &PgTarget, retry_for: Duration) -> Result<MigrationReport, PgError> {
    connect_with_retry(target, retry_for).map(|(_, report)| report)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Exponential backoff over a bounded time.
pub(crate) struct Backoff {
    first_failure: Option<Instant>,
    delay: Duration,
    limit: Duration,
}

impl Backoff {
    pub(crate) fn new(limit: Duration) -> Self {
        Backoff { first_failure: None, delay: FIRST_DELAY, limit }
    }

    /// After `failure` doing `what`: how long to wait before retrying, or the error to
    /// stop with (permanent, or retried for too long).
    pub(crate) fn next(&mut self, failure: Failure, target: &PgTarget, what: &str) -> Result<Duration, PgError> {
        let first = *self.first_failure.get_or_insert_with(Instant::now);
        SinkMetrics::of("postgres").errors.inc();
        if failure.class() == ErrorClass::Permanent {
            return Err(failure.into_error(target, what));
        }
        if first.elapsed() >= self.limit {
            let what = format!("{what} (still failing after retrying for {:?})", self.limit);
            return Err(failure.into_error(target, &what));
        }
        tracing::warn!(
            "PostgreSQL {}: {what}: {}; retrying in {:?}",
            target.name(),
            target.scrub(&failure.describe()),
            self.delay
        );
        let delay = self.delay;
        self.delay = (self.delay * 2).min(MAX_DELAY);
        Ok(delay)
    }

    fn failing_for(&self) -> Option<Duration> {
        self.first_failure.map(|f| f.elapsed())
    }
}

/// What one connection attempt ended with.
enum Attempt {
    /// A failure that may be temporary.
    Failed(Failure),
    /// A failure that retrying cannot fix, already described.
    Fatal(PgError),
}

impl From<postgres::Error> for Attempt {
    fn from(e: postgres::Error) -> Self {
        Attempt::Failed(Failure::Pg(e))
    }
}

/// A connection with the schema migrated, retrying temporary failures for `retry_for`.
pub(crate) fn connect_with_retry(target: &PgTarget, retry_for: Duration) -> Result<(Client, MigrationReport), PgError> {
    let mut backoff = Backoff::new(retry_for);
    loop {
        let attempt = || -> Result<(Client, MigrationReport), Attempt> {
            let mut client = target.connect()?;
            let report = migrate(&mut client).map_err(|e| match e {
                MigrationError::Pg(e) => Attempt::Failed(Failure::Pg(e)),
                MigrationError::TooNew { found, known } => Attempt::Fatal(PgError::Server {
                    server: target.name().to_owned(),
                    origin: target.origin().to_owned(),
                    message: format!(
                        "the database schema is at version {found}, newer than this tradeflow knows ({known})"
                    ),
                    fix: "fix: upgrade tradeflow, or point it at another database".into(),
                    class: ErrorClass::Permanent,
                }),
            })?;
            Ok((client, report))
        };
        match attempt() {
            Ok(done) => return Ok(done),
            Err(Attempt::Fatal(error)) => return Err(error),
            Err(Attempt::Failed(failure)) => {
                let delay = backoff.next(failure, target, "connecting and migrating the schema")?;
                std::thread::sleep(delay);
            }
        }
    }
}

struct Writer {
    target: PgTarget,
    shared: Arc<Shared>,
    options: PgOptions,
    stop: Arc<AtomicBool>,
    /// The connection and its prepared merge statement.
    client: Option<(Client, Statement)>,
    /// Rows, errors and commit durations, for `/metrics`.
    metrics: SinkMetrics,
    /// Epoch to commit, for `/metrics`.
    latency: Histogram,
}

/// One transaction's work.
struct Work {
    changes: Changes,
    run_id: Option<String>,
    completed: Option<Time>,
    closing: bool,
    failed: bool,
}

impl Writer {
    fn run(mut self) {
        let mut written_epoch: Option<Time> = None;
        let mut last_write = Instant::now();
        loop {
            let work = self.next_work(written_epoch, last_write);
            if work.failed {
                return; // the sink failed for good and the run is closing
            }
            let progress_moved = work.completed.is_some() && work.completed != written_epoch && work.run_id.is_some();
            if work.changes.is_empty() && !progress_moved {
                if work.closing {
                    return;
                }
                continue;
            }
            if let Some(done) = self.write(work) {
                written_epoch = done.completed.or(written_epoch);
                let mut state = lock(&self.shared.state);
                state.committed = state.committed.max(done.completed);
                drop(state);
                last_write = Instant::now();
            }
        }
    }

    /// Waits for changes, for the end, or for the progress row to be due.
    fn next_work(&self, written_epoch: Option<Time>, last_write: Instant) -> Work {
        let mut state = lock(&self.shared.state);
        loop {
            if state.failed {
                // Discard everything until the run closes.
                state.pending = Changes::default();
                if state.closing {
                    return Work {
                        changes: Changes::default(),
                        run_id: None,
                        completed: None,
                        closing: true,
                        failed: true,
                    };
                }
                state = self.shared.wake.wait(state).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            let completed = state.completed();
            let progress_waiting = completed.is_some() && completed != written_epoch && state.run_id.is_some();
            let progress_due = progress_waiting && last_write.elapsed() >= PROGRESS_EVERY;
            if !state.pending.is_empty() || state.closing || progress_due {
                return Work {
                    changes: std::mem::take(&mut state.pending),
                    run_id: state.run_id.clone(),
                    completed,
                    closing: state.closing,
                    failed: false,
                };
            }
            state = if progress_waiting {
                let wait = PROGRESS_EVERY.saturating_sub(last_write.elapsed());
                self.shared.wake.wait_timeout(state, wait).unwrap_or_else(|p| p.into_inner()).0
            } else {
                state.asleep = true;
                let mut state = self.shared.wake.wait(state).unwrap_or_else(|p| p.into_inner());
                state.asleep = false;
                state
            };
        }
    }

    /// Applies `work` in one transaction, retrying temporary failures with newer
    /// changes merged in; `None` if the sink failed for good.
    fn write(&mut self, mut work: Work) -> Option<Work> {
        let mut backoff = Backoff::new(self.options.retry_for);
        loop {
            let progress = match (&work.run_id, work.completed) {
                (Some(run_id), Some(epoch)) => {
                    let process = i32::try_from(self.options.process).unwrap_or(i32::MAX);
                    Some(Progress { run_id: run_id.clone(), process, epoch })
                }
                _ => None,
            };
            let batch = Batch::new(&work.changes, progress.as_ref());
            let started = Instant::now();
            match self.apply(&batch) {
                Ok(()) => {
                    self.record(&work, &batch, started.elapsed());
                    if let Some(outage) = backoff.failing_for() {
                        tracing::info!(
                            "PostgreSQL {}: reconnected after {:.1}s; re-applied {} pending changes",
                            self.target.name(),
                            outage.as_secs_f64(),
                            work.changes.len()
                        );
                    }
                    return Some(work);
                }
                Err(failure) => {
                    self.client = None;
                    match backoff.next(failure, &self.target, "writing a batch") {
                        Ok(delay) => {
                            lock(&self.shared.stats).retries += 1;
                            std::thread::sleep(delay);
                            // Retry with the newest state of every key.
                            let mut state = lock(&self.shared.state);
                            let newer = std::mem::take(&mut state.pending);
                            work.changes.absorb_newer(newer);
                            work.completed = state.completed();
                            work.run_id = state.run_id.clone();
                            work.closing = state.closing;
                        }
                        Err(error) => {
                            tracing::error!("{error}");
                            let mut state = lock(&self.shared.state);
                            state.failed = true;
                            state.pending = Changes::default();
                            state.error.get_or_insert(error);
                            self.stop.store(true, Ordering::SeqCst);
                            return None;
                        }
                    }
                }
            }
        }
    }

    /// One statement, one transaction, one round trip.
    fn apply(&mut self, batch: &Batch) -> Result<(), Failure> {
        if self.client.is_none() {
            let mut client = self.target.connect()?;
            let statement = client.prepare(MERGE)?;
            self.client = Some((client, statement));
        }
        let (client, statement) = self.client.as_mut().expect("connected above");
        client.query_one(&*statement, &batch.params())?;
        Ok(())
    }

    fn record(&self, work: &Work, batch: &Batch, busy: Duration) {
        let committed = wall_ms();
        let mut stats = lock(&self.shared.stats);
        if !work.changes.is_empty() {
            stats.commits += 1;
        }
        stats.upserts += batch.upserts;
        stats.deletes += batch.deletes;
        stats.busy += busy;
        for &epoch in &work.changes.epochs {
            stats.delay.record(committed.saturating_sub(epoch));
            self.latency.observe(committed.saturating_sub(epoch) as f64 / 1000.0);
        }
        drop(stats);
        self.metrics.rows.add(batch.upserts + batch.deletes);
        self.metrics.commit_seconds.observe(busy.as_secs_f64());
    }
}

/// Wall-clock milliseconds since the Unix epoch, as epochs are.
fn wall_ms() -> Time {
    tradeflow_model::wall_ms().max(0) as Time
}
