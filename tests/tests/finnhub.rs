//! The `finnhub://` source (SPEC 2, 6, 8) against two servers that speak Finnhub's
//! protocol: a scripted one written with another library (Python's `websockets`,
//! `tests/python/ws_finnhub.py`) whose every frame is known, and the built-in
//! `tradeflow simulate --serve`, itself checked by an independent client
//! (`tests/python/ws_client.py`); and `tradeflow produce` from the feed into a real
//! Kafka-protocol broker (`tansu`, see `tradeflow_tests::kafka`). The API key, set to a
//! distinctive secret, must never appear in stdout, stderr, the lake, Kafka records or
//! `/metrics`.
//!
//! Without a Python that has `websockets` (or without tansu) those checks say why and
//! pass, unless `TRADEFLOW_REQUIRE_READERS=1` (`TRADEFLOW_REQUIRE_KAFKA=1`), as `.ci/run`
//! sets.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tradeflow_model::RejectReason;
use tradeflow_tests::expect::Knobs;
use tradeflow_tests::finnhub::{
    assert_no_secret, expected_from_frames, file_names, get_metrics, sample, script, serve, ws_python,
};
use tradeflow_tests::kafka::Broker;
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
    /// Seconds the client waited on the silent connection (not in the quiet scenario).
    silence_closed: Option<f64>,
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
        silence_closed: json["silence_closed"].as_f64(),
    }
}

/// `ws_finnhub.py SENT SYMBOLS [quiet]`, listening; the process and its port.
fn scripted_server(python: &std::path::Path, sent: &std::path::Path, symbols: &[&str], quiet: bool) -> (Running, u16) {
    let mut command = Command::new(python);
    command.arg(script("ws_finnhub.py")).arg(sent).arg(symbols.join(","));
    if quiet {
        command.arg("quiet");
    }
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
    (server, port)
}

