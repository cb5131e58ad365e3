//! Checkpoints kept beside the output they cover: in the lake, or, for a run without
//! one, in PostgreSQL ([`CheckpointStore`]).
//!
//! Background: see [`tradeflow_model::checkpoint`] for the cut. Every component's part
//! is written under `_checkpoints/<job>/parts/<component>/w<worker>/<first boundary>`
//! (`.state`, and `.payload` when it has one). In the lake it goes through the lake's own
//! upload queue, so it is ordered after every file the component published before it; in
//! PostgreSQL ([`crate::postgres::checkpoints`]) it waits in memory for the next barrier.
//! A coordinator thread per process watches the parts arrive; once every component on
//! every worker of the process has a part valid for a boundary `k`, it
//! 1. waits for the store to hold everything published so far (the lake: a barrier
//!    through the encoder and the uploader, so the files the parts rely on and the parts;
//!    PostgreSQL: the parts, written in one transaction),
//! 2. waits for the PostgreSQL sink, when there is one, to have committed every epoch
//!    before the boundary,
//! 3. then writes `_checkpoints/<job>/manifest-p<process>.json` (one atomic put or
//!    upsert), which names the parts of `k`; the manifest is the checkpoint.
//!
//! So a manifest is never ahead of the output it covers: the lake's files and the
//! database hold at least everything before the boundary. They may hold more (what was
//! written after it, before a crash): a resumed run writes the same lake objects again
//! under the same names with the same bytes, and PostgreSQL's idempotent merge converges
//! to the same rows.
//!
//! A run resumes from the latest boundary that every process's manifest has committed.
//! A manifest records the job's settings; a restart with other settings refuses to mix
//! results. A run that ends by itself (every input read) marks its manifest complete,
//! and the same command then starts the job again from the beginning.

use crate::lake::Lake;
use crate::postgres::PgSink;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tradeflow_model::checkpoint::{Checkpoints, FINAL, Part, PartPayload, Restored, Validity};
use tradeflow_model::wall_ms;

/// What identifies a job's results: a checkpoint is resumed only by a run with the same.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobHeader {
    /// The job's name.
    pub job: String,
    /// Settings that decide the results (sources, sinks, windows, rules, workers), by name.
    pub settings: BTreeMap<String, String>,
    /// The changelog's run id (kept across resumes).
    pub run_id: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct PartRef {
    component: String,
    worker: usize,
    first: u64,
    last: u64,
    payload: bool,
    needs: Vec<u64>,
}

