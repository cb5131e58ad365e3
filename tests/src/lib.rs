//! Helpers for tradeflow's end-to-end tests, which drive the real `tradeflow` binary as
//! a user would and read what it wrote back with independent readers.
//!
//! * [`process`] — finding (or building) the binary, running it with a timeout, free
//!   TCP ports, temporary directories.
//! * [`summary`] — the end-of-run summary printed on stderr, parsed.
//! * [`lake`] — the Parquet lake read back in Rust with the `parquet` crate's arrow
//!   reader: trades, window metrics, anomalies, dead letters, file listings.
//! * [`expect`] — what a run must produce, computed independently of the binary: an
//!   NDJSON input parsed line by line in file order, the lateness rule applied per file,
//!   and SPEC 4-5 recomputed from scratch by `tradeflow_operators::reference`.
//! * [`python`] — the real lake readers (pyarrow, DuckDB) through `TRADEFLOW_PYTHON`.

pub mod browser;
pub mod expect;
pub mod finnhub;
pub mod kafka;
pub mod lake;
pub mod postgres;
pub mod process;
pub mod prometheus;
pub mod python;
pub mod s3;
pub mod summary;

pub use process::{
    Finished, Running, example_bin, file_url, free_port, free_ports, run_tradeflow, run_two_processes, simulate,
    temp_dir, tradeflow_bin, tradeflow_command,
};
pub use summary::Summary;
