//! The Parquet lake (SPEC 7): `trades`, `window_metrics`, `anomalies`, `dead_letter` and
//! `changelog` datasets under one root, on a local directory or an object store.

pub mod changelog;
pub mod dead_letter;
pub mod destination;
mod encoder;
pub mod finals;
pub mod parquet;
pub mod paths;
pub mod store;
pub mod trades;
pub mod watermarked;

pub use changelog::{ChangelogConfig, write_changelog};
pub use dead_letter::write_dead_letters;
pub use destination::Destination;
pub use finals::write_finals;
pub use store::{Lake, LakeError, LakeStats, Payload};
pub use trades::write_trades;
