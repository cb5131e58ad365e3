//! What a run over NDJSON files must produce, computed without the binary.
//!
//! Each file is one partition (SPEC 6): its lines are parsed with
//! `tradeflow_sources::format::parse_line` in file order, each valid trade is decided
//! against the file's own watermark with `tradeflow_sources::lateness::PartitionClock`,
//! and the accepted trades go to `tradeflow_operators::reference::reference`, the naive
//! from-scratch recomputation of SPEC 4-5.

use crate::lake::LakeTrade;
use std::collections::BTreeMap;
use std::path::Path;
use tradeflow_model::{Anomaly, RejectReason, Trade, WindowMetrics, WindowSpec};
use tradeflow_operators::reference::reference;
use tradeflow_operators::{AnalyticsParams, AnomalyParams};
use tradeflow_sources::format::{Item, parse_line};
use tradeflow_sources::lateness::PartitionClock;

/// The analytics and lateness knobs of a run, as flags and as parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Knobs {
    /// `--window`, ms.
    pub window_ms: i64,
    /// `--slide`, ms (`None`: tumbling).
    pub slide_ms: Option<i64>,
    /// `--allowed-lateness`, ms.
    pub lateness_ms: i64,
    /// `--volatility-windows`.
    pub volatility_windows: usize,
    /// `--baseline-windows`.
    pub baseline_windows: usize,
    /// `--min-history`.
    pub min_history: usize,
    /// `--spike-factor`.
    pub spike_factor: f64,
    /// `--jump-sigma`.
    pub jump_sigma: f64,
}

impl Default for Knobs {
    /// SPEC 3-6 defaults.
    fn default() -> Self {
        Knobs {
            window_ms: 60_000,
            slide_ms: None,
            lateness_ms: 5_000,
            volatility_windows: 20,
            baseline_windows: 20,
            min_history: 5,
            spike_factor: 3.0,
            jump_sigma: 4.0,
        }
    }
}

impl Knobs {
    /// The `tradeflow run` flags that set every knob.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            "--window".to_owned(),
            format!("{}ms", self.window_ms),
            "--allowed-lateness".to_owned(),
            format!("{}ms", self.lateness_ms),
            "--volatility-windows".to_owned(),
            self.volatility_windows.to_string(),
            "--baseline-windows".to_owned(),
            self.baseline_windows.to_string(),
            "--min-history".to_owned(),
            self.min_history.to_string(),
            "--spike-factor".to_owned(),
            self.spike_factor.to_string(),
            "--jump-sigma".to_owned(),
            self.jump_sigma.to_string(),
        ];
        if let Some(slide) = self.slide_ms {
            args.extend(["--slide".to_owned(), format!("{slide}ms")]);
        }
        args
    }

    /// The parameters the reference computes with.
    pub fn params(&self) -> AnalyticsParams {
        AnalyticsParams {
            windows: WindowSpec::hopping(self.window_ms, self.slide_ms.unwrap_or(self.window_ms))
                .expect("valid windows"),
            volatility_windows: self.volatility_windows,
            anomalies: AnomalyParams {
                spike_factor: self.spike_factor,
                baseline_windows: self.baseline_windows,
                min_history: self.min_history,
                jump_sigma: self.jump_sigma,
            },
        }
    }
}

/// A record the run must reject.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExpectedReject {
    /// The file's `file:///abs/path`.
    pub source: String,
    /// Byte offset of the line in the file.
    pub position: u64,
    /// Element index in a Finnhub message (0 otherwise).
    pub element: u32,
    /// Why.
    pub reason: RejectReason,
    /// The raw record: the line, or the element of a Finnhub message (model `Reject`).
    pub payload: String,
}

/// What a run over some NDJSON files must accept and reject.
#[derive(Clone, Debug, Default)]
pub struct Expected {
    /// Accepted trades, in file order.
    pub accepted: Vec<Trade>,
    /// Rejected records, in file order.
    pub rejects: Vec<ExpectedReject>,
}

impl Expected {
    /// Reads the files (each one partition) as a run with `--allowed-lateness lateness_ms`
    /// would.
    pub fn from_files(paths: &[&Path], lateness_ms: i64) -> Expected {
        let mut expected = Expected::default();
        for path in paths {
            let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            expected.add_file(&crate::file_url(path), &bytes, lateness_ms);
        }
        expected
    }

