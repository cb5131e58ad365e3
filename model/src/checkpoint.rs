//! Checkpoints: consistent cuts of the running pipeline, saved piece by piece.
//!
//! Background: tradeflow's timely epochs are wall-clock milliseconds. A checkpoint is
//! taken at *boundaries*, the multiples of `--checkpoint-interval` on that clock: the cut
//! at boundary `B` is the state every component has once it has applied everything
//! stamped before `B` and nothing stamped at or after it. Timely's progress tracking makes
//! that a consistent cut across workers and processes without any coordination: a
//! source records its position when its capability crosses `B` (everything it emitted
//! before is stamped below `B`, everything after at or above), and every downstream
//! component saves its state when its input frontier crosses `B`, before it applies the
//! first epoch at or after `B` (see [`Cut`]).
//!
//! A component's saved state ("part") is valid for a range of boundaries: all those in
//! (last epoch applied, next epoch to apply]. The checkpoint at `B` is complete once every
//! component on every worker has saved a part valid for `B`; [`FINAL`] is the boundary of
//! a run's end (every input done, or a stop).
//!
//! Components reach the store through [`Checkpoints`], implemented where the sinks keep
//! their output (the lake), so that a checkpoint is durable exactly when the output it
//! covers is.

use crate::{Conditions, Price, Qty, Symbol, Time, Trade};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The boundary index of a run's end: valid after every boundary.
pub const FINAL: u64 = u64::MAX;

/// The boundaries (as indices: boundary `k` is at `k × interval` ms) a part is valid for.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validity {
    /// The first boundary.
    pub first: u64,
    /// The last boundary ([`FINAL`]: every later one, and the run's end).
    pub last: u64,
}

impl Validity {
    /// True if the part holds the state at boundary `k`.
    pub fn covers(&self, k: u64) -> bool {
        self.first <= k && k <= self.last
    }
}

/// Decides when a component saves a part (see the module documentation).
#[derive(Clone, Debug)]
pub struct Cut {
    interval: u64,
    /// The first boundary not yet saved.
    next: u64,
    /// The final part is saved.
    finished: bool,
}

impl Cut {
    /// Boundaries every `interval_ms`; the state restored (if any) was that at boundary
    /// `restored`, so saving starts after it.
    pub fn new(interval_ms: u64, restored: Option<u64>) -> Self {
        Cut { interval: interval_ms.max(1), next: restored.map_or(0, |k| k.saturating_add(1)), finished: false }
    }

    /// The boundary index at or below `time`.
    pub fn boundary_at(&self, time: Time) -> u64 {
        time / self.interval
    }

    /// With everything up to epoch `after` applied and nothing at or after `upto` (`None`:
    /// the input is done), the boundaries not yet saved that the current state is valid
    /// for; marks them saved.
    pub fn crossed(&mut self, after: Option<Time>, upto: Option<Time>) -> Option<Validity> {
        if self.finished {
            return None;
        }
        let first = after.map_or(0, |t| t / self.interval + 1).max(self.next);
        let last = upto.map_or(FINAL, |t| t / self.interval);
        if first > last {
            return None;
        }
        if last == FINAL {
            self.finished = true;
        } else {
            self.next = last + 1;
        }
        Some(Validity { first, last })
    }

    /// True once the final part has been saved.
    pub fn finished(&self) -> bool {
        self.finished
    }
}

/// A part as restored: the component's state, and the payloads of earlier parts it said
/// it still needs, oldest first.
#[derive(Clone, Debug, Default)]
pub struct Restored {
    /// The boundary the state is from.
    pub boundary: u64,
    /// The state.
    pub state: Vec<u8>,
    /// `(first boundary of the part, payload)` of the payloads still needed.
    pub payloads: Vec<(u64, Vec<u8>)>,
}

/// What a component saves at a cut.
#[derive(Clone, Debug, Default)]
pub struct Part {
    /// Its state (small).
    pub state: Vec<u8>,
    /// A payload kept apart from the state (large, written once: e.g. the trades added to
    /// open lake files since the previous part), if any.
    pub payload: Option<PartPayload>,
    /// The `first` boundaries of this component's earlier parts whose payloads the state
    /// still needs (restored with it).
    pub needs: Vec<u64>,
}

/// A part's payload: in memory, or a local file the component wrote it to as it went
/// (handed over: the store removes it once stored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartPayload {
    /// The payload's bytes.
    Bytes(Vec<u8>),
    /// A file holding the payload's bytes.
    File(std::path::PathBuf),
}

/// Where components save and find their parts.
pub trait Checkpoints: Send + Sync {
    /// The interval between boundaries, ms.
    fn interval_ms(&self) -> u64;
    /// The part of `component` on `worker` restored at start, if the run resumed.
    fn restore(&self, component: &str, worker: usize) -> Option<Restored>;
    /// The boundary the run resumed from, if any.
    fn resumed_from(&self) -> Option<u64>;
    /// Saves a part of `component` on `worker`, valid for `valid`.
    fn save(&self, component: &str, worker: usize, valid: Validity, part: Part);
    /// Declares that `component` on `worker` saves parts: no checkpoint is complete
    /// without one of its parts.
    fn register(&self, component: &str, worker: usize);
    /// The epoch (wall-clock ms) up to which the output is durable: the newest committed
    /// boundary's, or the run's start before its first commit. Sources wait while it lags
    /// too far behind (see `tradeflow_sources::driver::Backlog`), so that a sink that is
    /// down holds the input back instead of letting it pile up.
    fn durable_through(&self) -> u64;
}

