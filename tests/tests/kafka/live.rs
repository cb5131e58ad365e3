//! A live (unbounded) `kafka://` source: it consumes while `tradeflow produce` writes
//! paced trades with current timestamps; once the producer stops, its partitions go idle
//! after `--idle-timeout` and the watermark follows the wall clock, so every window
//! becomes final while the run is still live; Ctrl-C (with `--drain`, which finalises what is
//! still open instead of leaving it to a resumed run) then stops it cleanly, and its final
//! results are exactly those of a bounded replay of the same topic.

use super::{TIMEOUT, assert_same_tree, counts, knobs, results_tree, run};
use std::time::Duration;
use tradeflow_tests::kafka::Broker;
use tradeflow_tests::process::Running;
use tradeflow_tests::{file_url, temp_dir, tradeflow_command};

/// The progress lines so far, as (trades accepted + rejected, final windows), newest last.
fn progress(stderr: &str) -> Vec<(u64, u64)> {
    let number = |line: &str, label: &str| -> Option<u64> {
        line.split(label).nth(1)?.split_whitespace().next()?.replace(',', "").parse().ok()
    };
    stderr
        .lines()
        .filter(|l| l.starts_with('['))
        .filter_map(|l| Some((number(l, "] trades ")? + number(l, "| rejects ")?, number(l, "final windows ")?)))
        .collect()
}

#[test]
fn a_live_run_stopped_with_ctrl_c_has_the_final_results_of_a_bounded_replay() {
    let Some(broker) = Broker::start() else { return };
    let dir = temp_dir();
    broker.create_topic("live", 3);
    let url = broker.url("live", "");

    // ~6 s of a paced market stamped with the current time, and the consumer reading it
    // as it arrives (no `end`: live). The producer starts first so that no partition is
    // idle before its first record.
    let mut command = tradeflow_command();
    command.args(["produce", "--from", "sim://?rate=4000&count=24000&seed=21&start=now", "--to", &url]);
    command.args(["--progress-interval", "0"]);
    let producer = Running::spawn(command);
    let live_lake = dir.path().join("live");
    let mut command = tradeflow_command();
    command.args(["run", "--source", &url, "--lake", &file_url(&live_lake), "-w", "2"]);
    // --drain: Ctrl-C writes the open hour's trades file (the run is checkpointed, so
    // without it the hour would stay open for a resumed run).
    command.args(["--progress-interval", "250ms", "--idle-timeout", "4s", "--drain"]).args(knobs().args());
    let mut live = Running::spawn(command);
    let started = live.wait_for_stderr(TIMEOUT, |e| e.contains("worker 1 of 2 reads partition 1 (offsets 0..)"));
    assert!(started, "the live run did not start reading:\n{}", live.stderr_so_far());
    let produced = producer.finish(TIMEOUT);
    produced.assert_success("tradeflow produce (paced)");
    let sent = produced
        .stderr
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("trades sent"))
        .and_then(|rest| rest.split_whitespace().next())
        .map(|n| n.replace(',', "").parse::<u64>().expect("a count"))
        .expect("a produce summary");
    assert_eq!(sent, 24_000);

    // Everything is read while live; then, with no new records, the partitions go idle
    // and every window becomes final before Ctrl-C.
    let read = live.wait_for_stderr(Duration::from_secs(60), |e| progress(e).last().is_some_and(|p| p.0 == sent));
    assert!(read, "the live run did not read all {sent} records:\n{}", live.stderr_so_far());
    std::thread::sleep(Duration::from_secs(7));
    let before = live.stderr_so_far();
    live.interrupt();
    let live = live.finish(TIMEOUT);
    live.assert_success("the live run stopped by SIGINT");
    let summary = live.summary();
    assert_eq!(summary.accepted + summary.rejected, sent);
    assert!(summary.windows_final > 40, "{summary:?}");
    let final_before = progress(&before).last().map_or(0, |p| p.1);
    assert_eq!(
        final_before, summary.windows_final,
        "idle partitions did not release the watermark: not every window was final before Ctrl-C\n{before}"
    );

    // The same topic replayed, bounded: identical final results, trades and counts.
    let replay_lake = dir.path().join("replay");
    let replay = run(&broker.url("live", "end=latest"), &replay_lake, &["-w", "2"]);
    assert_eq!(counts(&replay.summary()), counts(&summary));
    assert_same_tree("live vs bounded replay", &results_tree(&live_lake), &results_tree(&replay_lake));
}
