//! Where a report's rows come from: the lake's `window_metrics` and `anomalies` datasets
//! (through object_store, so a local directory and S3 read alike), or PostgreSQL's tables
//! of the same names (final rows only, parameterised queries). Columns are found by name,
//! so columns added later (at any position) do not disturb the report.

use super::{AnomalyRow, Day, ReportArgs, WindowRow};
use anyhow::{Context, anyhow};
use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Float64Type, Int64Type, TimestampMillisecondType};
use arrow_array::{Array, RecordBatch};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::sync::Arc;
use tradeflow_sinks::lake::Destination;
use tradeflow_sinks::postgres::PgTarget;
use tradeflow_sinks::postgres::error::Failure;

/// A source of final rows.
pub(super) enum Source {
    /// A lake, local or on S3.
    Lake(LakeSource),
    /// A PostgreSQL database written by the sink.
    Postgres(Box<PgTarget>),
}

impl Source {
    /// The source `args` name: PostgreSQL with `--postgres`, else the lake.
    pub(super) fn open(args: &ReportArgs) -> anyhow::Result<Source> {
        match &args.postgres {
            Some(url) => {
                let flag = (!url.trim().is_empty()).then_some(url.as_str());
                let target = crate::config::postgres_target(flag)?.ok_or_else(|| {
                    anyhow!(
                        "--postgres without a URL, and neither DATABASE_URL nor POSTGRES_HOST is set (in the environment or ./.env): use --postgres postgres://user:password@host:5432/database, or drop --postgres to read the lake"
                    )
                })?;
                Ok(Source::Postgres(Box::new(target)))
            }
            None => Ok(Source::Lake(LakeSource::open(&args.lake)?)),
        }
    }

    /// How the report names its source (no secrets).
    pub(super) fn describe(&self) -> String {
        match self {
            Source::Lake(lake) => format!("lake {}", lake.display),
            Source::Postgres(target) => format!("PostgreSQL {}", target.name()),
        }
    }

    /// The final rows of windows starting on `date` (midnight `day_start`).
    pub(super) fn read_day(&self, date: &str, day_start: i64) -> anyhow::Result<Day> {
        match self {
            Source::Lake(lake) => lake.read_day(date, day_start),
            Source::Postgres(target) => read_postgres(target, date),
        }
    }

    /// Why there is nothing to report on `date`, with the dates that do have data.
    pub(super) fn no_data_message(&self, date: &str) -> anyhow::Result<String> {
        let dates = match self {
            Source::Lake(lake) => lake.dates()?,
            Source::Postgres(target) => postgres_dates(target)?,
        };
        let source = self.describe();
        Ok(if dates.is_empty() {
            match self {
                Source::Lake(_) => format!(
                    "--date {date}: {source} has no window_metrics at all; write it with `tradeflow run --lake ...`, or point --lake at the lake a run wrote"
                ),
                Source::Postgres(_) => format!(
                    "--date {date}: {source} has no final window_metrics rows at all; fill it with `tradeflow run --postgres ...`, or read the lake instead"
                ),
            }
        } else {
            format!("--date {date}: {source} has no final windows on that day; it has data for {}", list_dates(&dates))
        })
    }
}

/// `2023-11-14, 2023-11-15` (the first and last few when there are many).
fn list_dates(dates: &[String]) -> String {
    if dates.len() <= 12 {
        return dates.join(", ");
    }
    format!("{} days: {}, ..., {}", dates.len(), dates[..5].join(", "), dates[dates.len() - 5..].join(", "))
}

/// A lake opened for reading.
pub(super) struct LakeSource {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    display: String,
    runtime: tokio::runtime::Runtime,
}

