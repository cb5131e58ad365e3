//! Checkpoints and resume, end to end, against a real Kafka-protocol broker (`tansu`, as in
//! the Kafka tests; skipped the same way when it or the outside client is missing).
//!
//! Every `--checkpoint-interval` a run writes a durable checkpoint under the lake's
//! `_checkpoints/`. Running the same command again resumes from the latest one (saying
//! `resuming job` on stderr), and once the replay ends the lake's `trades`,
//! `window_metrics` and `anomalies` are byte for byte those of a run never interrupted.
//!
//! * SIGKILL at pseudo-random moments (a crash, an OOM kill, a lost machine), many times
//!   over, at `-w 1`, `-w 2` and on `-n 2` processes (one of the two killed, the other
//!   following): identical results, and little work redone, since each attempt counts
//!   only the trades it read itself.
//! * Ctrl-C, SIGTERM, and two SIGINTs at once (what `timeout -s INT` sends to a process
//!   and its group) stop a live run cleanly: exit 0, a checkpoint, open windows left
//!   provisional (not finalised, as only `--drain` would); the same job run again with
//!   `end=latest` completes it to the results of an uninterrupted run.

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use tradeflow_tests::kafka::Broker;
use tradeflow_tests::kafka::knobs;
use tradeflow_tests::lake::{assert_capture_protocol, assert_same_tree, read_window_metrics, results_tree};
use tradeflow_tests::postgres::{PgCluster, TestDb};
use tradeflow_tests::process::{Running, assert_no_panic};
use tradeflow_tests::{Finished, Summary, file_url, run_two_processes, simulate, temp_dir, tradeflow_command};

const TIMEOUT: Duration = Duration::from_secs(120);

/// Trades in the topic: 200 s of event time at 10,000 trades/s over [`SYMBOLS`], so a
/// few minutes of market, 400 five-second windows, and a few seconds of work for a debug
/// build: enough for a dozen kills that each leave some progress behind.
const MARKET_TRADES: u64 = 2_000_000;

/// Ten symbols of the simulator's universe: stocks, crypto and forex.
const SYMBOLS: &str =
    "AAPL,MSFT,NVDA,TSLA,AMZN,BINANCE:BTCUSDT,BINANCE:ETHUSDT,KRAKEN:XBT/USD,OANDA:EUR_USD,IC MARKETS:1";

const CHECKPOINT_INTERVAL: &str = "50ms";

/// Frequent progress lines: a killed attempt's last one tells (to within this interval)
/// how many trades it accepted.
const PROGRESS_INTERVAL: &str = "100ms";

/// SIGKILLs per kill test (fewer if the job completes first).
const KILLS: usize = 12;

/// A kill comes this long after the start, pseudo-randomly.
const KILL_AFTER_MS: (u64, u64) = (700, 1500);

/// The same for `-n 2`, whose processes take about a second longer to start reading (they
/// connect to each other first).
const KILL_TWO_PROCESSES_AFTER_MS: (u64, u64) = (1400, 2200);

/// The trades accepted over all attempts, at most this many times those of one
/// uninterrupted run (plus, for sources read in units, a unit per worker and kill; see
/// [`assert_recovered_as`]): each kill loses only what was read since the latest
/// checkpoint.
const MAX_WORK_FACTOR: f64 = 1.6;

/// The job name of the live tests, given explicitly so that the live command and the
/// `end=latest` one that completes it are certainly the same job.
const JOB: &str = "resume-test";

/// A deterministic pseudo-random sequence (xorshift64): a failure replays with the same
/// kill times.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(0x9E37_79B9_7F4A_7C15 ^ seed)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A pause in `[low, high)` ms.
    fn pause(&mut self, (low, high): (u64, u64)) -> Duration {
        Duration::from_millis(low + self.next() % (high - low))
    }
}

/// `run --source SOURCE --lake LAKE`, checkpointing every [`CHECKPOINT_INTERVAL`], with
/// the knobs and `extra` flags.
fn run_args(source: &str, lake: &Path, extra: &[impl AsRef<str>]) -> Vec<String> {
    run_args_into(source, &["--lake", &file_url(lake)], extra)
}

/// No extra flags.
const NO_FLAGS: &[&str] = &[];

/// `run --source SOURCE` into `sinks` (e.g. `--lake URL`), checkpointing every
/// [`CHECKPOINT_INTERVAL`], with the knobs and `extra` flags.
fn run_args_into(source: &str, sinks: &[&str], extra: &[impl AsRef<str>]) -> Vec<String> {
    let mut args: Vec<String> = ["run", "--source", source].map(str::to_owned).into();
    args.extend(sinks.iter().map(|s| (*s).to_owned()));
    args.extend(
        ["--progress-interval", PROGRESS_INTERVAL, "--checkpoint-interval", CHECKPOINT_INTERVAL].map(str::to_owned),
    );
    args.extend(knobs().args());
    args.extend(extra.iter().map(|s| s.as_ref().to_owned()));
    args
}

fn command(args: &[String]) -> Command {
    let mut command = tradeflow_command();
    command.args(args);
    command
}

/// Runs `args` to a successful end.
fn run_to_end(args: &[String], what: &str) -> Finished {
    let out = Running::spawn(command(args)).finish(TIMEOUT);
    out.assert_success(what);
    out
}

/// Trades in the topic of the stop-and-resume tests: the stop comes once some are read.
const LIVE_MARKET_TRADES: u64 = 400_000;

/// Fills a new 4-partition `topic` with `trades` of a simulated market, through the
/// outside client.
fn fill_topic(broker: &Broker, dir: &Path, topic: &str, trades: u64) {
    let path = dir.join(format!("{topic}.ndjson"));
    let count = trades.to_string();
    // Every market spans 200 s of event time: 400 five-second windows per symbol.
    let rate = (trades / 200).to_string();
    simulate(&path, &["--count", &count, "--rate", &rate, "--seed", "7", "--symbols", SYMBOLS]);
    broker.create_topic(topic, 4);
    let landed = broker.produce_lines(topic, &path);
    assert_eq!(landed.len() as u64, trades);
}

/// A broker (as [`Broker::start`]: `None` when it is missing and not required) with a
/// 4-partition topic `market` of `trades` trades ([`fill_topic`]), and a temporary
/// directory.
fn market(trades: u64) -> Option<(Broker, tempfile::TempDir)> {
    let broker = Broker::start()?;
    let dir = temp_dir();
    fill_topic(&broker, dir.path(), "market", trades);
    Some((broker, dir))
}

/// Checks that an uninterrupted run read the whole topic (of `trades`) into a non-trivial
/// lake.
fn check_reference(summary: &Summary, trades: u64, stderr: &str) {
    assert_eq!(summary.accepted + summary.rejected, trades, "a record was not read:\n{stderr}");
    assert!(summary.windows_final > 100, "too few windows: {summary:?}\n{stderr}");
}

