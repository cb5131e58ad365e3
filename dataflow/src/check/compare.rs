//! Comparing the recomputed rows with a target's (the lake's, PostgreSQL's), bit for bit.
//!
//! A window row is compared through its digest first: it matches when the stored digest
//! equals the recomputed row's and the stored values hash to that digest too (so a value
//! changed behind an unchanged digest is caught), and the row is final. Otherwise the
//! columns are compared in table order to name the first that differs; a row whose
//! values all agree but whose digest does not is reported on the `digest` column.
//! Anomalies have no digest: their columns are compared directly. A row on one side only
//! is reported on the column `row`.

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use tradeflow_model::{Anomaly, AnomalyKind, F64, Symbol, WindowMetrics, format_ts};

/// A window's key: (window_start, symbol), so that the first in order is the earliest.
pub type WindowKey = (i64, Symbol);

/// One difference between the recomputation and a target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    /// Window start, ms.
    pub window_start_ms: i64,
    /// The symbol.
    pub symbol: String,
    /// `window_metrics` or `anomalies`.
    pub dataset: &'static str,
    /// The anomaly kind, for anomalies.
    pub kind: Option<&'static str>,
    /// Where: `lake` or `postgres`.
    pub target: &'static str,
    /// Window start, RFC 3339.
    pub window_start: String,
    /// The first column that differs (`row` when the row is on one side only).
    pub column: &'static str,
    /// The recomputed value.
    pub expected: String,
    /// The target's value.
    pub found: String,
}

impl Mismatch {
    /// Earliest window first; a window's row before its anomalies.
    pub fn order(&self) -> (i64, &str, bool, Option<&str>, &str) {
        (self.window_start_ms, &self.symbol, self.dataset != "window_metrics", self.kind, self.target)
    }
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = self.kind.map(|k| format!(" {k}")).unwrap_or_default();
        write!(
            f,
            "{} {}{kind} window {} ({}): column {}: recomputed {}, {} has {}",
            self.symbol,
            self.dataset,
            self.window_start,
            self.window_start_ms,
            self.column,
            self.expected,
            self.target,
            self.found
        )
    }
}

/// How many rows of one dataset were compared and how they came out.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Counts {
    /// Rows compared (recomputed or found, within the range).
    pub checked: u64,
    /// Rows equal bit for bit.
    pub matching: u64,
    /// Rows that differ, or are on one side only.
    pub differing: u64,
}

/// The outcome for one target.
#[derive(Debug, Default)]
pub struct TargetOutcome {
    /// Window rows.
    pub windows: Counts,
    /// Anomaly rows.
    pub anomalies: Counts,
    /// Every difference, in (window, symbol) order.
    pub mismatches: Vec<Mismatch>,
    /// The windows with any difference (their row or one of their anomalies).
    pub bad: BTreeSet<WindowKey>,
    /// Every window key seen on either side.
    pub keys: BTreeSet<WindowKey>,
}

