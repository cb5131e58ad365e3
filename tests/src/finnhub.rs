//! Finnhub WebSocket tests' helpers: the built-in server (`tradeflow simulate --serve`),
//! the independent Python servers and clients (`tests/python/ws_*.py`, on the
//! `websockets` library), what a feed must produce, `/metrics`, and secret checks.

use crate::expect::{Expected, ExpectedReject};
use crate::process::{Running, tradeflow_command};
use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tradeflow_model::RejectReason;
use tradeflow_sources::format::{Item, parse_line};
use tradeflow_sources::lateness::PartitionClock;

/// A Python with the `websockets` package (`TRADEFLOW_PYTHON`, which `.ci/run` sets up),
/// or `None` after saying why, unless `TRADEFLOW_REQUIRE_READERS=1` makes that a failure.
pub fn ws_python() -> Option<PathBuf> {
    let required = std::env::var("TRADEFLOW_REQUIRE_READERS").is_ok_and(|v| v == "1");
    let problem = match std::env::var_os("TRADEFLOW_PYTHON") {
        None => "TRADEFLOW_PYTHON is not set".to_owned(),
        Some(python) => match Command::new(&python).args(["-c", "import websockets.asyncio.server"]).output() {
            Ok(out) if out.status.success() => return Some(PathBuf::from(python)),
            Ok(out) => format!(
                "TRADEFLOW_PYTHON={} cannot import websockets: {}",
                python.to_string_lossy(),
                String::from_utf8_lossy(&out.stderr).trim().lines().last().unwrap_or_default()
            ),
            Err(e) => format!("TRADEFLOW_PYTHON={} cannot be run: {e}", python.to_string_lossy()),
        },
    };
    assert!(!required, "TRADEFLOW_REQUIRE_READERS=1 but {problem} (.ci/run sets up a virtualenv with websockets)");
    eprintln!("skipping: {problem}; set TRADEFLOW_PYTHON to a Python with the websockets package");
    None
}

pub use crate::python::script;

/// Waits until something accepts TCP connections on 127.0.0.1:`port`.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// `tradeflow simulate --serve 127.0.0.1:PORT ARGS`, running and accepting connections.
pub fn serve(port: u16, args: &[&str]) -> Running {
    let mut command = tradeflow_command();
    command.arg("simulate").arg("--serve").arg(format!("127.0.0.1:{port}")).args(args);
    let server = Running::spawn(command);
    assert!(wait_for_port(port, Duration::from_secs(30)), "the server did not listen:\n{}", server.stderr_so_far());
    server
}

/// The text of `GET http://127.0.0.1:PORT/metrics`, or `None` if nothing answers.
pub fn get_metrics(port: u16) -> Option<String> {
    let response = crate::prometheus::http_get(&format!("127.0.0.1:{port}"), "/metrics").ok()?;
    (response.status == 200).then_some(response.body)
}

/// The value of the sample `name{labels}` (exact label text) in a `/metrics` body.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Panics if `secret` appears in any of `texts` (named for the message).
pub fn assert_no_secret(secret: &str, texts: &[(&str, &str)]) {
    for (what, text) in texts {
        if let Some(at) = text.find(secret) {
            let from = text[..at].char_indices().rev().nth(200).map_or(0, |(i, _)| i);
            panic!("the API key appears in {what}:\n…{}…", &text[from..(at + secret.len() + 100).min(text.len())]);
        }
    }
}

/// What a Finnhub source must produce from `frames` (every text frame the server sent, in
/// order), deciding lateness per symbol with `--allowed-lateness lateness_ms`, rejects
/// labelled `source` at the frame's number.
pub fn expected_from_frames(frames: &[String], lateness_ms: i64, source: &str) -> Expected {
    let mut clocks: BTreeMap<String, PartitionClock> = BTreeMap::new();
    let mut expected = Expected::default();
    for (position, frame) in frames.iter().enumerate() {
        parse_line(frame.as_bytes(), &mut |item| {
            let reject = |reason, payload: &[u8], element| ExpectedReject {
                source: source.to_owned(),
                position: position as u64,
                element,
                reason,
                payload: String::from_utf8_lossy(payload).into_owned(),
            };
            match item {
                Item::Trade(t) => {
                    let clock = clocks.entry(t.symbol.to_string()).or_insert_with(|| PartitionClock::new(lateness_ms));
                    if clock.admit(t.ts) {
                        expected.accepted.push(t.to_trade().expect("the parser checked the symbol"));
                    } else {
                        expected.rejects.push(reject(RejectReason::Late, t.raw, t.element));
                    }
                }
                Item::Reject(r) => expected.rejects.push(reject(r.reason, r.payload, r.element)),
                Item::Ping | Item::ServerError(_) => {}
            }
        });
    }
    expected
}

/// Every file name under `dir`, joined by newlines (to look for a secret in them).
pub fn file_names(dir: &Path) -> String {
    crate::lake::files_under(dir).iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join("\n")
}
