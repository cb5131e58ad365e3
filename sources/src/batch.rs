//! What every source hands the dataflow: accepted trades, rejects, and its watermark.

use tradeflow_model::{Reject, Trade};

/// One source instance's output for one activation.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// Accepted trades (valid and not late), in the order read.
    pub trades: Vec<Trade>,
    /// Rejected records, in the order read.
    pub rejects: Vec<Reject>,
    /// The instance's watermark report after this batch: nothing it emits later has an
    /// event time below it (`i64::MAX` when it is done). `None` leaves it unchanged.
    pub low: Option<i64>,
    /// The instance stopped because its process was asked to (a signal, a failure), not
    /// because its input ended: every process of the run stops too (see
    /// [`tradeflow_model::WatermarkReport::stop`]).
    pub stop: bool,
}

impl Batch {
    /// The last batch of a finished source instance: nothing, and a watermark report of
    /// `i64::MAX`.
    pub fn end() -> Batch {
        Batch { trades: Vec::new(), rejects: Vec::new(), low: Some(i64::MAX), stop: false }
    }

    /// The last batch of a reader that ends: [`Batch::end`] when it has read everything
    /// (or the run drains on a stop, see [`set_suspend_on_stop`]); when a checkpointed run
    /// is `stopped`, nothing: its open windows stay provisional, for the resumed run to
    /// complete.
    pub fn last(stopped: bool) -> Batch {
        let last = if stopped && suspends_on_stop() { Batch::default() } else { Batch::end() };
        Batch { stop: stopped, ..last }
    }

    /// Pushes this batch to `out` with the watermark report `low`, unless it carries no
    /// trades or rejects and `low` is what `reported` says was reported last (updated):
    /// a live reader woken with nothing new sends nothing.
    pub fn push_with_low(mut self, out: &mut Vec<Batch>, low: i64, reported: &mut Option<i64>) {
        if *reported != Some(low) || !self.trades.is_empty() || !self.rejects.is_empty() {
            *reported = Some(low);
            self.low = Some(low);
            out.push(self);
        }
    }

    /// True when the batch carries nothing.
    pub fn is_empty(&self) -> bool {
        self.trades.is_empty() && self.rejects.is_empty() && self.low.is_none()
    }
}

thread_local! {
    /// The largest emptied trades vector of a batch this thread has consumed.
    static SPARE_TRADES: std::cell::RefCell<Vec<Trade>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Gives back a consumed batch's trades vector, for the next batch a source on this thread
/// builds: a fast reader's batches hold megabytes, and a fresh vector each time costs its
/// pages being zeroed by the kernel again.
pub fn recycle_trades(mut trades: Vec<Trade>) {
    SPARE_TRADES.with_borrow_mut(|spare| {
        if trades.capacity() > spare.capacity() {
            trades.clear();
            *spare = trades;
        }
    });
}

/// An empty trades vector: the one last given back on this thread, if any.
pub fn spare_trades() -> Vec<Trade> {
    SPARE_TRADES.with_borrow_mut(std::mem::take)
}

/// The dead-letter segment of a record at `position` in a numbered stream (a simulator's
/// sequence, a Kafka partition's offsets): blocks of 2^20 positions, so that a long run
/// writes a few dead-letter files, each named after the first position of its block.
pub fn stream_segment(position: u64) -> u64 {
    position & !((1 << 20) - 1)
}

static SUSPEND_ON_STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether a stopped reader leaves its watermark where it is (a checkpointed run that a
/// restart resumes) rather than ending it (finalising every open window).
pub fn set_suspend_on_stop(suspend: bool) {
    SUSPEND_ON_STOP.store(suspend, std::sync::atomic::Ordering::Relaxed);
}

pub use tradeflow_model::wall_ms;

/// Whether a stop leaves the open windows for a resumed run (see [`set_suspend_on_stop`]).
pub fn suspends_on_stop() -> bool {
    SUSPEND_ON_STOP.load(std::sync::atomic::Ordering::Relaxed)
}

static FAILURE: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Records that a source failed in a way the run must not hide (input it could not read
/// after retrying): the run stops its sources, finishes what it has, and exits non-zero
/// with this message.
pub fn report_failure(message: String) {
    tracing::error!("{message}");
    let mut slot = FAILURE.lock().unwrap_or_else(|e| e.into_inner());
    slot.get_or_insert(message);
}

/// The first source failure reported in this process, if any.
pub fn failure() -> Option<String> {
    FAILURE.lock().unwrap_or_else(|e| e.into_inner()).clone()
}
