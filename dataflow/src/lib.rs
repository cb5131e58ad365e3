//! The `tradeflow` binary as a library: command line, validated configuration, the
//! pipeline's wiring, and its timely execution.
//!
//! * [`cli`] — raw flags (clap), parsed into
//! * [`config`] — one validated [`config::RunConfig`], every error naming the value and
//!   the fix;
//! * [`pipeline`] — sources → operators → sinks, per worker;
//! * [`run`] — timely execution over threads and processes, Ctrl-C, progress, summary;
//! * [`cluster`] — connecting the processes of a multi-process run;
//! * [`simulate`] — `tradeflow simulate`: the market simulator to an NDJSON file;
//! * [`produce`] — `tradeflow produce`: trades from the simulator, a file or Finnhub to Kafka;
//! * [`check`] — `tradeflow check`: recompute a range from the lake's trades and reconcile
//!   the lake and PostgreSQL with it, bit for bit;
//! * [`report`] — `tradeflow report`: the daily report (HTML with charts, Markdown);
//! * [`metrics`], [`web`], [`logging`] — Prometheus `/metrics`, the live dashboard, logs
//!   and progress.

pub mod check;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod logging;
pub mod metrics;
pub mod pipeline;
pub mod produce;
pub mod report;
pub mod run;
pub mod simulate;
pub mod stats;
pub mod web;
