//! Object names in the lake: Hive-style partitions with percent-encoded values.
//!
//! Partition values are escaped exactly as Hive and Spark do (`FileUtils.escapePathName`):
//! control characters and `"#%'*/:=?\{[]^` and DEL become `%XX` (upper-case hex); spaces
//! and other characters stay as they are. So `BINANCE:BTCUSDT` is stored under
//! `symbol=BINANCE%3ABTCUSDT` and `IC MARKETS:1` under `symbol=IC MARKETS%3A1`; DuckDB,
//! pyarrow and Spark decode the value when they read the partition.

use std::fmt::Write;

/// Escapes a partition value the way Hive and Spark do.
pub fn escape_partition_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        let escape = matches!(
            c,
            '\u{0}'
                ..='\u{1f}'
                    | '"'
                    | '#'
                    | '%'
                    | '\''
                    | '*'
                    | '/'
                    | ':'
                    | '='
                    | '?'
                    | '\\'
                    | '\u{7f}'
                    | '{'
                    | '['
                    | ']'
                    | '^'
                    | '}'
        );
        if escape {
            let _ = write!(out, "%{:02X}", c as u32);
        } else if c.is_control() {
            // C1 controls: escape each UTF-8 byte, keeping paths free of control characters.
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "%{b:02X}");
            }
        } else {
            out.push(c);
        }
    }
    if out.is_empty() { "__HIVE_DEFAULT_PARTITION__".to_owned() } else { out }
}

/// `name=escaped(value)`.
pub fn partition(name: &str, value: &str) -> String {
    format!("{name}={}", escape_partition_value(value))
}

/// A name for a file that stays readable and safe in any store: letters, digits and
/// `-_.` kept, everything else `_`, at most 48 characters.
pub fn file_safe(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).take(48).collect()
}

/// The hour bucket of a millisecond timestamp, as used in file names: `20231114T22`.
pub fn hour_label(ts: i64) -> String {
    let date = tradeflow_model::date_of(ts).replace('-', "");
    let hour = ts.rem_euclid(86_400_000) / 3_600_000;
    format!("{date}T{hour:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_hive() {
        assert_eq!(partition("symbol", "BINANCE:BTCUSDT"), "symbol=BINANCE%3ABTCUSDT");
        assert_eq!(partition("symbol", "IC MARKETS:1"), "symbol=IC MARKETS%3A1");
        assert_eq!(partition("symbol", "KRAKEN:XBT/USD"), "symbol=KRAKEN%3AXBT%2FUSD");
        assert_eq!(partition("symbol", "BRK.B"), "symbol=BRK.B");
        assert_eq!(partition("symbol", "100%=x"), "symbol=100%25%3Dx");
        assert_eq!(partition("symbol", "é"), "symbol=é");
    }

    #[test]
    fn labels_hours() {
        assert_eq!(hour_label(1_700_000_000_123), "20231114T22");
        assert_eq!(file_safe("file:///data/in put.ndjson"), "file____data_in_put.ndjson");
    }
}
