//! `tradeflow report --date YYYY-MM-DD`: the daily report, as one self-contained HTML page
//! (inline SVG charts, no script, nothing fetched) and as Markdown with the same numbers.
//!
//! What it shows, all from the day's *final* window rows and anomalies (SPEC 4, 5), read
//! from the lake (`window_metrics/date=D/`, `anomalies/date=D/`, locally or on S3) or from
//! PostgreSQL (`is_final` rows of that UTC date):
//!
//! * **top volatile symbols**: each symbol's mean (or, `--rank-by max`, maximum) rolling
//!   volatility over its windows of the day that have one, highest first (ties by symbol);
//!   symbols without any volatility (fewer than 3 windows with a VWAP) are not ranked;
//! * **volume by hour**: Σ volume and Σ trades of the windows starting in each UTC hour,
//!   exact (volumes are summed as integers of 10^-8; with `--slide` windows overlap and a
//!   trade counts in every window holding it);
//! * **VWAP of the top symbols**: each window's VWAP over the day for the first
//!   [`VWAP_SYMBOLS`] ranked symbols, with the day's anomalies marked; the Markdown gives
//!   the VWAP of each hour's last window;
//! * **anomalies**: every anomaly of the day by severity (the first [`MAX_ANOMALY_ROWS`]
//!   in the tables), with counts by kind.
//!
//! Rows are sorted by (symbol, window start) before anything is summed, so the floating
//! point means do not depend on the order a source returns rows in: the lake and a
//! PostgreSQL database fed by the same run give the same report, digit for digit.

mod html;
mod markdown;
mod source;

use anyhow::{Context, bail};
use clap::Args;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How many of the ranked symbols get a VWAP chart.
pub const VWAP_SYMBOLS: usize = 5;
/// How many anomalies the tables list (the counts cover all of them).
pub const MAX_ANOMALY_ROWS: usize = 200;
const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

/// `tradeflow report`.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// The UTC day to report on, YYYY-MM-DD (windows starting that day).
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub date: String,
    /// Directory to write report-YYYY-MM-DD.html and report-YYYY-MM-DD.md to (created if
    /// missing; existing reports of that date are replaced).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
    /// The lake to read (the default source): file:///abs/dir, file://relative/dir or
    /// s3://bucket/prefix (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION,
    /// AWS_ENDPOINT_URL, AWS_ALLOW_HTTP; s3:///prefix takes the bucket from S3_BUCKET).
    #[arg(long, value_name = "URL", default_value = "file://./data/lake")]
    pub lake: String,
    /// Read PostgreSQL instead of the lake: --postgres postgres://user:password@host/db,
    /// or --postgres alone for DATABASE_URL, else POSTGRES_HOST/PORT/DB/USER/PASSWORD (from
    /// the environment, then ./.env), as `tradeflow run` does.
    #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = "", conflicts_with = "lake")]
    pub postgres: Option<String>,
    /// How many symbols the volatility ranking lists (the first 5 also get VWAP charts).
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub top: usize,
    /// Rank symbols by their mean or their maximum volatility of the day.
    #[arg(long, value_enum, default_value_t = RankBy::Mean, value_name = "STAT")]
    pub rank_by: RankBy,
}

/// `--rank-by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RankBy {
    /// Mean of the day's volatilities.
    Mean,
    /// Largest volatility of the day.
    Max,
}

impl RankBy {
    fn label(self) -> &'static str {
        match self {
            RankBy::Mean => "mean",
            RankBy::Max => "max",
        }
    }
}

/// One final window row, as the report needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowRow {
    /// The symbol.
    pub symbol: String,
    /// Window start, ms.
    pub window_start: i64,
    /// Window end, ms.
    pub window_end: i64,
    /// Trades in the window.
    pub trade_count: u64,
    /// Σ volume in 10^-8 units, exact.
    pub volume: i128,
    /// The VWAP (NULL when the volume is 0).
    pub vwap: Option<f64>,
    /// The rolling volatility (NULL with fewer than 2 returns).
    pub volatility: Option<f64>,
}

