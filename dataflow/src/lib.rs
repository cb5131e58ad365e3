//! The `tradeflow` binary as a library: command line, validated configuration, the
//! pipeline's wiring, and its timely execution.
//!
//! * [`cli`] — raw flags (clap), parsed into
//! * [`config`] — one validated [`config::RunConfig`], every error naming the value and
//!   the fix;
//! * [`pipeline`] — sources → operators → sinks, per worker;
//! * [`run`] — timely execution over threads and processes, Ctrl-C, progress, summary;
//! * [`simulate`] — `tradeflow simulate`: the market simulator to an NDJSON file.

pub mod cli;
pub mod config;
pub mod pipeline;
pub mod run;
pub mod simulate;
pub mod stats;
