//! SPEC 7 (PostgreSQL) and issue 3, against a real PostgreSQL server that the harness
//! starts and removes (`tradeflow_tests::postgres`): after a run the tables equal the
//! lake's final rows row for row and the seed's two queries, run verbatim, answer
//! correctly; late trades create and then retract an anomaly and the tables follow (also
//! step by step in one live run from Kafka); a
//! server restart in the middle of a run loses nothing; replays and two processes
//! converge to the same rows; bad credentials stop the run with a message that names the
//! server and never the password; `tradeflow migrate` is idempotent.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};
use tradeflow_model::{Anomaly, AnomalyKind, WindowMetrics, date_of};
use tradeflow_tests::expect::Knobs;
use tradeflow_tests::lake::{read_anomalies, read_metrics_changelog, read_window_metrics};
use tradeflow_tests::postgres::{PASSWORD, PgCluster, TestDb, USER, read_anomaly_changelog, units};
use tradeflow_tests::process::Running;
use tradeflow_tests::{Finished, file_url, run_two_processes, simulate, temp_dir, tradeflow_command};

const TIMEOUT: Duration = Duration::from_secs(180);

/// The seed's daily query, verbatim.
const SEED_DAILY: &str = "SELECT symbol, AVG(volatility) as avg_volatility, SUM(volume) as total_volume FROM fct_trades WHERE trade_date = CURRENT_DATE GROUP BY symbol ORDER BY avg_volatility DESC LIMIT 10;";
/// The seed's recent-anomalies query, verbatim.
const SEED_RECENT: &str =
    "SELECT * FROM anomalies WHERE detected_at >= NOW() - INTERVAL '1 hour' ORDER BY severity DESC;";

