//! `lake:///abs/dir` and `lake+s3://bucket/prefix` sources: replaying the lake's trades.
//!
//! Background: the lake's `trades` dataset holds every accepted trade exactly once, one
//! file per symbol and UTC hour (or several for a busy hour), each sorted by time; or, in
//! the by-hour layout (`hour=HH` instead of `symbol=S`), files of an hour's trades of
//! every symbol, sorted by symbol, with a `symbol` column. A batch's order does not
//! matter: nothing a replay reads is judged late, since each file's trades are at or
//! after its hour, which the previous file's watermark report did not pass. A
//! replay lists the files, gives them to workers round-robin in (hour, symbol, index)
//! order, and reads each worker's files hour by hour. Each file is a partition; being
//! sorted, none of its trades is late, so the replay accepts exactly the trades the
//! original run accepted and its final results are the original's. A worker's watermark
//! report is the hour of its next file (nothing it reads later is earlier). Optional
//! `from`/`to` bounds (RFC 3339 or ms) keep the trades with `from <= ts < to`.
//!
//! Progress: each worker adds the bytes of the files it will read to
//! `tradeflow_lake_replay_bytes` as it starts reading, and each file's bytes to
//! `tradeflow_lake_replay_read_bytes_total` once read, so a replay's progress bar knows
//! its total up front and has an ETA ([`replay_progress`]).

use crate::batch::{Batch, report_failure, wall_ms};
use crate::driver::{Poll, Reader};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tradeflow_lake::Destination;
use tradeflow_lake::parquet::trades_from_batch;
use tradeflow_lake::paths::{TradesFile, parse_trades_key};
use tradeflow_model::metrics::{Counter, Gauge, registry};
use tradeflow_model::{Reject, RejectReason, Symbol};

/// How long an unreachable lake is retried before the replay fails.
const RETRY_FOR: Duration = Duration::from_secs(120);

