//! Parquet layouts of the lake's datasets, and the writer settings they share.
//!
//! Timestamps are `timestamp(ms, UTC)`. Exact quantities stay exact: prices are
//! `decimal(18, 8)` and summed volumes `decimal(38, 8)`, straight from the fixed-point
//! integers; vwap, averages, volatility and anomaly scores are `double`. Partition
//! columns (`date`, and `symbol` for trades) live in the path only, as Hive and Spark
//! expect: a reader with hive partitioning gets them back as columns (Spark refuses files
//! that repeat a partition column).

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::{
    ArrayRef, BinaryArray, BooleanArray, Decimal128Array, Float64Array, Int32Array, Int64Array, RecordBatch,
    StringArray, TimestampMillisecondArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use std::sync::{Arc, OnceLock};
use tradeflow_model::{Anomaly, AnomalyKind, Conditions, F64, Price, Qty, Reject, Symbol, Time, Trade, WindowMetrics};

/// Rows per Parquet row group.
pub const ROW_GROUP_ROWS: usize = 64 * 1024;

/// Writer settings: zstd, bounded row groups, and key-value metadata.
pub fn writer_properties(metadata: Vec<(String, String)>) -> WriterProperties {
    let kv = metadata.into_iter().map(|(k, v)| KeyValue::new(k, v)).collect::<Vec<_>>();
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("3 is a valid zstd level")))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_key_value_metadata(if kv.is_empty() { None } else { Some(kv) })
        .build()
}

/// Writer settings of the trades dataset: timestamps, nearly sorted, are delta-encoded;
/// prices and volumes are written plain, not dictionary-encoded: on a 5M-trade market the
/// files came out 5% smaller (zstd finds the repeats anyway) and a `-w 2` run 14% faster
/// (the dictionaries' hashing was the encoder's largest cost). Both are the encodings
/// every Parquet reader supports.
pub fn trades_writer_properties() -> WriterProperties {
    let ts = ColumnPath::from("ts");
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("1 is a valid zstd level")))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_column_dictionary_enabled(ts.clone(), false)
        .set_column_encoding(ts, Encoding::DELTA_BINARY_PACKED)
        .set_column_dictionary_enabled(ColumnPath::from("price"), false)
        .set_column_dictionary_enabled(ColumnPath::from("volume"), false)
        .build()
}

/// Encodes batches as one complete Parquet file in memory.
pub fn encode(
    schema: SchemaRef,
    batches: &[RecordBatch],
    metadata: Vec<(String, String)>,
) -> Result<Vec<u8>, parquet::errors::ParquetError> {
    let mut writer = ArrowWriter::try_new(Vec::new(), schema, Some(writer_properties(metadata)))?;
    for batch in batches {
        writer.write(batch)?;
    }
    writer.into_inner()
}

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

fn ts_array(values: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from_iter_values(values).with_timezone("UTC"))
}

fn decimal_array(values: impl Iterator<Item = i128>, precision: u8) -> ArrayRef {
    Arc::new(
        Decimal128Array::from_iter_values(values).with_precision_and_scale(precision, 8).expect("valid decimal type"),
    )
}

fn schema_of(fields: Vec<Field>) -> SchemaRef {
    Arc::new(Schema::new(fields))
}

/// `trades/date=D/symbol=S/*.parquet`: ts, price, volume, conditions.
pub fn trades_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            schema_of(vec![
                Field::new("ts", ts_type(), false),
                Field::new("price", DataType::Decimal128(18, 8), false),
                Field::new("volume", DataType::Decimal128(18, 8), false),
                Field::new("conditions", DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))), true),
            ])
        })
        .clone()
}

/// One batch of trades of one symbol.
pub fn trades_batch(rows: &[Trade]) -> RecordBatch {
    let mut conditions = ListBuilder::new(StringBuilder::new());
    for trade in rows {
        let present = trade.conditions.for_each(|c| conditions.values().append_value(c));
        conditions.append(present);
    }
    let columns: Vec<ArrayRef> = vec![
        ts_array(rows.iter().map(|t| t.ts)),
        decimal_array(rows.iter().map(|t| t.price.units() as i128), 18),
        decimal_array(rows.iter().map(|t| t.volume.units() as i128), 18),
        Arc::new(conditions.finish()),
    ];
    RecordBatch::try_new(trades_schema(), columns).expect("columns match the schema")
}