/// The trades accepted according to the last progress line (`[  1.0s] trades 1,234 ...`)
/// of `stderr`; 0 before the first.
fn progress_accepted(stderr: &str) -> u64 {
    stderr
        .lines()
        .filter(|l| l.starts_with('['))
        .filter_map(|l| l.split("] trades ").nth(1)?.split_whitespace().next()?.replace(',', "").parse().ok())
        .next_back()
        .unwrap_or(0)
}

/// True when `stderr` says the run resumed from a checkpoint.
fn resumed(stderr: &str) -> bool {
    stderr.contains("resuming job")
}

/// One attempt at a job: killed, or run to its end.
struct Attempt {
    /// How it ended, for failure messages.
    how: String,
    /// Trades it accepted itself: its summary's count when it finished, else its last
    /// progress line's (at most one progress interval short).
    accepted: u64,
    /// Its stderr (of both processes for `-n 2`).
    stderr: String,
}

impl Attempt {
    fn resumed(&self) -> bool {
        resumed(&self.stderr)
    }
}

/// One line per attempt, for failure messages.
fn history(attempts: &[Attempt]) -> String {
    let line = |(i, a): (usize, &Attempt)| {
        let resumed = if a.resumed() { "resumed" } else { "from scratch" };
        format!("  attempt {i}: {}, {resumed}, accepted {}\n", a.how, a.accepted)
    };
    attempts.iter().enumerate().map(line).collect()
}

/// `args` at one process, SIGKILLed at pseudo-random moments [`KILLS`] times (fewer if
/// an attempt completes the job first), then run to its end.
fn kill_repeatedly(args: &[String], seed: u64) -> Vec<Attempt> {
    let mut rng = Rng::new(seed);
    let mut attempts = Vec::new();
    while attempts.len() < KILLS {
        let mut running = Running::spawn(command(args));
        let pause = rng.pause(KILL_AFTER_MS);
        std::thread::sleep(pause);
        running.kill9();
        let out = running.finish(TIMEOUT);
        if out.status.signal() != Some(libc::SIGKILL) {
            out.assert_success(&format!("attempt {} (finished before its kill)", attempts.len()));
            let how = format!("finished by itself before a kill at {pause:?}");
            attempts.push(Attempt { how, accepted: out.summary().accepted, stderr: out.stderr });
            return attempts;
        }
        assert_no_panic(&out.stderr);
        let how = format!("killed after {pause:?}");
        attempts.push(Attempt { how, accepted: progress_accepted(&out.stderr), stderr: out.stderr });
    }
    let out = run_to_end(args, &format!("the run after {KILLS} kills"));
    attempts.push(Attempt { how: "run to its end".to_owned(), accepted: out.summary().accepted, stderr: out.stderr });
    attempts
}

/// `args` on `-n 2` processes (host file `hosts`), one of them SIGKILLed at a
/// pseudo-random moment (process 0 and 1 in turn) and the other stopped as well (it
/// should end by itself once its peer is gone; it is SIGKILLed after a few seconds if not),
/// [`KILLS`] times (fewer if an attempt completes the job first), then run to its end.
fn kill_one_of_two_repeatedly(args: &[String], hosts: &Path, seed: u64) -> Vec<Attempt> {
    let spawn = |process: &str| {
        let mut one = command(args);
        one.args(["-n", "2", "-p", process, "-h"]).arg(hosts);
        Running::spawn(one)
    };
    let both =
        |first: &Finished, second: &Finished| format!("process 0:\n{}\nprocess 1:\n{}", first.stderr, second.stderr);
    let mut rng = Rng::new(seed);
    let mut attempts = Vec::new();
    while attempts.len() < KILLS {
        let victim = attempts.len() % 2;
        let (first, second) = (spawn("0"), spawn("1"));
        let (mut killed, mut other) = if victim == 0 { (first, second) } else { (second, first) };
        let pause = rng.pause(KILL_TWO_PROCESSES_AFTER_MS);
        std::thread::sleep(pause);
        killed.kill9();
        let killed = killed.finish(TIMEOUT);
        if killed.status.signal() != Some(libc::SIGKILL) {
            // The job completed before the kill: the other process completes too.
            killed.assert_success(&format!("process {victim} (finished before its kill)"));
            let other = other.finish(TIMEOUT);
            other.assert_success(&format!("process {} (its peer finished before its kill)", 1 - victim));
            let (first, second) = if victim == 0 { (killed, other) } else { (other, killed) };
            let how = format!("finished by itself before a kill of process {victim} at {pause:?}");
            let accepted = first.summary().accepted;
            attempts.push(Attempt { how, accepted, stderr: both(&first, &second) });
            return attempts;
        }
        assert_no_panic(&killed.stderr);
        // Its peer gone, the other process fails (perhaps with a panic in timely's
        // networking, which is not checked here).
        let ended = other.wait_for_exit(Duration::from_secs(5));
        other.kill9();
        let other = other.finish(TIMEOUT);
        let follower = if ended { "ended by itself" } else { "had to be killed too" };
        let how = format!("process {victim} killed after {pause:?}, the other {follower} ({})", other.status);
        let (first, second) = if victim == 0 { (killed, other) } else { (other, killed) };
        let accepted = progress_accepted(&first.stderr) + progress_accepted(&second.stderr);
        attempts.push(Attempt { how, accepted, stderr: both(&first, &second) });
    }
    let (first, second) = (spawn("0"), spawn("1"));
    let second = second.finish(TIMEOUT);
    let first = first.finish(TIMEOUT);
    second.assert_success(&format!("process 1 after {KILLS} kills"));
    first.assert_success(&format!("process 0 after {KILLS} kills"));
    // Process 0's summary sums both processes.
    let accepted = first.summary().accepted;
    attempts.push(Attempt { how: "run to its end".to_owned(), accepted, stderr: both(&first, &second) });
    attempts
}

/// The lake of `attempts` holds exactly what the uninterrupted run wrote to
/// `reference_lake`, later attempts resumed, and little work was redone.
fn assert_recovered(
    what: &str,
    attempts: &[Attempt],
    lake: &Path,
    reference_lake: &Path,
    (reference, per_kill): (&Summary, u64),
) {
    assert_recovered_as(what, attempts, (reference, per_kill), |context| {
        assert_same_tree(
            &format!("{what}: the lake after the kills vs an uninterrupted run\n{context}"),
            &results_tree(lake),
            &results_tree(reference_lake),
        );
    });
}