/// Compares a target's window rows (with their stored digests) and anomalies with the
/// recomputed ones; all within the checked range.
pub fn compare(
    target: &'static str,
    expected: &BTreeMap<WindowKey, WindowMetrics>,
    expected_anomalies: &BTreeMap<(i64, Symbol, AnomalyKind), Anomaly>,
    found: Vec<(WindowMetrics, Option<i64>)>,
    found_anomalies: Vec<Anomaly>,
) -> TargetOutcome {
    let mut out = TargetOutcome::default();
    let mismatch =
        |key: &WindowKey, dataset, kind: Option<AnomalyKind>, column, expected: String, found: String| Mismatch {
            window_start_ms: key.0,
            symbol: key.1.as_str().to_owned(),
            dataset,
            kind: kind.map(AnomalyKind::as_str),
            target,
            window_start: format_ts(key.0),
            column,
            expected,
            found,
        };

    let mut rows: BTreeMap<WindowKey, (WindowMetrics, Option<i64>)> = BTreeMap::new();
    for (row, digest) in found {
        let key = (row.window_start, row.symbol.clone());
        if rows.contains_key(&key) {
            out.mismatches.push(mismatch(&key, "window_metrics", None, "row", "one row".into(), "a duplicate".into()));
            out.bad.insert(key);
            continue;
        }
        rows.insert(key, (row, digest));
    }
    out.keys.extend(expected.keys().cloned());
    out.keys.extend(rows.keys().cloned());
    for key in out.keys.clone() {
        out.windows.checked += 1;
        let difference = match (expected.get(&key), rows.get(&key)) {
            (Some(want), Some((got, digest))) => metrics_difference(want, got, *digest),
            (Some(want), None) => Some(("row", present(want), "no row".into())),
            (None, Some((got, _))) => Some(("row", "no row (no trades read for it)".into(), present(got))),
            (None, None) => None,
        };
        match difference {
            None => out.windows.matching += 1,
            Some((column, want, got)) => {
                out.windows.differing += 1;
                out.bad.insert(key.clone());
                out.mismatches.push(mismatch(&key, "window_metrics", None, column, want, got));
            }
        }
    }

    let mut found_anomalies: BTreeMap<(i64, Symbol, AnomalyKind), Anomaly> =
        found_anomalies.into_iter().map(|a| ((a.window_start, a.symbol.clone(), a.kind), a)).collect();
    let keys: BTreeSet<(i64, Symbol, AnomalyKind)> =
        expected_anomalies.keys().chain(found_anomalies.keys()).cloned().collect();
    for key in keys {
        out.anomalies.checked += 1;
        let window = (key.0, key.1.clone());
        out.keys.insert(window.clone());
        let difference = match (expected_anomalies.get(&key), found_anomalies.remove(&key)) {
            (Some(want), Some(got)) => anomaly_difference(want, &got),
            (Some(want), None) => Some(("row", format!("severity {}", float(want.severity)), "no row".into())),
            (None, Some(got)) => Some(("row", "no anomaly".into(), format!("severity {}", float(got.severity)))),
            (None, None) => None,
        };
        match difference {
            None => out.anomalies.matching += 1,
            Some((column, want, got)) => {
                out.anomalies.differing += 1;
                out.bad.insert(window.clone());
                out.mismatches.push(mismatch(&window, "anomalies", Some(key.2), column, want, got));
            }
        }
    }
    out.mismatches.sort_by(|a, b| a.order().cmp(&b.order()));
    out
}

fn present(row: &WindowMetrics) -> String {
    format!("a row (trade_count {})", row.trade_count)
}

/// The first column in which `got` differs from `want`, with both values.
fn metrics_difference(
    want: &WindowMetrics,
    got: &WindowMetrics,
    stored: Option<i64>,
) -> Option<(&'static str, String, String)> {
    let digest = want.digest_i64();
    if stored == Some(digest) && got.digest_i64() == digest && got.is_final {
        return None;
    }
    macro_rules! column {
        ($name:literal, $field:ident, $show:expr) => {
            if want.$field != got.$field {
                return Some(($name, $show(&want.$field), $show(&got.$field)));
            }
        };
    }
    let int = |v: &dyn std::fmt::Display| v.to_string();
    column!("window_end", window_end, |v: &i64| format_ts(*v));
    column!("trade_count", trade_count, |v: &u64| int(v));
    column!("volume", volume, |v: &i128| units(*v));
    column!("vwap", vwap, |v: &Option<F64>| nullable(*v));
    column!("min_price", min_price, |v: &tradeflow_model::Price| int(v));
    column!("max_price", max_price, |v: &tradeflow_model::Price| int(v));
    column!("avg_price", avg_price, |v: &F64| float(*v));
    column!("open", open, |v: &tradeflow_model::Price| int(v));
    column!("close", close, |v: &tradeflow_model::Price| int(v));
    column!("volatility", volatility, |v: &Option<F64>| nullable(*v));
    if !got.is_final {
        return Some(("is_final", "true".into(), "false".into()));
    }
    Some(("digest", hex(Some(digest)), hex(stored)))
}

