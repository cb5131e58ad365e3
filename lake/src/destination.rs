//! Where the lake's objects go: a local directory or an object store (S3).
//!
//! Every object appears complete or not at all. Locally, a file is written (or spooled)
//! under `<root>/.tradeflow-staging/` and renamed into place — readers skip dot
//! directories, and a rename within one file system is atomic. On S3 an object becomes
//! visible when its put (or multipart upload, for large files) completes. Transient
//! failures (5xx, timeouts, refused connections) are retried with backoff for up to two
//! minutes (`--lake-retry-for`); permanent ones (missing bucket, refused credentials) stop the run at once
//! with the bucket and the fix. Secrets never appear in messages.

use crate::paths::file_safe;
use crate::{LakeError, Payload};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Files above this size are uploaded in parts.
const MULTIPART_BYTES: usize = 16 << 20;
/// Size of each part.
const PART_BYTES: usize = 8 << 20;
/// How long a transient failure is retried before the run gives up, unless
/// `--lake-retry-for` says otherwise.
pub const RETRY_FOR: Duration = Duration::from_secs(120);

/// The runtime that drives every request to the lake's object store in this process.
///
/// A store pools its HTTP connections for everyone who uses it (the uploader, the
/// checkpoint coordinator, the lease), and a connection is driven by a task on the
/// runtime that opened it. With a runtime per caller, a request that picked up a pooled
/// connection opened by another caller's idle current-thread runtime waited until that
/// runtime ran again: checkpoints on S3 stalled for the lease's 10 s renewal period.
pub fn io_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("lake-io")
            .enable_all()
            .build()
            .expect("starting the lake's I/O runtime")
    })
}

/// A lake location.
#[derive(Clone, Debug)]
pub enum Destination {
    /// A local directory.
    Local {
        /// The lake root.
        root: PathBuf,
    },
    /// An object store bucket and prefix.
    Remote {
        /// The store (one bucket).
        store: Arc<dyn ObjectStore>,
        /// The lake root inside the bucket.
        prefix: Path,
        /// `s3://bucket/prefix`, for messages.
        display: String,
        /// How long a transient failure is retried (`--lake-retry-for`).
        retry_for: Duration,
    },
}

/// Why a put failed.
#[derive(Debug)]
pub struct PutError {
    /// Retrying cannot help.
    pub permanent: bool,
    /// What happened, secrets removed.
    pub message: String,
}

impl Destination {
    /// Opens and checks `url`: `file:///abs/dir`, `file://relative/dir`, a plain path, or
    /// `s3://bucket/prefix` (credentials, region and endpoint from the usual `AWS_*`
    /// variables; `s3:///prefix` takes the bucket from `S3_BUCKET`).
    pub fn open(url: &str) -> Result<Destination, LakeError> {
        Self::open_as(url, "--lake")
    }

    /// Retries transient failures for `retry_for` (an S3 store; a local directory does
    /// not retry).
    pub fn retrying_for(mut self, retry_for: Duration) -> Destination {
        if let Destination::Remote { retry_for: r, .. } = &mut self {
            *r = retry_for;
        }
        self
    }

    /// How long transient failures are retried.
    pub fn retry_for(&self) -> Duration {
        match self {
            Destination::Local { .. } => RETRY_FOR,
            Destination::Remote { retry_for, .. } => *retry_for,
        }
    }

    /// Opens `url` to read it, as the source given with `--source`.
    pub fn open_for_reading(url: &str) -> Result<Destination, LakeError> {
        Self::open_as(url, "--source")
    }

