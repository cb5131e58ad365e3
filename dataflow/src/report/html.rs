//! The report as one self-contained HTML page: inline CSS and inline SVG charts drawn
//! here, no script, no font or image fetched (a Content-Security-Policy forbids any
//! request), so it reads the same offline, from a mail attachment or an archive. Every
//! string from the data (symbols, kinds, the source) is escaped.

use super::markdown::change;
use super::{HOUR_MS, MAX_ANOMALY_ROWS, Report, clock, clock_seconds, format_units, significant};
use std::fmt::Write;

/// Chart width in SVG units (the page scales it).
const WIDTH: f64 = 960.0;
/// Colours of the VWAP series and the anomaly kinds.
const PALETTE: [&str; 5] = ["#2563eb", "#d97706", "#059669", "#7c3aed", "#db2777"];
const SPIKE: &str = "#d97706";
const JUMP: &str = "#dc2626";

/// `text` safe in HTML text and in quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// At most `n` characters of `text`, with an ellipsis when cut.
fn shorten(text: &str, n: usize) -> String {
    if text.chars().count() <= n {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(n - 1).collect::<String>())
    }
}

/// An axis label: `1.2k`, `3.4M`, `0.0012`.
fn compact(x: f64) -> String {
    let a = x.abs();
    if a >= 1e9 {
        format!("{}G", significant(x / 1e9, 3))
    } else if a >= 1e6 {
        format!("{}M", significant(x / 1e6, 3))
    } else if a >= 1e4 {
        format!("{}k", significant(x / 1e3, 3))
    } else {
        significant(x, 3)
    }
}

/// About `n` round tick values covering `[lo, hi]`.
fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) || !lo.is_finite() || !hi.is_finite() {
        return vec![lo];
    }
    let raw = (hi - lo) / n.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * magnitude).find(|s| *s >= raw).unwrap_or(10.0 * magnitude);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

fn kind_colour(kind: &str) -> &'static str {
    if kind == "volume_spike" { SPIKE } else { JUMP }
}

/// The time axis of the day's charts: whole hours around the data.
struct TimeAxis {
    from: i64,
    to: i64,
    left: f64,
    right: f64,
}

impl TimeAxis {
    fn of(r: &Report, left: f64, right: f64) -> TimeAxis {
        let from = r.day_start + (r.span.0 - r.day_start).div_euclid(HOUR_MS) * HOUR_MS;
        let to =
            (r.day_start + (r.span.1 - r.day_start + HOUR_MS - 1).div_euclid(HOUR_MS) * HOUR_MS).max(from + HOUR_MS);
        TimeAxis { from, to, left, right }
    }

    fn x(&self, ms: i64) -> f64 {
        self.left + (ms - self.from) as f64 / (self.to - self.from) as f64 * (self.right - self.left)
    }

    /// Hour ticks and labels along `y`, with grid lines up to `top`.
    fn draw(&self, svg: &mut String, r: &Report, top: f64, y: f64) {
        let hours = (self.to - self.from) / HOUR_MS;
        let every = (hours / 12).max(1);
        for k in (0..=hours).step_by(every as usize) {
            let t = self.from + k * HOUR_MS;
            let x = self.x(t);
            let _ = write!(
                svg,
                r#"<line class="grid" x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{y:.1}"/><text class="tick" x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                y + 16.0,
                clock(t, r.day_start)
            );
        }
    }
}

