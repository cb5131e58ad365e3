//! `file://` sources: one NDJSON file, or a directory of them read in name order.
//!
//! Background: a file is one partition, and lateness is decided record by record in
//! file order against `max ts so far − lateness`. Parsing, which dominates the cost, is
//! spread over all workers by chunks ([`plan`]); the decision is then made by the worker
//! holding the chunk once it knows the greatest ts of every earlier chunk of the file —
//! a prefix maximum, combined from per-chunk maxima that every worker broadcasts. The
//! accepted trades, and so every result, are exactly those of one sequential reader.
//!
//! Two stages per worker: [`ChunkReader`] parses this worker's chunks (a bounded number
//! ahead) and emits each chunk's maximum, and [`sequence`] decides lateness in order and
//! emits [`Batch`]es. A worker's watermark report is the least ts it may still accept:
//! for each file it still has chunks of, the largest known maximum before its next chunk
//! (or the file's first trade) minus the lateness.
//!
//! Checkpoints: the cut at a boundary is the set of chunks parsed before it (each
//! chunk's batch carries the epoch it was parsed at). A worker's part records the next
//! chunk it would parse and the maxima of the chunks it parsed; a resumed worker
//! broadcasts those maxima again, so every sequencer knows the prefixes it decides
//! against, and parses on from its next chunk. A part also names the input's files and
//! sizes: a checkpoint of other input is refused.
//!
//! A checkpointed run stopped by Ctrl-C must not leave a chunk parsed but undecidable
//! (waiting for an earlier chunk nobody parsed): the cut of every boundary crossed since
//! its parsing includes it. So a stopped worker broadcasts a stop marker, and keeps
//! parsing its own chunks below the highest chunk any worker had parsed; once it has
//! every worker's marker and has reached that horizon, everything parsed is decidable,
//! it ends without ending its watermark, and its last part records where it stopped.

pub mod chunk;
pub mod plan;

use crate::batch::{Batch, wall_ms};
use crate::driver::{Poll, Reader, checkpointed_source};
use chunk::{ParsedChunk, late_reject, parse_chunk, recycle};
use plan::{FilePlan, FileSourceError};
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::core::OkErr;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::{Capability, CapabilitySet};
use timely::dataflow::{Scope, StreamVec};
use tradeflow_model::checkpoint::Saver;
use tradeflow_model::metrics::Counter;
use tradeflow_model::{Payload, Reject, RejectReason, Time};

/// Default chunk size: 4 MiB, about 58 000 trades.
pub const DEFAULT_CHUNK_BYTES: u64 = 4 << 20;
/// Parsed chunks a worker may hold ahead of the lateness decision.
const MAX_PENDING: usize = 4;

/// The greatest valid ts of one chunk, broadcast to every worker; or, with `stopped`,
/// worker `chunk`'s marker that it stopped reading (see the module docs).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkSummary {
    /// Global chunk index (with `stopped`: the worker's index).
    pub chunk: usize,
    /// Greatest ts of its valid trades.
    pub max_ts: Option<i64>,
    /// A worker's stop marker rather than a chunk's maximum.
    pub stopped: bool,
}

impl ChunkSummary {
    fn of(chunk: usize, max_ts: Option<i64>) -> ChunkSummary {
        ChunkSummary { chunk, max_ts, stopped: false }
    }
}

/// What a worker's sequencer has learnt that its reader needs to stop cleanly.
#[derive(Default)]
struct StopState {
    /// The workers whose stop markers arrived (this one included).
    markers: std::collections::BTreeSet<usize>,
    /// One past the highest chunk any worker parsed.
    horizon: usize,
}

/// What the parsing stage emits.
#[derive(Debug)]
pub enum FileEvent {
    /// A chunk's maximum, for everyone.
    Summary(ChunkSummary),
    /// A parsed chunk, for this worker's sequencer.
    Chunk(Box<ParsedChunk>),
    /// A chunk that could not be read.
    Failed(Box<Reject>),
    /// This worker has parsed all its chunks.
    Finished,
    /// This worker stopped reading in a checkpointed run (Ctrl-C), every chunk it parsed
    /// being decidable: its watermark does not end.
    Suspended,
}