/// The log lines holding `text`; each must be a warning.
fn warnings_with<'a>(stderr: &'a str, text: &str) -> Vec<&'a str> {
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains(text)).collect();
    for line in &lines {
        assert!(line.contains(" WARN "), "not logged as a warning: {line}");
    }
    lines
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
    let (mut server, port) = scripted_server(&python, &sent_path, &symbols, false);

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
    let waited = sent.silence_closed.expect("the client left the silent connection");
    assert!(waited > 1.0 && waited < 10.0, "left a silent connection after {waited}s");

    // Logs: the error is a warning naming its cause; both gaps are logged; the silence is named.
    let stderr = &out.stderr;
    let warned = warnings_with(stderr, "Subscribing to too many symbols");
    assert!(
        warned.len() == 1 && warned[0].contains("free tier") && warned[0].contains("connection 1"),
        "the server's error is not surfaced once as a warning naming the free tier:\n{stderr}"
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
    let metrics = metrics.expect("/metrics answered while the run was going");
    let series = format!("{{source=\"{label}\"}}");
    assert_eq!(sample(&metrics, &format!("tradeflow_websocket_reconnects_total{series}")), Some(2.0), "{metrics}");
    assert_eq!(sample(&metrics, &format!("tradeflow_websocket_gap_seconds_count{series}")), Some(2.0), "{metrics}");
    // The silent connection's gap runs from its last frame: at least `silence`.
    let total = sample(&metrics, &format!("tradeflow_websocket_gap_seconds_sum{series}")).unwrap_or_default();
    assert!((1.5..30.0).contains(&total), "gaps lasting {total}s in all:\n{metrics}");
    for reason in ["error", "silence"] {
        let lost = format!("tradeflow_websocket_disconnects_total{{reason=\"{reason}\",source=\"{label}\"}}");
        assert_eq!(sample(&metrics, &lost), Some(1.0), "{metrics}");
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

/// The built-in server drops every connection after 2 s and takes two symbols per
/// connection; a two-worker run asking for three reconnects and resubscribes each time,
/// warns each time that the third was refused (naming the free tier's limit), receives
/// only the two symbols the server accepted, and loses nothing it accepted.
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
            "--max-symbols",
            "2",
        ],
    );
    let dir = temp_dir();
    let lake = dir.path().join("lake");
    let key = secret();
    let source = format!(
        "finnhub://?symbols=AAPL,BINANCE:BTCUSDT,MSFT&endpoint=ws://127.0.0.1:{port}&backoff=100ms&max_backoff=500ms"
    );
    let mut command = tradeflow_command();
    command.env("FINNHUB_API_KEY", &key).args(["run", "-w", "2", "--source", &source, "--window", "1s"]);
    command.args(["--allowed-lateness", "2s", "--idle-timeout", "1s", "--lake", &file_url(&lake)]);
    command.args(["--progress-interval", "500ms", "--metrics-addr", &format!("127.0.0.1:{metrics_port}")]);
    let mut run = Running::spawn(command);
    let reconnected = run.wait_for_stderr(TIMEOUT, |s| {
        s.contains("reconnected (connection 3)") && s.matches("Subscribing to too many symbols").count() >= 3
    });
    assert!(reconnected, "no second reconnect, or no error on each connection:\n{}", run.stderr_so_far());
    let metrics = get_metrics(metrics_port).expect("/metrics answered while the run was going");
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
    // One socket for the run, not one per worker: the server saw exactly its connections.
    let opened = server_log.matches(" connected from ").count() as u64;
    let last = out
        .stderr
        .lines()
        .filter_map(|l| l.split("reconnected (connection ").nth(1)?.split(')').next()?.parse::<u64>().ok())
        .max();
    assert_eq!(Some(opened), last, "connections the server saw vs the run's last:\n{server_log}\n{}", out.stderr);
    // The third symbol, refused on every connection: a warning naming the cause each time.
    let refused = server_log.matches("refused \"MSFT\"").count();
    assert!(refused >= 3, "MSFT refused {refused} times:\n{server_log}");
    let warned = warnings_with(&out.stderr, "\"Subscribing to too many symbols\"");
    assert!(warned.len() >= 3 && warned.len() <= refused, "one warning per refusal:\n{}", out.stderr);
    for line in warned {
        assert!(line.contains("free tier") && line.contains("subscribes to 3"), "{line}");
    }

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
    let series = format!("tradeflow_websocket_reconnects_total{{source=\"ws://127.0.0.1:{port}/?token=***\"}}");
    assert!(sample(&metrics, &series).is_some_and(|n| n >= 2.0), "{metrics}");
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