/// Horizontal bars of the ranked symbols' volatility: the ranking statistic as the bar,
/// the other (mean or max) as a tick.
fn volatility_chart(r: &Report) -> String {
    let (left, right, row, top) = (240.0, WIDTH - 90.0, 26.0, 28.0);
    let height = top + row * r.ranked.len() as f64 + 34.0;
    let max = r.ranked.iter().filter_map(|&i| r.symbols[i].max_volatility).fold(0.0, f64::max);
    let max = if max > 0.0 { max * 1.05 } else { 1.0 };
    let x = |v: f64| left + v / max * (right - left);
    let mut svg = format!(
        r#"<svg id="chart-volatility" class="chart" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="Top volatile symbols">"#
    );
    let bottom = top + row * r.ranked.len() as f64;
    for t in ticks(0.0, max, 6) {
        let _ = write!(
            svg,
            r#"<line class="grid" x1="{0:.1}" y1="{top}" x2="{0:.1}" y2="{bottom}"/><text class="tick" x="{0:.1}" y="{1:.1}" text-anchor="middle">{2}</text>"#,
            x(t),
            bottom + 16.0,
            significant(t, 3)
        );
    }
    let _ = write!(
        svg,
        r##"<text class="legend" x="{left}" y="16"><tspan fill="{}">■</tspan> {} volatility  <tspan fill="#111827">|</tspan> {} volatility</text>"##,
        PALETTE[0],
        r.rank_by.label(),
        if r.rank_by == super::RankBy::Mean { "max" } else { "mean" }
    );
    for (rank, &i) in r.ranked.iter().enumerate() {
        let s = &r.symbols[i];
        let y = top + rank as f64 * row;
        let (value, other) = match r.rank_by {
            super::RankBy::Mean => (s.mean_volatility.unwrap_or(0.0), s.max_volatility),
            super::RankBy::Max => (s.max_volatility.unwrap_or(0.0), s.mean_volatility),
        };
        let title = format!(
            "{}: mean volatility {}, max {}",
            s.symbol,
            s.mean_volatility.map_or("–".into(), |v| significant(v, 6)),
            s.max_volatility.map_or("–".into(), |v| significant(v, 6))
        );
        let _ = write!(
            svg,
            r#"<g class="bar"><title>{}</title><text class="label" x="{:.1}" y="{:.1}" text-anchor="end">{}</text><rect x="{left}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"/>"#,
            escape(&title),
            left - 8.0,
            y + row * 0.65,
            escape(&shorten(&s.symbol, 30)),
            y + 4.0,
            (x(value) - left).max(1.0),
            row - 8.0,
            PALETTE[0]
        );
        if let Some(o) = other {
            let _ = write!(
                svg,
                r##"<rect x="{:.1}" y="{:.1}" width="2" height="{:.1}" fill="#111827"/>"##,
                x(o) - 1.0,
                y + 1.0,
                row - 2.0
            );
        }
        let _ = write!(
            svg,
            r#"<text class="value" x="{:.1}" y="{:.1}">{}</text></g>"#,
            x(value) + 6.0,
            y + row * 0.65,
            significant(value, 4)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Bars of the volume of each UTC hour.
fn volume_chart(r: &Report) -> String {
    let (left, right, top, bottom) = (70.0, WIDTH - 10.0, 14.0, 262.0);
    let height = bottom + 30.0;
    let volume = |units: i128| units as f64 / 1e8;
    let max = r.hours.iter().map(|h| volume(h.volume)).fold(0.0, f64::max);
    let max = if max > 0.0 { max * 1.05 } else { 1.0 };
    let y = |v: f64| bottom - v / max * (bottom - top);
    let slot = (right - left) / 24.0;
    let mut svg = format!(
        r#"<svg id="chart-volume" class="chart" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="Volume by hour">"#
    );
    for t in ticks(0.0, max, 5) {
        let _ = write!(
            svg,
            r#"<line class="grid" x1="{left}" y1="{0:.1}" x2="{right}" y2="{0:.1}"/><text class="tick" x="{1:.1}" y="{2:.1}" text-anchor="end">{3}</text>"#,
            y(t),
            left - 6.0,
            y(t) + 4.0,
            compact(t)
        );
    }
    for (h, hour) in r.hours.iter().enumerate() {
        let x = left + h as f64 * slot;
        let v = volume(hour.volume);
        let _ = write!(
            svg,
            r#"<g class="bar"><title>{h:02}:00 UTC: volume {}, {} trades in {} windows</title><rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"/><text class="tick" x="{:.1}" y="{:.1}" text-anchor="middle">{h:02}</text></g>"#,
            format_units(hour.volume),
            hour.trades,
            hour.windows,
            x + 3.0,
            y(v),
            slot - 6.0,
            bottom - y(v),
            PALETTE[2],
            x + slot / 2.0,
            bottom + 16.0
        );
    }
    svg.push_str("</svg>");
    svg
}

/// One small chart per VWAP symbol: each window's VWAP, with the symbol's anomalies.
fn vwap_charts(r: &Report) -> String {
    let (left, right, top, bottom) = (90.0, WIDTH - 20.0, 26.0, 140.0);
    let axis = TimeAxis::of(r, left, right);
    let mut out = String::from(r#"<div id="chart-vwap">"#);
    for (n, &i) in r.vwap_symbols.iter().enumerate() {
        let s = &r.symbols[i];
        let colour = PALETTE[n % PALETTE.len()];
        let lo = s.vwaps.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        let hi = s.vwaps.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
        let pad = if hi > lo { (hi - lo) * 0.05 } else { lo.abs().max(1e-8) * 0.01 };
        let (lo, hi) = (lo - pad, hi + pad);
        let y = |v: f64| bottom - (v - lo) / (hi - lo) * (bottom - top);
        let _ = write!(
            out,
            r#"<svg class="chart vwap-chart" viewBox="0 0 {WIDTH} {}" role="img" aria-label="VWAP of {}">"#,
            bottom + 26.0,
            escape(&s.symbol)
        );
        let _ = write!(
            out,
            r#"<text class="legend" x="{left}" y="16"><tspan fill="{colour}">━</tspan> {} VWAP: {} → {} ({}%)</text>"#,
            escape(&s.symbol),
            s.first_vwap.map_or("–".into(), |v| significant(v, 8)),
            s.last_vwap.map_or("–".into(), |v| significant(v, 8)),
            change(s.first_vwap, s.last_vwap).map_or("–".into(), |c| format!("{c:+.3}"))
        );
        for t in ticks(lo, hi, 3) {
            let _ = write!(
                out,
                r#"<line class="grid" x1="{left}" y1="{0:.1}" x2="{right}" y2="{0:.1}"/><text class="tick" x="{1:.1}" y="{2:.1}" text-anchor="end">{3}</text>"#,
                y(t),
                left - 6.0,
                y(t) + 4.0,
                significant(t, 6)
            );
        }
        axis.draw(&mut out, r, top, bottom);
        let mut d = String::new();
        for (k, (t, v)) in s.vwaps.iter().enumerate() {
            let _ = write!(d, "{}{:.1},{:.1}", if k == 0 { "M" } else { " L" }, axis.x(*t), y(*v));
        }
        let _ = write!(out, r#"<path class="line" d="{d}" stroke="{colour}"/>"#);
        for a in r.anomalies.iter().filter(|a| a.symbol == s.symbol) {
            let Some((_, v)) = s.vwaps.iter().find(|(t, _)| *t == a.window_start) else { continue };
            let _ = write!(
                out,
                r#"<circle class="mark" cx="{:.1}" cy="{:.1}" r="4" fill="{}"><title>{} {} at {}: severity {}</title></circle>"#,
                axis.x(a.window_start),
                y(*v),
                kind_colour(&a.kind),
                escape(&a.symbol),
                escape(&a.kind),
                clock_seconds(a.window_start, r.day_start),
                significant(a.severity, 4)
            );
        }
        out.push_str("</svg>");
    }
    out.push_str("</div>");
    out
}

/// Every anomaly of the day: severity against time, coloured by kind.
fn anomaly_chart(r: &Report) -> String {
    let (left, right, top, bottom) = (70.0, WIDTH - 20.0, 28.0, 240.0);
    let axis = TimeAxis::of(r, left, right);
    let max = r.anomalies.iter().map(|a| a.severity).fold(0.0, f64::max);
    let max = if max > 0.0 { max * 1.05 } else { 1.0 };
    let y = |v: f64| bottom - v / max * (bottom - top);
    let mut svg = format!(
        r#"<svg id="chart-anomalies" class="chart" viewBox="0 0 {WIDTH} {}" role="img" aria-label="Anomalies by severity">"#,
        bottom + 26.0
    );
    let _ = write!(
        svg,
        r#"<text class="legend" x="{left}" y="16"><tspan fill="{SPIKE}">●</tspan> volume_spike  <tspan fill="{JUMP}">●</tspan> price_jump  (severity)</text>"#
    );
    for t in ticks(0.0, max, 5) {
        let _ = write!(
            svg,
            r#"<line class="grid" x1="{left}" y1="{0:.1}" x2="{right}" y2="{0:.1}"/><text class="tick" x="{1:.1}" y="{2:.1}" text-anchor="end">{3}</text>"#,
            y(t),
            left - 6.0,
            y(t) + 4.0,
            compact(t)
        );
    }
    axis.draw(&mut svg, r, top, bottom);
    for a in &r.anomalies {
        let _ = write!(
            svg,
            r#"<circle class="mark" cx="{:.1}" cy="{:.1}" r="4.5" fill="{}"><title>{} {} at {}: severity {}</title></circle>"#,
            axis.x(a.window_start),
            y(a.severity),
            kind_colour(&a.kind),
            escape(&a.symbol),
            escape(&a.kind),
            clock_seconds(a.window_start, r.day_start),
            significant(a.severity, 4)
        );
    }
    svg.push_str("</svg>");
    svg
}

const STYLE: &str = "
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:#111827;background:#f9fafb;margin:0}
main{max-width:1000px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 8px}
.source{color:#4b5563;margin:0 0 16px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:10px 16px;min-width:120px}
.card b{display:block;font-size:20px}
.chart{width:100%;height:auto;background:#fff;border:1px solid #e5e7eb;border-radius:8px;margin:4px 0}
.chart text{font-size:12px;fill:#374151}.chart .legend{font-size:13px}.chart .label{font-size:12.5px}
.chart .grid{stroke:#e5e7eb;stroke-width:1}.chart .line{fill:none;stroke-width:1.6}
table{border-collapse:collapse;background:#fff;margin:8px 0;font-variant-numeric:tabular-nums}
th,td{border:1px solid #e5e7eb;padding:3px 8px;text-align:right}th{background:#f3f4f6}
td.text,th.text{text-align:left}
details{margin:6px 0}summary{cursor:pointer;color:#374151}
.note{color:#4b5563}
";

fn table_row(out: &mut String, cells: &[(bool, String)]) {
    out.push_str("<tr>");
    for (text, cell) in cells {
        let _ = write!(out, "<td{}>{}</td>", if *text { r#" class="text""# } else { "" }, escape(cell));
    }
    out.push_str("</tr>");
}

/// Renders the page.
pub fn render(r: &Report) -> String {
    let (windows, trades) = r.totals();
    let mut h = String::new();
    let _ = write!(
        h,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tradeflow daily report {date}</title><style>{STYLE}</style></head>
<body><main>
<h1>tradeflow daily report: {date}</h1>
<p class="source" id="source">Source: {source}. Final windows starting {date} (UTC), {from} to {to}.</p>
<div class="cards">"#,
        date = escape(&r.date),
        source = escape(&r.source),
        from = clock(r.span.0, r.day_start),
        to = clock(r.span.1, r.day_start)
    );
    let kinds = r.anomalies_by_kind();
    for (label, value) in [
        ("symbols", r.symbols.len().to_string()),
        ("windows", windows.to_string()),
        ("trades", trades.to_string()),
        ("anomalies", r.anomalies.len().to_string()),
    ] {
        let _ = write!(h, r#"<div class="card" data-key="{label}">{label}<b>{value}</b></div>"#);
    }
    for (kind, n) in &kinds {
        let _ = write!(h, r#"<div class="card">{}<b>{n}</b></div>"#, escape(kind));
    }
    h.push_str("</div>");

    let _ =
        write!(h, r#"<section id="volatility"><h2>Top volatile symbols (by {} volatility)</h2>"#, r.rank_by.label());
    if r.ranked.is_empty() {
        h.push_str(r#"<p class="note">No symbol has a volatility on this day (each needs 3 windows with a VWAP).</p>"#);
    } else {
        h.push_str(&volatility_chart(r));
        h.push_str(r#"<table id="table-volatility"><thead><tr><th>rank</th><th class="text">symbol</th><th>mean volatility</th><th>max volatility</th><th>windows</th><th>trades</th><th>volume</th><th>first VWAP</th><th>last VWAP</th><th>change %</th><th>anomalies</th></tr></thead><tbody>"#);
        let opt = |v: Option<f64>, d| v.map_or_else(|| "–".to_owned(), |v| significant(v, d));
        for (rank, &i) in r.ranked.iter().enumerate() {
            let s = &r.symbols[i];
            let cells = [
                (false, (rank + 1).to_string()),
                (true, s.symbol.clone()),
                (false, opt(s.mean_volatility, 6)),
                (false, opt(s.max_volatility, 6)),
                (false, s.windows.to_string()),
                (false, s.trades.to_string()),
                (false, format_units(s.volume)),
                (false, opt(s.first_vwap, 8)),
                (false, opt(s.last_vwap, 8)),
                (false, change(s.first_vwap, s.last_vwap).map_or_else(|| "–".into(), |c| format!("{c:.3}"))),
                (false, s.anomalies.to_string()),
            ];
            table_row(&mut h, &cells);
        }
        let _ = write!(
            h,
            r#"</tbody></table><p class="note">{} of {} symbols have a volatility (the sample standard deviation of log VWAP returns over the last K windows; not annualised).</p>"#,
            r.rankable,
            r.symbols.len()
        );
    }
    h.push_str("</section>");

    h.push_str(r#"<section id="volume"><h2>Volume by hour (UTC)</h2>"#);
    h.push_str(&volume_chart(r));
    h.push_str(r#"<details><summary>The numbers</summary><table id="table-volume"><thead><tr><th class="text">hour</th><th>windows</th><th>trades</th><th>volume</th></tr></thead><tbody>"#);
    for (n, hour) in r.hours.iter().enumerate() {
        let cells = [
            (true, format!("{n:02}:00")),
            (false, hour.windows.to_string()),
            (false, hour.trades.to_string()),
            (false, format_units(hour.volume)),
        ];
        table_row(&mut h, &cells);
    }
    h.push_str(r#"</tbody></table></details><p class="note">Σ volume of the windows starting in each hour, over every symbol (each in its own unit: shares, coins, currency).</p></section>"#);

    h.push_str(r#"<section id="vwap"><h2>VWAP of the top symbols</h2>"#);
    if r.vwap_symbols.is_empty() {
        h.push_str(r#"<p class="note">No window of this day has a VWAP.</p>"#);
    } else {
        h.push_str(&vwap_charts(r));
        h.push_str(r#"<details><summary>The last VWAP of each hour</summary><table id="table-vwap"><thead><tr><th class="text">hour</th>"#);
        for &i in &r.vwap_symbols {
            let _ = write!(h, "<th>{}</th>", escape(&r.symbols[i].symbol));
        }
        h.push_str("</tr></thead><tbody>");
        for (hour, row) in r.hourly_vwaps() {
            let mut cells = vec![(true, format!("{hour:02}:00"))];
            cells.extend(row.iter().map(|v| (false, v.map_or_else(|| "–".into(), |v| significant(v, 8)))));
            table_row(&mut h, &cells);
        }
        h.push_str(r#"</tbody></table></details><p class="note">Each window's VWAP (Σ price·volume / Σ volume); dots mark the symbol's anomalies.</p>"#);
    }
    h.push_str("</section>");

    h.push_str(r#"<section id="anomalies"><h2>Anomalies</h2>"#);
    if r.anomalies.is_empty() {
        h.push_str(r#"<p class="note">No anomalies on this day.</p>"#);
    } else {
        h.push_str(&anomaly_chart(r));
        if r.anomalies.len() > MAX_ANOMALY_ROWS {
            let _ = write!(h, r#"<p class="note">The {MAX_ANOMALY_ROWS} most severe of {}.</p>"#, r.anomalies.len());
        }
        h.push_str(r#"<table id="table-anomalies"><thead><tr><th class="text">window start</th><th class="text">symbol</th><th class="text">kind</th><th>severity</th><th>observed</th><th>baseline</th></tr></thead><tbody>"#);
        for a in r.anomalies.iter().take(MAX_ANOMALY_ROWS) {
            let cells = [
                (true, clock_seconds(a.window_start, r.day_start)),
                (true, a.symbol.clone()),
                (true, a.kind.clone()),
                (false, significant(a.severity, 6)),
                (false, significant(a.observed, 6)),
                (false, significant(a.baseline, 6)),
            ];
            table_row(&mut h, &cells);
        }
        h.push_str(r#"</tbody></table><p class="note">volume_spike: severity = volume / baseline volume of the previous windows; price_jump: severity = |r − μ| / σ of the log return against the previous window's volatility.</p>"#);
    }
    h.push_str("</section></main></body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_html_reads() {
        assert_eq!(escape(r#"<b>&"x'"#), "&lt;b&gt;&amp;&quot;x&#39;");
        assert_eq!(shorten("abcdef", 4), "abc…");
        assert_eq!(ticks(0.0, 10.0, 5), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(compact(12_500.0), "12.5k");
    }
}