/// One final anomaly.
#[derive(Clone, Debug, PartialEq)]
pub struct AnomalyRow {
    /// The symbol.
    pub symbol: String,
    /// Window start, ms.
    pub window_start: i64,
    /// `volume_spike` or `price_jump`.
    pub kind: String,
    /// Its severity (volume / baseline, or a z-score).
    pub severity: f64,
    /// The window's volume, or its log return.
    pub observed: f64,
    /// The baseline volume, or the volatility.
    pub baseline: f64,
}

/// What a source holds for one day.
#[derive(Clone, Debug, Default)]
pub struct Day {
    /// Final window rows starting that day.
    pub windows: Vec<WindowRow>,
    /// Final anomalies of windows starting that day.
    pub anomalies: Vec<AnomalyRow>,
}

/// One symbol's day.
#[derive(Clone, Debug, Default)]
pub struct SymbolDay {
    /// The symbol.
    pub symbol: String,
    /// Its windows.
    pub windows: u64,
    /// Σ trades.
    pub trades: u64,
    /// Σ volume, 10^-8 units.
    pub volume: i128,
    /// Mean of the non-NULL volatilities, in window order.
    pub mean_volatility: Option<f64>,
    /// Largest volatility.
    pub max_volatility: Option<f64>,
    /// VWAP of its first window with one.
    pub first_vwap: Option<f64>,
    /// VWAP of its last window with one.
    pub last_vwap: Option<f64>,
    /// Its anomalies.
    pub anomalies: usize,
    /// (window start, VWAP) of every window with a VWAP, in order.
    pub vwaps: Vec<(i64, f64)>,
}

impl SymbolDay {
    /// The statistic the ranking uses.
    pub fn rank_value(&self, by: RankBy) -> Option<f64> {
        match by {
            RankBy::Mean => self.mean_volatility,
            RankBy::Max => self.max_volatility,
        }
    }
}

/// One UTC hour of the day, over every symbol.
#[derive(Clone, Copy, Debug, Default)]
pub struct Hour {
    /// Windows starting in the hour.
    pub windows: u64,
    /// Σ trades.
    pub trades: u64,
    /// Σ volume, 10^-8 units.
    pub volume: i128,
}

/// The report's numbers: what both renderings show.
#[derive(Clone, Debug)]
pub struct Report {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// Midnight UTC of the date, ms.
    pub day_start: i64,
    /// Where the rows came from, for the reader (no secrets).
    pub source: String,
    /// The ranking's statistic.
    pub rank_by: RankBy,
    /// Every symbol of the day, by name.
    pub symbols: Vec<SymbolDay>,
    /// Indices into `symbols`: the ranking, at most `--top`.
    pub ranked: Vec<usize>,
    /// Symbols with a volatility (rankable), before the `--top` cut.
    pub rankable: usize,
    /// Indices into `symbols` that get a VWAP chart.
    pub vwap_symbols: Vec<usize>,
    /// The 24 UTC hours.
    pub hours: [Hour; 24],
    /// Every anomaly of the day, most severe first (ties: time, symbol, kind).
    pub anomalies: Vec<AnomalyRow>,
    /// Earliest window start and latest window end of the day's rows, ms.
    pub span: (i64, i64),
}