/// A market gone quiet: the scripted server sends trades for 1.5 s, then nothing at all
/// (no trade, no ping, no WebSocket ping). With the default silence timeout (90 s) the
/// connection is kept, and the watermark follows the wall clock: every window, the last
/// ones included, becomes final in the lake while the run is still going, as the
/// reference computes it.
#[test]
fn windows_close_on_the_wall_clock_while_the_feed_says_nothing() {
    let Some(python) = ws_python() else { return };
    let dir = temp_dir();
    let sent_path = dir.path().join("sent.json");
    let symbols = ["AAPL", "MSFT", "BINANCE:BTCUSDT"];
    let (mut server, port) = scripted_server(&python, &sent_path, &symbols, true);
    let key = secret();
    let knobs = Knobs { window_ms: 1_000, lateness_ms: 1_000, ..Knobs::default() };
    let lake = dir.path().join("lake");
    let source = format!("finnhub://?symbols={}&endpoint=ws://127.0.0.1:{port}", symbols.join(","));
    let mut command = tradeflow_command();
    command.env("FINNHUB_API_KEY", &key).args(["run", "--source", &source, "--idle-timeout", "1s"]);
    command.args(knobs.args()).args(["--progress-interval", "200ms", "--lake", &file_url(&lake)]);
    let mut run = Running::spawn(command);

    let done = server.wait_for_stderr(TIMEOUT, |s| s.contains("scenario done"));
    assert!(done, "the scenario did not finish.\nserver:\n{}\nrun:\n{}", server.stderr_so_far(), run.stderr_so_far());
    let sent = read_sent(&sent_path);
    let expected = expected_from_frames(&sent.frames, knobs.lateness_ms, &format!("ws://127.0.0.1:{port}/?token=***"));
    let (windows, anomalies) = expected.results(&knobs);
    let last_trade = expected.accepted.iter().map(|t| t.ts).max().expect("trades were sent");
    assert!(windows.len() >= 2 * symbols.len(), "only {} windows", windows.len());

    // Nothing arrives any more; the last windows can only close on the wall clock.
    let closed = run.wait_for_stderr(Duration::from_secs(20), |s| final_windows(s) >= windows.len() as u64);
    assert!(closed, "windows did not close on a silent feed ({} expected):\n{}", windows.len(), run.stderr_so_far());
    let stopped_at = wall_ms();
    run.interrupt();
    let out = run.finish(TIMEOUT);
    let server_log = server.stderr_so_far();
    drop(server);
    out.assert_success("tradeflow run from a quiet server");

    // The quiet was not taken for a dead connection.
    assert_eq!(sent.tokens, vec![Some(key.clone())]);
    assert!(!server_log.contains("connection 2 opened"), "the client reconnected:\n{server_log}");
    assert!(!out.stderr.contains("lost after"), "{}", out.stderr);

    let summary = out.summary();
    assert_eq!(summary.accepted, expected.accepted.len() as u64, "{}", out.stderr);
    assert_eq!(summary.by_reason, expected.reject_counts(), "{}", out.stderr);
    let mut trades = read_trades(&lake);
    trades.sort();
    assert_eq!(trades, expected.lake_trades(), "the lake's trades");
    let mut lake_windows = read_window_metrics(&lake);
    lake_windows.sort();
    assert_eq!(lake_windows, windows, "the lake's window metrics");
    assert_eq!(summary.anomalies_final, anomalies.len() as u64);
    // Final before Ctrl-C, and the last of them past the last trade: the wall clock did it.
    let finals: Vec<_> = read_metrics_changelog(&lake).into_iter().filter(|u| u.row.is_final).collect();
    let at_stop: Vec<_> = finals.iter().filter(|u| u.time >= stopped_at).collect();
    assert!(at_stop.is_empty(), "windows final only at Ctrl-C: {at_stop:?}");
    let latest = finals.iter().map(|u| u.time).max().expect("final windows in the changelog");
    assert!(latest > last_trade, "the last window became final at {latest}, before the last trade ({last_trade})");
    assert_no_secret(
        &key,
        &[("stdout", &out.stdout), ("stderr", &out.stderr), ("the lake's file names", &file_names(&lake))],
    );
}

