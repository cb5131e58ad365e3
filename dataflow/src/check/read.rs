//! What `tradeflow check` reads: the lake's datasets (local or S3) and PostgreSQL's tables.
//!
//! Lake objects are listed per `date=` partition of the range, so a check of one day
//! lists that day's objects, not the whole lake. Rows come back through the lake's own
//! codecs (`trades_from_batch`, `metrics_from_batch`, `anomalies_from_batch`); database
//! rows through the binary protocol, so doubles arrive bit for bit and decimals as exact
//! text.

use anyhow::{Context, anyhow};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::sync::Arc;
use tradeflow_model::{Anomaly, AnomalyKind, F64, Price, Symbol, WindowMetrics, date_of};
use tradeflow_sinks::lake::Destination;
use tradeflow_sinks::postgres::PgTarget;
use tradeflow_sinks::postgres::error::Failure;

const DAY: i64 = 86_400_000;

/// A lake opened for reading.
pub struct LakeFiles {
    runtime: tokio::runtime::Runtime,
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    display: String,
}

/// One object: its key (relative to the lake root) and size.
pub type Object = (String, u64);

impl LakeFiles {
    /// Opens `url` (`file:///abs/dir`, `file://relative/dir`, `s3://bucket/prefix`); it must
    /// exist.
    pub fn open(url: &str) -> anyhow::Result<LakeFiles> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let destination = Destination::open_for_reading(url)
            .map_err(|e| anyhow!("{}", e.to_string().replace("--source", "--lake")))?;
        let (store, prefix) = destination.store().map_err(|e| anyhow!("{e}"))?;
        Ok(LakeFiles { runtime, store, prefix, display: destination.display() })
    }

    /// The lake's URL, for messages.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// The objects under `dir` (relative to the lake root), sorted by key.
    pub fn list(&self, dir: &str) -> anyhow::Result<Vec<Object>> {
        // `Path::from` splits at '/' (`join` would escape it as part of one segment).
        let root = if self.prefix.as_ref().is_empty() {
            Path::from(dir)
        } else {
            Path::from(format!("{}/{dir}", self.prefix))
        };
        let listed: Vec<_> = self
            .runtime
            .block_on(self.store.list(Some(&root)).try_collect())
            .with_context(|| format!("{}: listing {dir}", self.display))?;
        let strip = if self.prefix.as_ref().is_empty() { String::new() } else { format!("{}/", self.prefix) };
        let mut objects: Vec<Object> = listed
            .iter()
            .filter_map(|o| Some((o.location.as_ref().strip_prefix(&strip)?.to_owned(), o.size)))
            .collect();
        objects.sort();
        Ok(objects)
    }

    /// The objects of `dataset` in the `date=` partitions of the days `[from, to)` touches.
    pub fn list_days(&self, dataset: &str, from: i64, to: i64) -> anyhow::Result<Vec<Object>> {
        let mut objects = Vec::new();
        let mut day = from.div_euclid(DAY) * DAY;
        while day < to {
            objects.extend(self.list(&format!("{dataset}/date={}", date_of(day)))?);
            day += DAY;
        }
        Ok(objects)
    }

    /// The record batches of the Parquet object `key`.
    pub fn batches(&self, key: &str) -> anyhow::Result<Vec<arrow_array::RecordBatch>> {
        let path = Path::parse(format!("{}/{key}", self.prefix).trim_start_matches('/'))
            .map_err(|e| anyhow!("{}/{key}: {e}", self.display))?;
        let bytes = self
            .runtime
            .block_on(async { self.store.get(&path).await?.bytes().await })
            .with_context(|| format!("{}/{key}: reading", self.display))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.build())
            .map_err(|e| anyhow!("{}/{key}: not a readable Parquet file: {e}", self.display))?;
        reader.map(|b| b.map_err(|e| anyhow!("{}/{key}: {e}", self.display))).collect()
    }
}

/// The window rows and anomalies of PostgreSQL with a window start in `[from, to)`: each
/// window row with its `is_final` flag and stored digest.
pub struct PgRows {
    /// `window_metrics`.
    pub metrics: Vec<(WindowMetrics, Option<i64>)>,
    /// `anomalies`.
    pub anomalies: Vec<Anomaly>,
}

