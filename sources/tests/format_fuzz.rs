//! Property tests of the NDJSON trade format:
//!
//! * `parse_line` never panics, on arbitrary bytes and on mutated valid lines, and what it
//!   emits is consistent (payloads are slices of the line, trades are valid);
//! * it calls a line `invalid_json` exactly when serde_json (made to refuse duplicate
//!   keys) fails to parse it;
//! * a flat trade with random field values gets the reason a naive reference computes
//!   from SPEC 2's rules;
//! * `write_flat_trade` / `write_finnhub_message` and `parse_line` round-trip.

use proptest::prelude::*;
use proptest::sample::Index;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::collections::HashSet;
use std::fmt;
use tradeflow_model::decimal::parse_json_number;
use tradeflow_model::{MAX_TS, MIN_TS, Price, Qty, RejectReason, Symbol, UNITS_LIMIT, ts_in_range};
use tradeflow_sources::format::{Item, RawTrade, parse_line, write_finnhub_message, write_flat_trade};

fn items(line: &[u8]) -> Vec<Item<'_>> {
    let mut out = Vec::new();
    parse_line(line, &mut |item| out.push(item));
    out
}

fn is_invalid_json(items: &[Item<'_>]) -> bool {
    items.iter().any(|item| matches!(item, Item::Reject(r) if r.reason == RejectReason::InvalidJson))
}

/// Checks what must hold for any line, valid or not.
fn check_invariants(line: &[u8], items: &[Item<'_>]) -> Result<(), TestCaseError> {
    let range = line.as_ptr_range();
    if is_invalid_json(items) {
        prop_assert_eq!(items.len(), 1);
    }
    for item in items {
        match item {
            Item::Trade(t) => {
                prop_assert!(Symbol::check(&t.symbol).is_ok());
                prop_assert!(t.price.0 > 0 && t.price.0 < UNITS_LIMIT);
                prop_assert!(t.volume.0 >= 0 && t.volume.0 < UNITS_LIMIT);
                prop_assert!(ts_in_range(t.ts));
                if let Some(c) = t.conditions {
                    let list: Result<Vec<String>, _> = serde_json::from_str(c);
                    prop_assert!(list.is_ok(), "conditions {c:?}");
                }
            }
            Item::Reject(r) => {
                let payload = r.payload.as_ptr_range();
                prop_assert!(range.start <= payload.start && payload.end <= range.end);
                prop_assert!(!r.detail.is_empty());
                prop_assert!(r.detail.chars().count() < 400, "{}", r.detail);
                if r.element == 0 && r.reason == RejectReason::InvalidJson {
                    prop_assert_eq!(r.payload, line);
                }
            }
            Item::Ping | Item::ServerError(_) => {}
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Random JSON text.

fn ws() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["", "", "", " ", "\t", "\n", "\r", " \r\n "])
}

/// A character and how to write it in a JSON string (1: `\u`, 2: a short escape if
/// there is one, 15: raw even when that is invalid, else raw when valid). With
/// `valid_only`, never 15.
fn string_char(valid_only: bool) -> impl Strategy<Value = (char, u8)> {
    let c = prop_oneof![
        6 => (0x20u8..0x7f).prop_map(char::from),
        1 => prop::sample::select(vec!['"', '\\', '/', '\n', '\t', '\u{0}', '\u{1f}']),
        1 => prop::sample::select(vec!['\u{7f}', '\u{85}', 'é', 'Ü', '€', '😀', '\u{feff}']),
        1 => any::<char>(),
    ];
    (c, 0u8..if valid_only { 15 } else { 16 })
}

fn encode_string(chars: &[(char, u8)]) -> String {
    let mut out = String::from("\"");
    for &(c, mode) in chars {
        let short = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '/' if mode == 2 => Some("\\/"),
            '\n' => Some("\\n"),
            '\t' => Some("\\t"),
            '\u{8}' => Some("\\b"),
            '\u{c}' => Some("\\f"),
            '\r' => Some("\\r"),
            _ => None,
        };
        let must_escape = (c as u32) < 0x20 || c == '"' || c == '\\';
        if mode == 15 {
            // Now and then a character that must be escaped is not: invalid JSON.
            out.push(c);
        } else if mode == 1 || (must_escape && short.is_none()) {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04X}"));
            }
        } else if let Some(short) = short.filter(|_| mode == 2 || must_escape) {
            out.push_str(short);
        } else {
            out.push(c);
        }
    }
    out.push('"');
    out
}

