//! Issue 13, the research notebook (`examples/notebooks/incremental_view.ipynb`), executed
//! end to end by papermill against a run made for it: a simulated market of two symbols
//! streamed into `tradeflow run --source -` a few trades at a time, so that every window
//! goes through provisional versions, with one out-of-order AAPL trade (inside the allowed
//! lateness) that cancels a price jump an earlier trade of the same window had made: the
//! jump is live for a while, then retracted.
//!
//! The notebook asserts what it shows (its cells fail otherwise); this test then checks
//! that every cell ran without error, that the plots are in the output as PNG images, and
//! that the figures it printed agree with the lake as the Rust reader sees it: the final
//! rows, the retracted jump at the injected window, that window's VWAP update by update,
//! the collection rebuilt as of the notebook's processing time from the changelog, and the
//! number of volatilities it recomputed. A run with the wrong `volatility_windows` must fail
//! the notebook's volatility check.
//!
//! papermill comes from `TRADEFLOW_PAPERMILL` (`.ci/run` installs it with the analytics
//! tools, `analytics/requirements.txt`); without it the test skips, unless
//! `TRADEFLOW_REQUIRE_NOTEBOOK=1`.

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tradeflow_tests::lake::{consolidate, read_anomalies, read_metrics_changelog, read_window_metrics};
use tradeflow_tests::process::Running;
use tradeflow_tests::{Summary, simulate, temp_dir, tradeflow_command};

/// Window size of the run (event time).
const WINDOW_MS: i64 = 1_000;
/// The run's `--volatility-windows`.
const VOLATILITY_WINDOWS: &str = "20";
/// Trades written to the pipe at once.
const BATCH: usize = 5;

/// papermill from `TRADEFLOW_PAPERMILL`, or `None` (after saying why) when it is missing
/// and not required.
fn papermill() -> Option<PathBuf> {
    let required = std::env::var("TRADEFLOW_REQUIRE_NOTEBOOK").is_ok_and(|v| v == "1");
    let problem = match std::env::var_os("TRADEFLOW_PAPERMILL") {
        None => "TRADEFLOW_PAPERMILL is not set".to_owned(),
        Some(path) => match Command::new(&path).arg("--help").output() {
            Ok(out) if out.status.success() => return Some(PathBuf::from(path)),
            Ok(out) => format!("`{} --help` failed: {}", path.to_string_lossy(), String::from_utf8_lossy(&out.stderr)),
            Err(e) => format!("TRADEFLOW_PAPERMILL={} cannot be run: {e}", path.to_string_lossy()),
        },
    };
    assert!(!required, "TRADEFLOW_REQUIRE_NOTEBOOK=1 but {problem} (.ci/run installs analytics/requirements.txt)");
    eprintln!("skipping: {problem}; set TRADEFLOW_PAPERMILL to papermill of analytics/requirements.txt");
    None
}

fn notebook() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .join("examples/notebooks/incremental_view.ipynb")
}

/// One line of the simulated market.
struct Line {
    text: String,
    symbol: String,
    price: f64,
    ts: i64,
    volume: f64,
}

/// The out-of-order scenario added to the market: at `window` (an AAPL window), a trade 2 %
/// above the last price, written with the window's first trades, and one 2 % below with the
/// same volume and a timestamp inside the same window, written 2.5 s of event time later
/// (the allowed lateness is 5 s): together they leave the VWAP where it was.
struct Scenario {
    window: i64,
    jump: String,
    correction: String,
    jump_before: usize,
    correction_before: usize,
}

fn read_market(path: &Path) -> Vec<Line> {
    std::fs::read_to_string(path)
        .expect("reading the simulated market")
        .lines()
        .map(|text| {
            let v: Value = serde_json::from_str(text).expect("a flat trade");
            Line {
                text: text.to_owned(),
                symbol: v["s"].as_str().expect("s").to_owned(),
                price: v["p"].as_f64().expect("p"),
                ts: v["t"].as_i64().expect("t"),
                volume: v["v"].as_f64().expect("v"),
            }
        })
        .collect()
}

