//! Every kind of `--source` behind one trait: what the pipeline needs of a source.
//!
//! Background: a `--source` URL is parsed into a [`SourceSpec`] (`url.rs`), then
//! [`resolve`]d once, at start, into a [`Source`]: its files listed, its key found, its
//! brokers asked for their partitions. The pipeline then asks every source the same
//! questions — does it end, can a checkpoint resume it, how much input is there for the
//! progress bar — and has it build its operator on each worker. Adding a kind of source
//! is its folder (reader and [`Source`] implementation) and one line in [`resolve`].

use crate::batch::Batch;
use crate::driver::{Backlog, Reader, checkpointed_source};
use crate::url::SourceSpec;
use std::fmt::Debug;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use timely::dataflow::{Scope, StreamVec};
use tradeflow_model::Time;
use tradeflow_model::checkpoint::Saver;

/// Any error a source's own module reports (each kind has its `thiserror` type).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a `--source` could not be resolved, or its operator built. The message names the
/// source and the fix; the error it wraps is kept as its `source()`.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The `--source` text names an input that cannot be read as given.
    #[error("--source {text:?}: {error}")]
    Resolve {
        /// The `--source` text.
        text: String,
        /// Why.
        #[source]
        error: BoxError,
    },
    /// The input's own error, which names it (a file source's path).
    #[error(transparent)]
    Input(BoxError),
    /// The checkpoint part a source resumes from does not fit it (another input, an
    /// unreadable state).
    #[error(transparent)]
    Restore(BoxError),
}

/// What [`Source::build`] returns: this worker's batches, each at the epoch it was read in.
pub type Built<'scope> = Result<StreamVec<'scope, Time, Batch>, SourceError>;

/// The run's settings a source's operator uses.
pub struct Context<'a> {
    /// `--allowed-lateness`, ms.
    pub lateness_ms: i64,
    /// `--idle-timeout`: a partition silent this long stops holding the watermark back.
    pub idle_timeout: Duration,
    /// `--kafka-retry-for`: how long an unreachable broker is retried.
    pub kafka_retry_for: Duration,
    /// Set when the run is asked to stop.
    pub stop: Arc<AtomicBool>,
    /// A handle to save this worker's reader position with (checkpointed runs; `None`
    /// otherwise). Called only by readers that save: a handle registers its component,
    /// and no checkpoint completes without a part from every registered one.
    pub saver: &'a dyn Fn() -> Option<Saver>,
    /// Back-pressure: the reader waits while the pipeline or the durable output lags.
    pub backlog: Option<Backlog>,
}

/// How much input a source has, as far as the progress bar can tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Extent {
    /// Bytes of input files this process reads.
    Bytes(u64),
    /// Bytes of lake files, known once the workers list them.
    LakeBytes,
    /// Trades this process will produce.
    Trades(u64),
    /// Records (offsets) of a topic this process reads.
    Records {
        /// Offsets in this process's partitions' ranges.
        records: u64,
        /// The topic.
        topic: String,
    },
    /// Nothing known in advance.
    Unknown,
}

/// A resolved `--source` (see the module documentation).
pub trait Source: Debug + Send + Sync {
    /// Whether the input ends by itself (a live feed does not).
    fn bounded(&self) -> bool;
    /// Whether a checkpoint can resume it; `asked`: `--checkpoint-interval` was given.
    fn resumable(&self, asked: bool) -> bool;
    /// How a checkpoint's manifest records it, given its `--source` text: a resumed run
    /// must read the same input.
    fn identity(&self, text: &str) -> String {
        text.to_owned()
    }
    /// The input of the workers `workers` (of `peers`, in `processes` processes).
    fn extent(&self, workers: Range<usize>, peers: usize, processes: usize) -> Extent;
    /// This worker's operator: the batches it reads, each at the epoch it was read in.
    fn build<'scope>(&self, scope: Scope<'scope, Time>, context: &Context) -> Built<'scope>;
}