/// The by-hour layout's trades files: `symbol` first (the sort key), then the columns of
/// [`trades_schema`].
pub fn trades_by_hour_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let mut fields = vec![Field::new("symbol", DataType::Utf8, false)];
            fields.extend(trades_schema().fields().iter().map(|f| f.as_ref().clone()));
            schema_of(fields)
        })
        .clone()
}

/// One batch of trades of any symbols, for [`trades_by_hour_schema`].
pub fn trades_by_hour_batch(rows: &[Trade]) -> RecordBatch {
    let mut columns: Vec<ArrayRef> =
        vec![Arc::new(StringArray::from_iter_values(rows.iter().map(|t| t.symbol.as_str())))];
    columns.extend(trades_batch(rows).columns().iter().cloned());
    RecordBatch::try_new(trades_by_hour_schema(), columns).expect("columns match the schema")
}

/// Reads a batch of the trades dataset back into trades: of `symbol` (the file's
/// partition) when given, else of the batch's `symbol` column; the inverse of
/// [`trades_batch`] and [`trades_by_hour_batch`]. Errors name the column that is not as
/// written.
pub fn trades_from_batch(batch: &RecordBatch, symbol: Option<&Symbol>) -> Result<Vec<Trade>, String> {
    use arrow_array::{Array, ListArray};
    let column = |name: &str| batch.column_by_name(name).ok_or_else(|| format!("no column {name:?}"));
    let symbols = match symbol {
        Some(_) => None,
        None => Some(column("symbol")?.as_any().downcast_ref::<StringArray>().ok_or("symbol is not a string")?),
    };
    let ts = column("ts")?.as_any().downcast_ref::<TimestampMillisecondArray>().ok_or("ts is not timestamp(ms)")?;
    let price = column("price")?.as_any().downcast_ref::<Decimal128Array>().ok_or("price is not decimal")?;
    let volume = column("volume")?.as_any().downcast_ref::<Decimal128Array>().ok_or("volume is not decimal")?;
    let conditions = column("conditions")?.as_any().downcast_ref::<ListArray>().ok_or("conditions is not a list")?;
    if price.scale() != 8 || volume.scale() != 8 {
        return Err("price and volume must have scale 8".into());
    }
    let mut trades = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let list = if conditions.is_null(row) {
            Conditions::none()
        } else {
            let values = conditions.value(row);
            let strings = values.as_any().downcast_ref::<StringArray>().ok_or("conditions items are not strings")?;
            Conditions::from_list(&strings.iter().map(|s| s.unwrap_or_default()).collect::<Vec<_>>())
        };
        let symbol = match (symbol, symbols) {
            (Some(symbol), _) => symbol.clone(),
            (None, Some(symbols)) => {
                Symbol::parse(symbols.value(row)).map_err(|e| format!("symbol {:?}: {e}", symbols.value(row)))?
            }
            (None, None) => unreachable!("one of the two is set above"),
        };
        trades.push(Trade {
            symbol,
            ts: ts.value(row),
            price: Price(i64::try_from(price.value(row)).map_err(|_| "price out of range")?),
            volume: Qty(i64::try_from(volume.value(row)).map_err(|_| "volume out of range")?),
            conditions: list,
        });
    }
    Ok(trades)
}

fn metrics_fields() -> Vec<Field> {
    vec![
        Field::new("symbol", DataType::Utf8, false),
        Field::new("window_start", ts_type(), false),
        Field::new("window_end", ts_type(), false),
        Field::new("trade_count", DataType::Int64, false),
        Field::new("volume", DataType::Decimal128(38, 8), false),
        Field::new("vwap", DataType::Float64, true),
        Field::new("min_price", DataType::Decimal128(18, 8), false),
        Field::new("max_price", DataType::Decimal128(18, 8), false),
        Field::new("avg_price", DataType::Float64, false),
        Field::new("open", DataType::Decimal128(18, 8), false),
        Field::new("close", DataType::Decimal128(18, 8), false),
        Field::new("volatility", DataType::Float64, true),
        // Last, so readers that take columns by position keep working.
        Field::new("digest", DataType::Int64, false),
    ]
}

