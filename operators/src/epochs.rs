//! Epoch bookkeeping shared by every operator that must process epochs in order.
//!
//! Background: timely delivers messages of different epochs in any order, and a
//! stateful operator that emits differences must apply epoch `t` before `t + 1`. The
//! pattern (differential's own `count_total` does the same with batches) is: stash
//! input by epoch while holding a capability for it, and process an epoch only once
//! every input frontier has passed it. Epochs here are wall-clock milliseconds, so an
//! epoch completes, and its results flow, within milliseconds.

use std::collections::BTreeMap;
use timely::progress::frontier::MutableAntichain;
use tradeflow_model::Time;

/// The least time in any of `frontiers`, or `None` when all inputs are done.
pub fn combined_frontier(frontiers: &[MutableAntichain<Time>]) -> Option<Time> {
    frontiers.iter().flat_map(|f| f.frontier().iter().copied().collect::<Vec<_>>()).min()
}

/// Input stashed per epoch until the epoch is complete.
#[derive(Debug)]
pub struct EpochQueue<D> {
    pending: BTreeMap<Time, D>,
}

impl<D> Default for EpochQueue<D> {
    fn default() -> Self {
        EpochQueue { pending: BTreeMap::new() }
    }
}

impl<D: Default> EpochQueue<D> {
    /// The stash for epoch `time`.
    pub fn at(&mut self, time: Time) -> &mut D {
        self.pending.entry(time).or_default()
    }

    /// Removes and returns the oldest epoch if `frontier` has passed it (`None` = every
    /// input is done, so every epoch is complete).
    pub fn pop_complete(&mut self, frontier: Option<Time>) -> Option<(Time, D)> {
        let entry = self.pending.first_entry()?;
        if frontier.is_some_and(|f| *entry.key() >= f) {
            return None;
        }
        Some(entry.remove_entry())
    }

    /// The oldest stashed epoch: the least time an operator still needs to emit at.
    pub fn first_time(&self) -> Option<Time> {
        self.pending.keys().next().copied()
    }

    /// True when nothing is stashed.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}