impl Context<'_> {
    /// `reader` as this worker's checkpointed source `name`: restored first (by
    /// `restore`) from the part the run resumed from, if any, then saving its position at
    /// every checkpoint boundary and held back by `backlog`.
    pub fn checkpointed<'scope, R, E>(
        &self,
        scope: Scope<'scope, Time>,
        name: &str,
        mut reader: R,
        restore: impl FnOnce(&mut R, &[u8]) -> Result<(), E>,
        backlog: Option<Backlog>,
    ) -> Built<'scope>
    where
        R: Reader<Item = Batch>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let saver = (self.saver)();
        if let Some(restored) = saver.as_ref().and_then(Saver::restore) {
            restore(&mut reader, &restored.state).map_err(|e| SourceError::Restore(Box::new(e)))?;
        }
        Ok(checkpointed_source(scope, name, reader, saver, backlog))
    }
}

/// The one registration: `spec`, parsed from the `--source` text `text`, resolved into its
/// source. `start_ms` is the run's start (the simulator's default start), `variable` reads
/// a configuration variable (API keys, brokers). Errors name the source and the fix.
pub fn resolve(
    text: &str,
    spec: SourceSpec,
    start_ms: i64,
    variable: &dyn Fn(&str) -> Option<String>,
) -> Result<Arc<dyn Source>, SourceError> {
    fn named<E: std::error::Error + Send + Sync + 'static>(text: &str) -> impl FnOnce(E) -> SourceError {
        move |e| SourceError::Resolve { text: text.to_owned(), error: Box::new(e) }
    }
    Ok(match spec {
        SourceSpec::File { path } => Arc::new(
            crate::file::plan::FilePlan::new(&path, crate::file::DEFAULT_CHUNK_BYTES)
                .map_err(|e| SourceError::Input(Box::new(e)))?,
        ),
        SourceSpec::Sim { mut config, start } => {
            config.start_ms = start.unwrap_or(start_ms);
            config.check().map_err(named(text))?;
            Arc::new(config)
        }
        SourceSpec::Finnhub(spec) => {
            Arc::new(spec.resolve(variable("FINNHUB_API_KEY"), variable("FINNHUB_WS_URL")).map_err(named(text))?)
        }
        SourceSpec::Stdin => Arc::new(crate::stdin::Stdin),
        SourceSpec::Kafka(mut spec) => {
            // Resolved once now: a missing topic or unreachable brokers stop the run before
            // it starts, and `end=latest` is the high watermarks now.
            spec.resolve_brokers(variable).map_err(named(text))?;
            Arc::new(crate::kafka::KafkaSource(Arc::new(crate::kafka::resolve(&spec).map_err(named(text))?)))
        }
        SourceSpec::Lake { lake, from, to } => {
            // Listed once, now: a missing lake or bucket stops the run before it starts,
            // and every worker reads its share of this listing.
            let plan = crate::lake::LakePlan::list(&lake, from, to).map_err(named(text))?;
            if plan.files() == 0 {
                tracing::warn!("--source {text:?}: no trades files in that lake (and range)");
            }
            Arc::new(crate::lake::LakeSource { lake, plan: Arc::new(plan) })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    #[test]
    fn a_source_that_cannot_be_resolved_names_itself_and_keeps_its_cause() {
        // Without a start of its own, the simulator starts at the run's: 1970 is too early.
        let text = "sim://?symbols=AAPL";
        let spec = crate::url::parse_source(text).expect("a well-formed URL");
        let error = resolve(text, spec, 0, &|_| None).expect_err("a start before 2000");
        assert!(matches!(error, SourceError::Resolve { .. }), "{error:?}");
        let cause = error.source().expect("the simulator's own error is kept").to_string();
        assert_eq!(error.to_string(), format!("--source {text:?}: {cause}"));
    }

    #[test]
    fn a_file_that_cannot_be_read_is_the_file_sources_own_error() {
        let spec = crate::url::parse_source("file:///no/such/file.ndjson").expect("a well-formed URL");
        let error = resolve("file:///no/such/file.ndjson", spec, 0, &|_| None).expect_err("no such file");
        assert!(matches!(error, SourceError::Input(_)), "{error:?}");
        assert!(error.to_string().contains("/no/such/file.ndjson"), "{error}");
    }
}
