//! `dead_letter/date=D/*.parquet`: every rejected record, with its reason and payload.
//!
//! Background: rejects are written by the worker that read them. Each carries its
//! *segment*: the unit of input it was read in (a file chunk, a range of a simulator
//! stream's sequence numbers), whose boundaries do not depend on the worker count. A
//! file holds the rejects of one segment of one source received on one UTC date, sorted
//! by position, and is named after the source and the segment
//! (`file____data_in.ndjson-3fa2c1d0-00000000000004194304.parquet`), so a rerun, with any
//! number of workers, rewrites the same objects.
//!
//! A segment's file is written when a later segment of the same source shows up (every
//! source reads its segments in order on one worker), at the end of the input, or, on
//! live runs, after `max_age`. A checkpoint keeps the rejects not yet written; a run that
//! stops to be resumed (`suspended`) leaves them to the resumed run instead of writing
//! them at the end.

use super::parquet::{dead_letter_batch, dead_letter_schema, encode};
use super::paths::file_safe;
use super::store::{Lake, Payload};
use std::collections::BTreeMap;
use std::hash::Hasher;
use std::sync::Arc;
use std::time::{Duration, Instant};
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use tradeflow_model::checkpoint::{Part, PartPayload, Saver, Validity, from_json, to_json};
use tradeflow_model::{Reject, Time, date_of};
use tradeflow_operators::epochs::{EpochQueue, combined_frontier};

/// (source, segment, date)
type Key = (String, u64, String);

struct Pending {
    rows: Vec<Reject>,
    since: Instant,
    /// Checkpointed runs: how many of `rows` are in saved payloads, and which parts hold them.
    saved: usize,
    parts: Vec<u64>,
}

impl Pending {
    fn new() -> Pending {
        Pending { rows: Vec::new(), since: Instant::now(), saved: 0, parts: Vec::new() }
    }
}

/// Writes rejects to the lake (see the module documentation).
pub fn write_dead_letters<'scope>(
    rejects: StreamVec<'scope, Time, Reject>,
    lake: Arc<Lake>,
    max_age: Option<Duration>,
    mut saver: Option<Saver>,
    suspended: impl Fn() -> bool + 'static,
) -> Result<(), String> {
    // A checkpoint keeps the pending keys (state) and, in each part's payload, the rows
    // added since the previous part; a key's rows are restored from the parts it names.
    let mut restored: BTreeMap<Key, Pending> = BTreeMap::new();
    if let Some(part) = saver.as_ref().and_then(Saver::restore) {
        let keys: Vec<(Key, Vec<u64>)> = from_json("the dead-letter writer", &part.state)?;
        for (key, parts) in keys {
            restored.insert(key, Pending { parts, ..Pending::new() });
        }
        for (_, payload) in &part.payloads {
            let groups: Vec<(Key, Vec<Reject>)> = from_json("the dead-letter writer", payload)?;
            for (key, mut rows) in groups {
                if let Some(slot) = restored.get_mut(&key) {
                    slot.rows.append(&mut rows);
                    slot.saved = slot.rows.len();
                }
            }
        }
    }
    let mut builder = OperatorBuilder::new("Lake:dead_letter".to_owned(), rejects.scope());
    let mut input = builder.new_input(rejects, Pipeline);
    builder.build(move |_| {
        let mut queue = EpochQueue::<Vec<Reject>>::default();
        let mut pending = restored;
        move |frontiers| {
            input.for_each(|cap, batch| {
                let Some(&time) = cap.least() else { return };
                queue.at(time).append(batch);
            });
            let frontier = combined_frontier(frontiers);
            let save = |pending: &mut BTreeMap<Key, Pending>, valid: Validity| {
                let mut payload: Vec<(&Key, &[Reject])> = Vec::new();
                let mut needs = std::collections::BTreeSet::new();
                for slot in pending.values_mut() {
                    if slot.saved < slot.rows.len() {
                        slot.parts.push(valid.first);
                    }
                    needs.extend(slot.parts.iter().copied());
                }
                for (key, slot) in pending.iter() {
                    if slot.saved < slot.rows.len() {
                        payload.push((key, &slot.rows[slot.saved..]));
                    }
                }
                let part = Part {
                    state: to_json(&pending.iter().map(|(k, p)| (k, &p.parts)).collect::<Vec<_>>()),
                    payload: (!payload.is_empty()).then(|| PartPayload::Bytes(to_json(&payload))),
                    needs: needs.into_iter().collect(),
                };
                for slot in pending.values_mut() {
                    slot.saved = slot.rows.len();
                }
                part
            };
            while let Some((time, rejects)) = queue.pop_complete(frontier) {
                if let Some(saver) = saver.as_mut() {
                    saver.before_epoch(time, |valid| save(&mut pending, valid));
                }
                for reject in rejects {
                    // An earlier segment of the same source is complete.
                    let done: Vec<Key> = pending
                        .keys()
                        .filter(|(source, segment, _)| *source == reject.source && *segment < reject.segment)
                        .cloned()
                        .collect();
                    for key in done {
                        if let Some(slot) = pending.remove(&key) {
                            write(&lake, slot.rows);
                        }
                    }
                    let key = (reject.source.clone(), reject.segment, date_of(reject.received_at));
                    pending.entry(key).or_insert_with(Pending::new).rows.push(reject);
                }
            }
            if let Some(saver) = saver.as_mut() {
                saver.at_frontier(frontier, |valid| save(&mut pending, valid));
            }
            let end = frontier.is_none() && !suspended();
            let aged = |slot: &Pending| max_age.is_some_and(|age| slot.since.elapsed() >= age);
            pending.retain(|_, slot| {
                if end || aged(slot) {
                    write(&lake, std::mem::take(&mut slot.rows));
                    return false;
                }
                true
            });
        }
    });
    Ok(())
}

fn write(lake: &Lake, mut rows: Vec<Reject>) {
    rows.sort_by_key(|r| (r.position, r.element));
    let Some(first) = rows.first() else { return };
    let mut hasher = rustc_hash::FxHasher::default();
    hasher.write(first.source.as_bytes());
    let key = format!(
        "dead_letter/date={}/{}-{:08x}-{:020}.parquet",
        date_of(first.received_at),
        file_safe(&first.source),
        hasher.finish() as u32,
        first.segment,
    );
    match encode(dead_letter_schema(), &[dead_letter_batch(&rows)], Vec::new()) {
        Ok(bytes) => lake.publish(key, Payload::Bytes(bytes), rows.len() as u64),
        Err(e) => lake.report_error(format!("encoding {key}: {e}")),
    }
}
