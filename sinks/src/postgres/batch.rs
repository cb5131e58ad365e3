//! One batch of [`Changes`] as one SQL statement: the rows travel as binary arrays,
//! unnested into relations, and data-modifying CTEs merge them into the tables.
//!
//! Background: the statement is prepared once per connection and executed once per
//! batch, so a batch costs one round trip, no parsing per row (arrays of doubles and
//! timestamps are sent in binary: floats arrive bit for bit), and no staging tables (a
//! temporary table emptied at every commit costs a dozen file operations, and on a
//! busy disk an occasional stall). One statement is one transaction: a reader never sees
//! half a batch. Rows are merged in key order, so two writers never deadlock.
//!
//! The merge rules, which make every write idempotent and order-safe:
//! * An upsert never replaces a final row with a provisional one (a replay's provisional
//!   rows leave an earlier run's final rows alone), and never rewrites a row whose
//!   values are unchanged (a replay of the same input touches nothing, `updated_at`
//!   included).
//! * A deletion (a retracted anomaly) removes the row only if it is not final: final
//!   rows are never retracted within a run.
//! * A final window row settles its window's anomalies as a whole: any anomaly of that
//!   window that is not among the final anomalies of the same batch is deleted. Within a
//!   run a window's final anomalies arrive in the same epoch as its final row, so this
//!   only removes leftovers: a provisional anomaly of a crashed run, or a final one that
//!   a replay with more (late) trades no longer finds.
//!
//! All sub-statements see the database as it was before the statement; they touch
//! disjoint rows (a key is either upserted or deleted, and settling skips the window's
//! final anomalies).

use super::changes::Changes;
use postgres::types::ToSql;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tradeflow_model::{Price, Time};

