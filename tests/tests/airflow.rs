//! Issue 13, the Airflow DAGs (`dags/`), with a real Apache Airflow (from PyPI, in its own
//! virtualenv) whose home and SQLite metadata database live in a temporary directory:
//!
//! * a `DagBag` of `dags/` has no import errors (and `airflow dags list-import-errors` is
//!   empty); the two DAGs have their schedules, retries and failure callback;
//! * `tradeflow_health` (`airflow dags test`) passes against a live simulator run writing
//!   to PostgreSQL, fails on `check_sink_errors` once PostgreSQL has dropped the sink's
//!   connections (and passes again at the next check, the errors being old news), fails
//!   on `check_watermark` against a run whose stdin partition holds the watermark ten
//!   minutes back (a stuck source, with the DAG's default limit of 300 s), and fails on
//!   `scrape_metrics` after its retries when nothing listens at the URL; each failure posts
//!   to `SLACK_WEBHOOK_URL`, a listener of this test, naming the task and the problem and
//!   holding neither the webhook's token nor the database password;
//! * `tradeflow_dbt` runs `dbt run` then `dbt test` on `dbt_project/` against a PostgreSQL
//!   database filled by a finished tradeflow run, every dbt test passing; after a row is
//!   corrupted, `dbt_test` fails (after its retry), the DAG fails and the failure is posted.
//!
//! Airflow comes from `TRADEFLOW_AIRFLOW` (`.ci/run` installs it from
//! `analytics/airflow-requirements.txt`), dbt from `TRADEFLOW_DBT`; without them the tests
//! skip, unless `TRADEFLOW_REQUIRE_AIRFLOW=1` (and `TRADEFLOW_REQUIRE_DBT=1`).

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tradeflow_tests::postgres::{PASSWORD, PgCluster, TestDb, USER};
use tradeflow_tests::process::Running;
use tradeflow_tests::prometheus::{Exposition, http_get};
use tradeflow_tests::{Finished, file_url, free_port, simulate, temp_dir, tradeflow_command};

const TIMEOUT: Duration = Duration::from_secs(300);
/// The webhook's path; its last part stands for the token a real Slack webhook carries.
const HOOK_TOKEN: &str = "not-a-real-token-5f3a9c";

/// An executable from `$var`, or `None` (after saying why) when it is missing and
/// `$require` is not 1.
fn tool(var: &str, require: &str, what: &str) -> Option<PathBuf> {
    let required = std::env::var(require).is_ok_and(|v| v == "1");
    let problem = match std::env::var_os(var) {
        None => format!("{var} is not set"),
        Some(path) if Path::new(&path).is_file() => return Some(PathBuf::from(path)),
        Some(path) => format!("{var}={} is not a file", path.to_string_lossy()),
    };
    assert!(!required, "{require}=1 but {problem} (.ci/run installs {what})");
    eprintln!("skipping: {problem}; set it to {what} ({require}=1 fails instead)");
    None
}

fn airflow_executable() -> Option<PathBuf> {
    tool("TRADEFLOW_AIRFLOW", "TRADEFLOW_REQUIRE_AIRFLOW", "airflow from analytics/airflow-requirements.txt")
}

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the workspace").to_owned()
}

/// Airflow with its home (configuration, SQLite database, logs) in a temporary directory
/// and `dags/` as its DAG folder.
struct Airflow {
    exe: PathBuf,
    home: PathBuf,
    env: Vec<(String, String)>,
}

impl Airflow {
    /// Airflow in `home`, its database migrated.
    fn new(exe: PathBuf, home: &Path) -> Airflow {
        std::fs::create_dir_all(home).expect("creating AIRFLOW_HOME");
        let airflow = Airflow { exe, home: home.to_owned(), env: Vec::new() };
        airflow.run(&["db", "migrate"]).assert_success("airflow db migrate");
        airflow
    }

    /// Adds `NAME=VALUE` to the environment of the next commands.
    fn set(&mut self, name: &str, value: impl Into<String>) {
        self.env.retain(|(n, _)| n != name);
        self.env.push((name.to_owned(), value.into()));
    }

