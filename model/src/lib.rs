//! Domain types shared by every tradeflow crate.
//!
//! * [`Trade`] — one accepted trade, with an exact fixed-point [`Price`] and [`Qty`]
//!   (units of 10^-8) and an interned-size [`Symbol`].
//! * [`Reject`] and [`RejectReason`] — a record that did not become a trade, and why.
//! * [`WindowSpec`] — tumbling or hopping event-time windows aligned to the Unix epoch.
//! * [`WindowMetrics`] and [`Anomaly`] — the rows the pipeline maintains and writes.
//! * [`WatermarkReport`] — one source instance's promise about the event times it may
//!   still emit; the pipeline watermark is the minimum over all of them.
//!
//! Everything that travels between timely workers is `Serialize + Deserialize`, because
//! a run on several processes exchanges these values over the network.

pub mod checkpoint;
pub mod decimal;
mod fixed;
mod float;
pub mod metrics;
mod reject;
mod rows;
pub mod secret;
mod symbol;
mod time;
mod trade;
mod window;

pub use fixed::{Price, Qty, SCALE, UNITS_LIMIT};
pub use float::F64;
pub use reject::{Payload, Reject, RejectReason};
pub use rows::{Anomaly, AnomalyKind, WindowMetrics};
pub use symbol::{Symbol, SymbolError};
pub use time::{MAX_TS, MIN_TS, Time, WatermarkReport, date_of, format_ts, group_thousands, ts_in_range, wall_ms};
pub use trade::{Conditions, Trade};
pub use window::{WindowError, WindowSpec};

/// The configuration variables tradeflow reads (SPEC 8: the seed's variables as
/// defaults, from the environment, else from `./.env`), and the S3 client's.
pub const CONFIG_VARIABLES: &[&str] = &[
    "DATABASE_URL",
    "POSTGRES_HOST",
    "POSTGRES_PORT",
    "POSTGRES_DB",
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "FINNHUB_API_KEY",
    "FINNHUB_WS_URL",
    "KAFKA_BOOTSTRAP_SERVERS",
    "SCHEMA_REGISTRY_URL",
    "S3_BUCKET",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ALLOW_HTTP",
];
