//! The bridge from an external reader to a timely stream: the one place that holds a
//! source's capability.
//!
//! Background (timely's `operator::source`): a source holds a capability for the epoch
//! it may still emit at, downgrades it as time moves, and re-arms itself with an
//! activator. tradeflow's epochs are wall-clock milliseconds: at every activation the
//! capability moves to the current millisecond, so everything emitted earlier becomes
//! complete downstream within milliseconds, and live results flow at once.

use std::time::Duration;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::{Scope, StreamVec};
use tradeflow_model::Time;
use tradeflow_model::checkpoint::{Part, Saver};

/// What a reader wants after an activation.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Poll {
    /// There is more to read right away.
    Ready,
    /// Nothing to read now; try again after this long.
    Wait(Duration),
    /// The reader is finished (its last batch reported `low = i64::MAX`).
    Done,
}

/// A source reader polled by [`polled_source`].
pub trait Reader: 'static {
    /// What the reader produces.
    type Item: 'static;
    /// Reads a bounded amount of input (a few milliseconds of work), pushing to `out`.
    fn read(&mut self, out: &mut Vec<Self::Item>) -> Poll;

    /// Called once, before the first `read`, with a handle that schedules the reader from
    /// any thread: a reader fed by a thread of its own activates it when input arrives
    /// instead of polling.
    fn set_waker(&mut self, _waker: timely::scheduling::SyncActivator) {}

    /// The reader's position and lateness state after everything it has read so far:
    /// what a checkpoint records so that a resumed run reads on from exactly there. Only
    /// called for readers of a checkpointed run.
    fn snapshot(&self) -> Vec<u8> {
        Vec::new()
    }

    /// The source was held back by back-pressure for `held` and reads again: a live
    /// reader does not count that time as its partitions' silence.
    fn held(&mut self, _held: Duration) {}
}

/// A reader with nothing to read: it reports that it is done at once.
pub struct Finished;

impl Reader for Finished {
    type Item = crate::batch::Batch;
    fn read(&mut self, out: &mut Vec<crate::batch::Batch>) -> Poll {
        out.push(crate::batch::Batch::end());
        Poll::Done
    }
}

/// How often a live reader that a waker wakes on input still runs when nothing arrives,
/// to move its watermark along with the wall clock.
const LIVE_TICK: Duration = Duration::from_millis(100);

/// What a live reader (one fed by a broker or a socket) wants after an activation that
/// handled `handled` records of its `budget`: at once if it stopped at its budget; else
/// after [`LIVE_TICK`] when it `has_waker` (input wakes it sooner), or after 2 ms when it
/// must poll.
pub fn live_poll(handled: usize, budget: usize, has_waker: bool) -> Poll {
    if handled == budget {
        Poll::Ready
    } else if has_waker {
        Poll::Wait(LIVE_TICK)
    } else {
        Poll::Wait(Duration::from_millis(2))
    }
}

/// The current epoch: wall-clock milliseconds.
pub fn epoch_now() -> Time {
    crate::batch::wall_ms().max(0) as Time
}

/// How long an epoch lasts at most while a source reads a backlog (a replay, or a live
/// feed catching up), ms. Reading what has arrived, a source moves to the present
/// millisecond at every activation, so results follow their trades within
/// milliseconds. Reading a backlog, each activation reads a full budget, and a new epoch
/// every activation would make the analytics work once per budget for every symbol it
/// touched (their cost is per symbol and epoch): longer epochs spread that cost over
/// more trades, and nothing waits for a backlog's results a millisecond at a time.
///
/// 200 ms: every epoch, each symbol it touched costs the analytics' `reduce` a replay of
/// its ~40 held windows, and with many symbols 50 ms epochs made a replay up to 2.5
/// times as long (`-w 1 --no-lake`, medians of three: 3M trades at 10,000 symbols 11.7 s
/// against 4.7 s; 5M at 1,000 symbols with one-second windows 3.9 s against 2.7 s, with
/// one-minute windows over 83 minutes 2.6 s against 2.3 s). A checkpointed run's epochs
/// stay within [`CHECKPOINTED_BACKLOG_EPOCH_MS`].
pub const BACKLOG_EPOCH_MS: Time = 200;

/// How many records (trades and rejects) a backlog's epoch holds at most, besides lasting
/// at most [`BACKLOG_EPOCH_MS`]: the trades an epoch reads are in flight to the lake's
/// trades writer until the epoch completes, so 200 ms at the 1.2–1.7M trades/s of a
/// replay into the lake raised its peak memory by 60–280 MiB over 50 ms epochs. Below
/// about 200,000 the 10,000-symbol replay slows again (its epochs' per-symbol cost).
/// An epoch ends once it holds this many and a millisecond has passed since it began.
pub const BACKLOG_EPOCH_RECORDS: usize = 200_000;