fn metrics_columns<'a>(rows: impl Iterator<Item = &'a WindowMetrics> + Clone) -> Vec<ArrayRef> {
    vec![
        Arc::new(StringArray::from_iter_values(rows.clone().map(|r| r.symbol.as_str()))),
        ts_array(rows.clone().map(|r| r.window_start)),
        ts_array(rows.clone().map(|r| r.window_end)),
        Arc::new(Int64Array::from_iter_values(rows.clone().map(|r| r.trade_count as i64))),
        decimal_array(rows.clone().map(|r| r.volume), 38),
        Arc::new(rows.clone().map(|r| r.vwap.map(|v| v.0)).collect::<Float64Array>()),
        decimal_array(rows.clone().map(|r| r.min_price.units() as i128), 18),
        decimal_array(rows.clone().map(|r| r.max_price.units() as i128), 18),
        Arc::new(Float64Array::from_iter_values(rows.clone().map(|r| r.avg_price.0))),
        decimal_array(rows.clone().map(|r| r.open.units() as i128), 18),
        decimal_array(rows.clone().map(|r| r.close.units() as i128), 18),
        Arc::new(rows.clone().map(|r| r.volatility.map(|v| v.0)).collect::<Float64Array>()),
        Arc::new(Int64Array::from_iter_values(rows.map(|r| r.digest_i64()))),
    ]
}

/// Reads a batch of `window_metrics` (final layout, or the changelog's) back into rows,
/// each with its stored `digest` (`None` when the file has no digest column: written
/// before digests existed). Rows are marked final. Errors name the column that is not
/// as written.
pub fn metrics_from_batch(batch: &RecordBatch) -> Result<Vec<(WindowMetrics, Option<i64>)>, String> {
    let c = Columns(batch);
    let (symbol, start, end) = (c.strings("symbol")?, c.timestamps("window_start")?, c.timestamps("window_end")?);
    let (count, volume, vwap) = (c.int64s("trade_count")?, c.decimals("volume")?, c.floats("vwap")?);
    let (min, max, avg) = (c.decimals("min_price")?, c.decimals("max_price")?, c.floats("avg_price")?);
    let (open, close, volatility) = (c.decimals("open")?, c.decimals("close")?, c.floats("volatility")?);
    let digest = match batch.column_by_name("digest") {
        Some(_) => Some(c.int64s("digest")?),
        None => None,
    };
    let mut rows = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let price = |column: &Decimal128Array, name: &str| {
            i64::try_from(column.value(i)).map(Price).map_err(|_| format!("{name} out of range at row {i}"))
        };
        let row = WindowMetrics {
            symbol: Symbol::parse(symbol.value(i)).map_err(|e| format!("symbol {:?}: {e}", symbol.value(i)))?,
            window_start: start.value(i),
            window_end: end.value(i),
            trade_count: u64::try_from(count.value(i)).map_err(|_| format!("negative trade_count at row {i}"))?,
            volume: volume.value(i),
            vwap: nullable_float(vwap, i),
            min_price: price(min, "min_price")?,
            max_price: price(max, "max_price")?,
            avg_price: nullable_float(avg, i).ok_or_else(|| format!("avg_price is NULL at row {i}"))?,
            open: price(open, "open")?,
            close: price(close, "close")?,
            volatility: nullable_float(volatility, i),
            is_final: true,
        };
        rows.push((row, digest.map(|d| d.value(i))));
    }
    Ok(rows)
}

