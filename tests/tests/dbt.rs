//! Issue 13, the dbt project (`dbt_project/`), against a real PostgreSQL server filled by
//! tradeflow runs: `dbt run` builds every model and `dbt test` passes every data test;
//! the marts agree with the sink's tables (bars with their windows, dim_symbol's asset
//! classes with the simulator's, the seed's daily query on the mart with the same query
//! on the sink's view); a second run that corrects an old window, backfills the day
//! before and continues the market rebuilds exactly the affected hourly bars, and the
//! incremental bars equal a full refresh; a deliberately corrupted row fails exactly the
//! dbt test that guards it, and `dbt test` exits non-zero.
//!
//! dbt comes from `TRADEFLOW_DBT` (`.ci/run` installs it from `analytics/requirements.txt`
//! into a virtualenv); without it the test skips, unless `TRADEFLOW_REQUIRE_DBT=1`. dbt's
//! target and log directories go to a temporary directory, so the repository stays clean.

use postgres::{Client, NoTls, SimpleQueryMessage};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tradeflow_sources::sim::{AssetClass, profile_of};
use tradeflow_tests::postgres::{PASSWORD, PgCluster, TestDb, USER, units};
use tradeflow_tests::process::Running;
use tradeflow_tests::{Finished, file_url, simulate, temp_dir, tradeflow_command};

const TIMEOUT: Duration = Duration::from_secs(300);
const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

/// The seed's daily query, verbatim (SPEC 7).
const SEED_DAILY: &str = "SELECT symbol, AVG(volatility) as avg_volatility, SUM(volume) as total_volume FROM fct_trades WHERE trade_date = CURRENT_DATE GROUP BY symbol ORDER BY avg_volatility DESC LIMIT 10;";

/// The schema the models are built in (the profile's default).
const SCHEMA: &str = "analytics";

/// The late trades of the second run: AAPL, 30 minutes into today's first hour.
const LATE_VOLUMES: [i64; 3] = [1_000, 2_000, 3_000];

/// The dbt executable from `TRADEFLOW_DBT`, or `None` (after saying why) when it is
/// missing and not required.
fn dbt_executable() -> Option<PathBuf> {
    let required = std::env::var("TRADEFLOW_REQUIRE_DBT").is_ok_and(|v| v == "1");
    let problem = match std::env::var_os("TRADEFLOW_DBT") {
        None => "TRADEFLOW_DBT is not set".to_owned(),
        Some(path) => match Command::new(&path).arg("--help").output() {
            Ok(out) if out.status.success() => return Some(PathBuf::from(path)),
            Ok(out) => format!("`{} --help` failed: {}", path.to_string_lossy(), String::from_utf8_lossy(&out.stderr)),
            Err(e) => format!("TRADEFLOW_DBT={} cannot be run: {e}", path.to_string_lossy()),
        },
    };
    assert!(!required, "TRADEFLOW_REQUIRE_DBT=1 but {problem} (.ci/run installs dbt from analytics/requirements.txt)");
    eprintln!(
        "skipping: {problem}; set TRADEFLOW_DBT to a dbt with dbt-postgres (TRADEFLOW_REQUIRE_DBT=1 fails instead)"
    );
    None
}

/// `dbt_project/` in the repository.
fn project_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the workspace").join("dbt_project")
}

/// One node of dbt's `run_results.json`.
#[derive(Debug)]
struct NodeResult {
    /// `model`, `test`, `operation`, ...
    kind: String,
    /// The node's name (a test's given name, a model's file name).
    name: String,
    /// `success`, `pass`, `fail`, `error`, ...
    status: String,
    /// Rows a test found.
    failures: i64,
    /// dbt's message (an error's text).
    message: String,
}

/// What one dbt command did.
struct DbtOutcome {
    out: Finished,
    results: Vec<NodeResult>,
}

impl DbtOutcome {
    fn of_kind(&self, kind: &str) -> impl Iterator<Item = &NodeResult> {
        self.results.iter().filter(move |r| r.kind == kind)
    }

