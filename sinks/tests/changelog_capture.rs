//! The changelog is differential's capture protocol (issue 14): a collection written by
//! the changelog sink on two workers, then replayed from the lake with differential's
//! `capture::source` on two workers, is at every processing time exactly the collection
//! the writing dataflow had then.
//!
//! The written collection is random: on each of 120 epochs (with gaps) each worker
//! inserts new rows, retracts rows it holds, and inserts and retracts a row within one
//! epoch (which the protocol must not count). Files are cut every 7 updates, so a run has
//! many files. At resolution 0 the replay must match at every epoch; at a coarser
//! resolution, at every interval boundary. The replay hands the source its messages one at
//! a time, progress statements first and updates newest first, and whenever the replay's
//! frontier is `f`, every update before `f` must already have arrived: that is what the
//! progress statements promise (a count too low lets the frontier pass too early, one too
//! high stalls it).

use differential_dataflow::capture::Message;
use differential_dataflow::input::Input;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use timely::dataflow::operators::probe::Handle;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::{Inspect, Probe, ToStream};
use timely::scheduling::SyncActivator;
use tradeflow_model::{F64, Price, Symbol, Time, WindowMetrics};
use tradeflow_sinks::lake::{ChangelogConfig, Lake, write_changelog};

type Update = (WindowMetrics, Time, isize);

/// A frontier the replay reached, and how many updates had arrived by then.
type Seen = (Option<Time>, usize);

fn row(worker: usize, n: u64) -> WindowMetrics {
    WindowMetrics {
        symbol: Symbol::parse(&format!("W{worker}S{}", n % 5)).expect("a valid symbol"),
        window_start: (n as i64) * 60_000,
        window_end: (n as i64 + 1) * 60_000,
        trade_count: n % 11 + 1,
        volume: n as i128 * 1_000,
        vwap: Some(F64(100.0 + n as f64)),
        min_price: Price(1),
        max_price: Price(2),
        avg_price: F64(1.5),
        open: Price(1),
        close: Price(2),
        volatility: None,
        is_final: n.is_multiple_of(3),
    }
}

/// A small deterministic generator (xorshift), so the test needs no seed file.
struct Random(u64);

impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Writes a random collection's changelog with `resolution` into `root`; returns every
/// update the writing dataflow had.
fn write(root: &std::path::Path, resolution: Time) -> Vec<Update> {
    let lake = Arc::new(Lake::open(&format!("file://{}", root.display()), Duration::ZERO).expect("a local lake"));
    let recorded: Arc<Mutex<Vec<Update>>> = Arc::default();
    let (lake_in, record) = (lake.clone(), recorded.clone());
    timely::execute(timely::Config::process(2), move |worker| {
        let (index, probe) = (worker.index(), Handle::new());
        let record = record.clone();
        let mut input = worker.dataflow::<Time, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<WindowMetrics, isize>();
            let rows = rows.inspect(move |update| record.lock().expect("no panic holds it").push(update.clone()));
            rows.inner.clone().probe_with(&probe);
            let run_id = if index == 0 { vec!["run-1".to_owned()] } else { Vec::new() }.to_stream(scope).broadcast();
            let config = ChangelogConfig { worker: index, max_rows: 7, max_age: None, resolution };
            write_changelog(rows, run_id, lake_in.clone(), config, None, None, std::rc::Rc::new(|| false))
                .expect("no checkpoint to restore");
            input
        });
        let mut random = Random(0x9e37_79b9_7f4a_7c15 ^ index as u64);
        // The same epochs on both workers, so that most times have updates from both: a
        // reader must wait for every worker's files of a time.
        let mut clock = Random(0x2545_f491_4f6c_dd1d);
        let (mut held, mut next): (Vec<WindowMetrics>, u64) = (Vec::new(), 0);
        for epoch in 0..120u64 {
            let time = 1_000 + epoch * 7 + clock.below(3);
            input.advance_to(time);
            if random.below(5) == 0 {
                continue; // an epoch without updates (on this worker)
            }
            for _ in 0..random.below(6) {
                next += 1;
                held.push(row(index, next));
                input.insert(row(index, next));
            }
            for _ in 0..random.below(3) {
                if !held.is_empty() {
                    let gone = held.swap_remove(random.below(held.len() as u64) as usize);
                    input.remove(gone);
                }
            }
            if random.below(4) == 0 {
                next += 1;
                input.insert(row(index, next));
                input.remove(row(index, next));
            }
            input.flush();
            while probe.less_than(input.time()) {
                worker.step();
            }
        }
    })
    .expect("the writing dataflow ran");
    lake.finish().expect("every file written");
    Arc::try_unwrap(recorded).expect("the workers are done").into_inner().expect("no panic holds it")
}

