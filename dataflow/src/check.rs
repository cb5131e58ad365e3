//! `tradeflow check`: recompute a range's final results from the lake's raw trades and
//! reconcile them, bit for bit, with the lake's `window_metrics` and `anomalies` and,
//! when given, PostgreSQL's tables.
//!
//! Background: final results depend only on the set of accepted trades (SPEC 4), and the
//! lake's `trades` dataset holds every accepted trade exactly once, so the published
//! numbers can be proved by recomputing them. The recomputation is a batch sweep
//! ([`recompute`]) through the operators' own pure functions, so every double has the
//! pipeline's bits; a row is compared by its content digest first
//! ([`WindowMetrics::digest`](tradeflow_model::WindowMetrics::digest)), then column by
//! column to name what differs ([`compare`]).
//!
//! Semantics: the windows checked are those starting in `[from, to)` (`--date D` is the
//! UTC day). Their rows read trades from `from − (K_b + K_v − 1)·S` (the volatility and
//! baselines of the earliest windows) to `to + W` (the last window's end), so that much
//! is read; rows of the lake's files outside `[from, to)` are counted as not checked.
//! Completeness per symbol: trades in the range, gaps (more than `--gap-windows` empty
//! windows between two trades), and the late and rejected records of the dead letters
//! whose trade time (else receipt time) is in the range. The data-quality score is the
//! acceptance rate times the share of windows that reconcile (README, "Analytics:
//! tradeflow check"). Any difference makes the command fail, naming the first.

mod compare;
mod read;
mod recompute;

use anyhow::{anyhow, bail};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, TimestampMillisecondType};
use clap::Args;
use compare::{Counts, Mismatch, TargetOutcome, WindowKey, compare};
use read::LakeFiles;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;
use tradeflow_model::{Anomaly, AnomalyKind, Symbol, WindowMetrics, WindowSpec, date_of, format_ts, group_thousands};
use tradeflow_operators::AnalyticsParams;
use tradeflow_sinks::lake::parquet::{anomalies_from_batch, metrics_from_batch, trades_from_batch};
use tradeflow_sinks::lake::paths::{parse_result_key, parse_trades_key};

const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;
/// Mismatches listed in the output (all are counted).
const LISTED: usize = 100;

/// `tradeflow check`.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// The lake: file:///abs/dir (or file://relative/dir), or s3://bucket/prefix (AWS_*
    /// variables as for run).
    #[arg(long, value_name = "URL", default_value = "file://./data/lake")]
    pub lake: String,
    /// Check the windows starting on this UTC day.
    #[arg(long, value_name = "YYYY-MM-DD", conflicts_with_all = ["from", "to"], required_unless_present_any = ["from", "to"])]
    pub date: Option<String>,
    /// Check the windows starting at or after this time (RFC 3339 or ms since the epoch).
    #[arg(long, value_name = "TIME", requires = "to")]
    pub from: Option<String>,
    /// ... and before this time (RFC 3339 or ms since the epoch).
    #[arg(long, value_name = "TIME", requires = "from")]
    pub to: Option<String>,
    /// Also reconcile PostgreSQL: postgres://user:password@host:5432/database. Default:
    /// DATABASE_URL, else POSTGRES_HOST/PORT/DB/USER/PASSWORD (environment, then ./.env).
    #[arg(long, value_name = "URL")]
    pub postgres: Option<String>,
    /// Check the lake only, even when DATABASE_URL or POSTGRES_HOST is set.
    #[arg(long, conflicts_with = "postgres")]
    pub no_postgres: bool,
    /// The run's analytics settings (pass the values the run used).
    #[command(flatten)]
    pub analytics: crate::cli::AnalyticsArgs,
    /// Report a gap when more than N windows in a row have no trades of a symbol between
    /// two of its trades.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub gap_windows: u64,
    /// Output: a table, or one JSON object.
    #[arg(long, value_enum, default_value_t = Format::Table, value_name = "FORMAT")]
    pub format: Format,
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human-readable tables.
    Table,
    /// One JSON object on stdout.
    Json,
}

