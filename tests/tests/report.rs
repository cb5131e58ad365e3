//! Issue 13, `tradeflow report`: the daily report of a test day (a simulated market of
//! six symbols, one of them `A<b>&"Q'`, over three hours of 2024-03-05, with anomalies),
//! rendered from the lake, from PostgreSQL and from S3.
//!
//! * The Markdown's numbers are checked against the lake's `window_metrics` and
//!   `anomalies`, read independently (`tradeflow_tests::lake`): the top volatile symbols
//!   and their mean and max volatility, trades and exact volumes; every hour's windows,
//!   trades and exact volume; the anomaly count and the most severe anomaly.
//! * The HTML page, opened from disk in headless Chromium with the network off and every
//!   request refused (`tests/js/report.mjs`), draws every chart: a bar per ranked symbol,
//!   24 hourly bars (drawn exactly where there is volume), a VWAP line per top symbol
//!   through each of its windows, a dot per anomaly; no console error, no request, no
//!   element injected by the symbol's markup, which shows as text.
//! * PostgreSQL (`--postgres URL`, and `--postgres` alone with `DATABASE_URL`) and S3 give
//!   the same report as the local lake, digit for digit (only the source line differs).
//! * Errors: a date without data names the dates the lake has; a malformed date, a missing
//!   lake, an empty lake say what to fix, and write nothing. With no flags but `--date`,
//!   the report reads `./data/lake` and writes to the current directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tradeflow_model::{WindowMetrics, date_of};
use tradeflow_tests::browser::Browser;
use tradeflow_tests::lake::{read_anomalies, read_window_metrics};
use tradeflow_tests::postgres::PgCluster;
use tradeflow_tests::process::Running;
use tradeflow_tests::s3::S3Server;
use tradeflow_tests::{Finished, file_url, simulate, temp_dir, tradeflow_command};

const TIMEOUT: Duration = Duration::from_secs(180);
const DATE: &str = "2024-03-05";
/// 2024-03-05T00:00:00Z.
const DAY_START: i64 = 1_709_596_800_000;
const HOUR_MS: i64 = 3_600_000;
/// A symbol that is markup in HTML and in Markdown.
const NASTY: &str = "A<b>&\"Q'";
const SYMBOLS: &str = "AAPL,MSFT,BINANCE:BTCUSDT,OANDA:EUR_USD,TSLA,A<b>&\"Q'";

/// The test day's market: 40 000 trades at 4 trades/s of event time from midnight, so
/// about 2 h 47 min (three UTC hours).
fn market(dir: &Path) -> PathBuf {
    let path = dir.join("market.ndjson");
    simulate(
        &path,
        &["--count", "40000", "--rate", "4", "--seed", "7", "--start", "2024-03-05T00:00:00Z", "--symbols", SYMBOLS],
    );
    path
}

fn finish(command: Command, what: &str) -> Finished {
    let out = Running::spawn(command).finish(TIMEOUT);
    out.assert_success(what);
    out
}

/// `tradeflow run` of `market` into `sinks` (`--lake ...`, `--postgres ...`).
fn run_market(market: &Path, sinks: &[&str]) {
    let mut command = tradeflow_command();
    command.args(["run", "--progress-interval", "0", "--source", &file_url(market)]).args(sinks);
    finish(command, "tradeflow run");
}

/// `tradeflow report --date DATE --out OUT ARGS`: the Markdown and the HTML it wrote.
fn report(out: &Path, args: &[&str], env: &[(&str, &str)]) -> (String, String) {
    let mut command = tradeflow_command();
    command.args(["report", "--date", DATE, "--out"]).arg(out).args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    let done = finish(command, "tradeflow report");
    let (html, md) = (out.join(format!("report-{DATE}.html")), out.join(format!("report-{DATE}.md")));
    assert_eq!(
        done.stdout.lines().collect::<Vec<_>>(),
        [html.to_str().unwrap(), md.to_str().unwrap()],
        "report prints the paths it wrote"
    );
    (std::fs::read_to_string(md).expect("the Markdown report"), std::fs::read_to_string(html).expect("the HTML report"))
}

/// `text` without its `Source: ...` line (the one thing that differs between sources).
fn without_source(text: &str) -> String {
    text.lines().filter(|l| !l.contains("Source: ")).collect::<Vec<_>>().join("\n")
}

/// Markdown's backslash escapes undone.
fn unescape(cell: &str) -> String {
    let mut out = String::new();
    let mut chars = cell.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.peek().is_some_and(|n| n.is_ascii_punctuation()) {
            out.push(chars.next().unwrap());
        } else {
            out.push(c);
        }
    }
    out
}

