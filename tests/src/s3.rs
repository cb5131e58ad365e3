//! A real S3-compatible server for the lake tests, and the lake read back through it.
//!
//! The server is `s3s-fs` (crates.io; CI runs `cargo install s3s-fs@0.14.1 --features
//! binary --locked`), which checks request signatures and keeps each bucket as a
//! subdirectory of its data directory. It is found through `TRADEFLOW_S3S_FS`, else
//! `s3s-fs` on `PATH`, else `~/.cargo/bin/s3s-fs`. When it is missing, S3 tests fail if
//! `TRADEFLOW_REQUIRE_S3=1` and otherwise say why and pass without checking.
//!
//! Each [`S3Server`] runs on its own free port of 127.0.0.1 over its own temporary
//! directory and is killed when dropped, so a failing test leaves no server behind. It
//! can be stopped (SIGKILL: the server goes away mid-request) and restarted on the same
//! port and directory.
//!
//! Reading back goes through the S3 API only: `tests/python/s3_lake.py` lists, downloads
//! and reads the datasets with pyarrow's `S3FileSystem` and `pyarrow.dataset`
//! (`partitioning="hive"`), with the Python of [`crate::python::python`].

use crate::lake::LakeTrade;
use crate::process::{
    Running, free_port, installed_binary, start_again_within_20s, start_server, stop_server, tradeflow_command,
};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

/// The access key id the server accepts.
pub const ACCESS_KEY: &str = "tradeflow-e2e-key";
/// The secret access key the server accepts: distinctive, so a test can look for it.
pub const SECRET_KEY: &str = "tf-e2e-secret-Vq7rK2mZx9Lp";
/// The region requests are signed for.
pub const REGION: &str = "us-east-1";

/// The `s3s-fs` binary, or `None` (after printing why) when it is missing and not
/// required.
pub fn s3s_fs() -> Option<PathBuf> {
    let install = "cargo install s3s-fs@0.14.1 --features binary --locked";
    installed_binary("s3s-fs", "TRADEFLOW_S3S_FS", "TRADEFLOW_REQUIRE_S3", "S3", install)
}

/// An `s3s-fs` server on 127.0.0.1, killed when dropped.
pub struct S3Server {
    binary: PathBuf,
    /// Holds `data/` (the buckets) and `server.log`.
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl S3Server {
    /// Starts a server over a fresh directory; `None` when `s3s-fs` is missing and not
    /// required (see [`s3s_fs`]).
    pub fn start() -> Option<S3Server> {
        let binary = s3s_fs()?;
        let dir = tempfile::Builder::new().prefix("tradeflow-s3-").tempdir().expect("creating a temporary directory");
        std::fs::create_dir(dir.path().join("data")).expect("creating the server's data directory");
        let mut server = S3Server { binary, dir, port: 0, child: None };
        // A port that was free a moment ago may be taken by the time the server binds it.
        for _ in 0..5 {
            server.port = free_port();
            if server.spawn(Duration::from_secs(10)) {
                return Some(server);
            }
        }
        panic!("s3s-fs did not start; its log:\n{}", server.log());
    }

    /// Creates a bucket (a subdirectory of the data directory).
    pub fn create_bucket(&self, bucket: &str) {
        std::fs::create_dir_all(self.data_dir().join(bucket)).expect("creating the bucket directory");
    }

    /// True when the bucket exists.
    pub fn has_bucket(&self, bucket: &str) -> bool {
        self.data_dir().join(bucket).is_dir()
    }

    /// The server's data directory (one subdirectory per bucket).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.host())
    }

    /// Kills the server at once (SIGKILL), as a crash or a lost network would.
    pub fn stop(&mut self) {
        stop_server(&mut self.child);
    }

    /// Starts the server again on the same port and directory.
    pub fn restart(&mut self) {
        self.stop();
        if !start_again_within_20s(|| self.spawn(Duration::from_secs(5))) {
            panic!("s3s-fs did not restart on port {}; its log:\n{}", self.port, self.log());
        }
    }

    /// Spawns the server on `self.port`; true once it accepts connections, false if it
    /// exited first (the port is taken).
    fn spawn(&mut self, timeout: Duration) -> bool {
        let mut command = Command::new(&self.binary);
        command
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(self.data_dir());
        self.child = start_server(command, &self.dir.path().join("server.log"), self.port, timeout);
        self.child.is_some()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Points `command` at this server: every ambient `AWS_*` variable removed, then the
    /// endpoint, region and credentials set as a user would.
    pub fn configure(&self, command: &mut Command) {
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("AWS_") {
                command.env_remove(name);
            }
        }
        command.envs(self.environment());
    }