/// Runs `tradeflow check`: prints the report; an error when anything differs.
pub fn check(args: &CheckArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let params = analytics_params(args)?;
    let (from, to) = range(args)?;
    let target = if args.no_postgres { None } else { crate::config::postgres_target(args.postgres.as_deref())? };
    let lake = LakeFiles::open(&args.lake)?;
    let spec = params.windows;
    let (read_from, read_to) = (from.saturating_sub(recompute::reach(&params)), to.saturating_add(spec.size()));

    // The trades: the range, with what its windows read before and after it.
    let mut panes = recompute::Panes::new(params);
    let mut trades: BTreeMap<Symbol, u64> = BTreeMap::new();
    let mut files = 0u64;
    for (key, _) in lake.list_days("trades", read_from, read_to)? {
        let Some(file) = parse_trades_key(&key) else { continue };
        if file.hour + HOUR <= read_from || file.hour >= read_to {
            continue;
        }
        let symbol = match &file.symbol {
            Some(s) => {
                Some(Symbol::parse(s).map_err(|e| anyhow!("{}/{key}: partition symbol {s:?}: {e}", lake.display()))?)
            }
            None => None,
        };
        files += 1;
        for batch in lake.batches(&key)? {
            let rows = trades_from_batch(&batch, symbol.as_ref())
                .map_err(|e| anyhow!("{}/{key}: not a trades file as the lake writes them: {e}", lake.display()))?;
            for t in rows.into_iter().filter(|t| t.ts >= read_from && t.ts < read_to) {
                panes.add(&t.symbol, t.ts, t.price, t.volume);
                if t.ts >= from && t.ts < to {
                    *trades.entry(t.symbol).or_default() += 1;
                }
            }
        }
    }
    let gaps = gaps(&panes, from, to, spec, args.gap_windows);
    let (metrics, anomalies) = panes.rows(from, to);
    let expected: BTreeMap<WindowKey, WindowMetrics> =
        metrics.into_iter().map(|m| ((m.window_start, m.symbol.clone()), m)).collect();
    let expected_anomalies: BTreeMap<(i64, Symbol, AnomalyKind), Anomaly> =
        anomalies.into_iter().map(|a| ((a.window_start, a.symbol.clone(), a.kind), a)).collect();

    // The lake's results, then PostgreSQL's.
    let (lake_metrics, metrics_outside) = read_results(&lake, "window_metrics", from, to, |b| {
        metrics_from_batch(b).map(|rows| rows.into_iter().map(|r| (r.0.window_start, r)).collect())
    })?;
    let (lake_anomalies, anomalies_outside) = read_results(&lake, "anomalies", from, to, |b| {
        anomalies_from_batch(b).map(|rows| rows.into_iter().map(|a| (a.window_start, a)).collect())
    })?;
    let mut targets = vec![Target {
        name: "lake",
        location: lake.display().to_owned(),
        not_checked: metrics_outside + anomalies_outside,
        outcome: compare("lake", &expected, &expected_anomalies, lake_metrics, lake_anomalies),
    }];
    if let Some(target) = &target {
        let rows = read::read_postgres(target, from, to)?;
        targets.push(Target {
            name: "postgres",
            location: target.name().to_owned(),
            not_checked: 0,
            outcome: compare("postgres", &expected, &expected_anomalies, rows.metrics, rows.anomalies),
        });
    }
    let rejects = dead_letters(&lake, from, to)?;
    if files == 0 && targets.iter().all(|t| t.outcome.keys.is_empty()) {
        bail!(
            "nothing to check: {} has no trades and no window rows for {} .. {}; check --lake and --date (or --from/--to)",
            lake.display(),
            format_ts(from),
            format_ts(to)
        );
    }

    let report =
        Report::new(args, &params, &lake, (from, to), (read_from, read_to), files, &trades, &gaps, &rejects, &targets);
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Table => print!("{}", report.table(started.elapsed().as_secs_f64())),
    }
    let failing: Vec<String> = targets
        .iter()
        .filter_map(|t| {
            let first = t.outcome.mismatches.first()?;
            Some(format!("{} mismatches with the {}; first: {first}", t.outcome.mismatches.len(), t.name))
        })
        .collect();
    if !failing.is_empty() {
        bail!("check failed: {}", failing.join("; "));
    }
    Ok(())
}

