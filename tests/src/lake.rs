//! The Parquet lake (SPEC 7) read back in Rust with the `parquet` crate's arrow reader.
//!
//! Readers check the layout as they go: every row of a `date=` partition has its event
//! date (window start for results), every `symbol=` partition value decodes to the
//! symbol of its rows, and every file under a dataset is a complete Parquet file.

use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Float64Type, Int32Type, Int64Type, TimestampMillisecondType};
use arrow_array::{Array, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tradeflow_model::{Anomaly, AnomalyKind, F64, Price, Symbol, WindowMetrics, date_of};

/// Every file under `dir`, as sorted paths relative to `dir` (empty if `dir` is absent).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries {
            let path = entry.expect("reading a directory entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).expect("under the root").to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The files of one dataset (`trades`, `window_metrics`, ...) with their bytes, keyed by
/// their path relative to the lake root.
pub fn dataset_bytes(root: &Path, dataset: &str) -> BTreeMap<String, Vec<u8>> {
    files_under(&root.join(dataset))
        .into_iter()
        .map(|rel| {
            let path = root.join(dataset).join(&rel);
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            (format!("{dataset}/{}", rel.display()), bytes)
        })
        .collect()
}

/// The objects a rerun or replay must reproduce byte for byte: the `trades`,
/// `window_metrics` and `anomalies` datasets, keyed by path relative to the lake root.
pub fn results_tree(lake: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut tree = BTreeMap::new();
    for dataset in ["trades", "window_metrics", "anomalies"] {
        tree.extend(dataset_bytes(lake, dataset));
    }
    tree
}

/// Asserts two [`results_tree`]s hold the same object names with the same bytes.
pub fn assert_same_tree(what: &str, actual: &BTreeMap<String, Vec<u8>>, expected: &BTreeMap<String, Vec<u8>>) {
    let names = |t: &BTreeMap<String, Vec<u8>>| t.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(actual), names(expected), "{what}: the object names differ");
    for (name, bytes) in expected {
        assert!(&actual[name] == bytes, "{what}: {name} differs");
    }
}

/// All record batches of one Parquet file; panics if it is not a complete Parquet file.
pub fn read_batches(path: &Path) -> Vec<RecordBatch> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap_or_else(|e| panic!("{} is not a readable Parquet file: {e}", path.display()))
        .build()
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    reader.map(|b| b.unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))).collect()
}

/// The compression codecs of every column chunk of a Parquet file (`ZSTD(...)`).
pub fn codecs(path: &Path) -> std::collections::BTreeSet<String> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap_or_else(|e| panic!("{} is not a readable Parquet file: {e}", path.display()));
    let metadata = builder.metadata();
    let codecs =
        metadata.row_groups().iter().flat_map(|rg| rg.columns().iter().map(|c| format!("{:?}", c.compression())));
    codecs.map(|c| c.split('(').next().unwrap_or_default().to_owned()).collect()
}

/// The `*.parquet` files of a dataset, as (hive partition values, absolute path).
fn parquet_files(root: &Path, dataset: &str) -> Vec<(BTreeMap<String, String>, PathBuf)> {
    let dir = root.join(dataset);
    files_under(&dir)
        .into_iter()
        .filter(|rel| rel.extension().is_some_and(|e| e == "parquet"))
        .map(|rel| {
            let mut partitions = BTreeMap::new();
            for part in rel.parent().into_iter().flat_map(Path::components) {
                let part = part.as_os_str().to_str().expect("UTF-8 object names");
                if let Some((name, value)) = part.split_once('=') {
                    partitions.insert(name.to_owned(), unescape_partition_value(value));
                }
            }
            (partitions, dir.join(rel))
        })
        .collect()
}

/// Decodes a Hive partition value: `%XX` escapes become the bytes they stand for.
pub fn unescape_partition_value(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("partition values decode to UTF-8")
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> &'a dyn Array {
    batch.column_by_name(name).unwrap_or_else(|| panic!("no column {name:?} in {:?}", batch.schema())).as_ref()
}

fn timestamps(batch: &RecordBatch, name: &str) -> Vec<i64> {
    column(batch, name).as_primitive::<TimestampMillisecondType>().values().to_vec()
}