fn scenario(market: &[Line]) -> Scenario {
    let (first, last) = (market[0].ts, market[market.len() - 1].ts);
    let window = (first + (last - first) * 6 / 10) / WINDOW_MS * WINDOW_MS;
    let aapl = |l: &&Line| l.symbol == "AAPL";
    let reference = market.iter().filter(aapl).rfind(|l| l.ts < window).expect("AAPL trades before").price;
    let volume: f64 =
        market.iter().filter(aapl).filter(|l| (window..window + WINDOW_MS).contains(&l.ts)).map(|l| l.volume).sum();
    let half = (volume / 2.0).floor().max(1.0);
    let trade = |price: f64, ts: i64| format!(r#"{{"s":"AAPL","p":{price:.2},"t":{ts},"v":{half},"c":null}}"#);
    let position = |ts: i64| market.iter().position(|l| l.ts >= ts).expect("the market goes on");
    Scenario {
        window,
        jump: trade(reference * 1.02, window + 1),
        correction: trade(reference * 0.98, window + 2),
        jump_before: position(window),
        correction_before: position(window + 2_500),
    }
}

/// Streams the market (with the scenario) into `tradeflow run --source -`, `BATCH` lines
/// at a time, each block its own epoch; the two scenario trades are written alone, with a
/// pause around them so that the pipeline has published the jump before the correction.
fn run_streamed(market: &[Line], scenario: &Scenario, lake: &Path, stderr_path: &Path) -> Summary {
    let mut command = tradeflow_command();
    command.args(["run", "--source", "-", "--window", "1s", "--volatility-windows", VOLATILITY_WINDOWS]);
    command.arg("--lake").arg(tradeflow_tests::file_url(lake)).args(["--progress-interval", "0"]);
    // The notebook shows a window update by update: every update in the changelog.
    command.args(["--changelog-resolution", "0"]);
    let stderr = std::fs::File::create(stderr_path).expect("creating the stderr file");
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("starting tradeflow run --source -");
    let mut pipe = child.stdin.take().expect("piped stdin");
    let mut write = |lines: &[&str], pause: Duration| {
        let mut block = lines.join("\n");
        block.push('\n');
        pipe.write_all(block.as_bytes()).expect("writing to tradeflow's stdin");
        pipe.flush().expect("flushing");
        std::thread::sleep(pause);
    };
    let mut i = 0;
    while i < market.len() {
        for (at, line) in [(scenario.jump_before, &scenario.jump), (scenario.correction_before, &scenario.correction)] {
            if i == at {
                std::thread::sleep(Duration::from_millis(300));
                write(&[line.as_str()], Duration::from_millis(300));
            }
        }
        let end = [i + BATCH, market.len(), scenario.jump_before, scenario.correction_before]
            .into_iter()
            .filter(|&e| e > i)
            .min()
            .expect("the market's end is after i");
        let lines: Vec<&str> = market[i..end].iter().map(|l| l.text.as_str()).collect();
        write(&lines, Duration::from_millis(10));
        i = end;
    }
    drop(pipe);
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for tradeflow") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("tradeflow did not end after its input did");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(stderr_path).expect("reading tradeflow's stderr");
    assert!(status.success(), "tradeflow run --source - failed with {status}:\n{stderr}");
    Summary::parse(&stderr).unwrap_or_else(|| panic!("no summary:\n{stderr}"))
}

/// Runs the notebook with papermill and `params` (`-p NAME VALUE`); the output notebook
/// parsed, and whether papermill succeeded, with its output.
fn execute(papermill: &Path, dir: &Path, name: &str, params: &[(&str, String)]) -> (Value, bool, String) {
    let output = dir.join(format!("{name}.ipynb"));
    let mut command = Command::new(papermill);
    command.arg(notebook()).arg(&output).args(["--kernel", "python3", "--no-progress-bar", "--log-output"]);
    for (key, value) in params {
        command.args(["-p", key, value]);
    }
    command.current_dir(dir).env("JUPYTER_PLATFORM_DIRS", "1").env("PYTHONDONTWRITEBYTECODE", "1");
    let out = Running::spawn(command).finish(Duration::from_secs(300));
    let text = std::fs::read_to_string(&output)
        .unwrap_or_else(|e| panic!("papermill wrote no {}: {e}\n{}", output.display(), out.stderr));
    let json: Value = serde_json::from_str(&text).expect("the output notebook is JSON");
    (json, out.success(), format!("{}\n{}", out.stdout, out.stderr))
}

/// The text of a cell output's `text` field (a string or a list of strings).
fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(Value::as_str).collect(),
        _ => String::new(),
    }
}