impl Report {
    /// Computes the report of `date` (midnight `day_start`) from `day`.
    pub fn build(date: &str, day_start: i64, source: String, rank_by: RankBy, top: usize, mut day: Day) -> Report {
        day.windows.sort_by(|a, b| (&a.symbol, a.window_start).cmp(&(&b.symbol, b.window_start)));
        let mut hours = [Hour::default(); 24];
        let mut by_symbol: BTreeMap<&str, SymbolDay> = BTreeMap::new();
        let mut volatility_sums: BTreeMap<&str, (f64, u64)> = BTreeMap::new();
        for w in &day.windows {
            let hour = &mut hours[((w.window_start - day_start).clamp(0, DAY_MS - 1) / HOUR_MS) as usize];
            hour.windows += 1;
            hour.trades += w.trade_count;
            hour.volume += w.volume;
            let s = by_symbol
                .entry(&w.symbol)
                .or_insert_with(|| SymbolDay { symbol: w.symbol.clone(), ..SymbolDay::default() });
            s.windows += 1;
            s.trades += w.trade_count;
            s.volume += w.volume;
            if let Some(v) = w.vwap {
                s.first_vwap.get_or_insert(v);
                s.last_vwap = Some(v);
                s.vwaps.push((w.window_start, v));
            }
            if let Some(v) = w.volatility {
                s.max_volatility = Some(s.max_volatility.map_or(v, |m: f64| m.max(v)));
                let sum = volatility_sums.entry(&w.symbol).or_insert((0.0, 0));
                sum.0 += v;
                sum.1 += 1;
            }
        }
        for (symbol, (sum, n)) in &volatility_sums {
            if let Some(s) = by_symbol.get_mut(symbol) {
                s.mean_volatility = Some(sum / *n as f64);
            }
        }
        for a in &day.anomalies {
            if let Some(s) = by_symbol.get_mut(a.symbol.as_str()) {
                s.anomalies += 1;
            }
        }
        let symbols: Vec<SymbolDay> = by_symbol.into_values().collect();
        let mut ranking: Vec<usize> =
            (0..symbols.len()).filter(|&i| symbols[i].rank_value(rank_by).is_some()).collect();
        ranking.sort_by(|&a, &b| {
            let (x, y) = (symbols[a].rank_value(rank_by).unwrap_or(0.0), symbols[b].rank_value(rank_by).unwrap_or(0.0));
            y.total_cmp(&x).then_with(|| symbols[a].symbol.cmp(&symbols[b].symbol))
        });
        let rankable = ranking.len();
        ranking.truncate(top);
        // VWAP charts: the first ranked symbols; on a day too short for volatility, the
        // busiest by trades.
        let mut vwap_symbols: Vec<usize> = ranking.iter().copied().take(VWAP_SYMBOLS).collect();
        if vwap_symbols.is_empty() {
            let mut busiest: Vec<usize> = (0..symbols.len()).filter(|&i| !symbols[i].vwaps.is_empty()).collect();
            busiest.sort_by(|&a, &b| symbols[b].trades.cmp(&symbols[a].trades).then(a.cmp(&b)));
            vwap_symbols = busiest.into_iter().take(VWAP_SYMBOLS.min(top.max(1))).collect();
        }
        let mut anomalies = day.anomalies;
        anomalies.sort_by(|a, b| {
            b.severity
                .total_cmp(&a.severity)
                .then_with(|| (a.window_start, &a.symbol, &a.kind).cmp(&(b.window_start, &b.symbol, &b.kind)))
        });
        let span = (
            day.windows.iter().map(|w| w.window_start).min().unwrap_or(day_start),
            day.windows.iter().map(|w| w.window_end).max().unwrap_or(day_start + DAY_MS),
        );
        Report {
            date: date.to_owned(),
            day_start,
            source,
            rank_by,
            symbols,
            ranked: ranking,
            rankable,
            vwap_symbols,
            hours,
            anomalies,
            span,
        }
    }

    /// Total windows, trades of the day.
    pub fn totals(&self) -> (u64, u64) {
        (self.hours.iter().map(|h| h.windows).sum(), self.hours.iter().map(|h| h.trades).sum())
    }

    /// Anomalies of each kind, by kind name.
    pub fn anomalies_by_kind(&self) -> BTreeMap<&str, usize> {
        let mut counts = BTreeMap::new();
        for a in &self.anomalies {
            *counts.entry(a.kind.as_str()).or_default() += 1;
        }
        counts
    }

    /// For each hour, the VWAP of the last window of that hour of each VWAP symbol.
    pub fn hourly_vwaps(&self) -> Vec<(usize, Vec<Option<f64>>)> {
        (0..24)
            .filter_map(|h| {
                let (from, to) = (self.day_start + h as i64 * HOUR_MS, self.day_start + (h as i64 + 1) * HOUR_MS);
                let row: Vec<Option<f64>> = self
                    .vwap_symbols
                    .iter()
                    .map(|&i| self.symbols[i].vwaps.iter().rev().find(|(t, _)| *t >= from && *t < to).map(|(_, v)| *v))
                    .collect();
                row.iter().any(Option::is_some).then_some((h, row))
            })
            .collect()
    }
}