    /// Adds one file, a partition of its own, labelled `source`.
    pub fn add_file(&mut self, source: &str, bytes: &[u8], lateness_ms: i64) {
        let mut clock = PartitionClock::new(lateness_ms);
        let mut position = 0usize;
        for line in bytes.split(|b| *b == b'\n') {
            let reject = |reason, payload: &[u8], element| ExpectedReject {
                source: source.to_owned(),
                position: position as u64,
                element,
                reason,
                payload: String::from_utf8_lossy(payload).into_owned(),
            };
            parse_line(line, &mut |item| match item {
                Item::Trade(t) => {
                    if clock.admit(t.ts) {
                        self.accepted.push(t.to_trade().expect("the parser checked the symbol"));
                    } else {
                        let text = std::str::from_utf8(line).expect("a line with a valid trade is UTF-8");
                        let payload = match message_elements(text) {
                            Some(elements) => elements[t.element as usize].as_bytes(),
                            None => line,
                        };
                        self.rejects.push(reject(RejectReason::Late, payload, t.element));
                    }
                }
                Item::Reject(r) => self.rejects.push(reject(r.reason, r.payload, r.element)),
                Item::Ping | Item::ServerError(_) => {}
            });
            position += line.len() + 1;
        }
    }

    /// The final window metrics and anomalies of the accepted trades, sorted.
    pub fn results(&self, knobs: &Knobs) -> (Vec<WindowMetrics>, Vec<Anomaly>) {
        let trades: Vec<_> = self.accepted.iter().map(|t| (t.symbol.clone(), t.ts, t.price, t.volume)).collect();
        let (mut metrics, mut anomalies) = reference(&trades, &knobs.params());
        metrics.sort();
        anomalies.sort();
        (metrics, anomalies)
    }

    /// The accepted trades as the lake's `trades` rows, sorted.
    pub fn lake_trades(&self) -> Vec<LakeTrade> {
        let mut rows: Vec<LakeTrade> = self
            .accepted
            .iter()
            .map(|t| LakeTrade {
                symbol: t.symbol.as_str().to_owned(),
                ts: t.ts,
                price: t.price.units(),
                volume: t.volume.units(),
                conditions: t.conditions.decode(),
            })
            .collect();
        rows.sort();
        rows
    }

    /// Rejects counted by reason, as the summary lists them.
    pub fn reject_counts(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for r in &self.rejects {
            *counts.entry(r.reason.as_str().to_owned()).or_default() += 1;
        }
        counts
    }
}

/// The raw texts of the `data` elements of a Finnhub message line (`None` when the line
/// is not an object with a `data` array). The line must be valid JSON.
pub fn message_elements(line: &str) -> Option<Vec<&str>> {
    let b = line.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i = skip_ws(b, i);
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = skip_value(b, i);
        let key = &line[i + 1..key_end - 1];
        i = skip_ws(b, key_end) + 1; // the ':'
        i = skip_ws(b, i);
        if key == "data" && b.get(i) == Some(&b'[') {
            let mut elements = Vec::new();
            i += 1;
            loop {
                i = skip_ws(b, i);
                if b.get(i) == Some(&b']') {
                    return Some(elements);
                }
                let end = skip_value(b, i);
                elements.push(&line[i..end]);
                i = skip_ws(b, end);
                if b.get(i) == Some(&b',') {
                    i += 1;
                }
            }
        }
        i = skip_ws(b, skip_value(b, i));
        match b.get(i) {
            Some(b',') => i += 1,
            _ => return None,
        }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\r' | b'\n')) {
        i += 1;
    }
    i
}

/// The end of the JSON value starting at `i`.
fn skip_value(b: &[u8], mut i: usize) -> usize {
    let mut depth = 0usize;
    loop {
        match b.get(i) {
            None => return i,
            Some(b'"') => {
                i += 1;
                while let Some(c) = b.get(i) {
                    i += if *c == b'\\' { 2 } else { 1 };
                    if *c == b'"' {
                        break;
                    }
                }
                if depth == 0 {
                    return i;
                }
            }
            Some(b'{' | b'[') => {
                depth += 1;
                i += 1;
            }
            Some(b'}' | b']') if depth > 0 => {
                depth -= 1;
                i += 1;
                if depth == 0 {
                    return i;
                }
            }
            Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n') if depth == 0 => return i,
            Some(_) => i += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_message_elements() {
        let line = r#"{"type":"trade","data":[{"s":"A\"]","p":1,"t":2,"v":3,"c":["x"]}, 42 ,{"s":"B"}]}"#;
        assert_eq!(
            message_elements(line).unwrap(),
            vec![r#"{"s":"A\"]","p":1,"t":2,"v":3,"c":["x"]}"#, "42", r#"{"s":"B"}"#]
        );
        assert_eq!(message_elements(r#"{"s":"A","p":1}"#), None);
    }
}