fn json_string(valid_only: bool) -> impl Strategy<Value = String> {
    prop::collection::vec(string_char(valid_only), 0..8).prop_map(|chars| encode_string(&chars))
}

fn json_number() -> impl Strategy<Value = String> {
    let int = prop_oneof![Just("0".to_string()), "[1-9][0-9]{0,21}"];
    let frac = prop::option::of("[0-9]{1,12}");
    let exp = prop::option::of(("[eE]", "[+-]?", "[0-9]{1,2}"));
    (any::<bool>(), int, frac, exp).prop_map(|(negative, int, frac, exp)| {
        let mut text = String::new();
        if negative {
            text.push('-');
        }
        text.push_str(&int);
        if let Some(frac) = frac {
            text.push('.');
            text.push_str(&frac);
        }
        if let Some((e, sign, digits)) = exp {
            text.push_str(&format!("{e}{sign}{digits}"));
        }
        text
    })
}

/// An object key: often one the trade parser knows, sometimes escaped.
fn key(valid_only: bool) -> impl Strategy<Value = Vec<(char, u8)>> {
    let known = prop::sample::select(vec!["s", "p", "v", "t", "c", "type", "data", "msg"]);
    prop_oneof![
        (known, prop::collection::vec(0u8..4, 4))
            .prop_map(|(k, modes)| k.chars().zip(modes.into_iter().cycle()).collect()),
        prop::collection::vec(string_char(valid_only), 0..4),
    ]
}

/// A JSON document without duplicate keys; with `valid_only`, a valid one.
fn json_value(valid_only: bool) -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("false".to_string()),
        json_number(),
        json_string(valid_only),
    ];
    leaf.prop_recursive(5, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec((inner.clone(), ws(), ws()), 0..6).prop_map(|elements| {
                let elements: Vec<String> = elements.iter().map(|(v, a, b)| format!("{a}{v}{b}")).collect();
                format!("[{}]", elements.join(","))
            }),
            prop::collection::vec((key(valid_only), inner, ws(), ws()), 0..6).prop_map(|members| {
                // No duplicate keys (compared decoded).
                let mut seen = HashSet::new();
                let members: Vec<String> = members
                    .iter()
                    .filter(|(k, ..)| seen.insert(k.iter().map(|(c, _)| *c).collect::<String>()))
                    .map(|(k, v, a, b)| format!("{a}{}{b}:{a}{v}{b}", encode_string(k)))
                    .collect();
                format!("{{{}}}", members.join(","))
            }),
        ]
    })
}

/// Replaces, inserts or deletes a few bytes.
fn mutate(mut bytes: Vec<u8>, edits: &[(Index, u8, u8)]) -> Vec<u8> {
    for (at, op, byte) in edits {
        let len = bytes.len();
        match op {
            0 if len > 0 => bytes[at.index(len)] = *byte,
            1 => bytes.insert(at.index(len + 1), *byte),
            _ if len > 0 => {
                bytes.remove(at.index(len));
            }
            _ => {}
        }
    }
    bytes
}

fn edits() -> impl Strategy<Value = Vec<(Index, u8, u8)>> {
    let byte = prop_oneof![prop::sample::select(b"{}[]:,\"\\ 0123456789-+.eEnultrfasNI\t\r\n".to_vec()), any::<u8>(),];
    prop::collection::vec((any::<Index>(), 0u8..3, byte), 0..4)
}