fn decimals(batch: &RecordBatch, name: &str) -> Vec<i128> {
    column(batch, name).as_primitive::<Decimal128Type>().values().to_vec()
}

fn int64s(batch: &RecordBatch, name: &str) -> Vec<i64> {
    column(batch, name).as_primitive::<Int64Type>().values().to_vec()
}

fn floats(batch: &RecordBatch, name: &str) -> Vec<Option<f64>> {
    column(batch, name).as_primitive::<Float64Type>().iter().collect()
}

fn strings(batch: &RecordBatch, name: &str) -> Vec<String> {
    column(batch, name).as_string::<i32>().iter().map(|s| s.expect("non-null string").to_owned()).collect()
}

fn price(units: i128) -> Price {
    Price(i64::try_from(units).expect("a price fits i64"))
}

/// One row of the `trades` dataset.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LakeTrade {
    /// The symbol, from the decoded `symbol=` partition.
    pub symbol: String,
    /// Event time, ms.
    pub ts: i64,
    /// Price in 10^-8 units.
    pub price: i64,
    /// Volume in 10^-8 units.
    pub volume: i64,
    /// Conditions, `None` when absent.
    pub conditions: Option<Vec<String>>,
}

/// Every row of `trades/date=D/symbol=S/*.parquet`, or of `trades/date=D/hour=HH/*.parquet`
/// (the by-hour layout, whose files have a `symbol` column and are sorted by it).
pub fn read_trades(root: &Path) -> Vec<LakeTrade> {
    let mut out = Vec::new();
    for (partitions, path) in parquet_files(root, "trades") {
        let partition = partitions.get("symbol");
        assert!(
            partition.is_some() || partitions.contains_key("hour"),
            "{} has no symbol= or hour= partition",
            path.display()
        );
        let date = partitions.get("date").unwrap_or_else(|| panic!("{} has no date= partition", path.display()));
        for batch in read_batches(&path) {
            let symbols = match partition {
                Some(symbol) => vec![symbol.clone(); batch.num_rows()],
                None => strings(&batch, "symbol"),
            };
            if let Some(hour) = partitions.get("hour") {
                assert!(symbols.is_sorted(), "{} is not sorted by symbol", path.display());
                let ts = timestamps(&batch, "ts");
                assert!(ts.iter().all(|t| format!("{:02}", t.rem_euclid(86_400_000) / 3_600_000) == *hour));
            }
            let ts = timestamps(&batch, "ts");
            let prices = decimals(&batch, "price");
            let volumes = decimals(&batch, "volume");
            let conditions = column(&batch, "conditions").as_list::<i32>();
            for i in 0..batch.num_rows() {
                assert_eq!(&date_of(ts[i]), date, "a trade at {} is in {}", ts[i], path.display());
                let conditions = conditions.is_valid(i).then(|| {
                    let list = conditions.value(i);
                    list.as_string::<i32>().iter().map(|s| s.unwrap_or_default().to_owned()).collect()
                });
                out.push(LakeTrade {
                    symbol: symbols[i].clone(),
                    ts: ts[i],
                    price: i64::try_from(prices[i]).expect("fits"),
                    volume: i64::try_from(volumes[i]).expect("fits"),
                    conditions,
                });
            }
        }
    }
    out
}

/// Checks the `date=` partition of a result row.
fn check_date(partitions: &BTreeMap<String, String>, window_start: i64, path: &Path) {
    let date = partitions.get("date").unwrap_or_else(|| panic!("{} has no date= partition", path.display()));
    assert_eq!(&date_of(window_start), date, "a window starting at {window_start} is in {}", path.display());
}

