//! The changelog: differential's capture protocol, stored as Parquet.
//!
//! Background: differential-dataflow records a collection as two kinds of message (its
//! `capture` module, "CDC v2"): `Updates`, batches of `(data, time, diff)` that are
//! certain to occur, and `Progress`, irrevocable statements that the updates at times in
//! `[lower, upper)` number exactly `count` distinct `(data, time)` pairs at each time
//! listed (and none at any other). A reader that has every update a statement counts
//! knows the collection is complete up to `upper`, however the messages were duplicated,
//! reordered or split into files. The lake stores a run's window metrics and anomalies
//! that way:
//!
//! * `changelog/<collection>/<run_id>-w<worker>-<seq>.parquet` — one `Updates` message per
//!   file: the row's columns, `is_final`, `time` (the processing epoch), `diff` and
//!   `run_id`; written by each worker for its shard, consolidated (at most one update per
//!   row and time).
//! * `changelog/_progress/<collection>/<run_id>-<seq>.parquet` — the run's `Progress`
//!   statements (see [`crate::parquet::progress_schema`]), written by worker 0 for all
//!   workers and processes; their `[lower, upper)` tile the run's epochs from 0, and the
//!   last one's `upper` is null once the run ended.
//!
//! [`read_run`] reads one run back from a local lake, for differential's
//! `capture::source` (see `examples/changelog_replay.rs`).

use crate::parquet::{LakeRow, ProgressStatement, progress_from_batch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::path::Path;
use tradeflow_model::Time;

/// The folder of the progress statements, beside the collections' update folders (its
/// name starts with `_`, so it never looks like a collection).
pub const PROGRESS_DIR: &str = "changelog/_progress";

/// The object holding a worker's `seq`-th batch of updates of `collection`.
pub fn updates_key(collection: &str, run_id: &str, worker: usize, seq: u64) -> String {
    format!("changelog/{collection}/{run_id}-w{worker:04}-{seq:06}.parquet")
}

/// The object holding the run's `seq`-th batch of progress statements of `collection`.
pub fn progress_key(collection: &str, run_id: &str, seq: u64) -> String {
    format!("{PROGRESS_DIR}/{collection}/{run_id}-{seq:06}.parquet")
}

/// The run id, worker and sequence number of an updates file name
/// (`<run_id>-w<worker>-<seq>.parquet`).
pub fn parse_updates_name(name: &str) -> Option<(&str, usize, u64)> {
    let (rest, seq) = name.strip_suffix(".parquet")?.rsplit_once('-')?;
    let (run, worker) = rest.rsplit_once('-')?;
    Some((run, number(worker.strip_prefix('w')?)? as usize, number(seq)?))
}

/// The run id and sequence number of a progress file name (`<run_id>-<seq>.parquet`).
pub fn parse_progress_name(name: &str) -> Option<(&str, u64)> {
    let (run, seq) = name.strip_suffix(".parquet")?.rsplit_once('-')?;
    Some((run, number(seq)?))
}

fn number(digits: &str) -> Option<u64> {
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok()).flatten()
}

fn run_of_updates(name: &str) -> Option<&str> {
    parse_updates_name(name).map(|(run, _, _)| run)
}

fn run_of_progress(name: &str) -> Option<&str> {
    parse_progress_name(name).map(|(run, _)| run)
}

/// One run's changelog of one collection, as written.
#[derive(Clone, Debug)]
pub struct CapturedRun<R> {
    /// The run.
    pub run_id: String,
    /// One batch of `(row, time, diff)` per updates file, in name order.
    pub updates: Vec<Vec<(R, Time, i64)>>,
    /// Every progress statement, in file order.
    pub progress: Vec<ProgressStatement>,
}

/// The run ids with progress statements for `collection` under the lake `root`, oldest
/// first (run ids start with their start time).
pub fn runs(root: &Path, collection: &str) -> Result<Vec<String>, String> {
    let mut runs: Vec<String> = parquet_names(&root.join(PROGRESS_DIR).join(collection))?
        .iter()
        .filter_map(|name| run_of_progress(name).map(str::to_owned))
        .collect();
    runs.sort();
    runs.dedup();
    Ok(runs)
}

