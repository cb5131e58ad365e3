//! `trades/date=D/symbol=S/*.parquet`: every accepted trade exactly once.
//!
//! Background: trades are routed to the worker that owns their symbol and held until the
//! watermark passes them; complete trades are appended, sorted by (ts, price, volume,
//! conditions), to the symbol's open file. A file holds the trades of one symbol in one
//! UTC hour, at most `max_rows` of them (a busy hour is split), and is closed when the
//! watermark passes the hour's end or it is full.
//!
//! Determinism: a file's name (`20231114T22-0000.parquet`: hour, then index within the
//! hour) and its content depend only on the set of accepted trades, not on workers,
//! batches or timing, so a replay rewrites the very same objects. Memory per symbol is
//! the trades within the allowed lateness plus one row group being encoded.

use super::parquet::{trades_batch, trades_schema, trades_writer_properties};
use super::paths::{hour_label, partition};
use super::store::{Lake, Payload};
use super::watermarked::{Step, watermarked_sink};
use parquet::arrow::ArrowWriter;
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Exchange;
use tradeflow_model::{Symbol, Time, Trade, WatermarkReport, date_of};

const HOUR: i64 = 3_600_000;

struct OpenFile {
    hour: i64,
    index: u32,
    rows: usize,
    spool: PathBuf,
    writer: ArrowWriter<File>,
    /// Rows not yet handed to the writer: it always gets exactly [`WRITE_ROWS`] at a time
    /// (the rest at close), so page boundaries, and the file's bytes, do not depend on
    /// how the rows arrived.
    staged: Vec<Trade>,
}

/// Rows per call to the Parquet writer.
const WRITE_ROWS: usize = 8192;

#[derive(Default)]
struct SymbolFiles {
    /// Trades not yet complete, by second of event time, so that moving the complete
    /// ones out costs what is moved, not what stays.
    tail: BTreeMap<i64, Vec<Trade>>,
    open: Option<OpenFile>,
    /// The hour and index of the last file closed, so a full hour continues its numbering.
    last: Option<(i64, u32)>,
}

/// Writes the accepted trades to the lake (see the module documentation).
pub fn write_trades<'scope>(
    trades: StreamVec<'scope, Time, Trade>,
    watermarks: StreamVec<'scope, Time, WatermarkReport>,
    reporters: usize,
    lake: Arc<Lake>,
    max_rows: usize,
) {
    let mut symbols: FxHashMap<Symbol, SymbolFiles> = FxHashMap::default();
    let mut complete: Vec<Trade> = Vec::new();
    let mut written_up_to = i64::MIN;
    let pact = Exchange::new(|t: &Trade| t.symbol.route());
    watermarked_sink("LakeTrades", trades, pact, watermarks, reporters, move |step: Step<'_, Trade>| {
        for trade in step.data.drain(..) {
            if trade.ts < written_up_to {
                // Sources never emit below a watermark they reported; this would be a bug.
                eprintln!("error: trade below the watermark reached the lake writer and is not written: {trade:?}");
                continue;
            }
            let second = trade.ts.div_euclid(1000);
            match symbols.get_mut(&trade.symbol) {
                Some(files) => files.tail.entry(second).or_default().push(trade),
                None => {
                    let mut files = SymbolFiles::default();
                    let symbol = trade.symbol.clone();
                    files.tail.insert(second, vec![trade]);
                    symbols.insert(symbol, files);
                }
            }
        }
        if step.watermark <= written_up_to {
            return;
        }
        written_up_to = step.watermark;
        let lake = &lake;
        symbols.retain(|symbol, files| {
            // Whole seconds below the watermark's second are complete; its own second in part.
            let boundary = step.watermark.div_euclid(1000);
            let later = files.tail.split_off(&boundary);
            for (_, mut trades) in std::mem::replace(&mut files.tail, later) {
                complete.append(&mut trades);
            }
            if let Some(partial) = files.tail.get_mut(&boundary) {
                let (done, rest): (Vec<Trade>, Vec<Trade>) = partial.drain(..).partition(|t| t.ts < step.watermark);
                complete.extend(done);
                *partial = rest;
            }
            // Equal keys are identical rows, so the order is fully determined.
            complete.sort_unstable_by(|a, b| {
                a.ts.cmp(&b.ts)
                    .then_with(|| a.price.cmp(&b.price))
                    .then_with(|| a.volume.cmp(&b.volume))
                    .then_with(|| a.conditions.cmp(&b.conditions))
            });
            for trade in complete.drain(..) {
                let hour = trade.ts.div_euclid(HOUR) * HOUR;
                if files.open.as_ref().is_some_and(|f| f.hour != hour || f.rows >= max_rows) {
                    close(lake, symbol, files);
                }
                if files.open.is_none() {
                    match open_file(lake, hour, files.last) {
                        Ok(open) => files.open = Some(open),
                        Err(e) => {
                            lake.report_error(format!("trades of {symbol} not written: {e}"));
                            continue;
                        }
                    }
                }
                let open = files.open.as_mut().expect("opened above");
                open.staged.push(trade);
                open.rows += 1;
                if open.staged.len() >= WRITE_ROWS {
                    let batch = trades_batch(&open.staged);
                    open.staged.clear();
                    if let Err(e) = open.writer.write(&batch) {
                        lake.report_error(format!("encoding trades of {symbol}: {e}"));
                    }
                }
            }
            if files.open.as_ref().is_some_and(|f| f.hour + HOUR <= step.watermark || step.done) {
                close(lake, symbol, files);
            }
            files.tail.retain(|_, trades| !trades.is_empty());
            files.open.is_some() || !files.tail.is_empty()
        });
    });
}

fn open_file(lake: &Lake, hour: i64, last: Option<(i64, u32)>) -> Result<OpenFile, String> {
    let index = match last {
        Some((h, i)) if h == hour => i + 1,
        _ => 0,
    };
    let spool = lake.spool_path();
    let file = File::create(&spool).map_err(|e| format!("cannot create spool file {}: {e}", spool.display()))?;
    let writer =
        ArrowWriter::try_new(file, trades_schema(), Some(trades_writer_properties())).map_err(|e| e.to_string())?;
    Ok(OpenFile { hour, index, rows: 0, spool, writer, staged: Vec::new() })
}

fn close(lake: &Lake, symbol: &Symbol, files: &mut SymbolFiles) {
    let Some(mut open) = files.open.take() else { return };
    files.last = Some((open.hour, open.index));
    if !open.staged.is_empty()
        && let Err(e) = open.writer.write(&trades_batch(&open.staged))
    {
        lake.report_error(format!("encoding trades of {symbol}: {e}"));
    }
    if let Err(e) = open.writer.close() {
        lake.report_error(format!("finishing a trades file of {symbol}: {e}"));
        return;
    }
    let key = format!(
        "trades/date={}/{}/{}-{:04}.parquet",
        date_of(open.hour),
        partition("symbol", symbol.as_str()),
        hour_label(open.hour),
        open.index
    );
    lake.publish(key, Payload::Spooled(open.spool));
}
