//! A real Kafka-protocol broker for the Kafka tests, and an outside client to fill and
//! read topics.
//!
//! The broker is `tansu` (crates.io; CI runs `cargo install tansu --features dynostore
//! --locked` once and reuses the binary), with in-memory storage, or durable storage in an
//! S3 bucket for tests that restart it. It is found through
//! `TRADEFLOW_TANSU`, else `tansu` on `PATH`, else `~/.cargo/bin/tansu`. When it is
//! missing, Kafka tests fail if `TRADEFLOW_REQUIRE_KAFKA=1` and otherwise say why and
//! pass without checking. Each [`Broker`] runs on its own free port of 127.0.0.1 and is
//! killed when dropped. Topics are not created automatically.
//!
//! The outside client is the `confluent-kafka` Python package (librdkafka's binding,
//! which the project did not write) in the Python of `TRADEFLOW_PYTHON`, driven through
//! `tests/python/kafka_client.py`.

use crate::expect::Knobs;
use crate::process::{Running, free_port, installed_binary, start_again_within_20s, start_server, stop_server};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

fn required() -> bool {
    std::env::var("TRADEFLOW_REQUIRE_KAFKA").is_ok_and(|v| v == "1")
}

/// The `tansu` binary, or `None` (after printing why) when it is missing and not required.
pub fn tansu() -> Option<PathBuf> {
    installed_binary(
        "tansu",
        "TRADEFLOW_TANSU",
        "TRADEFLOW_REQUIRE_KAFKA",
        "Kafka",
        "cargo install tansu --features dynostore --locked",
    )
}

/// A Python with `confluent_kafka`, or `None` (after printing why) when there is none and
/// Kafka tests are not required.
pub fn python() -> Option<PathBuf> {
    let problem = match std::env::var_os("TRADEFLOW_PYTHON") {
        None => "TRADEFLOW_PYTHON is not set".to_owned(),
        Some(python) => match Command::new(&python).args(["-c", "import confluent_kafka"]).output() {
            Ok(out) if out.status.success() => return Some(PathBuf::from(python)),
            Ok(out) => format!(
                "TRADEFLOW_PYTHON={} cannot import confluent_kafka: {}",
                python.to_string_lossy(),
                String::from_utf8_lossy(&out.stderr).trim().lines().last().unwrap_or_default()
            ),
            Err(e) => format!("TRADEFLOW_PYTHON={} cannot be run: {e}", python.to_string_lossy()),
        },
    };
    assert!(!required(), "TRADEFLOW_REQUIRE_KAFKA=1 but {problem} (.ci/run installs confluent-kafka)");
    eprintln!("skipping the Kafka checks: {problem}; pip install confluent-kafka into it");
    None
}

/// A `tansu` broker on 127.0.0.1, killed when dropped: with in-memory storage, or with
/// its topics kept in an S3 bucket ([`Broker::start_durable`]) so that it can be stopped
/// and restarted without losing them.
pub struct Broker {
    binary: PathBuf,
    port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    python: Option<PathBuf>,
    /// `--storage-engine`, and the environment it needs (S3 endpoint and credentials).
    storage: (String, Vec<(String, String)>),
}

impl Broker {
    /// Starts a broker; `None` when `tansu` or the outside client is missing and not
    /// required.
    pub fn start() -> Option<Broker> {
        let binary = tansu()?;
        let python = python()?;
        Some(Broker::spawn(binary, Some(python), ("memory://tansu/".to_owned(), Vec::new())))
    }

    /// Starts a broker without the outside client (for benchmarks); `None` when `tansu`
    /// is missing and not required.
    pub fn start_bare() -> Option<Broker> {
        Some(Broker::spawn(tansu()?, None, ("memory://tansu/".to_owned(), Vec::new())))
    }

    /// Starts a broker whose topics live in bucket `tansu` of `s3` (its `dynostore`
    /// engine), so that they survive [`Broker::restart`]; `None` as for [`Broker::start`].
    pub fn start_durable(s3: &crate::s3::S3Server) -> Option<Broker> {
        let binary = tansu()?;
        let python = python()?;
        s3.create_bucket("tansu");
        let env = s3.environment().into_iter().chain([("AWS_DEFAULT_REGION".to_owned(), crate::s3::REGION.to_owned())]);
        Some(Broker::spawn(binary, Some(python), ("s3://tansu/".to_owned(), env.collect())))
    }

