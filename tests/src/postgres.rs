//! A real, throwaway PostgreSQL server for the tests, and its tables read back.
//!
//! [`PgCluster`] runs Debian's PostgreSQL (`/usr/lib/postgresql/<version>/bin`, or the
//! directory in `TRADEFLOW_PG_BIN`, or `initdb` on the `PATH`) in a fresh temporary
//! directory: `initdb` (password authentication over TCP from 127.0.0.1), `pg_ctl start`
//! on a free port listening on 127.0.0.1 only, with its socket in the same directory.
//! PostgreSQL refuses to run as root, so as root the server binaries run as the
//! `postgres` user (`runuser`). The server is stopped and its directory removed when the
//! last handle is dropped, also when a test fails. Tests in one binary share a cluster
//! ([`PgCluster::shared`]) with a database each ([`PgCluster::database`]); a test that
//! restarts the server starts its own ([`PgCluster::start`]).
//!
//! Without PostgreSQL binaries the tests skip with a printed reason, unless
//! `TRADEFLOW_REQUIRE_POSTGRES=1` (as `.ci/run` sets), when they fail.
//!
//! Tables are read with `psql` (shipped with the server) in unaligned mode; numbers come
//! back as text, which for `numeric` is exact and for `double precision` is the shortest
//! text that reads back to the same double.

use crate::lake::read_batches;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMillisecondType};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tradeflow_model::{Anomaly, AnomalyKind, F64, Price, Symbol, WindowMetrics};

/// The password of the cluster's superuser `postgres`.
const ADMIN_PASSWORD: &str = "admin-Pw-7f3e";
/// The role the tests run tradeflow as.
pub const USER: &str = "tradeflow";
/// Its password (tests check it never appears in output).
pub const PASSWORD: &str = "Sup3r-s3cret-pw";
/// The separator of unaligned `psql` output (ASCII unit separator).
const SEPARATOR: &str = "\u{1f}";
/// How `psql` prints NULL.
const NULL: &str = "<NULL>";

/// Where the PostgreSQL binaries are, or why there are none.
fn binaries() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("TRADEFLOW_PG_BIN") {
        let dir = PathBuf::from(dir);
        return if dir.join("initdb").is_file() {
            Ok(dir)
        } else {
            Err(format!("TRADEFLOW_PG_BIN={} has no initdb", dir.display()))
        };
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin): &(u32, PathBuf)| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .find(|dir| dir.join("initdb").is_file())
        .ok_or_else(|| "no PostgreSQL server binaries (initdb) in /usr/lib/postgresql/*/bin or on the PATH; install Debian's postgresql-15".into())
}

/// True when this process runs as root (PostgreSQL then runs as `postgres`).
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false)
}

/// The uid and gid of `user`, from /etc/passwd.
fn user_ids(user: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.split(':').next() == Some(user))?;
    let fields: Vec<&str> = line.split(':').collect();
    Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?))
}

/// Fails the test (when required) or prints why it is skipped.
fn unavailable(reason: &str) -> Option<Arc<PgCluster>> {
    if std::env::var("TRADEFLOW_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
        panic!("PostgreSQL is required (TRADEFLOW_REQUIRE_POSTGRES=1) but {reason}");
    }
    eprintln!("skipping: {reason} (set TRADEFLOW_REQUIRE_POSTGRES=1 to make this a failure)");
    None
}

/// A throwaway PostgreSQL server (see the module documentation).
pub struct PgCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    fsync: bool,
    run_as_postgres: bool,
    databases: AtomicUsize,
}

impl PgCluster {
    /// The cluster shared by this test binary's tests (started if none is running);
    /// `None` (after printing why) when PostgreSQL is not installed and not required.
    pub fn shared() -> Option<Arc<PgCluster>> {
        static SHARED: Mutex<Weak<PgCluster>> = Mutex::new(Weak::new());
        let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(cluster) = shared.upgrade() {
            return Some(cluster);
        }
        let cluster = PgCluster::start()?;
        *shared = Arc::downgrade(&cluster);
        Some(cluster)
    }