impl PartRef {
    /// Whether this part holds its component's state at `boundary`.
    fn valid_at(&self, boundary: u64) -> bool {
        self.first <= boundary && boundary <= self.last
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Committed {
    /// The boundary index (`FINAL − generation` for the end of a run).
    boundary: u64,
    /// When it was written (RFC 3339), for people.
    written_at: String,
    parts: Vec<PartRef>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Manifest {
    header: JobHeader,
    process: usize,
    processes: usize,
    interval_ms: u64,
    /// The run ended by itself: nothing to resume.
    complete: bool,
    /// How many times the job has been started: the checkpoint of a run's end is recorded
    /// as boundary `FINAL − generation`, so that each run's end is told apart.
    #[serde(default)]
    generation: u64,
    /// The run started from its sources' beginning (it resumed from no checkpoint).
    #[serde(default)]
    from_start: bool,
    /// Newest last.
    checkpoints: Vec<Committed>,
}

/// Where the processes of a job start, from their manifests.
#[derive(Debug, PartialEq)]
enum Start {
    /// The newest boundary every process committed.
    At(u64),
    /// From the sources' beginning, for this reason.
    Beginning(&'static str),
    /// Every process committed, but they share no boundary and one of them had resumed.
    Disjoint,
}

impl Start {
    fn of(manifests: &[Manifest], processes: usize) -> Start {
        if manifests.len() < processes || manifests.iter().any(|m| m.checkpoints.is_empty()) {
            // A process died before its first checkpoint: starting again rewrites the same objects.
            return Start::Beginning("not every process has a checkpoint yet");
        }
        let shared = |b: &u64| manifests.iter().all(|m| m.checkpoints.iter().any(|c| c.boundary == *b));
        match manifests[0].checkpoints.iter().rev().map(|c| c.boundary).find(shared) {
            Some(common) => Start::At(common),
            // Processes that started from the beginning and were stopped before both passed
            // a whole second (each commits every whole second it passes) have no checkpoint
            // in common, and nothing but their sources' beginning to go back to.
            None if manifests.iter().all(|m| m.from_start) => {
                Start::Beginning("its processes stopped before they shared a checkpoint")
            }
            // After a resume, each keeps the checkpoint it resumed from until its commits
            // span the skew between processes: this takes a process stopped for longer.
            None => Start::Disjoint,
        }
    }
}

/// Where a job's checkpoints are kept, as objects named by keys
/// (`_checkpoints/<job>/...`).
pub trait CheckpointStore: Send + Sync {
    /// Where the store is, for messages (never with a secret).
    fn location(&self) -> String;
    /// The object under `key`, if there is one.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String>;
    /// Writes `bytes` under `key` at once and atomically (replacing what was there).
    fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), String>;
    /// Removes the object under `key` (best effort: a leftover is only garbage).
    fn delete(&self, key: &str) -> Result<(), String>;
    /// Hands over a part, durable by the end of the next [`CheckpointStore::barrier`] and
    /// never before the output its component handed over before it (a file is removed
    /// once stored).
    fn publish(&self, key: String, payload: PartPayload);
    /// Waits until everything published so far (parts, and the lake's files) is durable.
    fn barrier(&self) -> Result<(), String>;
}

/// The checkpoints kept in the lake, beside its files.
pub struct LakeStore {
    lake: Arc<Lake>,
    objects: Objects,
}

impl LakeStore {
    /// The store of `lake`.
    pub fn new(lake: Arc<Lake>) -> Result<LakeStore, String> {
        let objects = Objects::new(&lake)?;
        Ok(LakeStore { lake, objects })
    }
}

impl CheckpointStore for LakeStore {
    fn location(&self) -> String {
        self.lake.url().to_owned()
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.objects.get(key)
    }

    fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), String> {
        self.objects.put(key, bytes)
    }

    fn delete(&self, key: &str) -> Result<(), String> {
        self.objects.delete(key)
    }

    fn publish(&self, key: String, payload: PartPayload) {
        let payload = match payload {
            PartPayload::Bytes(bytes) => crate::lake::Payload::Bytes(bytes),
            PartPayload::File(path) => crate::lake::Payload::Spooled(path),
        };
        self.lake.publish(key, payload, 0);
    }

    fn barrier(&self) -> Result<(), String> {
        if !self.lake.barrier() {
            return Err("the lake is closed".into());
        }
        match self.lake.error() {
            Some(error) => Err(format!("the lake failed: {error}")),
            None => Ok(()),
        }
    }
}

/// The checkpoints of one process of a job (see the module docs).
pub struct JobCheckpoints {
    store: Arc<dyn CheckpointStore>,
    prefix: String,
    header: JobHeader,
    interval_ms: u64,
    process: usize,
    processes: usize,
    resumed_at: Option<u64>,
    generation: u64,
    restored: Mutex<BTreeMap<(String, usize), Restored>>,
    inner: Mutex<Inner>,
    wake: Condvar,
    postgres: Mutex<Option<Arc<PgSink>>>,
    closed: AtomicBool,
    /// Held while a checkpoint is committed: one at a time, in order.
    committing: Mutex<()>,
    /// See [`Checkpoints::durable_through`].
    durable: std::sync::atomic::AtomicU64,
    /// Told when a checkpoint cannot be written ([`JobCheckpoints::on_failure`]).
    failed: std::sync::OnceLock<Box<dyn Fn(String) + Send + Sync>>,
}

#[derive(Default)]
struct Inner {
    registered: BTreeSet<(String, usize)>,
    parts: BTreeMap<(String, usize), Vec<PartRef>>,
    /// This run's checkpoints, newest last.
    committed: Vec<Committed>,
    /// The checkpoint this run resumed from: listed in the manifest (before this run's,
    /// which may be on another scale of boundaries) until this run has committed enough
    /// of its own, so that every process still has it in common.
    resumed: Option<Committed>,
    /// Parts of earlier runs of the job, to delete once superseded.
    inherited: Vec<PartRef>,
    /// Keys of superseded parts a commit could not delete (the store stopped answering):
    /// the next commit deletes them first.
    litter: Vec<String>,
    error: Option<String>,
}

impl JobCheckpoints {
    /// Opens the job's checkpoints in `store` for `process` of `processes`: finds the
    /// checkpoint to resume from (unless `from_scratch`) and loads this process's parts.
    /// Refuses a checkpoint written with other settings. Also returns the line that tells
    /// the user how the run starts (resuming, or from the beginning and why).
    pub fn open(
        store: Arc<dyn CheckpointStore>,
        header: JobHeader,
        interval: Duration,
        process: usize,
        processes: usize,
        from_scratch: bool,
    ) -> Result<(Arc<JobCheckpoints>, String), String> {
        let prefix = format!("_checkpoints/{}", header.job);
        let interval_ms = (interval.as_millis() as u64).max(1);
        let mut manifests = Vec::new();
        for p in 0..processes {
            if let Some(bytes) = store.get(&format!("{prefix}/manifest-p{p}.json"))? {
                let manifest: Manifest = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("{prefix}/manifest-p{p}.json in {} is unreadable: {e}", store.location()))?;
                manifests.push(manifest);
            }
        }
        let mut checkpoints = JobCheckpoints {
            store,
            prefix,
            header: header.clone(),
            interval_ms,
            process,
            processes,
            resumed_at: None,
            generation: manifests.iter().map(|m| m.generation + 1).max().unwrap_or(0),
            restored: Mutex::default(),
            inner: Mutex::default(),
            wake: Condvar::new(),
            postgres: Mutex::new(None),
            closed: AtomicBool::new(false),
            committing: Mutex::new(()),
            durable: std::sync::atomic::AtomicU64::new(wall_ms().max(0) as u64),
            failed: std::sync::OnceLock::new(),
        };
        let start = checkpoints.resume(manifests, from_scratch)?;
        Ok((Arc::new(checkpoints), start))
    }

    fn resume(&mut self, manifests: Vec<Manifest>, from_scratch: bool) -> Result<String, String> {
        let job = self.header.job.clone();
        if manifests.is_empty() {
            return Ok(format!("job {job}: no checkpoint yet; starting from the beginning"));
        }
        if from_scratch {
            return Ok(format!("job {job}: --from-scratch: ignoring its checkpoint"));
        }
        let first = &manifests[0];
        // A completed job starts again from the beginning, with whatever settings: there
        // is nothing to mix its results with.
        if manifests.len() == self.processes.min(first.processes) && manifests.iter().all(|m| m.complete) {
            return Ok(format!("job {job}: its last run completed; starting from the beginning"));
        }
        let settings = &first.header.settings;
        let differences: Vec<String> = settings
            .keys()
            .chain(self.header.settings.keys())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|k| settings.get(*k) != self.header.settings.get(*k))
            .map(|k| {
                let show = |v: Option<&String>| v.map_or("(none)".to_owned(), |v| format!("{v:?}"));
                format!("{k}: checkpoint {}, now {}", show(settings.get(k)), show(self.header.settings.get(k)))
            })
            .collect();
        if !differences.is_empty() || first.processes != self.processes {
            let mut differences = differences;
            if first.processes != self.processes {
                differences.push(format!("processes: checkpoint {}, now {}", first.processes, self.processes));
            }
            return Err(format!(
                "job {job} has a checkpoint in {} taken with other settings ({}); resuming would mix results. Run with the same settings, or start it again with --from-scratch, or name another job with --job",
                self.store.location(),
                differences.join("; ")
            ));
        }
        // Every process reads the same manifests, so all of them take the same decision.
        let common = match Start::of(&manifests, self.processes) {
            Start::At(common) => common,
            Start::Beginning(why) => return Ok(format!("job {job}: {why}; starting from the beginning")),
            // Starting over from the sources' start could rewrite the lake with less.
            Start::Disjoint => {
                return Err(format!(
                    "job {job}: its processes' checkpoints in {} have no boundary in common; start every process with --from-scratch to run the job again from its sources' start",
                    self.store.location()
                ));
            }
        };
        let mine = manifests.iter().find(|m| m.process == self.process).expect("one manifest per process");
        let committed = mine.checkpoints.iter().find(|c| c.boundary == common).expect("common to all").clone();
        let mut restored = BTreeMap::new();
        for part in &committed.parts {
            let state = self.require(&self.key(part, "state"))?;
            let mut payloads = Vec::new();
            for &first in &part.needs {
                let key = self.key(&PartRef { first, ..part.clone() }, "payload");
                payloads.push((first, self.require(&key)?));
            }
            restored.insert((part.component.clone(), part.worker), Restored { boundary: common, state, payloads });
        }
        let now_boundary = wall_ms().max(0) as u64 / self.interval_ms;
        self.resumed_at = Some(now_boundary);
        *self.restored.get_mut().expect("restored lock") = restored;
        let inner = self.inner.get_mut().expect("checkpoint lock");
        inner.inherited = mine.checkpoints.iter().flat_map(|c| c.parts.clone()).collect();
        inner.resumed = Some(committed);
        self.header.run_id = first.header.run_id.clone();
        let when = if run_end(common) {
            "the stop of its last run".to_owned()
        } else {
            tradeflow_model::format_ts((common * mine.interval_ms) as i64)
        };
        Ok(format!("resuming job {job} from its checkpoint of {when} (in {})", self.store.location()))
    }

