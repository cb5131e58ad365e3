//! tradeflow's sinks: collections to the outside world.
//!
//! * [`lake`] — the Parquet lake: raw trades, final window metrics and anomalies, dead
//!   letters and the changelog, written atomically under deterministic names.
//! * [`postgres`] — PostgreSQL: live window metrics and anomalies, upserted as they
//!   change, retracted anomalies deleted, under versioned migrations.

pub mod checkpoint;
pub mod lake;
pub mod lease;
pub mod postgres;
