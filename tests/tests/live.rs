//! SPEC 6 and 8 on an unbounded, paced simulator run: progress lines while it runs;
//! Ctrl-C stops the sources, finalises every open window and flushes the lake, and the
//! run exits 0 with its summary. What the lake holds then agrees with the summary.

use std::time::Duration;
use tradeflow_tests::lake::{
    consolidate, read_anomalies, read_dead_letters, read_metrics_changelog, read_trades, read_window_metrics,
};
use tradeflow_tests::process::Running;
use tradeflow_tests::{file_url, temp_dir, tradeflow_command};

/// The greatest "final windows N" of the progress lines so far.
fn final_windows(stderr: &str) -> u64 {
    stderr
        .lines()
        .filter(|l| l.starts_with('['))
        .filter_map(|l| l.split("final windows ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.replace(',', "").parse().ok())
        .max()
        .unwrap_or(0)
}

#[test]
fn ctrl_c_stops_a_live_run_and_flushes_everything() {
    let dir = temp_dir();
    let lake = dir.path().join("lake");
    let mut command = tradeflow_command();
    command.args([
        "run",
        "--source",
        "sim://?rate=2000&symbols=AAPL,BINANCE:BTCUSDT",
        "--window",
        "2s",
        "--allowed-lateness",
        "1s",
        "--idle-timeout",
        "2s",
        "--lake",
        &file_url(&lake),
    ]);
    let mut run = Running::spawn(command);

    // Progress lines appear while it runs, and windows become final as time passes.
    let progressed = run.wait_for_stderr(Duration::from_secs(60), |stderr| final_windows(stderr) >= 4);
    assert!(progressed, "no progress line with final windows within 60 s:\n{}", run.stderr_so_far());
    run.interrupt();
    let out = run.finish(Duration::from_secs(60));
    out.assert_success("tradeflow run stopped by SIGINT");
    let summary = out.summary();
    assert!(summary.accepted > 0, "{}", out.stderr);

    // Every accepted trade reached the lake, and every one is in a final window.
    let trades = read_trades(&lake);
    assert_eq!(trades.len() as u64, summary.accepted, "trades in the lake vs accepted\n{}", out.stderr);
    let metrics = read_window_metrics(&lake);
    assert!(!metrics.is_empty());
    assert_eq!(metrics.len() as u64, summary.windows_final);
    assert_eq!(metrics.iter().map(|m| m.trade_count).sum::<u64>(), summary.accepted, "trades in final windows");
    assert_eq!(read_anomalies(&lake).len() as u64, summary.anomalies_final);
    assert_eq!(read_dead_letters(&lake).len() as u64, summary.rejected);
    let symbols: std::collections::BTreeSet<_> = trades.iter().map(|t| t.symbol.as_str()).collect();
    assert_eq!(symbols, ["AAPL", "BINANCE:BTCUSDT"].into());

    // The changelog: live (provisional) values came and went; final rows never change;
    // rebuilt as of the end it is exactly the final window metrics.
    let updates = read_metrics_changelog(&lake);
    assert!(updates.iter().any(|u| !u.row.is_final && u.diff > 0), "no provisional update in the changelog");
    assert!(!updates.iter().any(|u| u.row.is_final && u.diff < 0), "a final row was retracted");
    let rebuilt = consolidate(&updates);
    assert!(rebuilt.values().all(|d| *d == 1), "rows with a net diff other than 1");
    let mut finals = metrics;
    finals.sort();
    assert!(rebuilt.keys().cloned().collect::<Vec<_>>() == finals, "the changelog does not rebuild window_metrics");
}

/// SPEC 8: "With no flags, `tradeflow run` uses the simulator and a local lake under
/// `./data`".
#[test]
fn run_without_flags_simulates_into_a_local_lake() {
    let dir = temp_dir();
    let mut command = tradeflow_command();
    command.arg("run").current_dir(dir.path());
    let mut run = Running::spawn(command);
    // The first progress line (1-minute windows need not be final yet: Ctrl-C finalises).
    let progressed = run.wait_for_stderr(Duration::from_secs(60), |stderr| stderr.lines().any(|l| l.starts_with('[')));
    assert!(progressed, "no progress line within 60 s:\n{}", run.stderr_so_far());
    run.interrupt();
    let out = run.finish(Duration::from_secs(60));
    out.assert_success("tradeflow run (no flags) stopped by SIGINT");
    let lake = dir.path().join("data").join("lake");
    let trades = read_trades(&lake);
    assert_eq!(trades.len() as u64, out.summary().accepted, "{}", out.stderr);
    let symbols: std::collections::BTreeSet<_> = trades.iter().map(|t| t.symbol.as_str()).collect();
    assert!(symbols.len() > 10 && symbols.contains("BINANCE:BTCUSDT"), "{symbols:?}");
    assert!(!read_window_metrics(&lake).is_empty());
}

/// CPU time (user + system) of process `pid` so far, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("reading /proc/<pid>/stat");
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let hz = 100.0; // USER_HZ on Linux
    ticks as f64 / hz
}

/// A live run with almost nothing to do parks its workers instead of spinning: over a
/// few seconds of a 10 trades/s simulator on two workers it uses a small fraction of one
/// core (a worker that spins uses all of one, each).
#[test]
fn an_idle_pipeline_does_not_spin() {
    let mut command = tradeflow_command();
    command.args(["run", "--source", "sim://?rate=10&symbols=AAPL", "--no-lake", "-w", "2"]);
    let mut run = Running::spawn(command);
    let started = run.wait_for_stderr(Duration::from_secs(60), |stderr| stderr.lines().any(|l| l.starts_with('[')));
    assert!(started, "no progress line within 60 s:\n{}", run.stderr_so_far());
    let (cpu0, wall0) = (cpu_seconds(run.pid()), std::time::Instant::now());
    std::thread::sleep(Duration::from_secs(4));
    let (cpu, wall) = (cpu_seconds(run.pid()) - cpu0, wall0.elapsed().as_secs_f64());
    run.interrupt();
    let out = run.finish(Duration::from_secs(60));
    out.assert_success("tradeflow run stopped by SIGINT");
    assert!(out.summary().accepted > 0, "{}", out.stderr);
    assert!(cpu < 0.25 * wall, "an idle run used {cpu:.2} s of CPU in {wall:.2} s: its workers spin");
}

/// A paced simulator run for about three seconds, with the changelog at `resolution`: the
/// updates of its window metrics, and the final rows.
fn changelog_at(resolution: &str) -> (Vec<tradeflow_tests::lake::MetricsUpdate>, Vec<tradeflow_model::WindowMetrics>) {
    let dir = temp_dir();
    let lake = dir.path().join("lake");
    let mut command = tradeflow_command();
    command.args([
        "run",
        "--source",
        "sim://?rate=20000&count=60000&seed=9&start=1700000000000&symbols=AAPL,MSFT,NVDA",
    ]);
    command.args(["--window", "1s", "--allowed-lateness", "200ms", "--changelog-resolution", resolution]);
    command.arg("--lake").arg(file_url(&lake));
    let out = Running::spawn(command).finish(Duration::from_secs(120));
    out.assert_success(&format!("a run with --changelog-resolution {resolution}"));
    // Each worker's files tile its epochs: every file starts where the previous one ended,
    // and holds only updates of its own [lower, upper).
    for collection in ["window_metrics", "anomalies"] {
        let mut upper_of: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
        for (name, lower, upper, times) in tradeflow_tests::lake::changelog_progress(&lake, collection) {
            let worker = name.rsplit_once('-').expect("<run id>-w<worker>-<seq>").0.to_owned();
            let previous = upper_of.insert(worker, upper).unwrap_or(0);
            assert_eq!(
                lower, previous,
                "{resolution}: {collection}/{name} does not start where the previous file ended"
            );
            assert!(lower <= upper, "{resolution}: {collection}/{name}: lower {lower} > upper {upper}");
            for t in times {
                let t = u64::try_from(t).expect("a positive epoch");
                assert!(
                    (lower..upper).contains(&t),
                    "{resolution}: {collection}/{name}: update at {t} outside [{lower}, {upper})"
                );
            }
        }
    }
    let mut finals = read_window_metrics(&lake);
    finals.sort();
    (read_metrics_changelog(&lake), finals)
}

/// `--changelog-resolution` (issue 12): the updates of each window within one interval
/// are consolidated into its net change, stamped with the interval's last epoch that
/// changed anything. Against every update (`0`): far fewer rows, at most one insertion
/// and one retraction of a window per interval, the provisional history still there, and
/// both changelogs rebuild exactly the final rows.
#[test]
fn the_changelog_consolidates_the_updates_of_each_interval() {
    let (every, every_finals) = changelog_at("0");
    let (coarse, finals) = changelog_at("250ms");
    assert_eq!(finals, every_finals, "the same market gives the same final rows");
    for (what, updates) in [("every update", &every), ("250 ms", &coarse)] {
        let rebuilt = consolidate(updates);
        assert!(rebuilt.values().all(|d| *d == 1), "{what}: rows with a net diff other than 1");
        assert!(rebuilt.keys().cloned().collect::<Vec<_>>() == finals, "{what}: the changelog does not rebuild");
        assert!(!updates.iter().any(|u| u.row.is_final && u.diff < 0), "{what}: a final row was retracted");
    }
    assert!(coarse.iter().any(|u| !u.row.is_final && u.diff > 0), "no provisional update left at 250 ms");
    eprintln!("changelog rows: {} for every update, {} at 250 ms", every.len(), coarse.len());
    assert!(
        coarse.len() * 4 < every.len(),
        "{} rows at 250 ms against {} for every update: not consolidated",
        coarse.len(),
        every.len()
    );
    // Per window and interval: one version in, one out, at one time.
    let mut per_interval = std::collections::BTreeMap::new();
    for u in &coarse {
        let key = (u.row.symbol.clone(), u.row.window_start, u.time / 250);
        let (ins, del, times) = per_interval.entry(key).or_insert((0, 0, std::collections::BTreeSet::new()));
        if u.diff > 0 {
            *ins += 1
        } else {
            *del += 1
        }
        times.insert(u.time);
    }
    for (key, (ins, del, times)) in &per_interval {
        assert!(*ins <= 1 && *del <= 1 && times.len() == 1, "{key:?}: {ins} in, {del} out at {times:?}");
    }
    // With every update recorded, windows do change more than once within 250 ms.
    let mut busy = std::collections::BTreeMap::new();
    for u in every.iter().filter(|u| u.diff > 0) {
        *busy.entry((u.row.symbol.clone(), u.row.window_start, u.time / 250)).or_insert(0) += 1;
    }
    assert!(busy.values().any(|n| *n > 1), "no window changed twice within 250 ms: the test shows nothing");
}
