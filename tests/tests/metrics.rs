//! Issue 7: Prometheus metrics. A paced simulator run on two workers serves `/metrics`
//! on a free port; a real Prometheus server (Debian's) scrapes it every second, and its
//! HTTP API answers with the run's trades by source and partition, their rate, the
//! watermark lag, finalised windows and memory, in line with what the run reports. The
//! page follows the text format and Prometheus's conventions (`promtool check
//! metrics`), carries the families of a simulator run into the lake (`grafana.rs` checks
//! the README's whole table against a run with every kind of source and sink), and a
//! busy or bad address stops the run before it starts, naming the flag.

use std::net::TcpListener;
use std::time::{Duration, Instant};
use tradeflow_tests::process::Running;
use tradeflow_tests::prometheus::{Exposition, PrometheusServer, http_get, promtool};
use tradeflow_tests::{file_url, free_port, run_tradeflow, temp_dir, tradeflow_command};

/// Trades per second the simulator paces.
const RATE: f64 = 4000.0;

/// A live run on two workers with `--metrics-addr 127.0.0.1:{port}`, once it listens.
fn live_run(dir: &std::path::Path, port: u16) -> Running {
    let mut command = tradeflow_command();
    command.args([
        "run",
        "--source",
        &format!("sim://?rate={RATE}&symbols=AAPL,MSFT,BINANCE:BTCUSDT"),
        "-w",
        "2",
        "--window",
        "1s",
        "--allowed-lateness",
        "500ms",
        "--idle-timeout",
        "2s",
        "--lake",
        &file_url(&dir.join("lake")),
        "--metrics-addr",
        &format!("127.0.0.1:{port}"),
    ]);
    let mut run = Running::spawn(command);
    let line = format!("Prometheus metrics on http://127.0.0.1:{port}/metrics");
    assert!(run.wait_for_stderr(Duration::from_secs(60), |s| s.contains(&line)), "{}", run.stderr_so_far());
    run
}

/// `/metrics` of the run at `addr`, parsed.
fn scrape(addr: &str) -> Exposition {
    let response = http_get(addr, "/metrics").unwrap_or_else(|e| panic!("GET /metrics: {e}"));
    assert_eq!(response.status, 200, "{}", response.body);
    Exposition::parse(&response.body)
}

#[test]
fn prometheus_scrapes_a_running_pipeline() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let Some(prometheus) = PrometheusServer::start(std::slice::from_ref(&addr)) else { return };
    let dir = temp_dir();
    let run = live_run(dir.path(), port);
    let long = Duration::from_secs(45);

    prometheus.wait_for("up{job=\"tradeflow\"}", long, |r| r.len() == 1 && r[0].value == 1.0);
    // Trades by source and partition: one series per worker, both moving.
    let trades =
        prometheus.wait_for("tradeflow_trades_total", long, |r| r.len() == 2 && r.iter().all(|s| s.value > 0.0));
    let mut partitions: Vec<&str> = trades.iter().map(|s| s.labels["partition"].as_str()).collect();
    partitions.sort();
    assert_eq!(partitions, ["0", "1"]);
    assert!(trades.iter().all(|s| s.labels["source"] == "sim" && s.labels["instance"] == addr), "{trades:?}");

    // Their rate is the simulator's pace (less the few late trades), once the series fill
    // the rate's range (rate() divides by the whole range).
    prometheus.wait_for("min(count_over_time(tradeflow_trades_total[5s]))", long, |r| {
        r.first().is_some_and(|s| s.value >= 5.0)
    });
    let rate = prometheus.query("sum(rate(tradeflow_trades_total[5s]))");
    assert!((0.5 * RATE..1.5 * RATE).contains(&rate[0].value), "trades/s per Prometheus: {}", rate[0].value);

    // Windows become final as the watermark passes them, a second or so behind the clock.
    prometheus.wait_for("tradeflow_windows_finalized_total", long, |r| r.first().is_some_and(|s| s.value > 0.0));
    let lag = prometheus.query("tradeflow_watermark_lag_seconds");
    assert!(lag.first().is_some_and(|s| s.value > 0.0 && s.value < 10.0), "watermark lag: {lag:?}");
    let memory = prometheus.query("process_resident_memory_bytes");
    assert!(memory.first().is_some_and(|s| s.value > 10e6), "resident memory: {memory:?}");
    let late = prometheus.query("sum(tradeflow_rejects_total{reason=\"late\"}) - sum(tradeflow_late_trades_total)");
    assert_eq!(late.first().map(|s| s.value), Some(0.0), "late trades are the rejects for lateness");

    // What Prometheus holds lags the page itself by at most a scrape, and the run's own
    // summary by at most a few seconds of trades.
    let scraped = prometheus.query("sum(tradeflow_trades_total)")[0].value;
    let direct = scrape(&addr).sum("tradeflow_trades_total", &[]);
    assert!(scraped <= direct && direct - scraped <= 5.0 * RATE, "Prometheus {scraped} vs /metrics {direct}");
    run.interrupt();
    let out = run.finish(Duration::from_secs(60));
    out.assert_success("tradeflow run with --metrics-addr");
    let accepted = out.summary().accepted as f64;
    assert!(scraped <= accepted && accepted - scraped <= 10.0 * RATE, "Prometheus {scraped} vs the summary {accepted}");
}