/// Reads a batch of `anomalies` (final layout) back into rows, marked final.
pub fn anomalies_from_batch(batch: &RecordBatch) -> Result<Vec<Anomaly>, String> {
    let c = Columns(batch);
    let (symbol, start, end) = (c.strings("symbol")?, c.timestamps("window_start")?, c.timestamps("window_end")?);
    let (kind, severity, detected_at) = (c.strings("kind")?, c.floats("severity")?, c.timestamps("detected_at")?);
    let (observed, baseline) = (c.floats("observed")?, c.floats("baseline")?);
    let mut rows = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let not_null = |column: &Float64Array, name: &str| {
            nullable_float(column, i).ok_or_else(|| format!("{name} is NULL at row {i}"))
        };
        rows.push(Anomaly {
            symbol: Symbol::parse(symbol.value(i)).map_err(|e| format!("symbol {:?}: {e}", symbol.value(i)))?,
            window_start: start.value(i),
            window_end: end.value(i),
            kind: match kind.value(i) {
                "volume_spike" => AnomalyKind::VolumeSpike,
                "price_jump" => AnomalyKind::PriceJump,
                other => return Err(format!("unknown anomaly kind {other:?} at row {i}")),
            },
            severity: not_null(severity, "severity")?,
            detected_at: detected_at.value(i),
            observed: not_null(observed, "observed")?,
            baseline: not_null(baseline, "baseline")?,
            is_final: true,
        });
    }
    Ok(rows)
}

fn nullable_float(column: &Float64Array, i: usize) -> Option<F64> {
    use arrow_array::Array;
    (!column.is_null(i)).then(|| F64(column.value(i)))
}

/// Typed access to a batch's columns by name, with errors naming the column.
struct Columns<'a>(&'a RecordBatch);

impl<'a> Columns<'a> {
    fn get<T: 'static>(&self, name: &str, what: &str) -> Result<&'a T, String> {
        let column = self.0.column_by_name(name).ok_or_else(|| format!("no column {name:?}"))?;
        column.as_any().downcast_ref::<T>().ok_or_else(|| format!("column {name:?} is not {what}"))
    }
    fn strings(&self, name: &str) -> Result<&'a StringArray, String> {
        self.get(name, "a string")
    }
    fn timestamps(&self, name: &str) -> Result<&'a TimestampMillisecondArray, String> {
        self.get(name, "timestamp(ms)")
    }
    fn int64s(&self, name: &str) -> Result<&'a Int64Array, String> {
        self.get(name, "int64")
    }
    fn floats(&self, name: &str) -> Result<&'a Float64Array, String> {
        self.get(name, "double")
    }
    fn decimals(&self, name: &str) -> Result<&'a Decimal128Array, String> {
        let column: &Decimal128Array = self.get(name, "decimal")?;
        if column.scale() != 8 {
            return Err(format!("column {name:?} has scale {}, not 8", column.scale()));
        }
        Ok(column)
    }
}

fn anomaly_fields() -> Vec<Field> {
    vec![
        Field::new("symbol", DataType::Utf8, false),
        Field::new("window_start", ts_type(), false),
        Field::new("window_end", ts_type(), false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("severity", DataType::Float64, false),
        Field::new("detected_at", ts_type(), false),
        Field::new("observed", DataType::Float64, false),
        Field::new("baseline", DataType::Float64, false),
    ]
}

fn anomaly_columns<'a>(rows: impl Iterator<Item = &'a Anomaly> + Clone) -> Vec<ArrayRef> {
    vec![
        Arc::new(StringArray::from_iter_values(rows.clone().map(|r| r.symbol.as_str()))),
        ts_array(rows.clone().map(|r| r.window_start)),
        ts_array(rows.clone().map(|r| r.window_end)),
        Arc::new(StringArray::from_iter_values(rows.clone().map(|r| r.kind.as_str()))),
        Arc::new(Float64Array::from_iter_values(rows.clone().map(|r| r.severity.0))),
        ts_array(rows.clone().map(|r| r.detected_at)),
        Arc::new(Float64Array::from_iter_values(rows.clone().map(|r| r.observed.0))),
        Arc::new(Float64Array::from_iter_values(rows.map(|r| r.baseline.0))),
    ]
}

