//! Issue 7: the live dashboard. With `--dashboard-addr` alone a paced simulator run
//! serves its page and embedded assets, a JSON snapshot and an event stream (a snapshot,
//! then coalesced updates), and `/metrics`. In a real headless Chromium the page's
//! charts and anomaly table fill and then update, the health panel shows the
//! throughput, picking another symbol redraws the charts, the range picker trims them to
//! the last N windows, nothing is fetched from outside, and a screenshot is saved (`TRADEFLOW_SCREENSHOT=path` keeps it, as for the
//! README's `docs/dashboard.png`).

use std::time::{Duration, Instant};
use tradeflow_tests::browser::Browser;
use tradeflow_tests::process::Running;
use tradeflow_tests::prometheus::{Exposition, http_get, http_get_limited};
use tradeflow_tests::{file_url, free_port, temp_dir, tradeflow_command};

/// A live run with `--dashboard-addr 127.0.0.1:{port}` (and no metrics address), with
/// one-second windows and anomaly rules loose enough to fire every few seconds.
fn live_run(lake: &std::path::Path, port: u16, symbols: &str) -> Running {
    let mut command = tradeflow_command();
    command.args([
        "run",
        "--source",
        &format!("sim://?rate=3000&symbols={symbols}"),
        "--window",
        "1s",
        "--allowed-lateness",
        "500ms",
        "--idle-timeout",
        "2s",
        "--spike-factor",
        "1.3",
        "--baseline-windows",
        "3",
        "--min-history",
        "2",
        "--jump-sigma",
        "1.5",
        "--volatility-windows",
        "4",
        "--lake",
        &file_url(lake),
        "--dashboard-addr",
        &format!("127.0.0.1:{port}"),
    ]);
    let mut run = Running::spawn(command);
    let line = format!("dashboard on http://127.0.0.1:{port}/");
    assert!(run.wait_for_stderr(Duration::from_secs(60), |s| s.contains(&line)), "{}", run.stderr_so_far());
    run
}