/// The analytics flags, validated as `tradeflow run` does.
fn analytics_params(args: &CheckArgs) -> anyhow::Result<AnalyticsParams> {
    crate::config::analytics_params(&args.analytics).map_err(|e| anyhow!("{e} (give the run's values)"))
}

/// `[from, to)` in ms from `--date` or `--from`/`--to`.
fn range(args: &CheckArgs) -> anyhow::Result<(i64, i64)> {
    let time =
        |flag: &str, text: &str| tradeflow_sources::url::parse_time(text).map_err(|e| anyhow!("{flag} {text:?}: {e}"));
    let (from, to) = match (&args.date, &args.from, &args.to) {
        (Some(date), _, _) => {
            let valid = date.len() == 10 && date.as_bytes()[4] == b'-' && date.as_bytes()[7] == b'-';
            let from = time("--date", &format!("{date}T00:00:00Z"))
                .ok()
                .filter(|_| valid)
                .ok_or_else(|| anyhow!("--date {date:?}: not a date; use YYYY-MM-DD, e.g. --date 2023-11-14"))?;
            (from, from + DAY)
        }
        (None, Some(from), Some(to)) => (time("--from", from)?, time("--to", to)?),
        _ => bail!("give --date YYYY-MM-DD, or --from and --to (RFC 3339 or ms since the epoch)"),
    };
    if from >= to {
        bail!("--from {} is not before --to {}: give a non-empty range", format_ts(from), format_ts(to));
    }
    if !(tradeflow_model::MIN_TS..=tradeflow_model::MAX_TS).contains(&from)
        || !(tradeflow_model::MIN_TS..=tradeflow_model::MAX_TS).contains(&to)
    {
        bail!("the range {} .. {} is outside the years 2000-2100 that trades can have", format_ts(from), format_ts(to));
    }
    Ok((from, to))
}

/// The rows of a result dataset's files for the hours of `[from, to)`: those with a
/// window start in the range, and how many others the files held.
fn read_results<R>(
    lake: &LakeFiles,
    dataset: &str,
    from: i64,
    to: i64,
    decode: impl Fn(&arrow_array::RecordBatch) -> Result<Vec<(i64, R)>, String>,
) -> anyhow::Result<(Vec<R>, u64)> {
    let (mut rows, mut outside) = (Vec::new(), 0u64);
    for (key, _) in lake.list_days(dataset, from, to)? {
        let Some((hour, _)) = parse_result_key(dataset, &key) else { continue };
        if hour + HOUR <= from || hour >= to {
            continue;
        }
        for batch in lake.batches(&key)? {
            let decoded = decode(&batch)
                .map_err(|e| anyhow!("{}/{key}: not a {dataset} file as the lake writes them: {e}", lake.display()))?;
            for (start, row) in decoded {
                if start >= from && start < to {
                    rows.push(row);
                } else {
                    outside += 1;
                }
            }
        }
    }
    Ok((rows, outside))
}

/// A symbol's gaps: stretches of more than `n` empty windows (of size W) between two of
/// its trades in `[from, to)`; (count, longest in windows, first gap's start and end).
#[derive(Clone, Debug, Default, Serialize)]
struct Gaps {
    count: u64,
    longest_windows: u64,
    first: Option<(String, String)>,
}

fn gaps(panes: &recompute::Panes, from: i64, to: i64, spec: WindowSpec, n: u64) -> BTreeMap<Symbol, Gaps> {
    let size = spec.size();
    let mut out = BTreeMap::new();
    for (symbol, starts) in panes.pane_starts() {
        let mut buckets: Vec<i64> =
            starts.into_iter().filter(|p| *p + spec.slide() > from && *p < to).map(|p| p.div_euclid(size)).collect();
        buckets.dedup();
        let mut g = Gaps::default();
        for pair in buckets.windows(2) {
            let empty = (pair[1] - pair[0] - 1) as u64;
            if empty > n {
                g.count += 1;
                g.longest_windows = g.longest_windows.max(empty);
                g.first.get_or_insert_with(|| (format_ts((pair[0] + 1) * size), format_ts(pair[1] * size)));
            }
        }
        out.insert(symbol, g);
    }
    out
}

/// Dead letters attributed to the range: per symbol (`None`: no symbol in the payload),
/// by reason.
type Rejects = BTreeMap<Option<String>, BTreeMap<String, u64>>;