/// The merge statement. Parameters: the metrics rows ($1-$14, and their digests $29), the
/// anomaly rows ($15-$24), the progress row ($25-$28, skipped when $25 is NULL). Returns
/// the rows actually changed and deleted.
pub const MERGE: &str = "
WITH m AS (
    SELECT * FROM unnest($1::boolean[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::bigint[],
                         $6::text[], $7::float8[], $8::text[], $9::text[], $10::float8[], $11::text[],
                         $12::text[], $13::float8[], $14::boolean[], $29::bigint[])
        AS u(is_delete, symbol, window_start, window_end, trade_count, volume, vwap, min_price, max_price,
             avg_price, open, close, volatility, is_final, digest)
),
a AS (
    SELECT * FROM unnest($15::boolean[], $16::text[], $17::timestamptz[], $18::text[], $19::timestamptz[],
                         $20::float8[], $21::timestamptz[], $22::float8[], $23::float8[], $24::boolean[])
        AS u(is_delete, symbol, window_start, kind, window_end, severity, detected_at, observed, baseline, is_final)
),
upsert_anomalies AS (
    INSERT INTO anomalies AS t (symbol, window_start, window_end, kind, severity, detected_at, observed, baseline, is_final)
    SELECT symbol, window_start, window_end, kind, severity, detected_at, observed, baseline, is_final
    FROM a WHERE NOT is_delete
    ORDER BY symbol, window_start, kind
    ON CONFLICT (symbol, window_start, kind) DO UPDATE SET
        window_end = EXCLUDED.window_end, severity = EXCLUDED.severity, detected_at = EXCLUDED.detected_at,
        observed = EXCLUDED.observed, baseline = EXCLUDED.baseline, is_final = EXCLUDED.is_final
    WHERE (NOT t.is_final OR EXCLUDED.is_final)
      AND (t.window_end, t.severity, t.detected_at, t.observed, t.baseline, t.is_final)
          IS DISTINCT FROM (EXCLUDED.window_end, EXCLUDED.severity, EXCLUDED.detected_at, EXCLUDED.observed,
                            EXCLUDED.baseline, EXCLUDED.is_final)
    RETURNING 1
),
delete_anomalies AS (
    DELETE FROM anomalies AS t USING a AS s
    WHERE s.is_delete AND NOT t.is_final
      AND t.symbol = s.symbol AND t.window_start = s.window_start AND t.kind = s.kind
    RETURNING 1
),
upsert_metrics AS (
    INSERT INTO window_metrics AS t (symbol, window_start, window_end, trade_count, volume, vwap, min_price, max_price,
                                     avg_price, open, close, volatility, is_final, digest, updated_at)
    SELECT symbol, window_start, window_end, trade_count, volume::numeric, vwap, min_price::numeric,
           max_price::numeric, avg_price, open::numeric, close::numeric, volatility, is_final, digest, now()
    FROM m WHERE NOT is_delete
    ORDER BY symbol, window_start
    ON CONFLICT (symbol, window_start) DO UPDATE SET
        window_end = EXCLUDED.window_end, trade_count = EXCLUDED.trade_count, volume = EXCLUDED.volume,
        vwap = EXCLUDED.vwap, min_price = EXCLUDED.min_price, max_price = EXCLUDED.max_price,
        avg_price = EXCLUDED.avg_price, open = EXCLUDED.open, close = EXCLUDED.close,
        volatility = EXCLUDED.volatility, is_final = EXCLUDED.is_final, digest = EXCLUDED.digest,
        updated_at = EXCLUDED.updated_at
    WHERE (NOT t.is_final OR EXCLUDED.is_final)
      AND (t.window_end, t.trade_count, t.volume, t.vwap, t.min_price, t.max_price, t.avg_price, t.open, t.close,
           t.volatility, t.is_final, t.digest)
          IS DISTINCT FROM (EXCLUDED.window_end, EXCLUDED.trade_count, EXCLUDED.volume, EXCLUDED.vwap,
                            EXCLUDED.min_price, EXCLUDED.max_price, EXCLUDED.avg_price, EXCLUDED.open,
                            EXCLUDED.close, EXCLUDED.volatility, EXCLUDED.is_final, EXCLUDED.digest)
    RETURNING 1
),
settle_final_windows AS (
    DELETE FROM anomalies AS t USING m AS s
    WHERE s.is_final AND NOT s.is_delete
      AND t.symbol = s.symbol AND t.window_start = s.window_start
      AND NOT EXISTS (
          SELECT 1 FROM a
          WHERE a.is_final AND NOT a.is_delete
            AND a.symbol = t.symbol AND a.window_start = t.window_start AND a.kind = t.kind)
    RETURNING 1
),
delete_metrics AS (
    DELETE FROM window_metrics AS t USING m AS s
    WHERE s.is_delete AND NOT t.is_final AND t.symbol = s.symbol AND t.window_start = s.window_start
    RETURNING 1
),
progress AS (
    INSERT INTO sink_progress AS p (run_id, process, epoch, committed_at, transactions, rows_written)
    SELECT $25::text, $26::integer, $27::timestamptz, now(), 1, $28::bigint
    WHERE $25::text IS NOT NULL
    ON CONFLICT (run_id, process) DO UPDATE SET
        epoch = GREATEST(p.epoch, EXCLUDED.epoch), committed_at = EXCLUDED.committed_at,
        transactions = p.transactions + 1, rows_written = p.rows_written + EXCLUDED.rows_written
    RETURNING 1
)
SELECT (SELECT count(*) FROM upsert_anomalies) + (SELECT count(*) FROM upsert_metrics) AS changed,
       (SELECT count(*) FROM delete_anomalies) + (SELECT count(*) FROM settle_final_windows)
           + (SELECT count(*) FROM delete_metrics) AS deleted,
       (SELECT count(*) FROM progress) AS progress
";

/// The progress row written with a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The run.
    pub run_id: String,
    /// This process.
    pub process: i32,
    /// Everything handed over up to this epoch is in the batch or committed before.
    pub epoch: Time,
}