#[test]
fn the_dashboard_serves_its_page_snapshots_and_event_stream() {
    let dir = temp_dir();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let run = live_run(&dir.path().join("lake"), port, "AAPL,MSFT");

    let page = http_get(&addr, "/").expect("GET /");
    assert_eq!((page.status, page.header("content-type")), (200, Some("text/html; charset=utf-8")));
    for (path, kind) in [
        ("/app.js", "text/javascript"),
        ("/app.css", "text/css"),
        ("/vendor/uPlot.iife.min.js", "text/javascript"),
        ("/vendor/uPlot.min.css", "text/css"),
        ("/vendor/uPlot.LICENSE", "text/plain"),
    ] {
        assert!(page.body.contains(path) || path.ends_with("LICENSE"), "the page does not load {path}");
        let asset = http_get(&addr, path).expect("GET asset");
        assert_eq!(asset.status, 200, "{path}");
        assert!(asset.header("content-type").is_some_and(|t| t.starts_with(kind)), "{path}: {:?}", asset.headers);
    }
    assert_eq!(http_get(&addr, "/nope").unwrap().status, 404);

    // The snapshot fills as windows arrive.
    let deadline = Instant::now() + Duration::from_secs(45);
    let snapshot = loop {
        let body = http_get(&addr, "/api/snapshot?symbol=MSFT").expect("GET /api/snapshot").body;
        let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        if json["points"].as_array().is_some_and(|p| p.len() >= 2) {
            break json;
        }
        assert!(Instant::now() < deadline, "no windows in the snapshot within 45 s: {body}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(snapshot["symbol"], "MSFT");
    assert_eq!(snapshot["symbols"], serde_json::json!(["AAPL", "MSFT"]));
    assert_eq!(snapshot["info"]["window_ms"], 1000);
    assert!(snapshot["health"]["trades"].as_u64().unwrap() > 0);
    assert_eq!(snapshot["health"]["sinks"][0]["name"], "lake");
    let point = &snapshot["points"][0];
    assert_eq!(
        point.as_array().map(Vec::len),
        Some(10),
        "a point is [start, o, h, l, c, vwap, volume, n, final, marks]"
    );
    assert!(point[7].as_u64().unwrap() > 0);

    // The event stream: a snapshot of the symbol asked for, then updates every tick.
    let stream = http_get_limited(&addr, "/api/events?symbol=AAPL", 64 << 10, Duration::from_secs(2)).expect("events");
    assert_eq!(stream.header("content-type"), Some("text/event-stream"));
    assert!(stream.body.starts_with("event: snapshot\ndata: {"), "{}", &stream.body[..200.min(stream.body.len())]);
    let events: Vec<&str> = stream.body.split("\n\n").filter(|e| !e.is_empty()).collect();
    let updates = events.iter().filter(|e| e.starts_with("event: update\ndata: ")).count();
    assert!(updates >= 3, "{updates} updates in 2 s (one every 200 ms expected)");
    let first: serde_json::Value =
        serde_json::from_str(events[0].trim_start_matches("event: snapshot\ndata: ")).unwrap();
    assert_eq!(first["symbol"], "AAPL");

    // The dashboard's address serves /metrics too, with the dashboard's own series.
    let metrics = Exposition::parse(&http_get(&addr, "/metrics").expect("GET /metrics").body);
    assert!(metrics.sum("tradeflow_end_to_end_latency_seconds_count", &[("sink", "dashboard")]) > 0.0);
    assert!(metrics.types.contains_key("tradeflow_dashboard_clients"));

    run.interrupt();
    run.finish(Duration::from_secs(60)).assert_success("tradeflow run with --dashboard-addr");
}

#[test]
fn a_real_browser_sees_the_dashboard_fill_and_update() {
    let Some(browser) = Browser::find() else { return };
    let dir = temp_dir();
    let port = free_port();
    let run = live_run(&dir.path().join("lake"), port, "AAPL,MSFT,BINANCE:BTCUSDT,OANDA:EUR_USD");
    let screenshot =
        std::env::var_os("TRADEFLOW_SCREENSHOT").map_or_else(|| dir.path().join("dashboard.png"), Into::into);
    let url = format!("http://127.0.0.1:{port}/");
    let out = browser.run("dashboard.mjs", &[&url, &screenshot.to_string_lossy()], Duration::from_secs(120));
    assert!(
        out.success(),
        "the browser check failed:\n{}\n{}\ntradeflow:\n{}",
        out.stderr,
        out.stdout,
        run.stderr_so_far()
    );
    let seen: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("the script's JSON");

    let (first, later) = (&seen["first"], &seen["later"]);
    assert!(first["points"].as_u64().unwrap() >= 3, "{seen}");
    assert!(first["canvas"][0].as_u64().unwrap() > 300 && first["canvas"][1].as_u64().unwrap() > 100, "{seen}");
    assert!(later["last"].as_u64() > first["last"].as_u64(), "no newer window on the chart: {seen}");
    assert!(later["updates"].as_u64().unwrap() >= first["updates"].as_u64().unwrap() + 5, "{seen}");
    assert!(!seen["firstAnomalies"].as_array().unwrap().is_empty(), "{seen}");
    assert_ne!(seen["firstAnomalies"], seen["laterAnomalies"], "the anomaly table never changed");
    let throughput = seen["health"]["throughput"].as_str().unwrap();
    assert!(throughput.ends_with("trades/s") && !throughput.starts_with("0 "), "{throughput}");
    assert!(seen["sinks"][0].as_str().unwrap().starts_with("lake"), "{seen}");
    assert_ne!(seen["picked"]["symbol"], later["symbol"], "{seen}");
    assert!(seen["picked"]["title"].as_str().unwrap().starts_with(seen["picked"]["symbol"].as_str().unwrap()));
    // The range picker trims the charts to the last N windows and back.
    assert_eq!(seen["ranged"]["points"], 10, "{seen}");
    assert_eq!(seen["ranged"]["volumePoints"], 10, "{seen}");
    assert!(seen["unranged"]["points"].as_u64().unwrap() > 10, "{seen}");
    assert_eq!(seen["errors"], serde_json::json!([]), "errors in the page");
    assert_eq!(seen["external"], serde_json::json!([]), "the page fetched something from outside");

    let png = std::fs::read(&screenshot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 20_000, "{} bytes", png.len());
    run.interrupt();
    run.finish(Duration::from_secs(60)).assert_success("tradeflow run with --dashboard-addr");
}