    fn command(&self, exe: &Path) -> Command {
        let mut command = Command::new(exe);
        // Only what the test says: no ambient Airflow, tradeflow, dbt or Slack settings.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy().into_owned();
            if name.starts_with("AIRFLOW")
                || name.starts_with("TRADEFLOW_")
                || name.starts_with("POSTGRES_")
                || name.starts_with("DBT_")
                || ["SLACK_WEBHOOK_URL", "DATABASE_URL"].contains(&name.as_str())
            {
                command.env_remove(&name);
            }
        }
        command
            .current_dir(&self.home)
            .env("AIRFLOW_HOME", &self.home)
            .env("AIRFLOW__CORE__DAGS_FOLDER", repository().join("dags"))
            .env("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// `airflow ARGS`, to its end.
    fn run(&self, args: &[&str]) -> Finished {
        let mut command = self.command(&self.exe);
        command.args(args);
        Running::spawn(command).finish(TIMEOUT)
    }

    /// `airflow dags test DAG`: its output and the final state of each task, from the
    /// task instances' "Marking task as STATE" lines.
    fn dag_test(&self, dag: &str) -> DagTest {
        self.dag_test_with(&["dags", "test", dag])
    }

    /// `airflow dags test DAG DATE`: a run at logical date `DATE`.
    fn dag_test_at(&self, dag: &str, date: &str) -> DagTest {
        self.dag_test_with(&["dags", "test", dag, date])
    }

    fn dag_test_with(&self, args: &[&str]) -> DagTest {
        let out = self.run(args);
        let log = format!("{}\n{}", out.stdout, out.stderr);
        let mut states: Vec<(String, String)> = Vec::new();
        let mut retried = Vec::new();
        for line in log.lines() {
            let Some(rest) = line.split("Marking task as ").nth(1) else { continue };
            let state = rest.split('.').next().unwrap_or_default().to_owned();
            let Some(task) = rest.split("task_id=").nth(1).and_then(|t| t.split(',').next()) else { continue };
            if state == "UP_FOR_RETRY" {
                retried.push(task.to_owned());
            }
            states.retain(|(t, _)| t != task);
            states.push((task.to_owned(), state));
        }
        DagTest { out, log, states, retried }
    }

    /// The `python` beside `airflow`.
    fn python(&self) -> PathBuf {
        self.exe.with_file_name("python")
    }
}

struct DagTest {
    out: Finished,
    log: String,
    /// Task id and its last state (`SUCCESS`, `FAILED`, ...).
    states: Vec<(String, String)>,
    /// Tasks that were put up for retry.
    retried: Vec<String>,
}

impl DagTest {
    fn state(&self, task: &str) -> &str {
        self.states.iter().find(|(t, _)| t == task).map(|(_, s)| s.as_str()).unwrap_or("not run")
    }

    fn assert_states(&self, expected: &[(&str, &str)]) {
        for (task, state) in expected {
            assert_eq!(self.state(task), *state, "task {task}; states {:?}\n{}", self.states, self.tail());
        }
    }

    fn tail(&self) -> String {
        let lines: Vec<&str> = self.log.lines().collect();
        lines[lines.len().saturating_sub(150)..].join("\n")
    }
}

/// A local HTTP server standing in for Slack's incoming webhook: it answers 200 to every
/// request and keeps each request's path and body.
struct Webhook {
    port: u16,
    received: Arc<Mutex<Vec<(String, String)>>>,
    stop: Arc<AtomicBool>,
}

impl Webhook {
    fn start() -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the webhook");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let port = listener.local_addr().expect("address").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (sink, stopped) = (received.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        stream.set_nonblocking(false).expect("blocking stream");
                        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
                        if let Some(request) = read_request(&mut stream) {
                            sink.lock().expect("lock").push(request);
                        }
                        let _ =
                            stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Webhook { port, received, stop }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/services/T0000/B0000/{HOOK_TOKEN}", self.port)
    }

