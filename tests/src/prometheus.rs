//! Prometheus for the tests: plain HTTP GETs, the text exposition format parsed, and a
//! real, throwaway Prometheus server (Debian's `prometheus`) scraping a running
//! tradeflow, queried through its HTTP API.
//!
//! [`PrometheusServer`] runs `prometheus` (`TRADEFLOW_PROMETHEUS`, else the `PATH`) on
//! 127.0.0.1 and a free port with a fresh temporary storage directory and a one-second
//! scrape interval; it is stopped and its directory removed when dropped. Without the
//! binary the tests skip with a printed reason, unless `TRADEFLOW_REQUIRE_PROMETHEUS=1`
//! (as `.ci/run` sets), when they fail.

use crate::process::{Running, free_port, temp_dir};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// A response: status code, headers (names lower-cased) and body.
#[derive(Clone, Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// The body, decoded from chunked transfer encoding if need be.
    pub body: String,
}

impl Response {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// `GET http://{addr}{path}` (HTTP/1.1, `Connection: close`), reading at most `limit`
/// bytes of body (for endless event streams) within `timeout`.
pub fn http_get_limited(addr: &str, path: &str, limit: usize, timeout: Duration) -> Result<Response, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connecting to {addr}: {e}"))?;
    stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: */*\r\n\r\n")
        .map_err(|e| format!("writing to {addr}: {e}"))?;
    let mut raw = Vec::new();
    let mut buffer = [0u8; 16384];
    let deadline = Instant::now() + timeout;
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buffer[..n]),
            Err(e) if raw.is_empty() => return Err(format!("reading from {addr}{path}: {e}")),
            Err(_) => break,
        }
        let head_end = find(&raw, b"\r\n\r\n");
        if head_end.is_some_and(|h| raw.len() - h - 4 >= limit) || Instant::now() >= deadline {
            break;
        }
    }
    let head_end = find(&raw, b"\r\n\r\n").ok_or_else(|| format!("no HTTP head from {addr}{path}"))?;
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line from {addr}{path}: {head}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[head_end + 4..].to_vec();
    if headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked")) {
        body = dechunk(&body);
    }
    Ok(Response { status, headers, body: String::from_utf8_lossy(&body).into_owned() })
}

/// `GET http://{addr}{path}`, the whole body.
pub fn http_get(addr: &str, path: &str) -> Result<Response, String> {
    http_get_limited(addr, path, usize::MAX, Duration::from_secs(10))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The body of a chunked transfer encoding (as much of it as arrived).
fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = find(data, b"\r\n") {
        let size = std::str::from_utf8(&data[..line_end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok());
        let Some(size) = size else { break };
        let start = line_end + 2;
        if size == 0 {
            break;
        }
        let end = (start + size).min(data.len());
        out.extend_from_slice(&data[start..end]);
        data = data.get(end + 2..).unwrap_or_default();
    }
    out
}

/// One sample of the text exposition format.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The series name (`_bucket`, `_sum`, `_count` included).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// A `/metrics` page parsed: `# TYPE` of every family and every sample.
#[derive(Clone, Debug, Default)]
pub struct Exposition {
    /// Family name -> type (`counter`, `gauge`, `histogram`, ...).
    pub types: BTreeMap<String, String>,
    /// Family name -> help text.
    pub help: BTreeMap<String, String>,
    /// Every sample, in order.
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// Parses the text format (panics on a line it does not understand).
    pub fn parse(text: &str) -> Exposition {
        let mut out = Exposition::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("bad TYPE line {line:?}"));
                out.types.insert(name.to_owned(), kind.to_owned());
                continue;
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                out.help.insert(name.to_owned(), help.to_owned());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            out.samples.push(parse_sample(line));
        }
        out
    }

    /// Every family name, and for histograms their `_bucket`, `_sum` and `_count` series.
    pub fn series_names(&self) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = self.samples.iter().map(|s| s.name.clone()).collect();
        names.extend(self.types.keys().cloned());
        names
    }

    /// The sum of the samples named `name` whose labels include `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    /// The samples named `name` whose labels include `labels`.
    pub fn matching<'a>(&'a self, name: &'a str, labels: &'a [(&str, &str)]) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }
}

fn parse_sample(line: &str) -> Sample {
    let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad sample line {line:?}"));
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().unwrap_or_else(|_| panic!("bad value in {line:?}")),
    };
    let (name, labels) = match series.split_once('{') {
        None => (series.to_owned(), BTreeMap::new()),
        Some((name, rest)) => {
            let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels in {line:?}"));
            (name.to_owned(), parse_labels(body, line))
        }
    };
    Sample { name, labels, value }
}

fn parse_labels(mut body: &str, line: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    while !body.is_empty() {
        let (key, rest) = body.split_once("=\"").unwrap_or_else(|| panic!("bad labels in {line:?}"));
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => break,
                },
                '"' => {
                    end = Some(i);
                    break;
                }
                other => value.push(other),
            }
        }
        let end = end.unwrap_or_else(|| panic!("unterminated label value in {line:?}"));
        labels.insert(key.trim_start_matches(',').to_owned(), value);
        body = rest[end + 1..].trim_start_matches(',');
    }
    labels
}

/// The Prometheus server binary, or why there is none.
pub fn prometheus_binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("TRADEFLOW_PROMETHEUS") {
        return Ok(PathBuf::from(path));
    }
    crate::process::on_path("prometheus")
        .ok_or_else(|| "no `prometheus` on the PATH; install Debian's prometheus package".into())
}

/// `promtool` beside the Prometheus binary, or on the `PATH`.
pub fn promtool() -> Option<PathBuf> {
    let beside = prometheus_binary().ok()?.with_file_name("promtool");
    if beside.is_file() {
        return Some(beside);
    }
    crate::process::on_path("promtool")
}

/// A running Prometheus server scraping some targets every second.
pub struct PrometheusServer {
    _dir: tempfile::TempDir,
    process: Running,
    /// Its `host:port`.
    pub addr: String,
}

/// One element of a query's result vector.
#[derive(Clone, Debug)]
pub struct QueryResult {
    /// The series' labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

impl PrometheusServer {
    /// Starts a server scraping `targets` (`host:port`) as job `tradeflow`; `None` (the
    /// test skips) without the binary unless `TRADEFLOW_REQUIRE_PROMETHEUS=1`.
    pub fn start(targets: &[String]) -> Option<PrometheusServer> {
        let binary = match prometheus_binary() {
            Ok(binary) => binary,
            Err(reason) if std::env::var("TRADEFLOW_REQUIRE_PROMETHEUS").as_deref() == Ok("1") => {
                panic!("TRADEFLOW_REQUIRE_PROMETHEUS=1 but {reason}")
            }
            Err(reason) => {
                eprintln!("skipped: {reason}");
                return None;
            }
        };
        let dir = temp_dir();
        let config = dir.path().join("prometheus.yml");
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: tradeflow\n    static_configs:\n      - targets: [{}]\n",
                targets.join(", ")
            ),
        )
        .expect("writing prometheus.yml");
        let addr = format!("127.0.0.1:{}", free_port());
        let mut command = Command::new(&binary);
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn");
        let process = Running::spawn(command);
        let server = PrometheusServer { _dir: dir, process, addr };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if http_get(&server.addr, "/-/ready").is_ok_and(|r| r.status == 200) {
                return Some(server);
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus did not become ready within 30 s:\n{}",
                server.process.stderr_so_far()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Evaluates `promql` now (`/api/v1/query`): the result vector.
    pub fn query(&self, promql: &str) -> Vec<QueryResult> {
        let path = format!("/api/v1/query?query={}", encode(promql));
        let response = http_get(&self.addr, &path).unwrap_or_else(|e| panic!("querying {promql}: {e}"));
        let json: serde_json::Value = serde_json::from_str(&response.body)
            .unwrap_or_else(|e| panic!("{promql}: not JSON ({e}): {}", response.body));
        assert_eq!(json["status"], "success", "{promql}: {}", response.body);
        let results = json["data"]["result"].as_array().cloned().unwrap_or_default();
        results
            .iter()
            .map(|r| QueryResult {
                labels: r["metric"]
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned())).collect())
                    .unwrap_or_default(),
                value: r["value"][1].as_str().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN),
            })
            .collect()
    }

    /// Polls `promql` until the result satisfies `done` (returning it) or `timeout`
    /// passes (panicking with the last result).
    pub fn wait_for(&self, promql: &str, timeout: Duration, done: impl Fn(&[QueryResult]) -> bool) -> Vec<QueryResult> {
        let deadline = Instant::now() + timeout;
        loop {
            let result = self.query(promql);
            if done(&result) {
                return result;
            }
            assert!(
                Instant::now() < deadline,
                "{promql}: still {result:?} after {timeout:?}\nprometheus:\n{}",
                self.process.stderr_so_far()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// Percent-encodes a query parameter.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The metric names a PromQL expression reads: identifiers followed by `{` or `[`, or
/// standing alone (not a function call, keyword or label name inside `by (...)`,
/// `without (...)`, `on (...)`, `ignoring (...)` or `{...}`). tradeflow's dashboards only
/// use metrics named `tradeflow_*`, `process_*` and `up`, which keeps this simple.
pub fn metric_names(promql: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = promql.as_bytes();
    let mut i = 0;
    let mut in_braces = false;
    let mut in_quotes = false;
    while i < bytes.len() {
        let c = bytes[i] as char;
        if in_quotes {
            if c == '\\' {
                i += 1;
            } else if c == '"' {
                in_quotes = false;
            }
            i += 1;
            continue;
        }
        match c {
            '"' => in_quotes = true,
            '{' => in_braces = true,
            '}' => in_braces = false,
            _ if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                while i < bytes.len()
                    && ((bytes[i] as char).is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b':')
                {
                    i += 1;
                }
                let word = &promql[start..i];
                if !in_braces && (word.starts_with("tradeflow_") || word.starts_with("process_") || word == "up") {
                    names.insert(word.to_owned());
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_text_format() {
        let e = Exposition::parse(
            "# HELP a_total A.\n# TYPE a_total counter\na_total{source=\"sim\",reason=\"x\\\"y\"} 3\nh_bucket{le=\"+Inf\"} 2\nh_sum 1.5\ng NaN\n",
        );
        assert_eq!(e.types["a_total"], "counter");
        assert_eq!(e.sum("a_total", &[("source", "sim")]), 3.0);
        assert_eq!(e.samples[0].labels["reason"], "x\"y");
        assert!(e.series_names().contains("h_bucket"));
        assert!(e.samples[3].value.is_nan());
    }

    #[test]
    fn finds_metric_names_in_promql() {
        let names = metric_names(
            "histogram_quantile(0.99, sum by (le, sink) (rate(tradeflow_sink_commit_seconds_bucket{sink=~\"lake|tradeflow_x\"}[1m]))) + up",
        );
        assert_eq!(names, ["tradeflow_sink_commit_seconds_bucket".to_owned(), "up".to_owned()].into());
        assert_eq!(dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), b"abcde");
    }
}