/// A component's handle: the store, its name and its worker.
#[derive(Clone)]
pub struct Saver {
    store: Arc<dyn Checkpoints>,
    component: String,
    worker: usize,
    cut: Cut,
    /// The last epoch an epoch-ordered operator applied (see [`Saver::before_epoch`]).
    applied: Option<Time>,
}

impl Saver {
    /// A handle for `component` on `worker`.
    pub fn new(store: Arc<dyn Checkpoints>, component: &str, worker: usize) -> Saver {
        let cut = Cut::new(store.interval_ms(), store.resumed_from());
        store.register(component, worker);
        Saver { store, component: component.to_owned(), worker, cut, applied: None }
    }

    /// The part restored for this component, if any.
    pub fn restore(&self) -> Option<Restored> {
        self.store.restore(&self.component, self.worker)
    }

    /// The part restored for a component that every checkpoint holds: `None` on a fresh
    /// run, an error if the run resumed from a checkpoint without it (one written by an
    /// older tradeflow, which kept `what` in another form).
    pub fn restore_required(&self, what: &str) -> Result<Option<Restored>, String> {
        match self.restore() {
            None if self.store.resumed_from().is_some() => Err(format!(
                "the checkpoint being resumed has no state for {what} (component {}): an older tradeflow wrote it. Finish the job with that version, or start it again with --from-scratch",
                self.component
            )),
            restored => Ok(restored),
        }
    }

    /// Saves `part()` if the state (everything up to `after` applied, nothing at or after
    /// `upto`) is valid for a boundary not yet saved.
    pub fn maybe_save(&mut self, after: Option<Time>, upto: Option<Time>, part: impl FnOnce(Validity) -> Part) {
        if let Some(valid) = self.cut.crossed(after, upto) {
            self.store.save(&self.component, self.worker, valid, part(valid));
        }
    }

    /// For an operator that applies its epochs in order: call before applying epoch `time`.
    /// Saves `part()` if the state (every earlier epoch applied) is valid for a boundary
    /// not yet saved, then records `time` as applied.
    pub fn before_epoch(&mut self, time: Time, part: impl FnOnce(Validity) -> Part) {
        self.maybe_save(self.applied, Some(time), part);
        self.applied = Some(time);
    }

    /// For the same operator, once it has applied every complete epoch: its input
    /// `frontier` (`None`: the input is done) may have crossed boundaries too.
    pub fn at_frontier(&mut self, frontier: Option<Time>, part: impl FnOnce(Validity) -> Part) {
        self.maybe_save(self.applied, frontier, part);
    }
}

/// `head` and `tail` as one state (read back by [`split_state`]).
pub fn join_state(head: &[u8], tail: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + head.len() + tail.len());
    out.extend_from_slice(&(head.len() as u64).to_le_bytes());
    out.extend_from_slice(head);
    out.extend_from_slice(tail);
    out
}

/// The `(head, tail)` of a state made by [`join_state`].
pub fn split_state(state: &[u8]) -> Result<(&[u8], &[u8]), String> {
    let len = state.get(..8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize);
    match len {
        Some(len) if state.len() >= 8 + len => Ok((&state[8..8 + len], &state[8 + len..])),
        _ => Err("a checkpoint state is truncated".into()),
    }
}

/// JSON encoding of a small state (exact: integers, and floats written shortest
/// round-trip).
pub fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("checkpoint state serialises")
}

/// Decodes a state written by [`to_json`]; the error names the component.
pub fn from_json<T: for<'de> Deserialize<'de>>(component: &str, bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("the checkpoint of {component} is unreadable: {e}"))
}

/// Appends `trade` to `out` in a compact binary form (read by [`read_trades`]).
pub fn write_trade(out: &mut Vec<u8>, trade: &Trade) {
    let symbol = trade.symbol.as_str().as_bytes();
    out.push(symbol.len() as u8);
    out.extend_from_slice(symbol);
    out.extend_from_slice(&trade.ts.to_le_bytes());
    out.extend_from_slice(&trade.price.0.to_le_bytes());
    out.extend_from_slice(&trade.volume.0.to_le_bytes());
    let conditions = trade.conditions.as_json().unwrap_or("").as_bytes();
    out.extend_from_slice(&(conditions.len() as u32).to_le_bytes());
    out.extend_from_slice(conditions);
}

