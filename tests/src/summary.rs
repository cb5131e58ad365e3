//! The summary `tradeflow run` prints on stderr when it ends (SPEC 8):
//!
//! ```text
//! tradeflow run finished in 0.40s on 1 worker(s)
//!   trades accepted           59,970  (149,535/s)
//!   records rejected              30 (late 30)
//!   windows final                 42
//!   anomalies final                0
//! ```

use std::collections::BTreeMap;

/// The counts of a run summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Trades accepted.
    pub accepted: u64,
    /// Records rejected, all reasons.
    pub rejected: u64,
    /// Records rejected by reason (`invalid_json` -> 2); reasons with none are absent.
    pub by_reason: BTreeMap<String, u64>,
    /// Windows finalised.
    pub windows_final: u64,
    /// Final anomalies.
    pub anomalies_final: u64,
}

fn number(text: &str) -> Option<u64> {
    text.trim().replace(',', "").parse().ok()
}

/// The first number after `label` on the line that starts with it.
fn field<'a>(lines: &[&'a str], label: &str) -> Option<(u64, &'a str)> {
    let line = lines.iter().map(|l| l.trim_start()).find(|l| l.starts_with(label))?;
    let rest = line[label.len()..].trim_start();
    let end = rest.find(|c: char| !(c.is_ascii_digit() || c == ',')).unwrap_or(rest.len());
    Some((number(&rest[..end])?, &rest[end..]))
}

impl Summary {
    /// Parses the last summary in `stderr`; `None` when there is none.
    pub fn parse(stderr: &str) -> Option<Summary> {
        let start = stderr.rfind("tradeflow run finished")?;
        let lines: Vec<&str> = stderr[start..].lines().collect();
        let (accepted, _) = field(&lines, "trades accepted")?;
        let (rejected, rest) = field(&lines, "records rejected")?;
        let mut by_reason = BTreeMap::new();
        if let Some(list) = rest.trim().strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
            for part in list.split(", ") {
                let (reason, count) = part.rsplit_once(' ')?;
                by_reason.insert(reason.to_owned(), number(count)?);
            }
        }
        let (windows_final, _) = field(&lines, "windows final")?;
        let (anomalies_final, _) = field(&lines, "anomalies final")?;
        Some(Summary { accepted, rejected, by_reason, windows_final, anomalies_final })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_summary() {
        let text = "progress\ntradeflow run finished in 0.40s on 1 worker(s)\n  trades accepted           59,970  (149,535/s)\n  records rejected           1,030 (invalid_json 1,000, late 30)\n  windows final                 42\n  anomalies final                0\n  live updates 3\n";
        let s = Summary::parse(text).unwrap();
        assert_eq!(s.accepted, 59_970);
        assert_eq!(s.rejected, 1_030);
        assert_eq!(s.by_reason, BTreeMap::from([("invalid_json".into(), 1_000), ("late".into(), 30)]));
        assert_eq!((s.windows_final, s.anomalies_final), (42, 0));
        assert!(Summary::parse("nothing").is_none());
    }
}