    fn describe(&self) -> String {
        format!("stdout:\n{}\nstderr:\n{}", self.out.stdout, self.out.stderr)
    }

    /// Names of the tests that did not pass.
    fn failed_tests(&self) -> BTreeSet<String> {
        self.of_kind("test").filter(|r| r.status != "pass").map(|r| r.name.clone()).collect()
    }
}

/// dbt pointed at the project and at one database, with its artefacts in a temporary
/// directory.
struct Dbt {
    exe: PathBuf,
    work: PathBuf,
    env: Vec<(&'static str, String)>,
}

impl Dbt {
    fn new(exe: PathBuf, work: &Path, db: &TestDb) -> Dbt {
        let env = vec![
            ("POSTGRES_HOST", "127.0.0.1".to_owned()),
            ("POSTGRES_PORT", db.cluster().port().to_string()),
            ("POSTGRES_DB", db.name().to_owned()),
            ("POSTGRES_USER", USER.to_owned()),
            ("POSTGRES_PASSWORD", PASSWORD.to_owned()),
            ("DBT_SEND_ANONYMOUS_USAGE_STATS", "false".to_owned()),
            ("DBT_USE_COLORS", "false".to_owned()),
        ];
        std::fs::create_dir_all(work).expect("creating dbt's directory");
        Dbt { exe, work: work.to_owned(), env }
    }

    fn target(&self) -> PathBuf {
        self.work.join("target")
    }

    /// Runs `dbt ARGS` and reads its `run_results.json`.
    fn invoke(&self, args: &[&str]) -> DbtOutcome {
        let results_path = self.target().join("run_results.json");
        let _ = std::fs::remove_file(&results_path);
        let project = project_dir();
        let mut command = Command::new(&self.exe);
        command
            .args(args)
            .arg("--project-dir")
            .arg(&project)
            .arg("--profiles-dir")
            .arg(&project)
            .arg("--target-path")
            .arg(self.target())
            .arg("--log-path")
            .arg(self.work.join("logs"))
            .current_dir(&self.work);
        for name in ["TRADEFLOW_DBT_SCHEMA", "TRADEFLOW_SOURCE_SCHEMA", "DATABASE_URL"] {
            command.env_remove(name);
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        let out = Running::spawn(command).finish(TIMEOUT);
        assert!(!out.stdout.contains(PASSWORD) && !out.stderr.contains(PASSWORD), "dbt printed the password");
        let text = std::fs::read_to_string(&results_path).unwrap_or_else(|e| {
            panic!("dbt {args:?} wrote no {}: {e}\n{}\n{}", results_path.display(), out.stdout, out.stderr)
        });
        let json: Value = serde_json::from_str(&text).expect("run_results.json is JSON");
        let results = json["results"]
            .as_array()
            .expect("run_results.json has results")
            .iter()
            .map(|r| {
                let id = r["unique_id"].as_str().expect("a unique_id");
                let mut parts = id.split('.');
                let kind = parts.next().unwrap_or_default().to_owned();
                let name = parts.nth(1).unwrap_or_default().to_owned();
                NodeResult {
                    kind,
                    name,
                    status: r["status"].as_str().unwrap_or_default().to_owned(),
                    failures: r["failures"].as_i64().unwrap_or(0),
                    message: r["message"].as_str().unwrap_or_default().to_owned(),
                }
            })
            .collect();
        DbtOutcome { out, results }
    }

    /// `dbt run ARGS`: every model of the project (or of the selection) built.
    fn run(&self, args: &[&str], expected_models: &BTreeSet<String>) -> DbtOutcome {
        let mut all = vec!["run"];
        all.extend(args);
        let outcome = self.invoke(&all);
        assert!(outcome.out.success(), "dbt {all:?} failed\n{}", outcome.describe());
        let built: BTreeSet<String> =
            outcome.of_kind("model").filter(|r| r.status == "success").map(|r| r.name.clone()).collect();
        let failed: Vec<&NodeResult> = outcome.of_kind("model").filter(|r| r.status != "success").collect();
        assert!(failed.is_empty(), "models not built: {failed:?}");
        assert_eq!(&built, expected_models, "the models dbt {all:?} built");
        outcome
    }

    /// `dbt test`, expecting every test of the manifest to run and pass; returns how many ran.
    fn test_all_pass(&self) -> usize {
        let outcome = self.invoke(&["test"]);
        let failed: Vec<&NodeResult> = outcome.of_kind("test").filter(|r| r.status != "pass").collect();
        assert!(failed.is_empty(), "dbt tests did not pass: {failed:#?}\n{}", outcome.describe());
        assert!(outcome.out.success(), "dbt test failed\n{}", outcome.describe());
        let ran = outcome.of_kind("test").count();
        assert_eq!(ran, self.manifest_tests(), "every test of the project ran");
        assert!(ran > 0);
        ran
    }

    /// The number of data tests the project defines (from the manifest of the last command).
    fn manifest_tests(&self) -> usize {
        let text = std::fs::read_to_string(self.target().join("manifest.json")).expect("dbt wrote a manifest");
        let json: Value = serde_json::from_str(&text).expect("manifest.json is JSON");
        json["nodes"]
            .as_object()
            .expect("manifest nodes")
            .values()
            .filter(|n| n["resource_type"] == "test" && n["package_name"] == "tradeflow")
            .count()
    }
}

/// The project's models: the `.sql` files under `dbt_project/models/`.
fn project_models() -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).expect("reading dbt_project/models").flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "sql") {
                out.insert(path.file_stem().expect("a file name").to_string_lossy().into_owned());
            }
        }
    }
    let mut models = BTreeSet::new();
    walk(&project_dir().join("models"), &mut models);
    models
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_millis() as i64
}