    /// A cluster of its own, for a test that restarts it. It runs with `fsync=off`
    /// (the tests need no durability across machine crashes).
    pub fn start() -> Option<Arc<PgCluster>> {
        PgCluster::start_with(false)
    }

    /// A cluster that flushes its WAL on every commit, as a production server does (for
    /// benchmarks).
    pub fn start_durable() -> Option<Arc<PgCluster>> {
        PgCluster::start_with(true)
    }

    fn start_with(fsync: bool) -> Option<Arc<PgCluster>> {
        let bin = match binaries() {
            Ok(bin) => bin,
            Err(reason) => return unavailable(&reason),
        };
        let run_as_postgres = is_root();
        let ids = if run_as_postgres {
            match user_ids("postgres") {
                Some(ids) => Some(ids),
                None => return unavailable("running as root, and there is no `postgres` user to run the server as"),
            }
        } else {
            None
        };
        let dir = tempfile::Builder::new().prefix("tradeflow-pg-").tempdir_in("/tmp").expect("a temporary directory");
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, ADMIN_PASSWORD).expect("writing the password file");
        if let Some((uid, gid)) = ids {
            for path in [dir.path(), pwfile.as_path()] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown to postgres");
            }
        }
        let mut cluster = PgCluster { bin, dir, port: 0, fsync, run_as_postgres, databases: AtomicUsize::new(0) };
        let data = cluster.data_dir();
        cluster.server_command(
            "initdb",
            &[
                "-D",
                path_str(&data),
                "-U",
                "postgres",
                "--pwfile",
                path_str(&pwfile),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-locale",
                "--encoding=UTF8",
                "--no-sync",
            ],
        );
        // A port can be taken between choosing and binding it: try a few.
        for attempt in 1..=5 {
            cluster.port = crate::free_port();
            match cluster.try_pg_ctl("start") {
                Ok(_) => break,
                Err(e) if attempt < 5 => {
                    eprintln!("starting PostgreSQL on port {} failed, retrying: {e}", cluster.port)
                }
                Err(e) => panic!("PostgreSQL did not start: {e}\nlog:\n{}", cluster.log()),
            }
        }
        cluster.admin(&format!("CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'"));
        Some(Arc::new(cluster))
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// The TCP port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs a server binary (as `postgres` when root), panicking on failure.
    fn server_command(&self, program: &str, args: &[&str]) -> Output {
        self.try_server_command(program, args).unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_server_command(&self, program: &str, args: &[&str]) -> Result<Output, String> {
        let binary = self.bin.join(program);
        let mut command = if self.run_as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&binary);
            c
        } else {
            Command::new(&binary)
        };
        command.args(args).current_dir(self.dir.path()).env("LC_ALL", "C");
        let output = command.output().map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
        if output.status.success() {
            Ok(output)
        } else {
            Err(format!(
                "{program} {args:?} failed with {}:\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    fn try_pg_ctl(&self, action: &str) -> Result<Output, String> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync={} -c timezone=UTC -c max_connections=60",
            self.port,
            self.dir.path().display(),
            if self.fsync { "on" } else { "off" }
        );
        let data = self.data_dir();
        let log = self.dir.path().join("log");
        let mut args = vec!["-D", path_str(&data), "-l", path_str(&log), "-w", "-t", "60", "-o", &options];
        if action == "restart" || action == "stop" {
            args.extend(["-m", "fast"]);
        }
        args.push(action);
        self.try_server_command("pg_ctl", &args)
    }

    /// Restarts the server (`pg_ctl restart -m fast`): every connection is terminated.
    pub fn restart(&self) {
        self.try_pg_ctl("restart").unwrap_or_else(|e| panic!("restarting PostgreSQL: {e}\nlog:\n{}", self.log()));
    }

    /// Stops the server (`pg_ctl stop -m fast`): every connection is terminated, and new
    /// ones are refused until [`PgCluster::start_again`].
    pub fn stop(&self) {
        self.try_pg_ctl("stop").unwrap_or_else(|e| panic!("stopping PostgreSQL: {e}\nlog:\n{}", self.log()));
    }

    /// Starts the server stopped by [`PgCluster::stop`] again, on the same port.
    pub fn start_again(&self) {
        self.try_pg_ctl("start").unwrap_or_else(|e| panic!("starting PostgreSQL again: {e}\nlog:\n{}", self.log()));
    }

    /// Runs SQL as the superuser in the `postgres` database.
    fn admin(&self, sql: &str) -> String {
        let url = format!("postgres://postgres:{ADMIN_PASSWORD}@127.0.0.1:{}/postgres", self.port);
        psql(&url, sql, false).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A fresh database owned by [`USER`], named after `label`.
    pub fn database(self: &Arc<Self>, label: &str) -> TestDb {
        let n = self.databases.fetch_add(1, Ordering::Relaxed);
        let clean: String =
            label.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
        let name = format!("{clean}_{n}");
        self.admin(&format!("CREATE DATABASE {name} OWNER {USER}"));
        TestDb { cluster: self.clone(), name }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.port != 0 {
            let data = self.data_dir();
            let _ = self.try_server_command("pg_ctl", &["-D", path_str(&data), "-m", "immediate", "-w", "stop"]);
        }
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 paths")
}

/// Runs `sql` with `psql` against `url`: unaligned rows, fields separated by
/// [`SEPARATOR`], NULL as [`NULL`]; with `header`, the first line holds the column names.
fn psql(url: &str, sql: &str, header: bool) -> Result<String, String> {
    let bin = binaries()?;
    let mut command = Command::new(bin.join("psql"));
    command
        .args(["-X", "-q", "-A", "-v", "ON_ERROR_STOP=1", "-F", SEPARATOR, "-P", &format!("null={NULL}")])
        .args(["-P", "footer=off"])
        .env("PGCONNECT_TIMEOUT", "10")
        .env("LC_ALL", "C");
    if !header {
        command.arg("-t");
    }
    command.arg("-d").arg(url).arg("-c").arg(sql);
    let output = command.output().map_err(|e| format!("cannot run psql: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8(output.stdout).expect("UTF-8 from psql"))
    } else {
        Err(format!("psql -c {sql:?} failed with {}: {}", output.status, String::from_utf8_lossy(&output.stderr)))
    }
}

/// One database of a cluster.
pub struct TestDb {
    cluster: Arc<PgCluster>,
    name: String,
}

/// Rows of a query: each a list of fields, `None` for NULL.
pub type Rows = Vec<Vec<Option<String>>>;

fn split_rows(text: &str) -> Rows {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split(SEPARATOR).map(|f| (f != NULL).then(|| f.to_owned())).collect())
        .collect()
}

impl TestDb {
    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cluster it lives in.
    pub fn cluster(&self) -> &Arc<PgCluster> {
        &self.cluster
    }

    /// `postgres://tradeflow:PASSWORD@127.0.0.1:PORT/name`.
    pub fn url(&self) -> String {
        self.url_with_password(PASSWORD)
    }

    /// The URL with another password.
    pub fn url_with_password(&self, password: &str) -> String {
        format!("postgres://{USER}:{password}@127.0.0.1:{}/{}", self.cluster.port, self.name)
    }

    /// How tradeflow names this server in messages: `user@host:port/db`.
    pub fn server_name(&self) -> String {
        format!("{USER}@127.0.0.1:{}/{}", self.cluster.port, self.name)
    }

    /// Runs `sql` (as [`USER`]); panics on failure.
    pub fn query(&self, sql: &str) -> Rows {
        self.try_query(sql).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs `sql`, or the error.
    pub fn try_query(&self, sql: &str) -> Result<Rows, String> {
        psql(&self.url(), sql, false).map(|text| split_rows(&text))
    }

    /// Runs `sql` exactly as given; the column names and the rows.
    pub fn query_with_header(&self, sql: &str) -> (Vec<String>, Rows) {
        let text = psql(&self.url(), sql, true).unwrap_or_else(|e| panic!("{e}"));
        let mut rows = split_rows(&text);
        assert!(!rows.is_empty(), "no header from {sql:?}");
        let header = rows.remove(0).into_iter().map(|c| c.unwrap_or_default()).collect();
        (header, rows)
    }

    /// The single value of a one-row, one-column query.
    pub fn scalar(&self, sql: &str) -> Option<String> {
        let rows = self.query(sql);
        assert_eq!(rows.len(), 1, "{sql:?} returned {rows:?}");
        rows[0][0].clone()
    }

    /// `window_metrics` as model rows, sorted.
    pub fn window_metrics(&self) -> Vec<WindowMetrics> {
        self.window_metrics_where("true")
    }

    /// `window_metrics` rows matching `condition`, sorted.
    pub fn window_metrics_where(&self, condition: &str) -> Vec<WindowMetrics> {
        let sql = format!(
            "SELECT symbol, {}, {}, trade_count, volume, vwap, min_price, max_price, avg_price, open, close, volatility, is_final
             FROM window_metrics WHERE {condition}",
            millis("window_start"),
            millis("window_end")
        );
        let mut rows: Vec<WindowMetrics> = self
            .query(&sql)
            .into_iter()
            .map(|r| WindowMetrics {
                symbol: Symbol::parse(&text(&r[0])).expect("a valid symbol"),
                window_start: int(&r[1]),
                window_end: int(&r[2]),
                trade_count: int(&r[3]) as u64,
                volume: units(&text(&r[4])),
                vwap: r[5].as_deref().map(float),
                min_price: price(&r[6]),
                max_price: price(&r[7]),
                avg_price: float(&text(&r[8])),
                open: price(&r[9]),
                close: price(&r[10]),
                volatility: r[11].as_deref().map(float),
                is_final: boolean(&r[12]),
            })
            .collect();
        rows.sort();
        rows
    }

    /// `anomalies` as model rows, sorted.
    pub fn anomalies(&self) -> Vec<Anomaly> {
        self.anomalies_where("true")
    }

    /// `anomalies` rows matching `condition`, sorted.
    pub fn anomalies_where(&self, condition: &str) -> Vec<Anomaly> {
        let sql = format!(
            "SELECT symbol, {}, {}, kind, severity, {}, observed, baseline, is_final FROM anomalies WHERE {condition}",
            millis("window_start"),
            millis("window_end"),
            millis("detected_at")
        );
        let mut rows: Vec<Anomaly> = self
            .query(&sql)
            .into_iter()
            .map(|r| Anomaly {
                symbol: Symbol::parse(&text(&r[0])).expect("a valid symbol"),
                window_start: int(&r[1]),
                window_end: int(&r[2]),
                kind: kind(&text(&r[3])),
                severity: float(&text(&r[4])),
                detected_at: int(&r[5]),
                observed: float(&text(&r[6])),
                baseline: float(&text(&r[7])),
                is_final: boolean(&r[8]),
            })
            .collect();
        rows.sort();
        rows
    }

    /// Every row of `table`, all columns as text, sorted (for comparing whole tables,
    /// `updated_at` included).
    pub fn snapshot(&self, table: &str) -> Rows {
        let mut rows = self.query(&format!("SELECT * FROM {table}"));
        rows.sort();
        rows
    }

    /// Polls `condition` every 20 ms until it holds or `timeout` passes.
    pub fn wait_until(&self, timeout: Duration, mut condition: impl FnMut(&TestDb) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if condition(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `floor(extract(epoch from column) * 1000)` as a bigint: ms since the epoch, exact.
fn millis(column: &str) -> String {
    format!("floor(extract(epoch FROM {column}) * 1000)::bigint")
}

fn text(field: &Option<String>) -> String {
    field.clone().unwrap_or_else(|| panic!("an unexpected NULL"))
}

fn int(field: &Option<String>) -> i64 {
    text(field).parse().unwrap_or_else(|e| panic!("{field:?} is not an integer: {e}"))
}

fn float(field: &str) -> F64 {
    F64(field.parse().unwrap_or_else(|e| panic!("{field:?} is not a double: {e}")))
}

fn boolean(field: &Option<String>) -> bool {
    match text(field).as_str() {
        "t" => true,
        "f" => false,
        other => panic!("{other:?} is not a boolean"),
    }
}

fn kind(field: &str) -> AnomalyKind {
    match field {
        "volume_spike" => AnomalyKind::VolumeSpike,
        "price_jump" => AnomalyKind::PriceJump,
        other => panic!("unknown anomaly kind {other:?}"),
    }
}

fn price(field: &Option<String>) -> Price {
    Price(i64::try_from(units(&text(field))).expect("a price fits i64"))
}

/// An exact decimal (`numeric` text) in units of 10^-8; panics if it has more places.
pub fn units(decimal: &str) -> i128 {
    let (negative, digits) = match decimal.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, decimal),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let fraction = fraction.trim_end_matches('0');
    assert!(fraction.len() <= 8, "{decimal} has more than 8 decimal places");
    let value: i128 = format!("{whole}{fraction:0<8}").parse().unwrap_or_else(|e| panic!("{decimal:?}: {e}"));
    if negative { -value } else { value }
}

/// One update of the lake's `changelog/anomalies` dataset.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct AnomalyUpdate {
    /// The symbol.
    pub symbol: String,
    /// The window start, ms.
    pub window_start: i64,
    /// `volume_spike` or `price_jump`.
    pub kind: String,
    /// Whether the row is final.
    pub is_final: bool,
    /// The epoch, ms.
    pub time: i64,
    /// +1 or -1.
    pub diff: i64,
}

/// Every update of `changelog/anomalies/*.parquet` under the lake `root`.
pub fn read_anomaly_changelog(root: &Path) -> Vec<AnomalyUpdate> {
    let mut out = Vec::new();
    for rel in crate::lake::files_under(&root.join("changelog/anomalies")) {
        if rel.extension().is_none_or(|e| e != "parquet") {
            continue;
        }
        for batch in read_batches(&root.join("changelog/anomalies").join(rel)) {
            let column = |name: &str| batch.column_by_name(name).unwrap_or_else(|| panic!("no column {name}")).clone();
            let symbol = column("symbol");
            let kind = column("kind");
            let start = column("window_start");
            let time = column("time");
            let diff = column("diff");
            let is_final = column("is_final");
            let (symbol, kind) = (symbol.as_string::<i32>(), kind.as_string::<i32>());
            let start = start.as_primitive::<TimestampMillisecondType>();
            let time = time.as_primitive::<TimestampMillisecondType>();
            let (diff, is_final) = (diff.as_primitive::<Int64Type>(), is_final.as_boolean());
            for i in 0..batch.num_rows() {
                out.push(AnomalyUpdate {
                    symbol: symbol.value(i).to_owned(),
                    window_start: start.value(i),
                    kind: kind.value(i).to_owned(),
                    is_final: is_final.value(i),
                    time: time.value(i),
                    diff: diff.value(i),
                });
            }
        }
    }
    out.sort_by_key(|u| (u.time, u.diff));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_exact_decimals() {
        assert_eq!(units("0.00000001"), 1);
        assert_eq!(units("187.12000000"), 18_712_000_000);
        assert_eq!(units("-1.5"), -150_000_000);
        assert_eq!(units("42"), 4_200_000_000);
    }

    #[test]
    fn splits_unaligned_rows() {
        let rows = split_rows("a\u{1f}<NULL>\u{1f}1\nb\u{1f}x\u{1f}2\n");
        assert_eq!(
            rows,
            vec![
                vec![Some("a".into()), None, Some("1".into())],
                vec![Some("b".into()), Some("x".into()), Some("2".into())]
            ]
        );
    }
}
