//! `window_metrics/date=D/*.parquet` and `anomalies/date=D/*.parquet`: final rows.
//!
//! Background: final rows (never retracted) are gathered on worker 0, which groups them
//! by the UTC hour of their window start. An hour is complete when the watermark has
//! passed the end of every window starting in it (`hour end − 1 ms + W`): its rows are
//! then sorted by (window_start, symbol, …) and written as one file, or several of at
//! most `max_rows` rows.
//!
//! Determinism: an hour's rows are exactly the final rows of windows starting in it, so
//! the file names (`20231114T22-0000.parquet`) and contents depend only on the accepted
//! trades, and a replay rewrites the same objects.

use super::parquet::{LakeRow, encode};
use super::paths::hour_label;
use super::store::{Lake, Payload};
use super::watermarked::{SinkLogic, Step, watermarked_sink};
use differential_dataflow::VecCollection;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use timely::ExchangeData;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::vec::{Filter, Map};
use tradeflow_model::checkpoint::{Part, Restored, Saver, Validity, from_json, to_json};
use tradeflow_model::{Time, WatermarkReport, WindowSpec, date_of};

const HOUR: i64 = 3_600_000;

/// Writes the final rows of `rows` to the lake (see the module documentation).
pub fn write_finals<'scope, R>(
    rows: VecCollection<'scope, Time, R>,
    watermarks: StreamVec<'scope, Time, WatermarkReport>,
    reporters: usize,
    windows: WindowSpec,
    lake: Arc<Lake>,
    max_rows: usize,
    saver: Option<Saver>,
) -> Result<(), String>
where
    R: LakeRow + ExchangeData + Debug,
{
    let finals = rows.inner.filter(|(row, _, diff)| row.is_final() && *diff > 0).map(|(row, _, _)| row);
    let name = format!("Lake:{}", R::DATASET);
    let writer = FinalsWriter { hours: BTreeMap::new(), windows, lake, max_rows };
    watermarked_sink(&name, finals, Exchange::new(|_: &R| 0), watermarks, reporters, saver, writer)
}

/// The final rows gathered on worker 0, by hour, until the hour is complete.
struct FinalsWriter<R> {
    hours: BTreeMap<i64, Vec<R>>,
    windows: WindowSpec,
    lake: Arc<Lake>,
    max_rows: usize,
}

impl<R: LakeRow + ExchangeData + Debug> SinkLogic<R> for FinalsWriter<R> {
    fn step(&mut self, step: Step<'_, R>) {
        for row in step.data.drain(..) {
            self.hours.entry(row.window_start().div_euclid(HOUR) * HOUR).or_default().push(row);
        }
        while let Some(entry) = self.hours.first_entry() {
            let hour = *entry.key();
            let complete = step.done || hour.saturating_add(HOUR - 1 + self.windows.size()) <= step.watermark;
            if !complete {
                break;
            }
            let mut rows = entry.remove();
            rows.sort();
            for (index, chunk) in rows.chunks(self.max_rows.max(1)).enumerate() {
                let key = format!("{}/date={}/{}-{index:04}.parquet", R::DATASET, date_of(hour), hour_label(hour));
                match encode(R::schema(), &[R::batch(chunk)], Vec::new()) {
                    Ok(bytes) => self.lake.publish(key, Payload::Bytes(bytes), chunk.len() as u64),
                    Err(e) => self.lake.report_error(format!("encoding {key}: {e}")),
                }
            }
        }
    }

    fn save(&mut self, _valid: Validity) -> Part {
        Part { state: to_json(&self.hours), ..Part::default() }
    }

    fn restore(&mut self, restored: Restored) -> Result<(), String> {
        self.hours = from_json(R::DATASET, &restored.state)?;
        Ok(())
    }
}
