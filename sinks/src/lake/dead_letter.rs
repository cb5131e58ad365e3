//! `dead_letter/date=D/*.parquet`: every rejected record, with its reason and payload.
//!
//! Background: rejects are written by the worker that read them, grouped by source
//! partition and by the UTC date they were received, in the order they were read. A
//! file is cut at `max_rows` rejects, after `max_age` on live runs, and at the end. It
//! is named after its partition and the position of its first record
//! (`file_data.ndjson-3fa2c1d0-00000000000000001234-00000.parquet`), so a rerun with the
//! same configuration rewrites the same objects.

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
use tradeflow_model::{Reject, Time, date_of};
use tradeflow_operators::epochs::{EpochQueue, combined_frontier};

struct Pending {
    rows: Vec<Reject>,
    since: Instant,
}

/// Writes rejects to the lake (see the module documentation).
pub fn write_dead_letters<'scope>(
    rejects: StreamVec<'scope, Time, Reject>,
    lake: Arc<Lake>,
    max_rows: usize,
    max_age: Option<Duration>,
) {
    let mut builder = OperatorBuilder::new("Lake:dead_letter".to_owned(), rejects.scope());
    let mut input = builder.new_input(rejects, Pipeline);
    builder.build(move |_| {
        let mut queue = EpochQueue::<Vec<Reject>>::default();
        let mut pending: BTreeMap<(String, String), Pending> = BTreeMap::new();
        move |frontiers| {
            input.for_each(|cap, batch| {
                let Some(&time) = cap.least() else { return };
                queue.at(time).append(batch);
            });
            let frontier = combined_frontier(frontiers);
            while let Some((_, rejects)) = queue.pop_complete(frontier) {
                for reject in rejects {
                    let key = (reject.source.clone(), date_of(reject.received_at));
                    let slot =
                        pending.entry(key).or_insert_with(|| Pending { rows: Vec::new(), since: Instant::now() });
                    slot.rows.push(reject);
                    if slot.rows.len() >= max_rows {
                        let rows = std::mem::take(&mut slot.rows);
                        write(&lake, rows);
                    }
                }
            }
            pending.retain(|_, slot| {
                let aged = max_age.is_some_and(|age| slot.since.elapsed() >= age);
                if !slot.rows.is_empty() && (frontier.is_none() || aged) {
                    write(&lake, std::mem::take(&mut slot.rows));
                }
                if slot.rows.is_empty() {
                    return frontier.is_some() && !aged;
                }
                true
            });
        }
    });
}

fn write(lake: &Lake, rows: Vec<Reject>) {
    let Some(first) = rows.first() else { return };
    let mut hasher = rustc_hash::FxHasher::default();
    hasher.write(first.source.as_bytes());
    let key = format!(
        "dead_letter/date={}/{}-{:08x}-{:020}-{:05}.parquet",
        date_of(first.received_at),
        file_safe(&first.source),
        hasher.finish() as u32,
        first.position,
        first.element
    );
    match encode(dead_letter_schema(), &[dead_letter_batch(&rows)], Vec::new()) {
        Ok(bytes) => lake.publish(key, Payload::Bytes(bytes)),
        Err(e) => lake.report_error(format!("encoding {key}: {e}")),
    }
}
