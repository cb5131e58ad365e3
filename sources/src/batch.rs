//! What every source hands the dataflow: accepted trades, rejects, and its watermark.

use tradeflow_model::{Reject, Trade};

/// One source instance's output for one activation.
#[derive(Debug, Default)]
pub struct Batch {
    /// Accepted trades (valid and not late), in the order read.
    pub trades: Vec<Trade>,
    /// Rejected records, in the order read.
    pub rejects: Vec<Reject>,
    /// The instance's watermark report after this batch: nothing it emits later has an
    /// event time below it (`i64::MAX` when it is done). `None` leaves it unchanged.
    pub low: Option<i64>,
}

impl Batch {
    /// True when the batch carries nothing.
    pub fn is_empty(&self) -> bool {
        self.trades.is_empty() && self.rejects.is_empty() && self.low.is_none()
    }
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn wall_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