/// `tradeflow produce --from finnhub://... --to kafka://...` (the original design's
/// producer) through the scripted feed's drops, silence, malformed frames and error
/// message: interrupted once the feed has said everything, it sends every trade received,
/// waits for the deliveries and prints its summary (malformed input counted by reason,
/// not sent); a bounded replay of the topic then holds every trade the server sent exactly
/// once, in the reference's windows. The key appears in no output, record or file.
#[test]
fn produce_sends_a_live_feed_to_kafka_and_a_replay_holds_every_trade_once() {
    let Some(python) = ws_python() else { return };
    let Some(broker) = Broker::start() else { return };
    let dir = temp_dir();
    let sent_path = dir.path().join("sent.json");
    let symbols = ["AAPL", "MSFT", "BINANCE:BTCUSDT"];
    let (mut server, port) = scripted_server(&python, &sent_path, &symbols, false);
    let key = secret();
    let source = format!(
        "finnhub://?symbols={}&endpoint=ws://127.0.0.1:{port}&silence=1500ms&backoff=100ms&max_backoff=400ms",
        symbols.join(",")
    );
    let mut command = tradeflow_command();
    command.env("FINNHUB_API_KEY", &key).args(["produce", "--from", &source, "--to", &broker.url("live", "")]);
    command.args(["--partitions", "2", "--progress-interval", "0"]);
    let produce = Running::spawn(command);
    let done = server.wait_for_stderr(TIMEOUT, |s| s.contains("scenario done"));
    assert!(
        done,
        "the scenario did not finish.\nserver:\n{}\nproduce:\n{}",
        server.stderr_so_far(),
        produce.stderr_so_far()
    );
    // The server has seen the client read every frame: Ctrl-C now must lose none of them.
    produce.interrupt();
    let out = produce.finish(TIMEOUT);
    drop(server);
    out.assert_success("tradeflow produce from the scripted server");
    let sent = read_sent(&sent_path);
    // Nothing is late for a producer: every valid trade is sent.
    let lateness_ms = 60_000;
    let label = format!("ws://127.0.0.1:{port}/?token=***");
    let expected = expected_from_frames(&sent.frames, lateness_ms, &label);
    assert!(expected.rejects.iter().all(|r| r.reason != RejectReason::Late));

    // Three connections, each subscribing to every symbol with the key; both gaps logged;
    // the server's error a warning naming its cause.
    let stderr = &out.stderr;
    assert_eq!(sent.tokens, vec![Some(key.clone()); 3]);
    assert!(sent.subscriptions.iter().all(|s| s.len() == symbols.len()), "{:?}", sent.subscriptions);
    assert!(stderr.contains("reconnected (connection 2)") && stderr.contains("reconnected (connection 3)"), "{stderr}");
    assert!(stderr.contains("silence timeout"), "{stderr}");
    let warned = warnings_with(stderr, "Subscribing to too many symbols");
    assert!(warned.len() == 1 && warned[0].contains("free tier"), "the server's error is not surfaced:\n{stderr}");

    // The summary: everything received sent and delivered; malformed input counted.
    assert!(stderr.contains("Ctrl-C: stopping"), "{stderr}");
    let summary = ProduceSummary::parse(stderr);
    assert_eq!(summary.sent, expected.accepted.len() as u64, "{stderr}");
    assert_eq!((summary.delivered, summary.failed), (summary.sent, 0), "{stderr}");
    assert_eq!(summary.rejected, expected.reject_counts(), "{stderr}");

    // The topic, read by the outside client: each trade once, keyed by its symbol.
    let topic = broker.consume("live");
    assert_eq!(topic.records.len(), expected.accepted.len());
    for record in &topic.records {
        let value = String::from_utf8_lossy(&record.value);
        assert!(value.contains(&format!("\"s\":{}", serde_json::to_string(&record.key).unwrap())), "{value}");
    }
    let records: String =
        topic.records.iter().map(|r| format!("{} {}\n", r.key, String::from_utf8_lossy(&r.value))).collect();

    // A bounded replay of the topic: every trade the server sent, exactly once.
    let knobs = Knobs { window_ms: 1_000, lateness_ms, ..Knobs::default() };
    let lake = dir.path().join("lake");
    let mut command = tradeflow_command();
    command.args(["run", "--source", &broker.url("live", "end=latest"), "--lake", &file_url(&lake)]);
    command.args(knobs.args()).args(["--progress-interval", "0"]);
    let replay = Running::spawn(command).finish(TIMEOUT);
    replay.assert_success("tradeflow run replaying the topic");
    let replayed = replay.summary();
    assert_eq!((replayed.accepted, replayed.rejected), (expected.accepted.len() as u64, 0), "{}", replay.stderr);
    let mut trades = read_trades(&lake);
    trades.sort();
    assert_eq!(trades, expected.lake_trades(), "the lake's trades");
    let (windows, anomalies) = expected.results(&knobs);
    let mut lake_windows = read_window_metrics(&lake);
    lake_windows.sort();
    assert_eq!(lake_windows, windows, "the lake's window metrics");
    assert_eq!(replayed.windows_final, windows.len() as u64);
    assert_eq!(replayed.anomalies_final, anomalies.len() as u64);

    assert_no_secret(
        &key,
        &[
            ("produce's stdout", &out.stdout),
            ("produce's stderr", stderr),
            ("the topic's records", &records),
            ("the replay's stdout", &replay.stdout),
            ("the replay's stderr", &replay.stderr),
            ("the lake's file names", &file_names(&lake)),
        ],
    );
}