/// The window metrics rows of a batch (final or changelog layout), marked final.
fn metrics_rows(b: &RecordBatch) -> Vec<WindowMetrics> {
    let (symbol, start, end) = (strings(b, "symbol"), timestamps(b, "window_start"), timestamps(b, "window_end"));
    let (count, volume, vwap) = (int64s(b, "trade_count"), decimals(b, "volume"), floats(b, "vwap"));
    let (min, max, avg) = (decimals(b, "min_price"), decimals(b, "max_price"), floats(b, "avg_price"));
    let (open, close, vol) = (decimals(b, "open"), decimals(b, "close"), floats(b, "volatility"));
    (0..b.num_rows())
        .map(|i| WindowMetrics {
            symbol: Symbol::parse(&symbol[i]).expect("a valid symbol"),
            window_start: start[i],
            window_end: end[i],
            trade_count: u64::try_from(count[i]).expect("a count is not negative"),
            volume: volume[i],
            vwap: vwap[i].map(F64),
            min_price: price(min[i]),
            max_price: price(max[i]),
            avg_price: F64(avg[i].expect("avg_price is never null")),
            open: price(open[i]),
            close: price(close[i]),
            volatility: vol[i].map(F64),
            is_final: true,
        })
        .collect()
}

/// Every row of `window_metrics/date=D/*.parquet`, as final rows, in file order.
pub fn read_window_metrics(root: &Path) -> Vec<WindowMetrics> {
    let mut out = Vec::new();
    for (partitions, path) in parquet_files(root, "window_metrics") {
        for batch in read_batches(&path) {
            for row in metrics_rows(&batch) {
                check_date(&partitions, row.window_start, &path);
                out.push(row);
            }
        }
    }
    out
}

/// One update of the `changelog/window_metrics` dataset.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct MetricsUpdate {
    /// The row, with its `is_final` flag.
    pub row: WindowMetrics,
    /// The epoch of the update (`time`), ms.
    pub time: i64,
    /// +1 insert, -1 retract.
    pub diff: i64,
    /// The run that wrote it.
    pub run_id: String,
}

/// Every update of `changelog/window_metrics/*.parquet`.
pub fn read_metrics_changelog(root: &Path) -> Vec<MetricsUpdate> {
    let mut out = Vec::new();
    for (_, path) in parquet_files(root, "changelog/window_metrics") {
        for batch in read_batches(&path) {
            let is_final = column(&batch, "is_final").as_boolean().iter().collect::<Vec<_>>();
            let (time, diff, run_id) = (timestamps(&batch, "time"), int64s(&batch, "diff"), strings(&batch, "run_id"));
            for (i, mut row) in metrics_rows(&batch).into_iter().enumerate() {
                row.is_final = is_final[i].expect("is_final is never null");
                out.push(MetricsUpdate { row, time: time[i], diff: diff[i], run_id: run_id[i].clone() });
            }
        }
    }
    out
}

/// The progress statements of the changelog of `collection` (`window_metrics` or
/// `anomalies`): per file, in name order (`<run id>-w<worker>-<seq>`), its name, the
/// `tradeflow.lower` and `tradeflow.upper` epochs of its key-value metadata, and the
/// `time` of each of its updates.
pub fn changelog_progress(root: &Path, collection: &str) -> Vec<(String, u64, u64, Vec<i64>)> {
    let mut out = Vec::new();
    for (_, path) in parquet_files(root, &format!("changelog/{collection}")) {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap_or_else(|e| panic!("{} is not a readable Parquet file: {e}", path.display()));
        let metadata = builder.metadata().file_metadata().key_value_metadata().cloned().unwrap_or_default();
        let epoch = |key: &str| -> u64 {
            let value = metadata.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.clone());
            value.and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{}: no {key}", path.display()))
        };
        let times = read_batches(&path).iter().flat_map(|b| timestamps(b, "time")).collect();
        let name = path.file_name().expect("a file name").to_string_lossy().into_owned();
        out.push((name, epoch("tradeflow.lower"), epoch("tradeflow.upper"), times));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// One progress statement of the changelog (`changelog/_progress/<collection>/`): the
/// updates of `run_id` at times in `[lower, upper)` (`upper` `None`: the run ended) number
/// exactly `counts[time]` at each time listed, and none elsewhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgressStatement {
    /// The run.
    pub run_id: String,
    /// The first epoch covered.
    pub lower: i64,
    /// The first epoch not covered, if any.
    pub upper: Option<i64>,
    /// Updates per epoch.
    pub counts: BTreeMap<i64, i64>,
}

