//! The lake's reference readers (pyarrow, DuckDB) through Python.
//!
//! `TRADEFLOW_PYTHON` names a Python with `pyarrow`, `duckdb` and `pytz` (`.ci/run`
//! sets it up). When it is unset or unusable, reader tests fail if
//! `TRADEFLOW_REQUIRE_READERS=1` and otherwise say why and pass without checking.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The Python to run the readers with, or `None` (after printing why) when readers are
/// not available and not required.
pub fn python() -> Option<PathBuf> {
    let required = std::env::var("TRADEFLOW_REQUIRE_READERS").is_ok_and(|v| v == "1");
    let problem = match std::env::var_os("TRADEFLOW_PYTHON") {
        None => "TRADEFLOW_PYTHON is not set".to_owned(),
        Some(python) => {
            let check = Command::new(&python).args(["-c", "import pyarrow, duckdb, pytz"]).output();
            match check {
                Ok(out) if out.status.success() => return Some(PathBuf::from(python)),
                Ok(out) => format!(
                    "TRADEFLOW_PYTHON={} cannot import pyarrow, duckdb and pytz: {}",
                    python.to_string_lossy(),
                    String::from_utf8_lossy(&out.stderr).trim().lines().last().unwrap_or_default()
                ),
                Err(e) => format!("TRADEFLOW_PYTHON={} cannot be run: {e}", python.to_string_lossy()),
            }
        }
    };
    assert!(!required, "TRADEFLOW_REQUIRE_READERS=1 but {problem} (.ci/run sets up a virtualenv)");
    eprintln!("skipping the reader checks: {problem}; set TRADEFLOW_PYTHON to a Python with pyarrow, duckdb, pytz");
    None
}

/// `tests/python/<name>`.
pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python").join(name)
}

/// Runs `tests/python/<script> ARGS` and returns its stdout; panics on failure.
pub fn run_script(python: &PathBuf, name: &str, args: &[&str]) -> String {
    let path = script(name);
    let mut command = Command::new(python);
    command.arg(&path).args(args);
    let out = crate::process::Running::spawn(command).finish(Duration::from_secs(120));
    assert!(out.success(), "{} {args:?} failed with {}:\n{}", path.display(), out.status, out.stderr);
    out.stdout
}

/// A lake as one reader sees it (see `tests/python/read_lake.py`).
#[derive(Debug, Default)]
pub struct ReaderView {
    /// Trades with their `date` partition value.
    pub trades: Vec<(String, crate::lake::LakeTrade)>,
    /// Window metrics with their `date` partition value.
    pub window_metrics: Vec<(String, tradeflow_model::WindowMetrics)>,
    /// Anomalies with their `date` partition value.
    pub anomalies: Vec<(String, tradeflow_model::Anomaly)>,
    /// Dead letters.
    pub dead_letters: Vec<crate::lake::DeadLetter>,
}

/// Exact 10^-8 units of a decimal string such as `187.12` or `0`.
pub fn units(text: &str) -> i128 {
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    assert!(fraction.len() <= 8, "{text} has more than 8 decimals");
    let value: i128 = format!("{whole}{fraction:0<8}").parse().unwrap_or_else(|e| panic!("{text:?}: {e}"));
    if negative { -value } else { value }
}

fn text(v: &serde_json::Value) -> String {
    v.as_str().unwrap_or_else(|| panic!("{v} is not a string")).to_owned()
}

fn int(v: &serde_json::Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("{v} is not an integer"))
}

fn float(v: &serde_json::Value) -> Option<tradeflow_model::F64> {
    // Floats travel as repr() strings: Rust's parser reads them back bit for bit.
    v.as_str().map(|s| tradeflow_model::F64(s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))))
}

fn price(v: &serde_json::Value) -> tradeflow_model::Price {
    tradeflow_model::Price(i64::try_from(units(&text(v))).expect("a price fits i64"))
}

fn symbol(v: &serde_json::Value) -> tradeflow_model::Symbol {
    tradeflow_model::Symbol::parse(&text(v)).expect("a valid symbol")
}

/// Reads the lake at `root` with `reader` (`pyarrow` or `duckdb`).
pub fn read_lake(python: &PathBuf, root: &std::path::Path, reader: &str) -> ReaderView {
    use tradeflow_model::{Anomaly, AnomalyKind, WindowMetrics};
    let out = run_script(python, "read_lake.py", &[root.to_str().expect("a UTF-8 path"), reader]);
    let json: serde_json::Value = serde_json::from_str(&out).expect("the reader prints JSON");
    let rows = |name: &str| json[name].as_array().unwrap_or_else(|| panic!("no {name} in the output")).clone();
    let mut view = ReaderView::default();
    for r in rows("trades") {
        let conditions = r[5].as_array().map(|list| list.iter().map(text).collect());
        let trade = crate::lake::LakeTrade {
            symbol: text(&r[0]),
            ts: int(&r[2]),
            price: i64::try_from(units(&text(&r[3]))).expect("fits"),
            volume: i64::try_from(units(&text(&r[4]))).expect("fits"),
            conditions,
        };
        view.trades.push((text(&r[1]), trade));
    }
    for r in rows("window_metrics") {
        let row = WindowMetrics {
            symbol: symbol(&r[0]),
            window_start: int(&r[2]),
            window_end: int(&r[3]),
            trade_count: u64::try_from(int(&r[4])).expect("a count"),
            volume: units(&text(&r[5])),
            vwap: float(&r[6]),
            min_price: price(&r[7]),
            max_price: price(&r[8]),
            avg_price: float(&r[9]).expect("avg_price is never null"),
            open: price(&r[10]),
            close: price(&r[11]),
            volatility: float(&r[12]),
            is_final: true,
        };
        view.window_metrics.push((text(&r[1]), row));
    }
    for r in rows("anomalies") {
        let kind = match text(&r[4]).as_str() {
            "volume_spike" => AnomalyKind::VolumeSpike,
            "price_jump" => AnomalyKind::PriceJump,
            other => panic!("unknown kind {other:?}"),
        };
        let row = Anomaly {
            symbol: symbol(&r[0]),
            window_start: int(&r[2]),
            window_end: int(&r[3]),
            kind,
            severity: float(&r[5]).expect("not null"),
            detected_at: int(&r[6]),
            observed: float(&r[7]).expect("not null"),
            baseline: float(&r[8]).expect("not null"),
            is_final: true,
        };
        view.anomalies.push((text(&r[1]), row));
    }
    for r in rows("dead_letter") {
        view.dead_letters.push(crate::lake::DeadLetter {
            date: text(&r[0]),
            received_at: 0,
            source: text(&r[1]),
            position: int(&r[2]),
            element: i32::try_from(int(&r[3])).expect("an element index"),
            reason: text(&r[4]),
            detail: String::new(),
            payload: text(&r[5]),
            // Not compared across readers (their byte columns differ in shape).
            payload_bytes: None,
        });
    }
    view
}
