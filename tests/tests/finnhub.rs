//! The `finnhub://` source (SPEC 2, 6, 8) against two servers that speak Finnhub's
//! protocol: a scripted one written with another library (Python's `websockets`,
//! `tests/python/ws_finnhub.py`) whose every frame is known, and the built-in
//! `tradeflow simulate --serve`, itself checked by an independent client
//! (`tests/python/ws_client.py`). The API key, set to a distinctive secret, must never
//! appear in stdout, stderr, the lake or `/metrics`.
//!
//! Without a Python that has `websockets` the Python-based checks say why and pass,
//! unless `TRADEFLOW_REQUIRE_READERS=1` (as `.ci/run` sets).

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tradeflow_tests::expect::Knobs;
use tradeflow_tests::finnhub::{
    assert_no_secret, expected_from_frames, file_names, get_metrics, sample, script, serve, ws_python,
};
use tradeflow_tests::lake::{read_dead_letters, read_metrics_changelog, read_trades, read_window_metrics};
use tradeflow_tests::process::Running;
use tradeflow_tests::{file_url, free_port, free_ports, run_tradeflow, simulate, temp_dir, tradeflow_command};

const TIMEOUT: Duration = Duration::from_secs(60);

fn wall_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_millis() as i64
}

/// A key no output could contain by chance.
fn secret() -> String {
    format!("tf-finnhub-key-{:x}{:x}", std::process::id(), wall_ms())
}

