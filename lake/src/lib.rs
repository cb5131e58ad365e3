//! The lake's shared format, used by the lake sink (`tradeflow-sinks`) and the lake
//! replay source (`tradeflow-sources`), so that what one writes the other reads:
//!
//! * [`paths`] — object names: Hive partitions, hour-and-index file names, and parsing
//!   them back;
//! * [`changelog`] — the changelog's objects: differential's capture protocol (updates
//!   and progress statements) in Parquet, and reading a run of it back;
//! * [`parquet`] — the Parquet codec of every dataset (schemas, batches, writer
//!   settings) and reading trades, window rows and anomalies back;
//! * [`destination`] — where objects go: a local directory or an S3 bucket, each object
//!   published atomically, transient failures retried;
//! * [`host`] — this machine's name, and whether a process of it is still running.

pub mod changelog;
pub mod destination;
pub mod host;
pub mod parquet;
pub mod paths;

pub use destination::Destination;
use std::path::PathBuf;

/// Lake errors: the location, what failed, and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    /// The `--lake` URL is not understood.
    #[error("--lake {url:?}: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong and the fix.
        reason: String,
    },
    /// The local lake directory cannot be created or used.
    #[error("lake directory {dir}: {source}; check the path and its permissions")]
    Directory {
        /// The directory.
        dir: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Reading a lake (as a source) failed.
    #[error("reading the lake {lake} failed: {message}")]
    Read {
        /// The lake URL.
        lake: String,
        /// What failed.
        message: String,
    },
    /// Writing objects failed.
    #[error("writing to the lake {lake} failed: {message}")]
    Write {
        /// The lake URL.
        lake: String,
        /// What failed.
        message: String,
    },
}

/// Bytes of a finished file, or a spooled local file holding them.
#[derive(Debug)]
pub enum Payload {
    /// The complete file in memory.
    Bytes(Vec<u8>),
    /// A complete file in the local spool directory, removed once uploaded.
    Spooled(PathBuf),
}
