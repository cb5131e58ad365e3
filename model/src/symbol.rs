//! Instrument symbols.
//!
//! SPEC 2: a symbol is UTF-8, 1..=64 bytes, without Unicode control characters (C0,
//! DEL, C1). It may contain `:` `/` `.` `_` `-` and spaces (`BINANCE:BTCUSDT`,
//! `OANDA:EUR_USD`, `KRAKEN:XBT/USD`, `IC MARKETS:1`). Symbols up to 24 bytes are stored
//! inline, so the common case allocates nothing per trade.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::hash::Hasher;

/// Maximum length of a symbol in bytes.
pub const MAX_SYMBOL_BYTES: usize = 64;

/// A validated instrument symbol.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Symbol(CompactString);

/// Why a string is not a valid symbol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SymbolError {
    /// The symbol is the empty string.
    #[error("symbol is empty; a symbol has 1 to 64 bytes")]
    Empty,
    /// The symbol is longer than 64 bytes.
    #[error("symbol is {0} bytes long; a symbol has at most 64 bytes")]
    TooLong(usize),
    /// The symbol contains a control character.
    #[error("symbol contains the control character U+{0:04X}; control characters are not allowed")]
    Control(u32),
}

impl Symbol {
    /// Validates `text` as a symbol.
    pub fn parse(text: &str) -> Result<Symbol, SymbolError> {
        Self::check(text)?;
        Ok(Symbol(CompactString::new(text)))
    }

    /// Checks `text` against the symbol rules without building a symbol.
    pub fn check(text: &str) -> Result<(), SymbolError> {
        if text.is_empty() {
            return Err(SymbolError::Empty);
        }
        if text.len() > MAX_SYMBOL_BYTES {
            return Err(SymbolError::TooLong(text.len()));
        }
        // ASCII fast path: only C0 and DEL are control characters below 0x80.
        if text.is_ascii() {
            if let Some(b) = text.bytes().find(|b| *b < 0x20 || *b == 0x7f) {
                return Err(SymbolError::Control(b as u32));
            }
            return Ok(());
        }
        match text.chars().find(|c| c.is_control()) {
            Some(c) => Err(SymbolError::Control(c as u32)),
            None => Ok(()),
        }
    }

    /// The symbol text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// A stable 64-bit hash of the symbol, the same in every process and run, used to
    /// route a symbol's data to the worker that owns it.
    pub fn route(&self) -> u64 {
        route_hash(self.as_str())
    }
}

/// The stable routing hash of a symbol's text (see [`Symbol::route`]).
pub fn route_hash(text: &str) -> u64 {
    let mut hasher = rustc_hash::FxHasher::default();
    hasher.write(text.as_bytes());
    // FxHash mixes weakly in its low bits; fold the high bits in before `% peers`.
    let h = hasher.finish();
    h ^ (h >> 29) ^ (h >> 47)
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AsRef<str> for Symbol {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_exchange_prefixed_and_spaced_symbols() {
        for s in ["AAPL", "BINANCE:BTCUSDT", "OANDA:EUR_USD", "IC MARKETS:1", "KRAKEN:XBT/USD", "BRK.B", "Ünïcödé"]
        {
            assert_eq!(Symbol::parse(s).unwrap().as_str(), s);
        }
        assert!(Symbol::parse(&"X".repeat(64)).is_ok());
    }

    #[test]
    fn rejects_empty_long_and_control_characters() {
        assert_eq!(Symbol::parse(""), Err(SymbolError::Empty));
        assert_eq!(Symbol::parse(&"X".repeat(65)), Err(SymbolError::TooLong(65)));
        assert_eq!(Symbol::parse("A\tB"), Err(SymbolError::Control(9)));
        assert_eq!(Symbol::parse("A\u{7f}"), Err(SymbolError::Control(0x7f)));
        assert_eq!(Symbol::parse("A\u{85}"), Err(SymbolError::Control(0x85)));
        // 64 bytes of two-byte characters is 32 characters: fine; 65 bytes is not.
        assert!(Symbol::parse(&"é".repeat(32)).is_ok());
        assert!(matches!(Symbol::parse(&format!("{}x", "é".repeat(32))), Err(SymbolError::TooLong(65))));
    }

    #[test]
    fn route_is_stable() {
        // Pinned: the routing hash must never change between releases or processes.
        assert_eq!(route_hash("AAPL"), route_hash("AAPL"));
        assert_ne!(route_hash("AAPL"), route_hash("MSFT"));
    }
}