/// serde_json's opinion, made to refuse duplicate keys (serde_json keeps the last).
struct Strict;

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Strict, E> {
        Ok(Strict)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Strict, E> {
        Ok(Strict)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Strict, E> {
        Ok(Strict)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Strict, E> {
        Ok(Strict)
    }
    fn visit_str<E>(self, _: &str) -> Result<Strict, E> {
        Ok(Strict)
    }
    fn visit_unit<E>(self) -> Result<Strict, E> {
        Ok(Strict)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        while seq.next_element::<Strict>()?.is_some() {}
        Ok(Strict)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        let mut keys = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !keys.insert(key) {
                return Err(de::Error::custom("duplicate key"));
            }
            map.next_value::<Strict>()?;
        }
        Ok(Strict)
    }
}

/// Whether serde_json rejects `line`; `None` when its verdict does not apply (a number
/// beyond f64's range, which serde_json refuses and JSON allows).
fn serde_rejects(line: &[u8]) -> Option<bool> {
    match serde_json::from_slice::<Strict>(line) {
        Ok(Strict) => Some(false),
        Err(e) if e.to_string().contains("number out of range") => None,
        Err(_) => Some(true),
    }
}

fn blank(line: &[u8]) -> bool {
    line.iter().all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

// ---------------------------------------------------------------------------------------
// Random trades.

fn symbol() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "AAPL",
            "IC MARKETS:1",
            "KRAKEN:XBT/USD",
            "BINANCE:BTCUSDT",
            "OANDA:EUR_USD",
            "Ünïcödé",
            "A\"B\\C",
        ])
        .prop_map(String::from),
        "[A-Z:/._ \"\\\\-]{1,12}",
        "[^\\p{Cc}]{1,16}".prop_filter("at most 64 bytes", |s| s.len() <= 64),
    ]
}

fn units(min: i64) -> impl Strategy<Value = i64> {
    prop_oneof![
        min..UNITS_LIMIT,
        min..1_000,
        (min.max(1)..100_000_000i64).prop_map(|whole| whole * 100_000_000 % UNITS_LIMIT),
        Just(UNITS_LIMIT - 1),
        Just(min),
    ]
}

fn conditions() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop::collection::vec("[0-9A-Za-z \"é]{0,3}", 0..4))
        .prop_map(|list| list.map(|list| serde_json::to_string(&list).unwrap()))
}

type Trade = (String, Price, Qty, i64, Option<String>);

fn trade() -> impl Strategy<Value = Trade> {
    (symbol(), units(1), units(0), MIN_TS..MAX_TS, conditions()).prop_map(|(s, p, v, t, c)| (s, Price(p), Qty(v), t, c))
}

fn assert_trade(item: &Item<'_>, expected: &Trade, element: u32) -> Result<(), TestCaseError> {
    let (symbol, price, volume, ts, conditions) = expected;
    let wanted = |raw| RawTrade {
        symbol: symbol.as_str().into(),
        price: *price,
        volume: *volume,
        ts: *ts,
        conditions: conditions.as_deref(),
        element,
        raw,
    };
    match item {
        Item::Trade(t) => {
            // The raw record is itself a valid record giving the same trade.
            let mut again = Vec::new();
            parse_line(t.raw, &mut |i| again.push(i));
            prop_assert!(
                matches!(&again[..], [Item::Trade(u)] if u.ts == t.ts && u.price == t.price && u.symbol == t.symbol)
            );
            prop_assert_eq!(t, &wanted(t.raw))
        }
        other => prop_assert!(false, "expected {:?}, got {other:?}", wanted(b"")),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// A reference for the field checks of SPEC 2, written naively.

/// A value of the wrong JSON type for every field (or of the right one, badly).
fn odd_value() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["null", "true", "[]", "{}", "[\"1\"]", "\"1\"", "\"\"", "\"A\\u0001\"", "1.5"])
        .prop_map(String::from)
}

/// The value of `s`: mostly a symbol, valid or not, sometimes absent or mistyped.
fn s_value() -> impl Strategy<Value = Option<String>> {
    let value = prop_oneof![
        8 => symbol().prop_map(|s| serde_json::to_string(&s).unwrap()),
        1 => prop::sample::select(vec![
            "\"\"", "\"A\\u0001\"", "\"A\\u0085\"", "\"A\\t\"", "\"\u{7f}\"",
        ])
        .prop_map(String::from),
        1 => "\"[A-Z]{60,70}\"",
        1 => odd_value(),
    ];
    prop::option::weighted(0.95, value)
}