    /// The run id the job's changelog uses (an earlier run's, when resuming).
    pub fn run_id(&self) -> &str {
        &self.header.run_id
    }

    /// Makes checkpoints wait for `postgres` to have committed the epochs they cover.
    pub fn set_postgres(&self, postgres: Arc<PgSink>) {
        *lock(&self.postgres) = Some(postgres);
    }

    fn require(&self, key: &str) -> Result<Vec<u8>, String> {
        let location = || self.store.location();
        self.store.get(key)?.ok_or_else(|| format!("the checkpoint object {key} is missing from {}", location()))
    }

    fn key(&self, part: &PartRef, kind: &str) -> String {
        format!("{}/parts/{}/w{:04}/{:020}.{kind}", self.prefix, part.component, part.worker, part.first)
    }

    /// Starts the coordinator thread; it runs until [`JobCheckpoints::finish`].
    pub fn start(self: &Arc<Self>) -> std::thread::JoinHandle<()> {
        let this = self.clone();
        std::thread::Builder::new()
            .name("checkpoints".into())
            .spawn(move || this.coordinate())
            .expect("starting the checkpoint thread")
    }

    fn coordinate(&self) {
        let mut inner = lock(&self.inner);
        while !self.closed.load(Ordering::Acquire) {
            inner = self.wake.wait_timeout(inner, Duration::from_millis(100)).unwrap_or_else(|p| p.into_inner()).0;
            let Some(boundary) = Self::complete_boundary(&inner) else { continue };
            let last = inner.committed.last().map(|c| c.boundary);
            if boundary == FINAL || last.is_some_and(|last| last >= boundary) {
                continue;
            }
            // The coordinator commits the newest complete boundary, skipping those it was
            // too busy for; with several processes it also commits the whole second it
            // passed, so that processes committing at their own pace still share one.
            let second =
                second_before(last, boundary, self.processes, self.interval_ms).filter(|&b| Self::covers(&inner, b));
            drop(inner);
            let result = second.map_or(Ok(()), |b| self.commit(b, false)).and_then(|()| self.commit(boundary, false));
            inner = lock(&self.inner);
            if let Err(e) = result {
                // Every store retries transient failures itself: what reaches here lasted
                // longer than its bound (or another run took the job), so the run stops,
                // and the next start resumes from the last checkpoint written.
                tracing::warn!("checkpoint not written: {e}");
                if inner.error.is_none()
                    && !self.closed.load(Ordering::Acquire)
                    && let Some(tell) = self.failed.get()
                {
                    tell(format!("writing a checkpoint to {} failed: {e}", self.store.location()));
                }
                inner.error.get_or_insert(e);
            }
        }
    }