/// Messages handed to differential's capture source one every [`PAUSE`] activations (it
/// asks again once woken), so that its frontier can move on between two messages.
struct Gradual {
    messages: VecDeque<Message<WindowMetrics, Time, isize>>,
    activator: SyncActivator,
    calls: u64,
}

/// Activations between two messages: enough for a frontier change to reach every worker.
const PAUSE: u64 = 20;

impl Iterator for Gradual {
    type Item = Message<WindowMetrics, Time, isize>;
    fn next(&mut self) -> Option<Self::Item> {
        self.calls += 1;
        if self.messages.is_empty() {
            return None;
        }
        if !self.calls.is_multiple_of(PAUSE) {
            // Ends this activation's reading, and asks for the next one.
            let _ = self.activator.activate();
            return None;
        }
        self.messages.pop_front()
    }
}

/// Replays run `run-1` from `root` on two workers: every update, and at each frontier the
/// replay reached, the number of updates that had arrived by then.
fn replay(root: &std::path::Path) -> (Vec<Update>, Vec<Seen>) {
    let run = tradeflow_lake::changelog::read_run::<WindowMetrics>(root, "run-1").expect("the run's changelog");
    assert!(run.updates.len() > 4, "only {} updates files: the test needs several", run.updates.len());
    assert!(run.progress.last().is_some_and(|s| s.upper.is_none()), "the run's last statement does not close it");
    let received: Arc<Mutex<Vec<Update>>> = Arc::default();
    let frontiers: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let (got, seen) = (received.clone(), frontiers.clone());
    timely::execute(timely::Config::process(2), move |worker| {
        let probe = Handle::new();
        let sink = got.clone();
        let token = worker.dataflow::<Time, _, _>(|scope| {
            // This worker's share of the messages, progress first and updates last, newest
            // first, handed over one per activation: the worst order for a reader.
            let messages = tradeflow_sources::changelog::messages(run.clone(), scope.index(), scope.peers());
            let (progress, mut updates): (Vec<_>, Vec<_>) =
                messages.into_iter().partition(|m| matches!(m, Message::Progress(_)));
            updates.reverse();
            let messages: VecDeque<_> = progress.into_iter().chain(updates).collect();
            let (token, rows) = differential_dataflow::capture::source::build(scope, move |activator| Gradual {
                messages,
                activator,
                calls: 0,
            });
            rows.inspect(move |u| sink.lock().expect("no panic holds it").push(u.clone())).probe_with(&probe);
            token
        });
        let mut last = (Some(0), std::time::Instant::now());
        loop {
            // Read the count before the frontier: updates arriving in between only add.
            let arrived = got.lock().expect("no panic holds it").len();
            let frontier = probe.with_frontier(|f| f.first().copied());
            seen.lock().expect("no panic holds it").push((frontier, arrived));
            if frontier.is_none() {
                break;
            }
            if frontier != last.0 {
                last = (frontier, std::time::Instant::now());
            }
            assert!(
                last.1.elapsed() < Duration::from_secs(20),
                "the replay stalled at {frontier:?}: a progress statement counts updates that are not there"
            );
            worker.step();
        }
        drop(token);
    })
    .expect("the replay ran");
    let updates = received.lock().expect("done").clone();
    let frontiers = frontiers.lock().expect("done").clone();
    (updates, frontiers)
}