/// `tradeflow run` over `inputs` into `db` (no lake), successfully.
fn run_tradeflow(inputs: &[&Path], db: &TestDb) -> Finished {
    let mut command = tradeflow_command();
    command.arg("run");
    for input in inputs {
        command.arg("--source").arg(file_url(input));
    }
    command.args(["--no-lake", "--postgres", &db.url(), "--progress-interval", "0"]);
    let out = Running::spawn(command).finish(TIMEOUT);
    out.assert_success("tradeflow run");
    out
}

/// Every row of a simple query, each field as text (`None` for NULL).
fn simple_rows(client: &mut Client, sql: &str) -> Vec<Vec<Option<String>>> {
    client
        .simple_query(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => {
                Some((0..row.len()).map(|i| row.get(i).map(str::to_owned)).collect::<Vec<_>>())
            }
            _ => None,
        })
        .collect()
}

fn class_name(class: AssetClass) -> &'static str {
    match class {
        AssetClass::Stock => "stock",
        AssetClass::Crypto => "crypto",
        AssetClass::Forex => "forex",
    }
}

/// The hourly bars as text, keyed by (symbol, bar start), with the transaction that wrote
/// each row (`xmin`): an unchanged xmin means the incremental run left the row alone.
fn hourly_bars(client: &mut Client) -> BTreeMap<(String, String), (String, String)> {
    let sql = format!(
        "SELECT symbol, bar_start::text, b::text, xmin::text FROM {SCHEMA}.bars_hourly AS b ORDER BY symbol, bar_start"
    );
    client
        .query(sql.as_str(), &[])
        .expect("reading bars_hourly")
        .iter()
        .map(|r| ((r.get(0), r.get(1)), (r.get(2), r.get(3))))
        .collect()
}

/// Whole rows of a mart as text, in key order (floats print exactly in PostgreSQL 15).
fn table_text(client: &mut Client, table: &str, key: &str) -> Vec<String> {
    let sql = format!("SELECT t::text FROM {SCHEMA}.{table} AS t ORDER BY {key}");
    client.query(sql.as_str(), &[]).expect("reading a mart").iter().map(|r| r.get(0)).collect()
}

