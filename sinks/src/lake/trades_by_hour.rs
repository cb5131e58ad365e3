//! `trades/date=D/hour=HH/*.parquet` (`--lake-layout hour`): every accepted trade exactly
//! once, in files per UTC hour sorted by symbol, for large universes.
//!
//! Background: the default layout writes one file per symbol and hour, which a universe
//! of options or every crypto pair turns into hundreds of thousands of small files an
//! hour. This layout writes an hour's trades of every symbol together, sorted by (symbol,
//! ts, price, volume, conditions), with a `symbol` column, cut into files of at most
//! `max_rows` rows; row groups of 64 Ki rows and page statistics let readers skip what
//! they do not ask for (`WHERE symbol = 'AAPL'` reads the row groups whose min/max
//! symbols hold it).
//!
//! Routing and determinism: all the trades of an hour go to one worker (by the hour), and
//! an hour's files are written once the watermark has passed its end, from the sorted set
//! of its trades: their names and bytes depend only on the accepted trades, not on
//! workers, batches or timing.
//!
//! Memory: an hour's trades must all be seen before its first file can be written, so
//! they are buffered; past `max_rows` (`--lake-file-rows`, a file's worth) in memory they
//! are sorted and spilled to a run file in the lake's local staging directory, and the
//! hour's files are written by merging the runs. Memory is bounded by `max_rows` trades
//! per open hour plus a block per run, whatever the number of symbols or trades.
//!
//! Checkpoints: as for the default layout, the trades received since the previous
//! checkpoint are saved as that checkpoint's payload, and each part names the earlier
//! parts that may hold trades of an hour not yet written. A resumed run puts the trades
//! of those hours back in their buffers; their files, written from the sorted set, are
//! the same bytes an uninterrupted run writes.

use super::encoder::{EncodeJob, WRITE_ROWS};
use super::paths::hour_label;
use super::store::Lake;
use super::trades::Received;
use super::watermarked::{SinkLogic, Step, watermarked_sink};
use std::collections::BTreeMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Exchange;
use tradeflow_model::checkpoint::{Part, Restored, Saver, Validity, from_json, read_trades, to_json, write_trade};
use tradeflow_model::{Time, Trade, WatermarkReport, date_of};

const HOUR: i64 = 3_600_000;
/// Trades per block of a run file (what the merge holds of each run).
const BLOCK_ROWS: usize = 8192;

/// The trades of one hour not yet written.
#[derive(Default)]
struct HourBuffer {
    /// In memory, unsorted.
    rows: Vec<Trade>,
    /// Sorted runs spilled to the staging directory.
    runs: Vec<PathBuf>,
    /// All of the hour's trades: in memory and in runs.
    count: usize,
}

/// The writer of one worker's hours.
struct HourWriter {
    lake: Arc<Lake>,
    max_rows: usize,
    hours: BTreeMap<i64, HourBuffer>,
    written_up_to: i64,
    /// What the checkpoint parts keep.
    received: Received,
}

/// Writes the accepted trades to the lake by hour (see the module documentation).
pub fn write_trades_by_hour<'scope>(
    trades: StreamVec<'scope, Time, Trade>,
    watermarks: StreamVec<'scope, Time, WatermarkReport>,
    reporters: usize,
    lake: Arc<Lake>,
    max_rows: usize,
    saver: Option<Saver>,
) -> Result<(), String> {
    let writer = HourWriter {
        received: Received::new(&lake, saver.is_some()),
        lake,
        max_rows,
        hours: BTreeMap::new(),
        written_up_to: i64::MIN,
    };
    let pact = Exchange::new(|t: &Trade| t.ts.div_euclid(HOUR) as u64);
    watermarked_sink("LakeTradesByHour", trades, pact, watermarks, reporters, saver, writer)
}

/// The total order of an hour's rows: (symbol, ts, price, volume, conditions). Equal keys
/// are identical rows, so the order is fully determined.
fn order(a: &Trade, b: &Trade) -> std::cmp::Ordering {
    (&a.symbol, a.ts, a.price, a.volume, &a.conditions).cmp(&(&b.symbol, b.ts, b.price, b.volume, &b.conditions))
}

impl HourWriter {
    fn add(&mut self, trade: Trade) -> Result<(), String> {
        let hour = trade.ts.div_euclid(HOUR) * HOUR;
        let buffer = self.hours.entry(hour).or_default();
        buffer.rows.push(trade);
        buffer.count += 1;
        if buffer.rows.len() >= self.max_rows {
            let run = self.lake.spool_path().with_extension("run");
            spill(&mut buffer.rows, &run)?;
            tracing::debug!(
                "lake trades of {}: {} in memory spilled to {}",
                hour_label(hour),
                self.max_rows,
                run.display()
            );
            buffer.runs.push(run);
        }
        Ok(())
    }