/// The trades written by [`write_trade`].
pub fn read_trades(mut bytes: &[u8]) -> Result<Vec<Trade>, String> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if bytes.len() < n {
            return Err("a checkpoint payload of trades is truncated".into());
        }
        let (head, tail) = bytes.split_at(n);
        *bytes = tail;
        Ok(head)
    }
    let i64_of = |b: &[u8]| i64::from_le_bytes(b.try_into().expect("8 bytes"));
    // A resume reads up to an hour of an open file's trades: sized once (a record is at
    // least 30 bytes, and most are within a few of it), each symbol checked once.
    let mut trades = Vec::with_capacity(bytes.len() / 30);
    let mut symbols: rustc_hash::FxHashMap<&[u8], Symbol> = rustc_hash::FxHashMap::default();
    while !bytes.is_empty() {
        let len = take(&mut bytes, 1)?[0] as usize;
        let name = take(&mut bytes, len)?;
        let symbol = match symbols.get(name) {
            Some(symbol) => symbol.clone(),
            None => {
                let text = std::str::from_utf8(name).map_err(|e| e.to_string())?;
                let symbol = Symbol::parse(text).map_err(|e| e.to_string())?;
                symbols.insert(name, symbol.clone());
                symbol
            }
        };
        let ts = i64_of(take(&mut bytes, 8)?);
        let price = Price(i64_of(take(&mut bytes, 8)?));
        let volume = Qty(i64_of(take(&mut bytes, 8)?));
        let len = u32::from_le_bytes(take(&mut bytes, 4)?.try_into().expect("4 bytes")) as usize;
        let text = std::str::from_utf8(take(&mut bytes, len)?).map_err(|e| e.to_string())?;
        let conditions = if text.is_empty() { Conditions::none() } else { Conditions::from_json_unchecked(text) };
        trades.push(Trade { symbol, ts, price, volume, conditions });
    }
    Ok(trades)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_is_valid_from_after_the_last_epoch_to_the_next() {
        let mut cut = Cut::new(100, None);
        // Epochs 5 and 50 applied, the next is 250: boundaries 1 and 2 (100, 200).
        assert_eq!(cut.crossed(Some(50), Some(250)), Some(Validity { first: 1, last: 2 }));
        // Nothing new to save until boundary 3.
        assert_eq!(cut.crossed(Some(260), Some(299)), None);
        assert_eq!(cut.crossed(Some(260), Some(300)), Some(Validity { first: 3, last: 3 }));
        // Epoch 310 applied, next 320: no boundary in (310, 320].
        assert_eq!(cut.crossed(Some(310), Some(320)), None);
        // The end.
        assert_eq!(cut.crossed(Some(310), None), Some(Validity { first: 4, last: FINAL }));
        assert!(cut.finished());
        assert_eq!(cut.crossed(Some(310), None), None);
    }

    #[test]
    fn a_resumed_component_saves_after_the_restored_boundary() {
        let mut cut = Cut::new(100, Some(7));
        assert_eq!(cut.crossed(None, Some(750)), None);
        assert_eq!(cut.crossed(None, Some(800)), Some(Validity { first: 8, last: 8 }));
    }

    /// A store resumed from boundary 7 (or fresh) holding parts of `held` only.
    struct Held {
        resumed: Option<u64>,
        held: &'static str,
    }

    impl Checkpoints for Held {
        fn interval_ms(&self) -> u64 {
            100
        }
        fn restore(&self, component: &str, _worker: usize) -> Option<Restored> {
            let state = b"{}".to_vec();
            (component == self.held).then(|| Restored { boundary: 7, state, payloads: Vec::new() })
        }
        fn resumed_from(&self) -> Option<u64> {
            self.resumed
        }
        fn save(&self, _: &str, _: usize, _: Validity, _: Part) {}
        fn register(&self, _: &str, _: usize) {}
        fn durable_through(&self) -> u64 {
            0
        }
    }

    #[test]
    fn a_resumed_checkpoint_without_a_required_component_is_refused() {
        let saver = |resumed, component| Saver::new(Arc::new(Held { resumed, held: "old" }), component, 0);
        // Resumed from a checkpoint that holds another component (an older format).
        let error = saver(Some(7), "analytics-windows").restore_required("the window analytics").unwrap_err();
        assert!(error.contains("analytics-windows") && error.contains("--from-scratch"), "{error}");
        // A fresh run has nothing to restore; a resumed one restores what it holds.
        assert!(saver(None, "analytics-windows").restore_required("x").unwrap().is_none());
        assert_eq!(saver(Some(7), "old").restore_required("x").unwrap().unwrap().boundary, 7);
    }

    #[test]
    fn trades_round_trip() {
        let trade = |s: &str, ts, c: &str| Trade {
            symbol: Symbol::parse(s).unwrap(),
            ts,
            price: Price(18_712_000_000),
            volume: Qty(3),
            conditions: if c.is_empty() { Conditions::none() } else { Conditions::from_json_unchecked(c) },
        };
        // A symbol seen again is read from the first's check.
        let trades =
            vec![trade("AAPL", 1, ""), trade("BINANCE:BTC USDT", -5, "[\"1\",\"12\"]"), trade("AAPL", 2, "[\"1\"]")];
        let mut bytes = Vec::new();
        trades.iter().for_each(|t| write_trade(&mut bytes, t));
        assert_eq!(read_trades(&bytes).unwrap(), trades);
        assert!(read_trades(&bytes[..bytes.len() - 1]).is_err());
    }
}
