//! tradeflow's operators: from the sources' batches to window rows and anomalies, no I/O.
//!
//! * [`ingest`] — each source's batches to trades, exact pane aggregates, rejects and
//!   watermarks (the data path's first operator, on the worker that read them).
//! * [`agg`] — the exact aggregate of a set of trades, carried as a difference.
//! * [`metrics`] — SPEC 4 columns from an aggregate.
//! * [`volatility`] — rolling volatility of vwap log returns.
//! * [`anomalies`] — the volume-spike and price-jump rules.
//! * [`watermark`] — the pipeline watermark from per-source reports.
//! * [`windows`] — panes to windows, each released once nothing reads it.
//! * [`finality`] — the gate that makes rows final by the watermark.
//! * [`analytics`] — the dataflow: `count_total` and `reduce` over arrangements, between
//!   the two.
//! * [`rows`] — the gated rows arranged once by key, with final rows expired, for the
//!   sinks.
//! * [`reference`] — a naive from-scratch recomputation, the oracle for tests and the
//!   benchmark's yardstick.

pub mod agg;
pub mod analytics;
pub mod anomalies;
pub mod epochs;
pub mod finality;
pub mod ingest;
pub mod metrics;
pub mod reference;
pub mod rows;
pub mod volatility;
pub mod watermark;
pub mod windows;

pub use agg::WindowAgg;
pub use analytics::{Analytics, AnalyticsParams, Pane, window_analytics};
pub use anomalies::AnomalyParams;
pub use watermark::GlobalWatermark;
