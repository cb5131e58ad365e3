//! The Parquet lake (SPEC 7): `trades`, `window_metrics`, `anomalies`, `dead_letter` and
//! `changelog` datasets under one root, on a local directory or an object store.

pub use tradeflow_lake::{destination, parquet, paths};

pub mod changelog;
pub mod dead_letter;
mod encoder;
pub mod finals;
pub mod progress;
pub mod store;
pub mod trades;
pub mod trades_by_hour;
pub mod watermarked;

pub use changelog::{ChangelogConfig, write_changelog};
pub use dead_letter::write_dead_letters;
pub use destination::Destination;
pub use finals::write_finals;
pub use store::{Lake, LakeError, LakeStats, Payload};
pub use trades::{TradesFiles, write_trades};
pub use trades_by_hour::write_trades_by_hour;

/// How the `trades` dataset is laid out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TradesLayout {
    /// `trades/date=D/symbol=S/`: a file per symbol and hour (the default; the original
    /// design's layout).
    #[default]
    Symbol,
    /// `trades/date=D/hour=HH/`: an hour's trades of every symbol, sorted by symbol, with a
    /// `symbol` column (large universes).
    Hour,
}