/// The milliseconds of midnight UTC of `YYYY-MM-DD`, or an error naming the value and the
/// form it must take.
pub fn parse_date(text: &str) -> anyhow::Result<i64> {
    let bad = || anyhow::anyhow!("--date {text:?}: not a date; use YYYY-MM-DD, e.g. --date 2023-11-14 (a UTC day)");
    let parts: Vec<&str> = text.split('-').collect();
    let [y, m, d] = parts.as_slice() else { return Err(bad()) };
    if y.len() != 4 || m.len() != 2 || d.len() != 2 || !text.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        return Err(bad());
    }
    let (y, m, d): (i64, i64, i64) = (y.parse()?, m.parse()?, d.parse()?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    // Days since 1970-01-01 (Howard Hinnant's days_from_civil).
    let yy = if m <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let ms = days * DAY_MS;
    if tradeflow_model::date_of(ms) != text {
        bail!("--date {text}: no such day (the month has fewer days); use YYYY-MM-DD");
    }
    if !tradeflow_model::ts_in_range(ms) {
        bail!("--date {text}: outside the years trades may have (2000-2099)");
    }
    Ok(ms)
}

/// `12345678900` units of 10^-8 -> `123.456789`: exact, no trailing zeros.
pub fn format_units(units: i128) -> String {
    let sign = if units < 0 { "-" } else { "" };
    let (int, frac) = (units.unsigned_abs() / 100_000_000, units.unsigned_abs() % 100_000_000);
    if frac == 0 {
        format!("{sign}{int}")
    } else {
        let frac = format!("{frac:08}");
        format!("{sign}{int}.{}", frac.trim_end_matches('0'))
    }
}

/// `x` with `digits` significant digits, in plain notation.
pub fn significant(x: f64, digits: i32) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    if x == 0.0 {
        return "0".into();
    }
    let decimals = (digits - 1 - x.abs().log10().floor() as i32).max(0) as usize;
    format!("{x:.decimals$}")
}

/// `HH:MM` of a time of the day starting at `day_start` (`24:00` at its end).
pub fn clock(ms: i64, day_start: i64) -> String {
    let minutes = (ms - day_start).div_euclid(60_000);
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// `HH:MM:SS` of a time of the day.
pub fn clock_seconds(ms: i64, day_start: i64) -> String {
    let seconds = (ms - day_start).div_euclid(1000);
    format!("{:02}:{:02}:{:02}", seconds / 3600, seconds / 60 % 60, seconds % 60)
}

/// Writes `contents` to `path` through a temporary file beside it, so that a reader never
/// sees half a report.
fn write_atomically(path: &Path, contents: &str) -> anyhow::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&temp, contents).with_context(|| format!("writing {}", temp.display()))?;
    std::fs::rename(&temp, path).with_context(|| format!("renaming {} to {}", temp.display(), path.display()))
}