/// A row type of the lake's result datasets: its final layout and its changelog layout.
pub trait LakeRow: Clone + Ord + 'static {
    /// Dataset name: `window_metrics` or `anomalies`.
    const DATASET: &'static str;
    /// Columns of the final dataset.
    fn fields() -> Vec<Field>;
    /// Arrays of the final dataset.
    fn columns<'a>(rows: impl Iterator<Item = &'a Self> + Clone) -> Vec<ArrayRef>;
    /// Window start of the row (event time that decides its date and file).
    fn window_start(&self) -> i64;
    /// Whether the row is final.
    fn is_final(&self) -> bool;

    /// Schema of the final dataset.
    fn schema() -> SchemaRef {
        schema_of(Self::fields())
    }
    /// A batch of final rows.
    fn batch(rows: &[Self]) -> RecordBatch {
        RecordBatch::try_new(Self::schema(), Self::columns(rows.iter())).expect("columns match the schema")
    }
    /// Schema of the changelog: the row, `is_final`, then `time`, `diff` and `run_id`.
    fn changelog_schema() -> SchemaRef {
        let mut fields = Self::fields();
        fields.push(Field::new("is_final", DataType::Boolean, false));
        fields.push(Field::new("time", ts_type(), false));
        fields.push(Field::new("diff", DataType::Int64, false));
        fields.push(Field::new("run_id", DataType::Utf8, false));
        schema_of(fields)
    }
    /// A batch of changelog updates.
    fn changelog_batch(updates: &[(Self, Time, isize)], run_id: &str) -> RecordBatch {
        let mut columns = Self::columns(updates.iter().map(|u| &u.0));
        columns.push(Arc::new(updates.iter().map(|u| Some(u.0.is_final())).collect::<BooleanArray>()));
        columns.push(ts_array(updates.iter().map(|u| u.1 as i64)));
        columns.push(Arc::new(Int64Array::from_iter_values(updates.iter().map(|u| u.2 as i64))));
        columns.push(Arc::new(StringArray::from_iter_values(updates.iter().map(|_| run_id))));
        RecordBatch::try_new(Self::changelog_schema(), columns).expect("columns match the schema")
    }

    /// Rows of a batch of the final dataset (or of the changelog, whose row columns are the
    /// same), marked final. Errors name the column that is not as written.
    fn rows_from_batch(batch: &RecordBatch) -> Result<Vec<Self>, String>;
    /// Sets whether the row is final.
    fn set_final(&mut self, is_final: bool);

    /// A batch of changelog updates back into `(row, time, diff)`: the inverse of
    /// [`LakeRow::changelog_batch`].
    fn changelog_from_batch(batch: &RecordBatch) -> Result<Vec<(Self, Time, i64)>, String> {
        let c = Columns(batch);
        let (is_final, time, diff) =
            (c.get::<BooleanArray>("is_final", "boolean")?, c.timestamps("time")?, c.int64s("diff")?);
        let mut rows = Self::rows_from_batch(batch)?;
        for (i, row) in rows.iter_mut().enumerate() {
            row.set_final(is_final.value(i));
        }
        rows.into_iter()
            .enumerate()
            .map(|(i, row)| {
                let time = Time::try_from(time.value(i)).map_err(|_| format!("negative time at row {i}"))?;
                Ok((row, time, diff.value(i)))
            })
            .collect()
    }
}

/// `changelog/_progress/<collection>/*.parquet`: the changelog's progress statements
/// (differential's `Message::Progress`). A statement says that the collection's updates at
/// times in `[lower, upper)` are exactly `count` distinct updates at each `time` listed, and
/// none at any other; `upper` is null when the run ended (the empty frontier). One row per
/// `(time, count)`; a statement with no updates is one row with `time` and `count` null.
pub fn progress_schema() -> SchemaRef {
    schema_of(vec![
        Field::new("lower", ts_type(), false),
        Field::new("upper", ts_type(), true),
        Field::new("time", ts_type(), true),
        Field::new("count", DataType::Int64, true),
        Field::new("run_id", DataType::Utf8, false),
    ])
}