    /// The `AWS_*` variables a client of this server needs: endpoint, region, credentials.
    pub fn environment(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".to_owned()),
        ]
        .map(|(k, v)| (k.to_owned(), v))
        .into()
    }

    /// `tradeflow ARGS` configured for this server (see [`S3Server::configure`]).
    pub fn tradeflow<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let mut command = tradeflow_command();
        self.configure(&mut command);
        command.args(args);
        command
    }

    /// Runs `tests/python/s3_lake.py ARGS` against this server; returns its stdout.
    fn script(&self, python: &Path, args: &[&str]) -> String {
        let script = crate::python::script("s3_lake.py");
        let mut command = Command::new(python);
        command
            .arg(&script)
            .args(args)
            .env("S3_TEST_ENDPOINT", self.host())
            .env("S3_TEST_ACCESS_KEY", ACCESS_KEY)
            .env("S3_TEST_SECRET_KEY", SECRET_KEY)
            .env("S3_TEST_REGION", REGION);
        let out = Running::spawn(command).finish(Duration::from_secs(120));
        assert!(out.success(), "s3_lake.py {args:?} failed with {}:\n{}", out.status, out.stderr);
        out.stdout
    }

    /// Every object under `bucket/prefix` (`""`: the whole bucket) as (key relative to
    /// the bucket, size), listed through the S3 API.
    pub fn list(&self, python: &Path, bucket: &str, prefix: &str) -> Vec<(String, u64)> {
        let out = self.script(python, &["list", bucket, prefix]);
        let json: serde_json::Value = serde_json::from_str(&out).expect("s3_lake.py list prints JSON");
        let rows = json.as_array().expect("a list of objects");
        rows.iter().map(|r| (text(&r[0]), r[1].as_u64().unwrap_or_else(|| panic!("{r} has no size")))).collect()
    }

    /// Downloads every object under `bucket/prefix` into `dest` (keys relative to the
    /// prefix), through the S3 API.
    pub fn download(&self, python: &Path, bucket: &str, prefix: &str, dest: &Path) {
        self.script(python, &["download", bucket, prefix, dest.to_str().expect("a UTF-8 path")]);
    }

    /// The lake at `bucket/prefix` read by pyarrow from the server with hive partitioning.
    pub fn read(&self, python: &Path, bucket: &str, prefix: &str) -> S3View {
        let out = self.script(python, &["read", bucket, prefix]);
        let json: serde_json::Value = serde_json::from_str(&out).expect("s3_lake.py read prints JSON");
        let rows = |name: &str| json[name].as_array().unwrap_or_else(|| panic!("no {name} in the output")).clone();
        let mut view = S3View::default();
        for r in rows("trades") {
            let trade = LakeTrade {
                symbol: text(&r[0]),
                ts: int(&r[2]),
                price: i64::try_from(crate::python::units(&text(&r[3]))).expect("a price fits i64"),
                volume: i64::try_from(crate::python::units(&text(&r[4]))).expect("a volume fits i64"),
                conditions: r[5].as_array().map(|list| list.iter().map(text).collect()),
            };
            view.trades.push((text(&r[1]), trade));
        }
        for r in rows("window_metrics") {
            let count = u64::try_from(int(&r[3])).expect("a count");
            view.window_metrics.push((text(&r[0]), text(&r[1]), int(&r[2]), count));
        }
        for r in rows("anomalies") {
            view.anomalies.push((text(&r[0]), text(&r[1]), int(&r[2]), text(&r[3])));
        }
        view
    }

    /// Rows of `trades`, `window_metrics` and `anomalies` at `bucket/prefix`, as pyarrow
    /// counts them reading from the server.
    pub fn count_rows(&self, python: &Path, bucket: &str, prefix: &str) -> [u64; 3] {
        let out = self.script(python, &["count", bucket, prefix]);
        let json: serde_json::Value = serde_json::from_str(&out).expect("s3_lake.py count prints JSON");
        ["trades", "window_metrics", "anomalies"].map(|name| json[name].as_u64().expect("a row count"))
    }

    /// The ETag of `bucket/key` (`"<md5>-<parts>"` for an object uploaded in parts).
    pub fn etag(&self, python: &Path, bucket: &str, key: &str) -> String {
        let out = self.script(python, &["etag", bucket, key]);
        serde_json::from_str(&out).expect("s3_lake.py etag prints a JSON string")
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A lake as pyarrow reads it from the server.
#[derive(Debug, Default)]
pub struct S3View {
    /// Trades with their `date` partition value (symbols from the decoded `symbol=`).
    pub trades: Vec<(String, LakeTrade)>,
    /// (symbol, date partition, window_start ms, trade_count) of each window_metrics row.
    pub window_metrics: Vec<(String, String, i64, u64)>,
    /// (symbol, date partition, window_start ms, kind) of each anomalies row.
    pub anomalies: Vec<(String, String, i64, String)>,
}

/// The object count of the summary's `lake files  N  (x MiB)` line.
pub fn lake_files(stderr: &str) -> Option<u64> {
    let start = stderr.rfind("tradeflow run finished")?;
    let line = stderr[start..].lines().map(str::trim_start).find(|l| l.starts_with("lake files"))?;
    let number = line["lake files".len()..].split_whitespace().next()?;
    number.replace(',', "").parse().ok()
}

fn text(v: &serde_json::Value) -> String {
    v.as_str().unwrap_or_else(|| panic!("{v} is not a string")).to_owned()
}

fn int(v: &serde_json::Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("{v} is not an integer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_lake_files_line() {
        let text = "tradeflow run finished in 6.63s on 1 worker(s)\n  trades accepted  117,734  (17,767/s)\n  lake files                 1,154  (3.7 MiB)\n";
        assert_eq!(lake_files(text), Some(1_154));
        assert_eq!(lake_files("lake files 3"), None);
    }
}