/// Several windows per symbol and anomalies on simulated data.
fn knobs() -> Knobs {
    Knobs {
        window_ms: 5_000,
        slide_ms: None,
        lateness_ms: 5_000,
        volatility_windows: 5,
        baseline_windows: 5,
        min_history: 2,
        spike_factor: 2.0,
        jump_sigma: 2.0,
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_millis() as i64
}

/// Ten minutes of a simulated market (21 symbols, 60 000 trades) ending about a minute
/// ago, so that `CURRENT_DATE` and `NOW() - INTERVAL '1 hour'` find it.
fn todays_market(path: &Path) {
    let start = (now_ms() - 11 * 60_000).to_string();
    simulate(path, &["--count", "60000", "--rate", "100", "--seed", "3", "--format", "mixed", "--start", &start]);
}

/// `tradeflow run` over `input` into `lake` and `db`, with `knobs`.
fn run_args(input: &Path, lake: &Path, db: &TestDb, knobs: &Knobs) -> Vec<String> {
    let mut args = vec![
        "run".to_owned(),
        "--source".to_owned(),
        file_url(input),
        "--lake".to_owned(),
        file_url(lake),
        "--postgres".to_owned(),
        db.url(),
        "--progress-interval".to_owned(),
        "0".to_owned(),
    ];
    args.extend(knobs.args());
    args
}

fn run(args: &[String], extra: &[&str]) -> Finished {
    let mut command = tradeflow_command();
    command.args(args).args(extra);
    let out = Running::spawn(command).finish(TIMEOUT);
    assert_succeeded_quietly(&out, &format!("tradeflow {}", extra.join(" ")));
    out
}

/// `out` succeeded, and its output never shows the server's password.
fn assert_succeeded_quietly(out: &Finished, what: &str) {
    out.assert_success(what);
    assert!(!out.stderr.contains(PASSWORD), "the password was printed:\n{}", out.stderr);
}

/// The lake's final rows, sorted.
fn lake_finals(lake: &Path) -> (Vec<WindowMetrics>, Vec<Anomaly>) {
    let mut metrics = read_window_metrics(lake);
    let mut anomalies = read_anomalies(lake);
    metrics.sort();
    anomalies.sort();
    (metrics, anomalies)
}

/// The tables hold exactly the lake's final rows (floats bit for bit, decimals exactly).
fn assert_tables_equal_lake(db: &TestDb, lake: &Path) -> (Vec<WindowMetrics>, Vec<Anomaly>) {
    let (metrics, anomalies) = lake_finals(lake);
    assert!(!metrics.is_empty(), "the lake has no window metrics");
    let table = db.window_metrics();
    if table != metrics {
        let missing: Vec<_> = metrics.iter().filter(|m| !table.contains(m)).take(3).collect();
        let extra: Vec<_> = table.iter().filter(|m| !metrics.contains(m)).take(3).collect();
        panic!(
            "window_metrics ({} rows) differs from the lake ({} rows)\nmissing: {missing:#?}\nextra: {extra:#?}",
            table.len(),
            metrics.len()
        );
    }
    let table = db.anomalies();
    assert_eq!(table, anomalies, "the anomalies table differs from the lake's final anomalies");
    (metrics, anomalies)
}

/// The daily query's answer, computed from the lake's rows of `today`: per symbol the
/// mean of the non-NULL volatilities and the exact volume, NULL means first (they sort
/// first in descending order), at most 10.
fn expected_daily(metrics: &[WindowMetrics], today: &str) -> Vec<(String, Option<f64>, i128)> {
    let mut by_symbol: BTreeMap<String, (Vec<f64>, i128)> = BTreeMap::new();
    for m in metrics.iter().filter(|m| date_of(m.window_start) == today) {
        let entry = by_symbol.entry(m.symbol.as_str().to_owned()).or_default();
        entry.0.extend(m.volatility.map(|v| v.0));
        entry.1 += m.volume;
    }
    let mut rows: Vec<(String, Option<f64>, i128)> = by_symbol
        .into_iter()
        .map(|(symbol, (vols, volume))| {
            let avg = (!vols.is_empty()).then(|| vols.iter().sum::<f64>() / vols.len() as f64);
            (symbol, avg, volume)
        })
        .collect();
    rows.sort_by(|a, b| match (a.1, b.1) {
        (None, None) => std::cmp::Ordering::Equal,
        (None, Some(_)) => std::cmp::Ordering::Less,
        (Some(_), None) => std::cmp::Ordering::Greater,
        (Some(x), Some(y)) => y.total_cmp(&x),
    });
    rows.truncate(10);
    rows
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

#[test]
fn a_bounded_run_leaves_the_lakes_final_rows_and_the_seed_queries_answer() {
    let Some(cluster) = PgCluster::shared() else { return };
    let db = cluster.database("bounded");
    let dir = temp_dir();
    let (input, lake) = (dir.path().join("today.ndjson"), dir.path().join("lake"));
    todays_market(&input);
    let out = run(&run_args(&input, &lake, &db, &knobs()), &[]);
    let (metrics, anomalies) = assert_tables_equal_lake(&db, &lake);
    let summary = out.summary();
    assert_eq!(metrics.len() as u64, summary.windows_final);
    assert_eq!(anomalies.len() as u64, summary.anomalies_final);
    assert!(!anomalies.is_empty(), "the input should produce anomalies");
    assert!(metrics.iter().all(|m| m.is_final) && anomalies.iter().all(|a| a.is_final));
    assert!(out.stderr.contains("postgres commit delay p50"), "{}", out.stderr);

    // The daily query, verbatim.
    let today = db.scalar("SELECT CURRENT_DATE").expect("a date");
    let (header, rows) = db.query_with_header(SEED_DAILY);
    assert_eq!(header, ["symbol", "avg_volatility", "total_volume"]);
    let expected = expected_daily(&metrics, &today);
    assert!(!expected.is_empty(), "no window of {today} in the input");
    assert_eq!(rows.len(), expected.len(), "{rows:?}");
    for (row, (symbol, avg, volume)) in rows.iter().zip(&expected) {
        assert_eq!(row[0].as_deref(), Some(symbol.as_str()), "rows {rows:?}\nexpected {expected:?}");
        match (row[1].as_deref(), avg) {
            (None, None) => {}
            (Some(got), Some(want)) => {
                let got: f64 = got.parse().expect("a double");
                assert!(close(got, *want), "{symbol}: avg_volatility {got} != {want}");
            }
            (got, want) => panic!("{symbol}: avg_volatility {got:?} != {want:?}"),
        }
        assert_eq!(units(row[2].as_deref().expect("a volume")), *volume, "{symbol}: total_volume");
    }

    // The recent-anomalies query, verbatim: every anomaly (all are under an hour old),
    // most severe first, with the table's columns.
    let (header, rows) = db.query_with_header(SEED_RECENT);
    assert_eq!(
        header,
        ["symbol", "window_start", "window_end", "kind", "severity", "detected_at", "observed", "baseline", "is_final"]
    );
    let since = now_ms() - 3_600_000;
    let mut want: Vec<(String, String, u64)> = anomalies
        .iter()
        .filter(|a| a.detected_at >= since)
        .map(|a| (a.symbol.as_str().to_owned(), a.kind.as_str().to_owned(), a.severity.0.to_bits()))
        .collect();
    let mut got: Vec<(String, String, u64)> = rows
        .iter()
        .map(|r| {
            let severity: f64 = r[4].as_deref().expect("a severity").parse().expect("a double");
            (r[0].clone().expect("a symbol"), r[3].clone().expect("a kind"), severity.to_bits())
        })
        .collect();
    let severities: Vec<f64> = got.iter().map(|g| f64::from_bits(g.2)).collect();
    assert!(severities.windows(2).all(|w| w[0] >= w[1]), "not ordered by severity: {severities:?}");
    want.sort();
    got.sort();
    assert_eq!(got, want, "the recent-anomalies query");

    // The schema's bookkeeping.
    assert_eq!(db.scalar("SELECT string_agg(version::text, ',') FROM schema_migrations").as_deref(), Some("1,2,3"));
    let progress = db.query("SELECT process, transactions > 0, rows_written > 0 FROM sink_progress");
    assert_eq!(progress, vec![vec![Some("0".into()), Some("t".into()), Some("t".into())]]);
}

/// The crafted input of the late-trade tests (1 s windows from `T0`): symbols X and Y
/// trade 10 units in each of windows 0..5 and 100 in window 5, a volume spike (baseline
/// 10, factor 3) for both. With `late`, X then trades 1 000 units in window 0 — out of
/// order but within the 30 s lateness — which raises X's window-5 baseline to 210 and so
/// retracts X's spike. All prices are equal, so no price jump fires.
const T0: i64 = 1_700_000_040_000;

fn trade_line(symbol: &str, ts: i64, volume: u32) -> String {
    format!("{{\"s\":\"{symbol}\",\"p\":100,\"t\":{ts},\"v\":{volume}}}\n")
}

/// X's late trade.
fn late_trade() -> String {
    trade_line("X", T0 + 500, 1_000)
}

fn late_lines(late: bool) -> String {
    let mut lines = String::new();
    for window in 0..6 {
        let volume = if window == 5 { 100 } else { 10 };
        lines += &trade_line("X", T0 + window * 1000 + 100, volume);
        lines += &trade_line("Y", T0 + window * 1000 + 200, volume);
    }
    if late {
        lines += &late_trade();
    }
    lines
}

fn late_input(path: &Path, late: bool) {
    std::fs::write(path, late_lines(late)).expect("writing the input");
}

fn late_knobs() -> Knobs {
    Knobs {
        window_ms: 1_000,
        slide_ms: None,
        lateness_ms: 30_000,
        volatility_windows: 5,
        baseline_windows: 5,
        min_history: 5,
        spike_factor: 3.0,
        jump_sigma: 4.0,
    }
}

fn spike(db_rows: &[Anomaly], symbol: &str) -> Option<Anomaly> {
    db_rows
        .iter()
        .find(|a| a.symbol.as_str() == symbol && a.window_start == T0 + 5_000 && a.kind == AnomalyKind::VolumeSpike)
        .cloned()
}

/// X's window 0 in the table.
fn x_window0(db: &TestDb) -> Option<WindowMetrics> {
    db.window_metrics_where(&format!("symbol = 'X' AND window_start = to_timestamp({T0} / 1000.0)")).pop()
}

/// Whether the table shows X's and Y's spikes and X's window 0 (10 units) as provisional
/// rows: the late-trade tests' first six windows were read and committed.
fn spikes_provisional(db: &TestDb) -> bool {
    if db.try_query("SELECT 1 FROM anomalies LIMIT 0").is_err() {
        return false; // not migrated yet
    }
    let rows = db.anomalies_where("symbol IN ('X', 'Y')");
    spike(&rows, "X").is_some_and(|a| !a.is_final)
        && spike(&rows, "Y").is_some_and(|a| !a.is_final)
        && x_window0(db).is_some_and(|m| !m.is_final && m.volume == 1_000_000_000)
}

/// Late trades within the lateness bound change a window and retract a provisional
/// anomaly: the lake's changelog shows X's spike inserted and then retracted in a later
/// epoch, and PostgreSQL ends with the final rows only — X's window 0 with the late
/// volume, Y's spike, no X spike.
///
/// The trades come through standard input (`--source -`): the test writes the first
/// six windows, waits until PostgreSQL shows both spikes as provisional rows (so the
/// spike was inserted in an epoch of its own, however the run cuts its epochs), then
/// writes the late trade and ends the input. Nothing closes the windows early: the
/// lateness holds them open and `--idle-timeout` is longer than the test.
#[test]
fn late_trades_change_a_window_and_retract_an_anomaly_and_the_tables_follow() {
    let Some(cluster) = PgCluster::shared() else { return };
    let db = cluster.database("late");
    let dir = temp_dir();
    let lake = dir.path().join("lake");
    let mut command = tradeflow_command();
    command.args(["run", "--source", "-", "--lake", &file_url(&lake), "--postgres", &db.url()]);
    // Every update in the changelog (the default consolidates each second's).
    command.args(["--progress-interval", "0", "--idle-timeout", "10m", "--changelog-resolution", "0"]);
    command.args(late_knobs().args());
    let (live, mut stdin) = Running::spawn_with_stdin(command);
    stdin.write_all(late_lines(false).as_bytes()).expect("writing the first windows");
    stdin.flush().expect("writing the first windows");
    let seen = db.wait_until(Duration::from_secs(60), spikes_provisional);
    assert!(seen, "the provisional spikes never appeared in PostgreSQL:\n{}", live.stderr_so_far());
    stdin.write_all(late_trade().as_bytes()).expect("writing the late trade");
    drop(stdin); // the end of the input: the open windows become final
    let out = live.finish(TIMEOUT);
    assert_succeeded_quietly(&out, "a run reading standard input");
    assert_eq!(out.summary().rejected, 0, "nothing is late:\n{}", out.stderr);

    // The analytics inserted X's spike, then retracted it at a later epoch.
    let updates: Vec<_> = read_anomaly_changelog(&lake)
        .into_iter()
        .filter(|u| u.symbol == "X" && u.window_start == T0 + 5_000 && u.kind == "volume_spike")
        .collect();
    let inserted = updates.iter().find(|u| u.diff > 0 && !u.is_final).expect("X's spike was never inserted");
    let retracted = updates.iter().find(|u| u.diff < 0).expect("X's spike was never retracted");
    assert!(retracted.time > inserted.time, "{updates:?}");
    assert_eq!(updates.iter().map(|u| u.diff).sum::<i64>(), 0, "{updates:?}");
    // X's window 0 changed: first 10 units, finally 1 010.
    let window0: Vec<_> = read_metrics_changelog(&lake)
        .into_iter()
        .filter(|u| u.row.symbol.as_str() == "X" && u.row.window_start == T0 && u.diff > 0)
        .map(|u| u.row.volume)
        .collect();
    assert!(window0.contains(&1_000_000_000) && window0.contains(&101_000_000_000), "{window0:?}");

    // PostgreSQL followed.
    let (metrics, anomalies) = assert_tables_equal_lake(&db, &lake);
    assert!(spike(&anomalies, "X").is_none() && spike(&anomalies, "Y").is_some(), "{anomalies:#?}");
    let x0 = metrics.iter().find(|m| m.symbol.as_str() == "X" && m.window_start == T0).expect("X's window 0");
    assert_eq!(x0.volume, 101_000_000_000);
}

/// A provisional anomaly reaches PostgreSQL while its window is open, and goes when the
/// late trades that retract it arrive. Run 1 reads X's and Y's spikes from a file while a
/// paced simulator (symbol HOLD, event time two minutes behind) holds the watermark back,
/// so both spikes stay provisional: the test polls the table until they are there, then
/// kills the run (SIGKILL). Run 2 replays the input with the late trades: X's spike is
/// deleted and the tables hold run 2's final rows (plus run 1's provisional HOLD rows,
/// which run 2 never saw).
#[test]
fn a_provisional_anomaly_appears_in_postgres_and_is_deleted_when_late_trades_retract_it() {
    let Some(cluster) = PgCluster::shared() else { return };
    let db = cluster.database("provisional");
    let dir = temp_dir();
    let (early, full) = (dir.path().join("early.ndjson"), dir.path().join("full.ndjson"));
    late_input(&early, false);
    late_input(&full, true);
    let knobs = Knobs { lateness_ms: 120_000, ..late_knobs() };

    let mut args = run_args(&early, &dir.path().join("lake1"), &db, &knobs);
    args.extend(["--source".to_owned(), format!("sim://?symbols=HOLD&rate=5&seed=1&start={T0}")]);
    let mut command = tradeflow_command();
    command.args(&args);
    let live = Running::spawn(command);
    let seen = db.wait_until(Duration::from_secs(60), spikes_provisional);
    assert!(seen, "the provisional spikes never appeared in PostgreSQL:\n{}", live.stderr_so_far());
    drop(live); // SIGKILL: no flush, no finalisation

    let lake = dir.path().join("lake2");
    run(&run_args(&full, &lake, &db, &late_knobs()), &[]);
    let (metrics, anomalies) = lake_finals(&lake);
    assert_eq!(db.window_metrics_where("symbol <> 'HOLD'"), metrics);
    assert_eq!(db.anomalies_where("symbol <> 'HOLD'"), anomalies);
    assert!(spike(&anomalies, "X").is_none() && spike(&anomalies, "Y").is_some_and(|a| a.is_final));
    let left = db.window_metrics_where("symbol = 'HOLD'");
    assert!(left.iter().all(|m| !m.is_final), "run 1 never finalised HOLD: {left:#?}");
}

/// The same story in one live run, step by step: a live `kafka://` source reads X's and
/// Y's first six windows (an outside client writes them to a one-partition topic), and
/// PostgreSQL shows both spikes as provisional rows; then the late X trade is written to
/// the topic, and while the run is still live the table loses X's spike and X's window 0
/// shows the late volume. Ctrl-C then finalises everything, and the tables equal the
/// lake's final rows. (Nothing closes the windows early: `--idle-timeout` is longer than
/// the test, so a quiet partition keeps holding the watermark.)
#[test]
fn a_live_run_inserts_a_provisional_anomaly_and_deletes_it_when_a_late_trade_arrives() {
    let Some(cluster) = PgCluster::shared() else { return };
    let Some(broker) = tradeflow_tests::kafka::Broker::start() else { return };
    let db = cluster.database("live_retraction");
    let dir = temp_dir();
    let (early, late) = (dir.path().join("early.ndjson"), dir.path().join("late.ndjson"));
    late_input(&early, false);
    std::fs::write(&late, late_trade()).expect("the late trade");
    broker.create_topic("late", 1);
    broker.produce_lines("late", &early);

    let lake = dir.path().join("lake");
    let mut command = tradeflow_command();
    command.args(["run", "--source", &broker.url("late", ""), "--lake", &file_url(&lake), "--postgres", &db.url()]);
    // --drain: Ctrl-C finalises the open windows (the run is checkpointed, so without it
    // they would stay open for a resumed run).
    command.args(["--idle-timeout", "10m", "--progress-interval", "0", "--drain"]).args(late_knobs().args());
    let live = Running::spawn(command);
    let seen = db.wait_until(Duration::from_secs(60), spikes_provisional);
    assert!(seen, "the provisional spikes never appeared in PostgreSQL:\n{}", live.stderr_so_far());

    broker.produce_lines("late", &late);
    let retracted = |db: &TestDb| {
        let rows = db.anomalies_where("symbol IN ('X', 'Y')");
        spike(&rows, "X").is_none()
            && spike(&rows, "Y").is_some_and(|a| !a.is_final)
            && x_window0(db).is_some_and(|m| !m.is_final && m.volume == 101_000_000_000)
    };
    let followed = db.wait_until(Duration::from_secs(60), retracted);
    assert!(followed, "the late trade did not retract X's spike in PostgreSQL:\n{}", live.stderr_so_far());

    live.interrupt();
    let out = live.finish(TIMEOUT);
    out.assert_success("a live kafka:// run stopped with Ctrl-C");
    assert_eq!(out.summary().rejected, 0, "nothing is late:\n{}", out.stderr);
    let (metrics, anomalies) = assert_tables_equal_lake(&db, &lake);
    assert!(spike(&anomalies, "X").is_none() && spike(&anomalies, "Y").is_some_and(|a| a.is_final));
    assert!(metrics.iter().all(|m| m.is_final));
    assert_eq!(x_window0(&db).map(|m| (m.volume, m.is_final)), Some((101_000_000_000, true)));
}

/// `pg_ctl restart -m fast` while a paced simulator run is writing: the sink retries
/// with backoff, re-applies what was pending, and the run completes with the tables
/// equal to the lake's final rows.
#[test]
fn a_server_restart_in_the_middle_of_a_run_loses_nothing() {
    let Some(cluster) = PgCluster::start() else { return };
    let db = cluster.database("restart");
    let dir = temp_dir();
    let lake = dir.path().join("lake");
    let mut command = tradeflow_command();
    command.args([
        "run",
        "--source",
        "sim://?rate=5000&count=60000&seed=5",
        "--lake",
        &file_url(&lake),
        "--postgres",
        &db.url(),
        "--window",
        "1s",
        "--allowed-lateness",
        "1s",
        "--volatility-windows",
        "5",
        "--baseline-windows",
        "5",
        "--min-history",
        "2",
        "--spike-factor",
        "2",
        "--jump-sigma",
        "2",
        "--progress-interval",
        "1s",
    ]);
    let started = Instant::now();
    let run = Running::spawn(command);
    let writing = db.wait_until(Duration::from_secs(60), |db| {
        db.try_query("SELECT 1 FROM window_metrics WHERE is_final LIMIT 1").is_ok_and(|r| !r.is_empty())
    });
    assert!(writing, "no final rows within 60 s:\n{}", run.stderr_so_far());
    std::thread::sleep(Duration::from_secs(2).saturating_sub(started.elapsed()));
    cluster.restart();
    let out = run.finish(TIMEOUT);
    assert_succeeded_quietly(&out, "tradeflow run across a PostgreSQL restart");
    assert!(started.elapsed() < Duration::from_secs(120));
    assert!(out.stderr.contains("retrying in"), "the restart went unnoticed:\n{}", out.stderr);
    assert!(out.stderr.contains("reconnected after"), "{}", out.stderr);
    let (metrics, _) = assert_tables_equal_lake(&db, &lake);
    assert_eq!(metrics.iter().map(|m| m.trade_count).sum::<u64>(), out.summary().accepted);
}

/// A replay of the same input into the same database converges to identical tables and
/// rewrites nothing (`updated_at` included); two processes (`-n 2`) writing at once give
/// the same tables as one worker, with a progress row each.
#[test]
fn replays_and_two_processes_converge_to_the_same_rows() {
    let Some(cluster) = PgCluster::shared() else { return };
    let dir = temp_dir();
    let input = dir.path().join("market.ndjson");
    simulate(&input, &["--count", "40000", "--rate", "200", "--seed", "11", "--format", "mixed"]);

    let once = cluster.database("once");
    run(&run_args(&input, &dir.path().join("lake1"), &once, &knobs()), &[]);
    assert_tables_equal_lake(&once, &dir.path().join("lake1"));
    let (metrics, anomalies) = (once.snapshot("window_metrics"), once.snapshot("anomalies"));
    run(&run_args(&input, &dir.path().join("lake2"), &once, &knobs()), &["-w", "2"]);
    assert_eq!(once.snapshot("window_metrics"), metrics, "a replay changed window_metrics");
    assert_eq!(once.snapshot("anomalies"), anomalies, "a replay changed anomalies");

    let twice = cluster.database("two_processes");
    let lake = dir.path().join("lake3");
    run_two_processes(&run_args(&input, &lake, &twice, &knobs()), dir.path(), TIMEOUT);
    assert_eq!(twice.window_metrics(), once.window_metrics());
    assert_eq!(twice.anomalies(), once.anomalies());
    assert_tables_equal_lake(&twice, &lake);
    let progress = twice.query("SELECT process, count(DISTINCT run_id) FROM sink_progress GROUP BY process ORDER BY 1");
    assert_eq!(progress, vec![vec![Some("0".into()), Some("1".into())], vec![Some("1".into()), Some("1".into())]]);
}

/// Permanent errors stop the run at once, naming the server and the fix, never the
/// password; `tradeflow migrate` is idempotent, safe to run concurrently, and reads the
/// seed's `POSTGRES_*` variables from `.env`.
#[test]
fn bad_credentials_stop_the_run_without_showing_the_password_and_migrate_is_idempotent() {
    let Some(cluster) = PgCluster::shared() else { return };
    let db = cluster.database("errors");
    let dir = temp_dir();
    let input = dir.path().join("market.ndjson");
    simulate(&input, &["--count", "1000"]);
    let wrong = "Wr0ng-pa55word";
    let check_refused = |out: &Finished, needles: &[&str]| {
        assert!(!out.success(), "the run succeeded:\n{}", out.stderr);
        for needle in needles {
            assert!(out.stderr.contains(needle), "no {needle:?} in:\n{}", out.stderr);
        }
        assert!(
            !out.stderr.contains(wrong) && !out.stderr.contains(PASSWORD),
            "a password was printed:\n{}",
            out.stderr
        );
        assert!(!out.stderr.contains("tradeflow run finished"), "{}", out.stderr);
    };
    let server = db.server_name();
    let base = ["run", "--no-lake", "--progress-interval", "0", "--source", &file_url(&input)];

    // --postgres with a wrong password.
    let mut command = tradeflow_command();
    command.args(base).args(["--postgres", &db.url_with_password(wrong)]);
    let out = Running::spawn(command).finish(TIMEOUT);
    check_refused(&out, &[&server, "password authentication failed", "fix:", "(from --postgres)"]);

    // The same through DATABASE_URL.
    let mut command = tradeflow_command();
    command.args(base).env("DATABASE_URL", db.url_with_password(wrong));
    let out = Running::spawn(command).finish(TIMEOUT);
    check_refused(&out, &[&server, "password authentication failed", "(from DATABASE_URL)"]);

    // A database that does not exist.
    let mut command = tradeflow_command();
    let missing = db.url().replace(db.name(), "no_such_db");
    command.args(base).args(["--postgres", &missing]);
    let out = Running::spawn(command).finish(TIMEOUT);
    check_refused(&out, &[&server.replace(db.name(), "no_such_db"), "does not exist", "createdb"]);

    // migrate: twice, then twice at once on a fresh database.
    let migrate = |url: &str| {
        let mut command = tradeflow_command();
        command.args(["migrate", "--postgres", url]);
        Running::spawn(command)
    };
    let first = migrate(&db.url()).finish(TIMEOUT);
    first.assert_success("tradeflow migrate");
    assert!(first.stdout.contains("migrated to version 3"), "{}", first.stdout);
    let second = migrate(&db.url()).finish(TIMEOUT);
    second.assert_success("tradeflow migrate, again");
    assert!(second.stdout.contains("already at version 3"), "{}", second.stdout);
    assert_eq!(db.scalar("SELECT count(*) FROM schema_migrations").as_deref(), Some("3"));
    let fresh = cluster.database("concurrent_migrate");
    let (a, b) = (migrate(&fresh.url()), migrate(&fresh.url()));
    a.finish(TIMEOUT).assert_success("tradeflow migrate (concurrent)");
    b.finish(TIMEOUT).assert_success("tradeflow migrate (concurrent)");
    assert_eq!(fresh.scalar("SELECT count(*) FROM schema_migrations").as_deref(), Some("3"));
    assert!(fresh.try_query(SEED_DAILY).is_ok() && fresh.try_query(SEED_RECENT).is_ok());

    // The seed's variables from a .env file in the working directory.
    let env_dir = temp_dir();
    std::fs::write(
        env_dir.path().join(".env"),
        format!(
            "POSTGRES_HOST=127.0.0.1\nPOSTGRES_PORT={}\nPOSTGRES_DB={}\nPOSTGRES_USER={USER}\nPOSTGRES_PASSWORD={PASSWORD}\n",
            cluster.port(),
            db.name()
        ),
    )
    .expect("writing .env");
    let mut command = tradeflow_command();
    command.arg("migrate").current_dir(env_dir.path());
    let out = Running::spawn(command).finish(TIMEOUT);
    out.assert_success("tradeflow migrate with .env");
    assert!(out.stdout.contains(&server) && !out.stdout.contains(PASSWORD), "{}", out.stdout);
}