/// What a reader's items weigh against [`BACKLOG_EPOCH_RECORDS`].
pub trait Records {
    /// The records (trades and rejects) this item carries.
    fn records(&self) -> usize;
}

impl Records for crate::batch::Batch {
    fn records(&self) -> usize {
        self.trades.len() + self.rejects.len()
    }
}

/// How long a checkpointed run's backlog epochs last at most (and at most a quarter of
/// its back-pressure's lag, see [`Backlog`]): its checkpoints, resumes and kill tests are
/// tuned to these 50 ms.
pub const CHECKPOINTED_BACKLOG_EPOCH_MS: Time = 50;

/// When a checkpointed source waits (back-pressure): while the pipeline's end lags more
/// than `lag` epochs (ms) behind the present, so that checkpoints follow the input
/// closely; and while the output has been durable only up to an epoch more than
/// `uncommitted` behind, so that a sink that is down (PostgreSQL, the S3 store) holds the
/// input back and what waits for it stays bounded: at most about two checkpoint
/// intervals of input wait for a sink. Once the run is stopping (`stop`: Ctrl-C, or a
/// sink that failed for good) nothing is held back, so that the sources see the stop.
#[derive(Clone)]
pub struct Backlog {
    probe: timely::dataflow::ProbeHandle<Time>,
    lag: Time,
    checkpoints: std::sync::Arc<dyn tradeflow_model::checkpoint::Checkpoints>,
    uncommitted: Time,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// False: only the pipeline's lag holds the source back (see [`Backlog::pipeline_only`]).
    durable: bool,
    /// False: this never holds the source back, only bounds its epochs (see
    /// [`Backlog::epochs_only`]).
    holding: bool,
}

impl Backlog {
    /// The back-pressure of a run checkpointed to `checkpoints`, `probe` at the end of its
    /// pipeline: a lag of half an interval (20 ms to 1 s), and up to two intervals plus a
    /// second of output not yet durable.
    pub fn new(
        probe: timely::dataflow::ProbeHandle<Time>,
        checkpoints: std::sync::Arc<dyn tradeflow_model::checkpoint::Checkpoints>,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> Backlog {
        let interval = checkpoints.interval_ms();
        let (lag, uncommitted) = ((interval / 2).clamp(20, 1000), 2 * interval + 1000);
        Backlog { probe, lag, checkpoints, uncommitted, stop, durable: true, holding: true }
    }

    /// The same without waiting for the durable output: for a feed that cannot be read
    /// again (a WebSocket), holding it back while a sink is down would only make its
    /// server drop the connection, and lose trades.
    pub fn pipeline_only(&self) -> Backlog {
        Backlog { durable: false, ..self.clone() }
    }

    /// The same for a reader that holds itself back (it knows better when it may): the
    /// source is never held, and only its backlog's epochs are bounded by the lag.
    pub fn epochs_only(&self) -> Backlog {
        Backlog { holding: false, ..self.clone() }
    }

    /// How long a backlog's epochs may last: [`CHECKPOINTED_BACKLOG_EPOCH_MS`], at most a
    /// quarter of this back-pressure's lag. The epoch being read is incomplete, so the pipeline's end
    /// lags by at least its length: epochs as long as the lag would hold the source back
    /// at every one, and reading would stop while the pipeline catches up instead of
    /// going on beside it.
    fn backlog_epoch(&self) -> Time {
        CHECKPOINTED_BACKLOG_EPOCH_MS.min(self.lag / 4).max(1)
    }

    /// True when a source should wait rather than read at epoch `now`.
    pub fn holds(&self, now: Time) -> bool {
        self.holding
            && !self.stop.load(std::sync::atomic::Ordering::Relaxed)
            && (self.probe.less_than(&now.saturating_sub(self.lag))
                || (self.durable && self.checkpoints.durable_through() < now.saturating_sub(self.uncommitted)))
    }
}

/// A stream of what `reader` reads, each item at the epoch it was read in.
pub fn polled_source<'scope, R: Reader<Item: Records>>(
    scope: Scope<'scope, Time>,
    name: &str,
    reader: R,
) -> StreamVec<'scope, Time, R::Item> {
    checkpointed_source(scope, name, reader, None, None)
}

