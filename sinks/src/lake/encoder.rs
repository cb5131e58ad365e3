//! Parquet encoding of large files off the dataflow's threads.
//!
//! Writers hand rows over in fixed-size batches (so that a file's bytes do not depend on
//! timing), some of them spilled to a local file first, and a background thread encodes
//! them into a spooled file, [`WRITE_ROWS`] at a time, then queues the finished file for
//! upload. The dataflow workers spend their time on the dataflow;
//! encoding and compression run beside them.

use super::parquet::{
    trades_batch, trades_by_hour_batch, trades_by_hour_schema, trades_schema, trades_writer_properties,
};
use parquet::arrow::ArrowWriter;
use rustc_hash::FxHashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use tradeflow_model::Trade;

/// Rows per write into a Parquet writer: every file's rows reach it in writes of this
/// size (the last one shorter), so that its pages, and its bytes, do not depend on how
/// the rows arrived.
pub(crate) const WRITE_ROWS: usize = 8192;

/// Work for the encoder thread.
pub(crate) enum EncodeJob {
    /// Start file `id`, spooled at `spool`; `with_symbol`: the by-hour schema, with a
    /// `symbol` column.
    Open { id: u64, spool: PathBuf, with_symbol: bool },
    /// Append rows to file `id`: those spilled to `spilled` (written by
    /// [`tradeflow_model::checkpoint::write_trade`]; removed once read), then `rows`.
    Rows { id: u64, spilled: Option<PathBuf>, rows: Vec<Trade> },
    /// Finish file `id` and publish it as `key`.
    Close { id: u64, key: String },
    /// Answer once everything queued before is encoded and uploaded.
    Barrier(std::sync::mpsc::Sender<()>),
}

/// Runs until every sender is gone; `publish` queues finished files for upload.
pub(crate) fn encode_loop(
    jobs: Receiver<EncodeJob>,
    publish: impl Fn(String, PathBuf, u64),
    barrier: impl Fn(std::sync::mpsc::Sender<()>),
    errors: Arc<super::store::Failure>,
) {
    let fail = |message: String| {
        tracing::error!("{message}");
        tradeflow_model::metrics::SinkMetrics::of("lake").errors.inc();
        errors.record(message);
    };
    // Per open file: its spool path, its writer, the rows written to it, and whether it
    // has a symbol column.
    let mut open: FxHashMap<u64, (PathBuf, ArrowWriter<File>, u64, bool)> = FxHashMap::default();
    for job in jobs {
        match job {
            EncodeJob::Open { id, spool, with_symbol } => {
                let schema = if with_symbol { trades_by_hour_schema() } else { trades_schema() };
                let writer = File::create(&spool)
                    .map_err(|e| format!("cannot create spool file {}: {e}", spool.display()))
                    .and_then(|f| {
                        ArrowWriter::try_new(f, schema, Some(trades_writer_properties())).map_err(|e| e.to_string())
                    });
                match writer {
                    Ok(writer) => {
                        open.insert(id, (spool, writer, 0, with_symbol));
                    }
                    Err(e) => fail(e),
                }
            }
            EncodeJob::Rows { id, spilled, rows } => {
                let rows = match spilled {
                    Some(path) => match unspill(&path, rows) {
                        Ok(rows) => rows,
                        Err(e) => {
                            fail(e);
                            continue;
                        }
                    },
                    None => rows,
                };
                if let Some((_, writer, written, with_symbol)) = open.get_mut(&id) {
                    for rows in rows.chunks(WRITE_ROWS) {
                        let batch = if *with_symbol { trades_by_hour_batch(rows) } else { trades_batch(rows) };
                        match writer.write(&batch) {
                            Ok(()) => *written += rows.len() as u64,
                            Err(e) => fail(format!("encoding trades: {e}")),
                        }
                    }
                }
            }
            EncodeJob::Barrier(done) => barrier(done),
            EncodeJob::Close { id, key } => {
                let Some((spool, writer, rows, _)) = open.remove(&id) else { continue };
                match writer.close() {
                    Ok(_) => publish(key, spool, rows),
                    Err(e) => fail(format!("finishing {key}: {e}")),
                }
            }
        }
    }
}

/// The rows spilled to `path`, then `rows`; the spill file is removed.
fn unspill(path: &std::path::Path, rows: Vec<Trade>) -> Result<Vec<Trade>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("reading spilled trades {}: {e}", path.display()))?;
    let _ = std::fs::remove_file(path);
    let mut all = tradeflow_model::checkpoint::read_trades(&bytes)
        .map_err(|e| format!("reading spilled trades {}: {e}", path.display()))?;
    all.extend(rows);
    Ok(all)
}