/// The body rows of the first table after the heading starting with `heading`, each as
/// its unescaped cells.
fn table(md: &str, heading: &str) -> Vec<Vec<String>> {
    let mut lines = md.lines().skip_while(|l| !l.starts_with(heading));
    assert!(lines.next().is_some(), "no section {heading:?} in\n{md}");
    let rows: Vec<&str> = lines
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // header, separator
        .collect();
    rows.iter()
        .map(|row| {
            // Split at the '|' that are not escaped.
            let (mut cells, mut cell, mut escaped) = (Vec::new(), String::new(), false);
            for c in row.trim().trim_matches('|').chars() {
                if c == '|' && !escaped {
                    cells.push(unescape(cell.trim()));
                    cell.clear();
                } else {
                    cell.push(c);
                }
                escaped = c == '\\' && !escaped;
            }
            cells.push(unescape(cell.trim()));
            cells
        })
        .collect()
}

/// A decimal as integers of 10^-8, exactly.
fn units(text: &str) -> i128 {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    assert!(frac.len() <= 8, "{text} has more than 8 decimals");
    format!("{int}{frac:0<8}").parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn close(actual: &str, expected: f64, what: &str) {
    let value: f64 = actual.parse().unwrap_or_else(|e| panic!("{what}: {actual:?}: {e}"));
    assert!((value - expected).abs() <= expected.abs() * 1e-5, "{what}: the report says {actual}, the lake {expected}");
}

/// (symbol, mean volatility, max volatility, trades, volume).
type Ranked = (String, f64, f64, u64, i128);

/// What the report must say, computed here from the lake's rows.
struct Expected {
    /// (symbol, mean volatility, max volatility, trades, volume), highest mean first.
    ranking: Vec<Ranked>,
    /// Per UTC hour: windows, trades, volume.
    hours: BTreeMap<i64, (u64, u64, i128)>,
    anomalies: usize,
    /// (symbol, kind) of the most severe anomaly.
    worst: (String, String),
}

fn expected(lake: &Path) -> Expected {
    let mut rows: Vec<WindowMetrics> =
        read_window_metrics(lake).into_iter().filter(|w| date_of(w.window_start) == DATE).collect();
    rows.sort_by(|a, b| (a.symbol.as_str(), a.window_start).cmp(&(b.symbol.as_str(), b.window_start)));
    let mut per_symbol: BTreeMap<String, (Vec<f64>, u64, i128)> = BTreeMap::new();
    let mut hours: BTreeMap<i64, (u64, u64, i128)> = BTreeMap::new();
    for w in &rows {
        let s = per_symbol.entry(w.symbol.as_str().to_owned()).or_default();
        s.0.extend(w.volatility.map(|v| v.0));
        s.1 += w.trade_count;
        s.2 += w.volume;
        let h = hours.entry((w.window_start - DAY_START) / HOUR_MS).or_default();
        h.0 += 1;
        h.1 += w.trade_count;
        h.2 += w.volume;
    }
    let mut ranking: Vec<Ranked> = per_symbol
        .into_iter()
        .filter(|(_, (v, _, _))| !v.is_empty())
        .map(|(symbol, (v, trades, volume))| {
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            (symbol, mean, v.iter().copied().fold(f64::MIN, f64::max), trades, volume)
        })
        .collect();
    ranking.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let anomalies: Vec<_> = read_anomalies(lake).into_iter().filter(|a| date_of(a.window_start) == DATE).collect();
    let worst = anomalies.iter().max_by(|a, b| a.severity.0.total_cmp(&b.severity.0)).expect("anomalies");
    Expected {
        ranking,
        hours,
        anomalies: anomalies.len(),
        worst: (worst.symbol.as_str().to_owned(), worst.kind.as_str().to_owned()),
    }
}

/// Checks the Markdown against the lake.
fn check_markdown(md: &str, e: &Expected) {
    assert!(e.ranking.len() >= 5 && e.hours.len() == 3 && e.anomalies >= 10, "a poor test day: {:?}", e.hours);
    let top = table(md, "## Top volatile symbols");
    let names: Vec<&str> = top.iter().map(|r| r[1].as_str()).collect();
    let expected_names: Vec<&str> = e.ranking.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(names, expected_names, "the top symbols, by mean volatility");
    assert!(names.contains(&NASTY), "{names:?}");
    for (row, (symbol, mean, max, trades, volume)) in top.iter().zip(&e.ranking) {
        close(&row[2], *mean, &format!("{symbol} mean volatility"));
        close(&row[3], *max, &format!("{symbol} max volatility"));
        assert_eq!(row[5].parse::<u64>().unwrap(), *trades, "{symbol} trades");
        assert_eq!(units(&row[6]), *volume, "{symbol} volume");
    }
    let hours = table(md, "## Volume by hour");
    assert_eq!(hours.len(), 24);
    for (h, row) in hours.iter().enumerate() {
        assert_eq!(row[0], format!("{h:02}:00"));
        let (windows, trades, volume) = e.hours.get(&(h as i64)).copied().unwrap_or_default();
        let got = (row[1].parse::<u64>().unwrap(), row[2].parse::<u64>().unwrap(), units(&row[3]));
        assert_eq!(got, (windows, trades, volume), "hour {h:02}: windows, trades, volume");
    }
    let summary = table(md, "## Summary");
    let anomalies = summary.iter().find(|r| r[0] == "anomalies").expect("an anomalies line");
    assert!(anomalies[1].starts_with(&format!("{} (", e.anomalies)), "{anomalies:?}");
    let listed = table(md, "## Anomalies");
    assert_eq!(listed.len(), e.anomalies.min(200));
    assert_eq!((listed[0][1].clone(), listed[0][2].clone()), e.worst, "the most severe anomaly comes first");
    let vwap = table(md, "## VWAP of the top symbols");
    assert_eq!(vwap.len(), 3, "a row per hour with windows");
}

/// Opens the page in Chromium and checks that every chart is drawn.
fn check_in_browser(html: &Path, lake: &Path, e: &Expected, screenshot: &Path) {
    let Some(browser) = Browser::find() else { return };
    let out = browser.run("report.mjs", &[html.to_str().unwrap(), screenshot.to_str().unwrap()], TIMEOUT);
    assert!(out.success(), "the browser check failed:\n{}\n{}", out.stderr, out.stdout);
    let seen: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("the script's JSON");
    assert_eq!(seen["errors"], serde_json::json!([]), "console or page errors");
    assert_eq!(seen["requests"], serde_json::json!([]), "the page asked for something beyond itself");
    assert_eq!(seen["failedRequests"], serde_json::json!([]));
    assert_eq!(seen["injected"], 0, "markup from the data became elements");
    assert_eq!(seen["title"], format!("tradeflow daily report {DATE}"));
    let text = seen["text"].as_str().unwrap();
    assert!(text.contains(NASTY), "the symbol shows as text");
    assert_eq!(seen["cards"]["anomalies"], e.anomalies.to_string());
    let charts = seen["charts"].as_array().unwrap();
    let chart = |id: &str| charts.iter().find(|c| c["id"] == id).unwrap_or_else(|| panic!("no #{id}: {seen}"));
    let sizes = |c: &serde_json::Value| (c["size"][0].as_f64().unwrap(), c["size"][1].as_f64().unwrap());
    for c in charts {
        let (w, h) = sizes(c);
        assert!(w > 600.0 && h > 100.0, "a chart too small to see: {c}");
    }

    let volatility = chart("chart-volatility");
    let bars = volatility["bars"].as_array().unwrap();
    assert_eq!(bars.len(), e.ranking.len(), "a bar per ranked symbol");
    let widths: Vec<f64> = bars.iter().map(|b| b[0].as_f64().unwrap()).collect();
    assert!(widths.iter().all(|w| *w > 1.0) && widths.is_sorted_by(|a, b| a >= b), "bars by rank: {widths:?}");
    assert!(volatility["titles"][0].as_str().unwrap().starts_with(&e.ranking[0].0));

    let volume = chart("chart-volume");
    let heights: Vec<f64> = volume["bars"].as_array().unwrap().iter().map(|b| b[1].as_f64().unwrap()).collect();
    assert_eq!(heights.len(), 24);
    for (h, height) in heights.iter().enumerate() {
        let traded = e.hours.get(&(h as i64)).is_some_and(|x| x.2 > 0);
        assert_eq!(*height > 0.5, traded, "hour {h}: bar height {height}");
    }
    let busiest = e.hours.iter().max_by_key(|(_, x)| x.2).map(|(h, _)| *h as usize).unwrap();
    assert_eq!(heights.iter().copied().fold(0.0, f64::max), heights[busiest], "the busiest hour's bar is the tallest");

    let vwap: Vec<&serde_json::Value> = charts.iter().filter(|c| c["cls"] == "chart vwap-chart").collect();
    assert_eq!(vwap.len(), 5, "a VWAP chart per top symbol");
    let windows = read_window_metrics(lake);
    for (c, (symbol, ..)) in vwap.iter().zip(&e.ranking) {
        assert!(c["label"].as_str().unwrap().ends_with(symbol.as_str()), "{c}");
        let with_vwap = windows.iter().filter(|w| w.symbol.as_str() == symbol && w.vwap.is_some()).count();
        let path = &c["paths"][0];
        assert_eq!(path["points"], with_vwap, "{symbol}: a point per window with a VWAP");
        assert!(path["length"].as_f64().unwrap() > 300.0 && path["box"][1].as_f64().unwrap() > 50.0, "{path}");
    }
    assert_eq!(chart("chart-anomalies")["dots"], e.anomalies, "a dot per anomaly");
}

#[test]
fn the_report_of_a_test_day_matches_the_lake_postgres_and_s3_and_draws_in_a_browser() {
    let dir = temp_dir();
    let market = market(dir.path());
    let lake = dir.path().join("lake");
    let cluster = PgCluster::shared();
    let db = cluster.as_ref().map(|c| c.database("report"));
    let mut sinks = vec!["--lake".to_owned(), file_url(&lake)];
    if let Some(db) = &db {
        sinks.extend(["--postgres".to_owned(), db.url()]);
    }
    run_market(&market, &sinks.iter().map(String::as_str).collect::<Vec<_>>());

    let out = dir.path().join("from-lake");
    let (md, html) = report(&out, &["--lake", &file_url(&lake)], &[]);
    let e = expected(&lake);
    check_markdown(&md, &e);
    assert!(md.contains(&format!("Source: `lake {}`.", file_url(&lake))), "{md}");
    assert!(!html.contains(NASTY) && html.contains("A&lt;b&gt;&amp;&quot;Q&#39;"), "the symbol is escaped in HTML");
    let screenshot =
        std::env::var_os("TRADEFLOW_SCREENSHOT").map_or_else(|| dir.path().join("report.png"), PathBuf::from);
    check_in_browser(&out.join(format!("report-{DATE}.html")), &lake, &e, &screenshot);

    // --rank-by max and --top: the ranking by the largest volatility, cut.
    let (by_max, _) =
        report(&dir.path().join("by-max"), &["--lake", &file_url(&lake), "--rank-by", "max", "--top", "3"], &[]);
    let mut by_max_expected = e.ranking.clone();
    by_max_expected.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
    let names: Vec<String> = table(&by_max, "## Top volatile symbols").into_iter().map(|r| r[1].clone()).collect();
    assert_eq!(names, by_max_expected.iter().take(3).map(|r| r.0.clone()).collect::<Vec<_>>());

    if let Some(db) = &db {
        // The same numbers from PostgreSQL, by URL and from DATABASE_URL.
        let (pg_md, pg_html) = report(&dir.path().join("from-pg"), &["--postgres", &db.url()], &[]);
        assert!(pg_md.contains(&format!("Source: `PostgreSQL {}`.", db.server_name())), "{pg_md}");
        assert!(
            !pg_md.contains(tradeflow_tests::postgres::PASSWORD)
                && !pg_html.contains(tradeflow_tests::postgres::PASSWORD)
        );
        assert_eq!(without_source(&pg_md), without_source(&md), "PostgreSQL and the lake disagree");
        assert_eq!(without_source(&pg_html), without_source(&html), "PostgreSQL and the lake disagree (HTML)");
        let (env_md, _) = report(&dir.path().join("from-env"), &["--postgres"], &[("DATABASE_URL", &db.url())]);
        assert_eq!(env_md, pg_md, "--postgres alone reads DATABASE_URL");
        // A day the database does not have: its dates named.
        let mut command = tradeflow_command();
        command.args(["report", "--date", "2024-03-06", "--postgres", &db.url(), "--out"]).arg(dir.path().join("none"));
        let failed = Running::spawn(command).finish(TIMEOUT);
        assert!(!failed.success());
        assert!(failed.stderr.contains("--date 2024-03-06") && failed.stderr.contains(DATE), "{}", failed.stderr);
    }

    if let Some(server) = S3Server::start() {
        server.create_bucket("reports");
        let s3_lake = "s3://reports/lake";
        let mut command =
            server.tradeflow(&["run", "--progress-interval", "0", "--source", &file_url(&market), "--lake", s3_lake]);
        command.current_dir(dir.path());
        finish(command, "tradeflow run to S3");
        let s3_out = dir.path().join("from-s3");
        let mut command =
            server.tradeflow(&["report", "--date", DATE, "--lake", s3_lake, "--out", s3_out.to_str().unwrap()]);
        command.current_dir(dir.path());
        finish(command, "tradeflow report from S3");
        let s3_md = std::fs::read_to_string(s3_out.join(format!("report-{DATE}.md"))).unwrap();
        assert!(s3_md.contains("Source: `lake s3://reports/lake`."), "{s3_md}");
        assert_eq!(without_source(&s3_md), without_source(&md), "S3 and the local lake disagree");
    }
}

fn assert_fails(command: &mut Command, needles: &[&str]) -> Finished {
    let out = Running::spawn(std::mem::replace(command, Command::new("true"))).finish(TIMEOUT);
    assert!(!out.success(), "expected a failure, got success:\n{}", out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    tradeflow_tests::process::assert_no_panic(&out.stderr);
    for needle in needles {
        assert!(out.stderr.contains(needle), "the error does not mention {needle:?}:\n{}", out.stderr);
    }
    out
}

#[test]
fn errors_name_the_input_and_the_fix_and_defaults_read_data_lake() {
    let dir = temp_dir();
    // A small day: 2 000 trades over 400 s, into ./data/lake (run's default).
    let path = dir.path().join("small.ndjson");
    simulate(&path, &["--count", "2000", "--rate", "5", "--seed", "3", "--start", "2024-03-05T10:00:00Z"]);
    let mut command = tradeflow_command();
    command.current_dir(dir.path()).args(["run", "--progress-interval", "0", "--source", &file_url(&path)]);
    let summary = finish(command, "tradeflow run").summary();
    assert!(dir.path().join("data/lake/window_metrics").is_dir());

    // Defaults: ./data/lake in, the current directory out.
    let mut command = tradeflow_command();
    command.current_dir(dir.path()).args(["report", "--date", DATE]);
    let done = finish(command, "tradeflow report");
    assert_eq!(done.stdout, format!("./report-{DATE}.html\n./report-{DATE}.md\n"));
    let md = std::fs::read_to_string(dir.path().join(format!("report-{DATE}.md"))).unwrap();
    let trades = format!("| trades | {} |", summary.accepted);
    assert!(md.contains("Source: `lake file://./data/lake`.") && md.contains(&trades), "{md}");

    let report = |args: &[&str]| {
        let mut command = tradeflow_command();
        command.current_dir(dir.path()).arg("report").args(args).args(["--out", "out"]);
        command
    };
    // A date without data: the dates the lake has.
    assert_fails(&mut report(&["--date", "2024-03-06"]), &["--date 2024-03-06", "no final windows", "2024-03-05"]);
    // Not a date, not a day.
    assert_fails(&mut report(&["--date", "5/3/2024"]), &["--date \"5/3/2024\"", "YYYY-MM-DD"]);
    assert_fails(&mut report(&["--date", "2024-02-30"]), &["--date 2024-02-30", "no such day"]);
    // No lake there; an empty lake.
    assert_fails(
        &mut report(&["--date", DATE, "--lake", "file:///nonexistent/lake"]),
        &["/nonexistent/lake", "does not exist"],
    );
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    assert_fails(
        &mut report(&["--date", DATE, "--lake", "file://empty"]),
        &["no window_metrics at all", "tradeflow run"],
    );
    // --lake and --postgres together; --postgres with nothing to go on.
    let mut both = report(&["--date", DATE, "--lake", "file://x", "--postgres", "postgres://u@h/db"]);
    let out = Running::spawn(std::mem::replace(&mut both, Command::new("true"))).finish(TIMEOUT);
    assert_eq!(out.status.code(), Some(2), "a usage error: {}", out.stderr);
    assert!(out.stderr.contains("--postgres") && out.stderr.contains("--lake"), "{}", out.stderr);
    assert_fails(&mut report(&["--date", DATE, "--postgres"]), &["DATABASE_URL", "POSTGRES_HOST"]);
    assert!(!dir.path().join("out").exists(), "a failed report wrote something");

    // --help explains.
    let mut command = tradeflow_command();
    command.args(["report", "--help"]);
    let help = finish(command, "tradeflow report --help").stdout;
    for needle in
        ["--date", "YYYY-MM-DD", "--out", "--lake", "s3://", "--postgres", "DATABASE_URL", "--top", "--rank-by"]
    {
        assert!(help.contains(needle), "--help does not mention {needle}:\n{help}");
    }
    let mut command = tradeflow_command();
    command.arg("--help");
    assert!(finish(command, "tradeflow --help").stdout.contains("report"));
}