/// A batch's rows as the statement's array parameters.
#[derive(Debug, Default)]
pub struct Batch {
    m_is_delete: Vec<bool>,
    m_symbol: Vec<String>,
    m_window_start: Vec<SystemTime>,
    m_window_end: Vec<Option<SystemTime>>,
    m_trade_count: Vec<Option<i64>>,
    m_volume: Vec<Option<String>>,
    m_vwap: Vec<Option<f64>>,
    m_min_price: Vec<Option<String>>,
    m_max_price: Vec<Option<String>>,
    m_avg_price: Vec<Option<f64>>,
    m_open: Vec<Option<String>>,
    m_close: Vec<Option<String>>,
    m_volatility: Vec<Option<f64>>,
    m_is_final: Vec<Option<bool>>,
    m_digest: Vec<Option<i64>>,
    a_is_delete: Vec<bool>,
    a_symbol: Vec<String>,
    a_window_start: Vec<SystemTime>,
    a_kind: Vec<String>,
    a_window_end: Vec<Option<SystemTime>>,
    a_severity: Vec<Option<f64>>,
    a_detected_at: Vec<Option<SystemTime>>,
    a_observed: Vec<Option<f64>>,
    a_baseline: Vec<Option<f64>>,
    a_is_final: Vec<Option<bool>>,
    p_run_id: Option<String>,
    p_process: Option<i32>,
    p_epoch: Option<SystemTime>,
    p_rows: Option<i64>,
    /// Rows to upsert.
    pub upserts: u64,
    /// Rows to delete.
    pub deletes: u64,
}

impl Batch {
    /// The rows of `changes` (in key order) and the progress row, if any.
    pub fn new(changes: &Changes, progress: Option<&Progress>) -> Batch {
        let mut b = Batch::default();
        for ((symbol, start), row) in &changes.metrics {
            b.m_is_delete.push(row.is_none());
            b.m_symbol.push(symbol.as_str().to_owned());
            b.m_window_start.push(time(*start));
            b.m_window_end.push(row.as_ref().map(|r| time(r.window_end)));
            b.m_trade_count.push(row.as_ref().map(|r| i64::try_from(r.trade_count).unwrap_or(i64::MAX)));
            b.m_volume.push(row.as_ref().map(|r| decimal(r.volume)));
            b.m_vwap.push(row.as_ref().and_then(|r| r.vwap).map(|v| v.0));
            b.m_min_price.push(row.as_ref().map(|r| price(r.min_price)));
            b.m_max_price.push(row.as_ref().map(|r| price(r.max_price)));
            b.m_avg_price.push(row.as_ref().map(|r| r.avg_price.0));
            b.m_open.push(row.as_ref().map(|r| price(r.open)));
            b.m_close.push(row.as_ref().map(|r| price(r.close)));
            b.m_volatility.push(row.as_ref().and_then(|r| r.volatility).map(|v| v.0));
            b.m_is_final.push(row.as_ref().map(|r| r.is_final));
            b.m_digest.push(row.as_ref().map(|r| r.digest_i64()));
        }
        for ((symbol, start, kind), row) in &changes.anomalies {
            b.a_is_delete.push(row.is_none());
            b.a_symbol.push(symbol.as_str().to_owned());
            b.a_window_start.push(time(*start));
            b.a_kind.push(kind.as_str().to_owned());
            b.a_window_end.push(row.as_ref().map(|r| time(r.window_end)));
            b.a_severity.push(row.as_ref().map(|r| r.severity.0));
            b.a_detected_at.push(row.as_ref().map(|r| time(r.detected_at)));
            b.a_observed.push(row.as_ref().map(|r| r.observed.0));
            b.a_baseline.push(row.as_ref().map(|r| r.baseline.0));
            b.a_is_final.push(row.as_ref().map(|r| r.is_final));
        }
        let deletes = b.m_is_delete.iter().chain(&b.a_is_delete).filter(|d| **d).count();
        b.deletes = deletes as u64;
        b.upserts = changes.len() as u64 - b.deletes;
        if let Some(p) = progress {
            b.p_run_id = Some(p.run_id.clone());
            b.p_process = Some(p.process);
            b.p_epoch = Some(time(i64::try_from(p.epoch).unwrap_or(i64::MAX)));
            b.p_rows = Some((b.upserts + b.deletes) as i64);
        }
        b
    }