/// The greatest "final windows N" of the progress lines so far.
fn final_windows(stderr: &str) -> u64 {
    stderr
        .lines()
        .filter_map(|l| l.split("final windows ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.replace(',', "").parse().ok())
        .max()
        .unwrap_or(0)
}

/// Everything the scripted server sent, as it wrote it down.
struct Sent {
    frames: Vec<String>,
    subscriptions: Vec<Vec<serde_json::Value>>,
    tokens: Vec<Option<String>>,
    silence_closed: f64,
}

fn read_sent(path: &std::path::Path) -> Sent {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let json: serde_json::Value = serde_json::from_str(&text).expect("the script writes JSON");
    let strings = |v: &serde_json::Value| v.as_str().map(str::to_owned);
    Sent {
        frames: json["frames"].as_array().expect("frames").iter().map(|f| strings(f).expect("a frame")).collect(),
        subscriptions: json["subscriptions"]
            .as_array()
            .expect("subscriptions")
            .iter()
            .map(|s| s.as_array().expect("a list").clone())
            .collect(),
        tokens: json["tokens"].as_array().expect("tokens").iter().map(strings).collect(),
        silence_closed: json["silence_closed"].as_f64().expect("the client left the silent connection"),
    }
}

/// Subscriptions honoured on every connection, pings ignored, an error surfaced, a drop
/// mid-stream and a silent connection each followed by a reconnect and resubscribe,
/// malformed frames dead-lettered, and every trade received in the lake exactly once with
/// the reference's windows, which close on the wall clock once the feed goes quiet. The
/// key reaches the server and nothing else.
#[test]
fn a_scripted_feed_reaches_the_lake_exactly_once_through_drops_silence_and_bad_frames() {
    let Some(python) = ws_python() else { return };
    let dir = temp_dir();
    let sent_path = dir.path().join("sent.json");
    let symbols = ["AAPL", "MSFT", "BINANCE:BTCUSDT"];
    let mut command = Command::new(&python);
    command.arg(script("ws_finnhub.py")).arg(&sent_path).arg(symbols.join(","));
    let mut server = Running::spawn(command);
    assert!(
        server.wait_for_stderr(TIMEOUT, |s| s.contains("listening on ")),
        "the scripted server did not start:\n{}",
        server.stderr_so_far()
    );
    let port: u16 = server
        .stderr_so_far()
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.trim().lines().next()?.parse().ok())
        .expect("a port");

    let key = secret();
    let knobs = Knobs { window_ms: 1_000, lateness_ms: 2_000, ..Knobs::default() };
    let lake = dir.path().join("lake");
    let metrics_port = free_port();
    let source = format!(
        "finnhub://?symbols={}&endpoint=ws://127.0.0.1:{port}&silence=1500ms&backoff=100ms&max_backoff=400ms",
        symbols.join(",")
    );
    let mut command = tradeflow_command();
    command.env("FINNHUB_API_KEY", &key).args(["run", "--source", &source, "--idle-timeout", "1s"]);
    command.args(knobs.args()).args(["--progress-interval", "200ms", "--lake", &file_url(&lake)]);
    command.args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")]);
    let mut run = Running::spawn(command);

    let done = server.wait_for_stderr(TIMEOUT, |s| s.contains("scenario done"));
    assert!(done, "the scenario did not finish.\nserver:\n{}\nrun:\n{}", server.stderr_so_far(), run.stderr_so_far());
    let sent = read_sent(&sent_path);
    let label = format!("ws://127.0.0.1:{port}/?token=***");
    let expected = expected_from_frames(&sent.frames, knobs.lateness_ms, &label);
    let (windows, anomalies) = expected.results(&knobs);

    // The feed is quiet now (pings only): the watermark follows the wall clock and every
    // window becomes final without Ctrl-C.
    let closed = run.wait_for_stderr(TIMEOUT, |s| final_windows(s) >= windows.len() as u64);
    assert!(closed, "windows did not close on a quiet feed ({} expected):\n{}", windows.len(), run.stderr_so_far());
    let metrics = get_metrics(metrics_port);
    let stopped_at = wall_ms();
    run.interrupt();
    let out = run.finish(TIMEOUT);
    drop(server);
    out.assert_success("tradeflow run from the scripted server");

    // The server saw the key, and three connections each subscribing to every symbol.
    assert_eq!(sent.tokens, vec![Some(key.clone()); 3]);
    for (i, messages) in sent.subscriptions.iter().enumerate() {
        let mut got: Vec<String> = messages.iter().map(|m| m.to_string()).collect();
        got.sort();
        let mut want: Vec<String> =
            symbols.iter().map(|s| serde_json::json!({"type": "subscribe", "symbol": s}).to_string()).collect();
        want.sort();
        assert_eq!(got, want, "subscriptions on connection {}", i + 1);
    }
    assert!(
        sent.silence_closed > 1.0 && sent.silence_closed < 10.0,
        "left a silent connection after {}s",
        sent.silence_closed
    );

    // Logs: the error names its cause; both gaps are logged; the silence is named.
    let stderr = &out.stderr;
    assert!(
        stderr.contains("Subscribing to too many symbols") && stderr.contains("free tier"),
        "the server's error is not surfaced:\n{stderr}"
    );
    assert!(stderr.contains("reconnected (connection 2)") && stderr.contains("reconnected (connection 3)"), "{stderr}");
    assert!(stderr.contains("silence timeout"), "{stderr}");

    // Every trade received, exactly once; every window as the reference computes it.
    let summary = out.summary();
    assert_eq!(summary.accepted, expected.accepted.len() as u64, "{stderr}");
    assert_eq!(summary.by_reason, expected.reject_counts(), "{stderr}");
    let mut trades = read_trades(&lake);
    trades.sort();
    assert_eq!(trades, expected.lake_trades(), "the lake's trades");
    let mut lake_windows = read_window_metrics(&lake);
    lake_windows.sort();
    assert_eq!(lake_windows, windows, "the lake's window metrics");
    assert_eq!(summary.anomalies_final, anomalies.len() as u64);
    // They became final on the wall clock, before Ctrl-C.
    let finals = read_metrics_changelog(&lake);
    let late_finals: Vec<_> = finals.iter().filter(|u| u.row.is_final && u.time >= stopped_at).collect();
    assert!(late_finals.is_empty(), "windows final only at Ctrl-C: {late_finals:?}");

    // Malformed frames and the late trade are dead-lettered with the parser's reason, the
    // redacted endpoint as source, and the frame's number.
    let mut dead: Vec<_> = read_dead_letters(&lake)
        .into_iter()
        .map(|d| (d.source, d.position as u64, d.element as u32, d.reason, d.payload))
        .collect();
    dead.sort();
    let mut want: Vec<_> = expected
        .rejects
        .iter()
        .map(|r| (r.source.clone(), r.position, r.element, r.reason.as_str().to_owned(), r.payload.clone()))
        .collect();
    want.sort();
    assert_eq!(dead, want, "dead letters");
    let reasons: BTreeSet<&str> = want.iter().map(|r| r.3.as_str()).collect();
    assert_eq!(
        reasons,
        BTreeSet::from(["bad_price", "bad_timestamp", "bad_volume", "invalid_json", "late", "missing_field"])
    );

    // Two gaps, in the metrics too; and the key nowhere.
    let metrics = metrics.unwrap_or_default();
    if !metrics.is_empty() {
        let series = format!("{{source=\"{label}\"}}");
        assert_eq!(sample(&metrics, &format!("tradeflow_websocket_reconnects_total{series}")), Some(2.0), "{metrics}");
        assert_eq!(sample(&metrics, &format!("tradeflow_websocket_gap_seconds_count{series}")), Some(2.0), "{metrics}");
    }
    let letters: String = read_dead_letters(&lake).iter().map(|d| format!("{d:?}\n")).collect();
    assert_no_secret(
        &key,
        &[
            ("stdout", &out.stdout),
            ("stderr", stderr),
            ("the dead letters", &letters),
            ("the lake's file names", &file_names(&lake)),
            ("/metrics", &metrics),
        ],
    );
}

/// The built-in server drops every connection after 2 s; a two-worker run reconnects and
/// resubscribes each time, receives only its symbols, and loses nothing it accepted.
#[test]
fn the_built_in_server_drops_connections_and_the_source_reconnects() {
    let [port, metrics_port] = free_ports(2)[..] else { unreachable!() };
    let server = serve(
        port,
        &[
            "--symbols",
            "AAPL,MSFT,NVDA,BINANCE:BTCUSDT",
            "--rate",
            "400",
            "--disconnect-every",
            "2s",
            "--ping-interval",
            "500ms",
        ],
    );
    let dir = temp_dir();
    let lake = dir.path().join("lake");
    let key = secret();
    let source = format!(
        "finnhub://?symbols=AAPL,BINANCE:BTCUSDT&endpoint=ws://127.0.0.1:{port}&backoff=100ms&max_backoff=500ms"
    );
    let mut command = tradeflow_command();
    command.env("FINNHUB_API_KEY", &key).args(["run", "-w", "2", "--source", &source, "--window", "1s"]);
    command.args(["--allowed-lateness", "2s", "--idle-timeout", "1s", "--lake", &file_url(&lake)]);
    command.args(["--progress-interval", "500ms", "--metrics-addr", &format!("127.0.0.1:{metrics_port}")]);
    let mut run = Running::spawn(command);
    let reconnected = run.wait_for_stderr(TIMEOUT, |s| s.contains("reconnected (connection 3)"));
    assert!(reconnected, "no second reconnect:\n{}", run.stderr_so_far());
    let metrics = get_metrics(metrics_port).unwrap_or_default();
    run.interrupt();
    let out = run.finish(TIMEOUT);
    let server_log = server.stderr_so_far();
    drop(server);
    out.assert_success("tradeflow run from the built-in server");

    // Every connection subscribed again to exactly the source's symbols.
    let subscriptions: Vec<&str> =
        server_log.lines().filter_map(|l| l.split(" subscribed to ").nth(1)).map(str::trim).collect();
    for symbol in ["\"AAPL\"", "\"BINANCE:BTCUSDT\""] {
        let times = subscriptions.iter().filter(|s| **s == symbol).count();
        assert!(times >= 3, "{symbol} subscribed {times} times (3 connections at least):\n{server_log}");
    }
    let others: Vec<_> = subscriptions.iter().filter(|s| !["\"AAPL\"", "\"BINANCE:BTCUSDT\""].contains(s)).collect();
    assert!(others.is_empty(), "subscribed to {others:?}");
    assert!(server_log.contains("dropped on purpose"), "{server_log}");

    let summary = out.summary();
    assert!(summary.accepted > 200, "{}", out.stderr);
    let trades = read_trades(&lake);
    assert_eq!(trades.len() as u64, summary.accepted, "trades in the lake vs accepted\n{}", out.stderr);
    let symbols: BTreeSet<&str> = trades.iter().map(|t| t.symbol.as_str()).collect();
    assert_eq!(symbols, BTreeSet::from(["AAPL", "BINANCE:BTCUSDT"]), "only the subscribed symbols arrive");
    let windows = read_window_metrics(&lake);
    assert_eq!(windows.iter().map(|w| w.trade_count).sum::<u64>(), summary.accepted, "trades in final windows");
    // Current timestamps: the trades happened during the run.
    let now = wall_ms();
    assert!(trades.iter().all(|t| t.ts > now - 120_000 && t.ts <= now), "timestamps are not current");
    // Only late trades (the simulator's disorder) may be dead-lettered.
    let dead = read_dead_letters(&lake);
    assert!(dead.iter().all(|d| d.reason == "late"), "{dead:?}");
    if !metrics.is_empty() {
        let series = format!("tradeflow_websocket_reconnects_total{{source=\"ws://127.0.0.1:{port}/?token=***\"}}");
        assert!(sample(&metrics, &series).is_some_and(|n| n >= 2.0), "{metrics}");
    }
    let letters: String = dead.iter().map(|d| format!("{d:?}\n")).collect();
    assert_no_secret(
        &key,
        &[("stdout", &out.stdout), ("stderr", &out.stderr), ("the dead letters", &letters), ("/metrics", &metrics)],
    );
}

/// The built-in server, seen by an independent client: per-connection subscribe and
/// unsubscribe, batched messages, pings, the too-many-symbols error, dropped
/// connections, and a replayed file at its own pace with current timestamps.
#[test]
fn the_built_in_server_speaks_finnhubs_protocol_to_another_client() {
    let Some(python) = ws_python() else { return };
    let dir = temp_dir();
    let [live, replayed] = free_ports(2)[..] else { unreachable!() };
    let _live = serve(
        live,
        &[
            "--symbols",
            "AAPL,MSFT,NVDA,BINANCE:BTCUSDT",
            "--rate",
            "600",
            "--ping-interval",
            "300ms",
            "--disconnect-every",
            "3s",
            "--max-symbols",
            "3",
        ],
    );
    let file = dir.path().join("replay.ndjson");
    simulate(&file, &["--symbols", "AAPL", "--count", "300", "--rate", "300", "--seed", "3", "--format", "mixed"]);
    let _replay = serve(replayed, &["--from", &file_url(&file), "--ping-interval", "5s"]);

    let mut command = Command::new(&python);
    command.arg(script("ws_client.py")).arg(format!("ws://127.0.0.1:{live}/?token=x"));
    command.arg(format!("ws://127.0.0.1:{replayed}/")).arg(&file);
    let out = Running::spawn(command).finish(TIMEOUT);
    assert!(out.success(), "ws_client.py failed:\n{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("all checks passed"), "{}", out.stdout);
}

/// Configuration errors stop the run at once and say what would fix them.
#[test]
fn finnhub_configuration_errors_name_the_fix() {
    let cases = [
        ("finnhub://?symbols=AAPL", "FINNHUB_API_KEY is not set"),
        ("finnhub://", "no symbols"),
        ("finnhub://?symbols=AAPL&token=abc", "set FINNHUB_API_KEY instead"),
        ("finnhub://?symbols=AAPL&endpoint=http://127.0.0.1:1", "ws://"),
        ("finnhub://?symbols=AAPL&silence=soon", "silence=\"soon\""),
    ];
    for (source, message) in cases {
        let out = run_tradeflow(&["run", "--no-lake", "--source", source], TIMEOUT);
        assert!(!out.success(), "{source} was accepted");
        assert!(out.stderr.contains(message), "{source}: no {message:?} in:\n{}", out.stderr);
        assert!(!out.stderr.contains("abc"), "{source}: the token is echoed:\n{}", out.stderr);
    }
}