/// [`polled_source`] in a checkpointed run. While the reader reads a backlog (it returned
/// [`Poll::Ready`]), its epochs last up to [`BACKLOG_EPOCH_MS`] and
/// [`BACKLOG_EPOCH_RECORDS`] (with a [`Backlog`],
/// up to [`CHECKPOINTED_BACKLOG_EPOCH_MS`] and a quarter of its lag). Whenever the capability crosses a checkpoint
/// boundary, and when the reader is done, the reader's [`Reader::snapshot`] is saved
/// (everything emitted before is stamped below the boundary, everything after at or
/// above it). With a [`Backlog`], the reader waits while the pipeline or the durable
/// output is too far behind: back-pressure, so that checkpoints follow the input closely
/// (bounding what a crash makes a resumed run read again) and what is in flight stays
/// bounded, also while a sink is down.
pub fn checkpointed_source<'scope, R: Reader<Item: Records>>(
    scope: Scope<'scope, Time>,
    name: &str,
    reader: R,
    mut saver: Option<Saver>,
    backlog: Option<Backlog>,
) -> StreamVec<'scope, Time, R::Item> {
    let mut reader = Some(reader);
    source(scope, name, move |capability, info| {
        if let Some(r) = reader.as_mut() {
            r.set_waker(scope.worker().sync_activator_for(info.address.to_vec()));
        }
        let activator = scope.activator_for(info.address);
        let mut capability = Some(capability);
        let mut held_since: Option<std::time::Instant> = None;
        let backlog_epoch = backlog.as_ref().map_or(BACKLOG_EPOCH_MS, Backlog::backlog_epoch);
        let mut reading_backlog = false;
        // The records read in the current epoch.
        let mut records = 0;
        move |output| {
            let (Some(cap), Some(r)) = (capability.as_mut(), reader.as_mut()) else { return };
            let now = epoch_now();
            let length = if reading_backlog && records < BACKLOG_EPOCH_RECORDS { backlog_epoch } else { 1 };
            if now >= *cap.time() + length {
                records = 0;
                if let Some(saver) = saver.as_mut() {
                    saver.maybe_save(Some(*cap.time()), Some(now), |_| Part { state: r.snapshot(), ..Part::default() });
                }
                cap.downgrade(&now);
            }
            if backlog.as_ref().is_some_and(|b| b.holds(now)) {
                reading_backlog = false;
                held_since.get_or_insert_with(std::time::Instant::now);
                activator.activate_after(Duration::from_millis(1));
                return;
            }
            if let Some(since) = held_since.take() {
                r.held(since.elapsed());
            }
            let mut items = Vec::new();
            let poll = r.read(&mut items);
            reading_backlog = poll == Poll::Ready;
            records += items.iter().map(Records::records).sum::<usize>();
            if !items.is_empty() {
                output.session(&*cap).give_iterator(items.into_iter());
            }
            match poll {
                Poll::Ready => activator.activate(),
                Poll::Wait(delay) => activator.activate_after(delay),
                Poll::Done => {
                    if let Some(saver) = saver.as_mut() {
                        saver.maybe_save(Some(*cap.time()), None, |_| Part { state: r.snapshot(), ..Part::default() });
                    }
                    capability = None;
                    reader = None;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use timely::dataflow::operators::Inspect;

    /// Returns one item of `weight` records per activation, for `run`, then is done;
    /// `ready`: as a backlog.
    struct Steady {
        until: Instant,
        ready: bool,
        weight: usize,
    }

    impl Records for usize {
        fn records(&self) -> usize {
            *self
        }
    }

    impl Reader for Steady {
        type Item = usize;
        fn read(&mut self, out: &mut Vec<usize>) -> Poll {
            out.push(self.weight);
            if Instant::now() >= self.until {
                Poll::Done
            } else if self.ready {
                Poll::Ready
            } else {
                Poll::Wait(Duration::from_millis(1))
            }
        }
    }

    /// The distinct epochs a reader's items are stamped with over `run`.
    fn epochs(ready: bool, run: Duration, weight: usize) -> usize {
        let epochs = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
        let seen = epochs.clone();
        timely::execute_directly(move |worker| {
            let seen = seen.clone();
            worker.dataflow::<Time, _, _>(|scope| {
                let reader = Steady { until: Instant::now() + run, ready, weight };
                polled_source(scope, "Steady", reader).inspect_core(move |event| {
                    if let Ok((stamp, _)) = event {
                        seen.lock().unwrap().extend(stamp.iter().copied());
                    }
                });
            });
        });
        epochs.lock().unwrap().len()
    }

    #[test]
    fn a_backlog_is_read_in_longer_epochs() {
        let run = Duration::from_millis(300);
        // A backlog: at most one epoch per BACKLOG_EPOCH_MS (and the first and last).
        let backlog = epochs(true, run, 0);
        assert!(backlog <= (300 / BACKLOG_EPOCH_MS) as usize + 2, "{backlog} epochs in 300 ms of backlog");
        // Reading what arrives: a new epoch every activation, one every millisecond or so.
        let live = epochs(false, run, 0);
        assert!(live > 3 * backlog, "{live} epochs live against {backlog} reading a backlog");
        // A backlog of many records: an epoch ends once it holds BACKLOG_EPOCH_RECORDS
        // (here two reads) and a millisecond has passed.
        let full = epochs(true, run, BACKLOG_EPOCH_RECORDS / 2);
        assert!(full > 10 * backlog, "{full} epochs of full reads against {backlog} of light ones");
    }
}
