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

impl WindowMetrics {
    /// The row's content digest: FNV-1a 64 over its exact values, identical on every
    /// platform and version (a final row is bit-identical across workers, processes and
    /// runs, so its digest is too). `is_final` is not part of it.
    ///
    /// Byte layout hashed, in this order, integers little-endian: the symbol's UTF-8
    /// length (u32) and bytes; window_start, window_end (i64 ms); trade_count (u64);
    /// volume (i128, 10^-8 units); vwap as a tag byte (0 = NULL, 1 = present) followed,
    /// when present, by its IEEE-754 bits (u64); min_price, max_price (i64 units);
    /// avg_price's bits (u64); open, close (i64 units); volatility as vwap. FNV-1a 64:
    /// offset basis 0xcbf29ce484222325, prime 0x100000001b3, `h = (h ^ byte) * prime`.
    /// Stored as `Int64` in the lake and `bigint` in PostgreSQL: the same 64 bits read as
    /// two's complement ([`WindowMetrics::digest_i64`]).
    pub fn digest(&self) -> u64 {
        let mut h = Fnv1a64::new();
        let symbol = self.symbol.as_str().as_bytes();
        h.write(&(symbol.len() as u32).to_le_bytes());
        h.write(symbol);
        h.write(&self.window_start.to_le_bytes());
        h.write(&self.window_end.to_le_bytes());
        h.write(&self.trade_count.to_le_bytes());
        h.write(&self.volume.to_le_bytes());
        h.write_optional_float(self.vwap);
        h.write(&self.min_price.0.to_le_bytes());
        h.write(&self.max_price.0.to_le_bytes());
        h.write(&self.avg_price.0.to_bits().to_le_bytes());
        h.write(&self.open.0.to_le_bytes());
        h.write(&self.close.0.to_le_bytes());
        h.write_optional_float(self.volatility);
        h.0
    }

    /// [`WindowMetrics::digest`] as stored: the same 64 bits as a signed integer.
    pub fn digest_i64(&self) -> i64 {
        self.digest() as i64
    }
}

/// FNV-1a, 64 bits: tiny, fixed, and the same everywhere (not a cryptographic hash: it
/// finds accidental differences, not forged ones).
struct Fnv1a64(u64);

impl Fnv1a64 {
    fn new() -> Self {
        Fnv1a64(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn write_optional_float(&mut self, value: Option<F64>) {
        match value {
            None => self.write(&[0]),
            Some(v) => {
                self.write(&[1]);
                self.write(&v.0.to_bits().to_le_bytes());
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> WindowMetrics {
        WindowMetrics {
            symbol: Symbol::parse("BINANCE:BTCUSDT").unwrap(),
            window_start: 1_700_000_040_000,
            window_end: 1_700_000_100_000,
            trade_count: 42,
            volume: 123_456_789_012,
            vwap: Some(F64(37_000.125)),
            min_price: Price(3_699_900_000_000),
            max_price: Price(3_700_100_000_000),
            avg_price: F64(37_000.062_5),
            open: Price(3_700_000_000_000),
            close: Price(3_700_050_000_000),
            volatility: Some(F64(0.000_123_4)),
            is_final: true,
        }
    }

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        let hash = |bytes: &[u8]| {
            let mut h = Fnv1a64::new();
            h.write(bytes);
            h.0
        };
        assert_eq!(hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(hash(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn the_digest_of_a_fixed_row_never_changes() {
        // Computed once; a change here changes every digest in every lake and database.
        assert_eq!(row().digest(), DIGEST);
        assert_eq!(row().digest_i64(), DIGEST as i64);
        assert_eq!(WindowMetrics { is_final: false, ..row() }.digest(), DIGEST, "is_final is not content");
    }

    /// Computed once, and independently with the byte layout above in Python (struct.pack).
    const DIGEST: u64 = 0xa4bd_85d6_f630_dbba;

    #[test]
    fn every_field_changes_the_digest() {
        let base = row();
        let changed: Vec<(&str, WindowMetrics)> = vec![
            ("symbol", WindowMetrics { symbol: Symbol::parse("BINANCE:BTCUSDC").unwrap(), ..base.clone() }),
            ("window_start", WindowMetrics { window_start: base.window_start + 1, ..base.clone() }),
            ("window_end", WindowMetrics { window_end: base.window_end + 1, ..base.clone() }),
            ("trade_count", WindowMetrics { trade_count: 43, ..base.clone() }),
            ("volume", WindowMetrics { volume: base.volume + 1, ..base.clone() }),
            ("vwap", WindowMetrics { vwap: Some(F64(f64::from_bits(37_000.125f64.to_bits() + 1))), ..base.clone() }),
            ("vwap null", WindowMetrics { vwap: None, ..base.clone() }),
            ("min_price", WindowMetrics { min_price: Price(base.min_price.0 + 1), ..base.clone() }),
            ("max_price", WindowMetrics { max_price: Price(base.max_price.0 + 1), ..base.clone() }),
            ("avg_price", WindowMetrics { avg_price: F64(-0.0), ..base.clone() }),
            ("open", WindowMetrics { open: Price(base.open.0 + 1), ..base.clone() }),
            ("close", WindowMetrics { close: Price(base.close.0 + 1), ..base.clone() }),
            ("volatility", WindowMetrics { volatility: Some(F64(0.000_123_5)), ..base.clone() }),
            ("volatility null", WindowMetrics { volatility: None, ..base.clone() }),
            // The same bytes moved between fields must not collide: the length prefix
            // and the NULL tags keep fields apart.
            ("open/close swapped", WindowMetrics { open: base.close, close: base.open, ..base.clone() }),
        ];
        let mut seen = std::collections::BTreeSet::from([base.digest()]);
        for (what, row) in changed {
            assert!(seen.insert(row.digest()), "changing {what} did not change the digest (or collided)");
        }
    }
}