/// The value of `p` or `v`: mostly a number, in range or not.
fn amount_value() -> impl Strategy<Value = Option<String>> {
    let value = prop_oneof![
        4 => prop::sample::select(vec![
            "0", "-0", "-0.0", "1e-9", "-1e-9", "0.000000005", "0.000000015", "0.000000025",
            "1e400", "-1e400", "10000000000", "9999999999.99999999", "9999999999.999999995",
            "187.12", "1.8712e2", "100", "-1.5",
        ])
        .prop_map(String::from),
        4 => json_number(),
        4 => ("-?", "(0|[1-9][0-9]{0,10})", "(\\.[0-9]{1,10})?").prop_map(|(a, b, c)| format!("{a}{b}{c}")),
        1 => odd_value(),
    ];
    prop::option::weighted(0.97, value)
}

/// The value of `t`: mostly an integer near or in range.
fn ts_value() -> impl Strategy<Value = Option<String>> {
    let value = prop_oneof![
        6 => (946_684_790_000i64..4_102_444_810_000).prop_map(|t| t.to_string()),
        1 => (946_684_790_000i64..4_102_444_810_000).prop_map(|t| (-t).to_string()),
        2 => prop::sample::select(vec![
            "0", "-0", "946684799999", "946684800000", "4102444799999", "4102444800000",
            "1700000000000.0", "1.7e12", "9223372036854775807", "9223372036854775808",
            "99999999999999999999",
        ])
        .prop_map(String::from),
        1 => json_number(),
        1 => odd_value(),
    ];
    prop::option::weighted(0.97, value)
}

enum Expected {
    Reject(RejectReason),
    Trade(String, i64, i64, i64),
}