/// The families of a simulator run into the lake, with their types.
const FAMILIES: &[(&str, &str)] = &[
    ("tradeflow_trades_total", "counter"),
    ("tradeflow_rejects_total", "counter"),
    ("tradeflow_late_trades_total", "counter"),
    ("tradeflow_watermark_lag_seconds", "gauge"),
    ("tradeflow_watermark_timestamp_seconds", "gauge"),
    ("tradeflow_open_windows", "gauge"),
    ("tradeflow_windows_finalized_total", "counter"),
    ("tradeflow_anomalies_total", "counter"),
    ("tradeflow_live_updates_total", "counter"),
    ("tradeflow_sink_rows_total", "counter"),
    ("tradeflow_sink_errors_total", "counter"),
    ("tradeflow_sink_commit_seconds", "histogram"),
    ("tradeflow_sink_files_total", "counter"),
    ("tradeflow_sink_bytes_total", "counter"),
    ("tradeflow_build_info", "gauge"),
    ("process_resident_memory_bytes", "gauge"),
    ("process_cpu_seconds_total", "counter"),
    ("process_start_time_seconds", "gauge"),
];

#[test]
fn the_metrics_page_follows_the_text_format_and_conventions() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let dir = temp_dir();
    let run = live_run(dir.path(), port);
    // Wait for windows to become final, so that every kind of series has moved.
    let deadline = Instant::now() + Duration::from_secs(45);
    let page = loop {
        let response = http_get(&addr, "/metrics").expect("GET /metrics");
        let page = Exposition::parse(&response.body);
        if page.sum("tradeflow_windows_finalized_total", &[]) > 0.0 {
            assert_eq!(response.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
            break response.body;
        }
        assert!(Instant::now() < deadline, "no final window within 45 s:\n{}", response.body);
        std::thread::sleep(Duration::from_millis(200));
    };
    let metrics = Exposition::parse(&page);
    for (family, kind) in FAMILIES {
        assert_eq!(metrics.types.get(*family).map(String::as_str), Some(*kind), "{family} in\n{page}");
        assert!(metrics.help.get(*family).is_some_and(|h| !h.is_empty()), "{family} has no HELP");
    }
    for reason in ["invalid_json", "missing_field", "bad_price", "bad_volume", "bad_timestamp", "bad_symbol", "late"] {
        assert_eq!(metrics.matching("tradeflow_rejects_total", &[("source", "sim"), ("reason", reason)]).count(), 1);
    }
    for partition in ["0", "1"] {
        assert!(metrics.sum("tradeflow_trades_total", &[("source", "sim"), ("partition", partition)]) > 0.0);
    }
    assert_eq!(
        metrics.matching("tradeflow_sink_commit_seconds_bucket", &[("sink", "lake"), ("le", "+Inf")]).count(),
        1
    );
    assert!(metrics.sum("tradeflow_open_windows", &[]) >= 1.0, "{page}");

    // Prometheus's own linter: names, units, suffixes, help.
    match promtool() {
        Some(promtool) => {
            let mut child = std::process::Command::new(promtool)
                .args(["check", "metrics"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("starting promtool");
            std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), page.as_bytes()).expect("writing");
            let out = child.wait_with_output().expect("promtool");
            let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success() && text.trim().is_empty(), "promtool check metrics:\n{text}");
        }
        None if std::env::var("TRADEFLOW_REQUIRE_PROMETHEUS").as_deref() == Ok("1") => {
            panic!("TRADEFLOW_REQUIRE_PROMETHEUS=1 but there is no promtool")
        }
        None => eprintln!("skipped promtool check metrics: no promtool"),
    }

    // The metrics address serves nothing else.
    assert_eq!(http_get(&addr, "/").unwrap().status, 200);
    assert_eq!(http_get(&addr, "/api/snapshot").unwrap().status, 404);
    run.interrupt();
    run.finish(Duration::from_secs(60)).assert_success("tradeflow run with --metrics-addr");
}

#[test]
fn busy_or_bad_addresses_stop_the_run_naming_the_flag() {
    let busy = TcpListener::bind("127.0.0.1:0").expect("binding a port");
    let port = busy.local_addr().expect("its address").port();
    for flag in ["--metrics-addr", "--dashboard-addr"] {
        let addr = format!("127.0.0.1:{port}");
        let out = run_tradeflow(
            &["run", "--no-lake", "--progress-interval", "0", "--source", "sim://?count=10&rate=0", flag, &addr],
            Duration::from_secs(60),
        );
        assert!(!out.success(), "{flag} {addr} (busy) succeeded:\n{}", out.stderr);
        assert!(out.stderr.contains(&format!("{flag} {addr}: cannot listen there")), "{}", out.stderr);
        let out = run_tradeflow(&["run", "--no-lake", flag, "not-an-address"], Duration::from_secs(60));
        assert!(!out.success());
        assert!(out.stderr.contains(&format!("{flag} \"not-an-address\": not an address")), "{}", out.stderr);
    }
}
