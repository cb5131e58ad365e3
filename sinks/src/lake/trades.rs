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

use super::encoder::EncodeJob;
use super::paths::{hour_label, partition};
use super::store::Lake;
use super::watermarked::{Step, watermarked_sink};
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use std::sync::Arc;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Exchange;
use tradeflow_model::{Symbol, Time, Trade, WatermarkReport, date_of};

const HOUR: i64 = 3_600_000;

struct OpenFile {
    id: u64,
    hour: i64,
    index: u32,
    rows: usize,
    /// Rows not yet handed to the encoder: it always gets exactly [`WRITE_ROWS`] at a
    /// time (the rest at close), so page boundaries, and the file's bytes, do not depend
    /// on how the rows arrived.
    staged: Vec<Trade>,
}

/// Rows per batch handed to the Parquet encoder.
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
                tracing::error!("a trade below the watermark reached the lake writer and is not written: {trade:?}");
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
            sort_trades(&mut complete);
            for trade in complete.drain(..) {
                let hour = trade.ts.div_euclid(HOUR) * HOUR;
                if files.open.as_ref().is_some_and(|f| f.hour != hour || f.rows >= max_rows) {
                    close(lake, symbol, files);
                }
                let open = files.open.get_or_insert_with(|| open_file(lake, hour, files.last));
                open.staged.push(trade);
                open.rows += 1;
                if open.staged.len() >= WRITE_ROWS {
                    let rows = std::mem::replace(&mut open.staged, Vec::with_capacity(WRITE_ROWS));
                    lake.encode(EncodeJob::Rows { id: open.id, rows });
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

/// Sorts by (ts, price, volume, conditions): by ts first (cheap on an integer key), then
/// each run of equal ts by the rest. Equal keys are identical rows, so the order is fully
/// determined.
fn sort_trades(trades: &mut [Trade]) {
    trades.sort_unstable_by_key(|t| t.ts);
    let mut start = 0;
    while start < trades.len() {
        let ts = trades[start].ts;
        let end = start + trades[start..].iter().take_while(|t| t.ts == ts).count();
        if end - start > 1 {
            trades[start..end]
                .sort_unstable_by(|a, b| (a.price, a.volume, &a.conditions).cmp(&(b.price, b.volume, &b.conditions)));
        }
        start = end;
    }
}

fn open_file(lake: &Lake, hour: i64, last: Option<(i64, u32)>) -> OpenFile {
    let index = match last {
        Some((h, i)) if h == hour => i + 1,
        _ => 0,
    };
    let id = lake.next_file_id();
    lake.encode(EncodeJob::Open { id, spool: lake.spool_path() });
    OpenFile { id, hour, index, rows: 0, staged: Vec::with_capacity(WRITE_ROWS) }
}

fn close(lake: &Lake, symbol: &Symbol, files: &mut SymbolFiles) {
    let Some(open) = files.open.take() else { return };
    files.last = Some((open.hour, open.index));
    if !open.staged.is_empty() {
        lake.encode(EncodeJob::Rows { id: open.id, rows: open.staged });
    }
    let key = format!(
        "trades/date={}/{}/{}-{:04}.parquet",
        date_of(open.hour),
        partition("symbol", symbol.as_str()),
        hour_label(open.hour),
        open.index
    );
    lake.encode(EncodeJob::Close { id: open.id, key });
}