/// The first column in which anomaly `got` differs from `want`, with both values.
fn anomaly_difference(want: &Anomaly, got: &Anomaly) -> Option<(&'static str, String, String)> {
    let pairs = [
        ("window_end", format_ts(want.window_end), format_ts(got.window_end), want.window_end == got.window_end),
        ("severity", float(want.severity), float(got.severity), want.severity == got.severity),
        ("detected_at", format_ts(want.detected_at), format_ts(got.detected_at), want.detected_at == got.detected_at),
        ("observed", float(want.observed), float(got.observed), want.observed == got.observed),
        ("baseline", float(want.baseline), float(got.baseline), want.baseline == got.baseline),
        ("is_final", "true".into(), got.is_final.to_string(), got.is_final),
    ];
    pairs.into_iter().find(|p| !p.3).map(|(column, want, got, _)| (column, want, got))
}

/// A double exactly: the shortest text that reads back to the same bits.
pub fn float(v: F64) -> String {
    format!("{:?}", v.0)
}

fn nullable(v: Option<F64>) -> String {
    v.map_or_else(|| "NULL".into(), float)
}

/// A digest as stored (signed) and as 16 hex digits.
pub fn hex(digest: Option<i64>) -> String {
    digest.map_or_else(|| "NULL".into(), |d| format!("{d} (0x{:016x})", d as u64))
}

/// 10^-8 units as an exact decimal.
fn units(units: i128) -> String {
    let sign = if units < 0 { "-" } else { "" };
    let abs = units.unsigned_abs();
    let (whole, frac) = (abs / 100_000_000, abs % 100_000_000);
    if frac == 0 {
        return format!("{sign}{whole}");
    }
    format!("{sign}{whole}.{}", format!("{frac:08}").trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tradeflow_model::Price;

    fn row() -> WindowMetrics {
        WindowMetrics {
            symbol: Symbol::parse("AAPL").unwrap(),
            window_start: 1_700_000_000_000,
            window_end: 1_700_000_060_000,
            trade_count: 3,
            volume: 150_000_000,
            vwap: Some(F64(187.5)),
            min_price: Price(18_700_000_000),
            max_price: Price(18_800_000_000),
            avg_price: F64(187.25),
            open: Price(18_700_000_000),
            close: Price(18_800_000_000),
            volatility: None,
            is_final: true,
        }
    }

    fn outcome(found: Vec<(WindowMetrics, Option<i64>)>) -> TargetOutcome {
        let expected = BTreeMap::from([((row().window_start, row().symbol), row())]);
        compare("lake", &expected, &BTreeMap::new(), found, Vec::new())
    }

    #[test]
    fn names_the_first_differing_column_and_both_values() {
        assert!(outcome(vec![(row(), Some(row().digest_i64()))]).mismatches.is_empty());
        let tampered = WindowMetrics { vwap: Some(F64(187.75)), ..row() };
        let out = outcome(vec![(tampered, Some(row().digest_i64()))]);
        let m = &out.mismatches[0];
        assert_eq!(
            (m.column, m.expected.as_str(), m.found.as_str(), m.symbol.as_str()),
            ("vwap", "187.5", "187.75", "AAPL")
        );
        assert_eq!(m.window_start, "2023-11-14T22:13:20.000Z");
        let out = outcome(vec![(row(), Some(1))]);
        assert_eq!((out.mismatches[0].column, out.mismatches[0].found.as_str()), ("digest", "1 (0x0000000000000001)"));
        let out = outcome(vec![(WindowMetrics { is_final: false, ..row() }, Some(row().digest_i64()))]);
        assert_eq!(out.mismatches[0].column, "is_final");
        let out = outcome(vec![]);
        assert_eq!((out.mismatches[0].column, out.mismatches[0].found.as_str()), ("row", "no row"));
        let out = outcome(vec![(row(), Some(row().digest_i64())), (row(), Some(row().digest_i64()))]);
        assert_eq!(out.mismatches[0].found, "a duplicate");
    }

    #[test]
    fn shows_values_exactly() {
        assert_eq!(units(150_000_000), "1.5");
        assert_eq!(units(-1), "-0.00000001");
        assert_eq!(float(F64(0.1 + 0.2)), "0.30000000000000004");
    }
}