impl crate::driver::Records for FileEvent {
    fn records(&self) -> usize {
        match self {
            FileEvent::Chunk(chunk) => chunk.trades.len() + chunk.rejects.len(),
            _ => 0,
        }
    }
}

/// Parses this worker's chunks in order, at most [`MAX_PENDING`] ahead of the sequencer.
pub struct ChunkReader {
    plan: Rc<FilePlan>,
    /// This worker's first chunk (its index).
    first: usize,
    next: usize,
    peers: usize,
    pending: Rc<Cell<usize>>,
    finished: bool,
    stop: Arc<AtomicBool>,
    /// `tradeflow_file_bytes_read_total`: what the progress bar measures.
    bytes_read: Counter,
    /// Checkpointed runs: the maximum of every chunk this worker parsed, by chunk.
    maxima: Vec<(usize, Option<i64>)>,
    /// A resumed worker's maxima to broadcast again before reading on.
    replay: Vec<(usize, Option<i64>)>,
    /// Whether this worker's stop marker is sent.
    marked: bool,
    /// Shared with this worker's sequencer.
    stopping: Rc<std::cell::RefCell<StopState>>,
    /// Checkpointed runs: the pipeline's end, and how far (ms) it may lag before this
    /// reader waits, when no other worker waits for its chunks.
    backlog: Option<crate::driver::Backlog>,
}

/// What a checkpoint records of a [`ChunkReader`].
#[derive(Serialize, Deserialize)]
struct ReaderState {
    /// The input: each file's path and size.
    files: Vec<(String, u64)>,
    next: usize,
    maxima: Vec<(usize, Option<i64>)>,
}

impl ChunkReader {
    /// This worker's index: its first chunk.
    fn index(&self) -> usize {
        self.first
    }

    fn files(&self) -> Vec<(String, u64)> {
        self.plan.files.iter().map(|f| (f.path.display().to_string(), f.size)).collect()
    }

    /// Continues from a checkpoint's part; refuses one taken of other input.
    pub fn restore(&mut self, state: &[u8]) -> Result<(), FileSourceError> {
        let state: ReaderState =
            tradeflow_model::checkpoint::from_json("the file source", state).map_err(FileSourceError::Checkpoint)?;
        if state.files != self.files() {
            return Err(FileSourceError::InputChanged { then: state.files, now: self.files() });
        }
        self.next = state.next;
        self.replay = state.maxima.clone();
        self.maxima = state.maxima;
        Ok(())
    }
}

/// The process's count of bytes parsed from `file://` sources (`tradeflow_file_bytes_read_total`).
pub fn bytes_read() -> Counter {
    tradeflow_model::metrics::registry().counter(
        "tradeflow_file_bytes_read_total",
        "Bytes of file:// sources parsed by this process.",
        &[],
    )
}

impl Reader for ChunkReader {
    type Item = FileEvent;

    fn snapshot(&self) -> Vec<u8> {
        let state = ReaderState { files: self.files(), next: self.next, maxima: self.maxima.clone() };
        tradeflow_model::checkpoint::to_json(&state)
    }