/// The (symbol, UTC hour) buckets holding a final window written after `since`.
fn buckets_written_after(client: &mut Client, since: &str) -> BTreeSet<(String, String)> {
    client
        .query(
            "SELECT DISTINCT symbol, (date_trunc('hour', window_start AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')::text
             FROM window_metrics WHERE is_final AND updated_at > $1::text::timestamptz",
            &[&since],
        )
        .expect("reading window_metrics")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[test]
fn dbt_builds_tests_and_increments_the_marts_and_catches_a_corrupted_row() {
    let Some(exe) = dbt_executable() else { return };
    let Some(cluster) = PgCluster::shared() else { return };
    let db = cluster.database("dbt");
    let dir = temp_dir();
    let dbt = Dbt::new(exe, &dir.path().join("dbt"), &db);
    let mut client = Client::connect(&db.url(), NoTls).expect("connecting to the test database");
    let models = project_models();
    assert!(models.len() >= 9, "dbt_project/models has {models:?}");

    // Today's market from 00:00 UTC (CURRENT_DATE is the server's UTC date): 50 000 trades
    // of the default universe (stocks, crypto and forex venues) over 10 000 s, about three
    // hours, with bursts that fire anomalies.
    let midnight = now_ms() / DAY_MS * DAY_MS;
    let market = dir.path().join("1-market.ndjson");
    simulate(&market, &["--count", "50000", "--rate", "5", "--seed", "11", "--start", &midnight.to_string()]);
    run_tradeflow(&[&market], &db);
    let hours: i64 = client
        .query_one("SELECT count(DISTINCT date_trunc('hour', window_start)) FROM window_metrics WHERE is_final", &[])
        .expect("counting hours")
        .get(0);
    assert!(hours >= 3, "the market spans {hours} hours");

    // Every model builds, every test passes.
    dbt.run(&[], &models);
    let tests = dbt.test_all_pass();
    eprintln!("dbt: {} models built, {tests} tests passed", models.len());

    // dim_symbol: venue and asset class as the simulator sees the symbol; first and last
    // seen as the windows say.
    let symbols = client
        .query(
            &format!(
                "SELECT d.symbol, d.venue, d.ticker, d.asset_class,
                        d.first_seen_at = w.first AND d.last_seen_at = w.last AND d.window_count = w.n
                 FROM {SCHEMA}.dim_symbol AS d
                 JOIN (SELECT symbol, min(window_start) AS first, max(window_end) AS last, count(*) AS n
                       FROM window_metrics GROUP BY symbol) AS w USING (symbol)
                 ORDER BY d.symbol"
            ),
            &[],
        )
        .expect("reading dim_symbol");
    let table_symbols: i64 =
        client.query_one("SELECT count(DISTINCT symbol) FROM window_metrics", &[]).expect("counting").get(0);
    assert_eq!(symbols.len() as i64, table_symbols, "one dim_symbol row per symbol");
    let mut classes = BTreeSet::new();
    for row in &symbols {
        let (symbol, venue, ticker, class, seen): (String, Option<String>, String, String, bool) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        assert_eq!(class, class_name(profile_of(&symbol).class), "asset class of {symbol}");
        let (want_venue, want_ticker) = match symbol.split_once(':') {
            Some((v, t)) => (Some(v.to_uppercase()), t.to_owned()),
            None => (None, symbol.clone()),
        };
        assert_eq!((venue, ticker), (want_venue, want_ticker), "venue and ticker of {symbol}");
        assert!(seen, "{symbol}: first/last seen or window count differ from window_metrics");
        classes.insert(class);
    }
    assert_eq!(classes.len(), 3, "the market has stocks, crypto and forex: {classes:?}");

    // The hourly bars: each bar's exact columns are its final windows' (volume, trades,
    // extremes, first open, last close), and every hour with final windows has a bar.
    let mismatched: i64 = client
        .query_one(
            &format!(
                "SELECT count(*) FROM (
                   (SELECT symbol, window_hour, count(*), sum(trade_count), sum(volume), min(min_price), max(max_price),
                           (array_agg(open ORDER BY window_start))[1], (array_agg(close ORDER BY window_start DESC))[1]
                    FROM (SELECT *, date_trunc('hour', window_start AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS window_hour
                          FROM window_metrics WHERE is_final) AS w
                    GROUP BY symbol, window_hour)
                   EXCEPT
                   (SELECT symbol, bar_start, window_count, trade_count, volume, min_price, max_price, open, close
                    FROM {SCHEMA}.bars_hourly)) AS d"
            ),
            &[],
        )
        .expect("comparing bars with windows")
        .get(0);
    assert_eq!(mismatched, 0, "hourly bars that differ from an aggregate of their windows");
    let bars: i64 =
        client.query_one(&format!("SELECT count(*) FROM {SCHEMA}.bars_hourly"), &[]).expect("counting").get(0);
    assert!(bars >= table_symbols * 3, "{bars} hourly bars for {table_symbols} symbols over {hours} hours");
    // One bar recomputed here from its windows, to the unit.
    let aapl_hour = (midnight, midnight + HOUR_MS);
    let windows = client
        .query(
            "SELECT volume::text, trade_count, open::text, close::text FROM window_metrics
             WHERE symbol = $1 AND is_final AND window_start >= to_timestamp($2::float8 / 1000)
               AND window_start < to_timestamp($3::float8 / 1000)
             ORDER BY window_start",
            &[&"AAPL", &(aapl_hour.0 as f64), &(aapl_hour.1 as f64)],
        )
        .expect("reading AAPL's first hour");
    assert!(!windows.is_empty(), "AAPL traded in the first hour");
    let volume: i128 = windows.iter().map(|r| units(r.get(0))).sum();
    let trades: i64 = windows.iter().map(|r| r.get::<_, i64>(1)).sum();
    let bar = client
        .query_one(
            &format!(
                "SELECT volume::text, trade_count, open::text, close::text, window_count FROM {SCHEMA}.bars_hourly
                 WHERE symbol = $1 AND bar_start = to_timestamp($2::float8 / 1000)"
            ),
            &[&"AAPL", &(aapl_hour.0 as f64)],
        )
        .expect("AAPL's first hourly bar");
    let first_hour_volume = units(bar.get(0));
    assert_eq!(first_hour_volume, volume, "AAPL's first hourly bar volume = Σ its windows' volume");
    assert_eq!(bar.get::<_, i64>(1), trades);
    assert_eq!(bar.get::<_, &str>(2), windows[0].get::<_, &str>(2), "the bar opens at its first window's open");
    assert_eq!(bar.get::<_, &str>(3), windows[windows.len() - 1].get::<_, &str>(3), "and closes at its last's close");
    assert_eq!(bar.get::<_, i64>(4), windows.len() as i64);

    // The anomalies fact has every anomaly of the sink, each with its window.
    let (facts, anomalies): (i64, i64) = {
        let row = client
            .query_one(
                &format!(
                    "SELECT (SELECT count(*) FROM {SCHEMA}.fct_anomalies WHERE window_volume IS NOT NULL),
                            (SELECT count(*) FROM anomalies)"
                ),
                &[],
            )
            .expect("counting anomalies");
        (row.get(0), row.get(1))
    };
    assert!(anomalies > 0, "the market should fire anomalies");
    assert_eq!(facts, anomalies, "fct_anomalies holds every anomaly with its window");

    // The seed's daily query, verbatim, on the mart (analytics first on the search path)
    // and on the sink's view: the same rows, today's symbols, volumes as the daily bars.
    let on_view = simple_rows(&mut client, SEED_DAILY);
    client.batch_execute(&format!("SET search_path TO {SCHEMA}")).expect("setting the search path");
    let on_mart = simple_rows(&mut client, SEED_DAILY);
    client.batch_execute("RESET search_path").expect("resetting the search path");
    assert_eq!(on_mart.len(), 10.min(table_symbols as usize), "the daily query on the mart: {on_mart:?}");
    assert_eq!(on_mart, on_view, "the daily query answers the same on the mart and on the sink's view");
    for row in &on_mart {
        let symbol = row[0].as_deref().expect("a symbol");
        let daily: String = client
            .query_one(
                &format!(
                    "SELECT volume::text FROM {SCHEMA}.bars_daily WHERE symbol = $1 AND trade_date = CURRENT_DATE"
                ),
                &[&symbol],
            )
            .expect("a daily bar for every symbol of the daily query")
            .get(0);
        assert_eq!(units(row[2].as_deref().expect("a volume")), units(&daily), "{symbol}: total_volume");
    }

    // A second run: the same market again with three late AAPL trades in its first hour
    // (a replay with more trades corrects those windows), the evening before (a backfill
    // of older hours) and the next hour.
    let before = hourly_bars(&mut client);
    let cursor: String = client
        .query_one(&format!("SELECT max(source_updated_at)::text FROM {SCHEMA}.bars_hourly"), &[])
        .expect("the bars' cursor")
        .get(0);
    let late = dir.path().join("2-late.ndjson");
    let late_ts = midnight + 30 * 60_000 + 10_000;
    let lines: Vec<String> = LATE_VOLUMES
        .iter()
        .enumerate()
        .map(|(i, v)| format!(r#"{{"s":"AAPL","p":190.5,"t":{},"v":{v},"c":null}}"#, late_ts + i as i64))
        .collect();
    std::fs::write(&late, lines.join("\n") + "\n").expect("writing the late trades");
    let evening = dir.path().join("0-evening.ndjson");
    let start = (midnight - 2 * HOUR_MS).to_string();
    simulate(&evening, &["--count", "5000", "--rate", "1", "--seed", "12", "--start", &start]);
    let next = dir.path().join("3-next.ndjson");
    let start = (midnight + 3 * HOUR_MS).to_string();
    simulate(&next, &["--count", "5000", "--rate", "5", "--seed", "13", "--start", &start]);
    run_tradeflow(&[&market, &late, &evening, &next], &db);

    let changed = buckets_written_after(&mut client, &cursor);
    let first_hour = client
        .query_one("SELECT to_timestamp($1::float8 / 1000)::text", &[&(midnight as f64)])
        .expect("formatting a time")
        .get::<_, String>(0);
    assert!(changed.contains(&("AAPL".to_owned(), first_hour.clone())), "the late trades changed AAPL's first hour");
    let new_hours = changed.iter().filter(|k| !before.contains_key(*k)).count();
    let rebuilt_hours = changed.len() - new_hours;
    assert!(new_hours > 0 && rebuilt_hours > 0, "{changed:?}");
    assert!(rebuilt_hours < before.len(), "the second run left some hours alone");
    eprintln!("second run: {rebuilt_hours} of {} hourly bars changed, {new_hours} new hours", before.len());

    // The incremental run (no grace period: the runs are seconds apart) rewrites exactly
    // the hours with changed windows and adds the new ones.
    dbt.run(&["--vars", r#"{"bars_grace": "0 seconds"}"#], &models);
    let after = hourly_bars(&mut client);
    let rewritten: BTreeSet<(String, String)> = after
        .iter()
        .filter(|(key, (_, xmin))| before.get(*key).is_none_or(|(_, old)| old != xmin))
        .map(|(key, _)| key.clone())
        .collect();
    assert_eq!(rewritten, changed, "the hourly bars the incremental run wrote");
    assert!(before.keys().all(|k| after.contains_key(k)), "no bar disappeared");
    let aapl_after: String = client
        .query_one(
            &format!(
                "SELECT volume::text FROM {SCHEMA}.bars_hourly WHERE symbol = $1 AND bar_start = $2::text::timestamptz"
            ),
            &[&"AAPL", &first_hour],
        )
        .expect("AAPL's first bar")
        .get(0);
    let late_volume: i128 = LATE_VOLUMES.iter().map(|v| i128::from(*v) * 100_000_000).sum();
    assert_eq!(units(&aapl_after), first_hour_volume + late_volume, "AAPL's first bar gained the late trades' volume");
    let days: i64 =
        client.query_one(&format!("SELECT count(*) FROM {SCHEMA}.dim_date"), &[]).expect("counting days").get(0);
    assert_eq!(days, 2, "dim_date spans the evening before and today");

    // The incremental bars equal a full rebuild, bit for bit.
    let incremental = (
        table_text(&mut client, "bars_hourly", "symbol, bar_start"),
        table_text(&mut client, "bars_daily", "symbol, trade_date"),
    );
    let rebuilt: BTreeSet<String> = ["bars_hourly", "bars_daily"].map(str::to_owned).into();
    dbt.run(&["--full-refresh", "--select", "bars_hourly", "bars_daily"], &rebuilt);
    let full = (
        table_text(&mut client, "bars_hourly", "symbol, bar_start"),
        table_text(&mut client, "bars_daily", "symbol, trade_date"),
    );
    assert!(incremental.0.len() > before.len());
    assert_eq!(incremental.0, full.0, "incremental bars_hourly = full refresh");
    assert_eq!(incremental.1, full.1, "incremental bars_daily = full refresh");
    assert_eq!(dbt.test_all_pass(), tests, "the same tests pass after the second run");

    // A corrupted row fails exactly the test that guards it: a window's vwap above its
    // highest price, then missing although the window has volume.
    let victim = client
        .query_one(
            "SELECT symbol, window_start::text, vwap FROM window_metrics WHERE is_final AND volume > 0
             ORDER BY symbol, window_start LIMIT 1",
            &[],
        )
        .expect("a window with volume");
    let (symbol, window_start, vwap): (String, String, f64) = (victim.get(0), victim.get(1), victim.get(2));
    let set_vwap = "UPDATE window_metrics SET vwap = $3 WHERE symbol = $1 AND window_start = $2::text::timestamptz";
    let corrupt = client
        .execute(
            "UPDATE window_metrics SET vwap = max_price::float8 * 1.5 WHERE symbol = $1 AND window_start = $2::text::timestamptz",
            &[&symbol, &window_start],
        )
        .expect("corrupting a window");
    assert_eq!(corrupt, 1);
    expect_only_failure(&dbt, "stg_window_metrics_vwap_within_price_range");
    client.execute(set_vwap, &[&symbol, &window_start, &None::<f64>]).expect("another corruption");
    expect_only_failure(&dbt, "stg_window_metrics_vwap_null_iff_no_volume");
    client.execute(set_vwap, &[&symbol, &window_start, &Some(vwap)]).expect("restoring the window");

    // A provisional window that the watermark has passed (it ends before the newest final
    // window) and that has not been written for an hour: a lost final write.
    let stale_start = (midnight - 10 * 60_000) as f64;
    let inserted = client
        .execute(
            "INSERT INTO window_metrics (symbol, window_start, window_end, trade_count, volume, vwap, min_price,
                                         max_price, avg_price, open, close, volatility, is_final, updated_at)
             VALUES ($1, to_timestamp($2::float8 / 1000), to_timestamp(($2::float8 + 60000) / 1000), 1, 1, 190.5,
                     190.5, 190.5, 190.5, 190.5, 190.5, NULL, false, now() - interval '1 hour')",
            &[&"AAPL", &stale_start],
        )
        .expect("inserting a stale provisional window");
    assert_eq!(inserted, 1);
    expect_only_failure(&dbt, "final_windows_behind_the_watermark");
}

/// `dbt test` exits non-zero and exactly the test `name` fails, finding one row.
fn expect_only_failure(dbt: &Dbt, name: &str) {
    let outcome = dbt.invoke(&["test"]);
    assert!(!outcome.out.success(), "dbt test passed on a corrupted row\n{}", outcome.describe());
    let failed = outcome.failed_tests();
    assert_eq!(failed, BTreeSet::from([name.to_owned()]), "the failing tests\n{}", outcome.describe());
    let result = outcome.of_kind("test").find(|r| r.name == name).expect("the test ran");
    assert_eq!((result.status.as_str(), result.failures), ("fail", 1), "{result:?}");
    assert!(outcome.of_kind("test").count() > 1, "the other tests ran too");
    assert!(!result.message.is_empty());
}
