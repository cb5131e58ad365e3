//! Issue 14: the lake's changelog is differential's capture protocol, and
//! `examples/changelog_replay` replays a run of it with differential's capture source into
//! a new dataflow that maintains a per-symbol session VWAP and counts of anomaly
//! retractions incrementally. (`sinks/tests/changelog_capture.rs` checks the replayed
//! collection at every epoch against the writing dataflow's; this test runs the real
//! binary and the real example.)

use std::collections::BTreeMap;
use std::time::Duration;
use tradeflow_tests::lake::{assert_capture_protocol, read_anomalies, read_window_metrics};
use tradeflow_tests::postgres::read_anomaly_changelog;
use tradeflow_tests::{Running, example_bin, file_url, temp_dir, tradeflow_command};

/// The session VWAP lines the example must print, computed from the lake's final rows:
/// per symbol, over the windows that tile time, Σ(vwap·volume) / Σ volume in window order.
fn expected_session_vwaps(lake: &std::path::Path) -> Vec<String> {
    let mut windows = read_window_metrics(lake);
    windows.sort_by(|a, b| (&a.symbol, a.window_start).cmp(&(&b.symbol, b.window_start)));
    let mut sums: BTreeMap<String, (i128, f64)> = BTreeMap::new();
    for w in windows {
        let size = w.window_end - w.window_start;
        let Some(vwap) = w.vwap.filter(|_| w.window_start.rem_euclid(size) == 0) else { continue };
        let (volume, weighted) = sums.entry(w.symbol.as_str().to_owned()).or_default();
        *volume += w.volume;
        *weighted += vwap.0 * w.volume as f64;
    }
    sums.into_iter()
        .filter(|(_, (volume, _))| *volume > 0)
        .map(|(symbol, (volume, weighted))| {
            format!("session_vwap {symbol} {:.6} volume {}", weighted / volume as f64, volume as f64 / 1e8)
        })
        .collect()
}

#[test]
fn a_runs_changelog_replays_through_differentials_capture_source() {
    let dir = temp_dir();
    let lake = dir.path().join("lake");
    let mut command = tradeflow_command();
    command.args(["run", "--source", "sim://?rate=100000&count=300000&seed=5&start=1700000000000", "--window", "1s"]);
    command.args(["-w", "2", "--changelog-resolution", "0"]).arg("--lake").arg(file_url(&lake));
    Running::spawn(command).finish(Duration::from_secs(180)).assert_success("a two-worker run into the lake");

    // The stored changelog is the protocol: counts per epoch match the updates files.
    for collection in ["window_metrics", "anomalies"] {
        assert_capture_protocol(&lake, collection);
    }

    // Replayed on two workers, the example's collections are those of the run's end.
    let out = std::process::Command::new(example_bin("changelog_replay"))
        .arg(&lake)
        .args(["-w", "2"])
        .output()
        .expect("running the changelog_replay example");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "changelog_replay failed:\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();

    let session: Vec<&str> = lines.iter().copied().filter(|l| l.starts_with("session_vwap ")).collect();
    let expected = expected_session_vwaps(&lake);
    assert!(expected.len() >= 10, "only {} symbols: the test shows little", expected.len());
    assert_eq!(session, expected, "the replay's session VWAPs vs the lake's final rows");

    // Withdrawn: inserted at some epoch, not among the final anomalies. Retractions: every
    // update with diff -1 (including provisional rows replaced by their final ones).
    let updates = read_anomaly_changelog(&lake);
    let finals: std::collections::BTreeSet<(String, i64, String)> = read_anomalies(&lake)
        .into_iter()
        .map(|a| (a.symbol.as_str().to_owned(), a.window_start, a.kind.as_str().to_owned()))
        .collect();
    let ever: std::collections::BTreeSet<(String, i64, String)> =
        updates.iter().filter(|u| u.diff > 0).map(|u| (u.symbol.clone(), u.window_start, u.kind.clone())).collect();
    let mut want: Vec<String> = Vec::new();
    for kind in ["price_jump", "volume_spike"] {
        let retracted = updates.iter().filter(|u| u.kind == kind && u.diff < 0).count();
        let withdrawn = ever.iter().filter(|k| k.2 == kind && !finals.contains(*k)).count();
        if retracted > 0 {
            want.push(format!("retractions {kind} {retracted}"));
        }
        if withdrawn > 0 {
            want.push(format!("withdrawn {kind} {withdrawn}"));
        }
    }
    eprintln!("anomaly updates in the changelog: {want:?}");
    assert!(want.iter().any(|l| l.starts_with("withdrawn ")), "no anomaly was withdrawn: the test shows little");
    let mut got: Vec<&str> = lines.iter().copied().filter(|l| !l.starts_with("session_vwap ")).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "the replay's anomaly counts vs the changelog's");
}
