//! Rejected records: why a record did not become a trade, with its raw payload.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a record was rejected (SPEC 2 and 6), in the order SPEC 2 lists them. (The
/// checks themselves run: fields present, then `s`, `p`, `v`, `t`, then lateness.)
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RejectReason {
    /// Not valid JSON: syntax, `NaN`/`Infinity`, invalid UTF-8, a lone surrogate, a
    /// duplicate key.
    InvalidJson,
    /// A required field is absent, null or of the wrong JSON type.
    MissingField,
    /// The price is not > 0 (before and after rounding to 8 places) or not below 10^10.
    BadPrice,
    /// The volume is negative or not below 10^10.
    BadVolume,
    /// The timestamp is outside 2000-01-01 .. 2100-01-01.
    BadTimestamp,
    /// The symbol is empty, longer than 64 bytes, or has a control character.
    BadSymbol,
    /// The trade's time is below its partition's watermark when it arrives.
    Late,
}

impl RejectReason {
    /// Every reason, in check order.
    pub const ALL: [RejectReason; 7] = [
        RejectReason::InvalidJson,
        RejectReason::MissingField,
        RejectReason::BadPrice,
        RejectReason::BadVolume,
        RejectReason::BadTimestamp,
        RejectReason::BadSymbol,
        RejectReason::Late,
    ];

    /// The reason as written in outputs and metrics (`bad_price`).
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::InvalidJson => "invalid_json",
            RejectReason::MissingField => "missing_field",
            RejectReason::BadPrice => "bad_price",
            RejectReason::BadVolume => "bad_volume",
            RejectReason::BadTimestamp => "bad_timestamp",
            RejectReason::BadSymbol => "bad_symbol",
            RejectReason::Late => "late",
        }
    }

    /// The index of the reason in [`RejectReason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected record's bytes, exactly as read. Shown as text; bytes that are not valid
/// UTF-8 are kept as they are besides (the text then has U+FFFD in their place), so that
/// the original can always be recovered.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Payload {
    text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    raw: Option<Vec<u8>>,
}

impl Payload {
    /// The payload of `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Payload {
        match std::str::from_utf8(bytes) {
            Ok(text) => Payload { text: text.to_owned(), raw: None },
            Err(_) => Payload { text: String::from_utf8_lossy(bytes).into_owned(), raw: Some(bytes.to_vec()) },
        }
    }

    /// As text: exact when the bytes are valid UTF-8, else with U+FFFD for invalid bytes.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The exact bytes when they are not valid UTF-8 (else [`Payload::text`] is exact).
    pub fn invalid_utf8(&self) -> Option<&[u8]> {
        self.raw.as_deref()
    }

    /// The exact bytes.
    pub fn bytes(&self) -> &[u8] {
        self.raw.as_deref().unwrap_or(self.text.as_bytes())
    }
}

impl From<String> for Payload {
    fn from(text: String) -> Payload {
        Payload { text, raw: None }
    }
}

/// A rejected record, as written to the dead-letter output.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Reject {
    /// Why it was rejected.
    pub reason: RejectReason,
    /// What exactly was wrong and how to fix it, e.g. `field "p": -1.5 is not > 0`.
    pub detail: String,
    /// The raw record (the line, or the element of a Finnhub message), exactly.
    pub payload: Payload,
    /// The source partition it came from, e.g. `file:///data/trades.ndjson`.
    pub source: String,
    /// Position inside the partition: byte offset of the line for files, sequence number
    /// for the simulator, offset for Kafka.
    pub position: u64,
    /// Index of the element inside a Finnhub message's `data` array (0 otherwise).
    pub element: u32,
    /// The unit of input the record was read in, by its first position: the chunk of a
    /// file, a range of sequence numbers of a simulator stream. Dead-letter files are cut
    /// at these boundaries, which do not depend on the worker count, so their names and
    /// contents do not either.
    pub segment: u64,
    /// Wall-clock time it was received, ms since the epoch.
    pub received_at: i64,
}