    fn spawn(binary: PathBuf, python: Option<PathBuf>, storage: (String, Vec<(String, String)>)) -> Broker {
        let dir = tempfile::Builder::new().prefix("tradeflow-kafka-").tempdir().expect("a temporary directory");
        let mut broker = Broker { binary, port: 0, child: None, dir, python, storage };
        // A port that was free a moment ago may be taken by the time the broker binds it.
        for _ in 0..5 {
            broker.port = free_port();
            if broker.spawn_on_port(Duration::from_secs(20)) {
                return broker;
            }
        }
        panic!("tansu did not start; its log:\n{}", broker.log());
    }

    /// Spawns the broker on `self.port`; true once it accepts connections, false if it
    /// exited first or did not listen within `timeout`.
    fn spawn_on_port(&mut self, timeout: Duration) -> bool {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let mut command = Command::new(&self.binary);
        command
            .arg("broker")
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", &self.storage.0])
            .envs(self.storage.1.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "warn");
        self.child = start_server(command, &self.dir.path().join("broker.log"), self.port, timeout);
        self.child.is_some()
    }

    /// Kills the broker (SIGKILL, as a crash would), keeps it down for `down`, and starts
    /// it again on the same port and storage.
    pub fn restart(&mut self, down: Duration) {
        self.stop();
        std::thread::sleep(down);
        self.start_again();
    }

    /// Kills the broker (SIGKILL, as a crash would).
    pub fn stop(&mut self) {
        stop_server(&mut self.child);
    }