/// The dead letters whose trade time (from the payload; else the receipt time) is in
/// `[from, to)`. Dead letters are partitioned by the day they were received, never
/// before the trade's own day in practice, so partitions from the day before `from` on
/// are read.
fn dead_letters(lake: &LakeFiles, from: i64, to: i64) -> anyhow::Result<Rejects> {
    let first_day = format!("dead_letter/date={}", date_of(from - DAY));
    let mut out: Rejects = BTreeMap::new();
    for (key, _) in lake.list("dead_letter")? {
        if !key.ends_with(".parquet") || key.as_str() < first_day.as_str() {
            continue;
        }
        for b in lake.batches(&key)? {
            let column = |name: &str| {
                b.column_by_name(name).ok_or_else(|| anyhow!("{}/{key}: no column {name:?}", lake.display()))
            };
            let received = column("received_at")?.as_primitive_opt::<TimestampMillisecondType>().cloned();
            let element = column("element")?.as_primitive_opt::<Int32Type>().cloned();
            let reason = column("reason")?.as_string_opt::<i32>().cloned();
            let payload = column("payload")?.as_string_opt::<i32>().cloned();
            let (Some(received), Some(element), Some(reason), Some(payload)) = (received, element, reason, payload)
            else {
                bail!("{}/{key}: not a dead-letter file as the lake writes them", lake.display());
            };
            for i in 0..b.num_rows() {
                let (symbol, ts) = attribute(payload.value(i), element.value(i));
                if (from..to).contains(&ts.unwrap_or(received.value(i))) {
                    *out.entry(symbol).or_default().entry(reason.value(i).to_owned()).or_default() += 1;
                }
            }
        }
    }
    Ok(out)
}

/// The symbol and trade time a rejected payload names, if it parses that far: a flat
/// trade, or element `element` of a Finnhub message.
fn attribute(payload: &str, element: i32) -> (Option<String>, Option<i64>) {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(payload) else { return (None, None) };
    let record = match value.get("data").and_then(|d| d.as_array()) {
        Some(data) => data.get(usize::try_from(element).unwrap_or(0)).unwrap_or(&serde_json::Value::Null),
        None => &value,
    };
    (record.get("s").and_then(|s| s.as_str()).map(str::to_owned), record.get("t").and_then(|t| t.as_i64()))
}

/// One compared target.
struct Target {
    name: &'static str,
    location: String,
    not_checked: u64,
    outcome: TargetOutcome,
}

/// What the check found, as printed (the JSON object's fields).
#[derive(Serialize)]
struct Report {
    ok: bool,
    lake: String,
    from: String,
    to: String,
    from_ms: i64,
    to_ms: i64,
    read_from: String,
    read_to: String,
    trades_files: u64,
    params: Params,
    quality: Quality,
    targets: Vec<TargetReport>,
    symbols: Vec<SymbolReport>,
    unattributed_rejects: BTreeMap<String, u64>,
    mismatches: usize,
    first_mismatches: Vec<Mismatch>,
}

#[derive(Serialize)]
struct Params {
    window_ms: i64,
    slide_ms: i64,
    volatility_windows: usize,
    baseline_windows: usize,
    min_history: usize,
    spike_factor: f64,
    jump_sigma: f64,
    gap_windows: u64,
}

/// The data-quality score and its parts (README, "Analytics: tradeflow check").
#[derive(Serialize)]
struct Quality {
    accepted: u64,
    rejected: u64,
    acceptance: f64,
    windows: u64,
    reconciled: u64,
    reconciled_share: f64,
    score: f64,
}

#[derive(Serialize)]
struct TargetReport {
    name: &'static str,
    location: String,
    ok: bool,
    windows: Counts,
    anomalies: Counts,
    not_checked: u64,
    mismatches: usize,
    first_mismatch: Option<Mismatch>,
}

