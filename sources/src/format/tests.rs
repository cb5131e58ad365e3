//! Unit tests of `parse_line`: every reject reason, the check order, the JSON strictness
//! rules and the Finnhub message forms.

use super::*;
use std::borrow::Cow;
use tradeflow_model::{Price, Qty, RejectReason};

use RejectReason::{BadPrice, BadSymbol, BadTimestamp, BadVolume, InvalidJson, MissingField};

const TS: i64 = 1_700_000_000_123;

fn items(line: &[u8]) -> Vec<Item<'_>> {
    let mut out = Vec::new();
    parse_line(line, &mut |item| out.push(item));
    out
}

fn one(line: &[u8]) -> Item<'_> {
    let mut all = items(line);
    assert_eq!(all.len(), 1, "{:?}: {all:?}", String::from_utf8_lossy(line));
    all.remove(0)
}

fn trade(line: &str) -> RawTrade<'_> {
    match one(line.as_bytes()) {
        Item::Trade(t) => t,
        other => panic!("{line:?}: {other:?}"),
    }
}

fn rejected(line: &[u8]) -> RawReject<'_> {
    match one(line) {
        Item::Reject(r) => r,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(line)),
    }
}

fn reason(line: &str) -> RejectReason {
    rejected(line.as_bytes()).reason
}

fn detail(line: &str) -> String {
    rejected(line.as_bytes()).detail
}