    fn read(&mut self, out: &mut Vec<FileEvent>) -> Poll {
        if self.finished {
            return Poll::Done;
        }
        for (chunk, max_ts) in self.replay.drain(..) {
            out.push(FileEvent::Summary(ChunkSummary::of(chunk, max_ts)));
        }
        let suspending = self.stop.load(Ordering::Relaxed) && crate::batch::suspends_on_stop();
        if suspending {
            if !self.marked {
                self.marked = true;
                out.push(FileEvent::Summary(ChunkSummary { chunk: self.index(), max_ts: None, stopped: true }));
            }
            let (markers, horizon) = {
                let state = self.stopping.borrow();
                (state.markers.len(), state.horizon)
            };
            if self.next >= horizon.min(self.plan.chunks()) {
                if markers < self.peers {
                    // Another worker may still report a chunk beyond the horizon.
                    return Poll::Wait(std::time::Duration::from_millis(1));
                }
                self.finished = true;
                out.push(FileEvent::Suspended);
                return Poll::Done;
            }
            // Below the horizon: parse on, so that every chunk parsed can be decided.
        } else if self.stop.load(Ordering::Relaxed) {
            // Stopped early: release everyone waiting on this worker's chunks.
            while self.next < self.plan.chunks() {
                out.push(FileEvent::Summary(ChunkSummary::of(self.next, None)));
                self.next += self.peers;
            }
            self.finished = true;
            out.push(FileEvent::Finished);
            return Poll::Done;
        }
        if self.pending.get() >= MAX_PENDING {
            return Poll::Wait(std::time::Duration::from_millis(1));
        }
        // Back-pressure, so that checkpoints follow the input closely: wait while the
        // pipeline lags, unless another worker has parsed beyond this one's next chunk
        // (its chunks then wait for this one's: it must go on).
        if let Some(backlog) = &self.backlog
            && self.next >= self.stopping.borrow().horizon
            && backlog.holds(crate::driver::epoch_now())
        {
            return Poll::Wait(std::time::Duration::from_millis(1));
        }
        if self.next >= self.plan.chunks() {
            self.finished = true;
            // A worker that read everything counts as stopped for the others' stop.
            if !self.marked {
                self.marked = true;
                out.push(FileEvent::Summary(ChunkSummary { chunk: self.index(), max_ts: None, stopped: true }));
            }
            out.push(FileEvent::Finished);
            return Poll::Done;
        }
        let chunk = self.plan.chunk(self.next);
        self.next += self.peers;
        self.bytes_read.add(chunk.end - chunk.start);
        match parse_chunk(&self.plan, chunk) {
            Ok(parsed) => {
                self.maxima.push((chunk.global, parsed.max_ts));
                out.push(FileEvent::Summary(ChunkSummary::of(chunk.global, parsed.max_ts)));
                out.push(FileEvent::Chunk(Box::new(parsed)));
            }
            Err(e) => {
                let label = &self.plan.files[chunk.file].label;
                // Input that cannot be read is lost: the run must not end as if it were
                // complete (it stops, keeps what it has, and exits non-zero).
                crate::batch::report_failure(format!(
                    "{label}: reading bytes {}..{} failed: {e}; the file changed or became unreadable while the run read it",
                    chunk.start, chunk.end
                ));
                self.maxima.push((chunk.global, None));
                out.push(FileEvent::Summary(ChunkSummary::of(chunk.global, None)));
                out.push(FileEvent::Failed(Box::new(Reject {
                    reason: RejectReason::InvalidJson,
                    detail: format!("bytes {}..{} could not be read: {e}", chunk.start, chunk.end),
                    payload: Payload::default(),
                    source: label.clone(),
                    position: chunk.start,
                    element: 0,
                    segment: chunk.start,
                    received_at: wall_ms(),
                })));
            }
        }
        self.pending.set(self.pending.get() + 1);
        Poll::Ready
    }
}