/// One progress statement: the updates at times in `[lower, upper)` (`upper` `None`: every
/// time from `lower` on) are exactly `counts`, as `(time, number of distinct updates)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProgressStatement {
    /// The first time covered.
    pub lower: Time,
    /// The first time not covered; `None`: the stream is complete.
    pub upper: Option<Time>,
    /// The number of distinct updates at each time with any, in time order.
    pub counts: Vec<(Time, u64)>,
}

/// A batch of progress statements (see [`progress_schema`]).
pub fn progress_batch(statements: &[ProgressStatement], run_id: &str) -> RecordBatch {
    // One row per count, or one with null `time` and `count` for a statement without any.
    let rows: Vec<(&ProgressStatement, Option<&(Time, u64)>)> = statements
        .iter()
        .flat_map(|s| {
            let none = s.counts.is_empty().then_some((s, None));
            none.into_iter().chain(s.counts.iter().map(move |c| (s, Some(c))))
        })
        .collect();
    let nullable_ts = |values: Vec<Option<i64>>| -> ArrayRef {
        Arc::new(TimestampMillisecondArray::from(values).with_timezone("UTC"))
    };
    let columns: Vec<ArrayRef> = vec![
        ts_array(rows.iter().map(|(s, _)| s.lower as i64)),
        nullable_ts(rows.iter().map(|(s, _)| s.upper.map(|u| u as i64)).collect()),
        nullable_ts(rows.iter().map(|(_, c)| c.map(|c| c.0 as i64)).collect()),
        Arc::new(rows.iter().map(|(_, c)| c.map(|c| c.1 as i64)).collect::<Int64Array>()),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|_| run_id))),
    ];
    RecordBatch::try_new(progress_schema(), columns).expect("columns match the schema")
}

/// The progress statements of a batch written by [`progress_batch`], in order, with the
/// run id of each.
pub fn progress_from_batch(batch: &RecordBatch) -> Result<Vec<(String, ProgressStatement)>, String> {
    use arrow_array::Array;
    let c = Columns(batch);
    let (lower, upper, time) = (c.timestamps("lower")?, c.timestamps("upper")?, c.timestamps("time")?);
    let (count, run_id) = (c.int64s("count")?, c.strings("run_id")?);
    let epoch =
        |value: i64, name: &str, i: usize| Time::try_from(value).map_err(|_| format!("negative {name} at row {i}"));
    let mut out: Vec<(String, ProgressStatement)> = Vec::new();
    for i in 0..batch.num_rows() {
        let lower = epoch(lower.value(i), "lower", i)?;
        let upper = if upper.is_null(i) { None } else { Some(epoch(upper.value(i), "upper", i)?) };
        let run = run_id.value(i);
        let same = out.last().is_some_and(|(r, s)| r == run && s.lower == lower && s.upper == upper);
        if !same {
            out.push((run.to_owned(), ProgressStatement { lower, upper, counts: Vec::new() }));
        }
        if !time.is_null(i) {
            let n = u64::try_from(count.value(i)).map_err(|_| format!("negative count at row {i}"))?;
            out.last_mut().expect("pushed above").1.counts.push((epoch(time.value(i), "time", i)?, n));
        }
    }
    Ok(out)
}

impl LakeRow for WindowMetrics {
    const DATASET: &'static str = "window_metrics";
    fn fields() -> Vec<Field> {
        metrics_fields()
    }
    fn columns<'a>(rows: impl Iterator<Item = &'a Self> + Clone) -> Vec<ArrayRef> {
        metrics_columns(rows)
    }
    fn window_start(&self) -> i64 {
        self.window_start
    }
    fn is_final(&self) -> bool {
        self.is_final
    }
    fn rows_from_batch(batch: &RecordBatch) -> Result<Vec<Self>, String> {
        Ok(metrics_from_batch(batch)?.into_iter().map(|(row, _digest)| row).collect())
    }
    fn set_final(&mut self, is_final: bool) {
        self.is_final = is_final;
    }
}