/// A flat trade with `field` set to `value` (`None` leaves it out).
fn flat(fields: &[(&str, Option<&str>)]) -> String {
    let mut members =
        vec![("s", Some(r#""AAPL""#)), ("p", Some("187.12")), ("t", Some("1700000000123")), ("v", Some("100"))];
    for (key, value) in fields {
        match members.iter_mut().find(|(k, _)| k == key) {
            Some(member) => member.1 = *value,
            None => members.push((key, *value)),
        }
    }
    let members: Vec<String> = members.iter().filter_map(|(k, v)| v.map(|v| format!("\"{k}\":{v}"))).collect();
    format!("{{{}}}", members.join(","))
}

fn with(key: &str, value: &str) -> String {
    flat(&[(key, Some(value))])
}

#[test]
fn reads_the_spec_examples() {
    let line = r#"{"s":"AAPL","p":187.12,"t":1700000000123,"v":100,"c":["1","12"]}"#;
    assert_eq!(
        trade(line),
        RawTrade {
            symbol: Cow::Borrowed("AAPL"),
            price: Price(18_712_000_000),
            volume: Qty(10_000_000_000),
            ts: TS,
            conditions: Some(r#"["1","12"]"#),
            element: 0,
            raw: line.as_bytes(),
        }
    );
    let t = trade(r#"{"s":"AAPL","p":187.12,"t":1700000000123,"v":100,"c":null}"#);
    assert_eq!(t.conditions, None);
    let message = format!(r#"{{"type":"trade","data":[{line}, {line}]}}"#);
    let all = items(message.as_bytes());
    assert_eq!(all.len(), 2);
    for (i, item) in all.iter().enumerate() {
        match item {
            Item::Trade(t) => {
                assert_eq!(t.element, i as u32);
                assert_eq!(t.price, Price(18_712_000_000));
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_byte_order_mark_before_the_first_line_is_skipped() {
    let line = format!("\u{FEFF}{}", flat(&[]));
    assert_eq!(trade(&line).ts, TS);
    assert!(items("\u{FEFF}".as_bytes()).is_empty());
    // Only a whole mark, and only before the line.
    assert_eq!(reason(&format!("\u{FEFF}\u{FEFF}{}", flat(&[]))), RejectReason::InvalidJson);
    let mut cut = "\u{FEFF}".as_bytes()[..2].to_vec();
    cut.extend_from_slice(flat(&[]).as_bytes());
    assert_eq!(rejected(&cut).reason, RejectReason::InvalidJson);
    // A rejected line is dead-lettered as it came, mark included (the fuzz test's
    // invariant found `\u{FEFF}" ` rejected without its mark).
    let line = "\u{FEFF}\" ".as_bytes();
    assert_eq!(rejected(line).payload, line);
}

#[test]
fn blank_lines_emit_nothing() {
    for line in ["", " ", "\r", " \t\r\n ", "\n"] {
        assert!(items(line.as_bytes()).is_empty(), "{line:?}");
    }
    let line = format!("  {}\r", flat(&[]));
    assert_eq!(trade(&line).ts, TS);
}

#[test]
fn symbols_are_decoded_and_borrowed_when_plain() {
    let line = with("s", r#""IC MARKETS:1""#);
    let t = trade(&line);
    assert!(matches!(t.symbol, Cow::Borrowed("IC MARKETS:1")));
    let line = with("s", r#""KRAKEN:XBT\/USD""#);
    let t = trade(&line);
    assert!(matches!(t.symbol, Cow::Owned(ref s) if s == "KRAKEN:XBT/USD"));
    assert_eq!(trade(&with("s", r#""\u00dcn\u00efc\u00f6d\u00e9""#)).symbol, "Ünïcödé");
    assert_eq!(trade(&with("s", r#""\ud83d\ude00""#)).symbol, "\u{1F600}");
    assert_eq!(trade(&with("s", "\"Ünïcödé\"")).symbol, "Ünïcödé");
}

#[test]
fn keys_are_compared_after_decoding_escapes() {
    let line = r#"{"\u0073":"AAPL","\u0070":1,"t":1700000000123,"\u0076":2}"#;
    let t = trade(line);
    assert_eq!((t.price, t.volume), (Price(100_000_000), Qty(200_000_000)));
    let line = r#"{"type":"trade","data":[{"s":"A","p":1,"t":1700000000123,"v":0,"s":"B"}]}"#;
    let r = rejected(line.as_bytes());
    assert_eq!(r.reason, InvalidJson);
    assert_eq!(r.payload, line.as_bytes());
    assert!(r.detail.contains("duplicate key \"s\""), "{}", r.detail);
    let r = rejected(br#"{"p":1,"\u0070":2}"#);
    assert_eq!(r.reason, InvalidJson);
    assert!(r.detail.contains("duplicate key \"p\""), "{}", r.detail);
    // The escaped key "\u0074ype" is "type": a Finnhub message.
    assert_eq!(one(br#"{"\u0074ype":"ping"}"#), Item::Ping);
}

#[test]
fn duplicate_keys_at_any_depth_are_invalid_json() {
    for extra in [r#"{"a":1,"a":2}"#, r#"[{"a":{"b":1,"b":2}}]"#, r#"{"x":[1,{"k":1,"\u006B":2}]}"#] {
        assert_eq!(reason(&with("extra", extra)), InvalidJson, "{extra}");
    }
    let line = r#"{"x":1,"s":"AAPL","p":1,"x":1700000000123,"v":1}"#;
    assert_eq!(reason(line), InvalidJson);
    // The same key in different objects is fine.
    let line = with("extra", r#"{"s":1,"p":{"s":2}}"#);
    let t = trade(&line);
    assert_eq!(t.symbol, "AAPL");
    let line = r#"{"type":"trade","data":[],"type":"ping"}"#;
    assert_eq!(reason(line), InvalidJson);
}

#[test]
fn invalid_json_rejects_the_whole_line() {
    for line in [
        "{",
        "{}}",
        r#"{"s":"AAPL"} {"s":"AAPL"}"#,
        r#"{"s":"AAPL","p":NaN,"t":1700000000123,"v":1}"#,
        r#"{"s":"AAPL","p":Infinity,"t":1700000000123,"v":1}"#,
        r#"{"s":"AAPL","p":-Infinity,"t":1700000000123,"v":1}"#,
        r#"{"s":"AAPL","p":01,"t":1700000000123,"v":1}"#,
        r#"{"s":"AAPL","p":1,"t":1700000000123,"v":1,}"#,
        r#"{"s":"AAPL","p":1,"t":1700000000123,"v":.5}"#,
        r#"{"s":"AAPL","p":+1,"t":1700000000123,"v":1}"#,
        r#"{"s":"AAPL","p":1,"t":1700000000123,"v":1} // comment"#,
        r#"{'s':"AAPL"}"#,
        "{\"s\":\"AA\tPL\",\"p\":1,\"t\":1700000000123,\"v\":1}",
        r#"{"s":"AAPL","c":["1",]}"#,
        r#"{"s" "AAPL"}"#,
        r#"[1,2"#,
    ] {
        let r = rejected(line.as_bytes());
        assert_eq!(r.reason, InvalidJson, "{line}");
        assert_eq!(r.payload, line.as_bytes());
        assert_eq!(r.element, 0);
    }
    assert_eq!(detail(r#"{"s" "AAPL"}"#), "invalid JSON at byte 5: expected ':' after an object key");
    assert_eq!(detail(r#"{"p":01}"#), "invalid JSON at byte 6: a JSON number has no leading zeros");
    // Every C0 control character must be escaped inside a string; DEL and C1 need not.
    for control in 0u8..0x20 {
        let line = format!("{{\"x\":\"a{}b\"}}", control as char);
        assert_eq!(reason(&line), InvalidJson, "{control:#x}");
    }
    let line = "{\"x\":\"a\u{7f}\u{85}b\"}";
    assert_eq!(reason(line), MissingField);
    // A good element does not survive an invalid line.
    let good = flat(&[]);
    let line = format!(r#"{{"type":"trade","data":[{good},{{"s":"X","p":NaN}}]}}"#);
    assert_eq!(reason(&line), InvalidJson);
}

#[test]
fn invalid_utf8_anywhere_is_invalid_json() {
    let mut line = flat(&[]).into_bytes();
    line[7] = 0xff; // inside the symbol
    let r = rejected(&line);
    assert_eq!(r.reason, InvalidJson);
    assert!(r.detail.contains("UTF-8 at byte 7"), "{}", r.detail);
    let mut line = with("x", "\"ab\"").into_bytes();
    line.extend_from_slice(b" \xc3"); // truncated sequence after the value
    assert_eq!(rejected(&line).reason, InvalidJson);
    let line = b"{\"s\":\"\xed\xa0\x80\",\"p\":1,\"t\":1700000000123,\"v\":1}"; // UTF-8 surrogate
    assert_eq!(rejected(line).reason, InvalidJson);
}

#[test]
fn lone_surrogates_are_invalid_json() {
    for symbol in
        [r#""\ud83d""#, r#""A\ud83dB""#, r#""\ud83d\u0041""#, r#""\ude00""#, r#""\ude00\ud83d""#, r#""\ud83d\ud83d""#]
    {
        assert_eq!(reason(&with("s", symbol)), InvalidJson, "{symbol}");
        assert_eq!(reason(&with("other", symbol)), InvalidJson, "{symbol}");
    }
}

#[test]
fn nesting_is_capped_at_128() {
    // The top-level object is depth 1: 127 more arrays inside it is the limit.
    let deep = |n: usize| with("x", &format!("{}{}", "[".repeat(n), "]".repeat(n)));
    assert_eq!(trade(&deep(127)).symbol, "AAPL");
    assert_eq!(reason(&deep(128)), InvalidJson);
    assert!(detail(&deep(128)).contains("nested more than 128 deep"));
    // A depth bomb is rejected without overflowing the stack.
    for bomb in ["[".repeat(1_000_000), "{\"a\":".repeat(300_000), "[{\"a\":".repeat(200_000)] {
        assert_eq!(reason(&bomb), InvalidJson);
    }
}

#[test]
fn missing_or_mistyped_fields() {
    for field in ["s", "p", "v", "t"] {
        let absent = flat(&[(field, None)]);
        assert_eq!(reason(&absent), MissingField, "{absent}");
        assert_eq!(detail(&absent), format!("field \"{field}\" is missing"));
        let null = with(field, "null");
        assert_eq!(reason(&null), MissingField);
        assert_eq!(detail(&null), format!("field \"{field}\" is null"));
        for wrong in ["true", "[]", "{}", r#"["AAPL"]"#] {
            assert_eq!(reason(&with(field, wrong)), MissingField, "{field}: {wrong}");
        }
    }
    assert_eq!(reason(&with("s", "12")), MissingField);
    assert_eq!(detail(&with("s", "12")), "field \"s\": 12 is not a string");
    assert_eq!(reason(&with("p", r#""187.12""#)), MissingField);
    assert_eq!(reason(&with("v", r#""100""#)), MissingField);
    assert_eq!(reason(&with("t", r#""1700000000123""#)), MissingField);
    // `t` must be a JSON integer.
    for t in ["1700000000000.0", "1.7e12", "1700000000000E0", "17e11"] {
        assert_eq!(reason(&with("t", t)), MissingField, "{t}");
    }
    assert_eq!(detail(&with("t", "1700000000000.0")), "field \"t\": 1700000000000.0 is not a JSON integer");
    // Not an object.
    for line in ["[]", "1", r#""AAPL""#, "null", "[{\"s\":\"AAPL\"}]"] {
        assert_eq!(reason(line), MissingField, "{line}");
    }
    // The first field in s, p, v, t order is named.
    let line = flat(&[("s", None), ("t", Some("1.5"))]);
    assert_eq!(detail(&line), "field \"s\" is missing");
}

#[test]
fn bad_symbols() {
    for s in [r#""""#, r#""A\tB""#, r#""A\u0000""#, r#""A\u007f""#, "\"A\u{7f}\"", r#""A\u0085""#, "\"A\u{85}\""] {
        assert_eq!(reason(&with("s", s)), BadSymbol, "{s}");
    }
    let long = format!("\"{}\"", "X".repeat(65));
    assert_eq!(reason(&with("s", &long)), BadSymbol);
    let long_detail = detail(&with("s", &long));
    assert!(long_detail.contains("…"), "{long_detail}");
    assert!(long_detail.len() < 160, "{long_detail}");
    let max = format!("\"{}\"", "é".repeat(32));
    assert_eq!(trade(&with("s", &max)).symbol.len(), 64);
}

#[test]
fn bad_prices() {
    for p in [
        "-1.5",
        "0",
        "-0",
        "0.0",
        "0e5",
        "1e-9",
        "0.000000004",
        "0.000000005", // half-even: 0.5 units -> 0
        "-1e-9",
        "1e400",
        "-1e400",
        "10000000000",
        "9999999999.999999995", // rounds up to 10^10
        "1e10",
        "123456789012345678901234567890",
    ] {
        assert_eq!(reason(&with("p", p)), BadPrice, "{p}");
    }
    assert_eq!(detail(&with("p", "-1.5")), "field \"p\": -1.5 is not > 0");
    assert_eq!(detail(&with("p", "1e-9")), "field \"p\": 1e-9 is not > 0 once rounded to 8 decimal places");
    assert_eq!(detail(&with("p", "1e400")), "field \"p\": 1e400 is not below 10^10");
    for (p, units) in [
        ("9999999999.99999999", 999_999_999_999_999_999),
        ("9999999999.999999994", 999_999_999_999_999_999),
        ("0.000000006", 1),
        ("0.000000015", 2), // 1.5 -> 2
        ("0.000000025", 2), // 2.5 -> 2
        ("187.123456785", 18_712_345_678),
        ("187.123456795", 18_712_345_680),
        ("1.8712e2", 18_712_000_000),
        ("18712E-2", 18_712_000_000),
        ("0.1", 10_000_000),
        ("1", 100_000_000),
    ] {
        assert_eq!(trade(&with("p", p)).price, Price(units), "{p}");
    }
}

#[test]
fn bad_volumes() {
    for v in ["-1", "-1e-9", "-0.000000001", "1e400", "10000000000", "-1e400"] {
        assert_eq!(reason(&with("v", v)), BadVolume, "{v}");
    }
    assert_eq!(detail(&with("v", "-1e-9")), "field \"v\": -1e-9 is negative");
    for (v, units) in [
        ("0", 0),
        ("-0", 0),
        ("-0.0", 0),
        ("0e-3", 0),
        ("1e-9", 0), // positive, rounds to 0: a zero volume
        ("0.5", 50_000_000),
        ("9999999999.99999999", 999_999_999_999_999_999),
    ] {
        assert_eq!(trade(&with("v", v)).volume, Qty(units), "{v}");
    }
}

#[test]
fn bad_timestamps() {
    for t in [
        "0",
        "-0",
        "-5",
        "946684799999",
        "4102444800000",
        "-1700000000123",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775809",
        "99999999999999999999999999",
    ] {
        assert_eq!(reason(&with("t", t)), BadTimestamp, "{t}");
    }
    assert_eq!(trade(&with("t", "946684800000")).ts, 946_684_800_000);
    assert_eq!(trade(&with("t", "4102444799999")).ts, 4_102_444_799_999);
}

#[test]
fn checks_run_in_spec_order() {
    let cases = [
        (flat(&[("s", Some(r#""""#)), ("p", Some("-1"))]), BadSymbol),
        (flat(&[("t", None), ("p", Some("-1"))]), MissingField),
        (flat(&[("t", Some("1.5")), ("s", Some(r#""""#))]), MissingField),
        (flat(&[("v", Some("null")), ("s", Some(r#""""#))]), MissingField),
        (flat(&[("p", Some("0")), ("v", Some("-1"))]), BadPrice),
        (flat(&[("v", Some("-1")), ("t", Some("0"))]), BadVolume),
        (flat(&[("p", Some("1e400")), ("t", Some("0"))]), BadPrice),
        (flat(&[("s", Some(r#""\u0001""#)), ("t", Some("0"))]), BadSymbol),
    ];
    for (line, expected) in cases {
        assert_eq!(reason(&line), expected, "{line}");
    }
}

#[test]
fn conditions_are_kept_only_as_arrays_of_strings() {
    for (c, expected) in [
        (r#"["1","12"]"#, Some(r#"["1","12"]"#)),
        ("[]", Some("[]")),
        (r#"[ "a" , "\u0062" ]"#, Some(r#"[ "a" , "\u0062" ]"#)),
        ("null", None),
        (r#""1""#, None),
        ("1", None),
        (r#"["1",2]"#, None),
        (r#"[["1"]]"#, None),
        (r#"["1",null]"#, None),
        (r#"{"a":"b"}"#, None),
    ] {
        assert_eq!(trade(&with("c", c)).conditions, expected, "{c}");
    }
    assert_eq!(trade(&flat(&[])).conditions, None);
    // A bad `c` never rejects, but its JSON must still be valid.
    assert_eq!(reason(&with("c", "[1,]")), InvalidJson);
}

#[test]
fn unknown_keys_are_ignored() {
    let line = with("x", r#"{"deep":[1,2.5e3,"s",true,null,{"":{}}]}"#);
    let t = trade(&line);
    assert_eq!(t.symbol, "AAPL");
    let line = with("type_", r#""trade""#);
    let t = trade(&line);
    assert_eq!(t.ts, TS);
    let many: String = (0..50).map(|i| format!(",\"k{i}\":{i}")).collect();
    let line = format!("{}{many}}}", &flat(&[])[..flat(&[]).len() - 1]);
    assert_eq!(trade(&line).symbol, "AAPL");
    let line = format!("{}{many},\"k7\":0}}", &flat(&[])[..flat(&[]).len() - 1]);
    assert_eq!(reason(&line), InvalidJson);
}

#[test]
fn finnhub_messages_keep_good_elements_next_to_bad_ones() {
    let good = r#"{"s":"AAPL","p":187.12,"t":1700000000123,"v":100}"#;
    let bad_price = r#"{"s":"MSFT","p":-1,"t":1700000000123,"v":100}"#;
    let no_symbol = r#"{"p":1,"t":1700000000123,"v":1}"#;
    let line = format!("{{\"data\": [ {good} ,{bad_price},5, \"x\" ,{no_symbol},{good}],\"type\":\"trade\"}}\r");
    let all = items(line.as_bytes());
    assert_eq!(all.len(), 6, "{all:?}");
    let expect_reject = |item: &Item<'_>, reason, payload: &str, element| match item {
        Item::Reject(r) => {
            assert_eq!(r.reason, reason);
            assert_eq!(r.payload, payload.as_bytes());
            assert_eq!(r.element, element);
        }
        other => panic!("{other:?}"),
    };
    assert!(matches!(&all[0], Item::Trade(t) if t.element == 0 && t.symbol == "AAPL"));
    expect_reject(&all[1], BadPrice, bad_price, 1);
    expect_reject(&all[2], MissingField, "5", 2);
    expect_reject(&all[3], MissingField, "\"x\"", 3);
    expect_reject(&all[4], MissingField, no_symbol, 4);
    assert!(matches!(&all[5], Item::Trade(t) if t.element == 5 && t.ts == TS));
    match &all[2] {
        Item::Reject(r) => assert_eq!(r.detail, "element 2 of \"data\" is 5, not an object"),
        other => panic!("{other:?}"),
    }
    // Elements are flat trades: their own "type" key is just an unknown key.
    let line = format!(r#"{{"type":"trade","data":[{}]}}"#, with("type", "\"ping\""));
    assert!(matches!(one(line.as_bytes()), Item::Trade(_)));
    assert!(items(br#"{"type":"trade","data":[]}"#).is_empty());
}

#[test]
fn huge_finnhub_messages_are_read_in_two_passes() {
    // More elements than are kept while scanning: the array is scanned again.
    let good = flat(&[]);
    let elements: Vec<String> = (0..2_500).map(|i| if i % 3 == 1 { i.to_string() } else { good.clone() }).collect();
    let line = format!(r#"{{"type":"trade","data":[{}]}}"#, elements.join(","));
    let all = items(line.as_bytes());
    assert_eq!(all.len(), 2_500);
    for (i, item) in all.iter().enumerate() {
        match item {
            Item::Trade(t) => assert_eq!((t.element, i % 3 != 1), (i as u32, true)),
            Item::Reject(r) => {
                assert_eq!((r.element, r.reason), (i as u32, MissingField));
                assert_eq!(r.payload, i.to_string().as_bytes());
            }
            other => panic!("{other:?}"),
        }
    }
    // A duplicate key in the last element still makes the whole line invalid.
    let line = line.replace(r#"]}"#, r#",{"s":"A","s":"B"}]}"#);
    assert_eq!(reason(&line), InvalidJson);
}

#[test]
fn finnhub_message_forms() {
    assert_eq!(one(br#"{"type":"ping"}"#), Item::Ping);
    assert_eq!(one(b" {\"type\" : \"ping\", \"x\":[1]}\r"), Item::Ping);
    assert_eq!(
        one(br#"{"type":"error","msg":"Invalid \"token\""}"#),
        Item::ServerError(Cow::Borrowed("Invalid \"token\""))
    );
    assert_eq!(
        one(br#"{"msg":"Subscribing to too many symbols","type":"error"}"#),
        Item::ServerError(Cow::Borrowed("Subscribing to too many symbols"))
    );
    assert_eq!(one(br#"{"type":"error"}"#), Item::ServerError(Cow::Borrowed("")));
    assert_eq!(one(br#"{"type":"error","msg":null}"#), Item::ServerError(Cow::Borrowed("")));
    assert_eq!(one(br#"{"type":"error","msg":42}"#), Item::ServerError(Cow::Borrowed("42")));
    for (line, says) in [
        (r#"{"type":"trade"}"#, "field \"data\" is missing"),
        (r#"{"type":"trade","data":null}"#, "field \"data\" is null"),
        (r#"{"type":"trade","data":{"s":"A"}}"#, "field \"data\": {\"s\":\"A\"} is not an array"),
        (r#"{"type":"news","data":[]}"#, "unknown message type \"news\""),
        (r#"{"type":5}"#, "field \"type\": 5 is not a string"),
        (r#"{"type":null}"#, "field \"type\" is null"),
        (r#"{"type":"Trade","data":[]}"#, "unknown message type \"Trade\""),
    ] {
        let r = rejected(line.as_bytes());
        assert_eq!(r.reason, MissingField, "{line}");
        assert_eq!(r.payload, line.as_bytes());
        assert!(r.detail.contains(says), "{line}: {}", r.detail);
    }
}

#[test]
fn long_values_are_cut_in_details() {
    let p = format!("-{}", "1".repeat(100));
    let d = detail(&with("p", &p));
    assert_eq!(d, format!("field \"p\": -{}… is not > 0", "1".repeat(39)));
}

#[test]
fn every_prefix_and_byte_flip_of_a_line_is_handled() {
    let line = format!(
        r#"{{"type":"trade","data":[{},{{"s":"\u00e9\ud83d\ude00","p":1e-3,"t":946684800000,"v":-0,"c":[]}}]}}"#,
        flat(&[("c", Some(r#"["1","12"]"#))])
    );
    let bytes = line.as_bytes();
    assert_eq!(items(bytes).len(), 2);
    for end in 0..bytes.len() {
        items(&bytes[..end]);
    }
    for i in 0..bytes.len() {
        for b in [0u8, b'"', b'\\', b'{', b'[', b']', b'}', b',', b':', b'0', 0x80, 0xff] {
            let mut mutated = bytes.to_vec();
            mutated[i] = b;
            items(&mutated);
        }
    }
}

#[test]
fn decimal_fast_path_agrees_with_the_model() {
    use super::trades::decimal;
    use tradeflow_model::decimal::parse_json_number;
    for text in [
        "0",
        "-0",
        "1",
        "-1",
        "0.5",
        "187.12",
        "99999999999",
        "99999999999.99999999",
        "999999999999",
        "0.123456789",
        "1e2",
        "1.5E-3",
        "-0.00000000",
        "12345678901.5",
        "0.00000001",
        "-0.000000001",
    ] {
        assert_eq!(Some(decimal(text.as_bytes())), parse_json_number(text.as_bytes()), "{text}");
    }
}