/// Reads run `run_id`'s changelog of `R`'s collection from the local lake `root`.
pub fn read_run<R: LakeRow>(root: &Path, run_id: &str) -> Result<CapturedRun<R>, String> {
    let mut run = CapturedRun { run_id: run_id.to_owned(), updates: Vec::new(), progress: Vec::new() };
    let dir = root.join("changelog").join(R::DATASET);
    for name in parquet_names(&dir)? {
        if run_of_updates(&name) == Some(run_id) {
            let mut updates = Vec::new();
            for batch in batches(&dir.join(&name))? {
                updates.extend(R::changelog_from_batch(&batch).map_err(|e| format!("{}/{name}: {e}", dir.display()))?);
            }
            run.updates.push(updates);
        }
    }
    let dir = root.join(PROGRESS_DIR).join(R::DATASET);
    for name in parquet_names(&dir)? {
        if run_of_progress(&name) == Some(run_id) {
            for batch in batches(&dir.join(&name))? {
                let statements = progress_from_batch(&batch).map_err(|e| format!("{}/{name}: {e}", dir.display()))?;
                for (_, statement) in statements {
                    // A statement's rows can span record batches: its parts are one statement.
                    match run.progress.last_mut() {
                        Some(last) if (last.lower, last.upper) == (statement.lower, statement.upper) => {
                            last.counts.extend(statement.counts)
                        }
                        _ => run.progress.push(statement),
                    }
                }
            }
        }
    }
    if run.progress.is_empty() {
        return Err(format!(
            "{}: no progress statements of run {run_id:?} for {} (is it a lake written with a changelog, and the run id right?)",
            root.display(),
            R::DATASET
        ));
    }
    Ok(run)
}

/// The names of the Parquet files in `dir`, sorted (none when it does not exist).
fn parquet_names(dir: &Path) -> Result<Vec<String>, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("listing {}: {e}", dir.display())),
    };
    let mut names = Vec::new();
    for entry in entries {
        let name = entry.map_err(|e| format!("listing {}: {e}", dir.display()))?.file_name();
        if let Some(name) = name.to_str().filter(|n| n.ends_with(".parquet")) {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

fn batches(path: &Path) -> Result<Vec<arrow_array::RecordBatch>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| format!("{} is not a readable Parquet file: {e}", path.display()))?;
    reader.map(|b| b.map_err(|e| format!("reading {}: {e}", path.display()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parquet::{progress_batch, progress_from_batch};

    #[test]
    fn names_parse_back_to_their_run() {
        let run = "20261205T234000.123Z-0a1b2c3d";
        let updates = updates_key("window_metrics", run, 3, 12);
        assert_eq!(parse_updates_name(updates.rsplit('/').next().unwrap()), Some((run, 3, 12)));
        let progress = progress_key("anomalies", run, 7);
        assert!(progress.starts_with("changelog/_progress/anomalies/"));
        assert_eq!(parse_progress_name(progress.rsplit('/').next().unwrap()), Some((run, 7)));
        assert_eq!(run_of_updates("notes.parquet"), None);
        assert_eq!(run_of_progress("x-y.parquet"), None);
    }

    #[test]
    fn progress_statements_round_trip_through_a_batch() {
        let statements = vec![
            ProgressStatement { lower: 0, upper: Some(10), counts: vec![(3, 2), (9, 1)] },
            ProgressStatement { lower: 10, upper: Some(20), counts: vec![] },
            ProgressStatement { lower: 20, upper: None, counts: vec![(25, 4)] },
        ];
        let read = progress_from_batch(&progress_batch(&statements, "r1")).unwrap();
        assert_eq!(read.iter().map(|(r, _)| r.as_str()).collect::<Vec<_>>(), ["r1", "r1", "r1"]);
        assert_eq!(read.into_iter().map(|(_, s)| s).collect::<Vec<_>>(), statements);
    }
}
