//! Epoch bookkeeping shared by every operator that must process epochs in order.
//!
//! Background: timely delivers messages of different epochs in any order, and a
//! stateful operator that emits differences must apply epoch `t` before `t + 1`. The
//! pattern (differential's own `count_total` does the same with batches) is: stash
//! input by epoch while holding a capability for it, and process an epoch only once
//! every input frontier has passed it. Epochs here are wall-clock milliseconds, so an
//! epoch completes, and its results flow, within milliseconds.

use std::collections::BTreeMap;
use timely::dataflow::operators::{Capability, CapabilitySet, InputCapability};
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

/// The capabilities of the `N` outputs of an operator that stashes epochs in an
/// [`EpochQueue`]: kept for each epoch an input brings, released as epochs are processed.
pub struct OutputCaps<const N: usize>([CapabilitySet<Time>; N]);

impl<const N: usize> Default for OutputCaps<N> {
    fn default() -> Self {
        OutputCaps(std::array::from_fn(|_| CapabilitySet::new()))
    }
}

impl<const N: usize> OutputCaps<N> {
    /// Keeps `cap`'s time for every output.
    pub fn keep(&mut self, cap: &InputCapability<Time>) {
        for (port, set) in self.0.iter_mut().enumerate() {
            if let Some(cap) = cap.retain_least(port) {
                set.insert(cap);
            }
        }
    }

    /// A capability of output `port` at `time`, at or after a time kept and not released.
    pub fn at(&self, port: usize, time: Time) -> Capability<Time> {
        self.0[port].delayed(&time)
    }

    /// Holds only the oldest epoch `queue` still stashes, or nothing once it is empty.
    pub fn hold<D: Default>(&mut self, queue: &EpochQueue<D>) {
        for set in self.0.iter_mut() {
            match queue.first_time() {
                Some(t) => set.downgrade([t]),
                None => *set = CapabilitySet::new(),
            }
        }
    }
}
