//! `window_metrics/date=D/*.parquet` and `anomalies/date=D/*.parquet`: final rows.
//!
//! Background: final rows (never retracted) are gathered on worker 0, which groups them
//! by the UTC hour of their window start. An hour's rows, sorted by (window_start, then
//! the row: symbol, …), are its files of `max_rows` rows each, the last one shorter:
//! `20231114T22-0000.parquet`, `-0001`, …
//!
//! A file is written as soon as its rows are known, not when the hour ends, so memory
//! holds at most an hour's last `max_rows` rows (an hour of 1-second windows over 1,000
//! symbols is 3.6M rows): every row that has arrived belongs to a window the watermark
//! has passed, and so do all rows of windows that start no later, so the rows held sort
//! before any row still to come, and the first `max_rows` of them are the next file. The
//! rest of the hour is written when it is complete: when the watermark has passed the end
//! of every window starting in it (`hour end − 1 ms + W`).
//!
//! Determinism: an hour's rows are exactly the final rows of windows starting in it, so
//! the file names and contents depend only on the accepted trades, not on when the rows
//! arrived, and a replay rewrites the same objects.

use super::parquet::{LakeRow, encode};
use super::paths::hour_label;
use super::store::{Lake, Payload};
use super::watermarked::{SinkLogic, Step, watermarked_sink};
use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};
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

/// The final rows gathered on worker 0, by hour, until written.
struct FinalsWriter<R> {
    hours: BTreeMap<i64, Hour<R>>,
    windows: WindowSpec,
    lake: Arc<Lake>,
    max_rows: usize,
}

/// One hour's rows not yet written, and how many of its files are.
#[derive(Serialize, Deserialize)]
struct Hour<R> {
    rows: Vec<R>,
    written: u32,
}

impl<R> Default for Hour<R> {
    fn default() -> Self {
        Hour { rows: Vec::new(), written: 0 }
    }
}

impl<R: LakeRow + ExchangeData + Debug> Hour<R> {
    /// Writes the rows, sorted, as the next files of the hour starting at `start`, of
    /// `max_rows` rows each: full ones only, unless `all`.
    fn write(&mut self, lake: &Lake, start: i64, max_rows: usize, all: bool) {
        let max_rows = max_rows.max(1);
        if !all && self.rows.len() < max_rows {
            return;
        }
        self.rows.sort_by(|a, b| (a.window_start(), a).cmp(&(b.window_start(), b)));
        let full = if all { self.rows.len() } else { self.rows.len() / max_rows * max_rows };
        for chunk in self.rows[..full].chunks(max_rows) {
            let key =
                format!("{}/date={}/{}-{:04}.parquet", R::DATASET, date_of(start), hour_label(start), self.written);
            match encode(R::schema(), &[R::batch(chunk)], Vec::new()) {
                Ok(bytes) => lake.publish(key, Payload::Bytes(bytes), chunk.len() as u64),
                Err(e) => lake.report_error(format!("encoding {key}: {e}")),
            }
            self.written += 1;
        }
        self.rows.drain(..full);
    }
}

impl<R: LakeRow + ExchangeData + Debug> SinkLogic<R> for FinalsWriter<R> {
    fn step(&mut self, step: Step<'_, R>) {
        for row in step.data.drain(..).flatten() {
            self.hours.entry(row.window_start().div_euclid(HOUR) * HOUR).or_default().rows.push(row);
        }
        let (lake, max_rows, size) = (&self.lake, self.max_rows, self.windows.size());
        self.hours.retain(|&start, hour| {
            let complete = step.done || start.saturating_add(HOUR - 1 + size) <= step.watermark;
            hour.write(lake, start, max_rows, complete);
            !complete
        });
    }

    fn save(&mut self, _valid: Validity) -> Part {
        Part { state: to_json(&self.hours), ..Part::default() }
    }

