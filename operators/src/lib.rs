//! tradeflow's operators: from the sources' batches to window rows and anomalies, no I/O.
//!
//! * [`ingest`] — each source's batches to trades, exact pane aggregates, rejects and
//!   watermarks (the data path's first operator, on the worker that read them).
//! * [`agg`] — the exact aggregate of a set of trades, carried as a difference.
//! * [`metrics`] — SPEC 4 columns from an aggregate.
//! * [`volatility`] — rolling volatility of vwap log returns.
//! * [`anomalies`] — the volume-spike and price-jump rules.
//! * [`watermark`] — the pipeline watermark from per-source reports.
//! * [`book`] — one worker's windows: rows, finality, eviction.
//! * [`analytics`] — the differential operator wrapping the book.
//! * [`reference`] — a naive from-scratch recomputation, the oracle for tests and the
//!   benchmark's yardstick.

pub mod agg;
pub mod analytics;
pub mod anomalies;
pub mod book;
pub mod epochs;
pub mod ingest;
pub mod metrics;
pub mod reference;
pub mod volatility;
pub mod watermark;

pub use agg::WindowAgg;
pub use analytics::{Analytics, Pane, window_analytics};
pub use anomalies::AnomalyParams;
pub use book::{AnalyticsParams, Changes, WindowBook};
pub use watermark::GlobalWatermark;