/// A `file://` source on this worker: batches of accepted trades and rejects, with
/// watermark reports, identical in content to a sequential read of the files.
/// Setting `stop` ends the source early (Ctrl-C).
///
/// In a checkpointed run (`saver`), the reader's part is saved at each boundary and
/// restored from a resumed checkpoint, and it waits while the pipeline lags by more than
/// `backlog` allows, unless another worker's chunks wait for its own.
pub fn file_source<'scope>(
    scope: Scope<'scope, Time>,
    plan: FilePlan,
    lateness_ms: i64,
    stop: Arc<AtomicBool>,
    saver: Option<Saver>,
    backlog: Option<crate::driver::Backlog>,
) -> Result<StreamVec<'scope, Time, Batch>, FileSourceError> {
    let (index, peers) = (scope.index(), scope.peers());
    let plan = Rc::new(plan);
    let pending = Rc::new(Cell::new(0));
    let stopping = Rc::new(std::cell::RefCell::new(StopState::default()));
    // The reader holds itself back (see `ChunkReader::read`); the driver only bounds the
    // epochs of its backlog by the same lag.
    let epochs = backlog.as_ref().map(crate::driver::Backlog::epochs_only);
    let mut reader = ChunkReader {
        plan: plan.clone(),
        first: index,
        next: index,
        peers,
        pending: pending.clone(),
        finished: false,
        stop,
        bytes_read: bytes_read(),
        maxima: Vec::new(),
        replay: Vec::new(),
        marked: false,
        stopping: stopping.clone(),
        backlog,
    };
    if let Some(restored) = saver.as_ref().and_then(Saver::restore) {
        reader.restore(&restored.state)?;
    }
    let events = checkpointed_source(scope, "FileChunks", reader, saver, epochs);
    let (summaries, local) = events.ok_err(|e| match e {
        FileEvent::Summary(s) => Ok(s),
        other => Err(other),
    });
    Ok(sequence(local, summaries.broadcast(), plan, lateness_ms, peers, pending, stopping))
}

/// Decides lateness chunk by chunk in file order (see the module documentation).
fn sequence<'scope>(
    local: StreamVec<'scope, Time, FileEvent>,
    summaries: StreamVec<'scope, Time, ChunkSummary>,
    plan: Rc<FilePlan>,
    lateness_ms: i64,
    peers: usize,
    pending_count: Rc<Cell<usize>>,
    stopping: Rc<std::cell::RefCell<StopState>>,
) -> StreamVec<'scope, Time, Batch> {
    local.binary(summaries, Pipeline, Pipeline, "FileSequence", move |_, _| {
        let mut known: Vec<Option<Option<i64>>> = vec![None; plan.chunks()];
        let mut pending: VecDeque<(Capability<Time>, Box<ParsedChunk>)> = VecDeque::new();
        let mut finished: Option<Capability<Time>> = None;
        let mut suspended: Option<Capability<Time>> = None;
        let mut failed: BTreeMap<Time, (CapabilitySet<Time>, Vec<Reject>)> = BTreeMap::new();
        let mut reported = i64::MIN;
        move |local_in, summaries_in, output| {
            summaries_in.for_each(|_, batch| {
                let mut state = stopping.borrow_mut();
                for s in batch.drain(..) {
                    if s.stopped {
                        state.markers.insert(s.chunk);
                    } else if let Some(slot) = known.get_mut(s.chunk) {
                        *slot = Some(s.max_ts);
                        state.horizon = state.horizon.max(s.chunk + 1);
                    }
                }
            });
            local_in.for_each(|cap, batch| {
                for event in batch.drain(..) {
                    match event {
                        FileEvent::Chunk(chunk) => {
                            pending.push_back((cap.retain_least(0).expect("total order"), chunk))
                        }
                        FileEvent::Finished => finished = cap.retain_least(0),
                        FileEvent::Suspended => suspended = cap.retain_least(0),
                        FileEvent::Failed(reject) => {
                            pending_count.set(pending_count.get() - 1);
                            let time = *cap.least().expect("total order");
                            let slot = failed.entry(time).or_insert_with(|| (CapabilitySet::new(), Vec::new()));
                            slot.0.insert(cap.retain_least(0).expect("total order"));
                            slot.1.push(*reject);
                        }
                        FileEvent::Summary(_) => {}
                    }
                }
            });
            for (time, (caps, rejects)) in std::mem::take(&mut failed) {
                let cap = caps.delayed(&time);
                output.session(&cap).give(Batch { rejects, ..Batch::default() });
            }
            // Decide every pending chunk whose predecessors in the file are all known.
            while let Some((_, chunk)) = pending.front() {
                let file = &plan.files[chunk.chunk.file];
                let earlier = file.first_chunk..chunk.chunk.global;
                if known[earlier.clone()].iter().any(|k| k.is_none()) {
                    break;
                }
                let prefix = known[earlier].iter().filter_map(|k| k.flatten()).max();
                let label = &file.label;
                let (cap, chunk) = pending.pop_front().expect("front exists");
                let global = chunk.chunk.global;
                let mut batch = decide(*chunk, label, prefix, lateness_ms);
                pending_count.set(pending_count.get() - 1);
                // The next chunk this worker has not yet emitted.
                let next_own = global + peers;
                let low = low_bound(&plan, &known, next_own, peers, lateness_ms);
                if low > reported {
                    reported = low;
                    batch.low = Some(low);
                }
                output.session(&cap).give(batch);
            }
            if pending.is_empty()
                && let Some(cap) = finished.take()
            {
                output.session(&cap).give(Batch::end());
            }
            // Stopped in a checkpointed run: everything parsed decided, the worker ends
            // without ending its watermark, for a resumed run to go on.
            if pending.is_empty() && suspended.is_some() {
                suspended = None;
            }
        }
    })
}