/// A server refusing the key (HTTP 401 on the WebSocket handshake, as Finnhub answers a
/// bad token) is not retried: `run` and `produce` each stop after one attempt with an
/// error that says to check FINNHUB_API_KEY, and neither shows the key.
#[test]
fn a_refused_key_stops_run_and_produce_with_an_error() {
    let Some(broker) = Broker::start() else { return };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    let port = listener.local_addr().expect("an address").port();
    let attempts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = attempts.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") && std::io::Read::read(&mut stream, &mut byte).is_ok_and(|n| n == 1) {
                request.push(byte[0]);
            }
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let reply = "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
            let _ = std::io::Write::write_all(&mut stream, reply.as_bytes());
        }
    });
    let key = secret();
    let source = format!("finnhub://?symbols=AAPL&endpoint=ws://127.0.0.1:{port}&backoff=100ms");
    let commands: [&[&str]; 2] = [
        &["run", "--no-lake", "--source", &source],
        &["produce", "--from", &source, "--to", &broker.url("refused", ""), "--progress-interval", "0"],
    ];
    for (i, args) in commands.into_iter().enumerate() {
        let mut command = tradeflow_command();
        command.env("FINNHUB_API_KEY", &key).args(args);
        let out = Running::spawn(command).finish(TIMEOUT);
        assert!(!out.success(), "{} went on with a refused key:\n{}", args[0], out.stderr);
        assert!(
            out.stderr.contains("refused the API key") && out.stderr.contains("check FINNHUB_API_KEY"),
            "{}: {}",
            args[0],
            out.stderr
        );
        assert_eq!(attempts.load(std::sync::atomic::Ordering::SeqCst), i + 1, "{}: retried a refused key", args[0]);
        assert_no_secret(&key, &[("stdout", &out.stdout), ("stderr", &out.stderr)]);
    }
}

/// The numbers of `tradeflow produce`'s summary.
struct ProduceSummary {
    sent: u64,
    delivered: u64,
    failed: u64,
    /// Input rejected, by reason.
    rejected: BTreeMap<String, u64>,
}