/// The collection as of just before `time`: each row with its summed diff, zeros dropped.
fn before(updates: &[Update], time: Time) -> BTreeMap<WindowMetrics, isize> {
    let mut rows = BTreeMap::new();
    for (row, _, diff) in updates.iter().filter(|u| u.1 < time) {
        *rows.entry(row.clone()).or_insert(0) += diff;
    }
    rows.retain(|_, d| *d != 0);
    rows
}

fn check(resolution: Time) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let written = write(dir.path(), resolution);
    let (replayed, frontiers) = replay(dir.path());
    assert!(written.iter().any(|u| u.2 < 0), "nothing retracted: the test shows little");

    // The protocol: at most one update per row and time, and never an update behind the
    // frontier the replay had announced.
    let mut keys: Vec<_> = replayed.iter().map(|(row, time, _)| (row.clone(), *time)).collect();
    keys.sort();
    let before_dedup = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), before_dedup, "two updates of one row at one time");
    for (frontier, arrived) in &frontiers {
        let Some(f) = frontier else { continue };
        let due = replayed.iter().filter(|u| u.1 < *f).count();
        assert!(due <= *arrived, "at frontier {f} only {arrived} updates had arrived, but {due} are before it");
    }
    assert!(frontiers.len() > 10, "the replay took {} steps: too few to show progress", frontiers.len());

    // The statements count exactly the updates in the files, and tile the epochs.
    let run = tradeflow_lake::changelog::read_run::<WindowMetrics>(dir.path(), "run-1").expect("the changelog");
    let mut stated: BTreeMap<Time, u64> = BTreeMap::new();
    let mut lower = 0;
    for statement in &run.progress {
        assert_eq!(statement.lower, lower, "a statement does not start where the last ended");
        for (time, count) in &statement.counts {
            assert!(*time >= lower && statement.upper.is_none_or(|u| *time < u), "a count outside its statement");
            *stated.entry(*time).or_default() += count;
        }
        lower = statement.upper.unwrap_or(Time::MAX);
    }
    assert_eq!(lower, Time::MAX, "the last statement does not close the stream");
    let mut in_files: BTreeMap<Time, u64> = BTreeMap::new();
    for (_, time, _) in run.updates.iter().flatten() {
        *in_files.entry(*time).or_default() += 1;
    }
    assert_eq!(stated, in_files, "updates stated per epoch vs in the files");

    // Nothing lost or duplicated: the replayed updates are the written ones.
    let mut stored: Vec<(WindowMetrics, Time, isize)> =
        run.updates.into_iter().flatten().map(|(row, time, diff)| (row, time, diff as isize)).collect();
    let mut got = replayed.clone();
    stored.sort();
    got.sort();
    assert_eq!(got, stored, "the replayed updates vs those in the files");

    // The collection at every epoch (resolution 0) or interval boundary is the writer's.
    let end = written.iter().map(|u| u.1).max().expect("updates") + 1;
    let times: Vec<Time> = match resolution {
        0 => written.iter().map(|u| u.1 + 1).collect(),
        r => (0..=end / r + 1).map(|k| k * r).collect(),
    };
    for time in times {
        assert_eq!(
            before(&replayed, time),
            before(&written, time),
            "resolution {resolution}: the collection before {time}"
        );
    }
    assert_eq!(before(&replayed, end), before(&written, end), "resolution {resolution}: the final collection");
}

#[test]
fn a_replayed_changelog_is_the_collection_at_every_epoch() {
    check(0);
}

#[test]
fn a_replayed_changelog_at_a_coarser_resolution_is_the_collection_at_every_interval_end() {
    check(25);
}