fn parse_f64(v: &Value) -> f64 {
    v.as_str().expect("floats travel as repr() strings").parse().expect("a float")
}

#[test]
fn the_notebook_replays_a_run_update_by_update_and_asserts_what_it_shows() {
    let Some(papermill) = papermill() else { return };
    let dir = temp_dir();
    let market_path = dir.path().join("market.ndjson");
    simulate(
        &market_path,
        &[
            "--symbols",
            "AAPL,MSFT",
            "--count",
            "4000",
            "--rate",
            "20",
            "--seed",
            "7",
            "--start",
            "2026-01-02T09:30:00Z",
        ],
    );
    let market = read_market(&market_path);
    let scenario = scenario(&market);
    let lake = dir.path().join("lake");
    let summary = run_streamed(&market, &scenario, &lake, &dir.path().join("run.stderr"));
    assert!(summary.accepted >= 3_900, "{summary:?}");

    let started = Instant::now();
    let params = [
        ("lake", lake.display().to_string()),
        ("symbol", "AAPL".to_owned()),
        ("volatility_windows", VOLATILITY_WINDOWS.to_owned()),
        ("require_retraction", "True".to_owned()),
    ];
    let (nb, ok, log) = execute(&papermill, dir.path(), "executed", &params);
    assert!(ok, "the notebook failed:\n{log}");
    eprintln!("notebook executed in {:.1?}", started.elapsed());

    // Every code cell ran, none failed; the plots are PNG images in the output.
    let cells = nb["cells"].as_array().expect("cells");
    let code: Vec<&Value> = cells.iter().filter(|c| c["cell_type"] == "code").collect();
    assert!(code.len() >= 10, "{} code cells", code.len());
    let mut images = 0;
    let mut printed = String::new();
    for cell in &code {
        assert!(cell["execution_count"].is_number(), "a cell did not run: {}", text_of(&cell["source"]));
        for output in cell["outputs"].as_array().expect("outputs") {
            assert_ne!(output["output_type"], "error", "{output}");
            if let Some(png) = output["data"]["image/png"].as_str() {
                assert!(png.trim_start().starts_with("iVBORw0KGgo"), "not a PNG: {}", &png[..40.min(png.len())]);
                assert!(png.len() > 10_000, "a tiny image ({} bytes of base64)", png.len());
                images += 1;
            }
            printed.push_str(&text_of(&output["text"]));
        }
    }
    assert!(images >= 4, "{images} plots in the executed notebook");
    let line = printed.lines().find_map(|l| l.strip_prefix("NOTEBOOK_SUMMARY ")).expect("the summary line");
    let figures: Value = serde_json::from_str(line).expect("the summary is JSON");
    eprintln!("notebook: {figures}");

    // The final rows it matched against the changelog are the lake's and the run's.
    let finals = read_window_metrics(&lake);
    let anomalies = read_anomalies(&lake);
    assert_eq!(figures["final_windows"].as_u64(), Some(finals.len() as u64));
    assert_eq!(finals.len() as u64, summary.windows_final);
    assert_eq!(figures["final_anomalies"].as_u64(), Some(anomalies.len() as u64));
    assert_eq!(anomalies.len() as u64, summary.anomalies_final);

    // The injected jump was live, then retracted by the out-of-order trade; the notebook
    // followed that window.
    let retracted = figures["retracted"].as_array().expect("retracted");
    let jump = serde_json::json!(["AAPL", scenario.window, "price_jump"]);
    assert!(retracted.contains(&jump), "retracted anomalies {retracted:?} lack {jump}");
    assert!(!anomalies.iter().any(|a| a.symbol.as_str() == "AAPL" && a.window_start == scenario.window));
    assert_eq!(figures["followed_window"].as_i64(), Some(scenario.window));

    // That window's VWAP, version by version, as the Rust reader reads the changelog.
    let updates = read_metrics_changelog(&lake);
    let run_id = figures["run_id"].as_str().expect("run_id");
    assert!(updates.iter().all(|u| u.run_id == run_id), "one run in the changelog");
    assert_eq!(figures["changelog_updates"].as_u64(), Some(updates.len() as u64));
    let mut versions: Vec<(i64, f64, bool)> = updates
        .iter()
        .filter(|u| u.diff > 0 && u.row.symbol.as_str() == "AAPL" && u.row.window_start == scenario.window)
        .map(|u| (u.time, u.row.vwap.expect("AAPL trades have volume").0, u.row.is_final))
        .collect();
    versions.sort_by_key(|v| v.0);
    let followed: Vec<f64> = figures["followed_vwaps"].as_array().expect("vwaps").iter().map(parse_f64).collect();
    assert_eq!(followed, versions.iter().map(|v| v.1).collect::<Vec<_>>(), "the window's VWAPs in order");
    assert!(versions.len() >= 3 && versions.last().is_some_and(|v| v.2), "{versions:?}");
    let final_vwap = finals
        .iter()
        .find(|r| r.symbol.as_str() == "AAPL" && r.window_start == scenario.window)
        .and_then(|r| r.vwap)
        .expect("the window's final row")
        .0;
    assert!(versions[0].1 > final_vwap * 1.005, "the first version carried the jump: {versions:?}");
    assert_eq!(versions[versions.len() - 2].1, final_vwap, "the last provisional VWAP is the final one");

    // The collection as of the notebook's processing time, rebuilt here.
    let as_of = &figures["as_of"];
    let t = as_of["as_of"].as_i64().expect("as_of");
    let before: Vec<_> = updates.iter().filter(|u| u.time <= t).cloned().collect();
    let rebuilt = consolidate(&before);
    assert!(rebuilt.values().all(|&n| n == 1));
    let provisional = rebuilt.keys().filter(|r| !r.is_final).count();
    let trades: u64 = rebuilt.keys().map(|r| r.trade_count).sum();
    assert_eq!(as_of["rows"].as_u64(), Some(rebuilt.len() as u64));
    assert_eq!(as_of["provisional"].as_u64(), Some(provisional as u64));
    assert_eq!(as_of["final"].as_u64(), Some((rebuilt.len() - provisional) as u64));
    assert_eq!(as_of["trade_count"].as_u64(), Some(trades));
    assert!(provisional > 0 && rebuilt.len() > provisional, "mid-run, some windows final and some not: {as_of}");

    // It recomputed every volatility of AAPL, to 1e-12 relative.
    let with_volatility = finals.iter().filter(|r| r.symbol.as_str() == "AAPL" && r.volatility.is_some()).count();
    assert_eq!(figures["volatility_checked"].as_u64(), Some(with_volatility as u64));
    assert!(figures["volatility_max_rel"].as_f64().is_some_and(|e| e <= 1e-12), "{figures}");

    // Its checks bite: told the wrong K, the volatility check fails.
    let mut wrong = params.to_vec();
    wrong[2].1 = "10".to_owned();
    let (nb, ok, log) = execute(&papermill, dir.path(), "wrong-k", &wrong);
    assert!(!ok, "the notebook passed with volatility_windows=10:\n{log}");
    let errors: BTreeMap<String, String> = nb["cells"]
        .as_array()
        .expect("cells")
        .iter()
        .flat_map(|c| c["outputs"].as_array().cloned().unwrap_or_default())
        .filter(|o| o["output_type"] == "error")
        .map(|o| {
            (o["ename"].as_str().unwrap_or_default().to_owned(), o["evalue"].as_str().unwrap_or_default().to_owned())
        })
        .collect();
    assert!(
        errors.get("AssertionError").is_some_and(|e| e.contains("volatility") && e.contains("recomputed")),
        "{errors:?}"
    );
}