/// Every progress statement of `collection`, in file name order (`<run id>-<seq>`).
pub fn progress_statements(root: &Path, collection: &str) -> Vec<ProgressStatement> {
    let mut out: Vec<ProgressStatement> = Vec::new();
    let mut files = parquet_files(root, &format!("changelog/_progress/{collection}"));
    files.sort_by(|a, b| a.1.cmp(&b.1));
    for (_, path) in files {
        for b in read_batches(&path) {
            let (lower, run_id) = (timestamps(&b, "lower"), strings(&b, "run_id"));
            let (upper, time) = (column(&b, "upper"), column(&b, "time"));
            let (upper_values, time_values) = (timestamps(&b, "upper"), timestamps(&b, "time"));
            let count = int64s(&b, "count");
            for i in 0..b.num_rows() {
                let upper = (!upper.is_null(i)).then(|| upper_values[i]);
                let same = out.last().is_some_and(|s| s.run_id == run_id[i] && s.lower == lower[i] && s.upper == upper);
                if !same {
                    let counts = BTreeMap::new();
                    out.push(ProgressStatement { run_id: run_id[i].clone(), lower: lower[i], upper, counts });
                }
                if !time.is_null(i) {
                    *out.last_mut().expect("pushed").counts.entry(time_values[i]).or_default() += count[i];
                }
            }
        }
    }
    out
}

/// Asserts that the changelog of `collection` is differential's capture protocol, for
/// every run in it: the run's progress statements tile its epochs from 0, and the number
/// of updates they state at each epoch is the number in the updates files of every
/// worker. Every run closes its stream (the last statement's `upper` is null) except runs
/// a crash cut short before their first checkpoint (a restart then starts a new run):
/// their statements still tile, but files in flight when it was killed may be missing, so
/// below their last statement's `upper` the files hold at most what is stated. At least one
/// run is closed.
pub fn assert_capture_protocol(root: &Path, collection: &str) {
    let mut updates: BTreeMap<String, BTreeMap<i64, i64>> = BTreeMap::new();
    for (_, path) in parquet_files(root, &format!("changelog/{collection}")) {
        for b in read_batches(&path) {
            for (time, run) in timestamps(&b, "time").into_iter().zip(strings(&b, "run_id")) {
                *updates.entry(run).or_default().entry(time).or_default() += 1;
            }
        }
    }
    let statements = progress_statements(root, collection);
    let mut runs: std::collections::BTreeSet<String> = statements.iter().map(|s| s.run_id.clone()).collect();
    runs.extend(updates.keys().cloned());
    let mut closed = 0;
    for run in runs {
        let mine: Vec<_> = statements.iter().filter(|s| s.run_id == run).collect();
        let mut lower = 0;
        let mut stated: BTreeMap<i64, i64> = BTreeMap::new();
        for (i, s) in mine.iter().enumerate() {
            assert_eq!(s.lower, lower, "{collection}, run {run}: statement {i} does not start where the last ended");
            assert!(s.upper.is_some() || i + 1 == mine.len(), "{collection}, run {run}: a statement after the end");
            for (time, count) in &s.counts {
                assert!(
                    *time >= s.lower && s.upper.is_none_or(|u| *time < u),
                    "{collection}, run {run}: a count at {time} outside [{}, {:?})",
                    s.lower,
                    s.upper
                );
                *stated.entry(*time).or_default() += count;
            }
            lower = s.upper.unwrap_or(i64::MAX);
        }
        let written: BTreeMap<i64, i64> =
            updates.remove(&run).unwrap_or_default().into_iter().filter(|(time, _)| *time < lower).collect();
        if lower == i64::MAX {
            closed += 1;
            assert_eq!(stated, written, "{collection}, run {run}: stated counts per epoch vs the updates files");
        } else {
            for (time, n) in &written {
                let says = stated.get(time).copied().unwrap_or(0);
                assert!(*n <= says, "{collection}, unfinished run {run}: {n} updates at {time}, {says} stated");
            }
        }
    }
    assert!(closed > 0, "{collection}: no run's progress statements close its stream");
}