    /// Starts the broker stopped by [`Broker::stop`] again, on the same port and storage.
    pub fn start_again(&mut self) {
        if !start_again_within_20s(|| self.spawn_on_port(Duration::from_secs(5))) {
            panic!("tansu did not restart on port {}; its log:\n{}", self.port, self.log());
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `kafka://127.0.0.1:PORT/TOPIC?QUERY` (no `?` when the query is empty).
    pub fn url(&self, topic: &str, query: &str) -> String {
        if query.is_empty() {
            format!("kafka://{}/{topic}", self.address())
        } else {
            format!("kafka://{}/{topic}?{query}", self.address())
        }
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }

    /// Runs `kafka_client.py BROKERS ARGS`; returns its stdout.
    fn client(&self, args: &[&str]) -> String {
        let script = crate::python::script("kafka_client.py");
        let python = self.python.as_ref().expect("a broker started with Broker::start has the outside client");
        let mut command = Command::new(python);
        command.arg(&script).arg(self.address()).args(args);
        let out = Running::spawn(command).finish(Duration::from_secs(180));
        assert!(
            out.success(),
            "kafka_client.py {args:?} failed with {}:\n{}\nbroker log:\n{}",
            out.status,
            out.stderr,
            self.log()
        );
        out.stdout
    }

    /// Creates `topic` with `partitions` partitions through the outside client.
    pub fn create_topic(&self, topic: &str, partitions: usize) {
        self.client(&["create", topic, &partitions.to_string()]);
    }

    /// Produces each line of a flat-trade NDJSON file to `topic` with the outside client
    /// (key = symbol, timestamp = `t`); where each line landed, as (partition, offset).
    pub fn produce_lines(&self, topic: &str, file: &Path) -> Vec<(i32, i64)> {
        let out = self.client(&["produce", topic, file.to_str().expect("a UTF-8 path")]);
        landed(&out)
    }

    /// Like [`Broker::produce_lines`], but each value is Avro in the Confluent wire format
    /// with the outside client's own writer schema (`p` and `v` as doubles), registered
    /// under `TOPIC-value` with the schema registry at `registry`.
    pub fn produce_avro_lines(&self, topic: &str, file: &Path, registry: &str) -> Vec<(i32, i64)> {
        let out = self.client(&["produce-avro", topic, file.to_str().expect("a UTF-8 path"), registry]);
        landed(&out)
    }

    /// Every record of `topic`, read from the beginning by the outside client.
    pub fn consume(&self, topic: &str) -> Topic {
        let out = self.client(&["consume", topic]);
        let json: serde_json::Value = serde_json::from_str(&out).expect("consume prints JSON");
        let records = json["records"]
            .as_array()
            .expect("records")
            .iter()
            .map(|r| Record {
                partition: r["partition"].as_i64().expect("partition") as i32,
                offset: r["offset"].as_i64().expect("offset"),
                key: r["key"].as_str().expect("key").to_owned(),
                timestamp: r["timestamp"].as_i64().expect("timestamp"),
                value: match (r["text"].as_str(), r["hex"].as_str()) {
                    (Some(text), _) => text.as_bytes().to_vec(),
                    (None, Some(hex)) => (0..hex.len())
                        .step_by(2)
                        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                        .collect(),
                    _ => panic!("a record without a value: {r}"),
                },
            })
            .collect();
        Topic { partitions: json["partitions"].as_u64().expect("partitions") as usize, records }
    }
}

impl Broker {
    /// The broker's own answers about `topic` (ListOffsets, through the outside client):
    /// by partition, (low watermark, high watermark, offset for `ts`; -1 for none).
    pub fn offsets(&self, topic: &str, ts: i64) -> BTreeMap<i32, (i64, i64, i64)> {
        let out = self.client(&["offsets", topic, &ts.to_string()]);
        let json: serde_json::Value = serde_json::from_str(&out).expect("offsets prints JSON");
        let int = |v: &serde_json::Value| v.as_i64().expect("an offset");
        json.as_object()
            .expect("an object")
            .iter()
            .map(|(p, v)| (p.parse().expect("a partition"), (int(&v[0]), int(&v[1]), int(&v[2]))))
            .collect()
    }
}

/// `produce`'s answer: where each line landed.
fn landed(out: &str) -> Vec<(i32, i64)> {
    let json: serde_json::Value = serde_json::from_str(out).expect("produce prints JSON");
    json.as_array()
        .expect("a list")
        .iter()
        .map(|w| (w[0].as_i64().expect("a partition") as i32, w[1].as_i64().expect("an offset")))
        .collect()
}

/// The schema registry of `tests/python/schema_registry.py` on a free port of 127.0.0.1,
/// stopped when dropped (as every [`Running`] process is).
pub struct SchemaRegistry {
    url: String,
    running: Running,
}

impl SchemaRegistry {
    /// Starts it with `python`.
    pub fn start(python: &Path) -> SchemaRegistry {
        let script = crate::python::script("schema_registry.py");
        let mut command = Command::new(python);
        command.arg(script);
        let mut running = Running::spawn(command);
        let up = running.wait_for_stderr(Duration::from_secs(20), |e| e.contains("listening on "));
        let stderr = running.stderr_so_far();
        assert!(up, "the schema registry did not start:\n{stderr}");
        let port = stderr.split("listening on ").nth(1).and_then(|r| r.split_whitespace().next()).expect("a port");
        SchemaRegistry { url: format!("http://127.0.0.1:{port}"), running }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The requests answered so far, one `METHOD PATH -> STATUS` each.
    pub fn requests(&self) -> Vec<String> {
        self.running.stderr_so_far().lines().filter(|l| l.contains(" -> ")).map(str::to_owned).collect()
    }
}

impl Broker {
    /// The Python with the outside client.
    pub fn python(&self) -> &Path {
        self.python.as_deref().expect("a broker started with Broker::start has the outside client")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A topic as the outside client read it.
#[derive(Debug)]
pub struct Topic {
    /// Its partition count.
    pub partitions: usize,
    /// Its records, partition by partition in offset order.
    pub records: Vec<Record>,
}

/// One record.
#[derive(Clone, Debug)]
pub struct Record {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key (the symbol).
    pub key: String,
    /// Record timestamp, ms.
    pub timestamp: i64,
    /// Value bytes.
    pub value: Vec<u8>,
}

/// The analytics settings of the Kafka tests: 5 s windows over a few minutes of simulated
/// trading, so windows are many and final.
pub fn knobs() -> Knobs {
    Knobs {
        window_ms: 5_000,
        slide_ms: None,
        lateness_ms: 2_000,
        volatility_windows: 5,
        baseline_windows: 5,
        min_history: 2,
        spike_factor: 2.0,
        jump_sigma: 2.0,
    }
}