    /// Whether every registered component has a part valid at `boundary`.
    fn covers(inner: &Inner, boundary: u64) -> bool {
        inner.registered.iter().all(|k| inner.parts[k].iter().any(|p| p.valid_at(boundary)))
    }

    /// The newest boundary every registered component has a part for.
    fn complete_boundary(inner: &Inner) -> Option<u64> {
        if inner.registered.is_empty() {
            return None;
        }
        let mut newest = u64::MAX;
        for key in &inner.registered {
            let last = inner.parts.get(key)?.last()?.last;
            newest = newest.min(last);
        }
        // Each component's parts follow one another, and its last reaches `newest`.
        Self::covers(inner, newest).then_some(newest)
    }

    /// Writes the manifest of `boundary` once the store, the lake and PostgreSQL hold what
    /// it covers.
    fn commit(&self, boundary: u64, complete: bool) -> Result<(), String> {
        let _one_at_a_time = lock(&self.committing);
        let parts: Vec<PartRef> = {
            let inner = lock(&self.inner);
            if inner.committed.last().is_some_and(|c| c.boundary >= boundary && boundary != FINAL) {
                return Ok(());
            }
            inner
                .registered
                .iter()
                .filter_map(|k| inner.parts[k].iter().find(|p| p.valid_at(boundary)).cloned())
                .collect()
        };
        self.store.barrier()?;
        if boundary != FINAL
            && let Some(postgres) = lock(&self.postgres).clone()
        {
            let needed = boundary.saturating_mul(self.interval_ms).saturating_sub(1);
            while postgres.committed().is_none_or(|c| c < needed) {
                if postgres.failed() || self.closed.load(Ordering::Acquire) {
                    return Err("PostgreSQL has not committed the epochs it covers".into());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let mut inner = lock(&self.inner);
        let recorded = if boundary == FINAL { FINAL - self.generation } else { boundary };
        let written_at = tradeflow_model::format_ts(wall_ms());
        inner.committed.push(Committed { boundary: recorded, written_at, parts });
        // Keep the checkpoints another process may still resume from.
        let boundaries: Vec<u64> = inner.committed.iter().map(|c| c.boundary).collect();
        let keeps = keeps(&boundaries, self.processes, self.interval_ms);
        inner.committed.retain(|c| keeps(c.boundary));
        let boundaries: Vec<u64> = inner.committed.iter().map(|c| c.boundary).collect();
        if releases_resumed(&boundaries, self.processes, self.interval_ms) {
            inner.resumed = None;
        }
        let manifest = Manifest {
            header: self.header.clone(),
            process: self.process,
            processes: self.processes,
            interval_ms: self.interval_ms,
            complete,
            generation: self.generation,
            from_start: self.resumed_at.is_none(),
            checkpoints: inner.resumed.iter().chain(&inner.committed).cloned().collect(),
        };
        // A complete run is never resumed: nothing but its manifest needs keeping (with
        // several processes, only once all are complete: another may not be yet).
        let everything = complete && self.processes == 1;
        let mut garbage = std::mem::take(&mut inner.litter);
        garbage.extend(if everything { self.everything(&mut inner) } else { self.garbage(&mut inner) });
        drop(inner);
        let bytes = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
        self.store.put(&format!("{}/manifest-p{}.json", self.prefix, self.process), bytes)?;
        if boundary != FINAL {
            self.durable.fetch_max(boundary.saturating_mul(self.interval_ms), Ordering::AcqRel);
        }
        // Superseded parts are litter, not state: a delete that fails (the store went down
        // after the manifest was written) ends the round, and the rest wait for the next
        // commit. Retrying each of them here, after an outage had held hundreds back, kept
        // a stopping run waiting for minutes.
        let mut garbage = garbage.into_iter();
        while let Some(key) = garbage.next() {
            if self.store.delete(&key).is_err() {
                let mut inner = lock(&self.inner);
                inner.litter.push(key);
                inner.litter.extend(garbage);
                break;
            }
        }
        Ok(())
    }

    /// Parts no kept checkpoint refers to: removed from memory, their keys returned.
    fn garbage(&self, inner: &mut Inner) -> Vec<String> {
        let listed: Vec<&Committed> = inner.resumed.iter().chain(&inner.committed).collect();
        let id = |p: &PartRef, first: u64| (p.component.clone(), p.worker, first);
        let kept: BTreeSet<(String, usize, u64)> =
            listed.iter().flat_map(|c| &c.parts).map(|p| id(p, p.first)).collect();
        let needed: BTreeSet<(String, usize, u64)> =
            listed.iter().flat_map(|c| &c.parts).flat_map(|p| p.needs.iter().map(move |f| id(p, *f))).collect();
        // This run's parts newer than its oldest kept checkpoint may serve a later one.
        let oldest = inner.committed.first().map_or(0, |c| c.boundary);
        let mut garbage = Vec::new();
        let mut collect = |part: &PartRef, recent: bool| {
            let me = id(part, part.first);
            if recent || kept.contains(&me) {
                return true;
            }
            garbage.push(self.key(part, "state"));
            if part.payload && !needed.contains(&me) {
                garbage.push(self.key(part, "payload"));
                return false;
            }
            part.payload
        };
        inner.inherited.retain(|p| collect(p, false));
        for parts in inner.parts.values_mut() {
            // Keep the newest part of each component: the next checkpoint may use it.
            let newest = parts.len().saturating_sub(1);
            let mut index = 0;
            parts.retain(|p| {
                index += 1;
                collect(p, index > newest || p.last >= oldest)
            });
        }
        garbage
    }

    /// Every part this process knows of (a complete run's): removed from memory, their
    /// keys returned.
    fn everything(&self, inner: &mut Inner) -> Vec<String> {
        let parts = inner.inherited.drain(..).chain(std::mem::take(&mut inner.parts).into_values().flatten());
        let parts: Vec<PartRef> = parts.collect();
        let mut keys = Vec::new();
        for part in &parts {
            keys.push(self.key(part, "state"));
            if part.payload {
                keys.push(self.key(part, "payload"));
            }
        }
        keys
    }

    /// Ends the run's checkpoints: with `commit_final`, writes the checkpoint of the end
    /// (every component's last part), `complete` when every input was read. Call once
    /// every worker is done, before the lake is finished.
    pub fn finish(&self, commit_final: bool, complete: bool) -> Result<(), String> {
        self.closed.store(true, Ordering::Release);
        self.wake.notify_all();
        if !commit_final {
            return Ok(());
        }
        let boundary = Self::complete_boundary(&lock(&self.inner));
        if boundary != Some(FINAL) {
            return Err("not every component saved its state at the end".into());
        }
        self.commit(FINAL, complete)
    }

    /// Calls `tell` with a message naming the store when a checkpoint cannot be written
    /// (e.g. to stop the run: its sources would otherwise wait for ever on checkpoints that
    /// no longer advance).
    pub fn on_failure(&self, tell: impl Fn(String) + Send + Sync + 'static) {
        let _ = self.failed.set(Box::new(tell));
    }

    /// The first error met writing a checkpoint, if any.
    pub fn error(&self) -> Option<String> {
        lock(&self.inner).error.clone()
    }
}

impl Checkpoints for JobCheckpoints {
    fn interval_ms(&self) -> u64 {
        self.interval_ms
    }

    fn restore(&self, component: &str, worker: usize) -> Option<Restored> {
        lock(&self.restored).remove(&(component.to_owned(), worker))
    }

    fn resumed_from(&self) -> Option<u64> {
        self.resumed_at
    }

    fn save(&self, component: &str, worker: usize, valid: Validity, part: Part) {
        let reference = PartRef {
            component: component.to_owned(),
            worker,
            first: valid.first,
            last: valid.last,
            payload: part.payload.is_some(),
            needs: part.needs,
        };
        self.store.publish(self.key(&reference, "state"), PartPayload::Bytes(part.state));
        if let Some(payload) = part.payload {
            self.store.publish(self.key(&reference, "payload"), payload);
        }
        lock(&self.inner).parts.entry((component.to_owned(), worker)).or_default().push(reference);
        self.wake.notify_all();
    }

    fn register(&self, component: &str, worker: usize) {
        lock(&self.inner).registered.insert((component.to_owned(), worker));
    }

    fn durable_through(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }
}

/// Whether a recorded boundary is the end of a run (`FINAL − generation`), not a time.
fn run_end(boundary: u64) -> bool {
    boundary > FINAL / 2
}

/// How many of its newest checkpoints a process's manifest keeps.
fn recent_kept(processes: usize) -> usize {
    if processes > 1 { 64 } else { 2 }
}

/// How far apart, in time, the commits of two processes of a job may be while a crash
/// still leaves them a checkpoint in common.
const COMMIT_SKEW_MS: u64 = 10_000;

/// Which of a process's committed `boundaries` its manifest keeps: the newest few
/// ([`recent_kept`]); with several processes also, over the [`COMMIT_SKEW_MS`] before
/// the newest, every boundary at a whole second. Each process
/// commits at its own pace (its uploads, its PostgreSQL writes), skipping the boundaries
/// it was too busy for, but every one commits each whole second it passes
/// ([`second_before`]), so a process up to that far behind another still shares one with
/// it: at the tests' 50 ms interval the 64 newest alone span 3.2 s. The ends of runs
/// (`FINAL − generation`) are always among the newest.
fn keeps(boundaries: &[u64], processes: usize, interval_ms: u64) -> impl Fn(u64) -> bool + use<> {
    let mut newest_first = boundaries.to_vec();
    newest_first.sort_unstable_by(|a, b| b.cmp(a));
    let oldest_recent = newest_first.get(recent_kept(processes) - 1).copied().unwrap_or(0);
    let interval = interval_ms.max(1);
    let newest = newest_first.into_iter().find(|b| !run_end(*b)).unwrap_or(0);
    let horizon = COMMIT_SKEW_MS / interval;
    move |b| {
        b >= oldest_recent || (processes > 1 && !run_end(b) && b + horizon >= newest && whole_second(b, interval) == b)
    }
}

/// The newest boundary at or before `boundary` that falls on a whole second (boundaries
/// are `interval_ms` apart), which [`keeps`] keeps for [`COMMIT_SKEW_MS`].
fn whole_second(boundary: u64, interval_ms: u64) -> u64 {
    let stride = (1_000 / interval_ms.max(1)).max(1);
    boundary - boundary % stride
}

/// The whole second to commit before `boundary`, the newest complete one, when the last
/// commit was `last`: with several processes, the one passed since, if `boundary` is not
/// it.
fn second_before(last: Option<u64>, boundary: u64, processes: usize, interval_ms: u64) -> Option<u64> {
    let second = whole_second(boundary, interval_ms);
    (processes > 1 && second != boundary && last.is_none_or(|last| last < second)).then_some(second)
}

/// Whether a run whose manifest keeps `boundaries` (its own commits, oldest first) no
/// longer needs the checkpoint it resumed from: once it keeps the newest few and, with
/// several processes, its commits span [`COMMIT_SKEW_MS`], so that a peer that has not
/// committed yet in this run can still resume with it from the checkpoint both resumed.
fn releases_resumed(boundaries: &[u64], processes: usize, interval_ms: u64) -> bool {
    let ordinary = || boundaries.iter().copied().filter(|b| !run_end(*b));
    let span = ordinary().max().zip(ordinary().min()).map_or(0, |(newest, oldest)| newest - oldest);
    boundaries.len() >= recent_kept(processes)
        // Kept commits reach back one per second: a span within a second of the skew is all of it.
        && (processes == 1 || span.saturating_mul(interval_ms.max(1)) + 1_000 >= COMMIT_SKEW_MS)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Direct reads, writes and deletes of objects under the lake root.
pub(crate) struct Objects {
    store: Arc<dyn ObjectStore>,
    root: Path,
    lake: String,
    retry_for: Duration,
}

impl Objects {
    pub(crate) fn new(lake: &Lake) -> Result<Objects, String> {
        let (store, root) = lake.destination().store().map_err(|e| e.to_string())?;
        let retry_for = lake.destination().retry_for();
        Ok(Objects { store, root, lake: lake.url().to_owned(), retry_for })
    }

    fn path(&self, key: &str) -> Path {
        let root = self.root.as_ref();
        Path::from(if root.is_empty() { key.to_owned() } else { format!("{root}/{key}") })
    }

    /// Retries transient failures for as long as the lake's uploads do.
    fn retry<T>(&self, what: &str, mut op: impl FnMut() -> object_store::Result<T>) -> Result<T, String> {
        let started = Instant::now();
        let mut delay = Duration::from_millis(100);
        loop {
            match op() {
                Ok(value) => return Ok(value),
                Err(e) if started.elapsed() < self.retry_for && !matches!(e, object_store::Error::NotFound { .. }) => {
                    tracing::warn!(
                        "{what} in {}: {}; retrying",
                        self.lake,
                        crate::lake::destination::redact(&e.to_string())
                    );
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    return Err(format!(
                        "{what} in {}: {}",
                        self.lake,
                        crate::lake::destination::redact(&e.to_string())
                    ));
                }
            }
        }
    }

    pub(crate) fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        let path = self.path(key);
        self.retry(&format!("reading {key}"), || {
            crate::lake::destination::io_runtime().block_on(async {
                match self.store.get(&path).await {
                    Ok(got) => got.bytes().await.map(|b| Some(b.to_vec())),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            })
        })
    }

    pub(crate) fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), String> {
        let path = self.path(key);
        let data = bytes::Bytes::from(bytes);
        self.retry(&format!("writing {key}"), || {
            crate::lake::destination::io_runtime()
                .block_on(self.store.put(&path, PutPayload::from(data.clone())))
                .map(|_| ())
        })
    }

    /// Deletes `key` (already gone is done), trying once: the object store's client
    /// retries a failed request a few times itself.
    pub(crate) fn delete(&self, key: &str) -> Result<(), String> {
        let path = self.path(key);
        match crate::lake::destination::io_runtime().block_on(self.store.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(crate::lake::destination::redact(&e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The boundaries a process has committed after committing `0..=newest` one by one.
    fn manifest(newest: u64, processes: usize, interval_ms: u64) -> Vec<u64> {
        let mut committed = Vec::new();
        for b in 0..=newest {
            committed.push(b);
            let keeps = keeps(&committed, processes, interval_ms);
            committed.retain(|b| keeps(*b));
        }
        committed
    }

    #[test]
    fn processes_committing_at_their_own_pace_share_the_whole_seconds() {
        // At 50 ms, each process finds a boundary complete every 7 boundaries, one from
        // boundary 3, the other from 5: their newest complete ones never coincide.
        let commits = |from: usize| {
            let mut committed: Vec<u64> = Vec::new();
            for boundary in (from as u64..400).step_by(7) {
                committed.extend(second_before(committed.last().copied(), boundary, 2, 50));
                committed.push(boundary);
            }
            committed
        };
        let kept = |c: &[u64]| {
            let keep = keeps(c, 2, 50);
            c.iter().copied().filter(|b| keep(*b)).collect::<Vec<u64>>()
        };
        let (one, other) = (kept(&commits(3)), kept(&commits(5)));
        let common: Vec<u64> = one.iter().copied().filter(|b| other.contains(b)).collect();
        assert_eq!(common, (60..=380).step_by(20).collect::<Vec<u64>>(), "{one:?} / {other:?}");
        // Without the whole seconds they would share nothing.
        let sparse = |from: u64| (from..400).step_by(7).collect::<Vec<u64>>();
        assert!(!sparse(3).iter().any(|b| sparse(5).contains(b)));
        // One process, or a boundary on a whole second, commits nothing more.
        assert_eq!(second_before(Some(10), 45, 1, 50), None);
        assert_eq!(second_before(Some(10), 40, 2, 50), None);
        assert_eq!(second_before(Some(40), 45, 2, 50), None);
        assert_eq!(second_before(Some(10), 45, 2, 50), Some(40));
    }

    #[test]
    fn two_processes_whose_commits_are_seconds_apart_still_share_a_checkpoint() {
        // 50 ms boundaries: one process 5 s (100 boundaries) ahead of the other.
        let ahead = manifest(1_000, 2, 50);
        let behind = manifest(900, 2, 50);
        let common = ahead.iter().rev().find(|b| behind.contains(b));
        assert!(common.is_some_and(|b| *b % 20 == 0 && *b <= 900), "{ahead:?} / {behind:?}");
        // The 64 newest alone would share nothing.
        assert!(ahead[ahead.len() - 64..].iter().all(|b| *b > 900));
        // Bounded: 64 newest plus one per second over 10 s.
        assert!(ahead.len() <= 64 + 11, "{}", ahead.len());
        // At the default 10 s interval, the newest 64 already span 640 s.
        assert_eq!(manifest(1_000, 2, 10_000).len(), 64);
    }

    #[test]
    fn the_checkpoint_a_run_resumed_from_is_kept_until_its_commits_span_the_skew() {
        // Two processes, 50 ms: 64 commits span 3.15 s, not enough for a peer that has not
        // committed yet in this run; 10 s of them are.
        assert!(!releases_resumed(&manifest(63, 2, 50), 2, 50));
        assert!(releases_resumed(&manifest(250, 2, 50), 2, 50));
        // At 10 s the 64 newest span far more; one process needs only its last two.
        assert!(releases_resumed(&manifest(63, 2, 10_000), 2, 10_000));
        assert!(releases_resumed(&manifest(1, 1, 50), 1, 50));
    }

    /// Process `process`'s manifest with checkpoints at `boundaries`.
    fn manifest_of(process: usize, from_start: bool, boundaries: &[u64]) -> Manifest {
        let header = JobHeader { job: "job".into(), settings: BTreeMap::new(), run_id: "run".into() };
        let checkpoint = |&boundary: &u64| Committed { boundary, written_at: String::new(), parts: Vec::new() };
        Manifest {
            header,
            process,
            processes: 2,
            interval_ms: 50,
            complete: false,
            generation: 0,
            from_start,
            checkpoints: boundaries.iter().map(checkpoint).collect(),
        }
    }

    #[test]
    fn processes_start_from_their_newest_common_checkpoint_or_from_the_beginning() {
        let two = |one: &[u64], other: &[u64], from_start: bool| {
            Start::of(&[manifest_of(0, from_start, one), manifest_of(1, from_start, other)], 2)
        };
        assert_eq!(two(&[20, 40, 43], &[20, 40, 41], false), Start::At(40));
        assert!(matches!(two(&[20, 40], &[], false), Start::Beginning(_)));
        assert!(matches!(Start::of(&[manifest_of(0, false, &[20])], 2), Start::Beginning(_)));
        // Killed before they both passed a whole second: the first run of a job has only
        // its sources' beginning to go back to. A resumed one had a checkpoint in common,
        // and starting over could rewrite the lake with less.
        assert!(matches!(two(&[3, 5], &[4, 6], true), Start::Beginning(_)));
        assert_eq!(two(&[3, 5], &[4, 6], false), Start::Disjoint);
        // A manifest written before `from_start` existed reads as resumed.
        let old: Manifest = serde_json::from_value(serde_json::json!({
            "header": {"job": "job", "settings": {}, "run_id": "run"},
            "process": 0, "processes": 2, "interval_ms": 50, "complete": false, "checkpoints": []
        }))
        .expect("an older manifest reads");
        assert!(!old.from_start);
    }

    #[test]
    fn one_process_keeps_its_last_two_and_the_end_of_a_run_is_kept() {
        assert_eq!(manifest(100, 1, 50), vec![99, 100]);
        let mut committed = manifest(100, 2, 50);
        committed.push(FINAL - 1);
        assert!(keeps(&committed, 2, 50)(FINAL - 1));
    }
}