    /// Writes the files of `hour` from its buffer.
    fn write_hour(&self, hour: i64, buffer: HourBuffer) -> Result<(), String> {
        let HourBuffer { rows, runs, count } = buffer;
        let mut file = HourFile { lake: &self.lake, hour, index: 0, rows: 0, open: None, staged: Vec::new() };
        let max_rows = self.max_rows;
        let written = merge(&runs, rows, |trade| {
            if file.rows == max_rows {
                file.close();
            }
            file.push(trade);
        });
        file.close();
        for run in &runs {
            let _ = std::fs::remove_file(run);
        }
        let written = written?;
        if written != count {
            return Err(format!("the hour {} had {count} trades but {written} were written", hour_label(hour)));
        }
        Ok(())
    }
}

/// Calls `each` with the trades of the sorted `runs` and of `rows` (any order), merged in
/// [`order`]; returns how many there were.
fn merge(runs: &[PathBuf], mut rows: Vec<Trade>, mut each: impl FnMut(Trade)) -> Result<usize, String> {
    rows.sort_unstable_by(order);
    let mut sources: Vec<RunReader> = Vec::with_capacity(runs.len() + 1);
    for run in runs {
        sources.push(RunReader::open(run)?);
    }
    sources.push(RunReader::memory(rows));
    // A k-way merge over a few sources (an hour's trades / max_rows).
    let mut heads: Vec<Option<Trade>> = Vec::with_capacity(sources.len());
    for source in &mut sources {
        heads.push(source.next()?);
    }
    let mut count = 0;
    loop {
        let mut best: Option<usize> = None;
        for (i, head) in heads.iter().enumerate() {
            let Some(trade) = head else { continue };
            if best.is_none_or(|b| heads[b].as_ref().is_some_and(|h| order(trade, h).is_lt())) {
                best = Some(i);
            }
        }
        let Some(best) = best else { return Ok(count) };
        let trade = heads[best].take().expect("chosen above");
        heads[best] = sources[best].next()?;
        each(trade);
        count += 1;
    }
}

impl SinkLogic<Trade> for HourWriter {
    fn step(&mut self, step: Step<'_, Trade>) {
        for trade in step.data.drain(..).flatten() {
            if trade.ts < self.written_up_to {
                // Sources never emit below a watermark they reported; this would be a bug.
                tracing::error!("a trade below the watermark reached the lake writer and is not written: {trade:?}");
                continue;
            }
            self.received.record(&trade);
            if let Err(e) = self.add(trade) {
                self.lake.report_error(format!("spilling trades to the staging directory: {e}"));
            }
        }
        if step.watermark <= self.written_up_to {
            return;
        }
        self.written_up_to = step.watermark;
        while let Some(entry) = self.hours.first_entry() {
            if *entry.key() + HOUR > step.watermark && !step.done {
                break;
            }
            let (hour, buffer) = entry.remove_entry();
            if let Err(e) = self.write_hour(hour, buffer) {
                self.lake.report_error(format!("writing the trades of {}: {e}", hour_label(hour)));
            }
        }
    }

    fn save(&mut self, valid: Validity) -> Part {
        // Trades still needed: those of hours not yet written.
        let needed_from = self.hours.keys().next().copied().unwrap_or(self.written_up_to).min(self.written_up_to);
        let (payload, needs) = self.received.part(valid.first, needed_from);
        let open: Vec<(i64, usize)> = self.hours.iter().map(|(hour, b)| (*hour, b.count)).collect();
        Part { state: to_json(&(self.written_up_to, open)), payload, needs }
    }

    fn restore(&mut self, restored: Restored) -> Result<(), String> {
        let (written_up_to, open): (i64, Vec<(i64, usize)>) =
            from_json("the lake's trades writer (by hour)", &restored.state)?;
        self.written_up_to = written_up_to;
        let open: BTreeMap<i64, usize> = open.into_iter().collect();
        for trade in self.received.restore(&restored.payloads)? {
            // Hours already written are not taken back.
            if trade.ts.div_euclid(HOUR) * HOUR + HOUR > written_up_to {
                self.add(trade)?;
            }
        }
        for (hour, count) in &open {
            let held = self.hours.get(hour).map_or(0, |b| b.count);
            if held != *count {
                return Err(format!(
                    "the checkpoint holds {held} of the {count} trades of the hour {} (lake trades by hour)",
                    hour_label(*hour)
                ));
            }
        }
        Ok(())
    }
}

/// The files of one hour, written in order.
struct HourFile<'a> {
    lake: &'a Lake,
    hour: i64,
    index: u32,
    rows: usize,
    /// The encoder's id of the file being written.
    open: Option<u64>,
    staged: Vec<Trade>,
}