impl LakeSource {
    /// Opens `url` (as `--lake`): a local lake must exist; an S3 bucket is checked.
    fn open(url: &str) -> anyhow::Result<LakeSource> {
        let destination = if url.starts_with("s3://") {
            // Checks the bucket and the credentials; writes nothing.
            Destination::open(url)
        } else {
            Destination::open_for_reading(url)
        }
        .map_err(|e| anyhow!("--lake {url}: {e}"))?;
        let (store, prefix) = destination.store().map_err(|e| anyhow!("--lake {url}: {e}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        Ok(LakeSource { store, prefix, display: destination.display(), runtime })
    }

    fn path(&self, key: &str) -> Path {
        if self.prefix.as_ref().is_empty() { Path::from(key) } else { Path::from(format!("{}/{key}", self.prefix)) }
    }

    /// The `.parquet` objects under `dir` (relative to the lake root), sorted by name.
    fn parquet_files(&self, dir: &str) -> anyhow::Result<Vec<Path>> {
        let root = self.path(dir);
        let objects: Vec<_> = self
            .runtime
            .block_on(self.store.list(Some(&root)).try_collect())
            .with_context(|| format!("listing {}/{dir}", self.display))?;
        let mut files: Vec<Path> = objects
            .into_iter()
            .map(|o| o.location)
            .filter(|p| p.filename().is_some_and(|n| n.ends_with(".parquet") && !n.starts_with('.')))
            .collect();
        files.sort();
        Ok(files)
    }

    fn batches(&self, path: &Path) -> anyhow::Result<Vec<RecordBatch>> {
        let bytes = self
            .runtime
            .block_on(async { self.store.get(path).await?.bytes().await })
            .with_context(|| format!("reading {}/{path}", self.display))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.build())
            .with_context(|| format!("{}/{path} is not a readable Parquet file", self.display))?;
        reader.map(|b| b.with_context(|| format!("reading {}/{path}", self.display))).collect()
    }

    fn read_day(&self, date: &str, day_start: i64) -> anyhow::Result<Day> {
        let mut day = Day::default();
        let in_day = |start: i64| start >= day_start && start < day_start + super::DAY_MS;
        for path in self.parquet_files(&format!("window_metrics/date={date}"))? {
            let name = format!("{}/{path}", self.display);
            for batch in self.batches(&path)? {
                day.windows.extend(window_rows(&batch).map_err(|e| anyhow!("{name}: {e}"))?);
            }
        }
        for path in self.parquet_files(&format!("anomalies/date={date}"))? {
            let name = format!("{}/{path}", self.display);
            for batch in self.batches(&path)? {
                day.anomalies.extend(anomaly_rows(&batch).map_err(|e| anyhow!("{name}: {e}"))?);
            }
        }
        day.windows.retain(|w| in_day(w.window_start));
        day.anomalies.retain(|a| in_day(a.window_start));
        Ok(day)
    }

    /// The dates of the lake's `window_metrics` partitions, sorted.
    fn dates(&self) -> anyhow::Result<Vec<String>> {
        let root = self.path("window_metrics");
        let listed = self
            .runtime
            .block_on(self.store.list_with_delimiter(Some(&root)))
            .with_context(|| format!("listing {}/window_metrics", self.display))?;
        let mut dates: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename()?.strip_prefix("date=").map(str::to_owned))
            .collect();
        dates.sort();
        Ok(dates)
    }
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a dyn Array, String> {
    batch.column_by_name(name).map(|c| c.as_ref()).ok_or_else(|| format!("no column {name:?}"))
}

fn timestamps(batch: &RecordBatch, name: &str) -> Result<Vec<i64>, String> {
    let c = column(batch, name)?;
    let a = c.as_primitive_opt::<TimestampMillisecondType>().ok_or_else(|| wrong_type(name, c, "timestamp(ms)"))?;
    Ok(a.values().to_vec())
}

fn floats(batch: &RecordBatch, name: &str) -> Result<Vec<Option<f64>>, String> {
    let c = column(batch, name)?;
    let a = c.as_primitive_opt::<Float64Type>().ok_or_else(|| wrong_type(name, c, "double"))?;
    Ok(a.iter().collect())
}

fn required_floats(batch: &RecordBatch, name: &str) -> Result<Vec<f64>, String> {
    floats(batch, name)?.into_iter().map(|v| v.ok_or_else(|| format!("{name} is NULL"))).collect()
}

fn strings(batch: &RecordBatch, name: &str) -> Result<Vec<String>, String> {
    let c = column(batch, name)?;
    let a = c.as_string_opt::<i32>().ok_or_else(|| wrong_type(name, c, "string"))?;
    a.iter().map(|s| s.map(str::to_owned).ok_or_else(|| format!("{name} is NULL"))).collect()
}

/// A decimal column as integers of 10^-8.
fn units(batch: &RecordBatch, name: &str) -> Result<Vec<i128>, String> {
    let c = column(batch, name)?;
    let a = c.as_primitive_opt::<Decimal128Type>().ok_or_else(|| wrong_type(name, c, "decimal"))?;
    let scale = a.scale();
    if !(0..=8).contains(&scale) {
        return Err(format!("{name} has scale {scale}; the lake writes 8"));
    }
    let factor = 10i128.pow(8 - scale as u32);
    Ok(a.values().iter().map(|v| v * factor).collect())
}

fn wrong_type(name: &str, column: &dyn Array, expected: &str) -> String {
    format!("column {name:?} is {:?}, not {expected}", column.data_type())
}

/// The rows of a `window_metrics` batch.
fn window_rows(b: &RecordBatch) -> Result<Vec<WindowRow>, String> {
    let (symbol, start, end) = (strings(b, "symbol")?, timestamps(b, "window_start")?, timestamps(b, "window_end")?);
    let count = column(b, "trade_count")?;
    let count = count.as_primitive_opt::<Int64Type>().ok_or_else(|| wrong_type("trade_count", count, "int64"))?;
    let (volume, vwap, volatility) = (units(b, "volume")?, floats(b, "vwap")?, floats(b, "volatility")?);
    (0..b.num_rows())
        .map(|i| {
            Ok(WindowRow {
                symbol: symbol[i].clone(),
                window_start: start[i],
                window_end: end[i],
                trade_count: u64::try_from(count.value(i)).map_err(|_| "a negative trade_count".to_owned())?,
                volume: volume[i],
                vwap: vwap[i],
                volatility: volatility[i],
            })
        })
        .collect()
}

/// The rows of an `anomalies` batch.
fn anomaly_rows(b: &RecordBatch) -> Result<Vec<AnomalyRow>, String> {
    let (symbol, start, kind) = (strings(b, "symbol")?, timestamps(b, "window_start")?, strings(b, "kind")?);
    let (severity, observed, baseline) =
        (required_floats(b, "severity")?, required_floats(b, "observed")?, required_floats(b, "baseline")?);
    Ok((0..b.num_rows())
        .map(|i| AnomalyRow {
            symbol: symbol[i].clone(),
            window_start: start[i],
            kind: kind[i].clone(),
            severity: severity[i],
            observed: observed[i],
            baseline: baseline[i],
        })
        .collect())
}

fn connect(target: &PgTarget) -> anyhow::Result<postgres::Client> {
    target.connect().map_err(|e| anyhow!("{}", Failure::from(e).into_error(target, "connecting")))
}

fn query(
    client: &mut postgres::Client,
    target: &PgTarget,
    sql: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
    what: &str,
) -> anyhow::Result<Vec<postgres::Row>> {
    client.query(sql, params).map_err(|e| anyhow!("{}", Failure::from(e).into_error(target, what)))
}

/// `numeric` text (`123.45`, `-0.5`, `7`) as integers of 10^-8, exactly.
fn parse_units(text: &str) -> anyhow::Result<i128> {
    let bad = || anyhow!("volume {text:?} is not a decimal with at most 8 places");
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let frac = frac.trim_end_matches('0');
    if int.is_empty() || frac.len() > 8 || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let value: i128 = format!("{int}{frac:0<8}").parse().map_err(|_| bad())?;
    Ok(if negative { -value } else { value })
}

/// Final rows of `date` from the sink's tables.
fn read_postgres(target: &PgTarget, date: &str) -> anyhow::Result<Day> {
    let mut client = connect(target)?;
    let windows = query(
        &mut client,
        target,
        "SELECT symbol,
                (extract(epoch FROM window_start) * 1000)::bigint AS window_start,
                (extract(epoch FROM window_end) * 1000)::bigint AS window_end,
                trade_count, volume::text AS volume, vwap, volatility
         FROM window_metrics
         WHERE is_final AND trade_date = $1::text::date",
        &[&date],
        "reading window_metrics",
    )?;
    let anomalies = query(
        &mut client,
        target,
        "SELECT symbol, (extract(epoch FROM window_start) * 1000)::bigint AS window_start,
                kind, severity, observed, baseline
         FROM anomalies
         WHERE is_final
           AND window_start >= ($1::text::date)::timestamp AT TIME ZONE 'UTC'
           AND window_start < ($1::text::date + 1)::timestamp AT TIME ZONE 'UTC'",
        &[&date],
        "reading anomalies",
    )?;
    let mut day = Day::default();
    for row in windows {
        let count: i64 = row.try_get("trade_count")?;
        day.windows.push(WindowRow {
            symbol: row.try_get("symbol")?,
            window_start: row.try_get("window_start")?,
            window_end: row.try_get("window_end")?,
            trade_count: u64::try_from(count).map_err(|_| anyhow!("a negative trade_count in window_metrics"))?,
            volume: parse_units(row.try_get("volume")?)?,
            vwap: row.try_get("vwap")?,
            volatility: row.try_get("volatility")?,
        });
    }
    for row in anomalies {
        day.anomalies.push(AnomalyRow {
            symbol: row.try_get("symbol")?,
            window_start: row.try_get("window_start")?,
            kind: row.try_get("kind")?,
            severity: row.try_get("severity")?,
            observed: row.try_get("observed")?,
            baseline: row.try_get("baseline")?,
        });
    }
    Ok(day)
}

/// The dates with final windows in the database, sorted.
fn postgres_dates(target: &PgTarget) -> anyhow::Result<Vec<String>> {
    let mut client = connect(target)?;
    let rows = query(
        &mut client,
        target,
        "SELECT DISTINCT trade_date::text FROM window_metrics WHERE is_final ORDER BY 1",
        &[],
        "listing the dates of window_metrics",
    )?;
    rows.iter().map(|r| r.try_get::<_, String>(0).map_err(Into::into)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_numeric_text_exactly() {
        assert_eq!(parse_units("123.45").unwrap(), 12_345_000_000);
        assert_eq!(parse_units("7").unwrap(), 700_000_000);
        assert_eq!(parse_units("0.00000001").unwrap(), 1);
        assert_eq!(parse_units("-0.5").unwrap(), -50_000_000);
        assert_eq!(parse_units("1.100000000000").unwrap(), 110_000_000);
        for bad in ["", "1.000000001", "abc", "1e5", ".5"] {
            assert!(parse_units(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lists_many_dates_briefly() {
        let dates: Vec<String> = (1..=20).map(|d| format!("2024-01-{d:02}")).collect();
        assert_eq!(
            list_dates(&dates),
            "20 days: 2024-01-01, 2024-01-02, 2024-01-03, 2024-01-04, 2024-01-05, ..., 2024-01-16, 2024-01-17, 2024-01-18, 2024-01-19, 2024-01-20"
        );
        assert_eq!(list_dates(&dates[..2]), "2024-01-01, 2024-01-02");
    }
}
