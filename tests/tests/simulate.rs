//! SPEC 8: `tradeflow simulate` writes a synthetic market to a file, the same file for
//! the same seed and options, in the encodings SPEC 2 accepts.

use tradeflow_sources::format::{Item, parse_line};
use tradeflow_tests::{simulate, temp_dir};

/// (trades, rejects, lines that are Finnhub messages, lines) of an NDJSON file.
fn census(bytes: &[u8]) -> (usize, usize, usize, usize) {
    let (mut trades, mut rejects, mut messages, mut lines) = (0, 0, 0, 0);
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        lines += 1;
        if line.starts_with(br#"{"type":"trade""#) {
            messages += 1;
        }
        parse_line(line, &mut |item| match item {
            Item::Trade(_) => trades += 1,
            Item::Reject(_) => rejects += 1,
            Item::Ping | Item::ServerError(_) => {}
        });
    }
    (trades, rejects, messages, lines)
}

#[test]
fn the_same_seed_gives_the_same_file_in_every_format() {
    let dir = temp_dir();
    let path = |name: &str| dir.path().join(name);
    let options = ["--count", "5000", "--seed", "3", "--format"];
    for format in ["flat", "finnhub", "mixed"] {
        simulate(&path("a.ndjson"), &[&options[..], &[format]].concat());
        simulate(&path("b.ndjson"), &[&options[..], &[format]].concat());
        let (a, b) = (std::fs::read(path("a.ndjson")).unwrap(), std::fs::read(path("b.ndjson")).unwrap());
        assert!(a == b, "--format {format}: two runs with the same seed differ");
        let (trades, rejects, messages, lines) = census(&a);
        assert_eq!((trades, rejects), (5000, 0), "--format {format}");
        match format {
            "flat" => assert_eq!((messages, lines), (0, 5000)),
            "finnhub" => assert!(messages == lines && lines < 5000, "{messages} messages in {lines} lines"),
            _ => assert!(messages > 0 && messages < lines, "{messages} messages in {lines} lines"),
        }
    }
    simulate(&path("c.ndjson"), &["--count", "5000", "--seed", "4", "--format", "mixed"]);
    assert!(
        std::fs::read(path("c.ndjson")).unwrap() != std::fs::read(path("a.ndjson")).unwrap(),
        "seeds 3 and 4 agree"
    );
}
