//! Replaying a run's changelog into a new dataflow, with differential's capture source.
//!
//! Background: the lake's changelog is differential's capture protocol in Parquet (see
//! [`tradeflow_lake::changelog`]): `Updates` batches from each worker of a run and
//! `Progress` statements for the whole run. [`replay`] hands them to differential's own
//! `capture::source`, which deduplicates updates, waits until it holds every update a
//! statement counts, and only then advances its frontier: downstream operators see, at
//! each processing time of the run, exactly the collection the run had then, whatever the
//! order of the files or the number of workers reading them.

use differential_dataflow::capture::{Message, Progress, source};
use differential_dataflow::{AsCollection, VecCollection};
use std::any::Any;
use timely::dataflow::Scope;
use tradeflow_lake::changelog::CapturedRun;
use tradeflow_lake::parquet::LakeRow;
use tradeflow_model::Time;

/// The capture protocol's messages of `run` that worker `index` of `peers` reads: every
/// `peers`-th updates file and progress statement (differential's source shares progress
/// among its workers, and tolerates duplicates and any order).
pub fn messages<R: LakeRow>(run: CapturedRun<R>, index: usize, peers: usize) -> Vec<Message<R, Time, isize>> {
    let updates = run
        .updates
        .into_iter()
        .map(|batch| Message::Updates(batch.into_iter().map(|(row, time, diff)| (row, time, diff as isize)).collect()));
    let progress = run.progress.into_iter().map(|s| {
        Message::Progress(Progress {
            lower: vec![s.lower],
            upper: s.upper.into_iter().collect(),
            counts: s.counts.into_iter().map(|(t, c)| (t, c as usize)).collect(),
        })
    });
    updates.chain(progress).enumerate().filter(|(i, _)| i % peers == index).map(|(_, m)| m).collect()
}

/// `run`'s collection in `scope`, at the run's processing times. Dropping the token stops
/// the source (needed to end the dataflow when the run stopped to be resumed: its last
/// statement then leaves the stream open).
pub fn replay<'scope, R>(
    scope: Scope<'scope, Time>,
    run: CapturedRun<R>,
) -> (Box<dyn Any + Send + Sync>, VecCollection<'scope, Time, R>)
where
    R: LakeRow + differential_dataflow::ExchangeData + std::hash::Hash,
{
    let messages = messages(run, scope.index(), scope.peers());
    let (token, stream) = source::build(scope, move |_activator| messages.into_iter());
    (token, stream.as_collection())
}
