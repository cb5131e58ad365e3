//! The lake and its background encoder and uploader.
//!
//! Writers build complete Parquet files (in memory, or spooled to a local staging file
//! for large ones) and hand them to the uploader, which publishes each under its final,
//! deterministic name (see [`Destination`] for how a publish is atomic), so no reader
//! ever sees a partial file, and a replay that rewrites a name replaces the object
//! instead of adding a duplicate.

use super::destination::Destination;
use super::encoder::{EncodeJob, encode_loop};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tokio::sync::mpsc;
pub use tradeflow_lake::{LakeError, Payload};
use tradeflow_model::metrics::SinkMetrics;

enum Job {
    /// Publish a file.
    Put {
        key: String,
        payload: Payload,
        /// Rows in the file (counted once it is uploaded).
        rows: u64,
    },
    /// Wait until every earlier put is done, then answer (if anyone waits).
    Barrier(Option<std::sync::mpsc::Sender<()>>),
}

/// The lake's first failure (an upload that failed for good, an encoder error), and who
/// to tell: a run is told at once and stops (see [`Lake::on_failure`]), rather than
/// going on reading input that no output will follow.
#[derive(Default)]
pub(crate) struct Failure {
    first: Mutex<Option<String>>,
    tell: std::sync::OnceLock<Box<dyn Fn(String) + Send + Sync>>,
    /// After a failure, uploads still queued are dropped (a resumable run writes them
    /// again on resume) rather than each retried for as long again.
    skip_queued: std::sync::atomic::AtomicBool,
}

impl Failure {
    /// Records `message` if it is the first failure, and tells the run.
    pub(crate) fn record(&self, message: String) {
        let mut first = self.first.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_some() {
            return;
        }
        *first = Some(message.clone());
        drop(first);
        if let Some(tell) = self.tell.get() {
            tell(message);
        }
    }

