//! SPEC 2-6 on a crafted input: every reject reason, tricky symbols, exact decimals,
//! disorder and lateness, gaps, a volume spike and a price jump. The lake's results must
//! equal a from-scratch recomputation exactly (floats bit for bit), and the dead letters
//! must hold exactly the rejected records.

use std::path::{Path, PathBuf};
use std::time::Duration;
use tradeflow_model::{AnomalyKind, RejectReason, WindowMetrics};
use tradeflow_tests::expect::{Expected, ExpectedReject, Knobs};
use tradeflow_tests::lake::{DeadLetter, read_anomalies, read_dead_letters, read_trades, read_window_metrics};
use tradeflow_tests::{Finished, file_url, run_tradeflow, temp_dir};

/// 2023-11-14T22:14:00Z, a minute boundary.
const T0: i64 = 1_700_000_040_000;
const MINUTE: i64 = 60_000;
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

fn at(minute: i64, offset_ms: i64) -> i64 {
    T0 + minute * MINUTE + offset_ms
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// A trade object, `c` given as raw JSON.
fn obj(symbol: &str, price: &str, ts: i64, volume: &str, c: &str) -> String {
    format!(r#"{{"s":{},"p":{price},"t":{ts},"v":{volume},"c":{c}}}"#, quoted(symbol))
}

fn message(elements: &[String]) -> String {
    format!(r#"{{"type":"trade","data":[{}]}}"#, elements.join(","))
}

/// The crafted input: its lines (some are not UTF-8), and the rejects a reader of SPEC 2
/// and 6 expects, labelled by hand: (line index, element, reason).
struct Crafted {
    lines: Vec<Vec<u8>>,
    /// Rejected under any lateness of 2 s or more.
    rejects: Vec<(usize, u32, RejectReason)>,
    /// Lines on time with 5 s of lateness and late with 2 s.
    late_under_2s: Vec<usize>,
}

/// Records that are rejected, each with its reason, by hand.
fn bad_records(t: i64) -> Vec<(RejectReason, Vec<u8>)> {
    use RejectReason::*;
    let f = |s: String| s.into_bytes();
    vec![
        (InvalidJson, br#"{"s":"AAPL","p":100,"#.to_vec()),
        (InvalidJson, f(format!(r#"{{"s":"AAPL","p":NaN,"t":{t},"v":1}}"#))),
        (InvalidJson, f(format!(r#"{{"s":"AAPL","p":Infinity,"t":{t},"v":1}}"#))),
        (InvalidJson, f(format!(r#"{{"s":"AAPL","s":"MSFT","p":1,"t":{t},"v":1}}"#))),
        (InvalidJson, f(format!(r#"{{"s":"A","\u0073":"B","p":1,"t":{t},"v":1}}"#))), // the same key, escaped
        (InvalidJson, [&br#"{"s":"AA"#[..], b"\xff\xfe", format!(r#"PL","p":1,"t":{t},"v":1}}"#).as_bytes()].concat()),
        (InvalidJson, f(format!(r#"{{"s":"\ud800","p":1,"t":{t},"v":1}}"#))),
        (InvalidJson, f(format!(r#"{{"s":"AAPL","p":1,"t":{t},"v":1}} trailing"#))),
        (InvalidJson, f(format!(r#"{{"s":"AAPL","p":01,"t":{t},"v":1}}"#))),
        (InvalidJson, br#"{'s':'AAPL'}"#.to_vec()),
        // Absent, null or mistyped; `t` must be a JSON integer.
        (MissingField, f(format!(r#"{{"p":1,"t":{t},"v":1}}"#))),
        (MissingField, f(format!(r#"{{"s":"AAPL","t":{t},"v":1}}"#))),
        (MissingField, f(format!(r#"{{"s":"AAPL","p":1,"t":{t}}}"#))),
        (MissingField, br#"{"s":"AAPL","p":1,"v":1}"#.to_vec()),
        (MissingField, f(format!(r#"{{"S":"AAPL","p":1,"t":{t},"v":1}}"#))),
        (MissingField, f(format!(r#"{{"s":"AAPL","p":null,"t":{t},"v":1}}"#))),
        (MissingField, f(format!(r#"{{"s":null,"p":1,"t":{t},"v":1}}"#))),
        (MissingField, f(format!(r#"{{"s":"AAPL","p":"100.5","t":{t},"v":1}}"#))),
        (MissingField, f(format!(r#"{{"s":7,"p":1,"t":{t},"v":1}}"#))),
        (MissingField, f(format!(r#"{{"s":"AAPL","p":1,"t":{t},"v":[1]}}"#))),
        (MissingField, br#"{"s":"AAPL","p":1,"t":1700000000000.0,"v":1}"#.to_vec()),
        (MissingField, br#"{"s":"AAPL","p":1,"t":1.7e12,"v":1}"#.to_vec()),
        (MissingField, br#"{"s":"AAPL","p":1,"t":"1700000000000","v":1}"#.to_vec()),
        (MissingField, br#"{"s":"","p":-1,"v":-1}"#.to_vec()), // absent t comes before the bad values
        (MissingField, br#"[1,2]"#.to_vec()),
        (MissingField, br#"null"#.to_vec()),
        (MissingField, br#"{"type":"news","data":[]}"#.to_vec()),
        (MissingField, br#"{"type":"trade","data":{}}"#.to_vec()),
        (MissingField, br#"{"type":"trade"}"#.to_vec()),
        // Prices: > 0 before and after rounding to 8 places, below 10^10.
        (BadPrice, f(format!(r#"{{"s":"AAPL","p":0,"t":{t},"v":1}}"#))),
        (BadPrice, f(format!(r#"{{"s":"AAPL","p":-0,"t":{t},"v":1}}"#))),
        (BadPrice, f(format!(r#"{{"s":"AAPL","p":-5,"t":{t},"v":1}}"#))),
        (BadPrice, f(format!(r#"{{"s":"AAPL","p":1e-9,"t":{t},"v":1}}"#))),
        (BadPrice, f(format!(r#"{{"s":"AAPL","p":0.000000005,"t":{t},"v":1}}"#))), // half-even to 0
        (BadPrice, f(format!(r#"{{"s":"AAPL","p":1e10,"t":{t},"v":1}}"#))),
        (BadPrice, f(format!(r#"{{"s":"AAPL","p":1e400,"t":{t},"v":1}}"#))),
        (BadPrice, f(format!(r#"{{"s":"AAPL","p":-1,"t":{t},"v":-1}}"#))), // price before volume
        // Volumes: not negative, below 10^10.
        (BadVolume, f(format!(r#"{{"s":"AAPL","p":1,"t":{t},"v":-1}}"#))),
        (BadVolume, f(format!(r#"{{"s":"AAPL","p":1,"t":{t},"v":-1e-9}}"#))),
        (BadVolume, f(format!(r#"{{"s":"AAPL","p":1,"t":{t},"v":1e10}}"#))),
        (BadVolume, br#"{"s":"AAPL","p":1,"t":1,"v":-1}"#.to_vec()), // volume before timestamp
        // Timestamps: 946684800000 <= t < 4102444800000.
        (BadTimestamp, br#"{"s":"AAPL","p":1,"t":946684799999,"v":1}"#.to_vec()),
        (BadTimestamp, br#"{"s":"AAPL","p":1,"t":4102444800000,"v":1}"#.to_vec()),
        (BadTimestamp, br#"{"s":"AAPL","p":1,"t":-1700000000000,"v":1}"#.to_vec()),
        (BadTimestamp, br#"{"s":"AAPL","p":1,"t":99999999999999999999999,"v":1}"#.to_vec()),
        // Symbols: 1..=64 bytes, no C0, DEL or C1 control character; checked first.
        (BadSymbol, f(format!(r#"{{"s":"","p":1,"t":{t},"v":1}}"#))),
        (BadSymbol, f(format!(r#"{{"s":"{}","p":1,"t":{t},"v":1}}"#, "X".repeat(65)))),
        (BadSymbol, f(format!(r#"{{"s":"{}","p":1,"t":{t},"v":1}}"#, "é".repeat(32) + "x"))),
        (BadSymbol, f(format!(r#"{{"s":"A\u0001B","p":1,"t":{t},"v":1}}"#))),
        (BadSymbol, f(format!(r#"{{"s":"A{}B","p":1,"t":{t},"v":1}}"#, '\u{7f}'))),
        (BadSymbol, f(format!(r#"{{"s":"A\u0085B","p":1,"t":{t},"v":1}}"#))),
        (BadSymbol, br#"{"s":"","p":-1,"t":1,"v":-1}"#.to_vec()),
    ]
}

/// AAPL's price level by minute, and MSFT's (None: no trades that minute).
const AAPL: [f64; 13] = [100.0, 100.3, 99.8, 100.1, 100.4, 99.9, 100.2, 100.0, 100.3, 99.7, 100.1, 100.2, 100.0];
const MSFT: [Option<f64>; 11] = [
    Some(200.0),
    Some(200.5),
    Some(199.8),
    None,
    None,
    Some(200.3),
    Some(200.1),
    Some(199.9),
    Some(200.4),
    Some(230.0),
    Some(230.2),
];

/// The valid trades of one minute, as (ts, JSON object), in time order.
fn minute_trades(minute: i64) -> Vec<(i64, String)> {
    let mut trades: Vec<(i64, String)> = Vec::new();
    let mut add = |offset: i64, symbol: &str, price: &str, volume: &str, c: &str| {
        let ts = at(minute, offset);
        trades.push((ts, obj(symbol, price, ts, volume, c)));
    };
    if let Some(level) = AAPL.get(minute as usize) {
        // A volume spike at minute 12.
        let (v1, v2) = if minute == 12 { ("6000", "4000") } else { ("100", "50") };
        add(1_000, "AAPL", &format!("{level:.2}"), v1, r#"["1","12"]"#);
        add(30_000, "AAPL", &format!("{:.2}", level + 0.1), v2, "null");
        if minute == 10 {
            // Ties at the first and the last ts: open is the lowest, close the highest.
            add(1_000, "AAPL", &format!("{:.2}", level + 0.5), "1", "null");
            add(1_000, "AAPL", &format!("{:.2}", level - 0.5), "1", "null");
            add(30_000, "AAPL", &format!("{:.2}", level + 0.6), "1", "null");
            add(30_000, "AAPL", &format!("{:.2}", level - 0.4), "1", "null");
        }
    }
    if let Some(Some(level)) = MSFT.get(minute as usize) {
        // Quiet at minutes 3 and 4; a price jump at minute 9.
        add(2_000, "MSFT", &format!("{level:.2}"), "10", "null");
        add(45_000, "MSFT", &format!("{:.2}", level + 0.05), "30", "null");
    }
    // Crypto: 8-decimal volumes, and values with more decimals that round half-even.
    let (btc_price, btc_volume) = match minute {
        3 => ("37001.123456785", "0.000000015"),
        4 => ("37001.123456795", "0.000000025"),
        5 => ("3.70011234567850000001e4", "0.000000005"),
        _ => ("37000.12345678", "0.00012345"),
    };
    add(5_000, "BINANCE:BTCUSDT", btc_price, btc_volume, "null");
    add(40_000, "BINANCE:BTCUSDT", &format!("{:.8}", 37_000.0 + minute as f64 * 1.5), "1.23456789", "[]");
    // Forex: zero volumes, so vwap (and volatility) are NULL.
    add(7_000, "OANDA:EUR_USD", "1.08123", "0", "null");
    add(50_000, "OANDA:EUR_USD", "1.08131", "0", r#"["x\"y"]"#);
    if minute < 6 {
        add(9_000, "IC MARKETS:1", "1.2345", "1000000", "null");
    }
    if (2..9).contains(&minute) {
        add(11_000, "KRAKEN:XBT/USD", &format!("{:.1}", 36_999.5 + minute as f64), "0.5", "null");
    }
    if minute % 2 == 0 {
        // A `c` that is not a list of strings counts as absent.
        add(13_000, "BRK.B", "360.01", "3", r#""not a list""#);
    }
    if minute == 1 {
        // An escaped symbol is the same symbol; extra keys are ignored.
        let ts = at(1, 13_000);
        let text = format!(r#"{{"s":"BRK\u002eB","p":360.02,"t":{ts},"v":2,"c":[1,2],"x":{{"y":[null,{{}}]}}}}"#);
        trades.push((ts, text));
    }
    trades.sort_by_key(|(ts, _)| *ts);
    trades
}

fn crafted() -> Crafted {
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut rejects = Vec::new();
    let mut late_under_2s = Vec::new();
    // The edges of the valid ranges, first (everything later is after them).
    lines.push(obj("EDGE", "9999999999.99999999", 946_684_800_000, "0.00000001", "null").into_bytes());
    lines.push(obj("EDGE", "0.00000001", 946_684_800_001, "9999999999.99999999", r#"["edge"]"#).into_bytes());
    for minute in 0..15 {
        // Flat lines and Finnhub messages of 2 and 3 consecutive trades, in turn.
        let trades = minute_trades(minute);
        let mut rest = trades.as_slice();
        let mut size = 1;
        while !rest.is_empty() {
            let (group, tail) = rest.split_at(size.min(rest.len()));
            let objects: Vec<String> = group.iter().map(|(_, o)| o.clone()).collect();
            lines.push(if size == 1 { objects[0].clone() } else { message(&objects) }.into_bytes());
            rest = tail;
            size = size % 3 + 1;
        }
        match minute {
            1 => {
                // A message mixing good and bad elements: the good ones are kept.
                let ts = at(1, 59_000);
                lines.push(
                    message(&[
                        obj("AAPL", "100.25", ts, "10", r#"["1","12"]"#),
                        obj("AAPL", "-1", ts, "1", "null"),
                        "42".to_owned(),
                        format!(r#"{{"s":"MSFT","p":200.6,"t":{ts},"v":5,"c":[1,"x"]}}"#),
                        format!(r#"{{"p":1,"t":{ts},"v":1}}"#),
                        obj("IC MARKETS:1", "1.2346", ts, "5", "[]"),
                    ])
                    .into_bytes(),
                );
                let line = lines.len() - 1;
                rejects.extend([
                    (line, 1, RejectReason::BadPrice),
                    (line, 2, RejectReason::MissingField),
                    (line, 4, RejectReason::MissingField),
                ]);
                // Every other reason, by hand; they do not move the watermark.
                for (reason, bytes) in bad_records(at(1, 0)) {
                    lines.push(bytes);
                    rejects.push((lines.len() - 1, 0, reason));
                }
            }
            2 => {
                // Keep-alives, server errors and blank lines are not records.
                lines.push(br#"{"type":"ping"}"#.to_vec());
                lines.push(br#"{"type":"error","msg":"Subscribing to too many symbols"}"#.to_vec());
                lines.push(Vec::new());
                lines.push(b"  \t ".to_vec());
                lines.push(br#"{"type":"trade","data":[]}"#.to_vec());
            }
            3 => {
                // CRLF line endings are whitespace.
                let ts = at(3, 59_000);
                lines.push(format!("{}\r", obj("KRAKEN:XBT/USD", "37001.5", ts, "0.25", "null")).into_bytes());
            }
            7 => {
                // Disorder behind the newest trade (:50): 5 s (exactly at the watermark), 3 s
                // and 1.5 s are on time under the default 5 s of lateness; under 2 s the
                // first two are late. 5.001 s is late under both.
                let newest = at(7, 50_000);
                lines.push(obj("AAPL", "100.04", newest - 5_000, "6", "null").into_bytes());
                late_under_2s.push(lines.len() - 1);
                lines.push(obj("AAPL", "100.05", newest - 3_000, "7", "null").into_bytes());
                late_under_2s.push(lines.len() - 1);
                lines.push(obj("AAPL", "100.06", newest - 1_500, "8", "null").into_bytes());
                lines.push(obj("AAPL", "100.07", newest - 5_001, "9", "null").into_bytes());
                rejects.push((lines.len() - 1, 0, RejectReason::Late));
            }
            _ => {}
        }
    }
    // Late: 10 s and 5 min behind the newest trade (minute 14, :50).
    let newest = at(14, 50_000);
    for (symbol, behind) in [("AAPL", 10_000), ("MSFT", 300_000)] {
        lines.push(obj(symbol, "100.5", newest - behind, "1", "null").into_bytes());
        rejects.push((lines.len() - 1, 0, RejectReason::Late));
    }
    // The last valid timestamp, last.
    lines.push(obj("EDGE", "1", 4_102_444_799_999, "1", "null").into_bytes());
    Crafted { lines, rejects, late_under_2s }
}

impl Crafted {
    fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join("crafted.ndjson");
        std::fs::write(&path, self.lines.iter().flat_map(|l| l.iter().chain(b"\n")).copied().collect::<Vec<u8>>())
            .expect("writing the input");
        path
    }

    /// The hand-labelled rejects as (byte offset of the line, element, reason), sorted.
    fn labelled(&self, late_under_2s: bool) -> Vec<(i64, i32, String)> {
        let mut offsets = Vec::with_capacity(self.lines.len());
        let mut offset = 0;
        for line in &self.lines {
            offsets.push(offset);
            offset += line.len() as i64 + 1;
        }
        let mut out: Vec<_> = self
            .rejects
            .iter()
            .map(|(line, element, r)| (offsets[*line], *element as i32, r.as_str().to_owned()))
            .collect();
        if late_under_2s {
            out.extend(self.late_under_2s.iter().map(|line| (offsets[*line], 0, "late".to_owned())));
        }
        out.sort();
        out
    }
}

fn run_file(input: &Path, lake: &Path, extra: &[String]) -> Finished {
    let mut args = vec![
        "run".to_owned(),
        "--source".to_owned(),
        file_url(input),
        "--lake".to_owned(),
        file_url(lake),
        "--progress-interval".to_owned(),
        "0".to_owned(),
    ];
    args.extend_from_slice(extra);
    let out = run_tradeflow(&args, RUN_TIMEOUT);
    out.assert_success("tradeflow run");
    out
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// Shows the first difference of two sorted row lists, then fails.
fn assert_rows_eq<T: PartialEq + std::fmt::Debug>(what: &str, actual: &[T], expected: &[T]) {
    if actual == expected {
        return;
    }
    let first = actual.iter().zip(expected).position(|(a, e)| a != e).unwrap_or(actual.len().min(expected.len()));
    panic!(
        "{what}: {} rows in the lake, {} expected; first difference at row {first}:\n  lake:     {:?}\n  expected: {:?}",
        actual.len(),
        expected.len(),
        actual.get(first),
        expected.get(first)
    );
}

fn check_dead_letters(lake: &Path, expected: &Expected) {
    let letters = read_dead_letters(lake);
    for l in &letters {
        assert!(!l.detail.is_empty(), "a dead letter without detail: {l:?}");
    }
    let actual = sorted(
        letters
            .iter()
            .map(|l: &DeadLetter| ExpectedReject {
                source: l.source.clone(),
                position: u64::try_from(l.position).expect("a position is not negative"),
                element: u32::try_from(l.element).expect("an element index is not negative"),
                reason: RejectReason::ALL
                    .into_iter()
                    .find(|r| r.as_str() == l.reason)
                    .unwrap_or_else(|| panic!("unknown reason {:?}", l.reason)),
                payload: l.payload.clone(),
            })
            .collect(),
    );
    assert_rows_eq("dead letters", &actual, &sorted(expected.rejects.clone()));
}

/// (position, element, reason) of every dead letter, sorted.
fn dead_letter_reasons(lake: &Path) -> Vec<(i64, i32, String)> {
    sorted(read_dead_letters(lake).into_iter().map(|l| (l.position, l.element, l.reason)).collect())
}

fn check_results(lake: &Path, expected: &Expected, knobs: &Knobs) {
    let (metrics, anomalies) = expected.results(knobs);
    eprintln!(
        "expected: {} trades, {} rejects, {} windows, {} anomalies",
        expected.accepted.len(),
        expected.rejects.len(),
        metrics.len(),
        anomalies.len()
    );
    assert_rows_eq("window_metrics", &sorted(read_window_metrics(lake)), &metrics);
    assert_rows_eq("anomalies", &sorted(read_anomalies(lake)), &anomalies);
}

fn window(rows: &[WindowMetrics], symbol: &str, start: i64) -> WindowMetrics {
    rows.iter()
        .find(|r| r.symbol.as_str() == symbol && r.window_start == start)
        .unwrap_or_else(|| panic!("no {symbol} window at {start}"))
        .clone()
}

fn close_to(actual: f64, expected: f64) -> bool {
    (actual - expected).abs() <= 1e-12 * expected.abs().max(1e-300)
}

#[test]
fn crafted_input_matches_the_reference_with_default_parameters() {
    let dir = temp_dir();
    let crafted = crafted();
    let input = crafted.write(dir.path());
    let lake = dir.path().join("lake");
    // No analytics flags: the SPEC defaults (1m tumbling, 5 s lateness, K 20, F 3, H 5, Z 4).
    let out = run_file(&input, &lake, &[]);
    let knobs = Knobs::default();
    let expected = Expected::from_files(&[&input], knobs.lateness_ms);

    // Every reason occurs, and the summary counts them.
    let counts = expected.reject_counts();
    for reason in RejectReason::ALL {
        assert!(counts.get(reason.as_str()).is_some_and(|n| *n > 0), "the input has no {reason} record: {counts:?}");
    }
    let summary = out.summary();
    assert_eq!(summary.accepted, expected.accepted.len() as u64, "accepted trades\n{}", out.stderr);
    assert_eq!(summary.by_reason, counts, "rejects by reason\n{}", out.stderr);
    assert_eq!(summary.rejected, expected.rejects.len() as u64);

    // Trades: every accepted trade exactly once; results: exactly the reference's.
    assert_rows_eq("trades", &sorted(read_trades(&lake)), &expected.lake_trades());
    check_results(&lake, &expected, &knobs);
    check_dead_letters(&lake, &expected);
    assert_eq!(dead_letter_reasons(&lake), crafted.labelled(false), "dead letters (by hand)");

    // Checks by hand, independent of the reference.
    let metrics = sorted(read_window_metrics(&lake));
    let anomalies = read_anomalies(&lake);
    assert_eq!(summary.windows_final, metrics.len() as u64);
    assert_eq!(summary.anomalies_final, anomalies.len() as u64);

    // AAPL's first window: 100 @ 100.00 at :01, 50 @ 100.10 at :30.
    let w = window(&metrics, "AAPL", T0);
    assert_eq!((w.window_end, w.trade_count, w.volume), (T0 + MINUTE, 2, 150 * 100_000_000));
    assert!(close_to(w.vwap.expect("vwap").0, (100.0 * 100.0 + 100.1 * 50.0) / 150.0), "{w:?}");
    assert!(close_to(w.avg_price.0, 100.05), "{w:?}");
    assert_eq!((w.min_price.units(), w.max_price.units()), (10_000_000_000, 10_010_000_000));
    assert_eq!((w.open.units(), w.close.units()), (10_000_000_000, 10_010_000_000));

    // Ties: open is the lowest price at the first ts, close the highest at the last.
    let w = window(&metrics, "AAPL", at(10, 0));
    assert_eq!((w.trade_count, w.open.units(), w.close.units()), (6, 9_960_000_000, 10_070_000_000), "{w:?}");
    assert_eq!((w.min_price.units(), w.max_price.units()), (9_960_000_000, 10_070_000_000), "{w:?}");

    // Zero volume: vwap and volatility are NULL, the other columns are not.
    for w in metrics.iter().filter(|w| w.symbol.as_str() == "OANDA:EUR_USD") {
        assert!(w.vwap.is_none() && w.volatility.is_none(), "{w:?}");
        assert_eq!(w.trade_count, 2);
        assert!(close_to(w.avg_price.0, 1.08127), "{w:?}");
    }

    // MSFT has no trades at minutes 3 and 4: its volatility at minute 5 uses the returns
    // of the windows that exist (0 -> 1 -> 2 -> 5), not zero-filled minutes.
    let vwap = |m: i64| window(&metrics, "MSFT", at(m, 0)).vwap.expect("vwap").0;
    assert!(metrics.iter().all(|w| !(w.symbol.as_str() == "MSFT" && [at(3, 0), at(4, 0)].contains(&w.window_start))));
    let returns = [(vwap(1) / vwap(0)).ln(), (vwap(2) / vwap(1)).ln(), (vwap(5) / vwap(2)).ln()];
    let mean = returns.iter().sum::<f64>() / 3.0;
    let sd = (returns.iter().map(|r| (r - mean) * (r - mean)).sum::<f64>() / 2.0).sqrt();
    let got = window(&metrics, "MSFT", at(5, 0)).volatility.expect("volatility at minute 5").0;
    assert!((got - sd).abs() <= 1e-12, "volatility {got}, by hand {sd}");
    assert!(window(&metrics, "MSFT", at(1, 0)).volatility.is_none(), "one return is not enough");

    // The volume spike (AAPL, minute 12) and the price jump (MSFT, minute 9) fire.
    let spike = anomalies
        .iter()
        .find(|a| a.symbol.as_str() == "AAPL" && a.window_start == at(12, 0) && a.kind == AnomalyKind::VolumeSpike)
        .unwrap_or_else(|| panic!("no volume spike on AAPL at minute 12: {anomalies:?}"));
    let before: f64 = (0..12).map(|m| window(&metrics, "AAPL", at(m, 0)).volume as f64 / 1e8).sum();
    assert!(close_to(spike.baseline.0, before / 20.0), "{spike:?}");
    assert!(close_to(spike.observed.0, 10_000.0), "{spike:?}");
    assert!(close_to(spike.severity.0, 10_000.0 / (before / 20.0)), "{spike:?}");
    assert_eq!(spike.detected_at, at(13, 0));
    let jump = anomalies
        .iter()
        .find(|a| a.symbol.as_str() == "MSFT" && a.window_start == at(9, 0) && a.kind == AnomalyKind::PriceJump)
        .unwrap_or_else(|| panic!("no price jump on MSFT at minute 9: {anomalies:?}"));
    assert!(close_to(jump.observed.0, (vwap(9) / vwap(8)).ln()), "{jump:?}");
    assert!(jump.severity.0 > 4.0 && jump.detected_at == at(10, 0), "{jump:?}");

    // Exact decimals: values with more than 8 decimals are rounded half-even.
    let trades = read_trades(&lake);
    let btc = |ts: i64| trades.iter().find(|t| t.symbol == "BINANCE:BTCUSDT" && t.ts == ts).expect("the trade").clone();
    assert_eq!((btc(at(3, 5_000)).price, btc(at(3, 5_000)).volume), (3_700_112_345_678, 2)); // ..78|5 -> 78, 1|5 -> 2
    assert_eq!((btc(at(4, 5_000)).price, btc(at(4, 5_000)).volume), (3_700_112_345_680, 2)); // ..79|5 -> 80, 2|5 -> 2
    assert_eq!((btc(at(5, 5_000)).price, btc(at(5, 5_000)).volume), (3_700_112_345_679, 0)); // above half; 0|5 -> 0
    assert_eq!(btc(at(0, 5_000)).volume, 12_345);
    let edge: Vec<_> = trades.iter().filter(|t| t.symbol == "EDGE").collect();
    assert_eq!(edge.len(), 3, "{edge:?}");
    assert!(edge.iter().any(|t| t.price == 999_999_999_999_999_999 && t.volume == 1 && t.ts == 946_684_800_000));
    // Conditions: a list of strings is kept (escapes decoded), anything else is absent.
    let aapl = trades.iter().find(|t| t.symbol == "AAPL" && t.ts == T0 + 1_000).expect("AAPL's first trade");
    assert_eq!(aapl.conditions, Some(vec!["1".to_owned(), "12".to_owned()]));
    let brk = trades.iter().find(|t| t.symbol == "BRK.B" && t.ts == at(1, 13_000)).expect("the escaped BRK.B");
    assert_eq!(brk.conditions, None);
    let eur = trades.iter().find(|t| t.symbol == "OANDA:EUR_USD" && t.ts == at(0, 50_000)).expect("EUR_USD");
    assert_eq!(eur.conditions, Some(vec!["x\"y".to_owned()]));
    assert_eq!(btc(at(0, 40_000)).conditions, Some(vec![]));

    // The disorder within the lateness bound was accepted; the two late trades were not.
    assert!(trades.iter().any(|t| t.symbol == "AAPL" && t.ts == at(7, 45_000)), "exactly at the watermark");
    assert!(trades.iter().any(|t| t.symbol == "AAPL" && t.ts == at(7, 47_000)));
    assert!(!trades.iter().any(|t| t.symbol == "AAPL" && t.ts == at(7, 44_999)), "1 ms below the watermark");
}

#[test]
fn crafted_input_matches_the_reference_with_hopping_windows_and_other_parameters() {
    let dir = temp_dir();
    let crafted = crafted();
    let input = crafted.write(dir.path());
    let lake = dir.path().join("lake");
    let knobs = Knobs {
        window_ms: 60_000,
        slide_ms: Some(20_000),
        lateness_ms: 2_000,
        volatility_windows: 3,
        baseline_windows: 3,
        min_history: 1,
        spike_factor: 2.0,
        jump_sigma: 1.5,
    };
    let out = run_file(&input, &lake, &knobs.args());
    let expected = Expected::from_files(&[&input], knobs.lateness_ms);

    // The 3 s disorder is late under 2 s of lateness.
    let summary = out.summary();
    assert_eq!(summary.accepted, expected.accepted.len() as u64, "accepted trades\n{}", out.stderr);
    assert_eq!(summary.by_reason, expected.reject_counts(), "rejects by reason\n{}", out.stderr);
    assert_rows_eq("trades", &sorted(read_trades(&lake)), &expected.lake_trades());
    check_results(&lake, &expected, &knobs);
    check_dead_letters(&lake, &expected);
    assert_eq!(dead_letter_reasons(&lake), crafted.labelled(true), "dead letters (by hand)");

    // Every hopping window holding a trade exists: 3 per trade's pane.
    let metrics = read_window_metrics(&lake);
    let aapl_first: Vec<i64> = sorted(
        metrics
            .iter()
            .filter(|w| w.symbol.as_str() == "AAPL" && w.window_start <= T0)
            .map(|w| w.window_start)
            .collect(),
    );
    assert_eq!(aapl_first, vec![T0 - 40_000, T0 - 20_000, T0]);
    let anomalies = read_anomalies(&lake);
    for kind in [AnomalyKind::VolumeSpike, AnomalyKind::PriceJump] {
        assert!(anomalies.iter().any(|a| a.kind == kind), "no {kind} with these parameters: {anomalies:?}");
    }
}

/// The model's `Reject::payload` is "the line, or the element of a Finnhub message", and
/// an element rejected for any other reason is dead-lettered alone. A late element is
/// dead-lettered with the whole message instead, so replaying dead letters would feed
/// the message's on-time trades in a second time.
#[test]
fn late_element_of_a_finnhub_message_is_dead_lettered_alone() {
    let dir = temp_dir();
    let input = dir.path().join("late.ndjson");
    let newest = obj("AAPL", "100", T0 + 60_000, "1", "null");
    let on_time = obj("AAPL", "101", T0 + 61_000, "2", "null");
    let late = obj("AAPL", "99", T0, "3", "null");
    let bad = obj("AAPL", "-1", T0 + 61_000, "3", "null");
    std::fs::write(&input, format!("{newest}\n{}\n", message(&[on_time.clone(), late.clone(), bad.clone()])))
        .expect("writing the input");
    let lake = dir.path().join("lake");
    run_file(&input, &lake, &[]);

    let letters = sorted(read_dead_letters(&lake).into_iter().map(|l| (l.element, l.reason, l.payload)).collect());
    assert_eq!(letters, vec![(1, "late".to_owned(), late), (2, "bad_price".to_owned(), bad)]);
    assert_eq!(read_trades(&lake).len(), 2);
}