    /// The bodies received so far, forgetting them.
    fn take(&self) -> Vec<String> {
        let mut received = self.received.lock().expect("lock");
        let all: Vec<(String, String)> = received.drain(..).collect();
        for (path, _) in &all {
            assert_eq!(path, &format!("/services/T0000/B0000/{HOOK_TOKEN}"), "posted to the webhook's URL");
        }
        all.into_iter().map(|(_, body)| body).collect()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// (path, body) of one HTTP request.
fn read_request(stream: &mut std::net::TcpStream) -> Option<(String, String)> {
    let mut raw = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        if let Some(head_end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if raw.len() >= head_end + 4 + length {
                let path = head.split_whitespace().nth(1).unwrap_or_default().to_owned();
                let body = String::from_utf8_lossy(&raw[head_end + 4..head_end + 4 + length]).into_owned();
                return Some((path, body));
            }
        }
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return None,
            Ok(n) => raw.extend_from_slice(&buffer[..n]),
        }
    }
}

/// The one notification posted since the last look: its text, checked for secrets.
fn one_post(webhook: &Webhook) -> String {
    let bodies = webhook.take();
    assert_eq!(bodies.len(), 1, "posts: {bodies:?}");
    let json: Value = serde_json::from_str(&bodies[0]).expect("the post is JSON");
    let text = json["text"].as_str().expect("a Slack message has text").to_owned();
    for secret in [HOOK_TOKEN, PASSWORD] {
        assert!(!bodies[0].contains(secret), "the post holds a secret: {}", bodies[0]);
    }
    text
}

/// `/metrics` of the run at `addr`, parsed.
fn scrape(addr: &str) -> Exposition {
    let response = http_get(addr, "/metrics").unwrap_or_else(|e| panic!("GET /metrics: {e}"));
    assert_eq!(response.status, 200, "{}", response.body);
    Exposition::parse(&response.body)
}

/// Waits until `ready(/metrics)` holds.
fn wait_for_metrics(addr: &str, what: &str, ready: impl Fn(&Exposition) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready(&scrape(addr)) {
        assert!(Instant::now() < deadline, "{what}: not within a minute");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Starts `command` (a `tradeflow run` with `--metrics-addr`) and waits until it serves.
fn serving(command: Command, port: u16) -> Running {
    let mut run = Running::spawn(command);
    let line = format!("Prometheus metrics on http://127.0.0.1:{port}/metrics");
    assert!(run.wait_for_stderr(Duration::from_secs(60), |s| s.contains(&line)), "{}", run.stderr_so_far());
    run
}

#[test]
fn the_dags_import_with_their_schedules_retries_and_callbacks() {
    let Some(exe) = airflow_executable() else { return };
    let dir = temp_dir();
    let airflow = Airflow::new(exe, &dir.path().join("airflow"));
    let errors = airflow.run(&["dags", "list-import-errors", "-o", "json"]);
    errors.assert_success("airflow dags list-import-errors");
    assert!(errors.stdout.lines().any(|l| l.trim() == "[]"), "import errors:\n{}", errors.stdout);

    let script = r#"
import json, sys
from airflow.models import DagBag
bag = DagBag(sys.argv[1], include_examples=False)
print("DAGBAG " + json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "dags": {d.dag_id: {
        "schedule": str(d.schedule_interval),
        "catchup": d.catchup,
        "tasks": {t.task_id: {"retries": t.retries, "upstream": sorted(t.upstream_task_ids),
                              "callback": [c.__name__ for c in (t.on_failure_callback if isinstance(t.on_failure_callback, list) else [t.on_failure_callback]) if c]}
                  for t in d.tasks}}
        for d in bag.dags.values()},
}))
"#;
    let mut command = airflow.command(&airflow.python());
    command.args(["-c", script]).arg(repository().join("dags"));
    let out = Running::spawn(command).finish(TIMEOUT);
    out.assert_success("a DagBag of dags/");
    let line = out.stdout.lines().find_map(|l| l.strip_prefix("DAGBAG ")).expect("the DagBag's summary");
    let bag: Value = serde_json::from_str(line).expect("JSON");
    assert_eq!(bag["errors"], serde_json::json!({}), "import errors");
    let dags = bag["dags"].as_object().expect("dags");
    let ids: Vec<&String> = dags.keys().collect();
    assert_eq!(ids, ["tradeflow_dbt", "tradeflow_health", "tradeflow_quality", "tradeflow_report"]);
    assert_eq!(dags["tradeflow_health"]["schedule"], "*/10 * * * *");
    assert_eq!(dags["tradeflow_dbt"]["schedule"], "@hourly");
    assert_eq!(dags["tradeflow_quality"]["schedule"], "0 */6 * * *");
    assert_eq!(dags["tradeflow_report"]["schedule"], "0 9 * * *");
    for (id, dag) in dags {
        assert_eq!(dag["catchup"], false, "{id}");
        for (task, t) in dag["tasks"].as_object().expect("tasks") {
            assert_eq!(t["callback"], serde_json::json!(["notify_failure"]), "{id}.{task}");
        }
    }
    let health = &dags["tradeflow_health"]["tasks"];
    assert!(health["scrape_metrics"]["retries"].as_i64().is_some_and(|r| r >= 1), "{health}");
    for check in ["check_watermark", "check_sink_errors", "check_kafka_lag"] {
        assert_eq!(health[check]["upstream"], serde_json::json!(["scrape_metrics"]), "{check}");
    }
    let dbt = &dags["tradeflow_dbt"]["tasks"];
    assert_eq!(dbt["dbt_test"]["upstream"], serde_json::json!(["dbt_run"]));
    assert!(
        dbt["dbt_run"]["retries"].as_i64().is_some_and(|r| r >= 1)
            && dbt["dbt_test"]["retries"].as_i64().is_some_and(|r| r >= 1)
    );

    // No hard-coded host, port, path or secret in the DAG files.
    for file in [
        "dags/tradeflow_health.py",
        "dags/tradeflow_dbt.py",
        "dags/tradeflow_quality.py",
        "dags/tradeflow_report.py",
        "dags/tradeflow_airflow/__init__.py",
    ] {
        let text = std::fs::read_to_string(repository().join(file)).expect("reading a DAG file");
        for pattern in ["127.0.0.1", "localhost", "http://", "/work/", "/home/", "/root/", "password="] {
            assert!(!text.contains(pattern), "{file} contains {pattern:?}");
        }
    }
}