impl HourFile<'_> {
    fn push(&mut self, trade: Trade) {
        if self.open.is_none() {
            let id = self.lake.next_file_id();
            self.lake.encode(EncodeJob::Open { id, spool: self.lake.spool_path(), with_symbol: true });
            self.open = Some(id);
        }
        self.staged.push(trade);
        self.rows += 1;
        if self.staged.len() == WRITE_ROWS {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if let Some(id) = self.open
            && !self.staged.is_empty()
        {
            let rows = std::mem::replace(&mut self.staged, Vec::with_capacity(WRITE_ROWS));
            self.lake.encode(EncodeJob::Rows { id, spilled: None, rows });
        }
    }

    /// Closes the file being written, if any; the next row starts the next file.
    fn close(&mut self) {
        self.flush();
        let Some(id) = self.open.take() else { return };
        let key = format!(
            "trades/date={}/hour={:02}/{}-{:04}.parquet",
            date_of(self.hour),
            self.hour.rem_euclid(86_400_000) / HOUR,
            hour_label(self.hour),
            self.index
        );
        self.lake.encode(EncodeJob::Close { id, key });
        self.index += 1;
        self.rows = 0;
    }
}

/// Sorts `rows` and writes them to `path` as blocks of [`write_trade`] records, each
/// preceded by its length; empties `rows`.
fn spill(rows: &mut Vec<Trade>, path: &std::path::Path) -> Result<(), String> {
    rows.sort_unstable_by(order);
    let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = BufWriter::new(file);
    let mut block = Vec::new();
    for chunk in rows.chunks(BLOCK_ROWS) {
        block.clear();
        for trade in chunk {
            write_trade(&mut block, trade);
        }
        out.write_all(&(block.len() as u64).to_le_bytes())
            .and_then(|()| out.write_all(&block))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    out.flush().map_err(|e| format!("{}: {e}", path.display()))?;
    rows.clear();
    rows.shrink_to_fit();
    Ok(())
}

/// A sorted sequence of trades: a spilled run read a block at a time, or the rows still
/// in memory.
struct RunReader {
    file: Option<BufReader<std::fs::File>>,
    /// The current block, reversed (the next trade last).
    block: Vec<Trade>,
}

impl RunReader {
    fn open(path: &std::path::Path) -> Result<RunReader, String> {
        let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(RunReader { file: Some(BufReader::new(file)), block: Vec::new() })
    }

    fn memory(mut rows: Vec<Trade>) -> RunReader {
        rows.reverse();
        RunReader { file: None, block: rows }
    }

    /// The next trade, if any.
    fn next(&mut self) -> Result<Option<Trade>, String> {
        if self.block.is_empty()
            && let Some(file) = self.file.as_mut()
        {
            let mut len = [0u8; 8];
            match file.read_exact(&mut len) {
                Ok(()) => {
                    let mut bytes = vec![0u8; u64::from_le_bytes(len) as usize];
                    file.read_exact(&mut bytes).map_err(|e| format!("reading a spilled run: {e}"))?;
                    self.block = read_trades(&bytes)?;
                    self.block.reverse();
                }
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => self.file = None,
                Err(e) => return Err(format!("reading a spilled run: {e}")),
            }
        }
        Ok(self.block.pop())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tradeflow_model::{Conditions, Price, Qty, Symbol};

    fn trade(symbol: &str, ts: i64, price: i64) -> Trade {
        Trade {
            symbol: Symbol::parse(symbol).expect("a symbol"),
            ts,
            price: Price(price),
            volume: Qty(1),
            conditions: Conditions::none(),
        }
    }

    #[test]
    fn spilled_runs_and_memory_merge_into_one_sorted_hour() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut all = Vec::new();
        let mut runs = Vec::new();
        let mut next = 7u64;
        let mut random = || {
            next = next.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            next >> 33
        };
        // Three runs of different sizes (one spans several blocks) and rows in memory.
        for (r, size) in [20_000usize, 3, 9_000].into_iter().enumerate() {
            let mut rows: Vec<Trade> = (0..size)
                .map(|_| {
                    trade(
                        ["AAPL", "MSFT", "BINANCE:BTCUSDT"][random() as usize % 3],
                        random() as i64 % 1000,
                        random() as i64 % 5,
                    )
                })
                .collect();
            all.extend(rows.iter().cloned());
            let path = dir.path().join(format!("{r}.run"));
            spill(&mut rows, &path).expect("spilled");
            assert!(rows.is_empty());
            runs.push(path);
        }
        let memory: Vec<Trade> = (0..500).map(|i| trade("IBM", 999 - i, i % 3)).collect();
        all.extend(memory.iter().cloned());
        let mut merged = Vec::new();
        let count = merge(&runs, memory, |t| merged.push(t)).expect("merged");
        all.sort_unstable_by(order);
        assert_eq!(count, all.len());
        assert_eq!(merged, all);
    }
}
