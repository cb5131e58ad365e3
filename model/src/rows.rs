//! The rows the pipeline maintains: window metrics (SPEC 4) and anomalies (SPEC 5).
//!
//! Both are differential collections whose rows carry `is_final`: a provisional row is
//! retracted and replaced as trades arrive; when the watermark passes the window's end
//! the provisional row is replaced once more by the final row, which never changes.

use crate::{F64, Price, Symbol};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Metrics of one symbol in one window.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WindowMetrics {
    /// The instrument.
    pub symbol: Symbol,
    /// Window start, ms since the epoch.
    pub window_start: i64,
    /// Window end (exclusive), ms since the epoch.
    pub window_end: i64,
    /// Number of trades.
    pub trade_count: u64,
    /// Σ volume in 10^-8 units, exact.
    pub volume: i128,
    /// Σ(p·v) / Σv; `None` when Σv = 0.
    pub vwap: Option<F64>,
    /// Lowest price.
    pub min_price: Price,
    /// Highest price.
    pub max_price: Price,
    /// Σp / trade_count, unweighted.
    pub avg_price: F64,
    /// Price of the earliest trade (lowest price among ties).
    pub open: Price,
    /// Price of the latest trade (highest price among ties).
    pub close: Price,
    /// Rolling volatility of log returns of vwap; `None` with fewer than 2 returns.
    pub volatility: Option<F64>,
    /// True once the watermark has passed `window_end`; final rows never change.
    pub is_final: bool,
}

/// The kind of an anomaly.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AnomalyKind {
    /// Volume far above the recent average.
    VolumeSpike,
    /// A vwap return far outside the recent volatility.
    PriceJump,
}

impl AnomalyKind {
    /// The kind as written in outputs (`volume_spike`, `price_jump`).
    pub fn as_str(self) -> &'static str {
        match self {
            AnomalyKind::VolumeSpike => "volume_spike",
            AnomalyKind::PriceJump => "price_jump",
        }
    }
}

impl fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An anomaly on one symbol in one window.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Anomaly {
    /// The instrument.
    pub symbol: Symbol,
    /// Window start, ms since the epoch.
    pub window_start: i64,
    /// Window end (exclusive), ms since the epoch.
    pub window_end: i64,
    /// Which rule fired.
    pub kind: AnomalyKind,
    /// volume / baseline for spikes; |r − μ| / σ for jumps.
    pub severity: F64,
    /// = window_end, so that replays reproduce it.
    pub detected_at: i64,
    /// The window's volume (spike) or log return r (jump).
    pub observed: F64,
    /// The baseline volume (spike) or volatility σ (jump).
    pub baseline: F64,
    /// True once the watermark has passed `window_end`.
    pub is_final: bool,
}