    fn get(&self) -> Option<String> {
        self.first.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Counts of what the lake wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LakeStats {
    /// Objects written.
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
}

/// A lake: an object store root plus a background uploader. Shared by all workers of a
/// process.
pub struct Lake {
    url: String,
    destination: Destination,
    spool: PathBuf,
    sender: Mutex<Option<mpsc::UnboundedSender<Job>>>,
    uploader: Mutex<Option<JoinHandle<()>>>,
    files: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    spool_seq: AtomicU64,
    error: Arc<Failure>,
    encoder: Mutex<Option<std::sync::mpsc::SyncSender<EncodeJob>>>,
    encoder_thread: Mutex<Option<JoinHandle<()>>>,
}

impl Lake {
    /// Opens the lake at `url` (see [`Destination::open`]), retrying transient failures
    /// of an S3 store for `retry_for`.
    pub fn open(url: &str, retry_for: std::time::Duration) -> Result<Lake, LakeError> {
        let destination = Destination::open(url)?.retrying_for(retry_for);
        Self::with_destination(url, destination)
    }

    /// A lake at `destination`.
    pub fn with_destination(url: &str, destination: Destination) -> Result<Lake, LakeError> {
        let spool = destination.staging_dir();
        destination.remove_stale_staging();
        std::fs::create_dir_all(&spool)
            .map_err(|source| LakeError::Directory { dir: spool.display().to_string(), source })?;
        let (sender, receiver) = mpsc::unbounded_channel();
        let files = Arc::new(AtomicU64::new(0));
        let bytes = Arc::new(AtomicU64::new(0));
        // The first failure of any writer, the encoder or an upload: the run ends with it,
        // and no checkpoint is committed after it.
        let error = Arc::new(Failure::default());
        let (f, b, staging, to) = (files.clone(), bytes.clone(), spool.clone(), destination.clone());
        let failed = error.clone();
        let uploader = std::thread::Builder::new()
            .name("lake-uploader".into())
            .spawn(move || upload_loop(to, staging, receiver, f, b, failed))
            .map_err(|e| LakeError::Write { lake: url.to_owned(), message: e.to_string() })?;
        // Bounded: a worker that outruns the encoder waits instead of piling up rows.
        let (encode_tx, encode_rx) = std::sync::mpsc::sync_channel(64);
        let (uploads, errors) = (sender.clone(), error.clone());
        let barriers = sender.clone();
        let publish = move |key: String, spool: PathBuf, rows: u64| {
            let _ = uploads.send(Job::Put { key, payload: Payload::Spooled(spool), rows });
        };
        let barrier = move |done| {
            let _ = barriers.send(Job::Barrier(Some(done)));
        };
        let encoder_thread = std::thread::Builder::new()
            .name("lake-encoder".into())
            .spawn(move || encode_loop(encode_rx, publish, barrier, errors))
            .map_err(|e| LakeError::Write { lake: url.to_owned(), message: e.to_string() })?;
        Ok(Lake {
            url: url.to_owned(),
            destination,
            spool,
            sender: Mutex::new(Some(sender)),
            uploader: Mutex::new(Some(uploader)),
            files,
            bytes,
            spool_seq: AtomicU64::new(0),
            error,
            encoder: Mutex::new(Some(encode_tx)),
            encoder_thread: Mutex::new(Some(encoder_thread)),
        })
    }

    /// The lake's URL, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A fresh path in the local spool directory for a large file being written.
    pub fn spool_path(&self) -> PathBuf {
        let n = self.spool_seq.fetch_add(1, Ordering::Relaxed);
        self.spool.join(format!("{n}.parquet.part"))
    }

    /// Queues work for the background encoder of large files.
    pub(crate) fn encode(&self, job: EncodeJob) {
        let sender = self.encoder.lock().expect("lake encoder lock").clone();
        if let Some(sender) = sender {
            let _ = sender.send(job);
        }
    }

    /// A fresh identifier for a file handed to the encoder.
    pub(crate) fn next_file_id(&self) -> u64 {
        self.spool_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Queues a finished file of `rows` rows for upload under `key` (relative to the
    /// lake root).
    pub fn publish(&self, key: String, payload: Payload, rows: u64) {
        let guard = self.sender.lock().expect("lake sender lock");
        if let Some(sender) = guard.as_ref() {
            let _ = sender.send(Job::Put { key, payload, rows });
        }
    }

    /// Queues `key` like [`Lake::publish`], to be uploaded only once every upload queued
    /// before it is done (without waiting here): a file that describes others (the
    /// changelog's progress statements) never appears before them.
    pub fn publish_after_earlier(&self, key: String, payload: Payload, rows: u64) {
        let guard = self.sender.lock().expect("lake sender lock");
        if let Some(sender) = guard.as_ref() {
            let _ = sender.send(Job::Barrier(None));
            let _ = sender.send(Job::Put { key, payload, rows });
        }
    }

    /// Waits until everything handed to the lake before (files being encoded, queued
    /// uploads) is published: what a checkpoint written next may rely on. False if the
    /// lake is closed.
    pub fn barrier(&self) -> bool {
        let (done, wait) = std::sync::mpsc::channel();
        let sender = self.encoder.lock().expect("lake encoder lock").clone();
        match sender {
            Some(sender) if sender.send(EncodeJob::Barrier(done)).is_ok() => wait.recv().is_ok(),
            _ => false,
        }
    }

    /// Where the lake is.
    pub fn destination(&self) -> &Destination {
        &self.destination
    }

    /// Records a failure of a writer; the run then ends with this error.
    pub fn report_error(&self, message: String) {
        tracing::error!("lake {}: {message}", self.url);
        SinkMetrics::of("lake").errors.inc();
        self.error.record(message);
    }

    /// The first error so far, if any.
    pub fn error(&self) -> Option<String> {
        self.error.get()
    }

    /// Calls `tell` once, with a message naming the lake, on the first failure (now, if
    /// there was one already): e.g. to stop the run. `resumable`: the run resumes from a
    /// checkpoint, so after a failure the uploads still queued are dropped rather than
    /// each retried (a run that cannot resume still writes all it can).
    pub fn on_failure(&self, resumable: bool, tell: impl Fn(String) + Send + Sync + 'static) {
        self.error.skip_queued.store(resumable, Ordering::Relaxed);
        let url = self.url.clone();
        let tell = move |message: String| tell(format!("writing to the lake {url} failed: {message}"));
        if self.error.tell.set(Box::new(tell)).is_ok()
            && let Some(message) = self.error()
            && let Some(tell) = self.error.tell.get()
        {
            tell(message);
        }
    }

    /// What has been written so far.
    pub fn stats(&self) -> LakeStats {
        LakeStats { files: self.files.load(Ordering::Relaxed), bytes: self.bytes.load(Ordering::Relaxed) }
    }

    /// Waits for every queued upload; returns an error if any failed.
    pub fn finish(&self) -> Result<LakeStats, LakeError> {
        // First the encoder (it publishes what it finishes), then the uploads.
        drop(self.encoder.lock().expect("lake encoder lock").take());
        if let Some(handle) = self.encoder_thread.lock().expect("lake encoder lock").take()
            && handle.join().is_err()
        {
            self.report_error("the encoder thread panicked".into());
        }
        drop(self.sender.lock().expect("lake sender lock").take());
        let handle = self.uploader.lock().expect("lake uploader lock").take();
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            self.report_error("the uploader thread panicked".into());
        }
        let _ = std::fs::remove_dir_all(&self.spool);
        if let Some(parent) = self.spool.parent() {
            let _ = std::fs::remove_dir(parent); // only if no other process stages there
        }
        if let Some(message) = self.error() {
            return Err(LakeError::Write { lake: self.url.clone(), message });
        }
        Ok(self.stats())
    }
}

impl Drop for Lake {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

fn upload_loop(
    destination: Destination,
    staging: PathBuf,
    mut receiver: mpsc::UnboundedReceiver<Job>,
    files: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    failed: Arc<Failure>,
) {
    let metrics = SinkMetrics::of("lake");
    super::destination::io_runtime().block_on(async move {
        let permits = Arc::new(tokio::sync::Semaphore::new(8));
        let mut tasks = tokio::task::JoinSet::new();
        while let Some(job) = receiver.recv().await {
            let job = match job {
                Job::Put { key, payload, rows } => (key, payload, rows),
                Job::Barrier(done) => {
                    // What a checkpoint written next relies on must all have been published.
                    while let Some(finished) = tasks.join_next().await {
                        record(&failed, finished);
                    }
                    if let Some(done) = done {
                        let _ = done.send(());
                    }
                    continue;
                }
            };
            // After a failure the run is stopping with it: a resumable run does not retry
            // what is still queued for as long again (it writes it on resume).
            if failed.skip_queued.load(Ordering::Relaxed) && failed.get().is_some() {
                continue;
            }
            let permit = permits.clone().acquire_owned().await.expect("semaphore is never closed");
            let (destination, staging, files, bytes, metrics) =
                (destination.clone(), staging.clone(), files.clone(), bytes.clone(), metrics.clone());
            tasks.spawn(async move {
                let started = std::time::Instant::now();
                let (key, payload, rows) = job;
                let result = match destination.put(&key, payload, &staging).await {
                    Ok(len) => {
                        files.fetch_add(1, Ordering::Relaxed);
                        bytes.fetch_add(len, Ordering::Relaxed);
                        metrics.rows.add(rows);
                        metrics.commit_seconds.observe(started.elapsed().as_secs_f64());
                        Ok(())
                    }
                    Err(e) => Err(if e.permanent {
                        format!("{} (not retried: this needs fixing first)", e.message)
                    } else {
                        e.message
                    }),
                };
                drop(permit);
                result
            });
            while let Some(done) = tasks.try_join_next() {
                record(&failed, done);
            }
        }
        while let Some(done) = tasks.join_next().await {
            record(&failed, done);
        }
    })
}

/// Records a finished upload's failure, if it failed.
fn record(failed: &Failure, done: Result<Result<(), String>, tokio::task::JoinError>) {
    let outcome = done.map_err(|e| e.to_string()).and_then(|r| r);
    if let Err(e) = outcome {
        tracing::error!("{e}");
        SinkMetrics::of("lake").errors.inc();
        failed.record(e);
    }
}
