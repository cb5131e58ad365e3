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

/// Undoes [`escape_partition_value`]: `%XX` sequences become their bytes.
pub fn unescape_partition_value(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (bytes.get(i + 1).and_then(|b| hex(*b)), bytes.get(i + 2).and_then(|b| hex(*b)))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A file of the trades dataset, from its object name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TradesFile {
    /// The object name, relative to the lake root.
    pub key: String,
    /// The symbol (decoded), or `None` in the by-hour layout (`hour=HH`), whose files
    /// hold every symbol.
    pub symbol: Option<String>,
    /// Start of the UTC hour its trades fall in, ms.
    pub hour: i64,
    /// Index of the file within the hour.
    pub index: u32,
}

/// Reads `trades/date=D/symbol=S/YYYYMMDDTHH-NNNN.parquet`; `None` for anything else.
pub fn parse_trades_key(key: &str) -> Option<TradesFile> {
    let mut parts = key.strip_prefix("trades/")?.split('/');
    let _date = parts.next()?.strip_prefix("date=")?;
    let second = parts.next()?;
    let symbol = match second.strip_prefix("symbol=") {
        Some(symbol) => Some(unescape_partition_value(symbol)),
        None => {
            second.strip_prefix("hour=")?;
            None
        }
    };
    let name = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    let (hour, index) = parse_hour_file_name(name)?;
    Some(TradesFile { key: key.to_owned(), symbol, hour, index })
}

/// Reads `<dataset>/date=D/YYYYMMDDTHH-NNNN.parquet` (a file of `window_metrics` or
/// `anomalies`, holding the rows of the windows starting in that UTC hour): the hour's
/// start in ms and the file's index; `None` for anything else.
pub fn parse_result_key(dataset: &str, key: &str) -> Option<(i64, u32)> {
    let mut parts = key.strip_prefix(dataset)?.strip_prefix('/')?.split('/');
    parts.next()?.strip_prefix("date=")?;
    let name = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    parse_hour_file_name(name)
}

/// `YYYYMMDDTHH-NNNN.parquet`: the hour's start (ms) and the index.
fn parse_hour_file_name(name: &str) -> Option<(i64, u32)> {
    let name = name.strip_suffix(".parquet")?;
    let (label, index) = name.split_once('-')?;
    let (day, hour) = label.split_once('T')?;
    if day.len() != 8 || hour.len() != 2 {
        return None;
    }
    let (y, m, d): (i64, u32, u32) = (day[..4].parse().ok()?, day[4..6].parse().ok()?, day[6..].parse().ok()?);
    let hour: i64 = hour.parse().ok()?;
    let days = days_from_civil(y, m, d)?;
    Some((days * 86_400_000 + hour * 3_600_000, index.parse().ok()?))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> Option<i64> {
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
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
    fn trades_keys_round_trip() {
        for symbol in ["BINANCE:BTCUSDT", "IC MARKETS:1", "KRAKEN:XBT/USD", "100%=x", "é"] {
            assert_eq!(unescape_partition_value(&escape_partition_value(symbol)), symbol);
            let key = format!(
                "trades/date=2023-11-14/{}/{}-0003.parquet",
                partition("symbol", symbol),
                hour_label(1_700_000_000_123)
            );
            let file = parse_trades_key(&key).unwrap();
            assert_eq!((file.symbol.as_deref(), file.hour, file.index), (Some(symbol), 1_699_999_200_000, 3));
        }
        let file = parse_trades_key("trades/date=2023-11-14/hour=22/20231114T22-0001.parquet").unwrap();
        assert_eq!((file.symbol, file.hour, file.index), (None, 1_699_999_200_000, 1));
        assert_eq!(parse_trades_key("trades/date=2023-11-14/symbol=A/.tmp"), None);
        assert_eq!(parse_trades_key("window_metrics/date=2023-11-14/20231114T22-0000.parquet"), None);
        let key = "window_metrics/date=2023-11-14/20231114T22-0002.parquet";
        assert_eq!(parse_result_key("window_metrics", key), Some((1_699_999_200_000, 2)));
        assert_eq!(parse_result_key("anomalies", key), None);
        assert_eq!(parse_result_key("window_metrics", "window_metrics/date=2023-11-14/x.parquet"), None);
    }

    #[test]
    fn labels_hours() {
        assert_eq!(hour_label(1_700_000_000_123), "20231114T22");
        assert_eq!(file_safe("file:///data/in put.ndjson"), "file____data_in_put.ndjson");
    }
}