    fn restore(&mut self, restored: Restored) -> Result<(), String> {
        self.hours = match from_json(R::DATASET, &restored.state) {
            Ok(hours) => hours,
            // A checkpoint of an earlier version: the rows of each open hour, none written.
            Err(e) => from_json::<BTreeMap<i64, Vec<R>>>(R::DATASET, &restored.state)
                .map_err(|_| e)?
                .into_iter()
                .map(|(start, rows)| (start, Hour { rows, written: 0 }))
                .collect(),
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::time::Duration;
    use tradeflow_model::{F64, Price, Symbol, WindowMetrics};

    const MINUTE: i64 = 60_000;
    /// 2023-11-14T22:00:00Z.
    const H: i64 = 1_699_999_200_000;

    fn row(symbol: &str, start: i64) -> WindowMetrics {
        let price = Price(1_000_000_000 + start % 7_919);
        WindowMetrics {
            symbol: Symbol::parse(symbol).unwrap(),
            window_start: start,
            window_end: start + MINUTE,
            trade_count: 3,
            volume: 300_000_000,
            vwap: Some(F64(10.0)),
            min_price: price,
            max_price: price,
            avg_price: F64(10.0),
            open: price,
            close: price,
            volatility: None,
            is_final: true,
        }
    }

    fn writer(root: &Path, max_rows: usize) -> FinalsWriter<WindowMetrics> {
        let lake = Arc::new(Lake::open(&format!("file://{}", root.display()), Duration::ZERO).unwrap());
        FinalsWriter { hours: BTreeMap::new(), windows: WindowSpec::tumbling(MINUTE).unwrap(), lake, max_rows }
    }

    fn step(writer: &mut FinalsWriter<WindowMetrics>, mut rows: Vec<WindowMetrics>, watermark: i64, done: bool) {
        writer.step(Step { time: 0, data: &mut vec![std::mem::take(&mut rows)], watermark, done });
        assert!(writer.lake.barrier(), "the lake is open");
    }

    /// The objects under `root/window_metrics`, by name.
    fn objects(root: &Path) -> BTreeMap<String, Vec<u8>> {
        let dir = root.join("window_metrics/date=2023-11-14");
        let Ok(entries) = std::fs::read_dir(&dir) else { return BTreeMap::new() };
        entries
            .map(|e| e.unwrap().path())
            .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
            .collect()
    }

    /// Each minute's final rows of 4 symbols (given in reverse), arriving as the
    /// watermark passes the minute's end, over the hour 22:00 and 3 minutes into 23:00.
    fn minutes() -> Vec<(Vec<WindowMetrics>, i64)> {
        (0..63)
            .map(|m| {
                let start = H + m * MINUTE;
                let rows = ["D:4", "C:3", "B:2", "A:1"].iter().map(|s| row(s, start)).collect();
                (rows, start + MINUTE)
            })
            .collect()
    }

    #[test]
    fn an_hours_files_are_written_as_their_rows_are_known_the_same_as_at_its_end() {
        // All at once, at the end: the hour's 240 rows sorted, in files of 50.
        let at_end = tempfile::tempdir().unwrap();
        let mut once = writer(at_end.path(), 50);
        step(&mut once, minutes().into_iter().flat_map(|(rows, _)| rows).collect(), i64::MAX, true);
        let expected = objects(at_end.path());
        let names: Vec<&str> = expected.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "20231114T22-0000.parquet",
                "20231114T22-0001.parquet",
                "20231114T22-0002.parquet",
                "20231114T22-0003.parquet",
                "20231114T22-0004.parquet",
                "20231114T23-0000.parquet",
            ]
        );

        // Minute by minute: a file as soon as 50 rows are held, so never 50 rows held.
        let gradual = tempfile::tempdir().unwrap();
        let mut live = writer(gradual.path(), 50);
        for (m, (rows, watermark)) in minutes().into_iter().enumerate() {
            step(&mut live, rows, watermark, false);
            let held: usize = live.hours.values().map(|h| h.rows.len()).sum();
            assert!(held < 50, "minute {m}: {held} rows held");
            if m == 12 {
                // 52 rows of 13 minutes: the first file is out, long before the hour ends.
                assert_eq!(objects(gradual.path()).keys().collect::<Vec<_>>(), ["20231114T22-0000.parquet"]);
            }
        }
        // 22:00 ended (its last window, 22:59, ended at 23:00) and is written whole; 23:00
        // is not over, and its 12 rows wait.
        let mut written = objects(gradual.path());
        assert_eq!(written.len(), 5);
        assert!(written.iter().all(|(name, bytes)| expected.get(name) == Some(bytes)), "22:00 as at the end");
        step(&mut live, Vec::new(), i64::MAX, true);
        written = objects(gradual.path());
        assert_eq!(written, expected);
    }

    #[test]
    fn a_restored_writer_goes_on_with_the_hours_next_file() {
        let at_end = tempfile::tempdir().unwrap();
        let mut once = writer(at_end.path(), 50);
        step(&mut once, minutes().into_iter().flat_map(|(rows, _)| rows).collect(), i64::MAX, true);

        let resumed = tempfile::tempdir().unwrap();
        let mut first = writer(resumed.path(), 50);
        let mut minutes = minutes().into_iter();
        for (rows, watermark) in minutes.by_ref().take(30) {
            step(&mut first, rows, watermark, false);
        }
        let saved = first.save(Validity { first: 1, last: 1 });
        let mut second = writer(resumed.path(), 50);
        second.restore(Restored { boundary: 1, state: saved.state, payloads: Vec::new() }).unwrap();
        for (rows, watermark) in minutes {
            step(&mut second, rows, watermark, false);
        }
        step(&mut second, Vec::new(), i64::MAX, true);
        assert_eq!(objects(resumed.path()), objects(at_end.path()));
    }

    #[test]
    fn a_checkpoint_of_the_earlier_form_restores_its_rows() {
        let root = tempfile::tempdir().unwrap();
        let mut writer = writer(root.path(), 50);
        let earlier: BTreeMap<i64, Vec<WindowMetrics>> = BTreeMap::from([(H, vec![row("A:1", H), row("B:2", H)])]);
        writer.restore(Restored { boundary: 1, state: to_json(&earlier), payloads: Vec::new() }).unwrap();
        assert_eq!(writer.hours[&H].rows, earlier[&H]);
        assert_eq!(writer.hours[&H].written, 0);
    }
}