/// Later `attempts` resumed, `same_results` (given the attempts' story for its messages)
/// finds the uninterrupted run's results, and little work was redone: at most
/// [`MAX_WORK_FACTOR`] times the `reference` run's trades, plus `per_kill` for each kill.
/// That is the input a source reads in units and decides whole: a file's chunks, a lake's
/// files, one being read by each worker when the kill comes. A resumed attempt killed
/// before it decided its first units (under load it can take a second and more to parse
/// them) reads them all again: twelve kills at 4 MiB chunks and two workers are 1.5M
/// trades, or 0.75x a 2M-trade market, by design.
fn assert_recovered_as(
    what: &str,
    attempts: &[Attempt],
    (reference, per_kill): (&Summary, u64),
    same_results: impl FnOnce(&str),
) {
    let last = attempts.last().expect("at least one attempt");
    let log = history(attempts);
    let kills = attempts.len() - 1;
    assert!(!attempts[0].resumed(), "{what}: the first attempt, on an empty store, resumed:\n{}", attempts[0].stderr);
    assert!(
        attempts.iter().any(Attempt::resumed),
        "{what}: no attempt printed `resuming job` (too small a market to be killed in time?)\n{log}\nlast stderr:\n{}",
        last.stderr
    );
    same_results(&format!("{kills} kills\n{log}\nlast stderr:\n{}", last.stderr));
    assert!(kills >= 10, "{what}: only {kills} kills before the job completed (too small a market?)\n{log}");
    let total: u64 = attempts.iter().map(|a| a.accepted).sum();
    eprintln!(
        "{what}: {total} trades accepted over {} attempts ({kills} kills), {:.2}x one uninterrupted run's {}\n{log}",
        attempts.len(),
        total as f64 / reference.accepted as f64,
        reference.accepted
    );
    let bound = MAX_WORK_FACTOR * reference.accepted as f64 + (kills as u64 * per_kill) as f64;
    assert!(
        (total as f64) < bound,
        "{what}: {total} trades accepted over {} attempts, against {} for one run: more than {MAX_WORK_FACTOR}x \
         and {per_kill} a kill, so the runs did not resume from their latest checkpoints\n{log}\nlast stderr:\n{}",
        attempts.len(),
        reference.accepted,
        last.stderr
    );
}

/// A topic replayed (`end=latest`) with `timely` flags into the lake and PostgreSQL,
/// SIGKILLed at random moments and restarted with the same command, ends with the lake
/// and the tables of an uninterrupted run.
fn killed_at_random_moments(timely: &[&str], seed: u64) {
    let Some((broker, dir)) = market(MARKET_TRADES) else { return };
    let Some(cluster) = PgCluster::shared() else { return };
    let source = broker.url("market", "end=latest");

    let reference_lake = dir.path().join("uninterrupted");
    let reference_db = cluster.database("reference");
    let reference =
        run_to_end(&run_args(&source, &reference_lake, &with_db(timely, &reference_db)), "the uninterrupted run");
    let summary = reference.summary();
    check_reference(&summary, MARKET_TRADES, &reference.stderr);
    if timely.contains(&"--lake-final-rows") {
        assert_finals_in_several_files(&reference_lake);
    }

    let lake = dir.path().join("killed");
    let db = cluster.database("killed");
    let attempts = kill_repeatedly(&run_args(&source, &lake, &with_db(timely, &db)), seed);
    assert_recovered(&format!("{timely:?}"), &attempts, &lake, &reference_lake, (&summary, 0));
    assert_same_tables(&format!("after the kills, {timely:?}"), &db, &reference_db);
    // The changelog stayed a consistent capture: each resume took back what the killed
    // attempt wrote after its checkpoint, and the last attempt closed the run.
    assert_changelog_consistent(&lake);
}

/// `lake` holds an hour's `window_metrics` in more than one file (a run with a small
/// `--lake-final-rows`).
fn assert_finals_in_several_files(lake: &Path) {
    let later_files = results_tree(lake)
        .into_keys()
        .filter(|name| name.starts_with("window_metrics/") && !name.ends_with("-0000.parquet"))
        .count();
    assert!(later_files > 0, "an hour's final rows in several files");
}

/// The changelog of every run in `lake` is differential's capture protocol (see
/// `assert_capture_protocol`).
fn assert_changelog_consistent(lake: &Path) {
    for collection in ["window_metrics", "anomalies"] {
        assert_capture_protocol(lake, collection);
    }
}

/// `flags` and `--postgres` to `db`.
fn with_db(flags: &[&str], db: &TestDb) -> Vec<String> {
    flags.iter().map(|f| (*f).to_owned()).chain(["--postgres".to_owned(), db.url()]).collect()
}

/// `db` holds the rows of `reference_db` (`what` says when, for the messages).
fn assert_same_tables(what: &str, db: &TestDb, reference_db: &TestDb) {
    assert_eq!(db.window_metrics(), reference_db.window_metrics(), "window_metrics {what}");
    assert_eq!(db.anomalies(), reference_db.anomalies(), "anomalies {what}");
}

#[test]
fn a_replay_killed_at_random_moments_and_restarted_equals_an_uninterrupted_run() {
    killed_at_random_moments(&["-w", "1"], 1);
}

#[test]
fn a_replay_into_the_hour_layout_killed_at_random_moments_and_restarted_equals_an_uninterrupted_run() {
    // Small files: hours spill to sorted runs, and a resume rebuilds them from the payloads.
    killed_at_random_moments(&["-w", "2", "--lake-layout", "hour", "--lake-file-rows", "20000"], 4);
}

#[test]
fn a_replay_on_two_workers_killed_at_random_moments_and_restarted_equals_an_uninterrupted_run() {
    // Final rows in files of 40, so an hour's are several. (Here the watermark moves late,
    // when every partition has been read; the file replay below shows a run resumed after
    // some of an open hour's files were written.)
    killed_at_random_moments(&["-w", "2", "--lake-final-rows", "40"], 2);
}

/// On `-n 2` processes, one worker each: one process SIGKILLed at random moments (the
/// other ends with it), both restarted with the same commands.
#[test]
fn a_replay_on_two_processes_killed_at_random_moments_and_restarted_equals_an_uninterrupted_run() {
    let Some((broker, dir)) = market(MARKET_TRADES) else { return };
    let Some(cluster) = PgCluster::shared() else { return };
    let source = broker.url("market", "end=latest");

    let reference_lake = dir.path().join("uninterrupted");
    let reference_db = cluster.database("reference");
    // Final rows in files of 40, so an hour's are several, as on two workers.
    let finals = ["--lake-final-rows", "40"];
    let args = run_args(&source, &reference_lake, &with_db(&finals, &reference_db));
    let (reference, _) = run_two_processes(&args, dir.path(), TIMEOUT);
    let summary = reference.summary();
    check_reference(&summary, MARKET_TRADES, &reference.stderr);
    assert_finals_in_several_files(&reference_lake);

    let lake = dir.path().join("killed");
    let db = cluster.database("killed");
    let hosts = dir.path().join("killed-hosts.txt");
    let ports = tradeflow_tests::free_ports(2);
    std::fs::write(&hosts, format!("127.0.0.1:{}\n127.0.0.1:{}\n", ports[0], ports[1])).expect("writing the host file");
    let attempts = kill_one_of_two_repeatedly(&run_args(&source, &lake, &with_db(&finals, &db)), &hosts, 3);
    assert_recovered("-n 2", &attempts, &lake, &reference_lake, (&summary, 0));
    assert_same_tables("after the kills, -n 2", &db, &reference_db);
    assert_changelog_consistent(&lake);
}