/// `tradeflow report`: reads the day, writes both renderings, prints their paths.
pub fn report(args: &ReportArgs) -> anyhow::Result<()> {
    let day_start = parse_date(&args.date)?;
    if args.top == 0 {
        bail!("--top 0: must be at least 1, e.g. --top 10");
    }
    let source = source::Source::open(args)?;
    let day = source.read_day(&args.date, day_start)?;
    if day.windows.is_empty() {
        bail!("{}", source.no_data_message(&args.date)?);
    }
    let report = Report::build(&args.date, day_start, source.describe(), args.rank_by, args.top, day);
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("--out {}: cannot create the directory; give a writable one", args.out.display()))?;
    let html_path = args.out.join(format!("report-{}.html", args.date));
    let md_path = args.out.join(format!("report-{}.md", args.date));
    write_atomically(&html_path, &html::render(&report))?;
    write_atomically(&md_path, &markdown::render(&report))?;
    let (windows, trades) = report.totals();
    println!("{}", html_path.display());
    println!("{}", md_path.display());
    tracing::info!(
        "report of {}: {} symbols, {windows} windows, {trades} trades, {} anomalies, from {}",
        args.date,
        report.symbols.len(),
        report.anomalies.len(),
        report.source
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(symbol: &str, start: i64, volume: i128, vwap: Option<f64>, volatility: Option<f64>) -> WindowRow {
        WindowRow {
            symbol: symbol.into(),
            window_start: start,
            window_end: start + 60_000,
            trade_count: 2,
            volume,
            vwap,
            volatility,
        }
    }

    #[test]
    fn parses_dates() {
        assert_eq!(parse_date("2023-11-14").unwrap(), 1_699_920_000_000);
        assert_eq!(parse_date("2024-02-29").unwrap(), 1_709_164_800_000);
        for bad in ["2023-02-29", "2023-13-01", "2023-1-01", "20231114", "2023-11-14T00:00:00Z", "", "1970-01-01"] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_numbers() {
        assert_eq!(format_units(12_345_678_900), "123.456789");
        assert_eq!(format_units(100_000_000), "1");
        assert_eq!(format_units(1), "0.00000001");
        assert_eq!(format_units(0), "0");
        assert_eq!(significant(0.00123456789, 6), "0.00123457");
        assert_eq!(significant(37123.456, 6), "37123.5");
        assert_eq!(significant(0.0, 6), "0");
        assert_eq!(clock(1_699_920_000_000 + 90 * 60_000, 1_699_920_000_000), "01:30");
        assert_eq!(clock_seconds(1_699_920_000_000 + 3_723_000, 1_699_920_000_000), "01:02:03");
    }

    #[test]
    fn ranks_sums_and_sorts_whatever_the_row_order() {
        let d = 1_699_920_000_000;
        let rows = vec![
            window("B", d + HOUR_MS, 300_000_000, Some(10.0), Some(0.02)),
            window("A", d, 100_000_000, Some(1.0), Some(0.01)),
            window("A", d + 60_000, 50, Some(1.1), Some(0.03)),
            window("B", d, 7, Some(9.0), None),
            window("C", d + 2 * HOUR_MS, 0, None, None),
        ];
        let anomalies = vec![
            AnomalyRow {
                symbol: "A".into(),
                window_start: d,
                kind: "volume_spike".into(),
                severity: 3.5,
                observed: 1.0,
                baseline: 0.2,
            },
            AnomalyRow {
                symbol: "B".into(),
                window_start: d,
                kind: "price_jump".into(),
                severity: 7.0,
                observed: 0.1,
                baseline: 0.01,
            },
        ];
        let mut reversed = rows.clone();
        reversed.reverse();
        let a = Report::build("2023-11-14", d, "x".into(), RankBy::Mean, 10, Day { windows: rows, anomalies });
        let b =
            Report::build("2023-11-14", d, "x".into(), RankBy::Mean, 10, Day { windows: reversed, anomalies: vec![] });
        let names = |r: &Report| r.ranked.iter().map(|&i| r.symbols[i].symbol.clone()).collect::<Vec<_>>();
        // A: mean 0.02, B: 0.02 -> tie by name; C has no volatility.
        assert_eq!(names(&a), ["A", "B"]);
        assert_eq!(names(&b), names(&a));
        assert_eq!(a.rankable, 2);
        assert_eq!(a.hours[0].volume, 100_000_057);
        assert_eq!((a.hours[1].volume, a.hours[1].trades, a.hours[2].windows), (300_000_000, 2, 1));
        assert_eq!(a.anomalies[0].symbol, "B");
        assert_eq!(a.symbols[0].anomalies, 1);
        assert_eq!((a.symbols[0].first_vwap, a.symbols[0].last_vwap), (Some(1.0), Some(1.1)));
        let by_max =
            Report::build("2023-11-14", d, "x".into(), RankBy::Max, 1, Day { windows: b_rows(d), anomalies: vec![] });
        assert_eq!(names(&by_max), ["A"]);
        assert_eq!(by_max.rankable, 2);
        assert_eq!(
            a.hourly_vwaps(),
            vec![(0, vec![Some(1.1), Some(9.0)]), (1, vec![None, Some(10.0)])],
            "the last VWAP of each hour"
        );
    }

    fn b_rows(d: i64) -> Vec<WindowRow> {
        vec![window("A", d, 1, Some(1.0), Some(0.05)), window("B", d, 1, Some(1.0), Some(0.04))]
    }
}