#[test]
fn the_health_dag_passes_on_a_healthy_run_and_fails_on_sink_errors_a_stale_watermark_and_no_metrics() {
    let Some(exe) = airflow_executable() else { return };
    let Some(cluster) = PgCluster::shared() else { return };
    let db = cluster.database("airflow_health");
    let dir = temp_dir();
    let webhook = Webhook::start();
    let mut airflow = Airflow::new(exe, &dir.path().join("airflow"));
    airflow.set("SLACK_WEBHOOK_URL", webhook.url());
    airflow.set("POSTGRES_PASSWORD", PASSWORD);
    airflow.set("TRADEFLOW_AIRFLOW_RETRY_DELAY_SECONDS", "1");

    // A live simulator run into the lake and PostgreSQL.
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut command = tradeflow_command();
    command.args(["run", "--source", "sim://?rate=500&symbols=AAPL,MSFT", "--window", "1s"]);
    command.args(["--allowed-lateness", "500ms", "--idle-timeout", "2s", "--progress-interval", "0"]);
    command.arg("--lake").arg(file_url(&dir.path().join("lake")));
    command.args(["--postgres", &db.url(), "--metrics-addr", &addr]);
    let live = serving(command, port);
    wait_for_metrics(&addr, "windows finalised and written to PostgreSQL", |m| {
        m.sum("tradeflow_windows_finalized_total", &[]) > 0.0
            && m.sum("tradeflow_sink_rows_total", &[("sink", "postgres")]) > 0.0
    });
    airflow.set("TRADEFLOW_METRICS_URL", format!("http://{addr}/metrics"));
    let all_pass = [
        ("scrape_metrics", "SUCCESS"),
        ("check_watermark", "SUCCESS"),
        ("check_sink_errors", "SUCCESS"),
        ("check_kafka_lag", "SUCCESS"),
    ];
    let healthy = airflow.dag_test("tradeflow_health");
    healthy.assert_states(&all_pass);
    assert!(healthy.out.success(), "{}", healthy.tail());
    assert!(
        healthy.log.contains("no Kafka source") && healthy.log.contains("sink postgres: no errors"),
        "{}",
        healthy.tail()
    );
    assert_eq!(webhook.take(), Vec::<String>::new(), "nothing posted while healthy");

    // PostgreSQL drops the sink's connections: failed writes, then a reconnect.
    db.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()");
    wait_for_metrics(&addr, "a PostgreSQL sink error", |m| {
        m.sum("tradeflow_sink_errors_total", &[("sink", "postgres")]) > 0.0
    });
    let written = scrape(&addr).sum("tradeflow_sink_rows_total", &[("sink", "postgres")]);
    wait_for_metrics(&addr, "the sink writing again", |m| {
        m.sum("tradeflow_sink_rows_total", &[("sink", "postgres")]) > written
    });
    let errors = airflow.dag_test("tradeflow_health");
    errors.assert_states(&[
        ("scrape_metrics", "SUCCESS"),
        ("check_watermark", "SUCCESS"),
        ("check_sink_errors", "FAILED"),
        ("check_kafka_lag", "SUCCESS"),
    ]);
    assert!(!errors.out.success(), "airflow dags test succeeded with sink errors");
    let post = one_post(&webhook);
    assert!(post.contains("tradeflow_health.check_sink_errors") && post.contains("sink postgres"), "{post}");
    assert!(post.contains("failed writes since the previous check"), "{post}");

    // The next check sees no new errors (the sink reconnected) and passes.
    let later = airflow.dag_test("tradeflow_health");
    later.assert_states(&all_pass);
    assert_eq!(webhook.take(), Vec::<String>::new());
    live.interrupt();
    live.finish(Duration::from_secs(60)).assert_success("the live run");

    // A stuck partition: a stdin source that sent one trade ten minutes old and stays open
    // (never idle within --idle-timeout 1h) holds the watermark back while the simulator
    // flows; with the DAG's default limit (300 s), the watermark is stale.
    let port = free_port();
    let stuck_addr = format!("127.0.0.1:{port}");
    let mut command = tradeflow_command();
    command.args(["run", "--source", "sim://?rate=200&symbols=AAPL", "--source", "-", "--idle-timeout", "1h"]);
    command.args([
        "--window",
        "1s",
        "--allowed-lateness",
        "500ms",
        "--progress-interval",
        "0",
        "--checkpoint-interval",
        "0",
    ]);
    command.arg("--lake").arg(file_url(&dir.path().join("stuck-lake"))).args(["--metrics-addr", &stuck_addr]);
    let ten_minutes_ago =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_millis() as i64
            - 600_000;
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting the stuck run");
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin, r#"{{"s":"MSFT","p":370,"t":{ten_minutes_ago},"v":5,"c":null}}"#).expect("writing the old trade");
    stdin.flush().expect("flush");
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_get(&stuck_addr, "/metrics").is_err() {
        assert!(Instant::now() < deadline, "the stuck run does not serve /metrics");
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_for_metrics(&stuck_addr, "trades flowing and a watermark", |m| {
        m.sum("tradeflow_trades_total", &[("source", "sim")]) > 0.0
            && m.sum("tradeflow_watermark_lag_seconds", &[]) > 0.0
    });
    airflow.set("TRADEFLOW_METRICS_URL", format!("http://{stuck_addr}/metrics"));
    let stale = airflow.dag_test("tradeflow_health");
    let _ = child.kill();
    let _ = child.wait();
    drop(stdin);
    stale.assert_states(&[
        ("scrape_metrics", "SUCCESS"),
        ("check_watermark", "FAILED"),
        ("check_sink_errors", "SUCCESS"),
        ("check_kafka_lag", "SUCCESS"),
    ]);
    assert!(!stale.out.success());
    let post = one_post(&webhook);
    assert!(post.contains("tradeflow_health.check_watermark") && post.contains("stale watermark"), "{post}");
    assert!(post.contains("limit 300 s"), "{post}");

    // Nothing listening: the scrape is retried, then fails, and the checks do not run.
    airflow.set("TRADEFLOW_METRICS_URL", format!("http://127.0.0.1:{}/metrics", free_port()));
    let down = airflow.dag_test("tradeflow_health");
    down.assert_states(&[("scrape_metrics", "FAILED")]);
    assert!(
        down.retried.iter().filter(|t| *t == "scrape_metrics").count() >= 1,
        "retries: {:?}\n{}",
        down.retried,
        down.tail()
    );
    assert!(!down.out.success());
    let post = one_post(&webhook);
    assert!(post.contains("tradeflow_health.scrape_metrics") && post.contains("Connection refused"), "{post}");
}

/// `tradeflow run` over today's simulated market into `db`, to its end.
fn fill(db: &TestDb, dir: &Path) {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_millis() as i64;
    let midnight = now / 86_400_000 * 86_400_000;
    let market = dir.join("market.ndjson");
    simulate(&market, &["--count", "20000", "--rate", "5", "--seed", "5", "--start", &midnight.to_string()]);
    let mut command = tradeflow_command();
    command.args([
        "run",
        "--source",
        &file_url(&market),
        "--no-lake",
        "--postgres",
        &db.url(),
        "--progress-interval",
        "0",
    ]);
    Running::spawn(command).finish(TIMEOUT).assert_success("tradeflow run into PostgreSQL");
}

#[test]
fn the_dbt_dag_runs_and_tests_the_models_and_fails_on_a_corrupted_row() {
    let Some(exe) = airflow_executable() else { return };
    let Some(dbt) = tool("TRADEFLOW_DBT", "TRADEFLOW_REQUIRE_DBT", "dbt from analytics/requirements.txt") else {
        return;
    };
    let Some(cluster) = PgCluster::shared() else { return };
    let db = cluster.database("airflow_dbt");
    let dir = temp_dir();
    fill(&db, dir.path());
    let webhook = Webhook::start();
    let mut airflow = Airflow::new(exe, &dir.path().join("airflow"));
    let dbt_dir = dir.path().join("dbt");
    for (name, value) in [
        ("TRADEFLOW_DBT", dbt.display().to_string()),
        ("TRADEFLOW_DBT_PROJECT_DIR", repository().join("dbt_project").display().to_string()),
        ("TRADEFLOW_DBT_TARGET_DIR", dbt_dir.display().to_string()),
        ("POSTGRES_HOST", "127.0.0.1".to_owned()),
        ("POSTGRES_PORT", cluster.port().to_string()),
        ("POSTGRES_DB", db.name().to_owned()),
        ("POSTGRES_USER", USER.to_owned()),
        ("POSTGRES_PASSWORD", PASSWORD.to_owned()),
        ("DBT_SEND_ANONYMOUS_USAGE_STATS", "false".to_owned()),
        ("SLACK_WEBHOOK_URL", webhook.url()),
        ("TRADEFLOW_AIRFLOW_RETRY_DELAY_SECONDS", "1".to_owned()),
    ] {
        airflow.set(name, value);
    }

    let good = airflow.dag_test("tradeflow_dbt");
    good.assert_states(&[("dbt_run", "SUCCESS"), ("dbt_test", "SUCCESS")]);
    assert!(good.out.success(), "{}", good.tail());
    let run_at = good.log.find("task_id=dbt_run").expect("dbt_run ran");
    let test_at = good.log.find("task_id=dbt_test").expect("dbt_test ran");
    assert!(run_at < test_at, "dbt run before dbt test");
    // dbt test's results (the last command): every test of the project ran and passed.
    let results = run_results(&dbt_dir);
    assert!(results.len() >= 20, "{} dbt tests", results.len());
    assert!(results.iter().all(|(_, status)| status == "pass"), "{results:?}");
    let bars: i64 = db.scalar("SELECT count(*) FROM analytics.bars_hourly").expect("bars").parse().expect("a count");
    assert!(bars > 0, "dbt run built the hourly bars");
    assert_eq!(webhook.take(), Vec::<String>::new(), "nothing posted");

    // A window's VWAP above its max price: dbt test fails, after its retry.
    db.query(
        "UPDATE window_metrics SET vwap = max_price::float8 * 2 WHERE (symbol, window_start) =
         (SELECT symbol, window_start FROM window_metrics WHERE is_final AND vwap IS NOT NULL ORDER BY symbol, window_start LIMIT 1)",
    );
    let bad = airflow.dag_test("tradeflow_dbt");
    bad.assert_states(&[("dbt_run", "SUCCESS"), ("dbt_test", "FAILED")]);
    assert!(bad.retried.contains(&"dbt_test".to_owned()), "dbt_test retried: {:?}", bad.retried);
    assert!(!bad.out.success());
    let failed: Vec<String> =
        run_results(&dbt_dir).into_iter().filter(|(_, status)| status != "pass").map(|(name, _)| name).collect();
    assert!(failed.iter().any(|n| n.contains("vwap_within_price_range")), "failed dbt tests: {failed:?}");
    let post = one_post(&webhook);
    assert!(post.contains("tradeflow_dbt.dbt_test"), "{post}");
}

/// (test name, status) of each test in dbt's last `run_results.json`.
fn run_results(dbt_dir: &Path) -> Vec<(String, String)> {
    let path = dbt_dir.join("target/run_results.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let json: Value = serde_json::from_str(&text).expect("run_results.json is JSON");
    json["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter(|r| r["unique_id"].as_str().is_some_and(|id| id.starts_with("test.")))
        .map(|r| {
            let id = r["unique_id"].as_str().unwrap_or_default();
            (id.split('.').nth(2).unwrap_or_default().to_owned(), r["status"].as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

#[test]
fn the_quality_and_report_dags_check_and_report_on_a_lake_and_fail_on_a_missing_trades_file() {
    let Some(exe) = airflow_executable() else { return };
    let dir = temp_dir();
    // About eight hours of a market from 2023-11-14T00:00Z into a lake.
    let market = dir.path().join("market.ndjson");
    simulate(&market, &["--count", "30000", "--rate", "1", "--seed", "3", "--start", "2023-11-14T00:00:00Z"]);
    let lake = dir.path().join("lake");
    let mut command = tradeflow_command();
    command.args(["run", "--source", &file_url(&market), "--lake", &file_url(&lake), "--progress-interval", "0"]);
    Running::spawn(command).finish(TIMEOUT).assert_success("tradeflow run into a lake");
    let webhook = Webhook::start();
    let reports = dir.path().join("reports");
    let mut airflow = Airflow::new(exe, &dir.path().join("airflow"));
    for (name, value) in [
        ("TRADEFLOW_BIN", tradeflow_tests::tradeflow_bin().display().to_string()),
        ("TRADEFLOW_LAKE", file_url(&lake)),
        ("TRADEFLOW_REPORT_DIR", reports.display().to_string()),
        ("TRADEFLOW_CHECK_ARGS", "--no-postgres".to_owned()),
        ("SLACK_WEBHOOK_URL", webhook.url()),
        ("TRADEFLOW_AIRFLOW_RETRY_DELAY_SECONDS", "1".to_owned()),
    ] {
        airflow.set(name, value);
    }

    // The run at 06:00 checks [00:00, 06:00); the run of the 15th at 09:00 reports the 14th.
    let quality = airflow.dag_test_at("tradeflow_quality", "2023-11-14T06:00:00+00:00");
    quality.assert_states(&[("check", "SUCCESS")]);
    assert!(quality.log.contains("2023-11-14T00:00:00+00:00"), "the interval's start: {}", quality.tail());
    let report = airflow.dag_test_at("tradeflow_report", "2023-11-15T09:00:00+00:00");
    report.assert_states(&[("report", "SUCCESS")]);
    for name in ["report-2023-11-14.html", "report-2023-11-14.md"] {
        let path = reports.join(name);
        assert!(path.is_file() && std::fs::metadata(&path).expect("a report").len() > 500, "{name}: {}", report.tail());
    }
    assert_eq!(webhook.take(), Vec::<String>::new(), "nothing posted");

    // A trades file lost from the lake: the check fails (after its retry) and says so.
    let lost = tradeflow_tests::lake::files_under(&lake.join("trades"))
        .into_iter()
        .find(|f| f.to_string_lossy().contains("T02-"))
        .expect("a trades file of 02:00");
    std::fs::remove_file(lake.join("trades").join(&lost)).expect("removing a trades file");
    let bad = airflow.dag_test_at("tradeflow_quality", "2023-11-14T06:00:00+00:00");
    bad.assert_states(&[("check", "FAILED")]);
    assert!(bad.retried.contains(&"check".to_owned()), "check retried: {:?}", bad.retried);
    let post = one_post(&webhook);
    assert!(post.contains("tradeflow_quality.check"), "{post}");
}

/// `check_kafka_lag` against a real consumer: a live run from a 4-partition topic on a
/// real Kafka-protocol broker (tansu) holding 400,000 trades, with its PostgreSQL stopped
/// as soon as it starts reading, so that it stops reading (a checkpointed source waits
/// for its output to be durable) with most of the topic still ahead: the DAG's Kafka check
/// fails, naming the lagging partitions, and posts it (its sink check fails as well: the
/// sink's writes fail meanwhile). Once PostgreSQL is back the run catches up, and the
/// Kafka check passes.
#[test]
fn the_health_dag_fails_on_a_lagging_kafka_consumer_and_passes_once_it_caught_up() {
    let Some(exe) = airflow_executable() else { return };
    let Some(broker) = tradeflow_tests::kafka::Broker::start() else { return };
    let Some(cluster) = PgCluster::start() else { return };
    let db = cluster.database("airflow_lag");
    let dir = temp_dir();
    let market = dir.path().join("market.ndjson");
    // A current market (starting now), so that the watermark check has nothing to say.
    let args =
        ["--count", "400000", "--rate", "2000", "--seed", "3", "--symbols", "AAPL,MSFT,NVDA,TSLA", "--start", "now"];
    simulate(&market, &args);
    broker.create_topic("market", 4);
    broker.produce_lines("market", &market);
    let webhook = Webhook::start();
    let mut airflow = Airflow::new(exe, &dir.path().join("airflow"));
    airflow.set("SLACK_WEBHOOK_URL", webhook.url());
    airflow.set("POSTGRES_PASSWORD", PASSWORD);
    airflow.set("TRADEFLOW_AIRFLOW_RETRY_DELAY_SECONDS", "1");
    airflow.set("TRADEFLOW_MAX_KAFKA_LAG", "1000");

    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut command = tradeflow_command();
    command.args(["run", "--source", &broker.url("market", "group=health"), "--window", "5s"]);
    command.args(["--allowed-lateness", "2s", "--idle-timeout", "10m", "--progress-interval", "0"]);
    command.args(["--checkpoint-interval", "50ms", "--lake"]).arg(file_url(&dir.path().join("lake")));
    command.args(["--postgres", &db.url(), "--metrics-addr", &addr]);
    let live = serving(command, port);
    cluster.stop();
    let lag = |m: &Exposition| m.matching("tradeflow_kafka_consumer_lag", &[]).map(|s| s.value).fold(0.0, f64::max);
    wait_for_metrics(&addr, "a consumer lag above 1000 records", |m| lag(m) > 1000.0);
    airflow.set("TRADEFLOW_METRICS_URL", format!("http://{addr}/metrics"));
    let lagging = airflow.dag_test("tradeflow_health");
    lagging.assert_states(&[
        ("scrape_metrics", "SUCCESS"),
        ("check_watermark", "SUCCESS"),
        ("check_sink_errors", "FAILED"),
        ("check_kafka_lag", "FAILED"),
    ]);
    assert!(!lagging.out.success(), "airflow dags test succeeded with a lagging consumer");
    let posts = webhook.take();
    let post = posts.iter().find(|p| p.contains("check_kafka_lag")).unwrap_or_else(|| panic!("posts: {posts:?}"));
    assert!(post.contains("Kafka consumer lagging by more than 1000 records"), "{post}");
    assert!(post.contains("market"), "the post does not name the topic: {post}");
    assert!(!post.contains(HOOK_TOKEN) && !post.contains(PASSWORD), "the post holds a secret: {post}");

    // PostgreSQL back: the run reads the rest of the topic, and the lag is gone.
    cluster.start_again();
    let deadline = Instant::now() + TIMEOUT;
    while lag(&scrape(&addr)) > 0.0 {
        assert!(Instant::now() < deadline, "the run did not catch up:\n{}", live.stderr_so_far());
        std::thread::sleep(Duration::from_millis(200));
    }
    // (The sink check may still fail: its writes failed after the previous check.)
    let caught_up = airflow.dag_test("tradeflow_health");
    caught_up.assert_states(&[
        ("scrape_metrics", "SUCCESS"),
        ("check_watermark", "SUCCESS"),
        ("check_kafka_lag", "SUCCESS"),
    ]);
    assert!(caught_up.log.contains("Kafka lag at most 0 records"), "{}", caught_up.tail());
    let posts = webhook.take();
    assert!(!posts.iter().any(|p| p.contains("check_kafka_lag")), "the lag was posted once caught up: {posts:?}");
    live.interrupt();
    live.finish(TIMEOUT).assert_success("the live run");
}