/// Reads `target`'s rows of `[from, to)` (see [`PgRows`]).
pub fn read_postgres(target: &PgTarget, from: i64, to: i64) -> anyhow::Result<PgRows> {
    let fail = |what: &str| {
        let what = what.to_owned();
        move |e: postgres::Error| anyhow!("{}", Failure::Pg(e).into_error(target, &what))
    };
    let mut client = target.connect().map_err(fail("connecting"))?;
    let has_digest: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM information_schema.columns
                            WHERE table_schema = current_schema() AND table_name = 'window_metrics' AND column_name = 'digest')",
            &[],
        )
        .map_err(fail("reading the schema"))?
        .get(0);
    if !has_digest {
        return Err(anyhow!(
            "PostgreSQL {target} (from {}): window_metrics has no digest column (schema older than version 2, or not tradeflow's); fix: run `tradeflow migrate` with the same settings, then replay the range (e.g. tradeflow run --source lake://...) so the sink fills in the digests",
            target.origin()
        ));
    }
    // Window starts as exact timestamps: 'epoch' + ms (doubles hold these ms exactly).
    let (from, to) = (from.max(-(1 << 52)) as f64, to.min(1 << 52) as f64);
    let range = "window_start >= 'epoch'::timestamptz + $1::float8 * interval '1 millisecond'
                 AND window_start < 'epoch'::timestamptz + $2::float8 * interval '1 millisecond'";
    let ms = |column: &str| format!("floor(extract(epoch FROM {column}) * 1000)::bigint");
    let sql = format!(
        "SELECT symbol, {}, {}, trade_count, volume::text, vwap, min_price::text, max_price::text, avg_price,
                open::text, close::text, volatility, is_final, digest
         FROM window_metrics WHERE {range}",
        ms("window_start"),
        ms("window_end")
    );
    let mut metrics = Vec::new();
    for row in client.query(&sql, &[&from, &to]).map_err(fail("reading window_metrics"))? {
        let symbol: String = row.get(0);
        let decimal = |i: usize| -> anyhow::Result<i128> {
            let text: String = row.get(i);
            units(&text).ok_or_else(|| anyhow!("window_metrics of {symbol}: {text:?} is not a decimal of 8 places"))
        };
        let price = |i: usize| -> anyhow::Result<Price> {
            Ok(Price(
                i64::try_from(decimal(i)?).map_err(|_| anyhow!("window_metrics of {symbol}: price out of range"))?,
            ))
        };
        let m = WindowMetrics {
            symbol: Symbol::parse(&symbol).map_err(|e| anyhow!("window_metrics: symbol {symbol:?}: {e}"))?,
            window_start: row.get(1),
            window_end: row.get(2),
            trade_count: u64::try_from(row.get::<_, i64>(3)).unwrap_or(u64::MAX),
            volume: decimal(4)?,
            vwap: row.get::<_, Option<f64>>(5).map(F64),
            min_price: price(6)?,
            max_price: price(7)?,
            avg_price: F64(row.get(8)),
            open: price(9)?,
            close: price(10)?,
            volatility: row.get::<_, Option<f64>>(11).map(F64),
            is_final: row.get(12),
        };
        metrics.push((m, row.get::<_, Option<i64>>(13)));
    }
    let sql = format!(
        "SELECT symbol, {}, {}, kind, severity, {}, observed, baseline, is_final FROM anomalies WHERE {range}",
        ms("window_start"),
        ms("window_end"),
        ms("detected_at")
    );
    let mut anomalies = Vec::new();
    for row in client.query(&sql, &[&from, &to]).map_err(fail("reading anomalies"))? {
        let symbol: String = row.get(0);
        let kind: String = row.get(3);
        anomalies.push(Anomaly {
            symbol: Symbol::parse(&symbol).map_err(|e| anyhow!("anomalies: symbol {symbol:?}: {e}"))?,
            window_start: row.get(1),
            window_end: row.get(2),
            kind: match kind.as_str() {
                "volume_spike" => AnomalyKind::VolumeSpike,
                "price_jump" => AnomalyKind::PriceJump,
                other => return Err(anyhow!("anomalies of {symbol}: unknown kind {other:?}")),
            },
            severity: F64(row.get(4)),
            detected_at: row.get(5),
            observed: F64(row.get(6)),
            baseline: F64(row.get(7)),
            is_final: row.get(8),
        });
    }
    Ok(PgRows { metrics, anomalies })
}

/// Exact 10^-8 units of a decimal text such as `187.12000000`, `-1.5` or `0`; `None` for
/// anything else (more than 8 places included).
pub fn units(text: &str) -> Option<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || fraction.len() > 8 || !ok(whole) || !ok(fraction) {
        return None;
    }
    let value: i128 = format!("{whole}{fraction:0<8}").parse().ok()?;
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_exact_decimals() {
        assert_eq!(units("187.12000000"), Some(18_712_000_000));
        assert_eq!(units("0"), Some(0));
        assert_eq!(units("-1.5"), Some(-150_000_000));
        assert_eq!(units("0.00000001"), Some(1));
        assert_eq!(units("1.000000001"), None);
        assert_eq!(units("1e5"), None);
        assert_eq!(units(""), None);
    }
}