impl ProduceSummary {
    fn parse(stderr: &str) -> ProduceSummary {
        let start = stderr.rfind("tradeflow produce finished").unwrap_or_else(|| panic!("no summary:\n{stderr}"));
        let line = |label: &str| -> &str {
            stderr[start..]
                .lines()
                .map(str::trim_start)
                .find_map(|l| l.strip_prefix(label))
                .unwrap_or_else(|| panic!("no {label:?} line in\n{stderr}"))
                .trim()
        };
        let number = |text: &str| -> u64 { text.replace(',', "").parse().unwrap_or_else(|_| panic!("{text:?}")) };
        let first = |label: &str| number(line(label).split_whitespace().next().unwrap_or_default());
        let mut rejected = BTreeMap::new();
        if let Some((_, reasons)) = line("input rejected").split_once('(') {
            for reason in reasons.trim_end_matches(')').trim_end_matches("; not sent").split(", ") {
                let (name, n) = reason.split_once(' ').unwrap_or_else(|| panic!("{reason:?}"));
                rejected.insert(name.to_owned(), number(n));
            }
        }
        ProduceSummary { sent: first("trades sent"), delivered: first("delivered"), failed: first("failed"), rejected }
    }
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

/// A `finnhub://` run with `--checkpoint-interval`, killed with SIGKILL, then started
/// again with the same command (and `--drain`, so that its Ctrl-C finalises and writes
/// everything): it resumes the job's window state and lateness clocks from the checkpoint
/// and goes on from the live feed. What arrived between the checkpoint and the kill is lost
/// (a WebSocket cannot be re-read), but nothing is duplicated or half-counted: every window
/// is final once, its count equals the trades the lake holds for it, and a window open at
/// the kill holds trades received by both runs.
#[test]
fn a_killed_finnhub_run_resumes_its_windows_from_the_checkpoint() {
    let [port] = free_ports(1)[..] else { unreachable!() };
    let server = serve(port, &["--symbols", "AAPL,MSFT", "--rate", "400", "--ping-interval", "500ms"]);
    let dir = temp_dir();
    let lake = dir.path().join("lake");
    let source = format!("finnhub://?symbols=AAPL,MSFT&endpoint=ws://127.0.0.1:{port}");
    let command = |extra: &[&str]| {
        let mut command = tradeflow_command();
        command.env("FINNHUB_API_KEY", secret()).args(["run", "--source", &source, "--window", "6s"]);
        command.args(["--allowed-lateness", "1s", "--idle-timeout", "1s", "--lake", &file_url(&lake)]);
        command.args(["--checkpoint-interval", "100ms", "--progress-interval", "200ms", "--job", "feed"]);
        command.args(extra);
        command
    };
    let mut first = Running::spawn(command(&[]));
    let some_final = first.wait_for_stderr(TIMEOUT, |e| final_windows(e) >= 2);
    assert!(some_final, "no final windows in the first run:\n{}", first.stderr_so_far());
    // 1.5 s into a window: some of its trades checkpointed, and 4 s left for the second
    // run to start and receive more of them.
    while !(1_500..2_000).contains(&wall_ms().rem_euclid(6_000)) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let killed_at = wall_ms();
    first.kill9();
    let first = first.finish(TIMEOUT);

    let mut second = Running::spawn(command(&["--drain"]));
    let resumed = second.wait_for_stderr(TIMEOUT, |e| e.contains("resuming job"));
    assert!(resumed, "the second run did not resume:\n{}\nfirst run:\n{}", second.stderr_so_far(), first.stderr);
    let resumed_at = wall_ms();
    let more = second.wait_for_stderr(TIMEOUT, |e| final_windows(e) >= 3);
    assert!(more, "no window became final after the resume:\n{}", second.stderr_so_far());
    second.interrupt();
    let second = second.finish(TIMEOUT);
    drop(server);
    second.assert_success("the resumed run");
    let both = format!("first run:\n{}\nsecond run:\n{}", first.stderr, second.stderr);

    let windows = read_window_metrics(&lake);
    let keys: BTreeSet<(String, i64)> =
        windows.iter().map(|w| (w.symbol.as_str().to_owned(), w.window_start)).collect();
    assert_eq!(keys.len(), windows.len(), "a window is final twice\n{both}");
    let trades = read_trades(&lake);
    for w in &windows {
        let held: Vec<_> = trades
            .iter()
            .filter(|t| t.symbol == w.symbol.as_str() && t.ts >= w.window_start && t.ts < w.window_end)
            .collect();
        assert_eq!(held.len() as u64, w.trade_count, "window {w:?}: its count vs the lake's trades\n{both}");
    }
    // A window open at the kill kept what the first run had checkpointed, and took what the
    // second run received: its state came from the checkpoint.
    let straddles = windows.iter().any(|w| {
        let inside = |t: &&tradeflow_tests::lake::LakeTrade| {
            t.symbol == w.symbol.as_str() && t.ts >= w.window_start && t.ts < w.window_end
        };
        trades.iter().filter(inside).any(|t| t.ts < killed_at - 500)
            && trades.iter().filter(inside).any(|t| t.ts > resumed_at)
    });
    assert!(straddles, "no final window holds trades from both runs: the window state was not resumed\n{both}");
}