#[derive(Serialize)]
struct SymbolReport {
    symbol: String,
    trades: u64,
    windows: u64,
    reconciled: u64,
    mismatched: u64,
    gaps: Gaps,
    late: u64,
    rejected: u64,
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    fn new(
        args: &CheckArgs,
        params: &AnalyticsParams,
        lake: &LakeFiles,
        (from, to): (i64, i64),
        (read_from, read_to): (i64, i64),
        trades_files: u64,
        trades: &BTreeMap<Symbol, u64>,
        gaps: &BTreeMap<Symbol, Gaps>,
        rejects: &Rejects,
        targets: &[Target],
    ) -> Report {
        let keys: BTreeSet<&WindowKey> = targets.iter().flat_map(|t| &t.outcome.keys).collect();
        let bad: BTreeSet<&WindowKey> = targets.iter().flat_map(|t| &t.outcome.bad).collect();
        let mut symbols: BTreeMap<String, SymbolReport> = BTreeMap::new();
        fn entry<'a>(symbols: &'a mut BTreeMap<String, SymbolReport>, symbol: &str) -> &'a mut SymbolReport {
            symbols.entry(symbol.to_owned()).or_insert_with(|| SymbolReport {
                symbol: symbol.to_owned(),
                trades: 0,
                windows: 0,
                reconciled: 0,
                mismatched: 0,
                gaps: Gaps::default(),
                late: 0,
                rejected: 0,
            })
        }
        for (symbol, n) in trades {
            entry(&mut symbols, symbol.as_str()).trades = *n;
        }
        for (symbol, g) in gaps {
            entry(&mut symbols, symbol.as_str()).gaps = g.clone();
        }
        for key in &keys {
            let s = entry(&mut symbols, key.1.as_str());
            s.windows += 1;
            if bad.contains(key) {
                s.mismatched += 1;
            } else {
                s.reconciled += 1;
            }
        }
        let mut unattributed = BTreeMap::new();
        for (symbol, reasons) in rejects {
            match symbol {
                Some(symbol) => {
                    let s = entry(&mut symbols, symbol);
                    s.late += reasons.get("late").copied().unwrap_or(0);
                    s.rejected += reasons.values().sum::<u64>();
                }
                None => unattributed = reasons.clone(),
            }
        }
        let accepted: u64 = trades.values().sum();
        let rejected: u64 = rejects.values().flat_map(|r| r.values()).sum();
        let ratio = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
        let (windows, reconciled) = (keys.len() as u64, (keys.len() - bad.len()) as u64);
        let (acceptance, reconciled_share) = (ratio(accepted, accepted + rejected), ratio(reconciled, windows));
        let mut all: Vec<&Mismatch> = targets.iter().flat_map(|t| &t.outcome.mismatches).collect();
        all.sort_by(|a, b| a.order().cmp(&b.order()));
        Report {
            ok: all.is_empty(),
            lake: lake.display().to_owned(),
            from: format_ts(from),
            to: format_ts(to),
            from_ms: from,
            to_ms: to,
            read_from: format_ts(read_from),
            read_to: format_ts(read_to),
            trades_files,
            params: Params {
                window_ms: params.windows.size(),
                slide_ms: params.windows.slide(),
                volatility_windows: args.analytics.volatility_windows,
                baseline_windows: args.analytics.baseline_windows,
                min_history: args.analytics.min_history,
                spike_factor: args.analytics.spike_factor,
                jump_sigma: args.analytics.jump_sigma,
                gap_windows: args.gap_windows,
            },
            quality: Quality {
                accepted,
                rejected,
                acceptance,
                windows,
                reconciled,
                reconciled_share,
                score: acceptance * reconciled_share,
            },
            targets: targets
                .iter()
                .map(|t| TargetReport {
                    name: t.name,
                    location: t.location.clone(),
                    ok: t.outcome.mismatches.is_empty(),
                    windows: t.outcome.windows,
                    anomalies: t.outcome.anomalies,
                    not_checked: t.not_checked,
                    mismatches: t.outcome.mismatches.len(),
                    first_mismatch: t.outcome.mismatches.first().cloned(),
                })
                .collect(),
            symbols: symbols.into_values().collect(),
            unattributed_rejects: unattributed,
            mismatches: all.len(),
            first_mismatches: all.into_iter().take(LISTED).cloned().collect(),
        }
    }

    /// The report as text tables.
    fn table(&self, seconds: f64) -> String {
        use std::fmt::Write;
        let n = group_thousands;
        let mut out = String::new();
        let p = &self.params;
        let _ = writeln!(out, "tradeflow check of {}: windows starting {} .. {}", self.lake, self.from, self.to);
        let _ = writeln!(
            out,
            "  read {} trades files ({} .. {}); window {} ms, slide {} ms, volatility-windows {}, baseline-windows {}, min-history {}, spike-factor {}, jump-sigma {}; {seconds:.1} s",
            n(self.trades_files),
            self.read_from,
            self.read_to,
            p.window_ms,
            p.slide_ms,
            p.volatility_windows,
            p.baseline_windows,
            p.min_history,
            p.spike_factor,
            p.jump_sigma
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<10} {:>10} {:>10} {:>8} {:>10} {:>10} {:>8} {:>12}  location",
            "target", "windows", "match", "differ", "anomalies", "match", "differ", "not checked"
        );
        for t in &self.targets {
            let _ = writeln!(
                out,
                "{:<10} {:>10} {:>10} {:>8} {:>10} {:>10} {:>8} {:>12}  {}",
                t.name,
                n(t.windows.checked),
                n(t.windows.matching),
                n(t.windows.differing),
                n(t.anomalies.checked),
                n(t.anomalies.matching),
                n(t.anomalies.differing),
                n(t.not_checked),
                t.location
            );
        }
        let _ = writeln!(out);
        let width = self.symbols.iter().map(|s| s.symbol.chars().count()).max().unwrap_or(6).max(6);
        let _ = writeln!(
            out,
            "{:<width$} {:>12} {:>8} {:>10} {:>8} {:>6} {:>12} {:>8} {:>9}",
            "symbol", "trades", "windows", "reconciled", "differ", "gaps", "longest gap", "late", "rejected"
        );
        for s in &self.symbols {
            let _ = writeln!(
                out,
                "{:<width$} {:>12} {:>8} {:>10} {:>8} {:>6} {:>12} {:>8} {:>9}",
                s.symbol,
                n(s.trades),
                n(s.windows),
                n(s.reconciled),
                n(s.mismatched),
                n(s.gaps.count),
                format!("{} w", s.gaps.longest_windows),
                n(s.late),
                n(s.rejected)
            );
        }
        if !self.unattributed_rejects.is_empty() {
            let reasons: Vec<String> = self.unattributed_rejects.iter().map(|(r, c)| format!("{r} {c}")).collect();
            let _ = writeln!(out, "rejected records naming no symbol: {}", reasons.join(", "));
        }
        let q = &self.quality;
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "data quality {:.4} = acceptance {:.4} ({} accepted, {} rejected) x reconciled {:.4} ({} of {} windows)",
            q.score,
            q.acceptance,
            n(q.accepted),
            n(q.rejected),
            q.reconciled_share,
            n(q.reconciled),
            n(q.windows)
        );
        if self.ok {
            let names: Vec<&str> = self.targets.iter().map(|t| t.name).collect();
            let _ = writeln!(out, "OK: every window and anomaly of the range reconciles ({})", names.join(", "));
        } else {
            let _ = writeln!(
                out,
                "MISMATCH: {} differences; the first {}:",
                n(self.mismatches as u64),
                self.first_mismatches.len().min(20)
            );
            for m in self.first_mismatches.iter().take(20) {
                let _ = writeln!(out, "  {m}");
            }
            if q.reconciled == 0 && q.windows > 0 {
                let _ = writeln!(
                    out,
                    "hint: no window reconciles: give check the run's --window, --slide, --volatility-windows, --baseline-windows, --min-history, --spike-factor and --jump-sigma"
                );
            }
        }
        out
    }
}

impl std::fmt::Debug for LakeFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LakeFiles({})", self.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_rejected_payloads_to_symbols() {
        assert_eq!(
            attribute(r#"{"s":"AAPL","p":-1,"t":1700000000000,"v":1}"#, 0),
            (Some("AAPL".into()), Some(1_700_000_000_000))
        );
        let message = r#"{"type":"trade","data":[{"s":"A","t":1},{"s":"B","p":0,"t":2}]}"#;
        assert_eq!(attribute(message, 1), (Some("B".into()), Some(2)));
        assert_eq!(attribute("{not json", 0), (None, None));
    }
}
