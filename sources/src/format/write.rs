//! NDJSON writers for the encodings [`super::parse_line`] reads (SPEC 2).
//!
//! Prices and volumes are written as exact decimals without trailing zeros (`187.12`,
//! `0.00000001`, `100`), so reading a written line gives back the same 10^-8 units; the
//! symbol is escaped as a JSON string. Nothing here allocates beyond growing `out`.

use tradeflow_model::{Price, Qty};

/// Appends one flat trade line:
/// `{"s":"AAPL","p":187.12,"t":1700000000123,"v":100,"c":["1","12"]}` and `\n`
/// (`"c":null` when `conditions` is `None`). `conditions` must be the JSON text of an
/// array of strings (as [`super::RawTrade::conditions`] holds); it is written verbatim.
pub fn write_flat_trade(out: &mut Vec<u8>, symbol: &str, price: Price, volume: Qty, ts: i64, conditions: Option<&str>) {
    write_trade_object(out, symbol, price, volume, ts, conditions);
    out.push(b'\n');
}

/// Appends one Finnhub trade message line, `{"type":"trade","data":[{…},{…}]}` and `\n`,
/// with one element per `(symbol, price, volume, ts, conditions)` as in
/// [`write_flat_trade`].
pub fn write_finnhub_message(out: &mut Vec<u8>, trades: &[(&str, Price, Qty, i64, Option<&str>)]) {
    out.extend_from_slice(b"{\"type\":\"trade\",\"data\":[");
    for (i, (symbol, price, volume, ts, conditions)) in trades.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_trade_object(out, symbol, *price, *volume, *ts, *conditions);
    }
    out.extend_from_slice(b"]}\n");
}

fn write_trade_object(out: &mut Vec<u8>, symbol: &str, price: Price, volume: Qty, ts: i64, conditions: Option<&str>) {
    out.extend_from_slice(b"{\"s\":");
    push_json_string(out, symbol);
    out.extend_from_slice(b",\"p\":");
    push_units(out, price.units());
    out.extend_from_slice(b",\"t\":");
    push_integer(out, ts);
    out.extend_from_slice(b",\"v\":");
    push_units(out, volume.units());
    out.extend_from_slice(b",\"c\":");
    out.extend_from_slice(conditions.unwrap_or("null").as_bytes());
    out.push(b'}');
}

/// Appends `text` as a JSON string: `"` and `\` escaped, control characters below
/// U+0020 as `\n`-style or `\u00XX` escapes, everything else verbatim.
pub(crate) fn push_json_string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(bytes.get(run..i).unwrap_or(&[]));
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xf) as usize]);
        } else {
            out.extend_from_slice(escape);
        }
        run = i + 1;
    }
    out.extend_from_slice(bytes.get(run..).unwrap_or(&[]));
    out.push(b'"');
}

/// Appends an integer in decimal.
pub(crate) fn push_integer(out: &mut Vec<u8>, value: i64) {
    if value < 0 {
        out.push(b'-');
    }
    push_digits(out, value.unsigned_abs());
}

fn push_digits(out: &mut Vec<u8>, mut value: u64) {
    let mut buf = [0u8; 20];
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[start..]);
}

/// Appends `units` (10^-8) as an exact decimal without trailing zeros, as `Display` of
/// [`Price`] and [`Qty`] does: `18712000000` -> `187.12`.
pub(crate) fn push_units(out: &mut Vec<u8>, units: i64) {
    if units < 0 {
        out.push(b'-');
    }
    let abs = units.unsigned_abs();
    push_digits(out, abs / 100_000_000);
    let mut frac = abs % 100_000_000;
    if frac == 0 {
        return;
    }
    let mut len = 8;
    while frac.is_multiple_of(10) {
        frac /= 10;
        len -= 1;
    }
    let mut buf = [b'0'; 9];
    buf[0] = b'.';
    let mut i = len;
    while frac > 0 {
        buf[i] = b'0' + (frac % 10) as u8;
        frac /= 10;
        i -= 1;
    }
    out.extend_from_slice(&buf[..=len]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{Item, RawTrade, parse_line};

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn writes_the_spec_example() {
        let line = text(|out| {
            write_flat_trade(
                out,
                "AAPL",
                Price(18_712_000_000),
                Qty(10_000_000_000),
                1_700_000_000_123,
                Some(r#"["1","12"]"#),
            )
        });
        assert_eq!(line, "{\"s\":\"AAPL\",\"p\":187.12,\"t\":1700000000123,\"v\":100,\"c\":[\"1\",\"12\"]}\n");
        let line = text(|out| write_flat_trade(out, "X", Price(1), Qty(0), 0, None));
        assert_eq!(line, "{\"s\":\"X\",\"p\":0.00000001,\"t\":0,\"v\":0,\"c\":null}\n");
    }

    #[test]
    fn writes_a_finnhub_message() {
        let line = text(|out| {
            write_finnhub_message(
                out,
                &[("A", Price(100_000_000), Qty(1), 1, None), ("B", Price(250_000_000), Qty(5), -2, Some("[]"))],
            )
        });
        assert_eq!(
            line,
            "{\"type\":\"trade\",\"data\":[{\"s\":\"A\",\"p\":1,\"t\":1,\"v\":0.00000001,\"c\":null},\
             {\"s\":\"B\",\"p\":2.5,\"t\":-2,\"v\":0.00000005,\"c\":[]}]}\n"
        );
        assert_eq!(text(|out| write_finnhub_message(out, &[])), "{\"type\":\"trade\",\"data\":[]}\n");
    }

    #[test]
    fn units_match_display() {
        for units in [
            0,
            1,
            10,
            12_345_678,
            100_000_000,
            18_712_000_000,
            18_712_345_678,
            999_999_999_999_999_999,
            i64::MAX,
            -1,
            -150_000_000,
            i64::MIN,
        ] {
            let mut out = Vec::new();
            push_units(&mut out, units);
            assert_eq!(String::from_utf8(out).unwrap(), Price(units).to_string());
        }
        for value in [0, 7, -7, 1_700_000_000_123, i64::MAX, i64::MIN] {
            assert_eq!(text(|out| push_integer(out, value)), value.to_string());
        }
    }

    #[test]
    fn escapes_symbols() {
        assert_eq!(
            text(|out| push_json_string(out, "a\"b\\c\n\u{1}\u{1f}é\u{7f}")),
            "\"a\\\"b\\\\c\\n\\u0001\\u001fé\u{7f}\""
        );
        // An escaped symbol reads back as itself (here a bad one: the parser still
        // decodes it before rejecting it).
        let mut out = Vec::new();
        write_flat_trade(&mut out, "K\"Q\\", Price(1), Qty(1), 1_700_000_000_000, None);
        let mut items = Vec::new();
        parse_line(&out, &mut |item| items.push(item));
        assert!(matches!(
            &items[..],
            [Item::Trade(RawTrade { symbol, .. })] if symbol == "K\"Q\\"
        ));
    }
}