/// Without a lake, a run keeps its checkpoints in PostgreSQL (`tradeflow_checkpoints`,
/// beside the rows they cover): a replay into PostgreSQL alone, SIGKILLed at random
/// moments and restarted, ends with the tables of an uninterrupted run, having resumed
/// from its checkpoints rather than from the beginning.
#[test]
fn a_replay_into_postgresql_alone_killed_at_random_moments_and_restarted_equals_an_uninterrupted_run() {
    let Some((broker, _dir)) = market(MARKET_TRADES) else { return };
    let Some(cluster) = PgCluster::start() else { return };
    let source = broker.url("market", "end=latest");
    let into = |db: &str| run_args_into(&source, &["--no-lake", "--postgres", db], &["-w", "2"]);

    let reference_db = cluster.database("reference");
    let reference = run_to_end(&into(&reference_db.url()), "the uninterrupted run");
    let summary = reference.summary();
    check_reference(&summary, MARKET_TRADES, &reference.stderr);

    let db = cluster.database("killed");
    let attempts = kill_repeatedly(&into(&db.url()), 5);
    assert_recovered_as("PostgreSQL alone", &attempts, (&summary, 0), |context| {
        assert_same_tables(&format!("after {context}"), &db, &reference_db);
    });
    let manifests = db.scalar("SELECT count(*) FROM tradeflow_checkpoints WHERE key LIKE '%/manifest-p0.json'");
    assert_eq!(manifests.as_deref(), Some("1"), "no manifest in tradeflow_checkpoints");
}

/// A live run into PostgreSQL alone holds its job's checkpoints with an advisory lock: a
/// second run of the same job refuses to start, naming the holder. The live run stopped
/// by Ctrl-C leaves its open windows provisional, and the same job run again with
/// `end=latest` resumes from the checkpoint in PostgreSQL and ends with the rows of an
/// uninterrupted run, the two runs together reading the topic exactly once.
#[test]
fn a_live_run_into_postgresql_alone_has_one_writer_and_resumes_after_ctrl_c() {
    let Some((broker, _dir)) = market(LIVE_MARKET_TRADES) else { return };
    let Some(cluster) = PgCluster::start() else { return };
    let extra = ["--job", JOB, "--idle-timeout", "10m"];
    let into =
        |query: &str, db: &str| run_args_into(&broker.url("market", query), &["--no-lake", "--postgres", db], &extra);

    let reference_db = cluster.database("reference");
    let reference = run_to_end(&into("end=latest", &reference_db.url()), "the uninterrupted run");
    check_reference(&reference.summary(), LIVE_MARKET_TRADES, &reference.stderr);

    let db = cluster.database("stopped");
    let mut live = Running::spawn(command(&into("group=g1", &db.url())));
    wait_for_progress(&mut live, 0, "the live run");
    let second = Running::spawn(command(&into("group=g1", &db.url()))).finish(TIMEOUT);
    assert!(!second.success(), "a second writer of the job started:\n{}", second.stderr);
    assert!(
        second.stderr.contains("another run of the job holds its checkpoints")
            && second.stderr.contains("server process"),
        "the refusal does not say who holds the job:\n{}",
        second.stderr
    );

    live.interrupt();
    let stopped = live.finish(TIMEOUT);
    let stderr = &stopped.stderr;
    assert_eq!(stopped.status.code(), Some(0), "the live run did not exit 0 ({}):\n{stderr}", stopped.status);
    let provisional = db.scalar("SELECT count(*) FROM window_metrics WHERE NOT is_final");
    assert_ne!(provisional.as_deref(), Some("0"), "the stop finalised the open windows:\n{stderr}");

    let resumed_run = run_to_end(&into("group=g1&end=latest", &db.url()), "the run resuming the stopped job");
    let both = format!("stopped run:\n{stderr}\nresumed run:\n{}", resumed_run.stderr);
    assert!(resumed(&resumed_run.stderr), "the second run did not resume the job:\n{both}");
    assert!(resumed_run.stderr.contains("tradeflow_checkpoints"), "the resume does not say where from:\n{both}");
    assert_same_tables(&format!("\n{both}"), &db, &reference_db);
    let read = stopped.summary().accepted + resumed_run.summary().accepted;
    assert_eq!(read, reference.summary().accepted, "trades accepted by the two runs together\n{both}");
}

/// How a live run is stopped.
#[derive(Clone, Copy, Debug)]
enum Stop {
    /// SIGINT, as Ctrl-C in a terminal.
    CtrlC,
    /// SIGTERM, as `kill PID` and service managers.
    Term,
    /// Two SIGINTs at once, as `timeout -s INT` sends to the process and to its group.
    TwoInterrupts,
}

