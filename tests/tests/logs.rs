//! Issue 7: logs and progress. `--log-format json` writes one JSON object a line and
//! `RUST_LOG` filters the logs; without a terminal a run prints plain progress lines
//! (no bar, no escape codes); on a terminal (a pseudo-terminal from util-linux's
//! `script`) a bounded lake replay draws a progress bar with the bytes of the lake's
//! trades files as its total, a percentage and an ETA.

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use tradeflow_tests::process::Running;
use tradeflow_tests::{file_url, free_port, run_tradeflow, temp_dir, tradeflow_bin};

#[test]
fn json_logs_follow_rust_log() {
    let port = free_port().to_string();
    let args = ["run", "--no-lake", "--source", "sim://?count=20000&rate=0", "--log-format", "json"];
    let args = [&args[..], &["--progress-interval", "0", "--metrics-addr", &port]].concat();
    let out = run_tradeflow(&args, Duration::from_secs(60));
    out.assert_success("tradeflow run --log-format json");
    let logs: Vec<serde_json::Value> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let listening = logs
        .iter()
        .find(|l| l["message"].as_str().is_some_and(|m| m.contains(&format!("http://127.0.0.1:{port}/metrics"))))
        .unwrap_or_else(|| panic!("no JSON log line for the metrics address:\n{}", out.stderr));
    assert_eq!(listening["level"], "INFO");
    assert!(listening["timestamp"].as_str().is_some_and(|t| t.len() >= 20), "{listening}");
    assert!(listening["target"].as_str().is_some_and(|t| t.starts_with("tradeflow")), "{listening}");
    // The summary stays plain text after the logs.
    assert!(out.stderr.contains("tradeflow run finished in"), "{}", out.stderr);

    // RUST_LOG=warn drops the info lines.
    let mut command = tradeflow_tests::tradeflow_command();
    command.env("RUST_LOG", "warn").args(&args);
    let quiet = Running::spawn(command).finish(Duration::from_secs(60));
    quiet.assert_success("tradeflow run with RUST_LOG=warn");
    assert!(!quiet.stderr.contains("/metrics"), "{}", quiet.stderr);
    assert!(quiet.stderr.contains("tradeflow run finished in"), "{}", quiet.stderr);
}

#[test]
fn progress_is_plain_lines_without_a_terminal() {
    let out = run_tradeflow(
        &["run", "--no-lake", "--source", "sim://?count=6000&rate=4000", "--progress-interval", "300ms"],
        Duration::from_secs(60),
    );
    out.assert_success("a paced bounded run");
    let lines = out.stderr.lines().filter(|l| l.starts_with('[') && l.contains("] trades ")).count();
    assert!(lines >= 2, "{lines} progress lines:\n{}", out.stderr);
    assert!(!out.stderr.contains('\u{1b}') && !out.stderr.contains("ETA"), "{}", out.stderr);
}

/// The frames a terminal program drew, escape sequences removed.
fn frames(typescript: &str) -> Vec<String> {
    let mut plain = String::new();
    let mut chars = typescript.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte.
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain.split(['\r', '\n']).map(|l| l.trim().to_owned()).filter(|l| !l.is_empty()).collect()
}

/// Bytes of the `.parquet` files under `dir`.
fn parquet_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            total += parquet_bytes(&path);
        } else if path.extension().is_some_and(|e| e == "parquet") {
            total += entry.metadata().map_or(0, |m| m.len());
        }
    }
    total
}

#[test]
fn a_lake_replay_on_a_terminal_shows_a_bar_with_its_bytes_and_an_eta() {
    let Some(script) = ["/usr/bin/script", "/bin/script"].into_iter().find(|p| Path::new(p).is_file()) else {
        eprintln!("skipped: no `script` (util-linux) to give the run a terminal");
        return;
    };
    let dir = temp_dir();
    let source = dir.path().join("source");
    let sim = "sim://?count=1500000&rate=0&seed=5&start=2023-11-14T22:13:20Z";
    let args = ["run", "--progress-interval", "0", "--source", sim, "--lake", &file_url(&source)];
    run_tradeflow(&args, Duration::from_secs(120)).assert_success("writing a lake");
    let bytes = parquet_bytes(&source.join("trades"));
    assert!(bytes > 1 << 20, "{bytes} bytes of trades");

    let typescript = dir.path().join("typescript");
    let replay = format!(
        "{} run --source lake://{} --lake {}",
        tradeflow_bin().display(),
        source.display(),
        file_url(&dir.path().join("replayed"))
    );
    let mut command = Command::new(script);
    command.args(["-qfec", &replay]).arg(&typescript).env("TERM", "xterm").env("COLUMNS", "160");
    let out = Running::spawn(command).finish(Duration::from_secs(120));
    let drawn = std::fs::read_to_string(&typescript).unwrap_or_default();
    assert!(out.success(), "the replay under `script` failed:\n{}{}\n{drawn}", out.stdout, out.stderr);
    let frames = frames(&drawn);
    // indicatif's {binary_bytes}: 1024-based, two decimals.
    let total = format!("/{:.2} MiB", bytes as f64 / (1u64 << 20) as f64);
    let bars: Vec<&String> = frames.iter().filter(|f| f.contains(&total) && f.contains("% ETA ")).collect();
    assert!(!bars.is_empty(), "no bar with the total {total} and an ETA:\n{}", frames.join("\n"));
    assert!(frames.iter().any(|f| f.starts_with("tradeflow run finished in")), "{}", frames.join("\n"));
    // The bar replaces the plain progress lines.
    assert!(!frames.iter().any(|f| f.starts_with('[') && f.contains("] trades ")), "{}", frames.join("\n"));
}