/// Applies the lateness decision to a chunk whose file prefix maximum is `prefix`.
fn decide(chunk: ParsedChunk, label: &str, prefix: Option<i64>, lateness_ms: i64) -> Batch {
    let mut clock = crate::lateness::PartitionClock::new(lateness_ms);
    if let Some(max) = prefix {
        clock.observe(max);
    }
    let segment = chunk.chunk.start;
    let ParsedChunk { bytes, mut trades, origins, mut rejects, .. } = chunk;
    // Usually nothing is late: decide in place and move the whole vector on.
    let mut index = 0;
    trades.retain(|trade| {
        let origin = &origins[index];
        index += 1;
        let watermark = clock.watermark();
        let on_time = clock.admit(trade.ts);
        if !on_time {
            rejects.push(late_reject(&bytes, label, segment, trade, origin, watermark, lateness_ms));
        }
        on_time
    });
    recycle(bytes, origins);
    Batch { trades, rejects, ..Batch::default() }
}

/// The least ts this worker may still accept: over files where it has chunks from
/// `next_own` on, the greatest known maximum before that chunk (or the file's first
/// trade) minus the lateness; `i64::MAX` if it has none left.
fn low_bound(plan: &FilePlan, known: &[Option<Option<i64>>], next_own: usize, peers: usize, lateness_ms: i64) -> i64 {
    let mut low = i64::MAX;
    for file in &plan.files {
        let end = file.first_chunk + file.chunks;
        // This worker's first remaining chunk inside this file.
        let first = if next_own >= file.first_chunk {
            next_own
        } else {
            let behind = file.first_chunk - next_own;
            next_own + behind.div_ceil(peers) * peers
        };
        if first >= end {
            continue;
        }
        let known_max = known[file.first_chunk..first].iter().filter_map(|k| k.flatten()).max();
        let floor = match known_max {
            Some(m) => m.max(file.first_ts),
            None => file.first_ts,
        };
        if floor == i64::MAX {
            continue; // no valid trade in this file
        }
        low = low.min(floor.saturating_sub(lateness_ms));
    }
    low
}

/// Files are read once to their end; a checkpoint resumes them when asked for.
impl crate::source::Source for FilePlan {
    fn bounded(&self) -> bool {
        true
    }
    fn resumable(&self, asked: bool) -> bool {
        asked
    }
    fn extent(&self, workers: std::ops::Range<usize>, peers: usize, _processes: usize) -> crate::source::Extent {
        crate::source::Extent::Bytes(workers.flat_map(|w| self.owned(w, peers)).map(|c| c.end - c.start).sum())
    }
    fn build<'scope>(
        &self,
        scope: Scope<'scope, Time>,
        context: &crate::source::Context,
    ) -> crate::source::Built<'scope> {
        let c = context;
        file_source(scope, self.clone(), c.lateness_ms, c.stop.clone(), (c.saver)(), c.backlog.clone())
            .map_err(|e| crate::source::SourceError::Restore(Box::new(e)))
    }
}