/// A live run (no `end`, a consumer group) stopped by `stop` once it has read some trades
/// exits 0 leaving its open windows provisional; the same job run again with `end=latest`
/// resumes from its checkpoint and ends with the lake of an uninterrupted `end=latest`
/// run, having read only what the stopped run had not.
fn stop_a_live_run_then_resume(stop: Stop) {
    let Some((broker, dir)) = market(LIVE_MARKET_TRADES) else { return };
    // Partitions never go idle while the test runs: the open windows stay open.
    let extra = ["--job", JOB, "--idle-timeout", "10m"];

    // No group, so that the groups' offsets on the broker play no part.
    let reference_lake = dir.path().join("uninterrupted");
    let reference =
        run_to_end(&run_args(&broker.url("market", "end=latest"), &reference_lake, &extra), "the uninterrupted run");
    let reference_summary = reference.summary();
    check_reference(&reference_summary, LIVE_MARKET_TRADES, &reference.stderr);

    let lake = dir.path().join("stopped");
    let mut live = Running::spawn(command(&run_args(&broker.url("market", "group=g1"), &lake, &extra)));
    let reading = live.wait_for_stderr(TIMEOUT, |e| progress_accepted(e) > 0);
    assert!(reading, "the live run did not start reading:\n{}", live.stderr_so_far());
    match stop {
        Stop::CtrlC => live.interrupt(),
        Stop::Term => assert!(live.terminate(), "the live run ended by itself:\n{}", live.stderr_so_far()),
        Stop::TwoInterrupts => {
            assert!(live.signal(libc::SIGINT), "the live run ended by itself:\n{}", live.stderr_so_far());
            live.signal(libc::SIGINT);
        }
    }
    let stopped = live.finish(TIMEOUT);
    let stderr = &stopped.stderr;
    assert_eq!(stopped.status.code(), Some(0), "{stop:?}: the live run did not exit 0 ({}):\n{stderr}", stopped.status);
    assert_no_panic(stderr);
    assert!(stderr.contains("stopped"), "{stop:?}: no line saying the run stopped:\n{stderr}");
    assert!(!resumed(stderr), "{stop:?}: the first run, on an empty lake, resumed:\n{stderr}");
    assert!(
        !stderr.contains("aborting") && !stderr.contains("without flushing"),
        "{stop:?}: the run aborted instead of stopping cleanly:\n{stderr}"
    );

    // What is final is final; the windows still open were not finalised.
    let complete: BTreeSet<_> = read_window_metrics(&reference_lake).into_iter().collect();
    let finals = read_window_metrics(&lake);
    assert!(
        finals.iter().all(|m| complete.contains(m)),
        "{stop:?}: a final window of the stopped run is not the uninterrupted run's:\n{stderr}"
    );
    assert!(
        finals.len() < complete.len(),
        "{stop:?}: {} final windows after the stop, as many as the uninterrupted run's {}: open windows were \
         finalised (which only --drain should do)\n{stderr}",
        finals.len(),
        complete.len()
    );

    // The same job, bounded now, completes it.
    let args = run_args(&broker.url("market", "group=g1&end=latest"), &lake, &extra);
    let resumed_run = run_to_end(&args, "the run resuming the stopped job");
    let both = format!("stopped run:\n{stderr}\nresumed run:\n{}", resumed_run.stderr);
    assert!(resumed(&resumed_run.stderr), "{stop:?}: the second run did not resume the job:\n{both}");
    assert_same_tree(
        &format!("{stop:?}: the lake after the stop and the resumed run vs an uninterrupted run\n{both}"),
        &results_tree(&lake),
        &results_tree(&reference_lake),
    );
    // The stop checkpointed everything it had read: nothing was read twice.
    let read = stopped.summary().accepted + resumed_run.summary().accepted;
    assert_eq!(read, reference_summary.accepted, "{stop:?}: trades accepted by the two runs together\n{both}");
    // The stop left the changelog's stream open after its last epoch; the resumed run went
    // on from there and closed it.
    assert_changelog_consistent(&lake);
}

#[test]
fn ctrl_c_in_the_middle_of_an_hour_then_resume_equals_an_uninterrupted_run() {
    stop_a_live_run_then_resume(Stop::CtrlC);
}

#[test]
fn sigterm_stops_like_ctrl_c() {
    stop_a_live_run_then_resume(Stop::Term);
}

#[test]
fn two_interrupts_at_once_stop_cleanly() {
    stop_a_live_run_then_resume(Stop::TwoInterrupts);
}

/// The market of [`MARKET_TRADES`] as an NDJSON file (the same as the topic's).
fn market_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("market.ndjson");
    let rate = (MARKET_TRADES / 200).to_string();
    let count = MARKET_TRADES.to_string();
    simulate(&path, &["--count", &count, "--rate", &rate, "--seed", "7", "--symbols", SYMBOLS]);
    path
}

/// A `file://` source (its chunks spread over both workers), SIGKILLed at random moments
/// and restarted: the lake of an uninterrupted run. Then a `lake://` replay of that lake,
/// killed the same way, equals an uninterrupted replay.
#[test]
fn file_and_lake_replays_killed_at_random_moments_and_restarted_equal_an_uninterrupted_run() {
    let dir = temp_dir();
    let market = market_file(dir.path());
    let source = file_url(&market);
    // A chunk per worker and kill (see `assert_recovered_as`).
    let size = std::fs::metadata(&market).expect("the market file").len();
    let chunk_trades = (MARKET_TRADES * tradeflow_sources::file::DEFAULT_CHUNK_BYTES).div_ceil(size);
    // Files of at most 50,000 trades: a replay resumes file by file, so a kill makes it
    // read again at most what it had of one file per worker. Final rows in files of 40:
    // read in order, the watermark moves steadily, so an hour's files are written while it
    // is open, and a resumed run goes on with the hour's next file.
    let timely = ["-w", "2", "--lake-file-rows", "50000", "--lake-final-rows", "40"];
    let reference_lake = dir.path().join("uninterrupted");
    let reference = run_to_end(&run_args(&source, &reference_lake, &timely), "the uninterrupted run");
    let summary = reference.summary();
    check_reference(&summary, MARKET_TRADES, &reference.stderr);
    let lake = dir.path().join("killed");
    let attempts = kill_repeatedly(&run_args(&source, &lake, &timely), 5);
    assert_recovered("file:// -w 2", &attempts, &lake, &reference_lake, (&summary, 2 * chunk_trades));

    let replay = format!("lake://{}", reference_lake.display());
    let replayed = dir.path().join("replayed");
    let reference = run_to_end(&run_args(&replay, &replayed, &timely), "the uninterrupted replay").summary();
    assert_eq!(reference.accepted, summary.accepted, "a replay accepts what the run accepted");
    let lake = dir.path().join("replay-killed");
    let attempts = kill_repeatedly(&run_args(&replay, &lake, &timely), 6);
    assert_recovered("lake:// -w 2", &attempts, &lake, &replayed, (&reference, 2 * 50_000));
}