impl LakeRow for Anomaly {
    const DATASET: &'static str = "anomalies";
    fn fields() -> Vec<Field> {
        anomaly_fields()
    }
    fn columns<'a>(rows: impl Iterator<Item = &'a Self> + Clone) -> Vec<ArrayRef> {
        anomaly_columns(rows)
    }
    fn window_start(&self) -> i64 {
        self.window_start
    }
    fn is_final(&self) -> bool {
        self.is_final
    }
    fn rows_from_batch(batch: &RecordBatch) -> Result<Vec<Self>, String> {
        anomalies_from_batch(batch)
    }
    fn set_final(&mut self, is_final: bool) {
        self.is_final = is_final;
    }
}

/// `dead_letter/date=D/*.parquet`: when, from where, why, and the raw record: `payload`
/// as text, and `payload_bytes`, the exact bytes, when they are not valid UTF-8 (null
/// otherwise: the text is exact).
pub fn dead_letter_schema() -> SchemaRef {
    schema_of(vec![
        Field::new("received_at", ts_type(), false),
        Field::new("source", DataType::Utf8, false),
        Field::new("position", DataType::Int64, false),
        Field::new("element", DataType::Int32, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("detail", DataType::Utf8, false),
        Field::new("payload", DataType::Utf8, false),
        Field::new("payload_bytes", DataType::Binary, true),
    ])
}

/// A batch of rejected records.
pub fn dead_letter_batch(rows: &[Reject]) -> RecordBatch {
    let columns: Vec<ArrayRef> = vec![
        ts_array(rows.iter().map(|r| r.received_at)),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.source.as_str()))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.position as i64))),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.element as i32))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.reason.as_str()))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.detail.as_str()))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.payload.text()))),
        Arc::new(BinaryArray::from_iter(rows.iter().map(|r| r.payload.invalid_utf8()))),
    ];
    RecordBatch::try_new(dead_letter_schema(), columns).expect("columns match the schema")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trades_round_trip_through_a_batch() {
        let symbol = Symbol::parse("KRAKEN:XBT/USD").unwrap();
        let trades = vec![
            Trade {
                symbol: symbol.clone(),
                ts: 1_700_000_000_123,
                price: Price(3_700_012_345_678),
                volume: Qty(1),
                conditions: Conditions::none(),
            },
            Trade {
                symbol: symbol.clone(),
                ts: 1_700_000_000_124,
                price: Price(1),
                volume: Qty(0),
                conditions: Conditions::from_list(&["1", "12"]),
            },
            Trade {
                symbol: symbol.clone(),
                ts: 1_700_000_000_125,
                price: Price(5),
                volume: Qty(7),
                conditions: Conditions::from_list::<&str>(&[]),
            },
        ];
        assert_eq!(trades_from_batch(&trades_batch(&trades), Some(&symbol)).unwrap(), trades);
        assert_eq!(trades_from_batch(&trades_by_hour_batch(&trades), None).unwrap(), trades);
    }

    #[test]
    fn result_rows_round_trip_through_a_batch_with_their_digest() {
        let row = WindowMetrics {
            symbol: Symbol::parse("IC MARKETS:1").unwrap(),
            window_start: 1_700_000_000_000,
            window_end: 1_700_000_060_000,
            trade_count: 3,
            volume: 0,
            vwap: None,
            min_price: Price(1),
            max_price: Price(3),
            avg_price: F64(2e-8),
            open: Price(1),
            close: Price(3),
            volatility: Some(F64(0.5)),
            is_final: true,
        };
        let batch = WindowMetrics::batch(std::slice::from_ref(&row));
        assert_eq!(batch.schema().fields().last().unwrap().name(), "digest");
        assert_eq!(metrics_from_batch(&batch).unwrap(), vec![(row.clone(), Some(row.digest_i64()))]);
        let anomaly = Anomaly {
            symbol: row.symbol.clone(),
            window_start: row.window_start,
            window_end: row.window_end,
            kind: AnomalyKind::PriceJump,
            severity: F64(4.5),
            detected_at: row.window_end,
            observed: F64(-0.25),
            baseline: F64(0.01),
            is_final: true,
        };
        assert_eq!(anomalies_from_batch(&Anomaly::batch(std::slice::from_ref(&anomaly))).unwrap(), vec![anomaly]);
    }
}
