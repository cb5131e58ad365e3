//! Issue 7: the live dashboard. With `--dashboard-addr` alone a paced simulator run
//! serves its page and embedded assets, a JSON snapshot and an event stream (a snapshot,
//! then coalesced updates), and `/metrics`. In a real headless Chromium the page's
//! charts and anomaly table fill and then update, the health panel shows the
//! throughput, the symbol search finds another symbol by a partial lower-case query and
//! picking it (a click, or the arrow keys and Enter) redraws the charts, the range picker
//! trims them to the last N windows, the value axes' labels fit their axis (compact for
//! volumes in the billions), the status line says "live · N symbols" whenever the charts
//! show windows, nothing is fetched from outside, and a screenshot is saved
//! (`TRADEFLOW_SCREENSHOT=path` keeps it, as for the README's `docs/dashboard.png`).
//! Issue 12: with 2,000 symbols the page gets them all, keeps at most 50 suggestions in
//! its DOM, stays responsive, and the search finds one of them and shows it.

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
    ]);
    serving_dashboard(command, port)
}

/// Starts `command`, a `tradeflow run`, with `--dashboard-addr 127.0.0.1:{port}`, and
/// waits until it serves the page.
fn serving_dashboard(mut command: std::process::Command, port: u16) -> Running {
    command.args(["--dashboard-addr", &format!("127.0.0.1:{port}")]);
    let mut run = Running::spawn(command);
    let line = format!("dashboard on http://127.0.0.1:{port}/");
    assert!(run.wait_for_stderr(Duration::from_secs(60), |s| s.contains(&line)), "{}", run.stderr_so_far());
    run
}

/// Runs `tests/js/dashboard.mjs` against the page of `run` (on `port`) with `args` after
/// the URL; what the script saw, as JSON.
fn browse(browser: &Browser, run: &Running, port: u16, args: &[&str], timeout: Duration) -> serde_json::Value {
    let url = format!("http://127.0.0.1:{port}/");
    let all: Vec<&str> = std::iter::once(url.as_str()).chain(args.iter().copied()).collect();
    let out = browser.run("dashboard.mjs", &all, timeout);
    assert!(
        out.success(),
        "the browser check failed:\n{}\n{}\ntradeflow:\n{}",
        out.stderr,
        out.stdout,
        run.stderr_so_far()
    );
    serde_json::from_str(out.stdout.trim()).expect("the script's JSON")
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
    let seen = browse(&browser, &run, port, &[&screenshot.to_string_lossy()], Duration::from_secs(120));

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
    // The search: a partial lower-case query (not the symbol's start) found it; the arrow
    // keys and Enter picked the first symbol again.
    let query = seen["search"]["query"].as_str().unwrap();
    let picked = seen["picked"]["symbol"].as_str().unwrap();
    assert!(query.len() >= 2 && query == query.to_lowercase() && picked.to_lowercase()[1..].contains(query), "{seen}");
    assert!((1..=50).contains(&seen["search"]["suggestions"].as_u64().unwrap()), "{seen}");
    assert_eq!(seen["keyboard"]["how"], "keys", "{seen}");
    assert_eq!(seen["pickedAgain"]["symbol"], later["symbol"], "{seen}");
    // The status line: live, the symbols counted, never anything else while the charts
    // showed windows.
    for key in ["firstStatus", "status", "pickedStatus"] {
        let text = seen[key]["text"].as_str().unwrap();
        assert!(text.starts_with("live · 4 symbols · last update "), "{key}: {text}");
    }
    assert_eq!(seen["staleStatus"], serde_json::json!([]), "{seen}");
    // The value axes: every label fits its axis; volumes in the billions read 5B, 10B.
    for axes in ["axes", "bigAxes"] {
        for chart in ["price", "volume"] {
            let axis = &seen[axes][chart];
            assert!(axis["widest"].as_f64().unwrap() <= axis["room"].as_f64().unwrap(), "{axes} {chart}: {axis}");
        }
    }
    let big: Vec<&str> =
        seen["bigAxes"]["volume"]["labels"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    assert!(big.iter().any(|l| l.ends_with('B')) && big.iter().all(|l| l.len() <= 6 && !l.contains(',')), "{big:?}");
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

#[test]
fn the_dashboard_stays_usable_with_thousands_of_symbols() {
    let Some(browser) = Browser::find() else { return };
    let dir = temp_dir();
    let port = free_port();
    let symbols: Vec<String> =
        (0..2000).map(|i| if i % 4 == 0 { format!("BINANCE:C{i:04}USDT") } else { format!("S{i:04}") }).collect();
    // The default lateness and idle timeout, no lake: the page is what is tested here.
    let mut command = tradeflow_command();
    command.args([
        "run",
        "--no-lake",
        "--source",
        &format!("sim://?rate=3000&symbols={}", symbols.join(",")),
        "--window",
        "1s",
    ]);
    let run = serving_dashboard(command, port);
    let screenshot = dir.path().join("dashboard-symbols.png");
    let seen = browse(&browser, &run, port, &[&screenshot.to_string_lossy(), "2000"], Duration::from_secs(180));
    assert_eq!(seen["first"]["symbols"], 2000, "{seen}");
    // At most 50 suggestions, and no element per symbol anywhere in the page.
    assert_eq!(seen["opened"]["suggestions"], 50, "{seen}");
    assert!(seen["opened"]["more"].as_str().unwrap().contains("50 of 2,000"), "{seen}");
    assert!(seen["opened"]["elements"].as_u64().unwrap() < 2000, "{seen}");
    // Responsive: frames kept coming while updates streamed in, and the search answered.
    assert!(seen["frames"]["worstMs"].as_u64().unwrap() < 1000, "{seen}");
    assert!(seen["search"]["ms"].as_u64().unwrap() < 5000, "{seen}");
    // The symbol found by a partial lower-case query is shown.
    let picked = seen["picked"]["symbol"].as_str().unwrap();
    assert!(symbols.iter().any(|s| s == picked), "{seen}");
    assert!(picked.to_lowercase().contains(seen["search"]["query"].as_str().unwrap()), "{seen}");
    assert_eq!(seen["picked"]["title"], format!("{picked}: price and VWAP"), "{seen}");
    assert!(seen["picked"]["points"].as_u64().unwrap() >= 1, "{seen}");
    assert!(seen["status"]["text"].as_str().unwrap().starts_with("live · 2,000 symbols · "), "{seen}");
    assert_eq!(seen["staleStatus"], serde_json::json!([]), "{seen}");
    assert_eq!(seen["errors"], serde_json::json!([]), "errors in the page");
    assert_eq!(seen["external"], serde_json::json!([]), "the page fetched something from outside");
    run.interrupt();
    run.finish(Duration::from_secs(120)).assert_success("tradeflow run with 2,000 symbols and --dashboard-addr");
}