    /// The statement's parameters, in order.
    pub fn params(&self) -> [&(dyn ToSql + Sync); 29] {
        [
            &self.m_is_delete,
            &self.m_symbol,
            &self.m_window_start,
            &self.m_window_end,
            &self.m_trade_count,
            &self.m_volume,
            &self.m_vwap,
            &self.m_min_price,
            &self.m_max_price,
            &self.m_avg_price,
            &self.m_open,
            &self.m_close,
            &self.m_volatility,
            &self.m_is_final,
            &self.a_is_delete,
            &self.a_symbol,
            &self.a_window_start,
            &self.a_kind,
            &self.a_window_end,
            &self.a_severity,
            &self.a_detected_at,
            &self.a_observed,
            &self.a_baseline,
            &self.a_is_final,
            &self.p_run_id,
            &self.p_process,
            &self.p_epoch,
            &self.p_rows,
            &self.m_digest,
        ]
    }
}

/// Milliseconds since the Unix epoch as a timestamp (exact: PostgreSQL keeps µs).
fn time(ms: i64) -> SystemTime {
    let magnitude = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 { UNIX_EPOCH + magnitude } else { UNIX_EPOCH - magnitude }
}

/// Units of 10^-8 as an exact decimal with 8 places.
pub fn decimal(units: i128) -> String {
    let sign = if units < 0 { "-" } else { "" };
    let abs = units.unsigned_abs();
    format!("{sign}{}.{:08}", abs / 100_000_000, abs % 100_000_000)
}

fn price(p: Price) -> String {
    decimal(i128::from(p.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tradeflow_model::{AnomalyKind, F64, Symbol, WindowMetrics};

    #[test]
    fn formats_exact_decimals_and_times() {
        assert_eq!(decimal(0), "0.00000000");
        assert_eq!(decimal(1), "0.00000001");
        assert_eq!(decimal(18_712_000_000), "187.12000000");
        assert_eq!(decimal(-150_000_000), "-1.50000000");
        assert_eq!(decimal(i128::MAX / 2).len(), 38 + 1);
        assert_eq!(time(1_700_000_000_123).duration_since(UNIX_EPOCH).unwrap().as_millis(), 1_700_000_000_123);
    }

    #[test]
    fn lays_rows_out_as_arrays_in_key_order() {
        let mut changes = Changes::default();
        for (symbol, start) in [("MSFT", 60_000), ("AAPL", 0)] {
            let symbol = Symbol::parse(symbol).unwrap();
            let row = WindowMetrics {
                symbol: symbol.clone(),
                window_start: 1_700_000_000_000 + start,
                window_end: 1_700_000_060_000 + start,
                trade_count: 2,
                volume: 150_000_000,
                vwap: Some(F64(37000.5)),
                min_price: Price(3_700_000_000_000),
                max_price: Price(3_700_100_000_000),
                avg_price: F64(37000.5),
                open: Price(3_700_000_000_000),
                close: Price(3_700_100_000_000),
                volatility: None,
                is_final: true,
            };
            changes.metrics.insert((symbol, row.window_start), Some(row));
        }
        let spike = (Symbol::parse("AAPL").unwrap(), 1_700_000_000_000, AnomalyKind::VolumeSpike);
        changes.anomalies.insert(spike, None);
        let progress = Progress { run_id: "r1".into(), process: 0, epoch: 1_700_000_100_000 };
        let b = Batch::new(&changes, Some(&progress));
        assert_eq!(b.m_symbol, ["AAPL", "MSFT"]);
        assert_eq!((b.m_is_delete.clone(), b.a_is_delete.clone()), (vec![false, false], vec![true]));
        assert_eq!(b.m_volume[0].as_deref(), Some("1.50000000"));
        assert_eq!(b.m_min_price[0].as_deref(), Some("37000.00000000"));
        assert_eq!((b.m_vwap[0], b.m_volatility[0]), (Some(37000.5), None));
        assert_eq!((b.a_kind.clone(), b.a_severity.clone()), (vec!["volume_spike".to_owned()], vec![None]));
        assert_eq!((b.upserts, b.deletes, b.p_rows), (2, 1, Some(3)));
        assert_eq!(
            b.m_digest,
            changes.metrics.values().map(|r| r.as_ref().map(|r| r.digest_i64())).collect::<Vec<_>>()
        );
        assert!(MERGE.contains("$29::bigint[]") && !MERGE.contains("$30"));
        let without = Batch::new(&changes, None);
        assert!(without.p_run_id.is_none() && without.p_epoch.is_none());
    }
}