/// Why a lake replay cannot start or go on.
#[derive(Debug, thiserror::Error)]
pub enum LakeSourceError {
    /// The lake's URL or store is not usable.
    #[error(transparent)]
    Lake(#[from] tradeflow_lake::LakeError),
    /// The runtime that talks to the store could not be started.
    #[error(transparent)]
    Runtime(std::io::Error),
    /// The trades dataset could not be listed.
    #[error("listing {root}: {source}")]
    List {
        /// The dataset's root in the store.
        root: Path,
        /// The store's error.
        source: object_store::Error,
    },
    /// A checkpoint's state of the replay cannot be decoded.
    #[error("{0}")]
    Checkpoint(String),
    /// The trades files differ from those of the checkpoint being resumed.
    #[error(
        "{label}: the lake's trades changed since the checkpoint (then {then}, now {now}); resume with the same lake and range, or start again with --from-scratch"
    )]
    ListingChanged {
        /// The lake.
        label: String,
        /// The checkpoint's listing: files, bytes and a hash.
        then: String,
        /// The listing now.
        now: String,
    },
    /// A file is not Parquet.
    #[error(transparent)]
    Parquet(#[from] parquet::errors::ParquetError),
    /// A record batch of a file could not be decoded.
    #[error(transparent)]
    Arrow(#[from] arrow_schema::ArrowError),
    /// A record batch does not hold trades as the lake writes them.
    #[error("{0}")]
    NotTrades(String),
}

/// Why a file could not be read.
enum Fetch {
    /// The store could not be reached or refused (after retrying): the run fails.
    Unreachable(String),
    /// The file is not a trades file as the lake writes them: it is dead-lettered.
    Corrupt(String),
}

/// How far this process's lake replays have come: what their progress bar measures.
#[derive(Clone, Debug)]
pub struct ReplayProgress {
    /// `tradeflow_lake_replay_bytes`: bytes of the trades files this process's replays
    /// read in all (known once every worker has started reading, as the run starts).
    pub total: Gauge,
    /// `tradeflow_lake_replay_read_bytes_total`: bytes of those files read so far.
    pub read: Counter,
}

/// The process's [`ReplayProgress`] (series in the process-wide registry).
pub fn replay_progress() -> ReplayProgress {
    let r = registry();
    ReplayProgress {
        total: r.gauge(
            "tradeflow_lake_replay_bytes",
            "Bytes of lake trades files this process's lake:// replays read in all.",
            &[],
        ),
        read: r.counter(
            "tradeflow_lake_replay_read_bytes_total",
            "Bytes of lake trades files read so far by this process's lake:// replays.",
            &[],
        ),
    }
}

/// Reads this worker's share of a lake's trades.
pub struct LakeReader {
    /// The plan's fingerprint, recorded in checkpoints.
    listing: String,
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    label: String,
    /// This worker's files, in reading order, with their sizes in bytes.
    files: Vec<(TradesFile, u64)>,
    progress: ReplayProgress,
    /// True once this reader's bytes are in `progress.total` (added when it starts
    /// reading).
    counted: bool,
    next: usize,
    from: i64,
    to: i64,
    runtime: tokio::runtime::Runtime,
    stop: Arc<AtomicBool>,
    done: bool,
}

/// A lake replay resolved once, at start: the trades files of `[from, to)` in reading
/// order (hour, symbol, part), with their sizes. Every worker reads its share of this one
/// listing, so they agree on the files even if the lake changes while the run starts.
#[derive(Debug)]
pub struct LakePlan {
    lake: String,
    from: i64,
    to: i64,
    files: Vec<(TradesFile, u64)>,
}

impl LakePlan {
    /// Lists the trades of the lake at `lake` (a `--lake` style URL) that may hold trades
    /// of `[from, to)`.
    pub fn list(lake: &str, from: Option<i64>, to: Option<i64>) -> Result<LakePlan, LakeSourceError> {
        let runtime = runtime()?;
        let destination = Destination::open_for_reading(lake)?;
        let (store, prefix) = destination.store()?;
        let (from, to) = (from.unwrap_or(i64::MIN), to.unwrap_or(i64::MAX));
        let mut files = list_trades(&runtime, &*store, &prefix)?;
        files.retain(|(f, _)| f.hour + 3_600_000 > from && f.hour < to);
        files.sort_by(|(a, _), (b, _)| (a.hour, &a.symbol, a.index).cmp(&(b.hour, &b.symbol, b.index)));
        Ok(LakePlan { lake: lake.to_owned(), from, to, files })
    }

    /// Number of files the replay reads.
    pub fn files(&self) -> usize {
        self.files.len()
    }
}

/// What a checkpoint records of a [`LakeReader`]: which of its files it has read, and
/// what the whole listing was (a resumed run must list the same files).
#[derive(serde::Serialize, serde::Deserialize)]
struct ReaderState {
    listing: String,
    next: usize,
}

impl LakePlan {
    /// A short fingerprint of the listing: the number of files, their bytes, and a hash
    /// of their keys and sizes.
    fn fingerprint(&self) -> String {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for (file, size) in &self.files {
            for byte in file.key.bytes().chain(size.to_le_bytes()) {
                hash = (hash ^ byte as u64).wrapping_mul(0x0100_0000_01b3);
            }
        }
        let bytes: u64 = self.files.iter().map(|(_, size)| size).sum();
        format!("{} files, {bytes} bytes, {hash:016x}", self.files.len())
    }
}

impl LakeReader {
    /// Continues from a checkpoint's part; refuses one taken of another listing.
    pub fn restore(&mut self, state: &[u8]) -> Result<(), LakeSourceError> {
        let state: ReaderState =
            tradeflow_model::checkpoint::from_json("the lake replay", state).map_err(LakeSourceError::Checkpoint)?;
        if state.listing != self.listing {
            return Err(LakeSourceError::ListingChanged {
                label: self.label.clone(),
                then: state.listing,
                now: self.listing.clone(),
            });
        }
        self.next = state.next.min(self.files.len());
        Ok(())
    }

    /// The reader of worker `index` of `peers`: every `peers`-th file of `plan`.
    pub fn open(
        plan: &LakePlan,
        index: usize,
        peers: usize,
        stop: Arc<AtomicBool>,
    ) -> Result<LakeReader, LakeSourceError> {
        let runtime = runtime()?;
        let destination = Destination::open_for_reading(&plan.lake)?;
        let (store, prefix) = destination.store()?;
        let files = plan.files.iter().enumerate().filter(|(i, _)| i % peers.max(1) == index).map(|(_, f)| f.clone());
        Ok(LakeReader {
            listing: plan.fingerprint(),
            store,
            prefix,
            label: format!("lake+{}", destination.display()),
            files: files.collect(),
            progress: replay_progress(),
            counted: false,
            next: 0,
            from: plan.from,
            to: plan.to,
            runtime,
            stop,
            done: false,
        })
    }

    /// Fetches a file, retrying transient failures for up to [`RETRY_FOR`].
    fn fetch(&self, file: &TradesFile) -> Result<bytes::Bytes, Fetch> {
        let path = Path::parse(format!("{}/{}", self.prefix, file.key).trim_start_matches('/'))
            .map_err(|e| Fetch::Corrupt(e.to_string()))?;
        let started = Instant::now();
        let mut delay = Duration::from_millis(200);
        loop {
            match self.runtime.block_on(async { self.store.get(&path).await?.bytes().await }) {
                Ok(bytes) => return Ok(bytes),
                Err(
                    e @ (object_store::Error::NotFound { .. }
                    | object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. }),
                ) => {
                    return Err(Fetch::Unreachable(e.to_string()));
                }
                Err(e) if started.elapsed() >= RETRY_FOR => {
                    return Err(Fetch::Unreachable(format!("{e} (retried for {RETRY_FOR:?})")));
                }
                Err(e) => {
                    tracing::warn!("{}/{}: {e}; retrying in {delay:?}", self.label, file.key);
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    fn read_file(&self, file: &TradesFile, batch: &mut Batch) -> Result<(), Fetch> {
        // By-hour files (no symbol partition) have a symbol column.
        let symbol = match &file.symbol {
            Some(symbol) => {
                Some(Symbol::parse(symbol).map_err(|e| Fetch::Corrupt(format!("partition symbol {symbol:?}: {e}")))?)
            }
            None => None,
        };
        let bytes = self.fetch(file)?;
        self.decode(bytes, symbol.as_ref(), batch).map_err(|e| Fetch::Corrupt(e.to_string()))
    }

    fn decode(&self, bytes: bytes::Bytes, symbol: Option<&Symbol>, batch: &mut Batch) -> Result<(), LakeSourceError> {
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).and_then(|b| b.build())?;
        for record_batch in reader {
            let trades = trades_from_batch(&record_batch?, symbol).map_err(LakeSourceError::NotTrades)?;
            batch.trades.extend(trades.into_iter().filter(|t| t.ts >= self.from && t.ts < self.to));
        }
        Ok(())
    }
}

/// The runtime a replay talks to its store with.
fn runtime() -> Result<tokio::runtime::Runtime, LakeSourceError> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(LakeSourceError::Runtime)
}

/// The trades files under `prefix`, with their sizes in bytes.
fn list_trades(
    runtime: &tokio::runtime::Runtime,
    store: &dyn ObjectStore,
    prefix: &Path,
) -> Result<Vec<(TradesFile, u64)>, LakeSourceError> {
    let root = if prefix.as_ref().is_empty() { Path::from("trades") } else { prefix.clone().join("trades") };
    let listed = runtime.block_on(store.list(Some(&root)).try_collect());
    let objects: Vec<_> = listed.map_err(|source| LakeSourceError::List { root, source })?;
    let strip = if prefix.as_ref().is_empty() { String::new() } else { format!("{prefix}/") };
    Ok(objects
        .iter()
        .filter_map(|o| Some((parse_trades_key(o.location.as_ref().strip_prefix(&strip)?)?, o.size)))
        .collect())
}

impl Reader for LakeReader {
    type Item = Batch;

    fn snapshot(&self) -> Vec<u8> {
        tradeflow_model::checkpoint::to_json(&ReaderState { listing: self.listing.clone(), next: self.next })
    }

    fn read(&mut self, out: &mut Vec<Batch>) -> Poll {
        if self.done {
            return Poll::Done;
        }
        if !self.counted {
            self.counted = true;
            self.progress.total.add(self.files.iter().map(|(_, size)| *size as f64).sum());
        }
        let stopped = self.stop.load(Ordering::Relaxed);
        if stopped || self.next >= self.files.len() {
            self.done = true;
            // A checkpointed run's stop leaves the watermark where it is, for a resume.
            out.push(Batch::last(stopped && self.next < self.files.len()));
            return Poll::Done;
        }
        let (file, size) = self.files[self.next].clone();
        self.next += 1;
        let mut batch = Batch::default();
        let result = self.read_file(&file, &mut batch);
        self.progress.read.add(size);
        match result {
            Ok(()) => {}
            Err(Fetch::Unreachable(e)) => {
                // Not bad input: the lake could not be read. The run must not pretend it replayed it.
                report_failure(format!("{}/{}: could not be read: {e}", self.label, file.key));
                self.stop.store(true, Ordering::Relaxed);
                self.done = true;
                out.push(Batch::end());
                return Poll::Done;
            }
            Err(Fetch::Corrupt(e)) => {
                tracing::error!("{}/{}: {e}", self.label, file.key);
                batch.trades.clear();
                batch.rejects.push(Reject {
                    reason: RejectReason::InvalidJson,
                    detail: format!("unreadable lake file: {e}"),
                    payload: file.key.clone().into(),
                    source: self.label.clone(),
                    position: self.next as u64 - 1,
                    element: 0,
                    segment: self.next as u64 - 1,
                    received_at: wall_ms(),
                });
            }
        }
        // Everything still to come is in later files, whose hours are no earlier.
        batch.low = Some(self.files.get(self.next).map_or(i64::MAX, |(f, _)| f.hour.max(self.from)));
        out.push(batch);
        Poll::Ready
    }
}

/// A lake's trades replayed (`lake` is its `--lake` style URL), its files listed once at
/// start; resumable from each worker's next file when asked for.
#[derive(Debug)]
pub struct LakeSource {
    /// The lake.
    pub lake: String,
    /// Its trades files in `[from, to)`.
    pub plan: Arc<LakePlan>,
}

impl crate::source::Source for LakeSource {
    fn bounded(&self) -> bool {
        true
    }
    fn resumable(&self, asked: bool) -> bool {
        asked
    }
    fn extent(&self, _workers: std::ops::Range<usize>, _peers: usize, _processes: usize) -> crate::source::Extent {
        crate::source::Extent::LakeBytes
    }
    fn build<'scope>(
        &self,
        scope: timely::dataflow::Scope<'scope, tradeflow_model::Time>,
        context: &crate::source::Context,
    ) -> crate::source::Built<'scope> {
        use crate::driver::{Finished, polled_source};
        let c = context;
        match LakeReader::open(&self.plan, scope.index(), scope.peers(), c.stop.clone()) {
            Ok(reader) => c.checkpointed(scope, "LakeReplay", reader, LakeReader::restore, c.backlog.clone()),
            Err(e) => {
                // It opened fine at start; report and contribute nothing rather than hang.
                tracing::error!("replaying {}: {e}", self.lake);
                c.stop.store(true, std::sync::atomic::Ordering::Relaxed);
                Ok(polled_source(scope, "LakeReplay", Finished))
            }
        }
    }
}
