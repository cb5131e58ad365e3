//! The report as Markdown: the same numbers as the HTML page, as tables.

use super::{MAX_ANOMALY_ROWS, Report, clock, clock_seconds, format_units, significant};
use std::fmt::Write;

/// `text` safe in a Markdown table cell: ASCII punctuation that Markdown (or the HTML it
/// may hold) would read is backslash-escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\|`*_[]<>&#!~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// An anomaly kind: as is when it is one of the plain names tradeflow writes
/// (`volume_spike`), escaped otherwise.
fn kind(text: &str) -> String {
    if text.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') { text.to_owned() } else { escape(text) }
}

/// `text` as a Markdown code span (shown as is, whatever it holds).
pub fn code(text: &str) -> String {
    let mut fence = String::from("`");
    while text.contains(fence.as_str()) {
        fence.push('`');
    }
    let pad = if text.starts_with('`') || text.ends_with('`') { " " } else { "" };
    format!("{fence}{pad}{text}{pad}{fence}")
}

fn opt(value: Option<f64>, digits: i32) -> String {
    value.map_or_else(|| "–".to_owned(), |v| significant(v, digits))
}

/// The change from `first` to `last`, in percent.
pub fn change(first: Option<f64>, last: Option<f64>) -> Option<f64> {
    match (first, last) {
        (Some(a), Some(b)) if a != 0.0 => Some((b / a - 1.0) * 100.0),
        _ => None,
    }
}

/// Renders the report.
pub fn render(r: &Report) -> String {
    let mut md = String::new();
    let (windows, trades) = r.totals();
    let _ = writeln!(md, "# tradeflow daily report: {}\n", r.date);
    let _ = writeln!(
        md,
        "Source: {}. Final windows starting {} (UTC), {} to {}.\n",
        code(&r.source),
        r.date,
        clock(r.span.0, r.day_start),
        clock(r.span.1, r.day_start)
    );

    let _ = writeln!(md, "## Summary\n\n| | |\n|---|---:|");
    let _ = writeln!(md, "| symbols | {} |", r.symbols.len());
    let _ = writeln!(md, "| windows | {windows} |");
    let _ = writeln!(md, "| trades | {trades} |");
    let kinds: Vec<String> = r.anomalies_by_kind().iter().map(|(k, n)| format!("{} {n}", kind(k))).collect();
    let kinds = if kinds.is_empty() { String::new() } else { format!(" ({})", kinds.join(", ")) };
    let _ = writeln!(md, "| anomalies | {}{kinds} |\n", r.anomalies.len());

    let _ = writeln!(md, "## Top volatile symbols (by {} volatility)\n", r.rank_by.label());
    if r.ranked.is_empty() {
        let _ = writeln!(md, "No symbol has a volatility on this day (each needs 3 windows with a VWAP).\n");
    } else {
        let _ = writeln!(
            md,
            "| rank | symbol | mean volatility | max volatility | windows | trades | volume | first VWAP | last VWAP | change % | anomalies |"
        );
        let _ = writeln!(md, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (rank, &i) in r.ranked.iter().enumerate() {
            let s = &r.symbols[i];
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                rank + 1,
                escape(&s.symbol),
                opt(s.mean_volatility, 6),
                opt(s.max_volatility, 6),
                s.windows,
                s.trades,
                format_units(s.volume),
                opt(s.first_vwap, 8),
                opt(s.last_vwap, 8),
                change(s.first_vwap, s.last_vwap).map_or_else(|| "–".into(), |c| format!("{c:.3}")),
                s.anomalies
            );
        }
        let _ = writeln!(md, "\n{} of {} symbols have a volatility.\n", r.rankable, r.symbols.len());
    }

    let _ = writeln!(md, "## Volume by hour (UTC)\n");
    let _ = writeln!(md, "| hour | windows | trades | volume |\n|---|---:|---:|---:|");
    for (h, hour) in r.hours.iter().enumerate() {
        let _ = writeln!(md, "| {h:02}:00 | {} | {} | {} |", hour.windows, hour.trades, format_units(hour.volume));
    }
    let _ = writeln!(md);

    let _ = writeln!(md, "## VWAP of the top symbols (last window of each hour)\n");
    if r.vwap_symbols.is_empty() {
        let _ = writeln!(md, "No window of this day has a VWAP.\n");
    } else {
        let names: Vec<String> = r.vwap_symbols.iter().map(|&i| escape(&r.symbols[i].symbol)).collect();
        let _ = writeln!(md, "| hour | {} |", names.join(" | "));
        let _ = writeln!(md, "|---|{}", "---:|".repeat(names.len()));
        for (h, row) in r.hourly_vwaps() {
            let cells: Vec<String> = row.iter().map(|v| opt(*v, 8)).collect();
            let _ = writeln!(md, "| {h:02}:00 | {} |", cells.join(" | "));
        }
        let _ = writeln!(md);
    }

    let _ = writeln!(md, "## Anomalies\n");
    if r.anomalies.is_empty() {
        let _ = writeln!(md, "No anomalies on this day.");
    } else {
        if r.anomalies.len() > MAX_ANOMALY_ROWS {
            let _ = writeln!(md, "The {MAX_ANOMALY_ROWS} most severe of {}.\n", r.anomalies.len());
        }
        let _ = writeln!(md, "| window start | symbol | kind | severity | observed | baseline |");
        let _ = writeln!(md, "|---|---|---|---:|---:|---:|");
        for a in r.anomalies.iter().take(MAX_ANOMALY_ROWS) {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                clock_seconds(a.window_start, r.day_start),
                escape(&a.symbol),
                kind(&a.kind),
                significant(a.severity, 6),
                significant(a.observed, 6),
                significant(a.baseline, 6)
            );
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_table_cells() {
        assert_eq!(escape("A<b>&\"Q'|x"), "A\\<b\\>\\&\"Q'\\|x");
        assert_eq!(escape("OANDA:EUR_USD"), "OANDA:EUR\\_USD");
        assert_eq!(change(Some(2.0), Some(3.0)), Some(50.0));
        assert_eq!(change(None, Some(3.0)), None);
        assert_eq!(code("lake file:///a_b"), "`lake file:///a_b`");
        assert_eq!(code("a`b"), "``a`b``");
    }
}
