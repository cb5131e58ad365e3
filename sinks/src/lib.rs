//! tradeflow's sinks: collections to the outside world.
//!
//! * [`lake`] — the Parquet lake: raw trades, final window metrics and anomalies, dead
//!   letters and the changelog, written atomically under deterministic names.

pub mod lake;