/// Ctrl-C stops a `file://` run on two workers cleanly (every chunk it parsed decided, its
/// open windows left provisional), and the same command resumes it to the lake of an
/// uninterrupted run, reading nothing twice.
#[test]
fn ctrl_c_stops_a_file_run_and_the_same_command_resumes_it() {
    let dir = temp_dir();
    let source = file_url(&market_file(dir.path()));
    let timely = ["-w", "2"];
    let reference_lake = dir.path().join("uninterrupted");
    let reference = run_to_end(&run_args(&source, &reference_lake, &timely), "the uninterrupted run").summary();

    let lake = dir.path().join("stopped");
    let args = run_args(&source, &lake, &timely);
    let mut run = Running::spawn(command(&args));
    let reading = run.wait_for_stderr(TIMEOUT, |e| progress_accepted(e) > 0);
    assert!(reading, "the run did not start reading:\n{}", run.stderr_so_far());
    run.interrupt();
    let stopped = run.finish(TIMEOUT);
    let stderr = &stopped.stderr;
    if stopped.status.code() == Some(0) && !stderr.contains("stopped") {
        eprintln!("the run completed before Ctrl-C arrived; nothing to resume");
        return;
    }
    assert_eq!(stopped.status.code(), Some(0), "Ctrl-C: the run did not exit 0 ({}):\n{stderr}", stopped.status);
    assert_no_panic(stderr);
    let finals = read_window_metrics(&lake).len();
    assert!(finals < reference.windows_final as usize, "open windows were finalised by the stop:\n{stderr}");
    // What a run killed after its last checkpoint leaves: changelog files past it (here
    // copies of the stopped run's, under later sequence numbers). The resume takes them back.
    let planted = plant_changelog_leftovers(&lake);

    let resumed_run = run_to_end(&args, "the run resuming the stopped job");
    let both = format!("stopped run:\n{stderr}\nresumed run:\n{}", resumed_run.stderr);
    assert!(resumed(&resumed_run.stderr), "the second run did not resume the job:\n{both}");
    assert_same_tree(
        &format!("the lake after Ctrl-C and the resumed run vs an uninterrupted run\n{both}"),
        &results_tree(&lake),
        &results_tree(&reference_lake),
    );
    let read = stopped.summary().accepted + resumed_run.summary().accepted;
    assert_eq!(read, reference.accepted, "trades accepted by the two runs together\n{both}");
    for path in &planted {
        assert!(!path.exists(), "{} past the checkpoint is still there after the resume\n{both}", path.display());
    }
    assert_changelog_consistent(&lake);
}

/// Copies the first updates file and the first progress file of the window metrics'
/// changelog in `lake` under sequence number 999999 (as a run killed after its checkpoint
/// could leave them); returns the copies.
fn plant_changelog_leftovers(lake: &Path) -> Vec<std::path::PathBuf> {
    let mut planted = Vec::new();
    for (dir, suffix) in [
        ("changelog/window_metrics", "-w0000-999999.parquet"),
        ("changelog/_progress/window_metrics", "-999999.parquet"),
    ] {
        let dir = lake.join(dir);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("a directory entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".parquet"))
            .collect();
        names.sort();
        let first = names.first().unwrap_or_else(|| panic!("{} is empty after the stop", dir.display()));
        // `<run id>-w<worker>-<seq>.parquet` or `<run id>-<seq>.parquet`.
        let without_seq = first.rsplit_once('-').map(|(rest, _)| rest);
        let run = if suffix.starts_with("-w") {
            without_seq.and_then(|r| r.rsplit_once('-')).map(|(r, _)| r)
        } else {
            without_seq
        };
        let copy = dir.join(format!("{}{suffix}", run.expect("a changelog file name")));
        std::fs::copy(dir.join(first), &copy).expect("copying a changelog file");
        planted.push(copy);
    }
    planted
}

// Outages during a checkpointed run: a sink or the broker going away is ridden out within
// its retry bound (the input held back meanwhile, so memory stays bounded), and an outage
// that outlasts the bound stops the run with an error naming what failed, after which the
// same command resumes from the last checkpoint. Either way the results are those of a
// run that saw no outage.

/// How long a sink stays down in an outage that the run rides out: many checkpoint
/// intervals, and within the retry bound the tests set ([`RETRY_FOR`]).
const SHORT_OUTAGE: Duration = Duration::from_secs(4);

/// The input may run ahead of the durable output by two checkpoint intervals and a second
/// (see `tradeflow_sources::driver::Backlog`), then it is held: during an outage of
/// [`SHORT_OUTAGE`] a run reads nothing for at least this long.
const HELD_FOR_AT_LEAST: Duration = Duration::from_secs(1);

/// The retry bound of the outage tests: an outage longer than this stops the run (the
/// PostgreSQL sink's backoff doubles up to 5 s: a 4 s outage may take 6.3 s to notice).
const RETRY_FOR: &str = "10s";

/// A live run's accepted trades and resident memory, sampled every 100 ms for `during`.
struct Watched {
    /// Trades accepted (the latest progress line) at the start and at the end.
    accepted: (u64, u64),
    /// The longest time the accepted count stood still.
    still: Duration,
    /// The highest resident set size seen, MiB.
    peak_rss_mib: u64,
}

/// Resident set size of process `pid`, MiB (0 once it is gone).
fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next());
    kib.and_then(|k| k.parse::<u64>().ok()).unwrap_or(0) / 1024
}