    fn open_as(url: &str, flag: &'static str) -> Result<Destination, LakeError> {
        let bad = |reason: String| LakeError::BadUrl { url: url.to_owned(), reason };
        match url.split_once("://") {
            None => Self::local(url, flag),
            Some(("file", rest)) => Self::local(rest, flag),
            Some(("s3", rest)) => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                let bucket =
                    if bucket.is_empty() { std::env::var("S3_BUCKET").unwrap_or_default() } else { bucket.to_owned() };
                if bucket.is_empty() {
                    return Err(bad("no bucket: use s3://bucket/prefix, or set S3_BUCKET".into()));
                }
                Self::s3(&bucket, prefix.trim_matches('/'), flag)
            }
            Some((scheme, _)) => Err(bad(format!(
                "unsupported scheme {scheme:?}; use file:///absolute/dir, file://relative/dir or s3://bucket/prefix"
            ))),
        }
    }

    /// A local lake: created when written (`--lake`); when read (`--source lake://`), it
    /// must exist, so that a mistyped path is an error rather than an empty replay.
    fn local(path: &str, flag: &'static str) -> Result<Destination, LakeError> {
        if path.is_empty() {
            return Err(LakeError::BadUrl {
                url: path.to_owned(),
                reason: "empty path; e.g. --lake file:///var/lib/tradeflow/lake".into(),
            });
        }
        let root = PathBuf::from(path);
        if flag == "--source" {
            if !root.is_dir() {
                let reason = if root.exists() { "is not a directory" } else { "does not exist" };
                return Err(LakeError::Read {
                    lake: root.display().to_string(),
                    message: format!("{reason}: give the root of a lake written with --lake"),
                });
            }
            return Ok(Destination::Local { root });
        }
        std::fs::create_dir_all(&root)
            .map_err(|source| LakeError::Directory { dir: root.display().to_string(), source })?;
        Ok(Destination::Local { root })
    }

    fn s3(bucket: &str, prefix: &str, flag: &'static str) -> Result<Destination, LakeError> {
        let display = if prefix.is_empty() { format!("s3://{bucket}") } else { format!("s3://{bucket}/{prefix}") };
        let retry = RetryConfig { max_retries: 4, retry_timeout: Duration::from_secs(20), ..RetryConfig::default() };
        let store = AmazonS3Builder::from_env().with_bucket_name(bucket).with_retry(retry).build().map_err(|e| {
            LakeError::BadUrl { url: display.clone(), reason: redact(&format!("{e}; check the AWS_* settings")) }
        })?;
        let destination =
            Destination::Remote { store: Arc::new(store), prefix: Path::from(prefix), display, retry_for: RETRY_FOR };
        destination.check(bucket, flag)?;
        Ok(destination)
    }

    /// Lists the root once, so a missing bucket or refused credentials stop the run
    /// before it starts.
    fn check(&self, bucket: &str, flag: &'static str) -> Result<(), LakeError> {
        let Destination::Remote { store, prefix, display, .. } = self else { return Ok(()) };
        let listed = io_runtime().block_on(store.list_with_delimiter(Some(prefix)));
        listed.map(|_| ()).map_err(|e| {
            let endpoint = std::env::var("AWS_ENDPOINT_URL").or_else(|_| std::env::var("AWS_ENDPOINT")).unwrap_or_else(|_| "AWS".into());
            let message = match classify(&e) {
                Class::MissingBucket => format!("bucket {bucket:?} does not exist at {endpoint}: create it (e.g. `aws s3 mb s3://{bucket}`) or fix {flag}"),
                Class::Refused => format!(
                    "access to bucket {bucket:?} at {endpoint} was refused: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_REGION)"
                ),
                Class::Transient => format!("cannot reach bucket {bucket:?} at {endpoint}: {}; check AWS_ENDPOINT_URL (and AWS_ALLOW_HTTP=true for a plain-http endpoint)", redact(&e.to_string())),
            };
            if flag == "--lake" { LakeError::Write { lake: display.clone(), message } } else { LakeError::Read { lake: display.clone(), message } }
        })
    }

    /// The local directory where large files are written before they are published:
    /// inside the lake (same file system, so publishing is a rename) or the temp dir.
    pub fn staging_dir(&self) -> PathBuf {
        let pid = std::process::id();
        match self {
            Destination::Local { root } => {
                root.join(".tradeflow-staging").join(format!("{}-{pid}", file_safe(&crate::host::hostname())))
            }
            Destination::Remote { .. } => std::env::temp_dir().join(format!("tradeflow-spool-{pid}")),
        }
    }

    /// Removes the staging directories that processes of this host left behind when they
    /// were killed (their spool files and spilled runs), so that crashes do not fill the
    /// disk; those of live processes, and of other hosts sharing a local lake, are kept.
    pub fn remove_stale_staging(&self) {
        let mine = self.staging_dir();
        let Some(parent) = mine.parent() else { return };
        let Ok(entries) = std::fs::read_dir(parent) else { return };
        let host = format!("{}-", file_safe(&crate::host::hostname()));
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = match self {
                Destination::Local { .. } => name.strip_prefix(&host),
                Destination::Remote { .. } => name.strip_prefix("tradeflow-spool-"),
            };
            let Some(pid) = pid.and_then(|p| p.parse::<u32>().ok()) else { continue };
            if pid != std::process::id() && !crate::host::process_alive(pid) && entry.path() != mine {
                match std::fs::remove_dir_all(entry.path()) {
                    Ok(()) => tracing::info!("removed {}, left by a run that is gone", entry.path().display()),
                    Err(e) => {
                        tracing::warn!("cannot remove {}, left by a run that is gone: {e}", entry.path().display())
                    }
                }
            }
        }
    }

    /// The lake's URL, for messages.
    pub fn display(&self) -> String {
        match self {
            Destination::Local { root } => format!("file://{}", root.display()),
            Destination::Remote { display, .. } => display.clone(),
        }
    }

    /// The lake as an object store rooted at the lake (for readers).
    pub fn store(&self) -> Result<(Arc<dyn ObjectStore>, Path), LakeError> {
        match self {
            Destination::Local { root } => {
                let store = object_store::local::LocalFileSystem::new_with_prefix(root)
                    .map_err(|e| LakeError::BadUrl { url: root.display().to_string(), reason: e.to_string() })?;
                Ok((Arc::new(store), Path::default()))
            }
            Destination::Remote { store, prefix, .. } => Ok((store.clone(), prefix.clone())),
        }
    }

    /// Removes the objects directly in `dir` (relative to the lake root) whose file name
    /// `doomed` selects; returns how many. Transient failures are retried as puts are. A
    /// resumed run uses it to take back what the run it resumes wrote after the checkpoint
    /// it resumes from.
    pub fn remove_where(&self, dir: &str, doomed: impl Fn(&str) -> bool) -> Result<usize, LakeError> {
        let (store, prefix) = self.store()?;
        let root = if prefix.as_ref().is_empty() { Path::from(dir) } else { Path::from(format!("{prefix}/{dir}")) };
        let retry_for = self.retry_for();
        let removed = io_runtime().block_on(async {
            let what = format!("listing {dir}");
            let listed = retrying(retry_for, &what, || async {
                match store.list_with_delimiter(Some(&root)).await {
                    Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
                    listed => listed.map(|l| l.objects),
                }
            })
            .await?;
            let mut removed = 0;
            for object in listed {
                if object.location.filename().is_some_and(&doomed) {
                    let what = format!("removing {}", object.location);
                    retrying(retry_for, &what, || async {
                        match store.delete(&object.location).await {
                            Err(object_store::Error::NotFound { .. }) => Ok(()),
                            done => done,
                        }
                    })
                    .await?;
                    removed += 1;
                }
            }
            Ok(removed)
        });
        removed.map_err(|(_, message): (Class, String)| LakeError::Write { lake: self.display(), message })
    }

    /// Publishes `payload` as `key` (relative to the lake root); returns its size.
    pub async fn put(&self, key: &str, payload: Payload, staging: &std::path::Path) -> Result<u64, PutError> {
        let transient = |message: String| PutError { permanent: false, message };
        match self {
            Destination::Local { root } => {
                let target = root.join(key);
                if let Some(parent) = target.parent() {
                    tokio::fs::create_dir_all(parent)
                        .await
                        .map_err(|e| transient(format!("creating {}: {e}", parent.display())))?;
                }
                let source = match payload {
                    Payload::Spooled(file) => file,
                    Payload::Bytes(data) => {
                        let file = staging.join(format!("{}.tmp", unique()));
                        tokio::fs::write(&file, data)
                            .await
                            .map_err(|e| transient(format!("writing {}: {e}", file.display())))?;
                        file
                    }
                };
                let len = tokio::fs::metadata(&source).await.map(|m| m.len()).unwrap_or(0);
                tokio::fs::rename(&source, &target)
                    .await
                    .map_err(|e| transient(format!("publishing {}: {e}", target.display())))?;
                Ok(len)
            }
            Destination::Remote { store, prefix, retry_for, .. } => {
                let path = Path::parse(format!("{prefix}/{key}").trim_start_matches('/'))
                    .map_err(|e| PutError { permanent: true, message: format!("bad object name {key:?}: {e}") })?;
                let (data, spooled) = match payload {
                    Payload::Bytes(data) => (data, None),
                    Payload::Spooled(file) => {
                        let data = tokio::fs::read(&file)
                            .await
                            .map_err(|e| transient(format!("reading {}: {e}", file.display())))?;
                        (data, Some(file))
                    }
                };
                let len = data.len() as u64;
                let data = bytes::Bytes::from(data);
                retrying(*retry_for, &format!("writing {key}"), || put_once(&**store, &path, data.clone()))
                    .await
                    .map_err(|(class, message)| PutError { permanent: class != Class::Transient, message })?;
                if let Some(file) = spooled {
                    let _ = tokio::fs::remove_file(file).await;
                }
                Ok(len)
            }
        }
    }
}