fn reference(s: Option<&str>, p: Option<&str>, v: Option<&str>, t: Option<&str>) -> Expected {
    use RejectReason::*;
    let is_string = |x: &str| x.starts_with('"');
    let is_number = |x: &str| x.starts_with(|c: char| c == '-' || c.is_ascii_digit());
    let is_integer = |x: &str| is_number(x) && !x.contains(['.', 'e', 'E']);
    let (Some(s), Some(p), Some(v), Some(t)) = (s, p, v, t) else {
        return Expected::Reject(MissingField);
    };
    if !is_string(s) || !is_number(p) || !is_number(v) || !is_integer(t) {
        return Expected::Reject(MissingField);
    }
    let symbol: String = serde_json::from_str(s).unwrap();
    if Symbol::check(&symbol).is_err() {
        return Expected::Reject(BadSymbol);
    }
    let price = parse_json_number(p.as_bytes()).unwrap();
    let price = match price.units {
        Some(u) if !price.negative && !price.zero && u > 0 && u < UNITS_LIMIT as u64 => u,
        _ => return Expected::Reject(BadPrice),
    };
    let volume = parse_json_number(v.as_bytes()).unwrap();
    let volume = match volume.units {
        Some(u) if !volume.negative && u < UNITS_LIMIT as u64 => u,
        _ => return Expected::Reject(BadVolume),
    };
    match t.parse::<i64>() {
        Ok(ts) if ts_in_range(ts) => Expected::Trade(symbol, price as i64, volume as i64, ts),
        _ => Expected::Reject(BadTimestamp),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn never_panics_on_arbitrary_bytes(line in prop::collection::vec(any::<u8>(), 0..200)) {
        let items = items(&line);
        check_invariants(&line, &items)?;
    }

    #[test]
    fn never_panics_on_mutated_lines(
        trades in prop::collection::vec(trade(), 1..4),
        flat in any::<bool>(),
        edits in edits(),
    ) {
        let mut line = Vec::new();
        if flat {
            let (s, p, v, t, c) = &trades[0];
            write_flat_trade(&mut line, s, *p, *v, *t, c.as_deref());
        } else {
            let refs: Vec<_> =
                trades.iter().map(|(s, p, v, t, c)| (s.as_str(), *p, *v, *t, c.as_deref())).collect();
            write_finnhub_message(&mut line, &refs);
        }
        line.pop(); // the newline
        let line = mutate(line, &edits);
        let items = items(&line);
        check_invariants(&line, &items)?;
    }

    #[test]
    fn valid_documents_are_valid_json(doc in json_value(true), pad in ws()) {
        let line = format!("{pad}{doc}{pad}").into_bytes();
        let items = items(&line);
        check_invariants(&line, &items)?;
        prop_assert!(!is_invalid_json(&items), "{:?}: {:?}", String::from_utf8_lossy(&line), items);
        // Without duplicate keys, the plain serde_json::Value agrees (numbers aside).
        if let Some(rejects) = serde_rejects(&line) {
            prop_assert!(!rejects);
            prop_assert!(serde_json::from_slice::<serde_json::Value>(&line).is_ok());
        }
    }

    #[test]
    fn invalid_json_iff_serde_json_fails(doc in json_value(false), pad in ws(), edits in edits()) {
        let line = mutate(format!("{pad}{doc}{pad}").into_bytes(), &edits);
        let items = items(&line);
        check_invariants(&line, &items)?;
        if blank(&line) {
            prop_assert!(items.is_empty());
        } else if let Some(rejects) = serde_rejects(&line) {
            prop_assert_eq!(
                is_invalid_json(&items),
                rejects,
                "{:?}: {:?}",
                String::from_utf8_lossy(&line),
                items
            );
        }
    }

    #[test]
    fn flat_trade_checks_follow_the_spec(
        s in s_value(),
        p in amount_value(),
        v in amount_value(),
        t in ts_value(),
        c in prop::option::of(prop::sample::select(vec!["null", "[]", "[\"1\",\"12\"]", "[1]", "\"x\""])),
        order in Just(vec!["s", "p", "v", "t", "c"]).prop_shuffle(),
    ) {
        let value = |key: &str| match key {
            "s" => s.as_deref(),
            "p" => p.as_deref(),
            "v" => v.as_deref(),
            "t" => t.as_deref(),
            _ => c,
        };
        let members: Vec<String> = order
            .iter()
            .filter_map(|k| value(k).map(|v| format!("\"{k}\":{v}")))
            .collect();
        let line = format!("{{{}}}", members.join(","));
        let items = items(line.as_bytes());
        check_invariants(line.as_bytes(), &items)?;
        prop_assert_eq!(items.len(), 1);
        match (reference(s.as_deref(), p.as_deref(), v.as_deref(), t.as_deref()), &items[0]) {
            (Expected::Reject(reason), Item::Reject(r)) => {
                prop_assert_eq!(r.reason, reason, "{}: {}", line, r.detail);
                prop_assert_eq!(r.payload, line.as_bytes());
            }
            (Expected::Trade(symbol, price, volume, ts), Item::Trade(trade)) => {
                prop_assert_eq!(&trade.symbol, &symbol);
                prop_assert_eq!((trade.price.0, trade.volume.0, trade.ts), (price, volume, ts));
                let conditions = c.filter(|c| c.starts_with("[") && !c.contains("1]"));
                prop_assert_eq!(trade.conditions, conditions);
            }
            (_, item) => prop_assert!(false, "{line}: unexpected {item:?}"),
        }
    }

    #[test]
    fn flat_trades_round_trip(trade in trade()) {
        let (s, p, v, t, c) = &trade;
        let mut line = Vec::new();
        write_flat_trade(&mut line, s, *p, *v, *t, c.as_deref());
        prop_assert_eq!(line.last(), Some(&b'\n'));
        let items = items(&line[..line.len() - 1]);
        prop_assert_eq!(items.len(), 1);
        assert_trade(&items[0], &trade, 0)?;
        // With the newline left on (a `\r` too), the line reads the same.
        line.insert(line.len() - 1, b'\r');
        let items_crlf = self::items(&line);
        prop_assert_eq!(items_crlf.len(), 1);
        assert_trade(&items_crlf[0], &trade, 0)?;
    }

    #[test]
    fn finnhub_messages_round_trip(trades in prop::collection::vec(trade(), 0..6)) {
        let refs: Vec<_> =
            trades.iter().map(|(s, p, v, t, c)| (s.as_str(), *p, *v, *t, c.as_deref())).collect();
        let mut line = Vec::new();
        write_finnhub_message(&mut line, &refs);
        let items = items(&line);
        prop_assert_eq!(items.len(), trades.len());
        for (i, (item, trade)) in items.iter().zip(&trades).enumerate() {
            assert_trade(item, trade, i as u32)?;
        }
    }
}