fn watch(run: &Running, during: Duration) -> Watched {
    let start = progress_accepted(&run.stderr_so_far());
    let began = std::time::Instant::now();
    let (mut peak_rss_mib, mut still) = (0, Duration::ZERO);
    let (mut last, mut since) = (start, began);
    while began.elapsed() < during {
        peak_rss_mib = peak_rss_mib.max(rss_mib(run.pid()));
        let now = progress_accepted(&run.stderr_so_far());
        if now != last {
            (last, since) = (now, std::time::Instant::now());
        }
        still = still.max(since.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    Watched { accepted: (start, progress_accepted(&run.stderr_so_far())), still, peak_rss_mib }
}

/// Waits until `run` has accepted more than `after` trades.
fn wait_for_progress(run: &mut Running, after: u64, what: &str) {
    let reading = run.wait_for_stderr(TIMEOUT, |e| progress_accepted(e) > after);
    assert!(reading, "{what}: the run did not read past {after} trades:\n{}", run.stderr_so_far());
}

/// While a sink is down the input is held back: a checkpointed source reads at most about
/// two checkpoint intervals and a second past the output that is durable, then nothing
/// until the sink is back, whatever the topic holds.
fn assert_held_back(what: &str, watched: &Watched, topic: u64, stderr: &str, reference: &Finished) {
    let (before, after) = watched.accepted;
    let peak = reference.stderr.lines().find(|l| l.contains("peak memory")).unwrap_or_default().trim();
    eprintln!(
        "{what}: accepted {before} -> {after} trades during the outage (topic {topic}), reading nothing for \
         {:?} at most; peak RSS {} MiB; the run without an outage: {peak}",
        watched.still, watched.peak_rss_mib
    );
    assert!(
        watched.still >= HELD_FOR_AT_LEAST && after < topic,
        "{what}: the run went on reading while a sink was down ({before} -> {after} of {topic}, still for at \
         most {:?}): nothing held it back\n{stderr}",
        watched.still
    );
}

/// Takes down what the `live` run writes to, twice (`up(false)`, then `up(true)` to bring
/// it back): for [`SHORT_OUTAGE`] first, which the run must ride out with its input held
/// back, then until the run has stopped with an error, which is returned (the sink back
/// up).
fn ride_out_then_fail(what: &str, mut live: Running, mut up: impl FnMut(bool), reference: &Finished) -> Finished {
    wait_for_progress(&mut live, 0, "before the first outage");
    up(false);
    let watched = watch(&live, SHORT_OUTAGE);
    up(true);
    assert_held_back(what, &watched, LIVE_MARKET_TRADES, &live.stderr_so_far(), reference);
    wait_for_progress(&mut live, watched.accepted.1, "after the first outage");
    assert!(live.signal(0), "the run did not ride out a {SHORT_OUTAGE:?} outage:\n{}", live.stderr_so_far());

    up(false);
    let failed = live.finish(TIMEOUT);
    up(true);
    assert_no_panic(&failed.stderr);
    assert!(!failed.success(), "{what}: the run outlived an outage longer than its retry bound:\n{}", failed.stderr);
    failed
}

/// The outage tests' live run: a consumer group, partitions idle after `idle` (`10m`:
/// never, so that the stop leaves windows open), checkpoints every 50 ms, and a retry
/// bound of [`RETRY_FOR`].
fn live_outage_args(broker: &Broker, lake: &str, idle: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> =
        ["run", "--source", &broker.url("market", "group=g1"), "--lake", lake].map(str::to_owned).into();
    args.extend(
        [
            "--progress-interval",
            PROGRESS_INTERVAL,
            "--checkpoint-interval",
            CHECKPOINT_INTERVAL,
            "--job",
            JOB,
            "--idle-timeout",
            idle,
        ]
        .map(str::to_owned),
    );
    args.extend(knobs().args());
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

/// The same job bounded at the topic's end: it resumes the live run's checkpoint and
/// completes it.
fn bounded(args: &[String]) -> Vec<String> {
    args.iter().map(|a| if a.ends_with("?group=g1") { format!("{a}&end=latest") } else { a.clone() }).collect()
}

/// The uninterrupted reference of the live `args`: the whole topic, without the group
/// (whose offsets on the broker would otherwise decide where the live run starts).
fn reference_of(args: &[String]) -> Vec<String> {
    args.iter().map(|a| a.replace("?group=g1", "?end=latest")).collect()
}

/// PostgreSQL goes away twice during a live run into the lake and PostgreSQL: briefly
/// (ridden out: the sink retries, the input waits), then for longer than
/// `--postgres-retry-for` (the run stops with an error naming the server). Once it is
/// back, the same job bounded at the topic's end resumes from the last checkpoint; the
/// lake and the tables are then those of a run that saw no outage.
#[test]
fn postgresql_outages_are_ridden_out_or_stop_the_run_and_a_restart_resumes() {
    let Some((broker, dir)) = market(LIVE_MARKET_TRADES) else { return };
    let Some(cluster) = PgCluster::start() else { return };

    let reference_db = cluster.database("reference");
    let reference_lake = file_url(&dir.path().join("uninterrupted"));
    let postgres = ["--postgres", &reference_db.url(), "--postgres-retry-for", RETRY_FOR];
    let reference =
        run_to_end(&reference_of(&live_outage_args(&broker, &reference_lake, "10m", &postgres)), "the reference run");
    check_reference(&reference.summary(), LIVE_MARKET_TRADES, &reference.stderr);

    let db = cluster.database("outages");
    let lake = dir.path().join("outages");
    let args = live_outage_args(
        &broker,
        &file_url(&lake),
        "10m",
        &["--postgres", &db.url(), "--postgres-retry-for", RETRY_FOR],
    );
    let live = Running::spawn(command(&args));
    let up = |up: bool| if up { cluster.start_again() } else { cluster.stop() };
    let failed = ride_out_then_fail("PostgreSQL down", live, up, &reference);
    let stderr = &failed.stderr;
    assert!(stderr.contains("retrying in"), "the first outage went unnoticed:\n{stderr}");
    assert!(stderr.contains("reconnected after"), "no reconnection after the first outage:\n{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{}", cluster.port())), "the error does not name the server:\n{stderr}");

    let resumed_run = run_to_end(&bounded(&args), "the run resuming after the outage");
    let both = format!("failed run:\n{stderr}\nresumed run:\n{}", resumed_run.stderr);
    assert!(resumed(&resumed_run.stderr), "the restart did not resume the job:\n{both}");
    assert_same_tree(
        &format!("the lake after two PostgreSQL outages vs a run without\n{both}"),
        &results_tree(&lake),
        &results_tree(&dir.path().join("uninterrupted")),
    );
    assert_same_tables(&format!("after the outages\n{both}"), &db, &reference_db);
}

/// The S3 store goes away twice during a live run into an S3 lake: for many checkpoint
/// intervals (ridden out, the input held back), then for longer than `--lake-retry-for`
/// (the run stops with an error naming the lake). Once it is back, the same job bounded
/// at the topic's end resumes from the last checkpoint, and the lake read back through
/// the S3 API is byte for byte a local lake's written by a run that saw no outage.
///
/// Partitions go idle after 2 s here: the input is held back for longer than that, and
/// that time must not count as the partitions' silence (their waiting records would then
/// be taken for late).
#[test]
fn s3_outages_are_ridden_out_or_stop_the_run_and_a_restart_resumes() {
    const IDLE: &str = "2s";
    use tradeflow_tests::s3::S3Server;
    let Some(broker) = Broker::start() else { return };
    let Some(mut s3) = S3Server::start() else { return };
    let python = broker.python().to_owned();
    let dir = temp_dir();
    fill_topic(&broker, dir.path(), "market", LIVE_MARKET_TRADES);
    s3.create_bucket("lake");
    let retry = ["--lake-retry-for", RETRY_FOR];

    let reference_lake = dir.path().join("uninterrupted");
    let reference = run_to_end(
        &reference_of(&live_outage_args(&broker, &file_url(&reference_lake), IDLE, &retry)),
        "the reference run",
    );
    check_reference(&reference.summary(), LIVE_MARKET_TRADES, &reference.stderr);

    let args = live_outage_args(&broker, "s3://lake/outages", IDLE, &retry);
    let live = Running::spawn(s3.tradeflow(&args));
    let failed =
        ride_out_then_fail("the S3 store down", live, |up| if up { s3.restart() } else { s3.stop() }, &reference);
    let stderr = &failed.stderr;
    assert!(stderr.contains("s3://lake/outages"), "the error does not name the lake:\n{stderr}");
    assert!(!stderr.contains(tradeflow_tests::s3::SECRET_KEY), "the secret was printed:\n{stderr}");

    let resumed_run = s3.tradeflow(&bounded(&args));
    let resumed_run = Running::spawn(resumed_run).finish(TIMEOUT);
    resumed_run.assert_success("the run resuming after the outage");
    let both = format!("failed run:\n{stderr}\nresumed run:\n{}", resumed_run.stderr);
    assert!(resumed(&resumed_run.stderr), "the restart did not resume the job:\n{both}");
    let downloaded = dir.path().join("downloaded");
    s3.download(&python, "lake", "outages", &downloaded);
    assert_same_tree(
        &format!("the S3 lake after two outages vs a local run without\n{both}"),
        &results_tree(&downloaded),
        &results_tree(&reference_lake),
    );
}

/// The broker (tansu keeping its topics in an S3 bucket, so that they survive) is killed
/// and restarted during a bounded replay: the consumer reconnects and the run ends with
/// the lake of a run that saw no outage. Killed for longer than `--kafka-retry-for`, it
/// stops the run, and the same command resumes once the broker is back.
#[test]
fn a_broker_restarted_mid_run_changes_nothing() {
    use tradeflow_tests::s3::S3Server;
    let Some(s3) = S3Server::start() else { return };
    let Some(mut broker) = Broker::start_durable(&s3) else { return };
    let dir = temp_dir();
    fill_topic(&broker, dir.path(), "market", LIVE_MARKET_TRADES);
    let source = broker.url("market", "end=latest");

    let reference_lake = dir.path().join("uninterrupted");
    let reference = run_to_end(&run_args(&source, &reference_lake, NO_FLAGS), "the reference run");
    check_reference(&reference.summary(), LIVE_MARKET_TRADES, &reference.stderr);

    let lake = dir.path().join("restarted");
    let mut run = Running::spawn(command(&run_args(&source, &lake, NO_FLAGS)));
    wait_for_progress(&mut run, 0, "before the broker restart");
    broker.restart(SHORT_OUTAGE);
    let out = run.finish(TIMEOUT);
    out.assert_success("the run across a broker restart");
    assert!(
        progress_accepted(&out.stderr) < LIVE_MARKET_TRADES,
        "the run had read the whole topic before the broker went away: the restart tested nothing\n{}",
        out.stderr
    );
    assert_same_tree(
        &format!("the lake after a broker restart vs a run without\n{}", out.stderr),
        &results_tree(&lake),
        &results_tree(&reference_lake),
    );
    assert_eq!(out.summary().accepted, reference.summary().accepted, "trades accepted across the restart");

    // Gone for longer than --kafka-retry-for: the run stops, naming the broker; once it
    // is back, the same command resumes and ends with the same lake.
    let lake = dir.path().join("gone");
    let args = run_args(&source, &lake, &["--kafka-retry-for", "3s"]);
    let mut run = Running::spawn(command(&args));
    wait_for_progress(&mut run, 0, "before the broker went away");
    broker.stop();
    let failed = run.finish(TIMEOUT);
    broker.start_again();
    let stderr = &failed.stderr;
    assert_no_panic(stderr);
    assert!(!failed.success(), "the run outlived a broker gone longer than --kafka-retry-for:\n{stderr}");
    assert!(stderr.contains("no broker has answered") && stderr.contains(&broker.address()), "{stderr}");
    let resumed_run = run_to_end(&args, "the run resuming after the broker came back");
    let both = format!("failed run:\n{stderr}\nresumed run:\n{}", resumed_run.stderr);
    assert!(resumed(&resumed_run.stderr), "the restart did not resume the job:\n{both}");
    assert_same_tree(
        &format!("the lake after the broker was gone vs a run without\n{both}"),
        &results_tree(&lake),
        &results_tree(&reference_lake),
    );
}

/// A live run on `-n 2` processes, Ctrl-C sent to process 1 only: the stop reaches process
/// 0 through the dataflow (a stopped source's watermark report, broadcast to every worker),
/// both exit 0 leaving their open windows provisional, and the same job run again on two
/// processes with `end=latest` ends with the lake of an uninterrupted run.
#[test]
fn ctrl_c_to_one_process_of_two_stops_both_and_the_job_resumes() {
    let Some((broker, dir)) = market(LIVE_MARKET_TRADES) else { return };
    let extra = ["--job", JOB, "--idle-timeout", "10m"];
    let reference_lake = dir.path().join("uninterrupted");
    let reference =
        run_to_end(&run_args(&broker.url("market", "end=latest"), &reference_lake, &extra), "the uninterrupted run");
    check_reference(&reference.summary(), LIVE_MARKET_TRADES, &reference.stderr);

    let lake = dir.path().join("stopped");
    let hosts = dir.path().join("hosts.txt");
    let ports = tradeflow_tests::free_ports(2);
    std::fs::write(&hosts, format!("127.0.0.1:{}\n127.0.0.1:{}\n", ports[0], ports[1])).expect("writing the host file");
    let spawn = |args: &[String], process: &str| {
        let mut one = command(args);
        one.args(["-n", "2", "-p", process, "-h"]).arg(&hosts);
        Running::spawn(one)
    };
    let live = run_args(&broker.url("market", "group=g1"), &lake, &extra);
    let (mut first, second) = (spawn(&live, "0"), spawn(&live, "1"));
    let reading = first.wait_for_stderr(TIMEOUT, |e| progress_accepted(e) > 0);
    assert!(reading, "the live run did not start reading:\n{}", first.stderr_so_far());
    second.interrupt();
    let (second, first) = (second.finish(TIMEOUT), first.finish(TIMEOUT));
    let both = format!("process 0:\n{}\nprocess 1:\n{}", first.stderr, second.stderr);
    for (process, out) in [(0, &first), (1, &second)] {
        assert_eq!(out.status.code(), Some(0), "process {process} did not exit 0 ({}):\n{both}", out.status);
        assert_no_panic(&out.stderr);
    }
    assert!(first.stderr.contains("another worker of the run stopped"), "process 0 was not told:\n{both}");
    let finals = read_window_metrics(&lake).len();
    let complete = read_window_metrics(&reference_lake).len();
    assert!(finals < complete, "open windows were finalised by the stop ({finals} of {complete}):\n{both}");

    let bounded = run_args(&broker.url("market", "group=g1&end=latest"), &lake, &extra);
    let (resumed_first, resumed_second) = (spawn(&bounded, "0"), spawn(&bounded, "1"));
    let (resumed_second, resumed_first) = (resumed_second.finish(TIMEOUT), resumed_first.finish(TIMEOUT));
    resumed_first.assert_success("process 0 resuming the job");
    resumed_second.assert_success("process 1 resuming the job");
    assert!(resumed(&resumed_first.stderr), "the restart did not resume:\n{}", resumed_first.stderr);
    assert_same_tree(
        &format!("the lake after a stop of one process and the resumed run vs an uninterrupted run\n{both}"),
        &results_tree(&lake),
        &results_tree(&reference_lake),
    );
}