/// Runs `op` until it succeeds, fails for good, or its transient failures have lasted
/// `retry_for` (waiting 200 ms, doubling up to 5 s, between attempts); `what` names it in
/// warnings and in the error, with any secret redacted.
async fn retrying<T, F, Fut>(retry_for: Duration, what: &str, mut op: F) -> Result<T, (Class, String)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = object_store::Result<T>>,
{
    let started = Instant::now();
    let mut delay = Duration::from_millis(200);
    loop {
        match op().await {
            Ok(value) => return Ok(value),
            Err(e) => {
                let class = classify(&e);
                let message = format!("{what}: {}", redact(&e.to_string()));
                if class != Class::Transient || started.elapsed() >= retry_for {
                    return Err((class, message));
                }
                tracing::warn!("{message}; retrying in {delay:?}");
                tradeflow_model::metrics::SinkMetrics::of("lake").errors.inc();
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// One put: whole, or in parts for large files (visible only once complete).
async fn put_once(store: &dyn ObjectStore, path: &Path, data: bytes::Bytes) -> object_store::Result<()> {
    if data.len() <= MULTIPART_BYTES {
        return store.put(path, PutPayload::from(data)).await.map(|_| ());
    }
    let mut upload = store.put_multipart(path).await?;
    let mut result = Ok(());
    for part in data.chunks(PART_BYTES) {
        if let Err(e) = upload.put_part(PutPayload::from(data.slice_ref(part))).await {
            result = Err(e);
            break;
        }
    }
    if result.is_ok() {
        result = upload.complete().await.map(|_| ());
    }
    if result.is_err() {
        // Leave no incomplete upload behind (S3 keeps and bills their parts).
        let _ = upload.abort().await;
    }
    result
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Class {
    MissingBucket,
    Refused,
    Transient,
}

fn classify(error: &object_store::Error) -> Class {
    match error {
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => Class::Refused,
        other => {
            let text = other.to_string();
            if text.contains("NoSuchBucket") || text.contains("bucket does not exist") {
                Class::MissingBucket
            } else if text.contains("InvalidAccessKeyId")
                || text.contains("SignatureDoesNotMatch")
                || text.contains("AccessDenied")
                || text.contains("403 Forbidden")
            {
                Class::Refused
            } else {
                Class::Transient
            }
        }
    }
}

/// Removes the secret access key from a message, should a library ever include it.
pub fn redact(message: &str) -> String {
    match std::env::var("AWS_SECRET_ACCESS_KEY") {
        Ok(secret) if secret.len() >= 4 => message.replace(&secret, "***"),
        _ => message.to_owned(),
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