/// A collection rebuilt from its updates: each row with its summed diff, zeros dropped.
pub fn consolidate(updates: &[MetricsUpdate]) -> BTreeMap<WindowMetrics, i64> {
    let mut sums: BTreeMap<WindowMetrics, i64> = BTreeMap::new();
    for u in updates {
        *sums.entry(u.row.clone()).or_default() += u.diff;
    }
    sums.retain(|_, diff| *diff != 0);
    sums
}

/// Every row of `anomalies/date=D/*.parquet`, as final rows, in file order.
pub fn read_anomalies(root: &Path) -> Vec<Anomaly> {
    let mut out = Vec::new();
    for (partitions, path) in parquet_files(root, "anomalies") {
        for b in read_batches(&path) {
            let (symbol, start, end) =
                (strings(&b, "symbol"), timestamps(&b, "window_start"), timestamps(&b, "window_end"));
            let (kind, severity, detected) =
                (strings(&b, "kind"), floats(&b, "severity"), timestamps(&b, "detected_at"));
            let (observed, baseline) = (floats(&b, "observed"), floats(&b, "baseline"));
            for i in 0..b.num_rows() {
                check_date(&partitions, start[i], &path);
                let kind = match kind[i].as_str() {
                    "volume_spike" => AnomalyKind::VolumeSpike,
                    "price_jump" => AnomalyKind::PriceJump,
                    other => panic!("unknown anomaly kind {other:?} in {}", path.display()),
                };
                out.push(Anomaly {
                    symbol: Symbol::parse(&symbol[i]).expect("a valid symbol"),
                    window_start: start[i],
                    window_end: end[i],
                    kind,
                    severity: F64(severity[i].expect("not null")),
                    detected_at: detected[i],
                    observed: F64(observed[i].expect("not null")),
                    baseline: F64(baseline[i].expect("not null")),
                    is_final: true,
                });
            }
        }
    }
    out
}

/// One row of the `dead_letter` dataset.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeadLetter {
    /// The `date=` partition.
    pub date: String,
    /// When it was received, ms.
    pub received_at: i64,
    /// The source partition (`file:///abs/path`).
    pub source: String,
    /// Byte offset of the line (files).
    pub position: i64,
    /// Element index in a Finnhub message.
    pub element: i32,
    /// `invalid_json`, `missing_field`, ...
    pub reason: String,
    /// What was wrong.
    pub detail: String,
    /// The raw record, as text.
    pub payload: String,
    /// Its exact bytes, when they are not valid UTF-8.
    pub payload_bytes: Option<Vec<u8>>,
}

/// Every row of `dead_letter/date=D/*.parquet`.
pub fn read_dead_letters(root: &Path) -> Vec<DeadLetter> {
    let mut out = Vec::new();
    for (partitions, path) in parquet_files(root, "dead_letter") {
        let date = partitions.get("date").unwrap_or_else(|| panic!("{} has no date= partition", path.display()));
        for b in read_batches(&path) {
            let received = timestamps(&b, "received_at");
            let (source, position) = (strings(&b, "source"), int64s(&b, "position"));
            let element = column(&b, "element").as_primitive::<Int32Type>().values().to_vec();
            let (reason, detail, payload) = (strings(&b, "reason"), strings(&b, "detail"), strings(&b, "payload"));
            let bytes = column(&b, "payload_bytes").as_binary::<i32>();
            for i in 0..b.num_rows() {
                out.push(DeadLetter {
                    date: date.clone(),
                    received_at: received[i],
                    source: source[i].clone(),
                    position: position[i],
                    element: element[i],
                    reason: reason[i].clone(),
                    detail: detail[i].clone(),
                    payload: payload[i].clone(),
                    payload_bytes: bytes.is_valid(i).then(|| bytes.value(i).to_vec()),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_hive_values() {
        assert_eq!(unescape_partition_value("BINANCE%3ABTCUSDT"), "BINANCE:BTCUSDT");
        assert_eq!(unescape_partition_value("IC MARKETS%3A1"), "IC MARKETS:1");
        assert_eq!(unescape_partition_value("100%25%3Dx"), "100%=x");
        assert_eq!(unescape_partition_value("%C3%A9"), "é");
        assert_eq!(unescape_partition_value("50%"), "50%");
    }
}
