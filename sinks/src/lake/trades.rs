//! `trades/date=D/symbol=S/*.parquet`: every accepted trade exactly once.
//!
//! Background: trades are routed to the worker that owns their symbol and held until the
//! watermark passes them; complete trades are appended, sorted by (ts, price, volume,
//! conditions), to the symbol's open file. A file holds the trades of one symbol in one
//! UTC hour, at most `max_rows` of them (a busy hour is split), and is closed when the
//! watermark passes the hour's end or it is full.
//!
//! Checkpoints: the trades received since the previous checkpoint are saved, in a
//! compact binary form, as that checkpoint's payload, and each part names the earlier
//! parts that may hold trades still needed: not yet complete, or in a file still open
//! (every part whose newest trade is at or after the start of the oldest open hour). A
//! resumed run takes back as incomplete the trades at or after the watermark it had
//! written up to, and rebuilds each open file from the trades of its symbol and hour
//! below it, sorted, past the rows of the hour's earlier files: the same rows in the same
//! order, so the file it finally writes is byte for byte the one an uninterrupted run
//! writes.
//!
//! Determinism: a file's name (`20231114T22-0000.parquet`: hour, then index within the
//! hour) and its content depend only on the set of accepted trades, not on workers,
//! batches or timing, so a replay rewrites the very same objects.
//!
//! Memory and open files follow what is buffered, not the number of symbols. The encoder
//! gets a file's rows [`WRITE_ROWS`] at a time (the rest at close), so that its pages and
//! bytes do not depend on how the rows arrived, and only then starts the file (a spool
//! file and a Parquet writer): a symbol with fewer trades in its hour is written in one
//! go when the hour closes. A Parquet writer's unfinished row group costs hundreds of KiB
//! (a thousand open files held gigabytes), so only [`STREAMING_FILES`] files per writer
//! may have one: they hand their rows over as each [`WRITE_ROWS`] fill, and the encoding
//! runs beside the dataflow. The other files stage a whole row group ([`ROW_GROUP_ROWS`])
//! before handing it over, and the staged rows of all files together are bounded
//! ([`TradesFiles::buffer_rows`], `--lake-buffer-rows`): past it, the files with the most
//! staged rows (and within a step, a file whose rows take it past) spill them,
//! compactly, to a file each in the lake's spool directory, which
//! the encoder reads back with the rest of the row group. Memory is bounded however many
//! symbols there are and however long their files stay open.

use super::encoder::{EncodeJob, WRITE_ROWS};
use super::parquet::ROW_GROUP_ROWS;
use super::paths::{hour_label, partition};
use super::store::Lake;
use super::watermarked::{SinkLogic, Step, watermarked_sink};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Exchange;
use tradeflow_model::checkpoint::{
    Part, PartPayload, Restored, Saver, Validity, from_json, read_trades, to_json, write_trade,
};
use tradeflow_model::{Symbol, Time, Trade, WatermarkReport, date_of};

const HOUR: i64 = 3_600_000;

struct OpenFile {
    id: u64,
    /// Whether the encoder has started the file: only once it has a full batch of rows
    /// (or at its close), so that a symbol with a few trades in an hour holds no open
    /// file, no Parquet writer and no spool until it is written in one go.
    started: bool,
    hour: i64,
    index: u32,
    rows: usize,
    /// Whether the encoder holds part of this file's current row group (one of the
    /// writer's [`STREAMING_FILES`]).
    streaming: bool,
    /// Rows not yet handed to the encoder, oldest first: those spilled to a file (its path
    /// and their number), then `staged` in memory. The encoder gets them in multiples of
    /// [`WRITE_ROWS`] (the rest at close).
    spilled: Option<(PathBuf, usize)>,
    staged: Vec<Trade>,
}

impl OpenFile {
    fn unencoded(&self) -> usize {
        self.spilled.as_ref().map_or(0, |(_, rows)| *rows) + self.staged.len()
    }
}

/// How a writer sizes its files and its memory.
#[derive(Clone, Copy, Debug)]
pub struct TradesFiles {
    /// Rows per file at most (a busy hour is split).
    pub max_rows: usize,
    /// Rows staged in memory at most (about 72 bytes each) before the files holding the
    /// most spill theirs (`--lake-buffer-rows`).
    pub buffer_rows: usize,
}

impl TradesFiles {
    /// The most files whose row group the encoder may hold unfinished: one per 32,768
    /// rows of the buffer, at most [`STREAMING_FILES`].
    fn streaming(&self) -> usize {
        (self.buffer_rows / 32_768).clamp(1, STREAMING_FILES)
    }
}

/// The most files of one writer whose row group the encoder holds unfinished, by default.
const STREAMING_FILES: usize = 32;

/// What a writer's open files hold back, and how much they may.
struct Staging {
    /// Rows staged in memory.
    rows: usize,
    /// Files streaming (see [`OpenFile::streaming`]).
    streaming: usize,
    /// At most this many rows staged ([`TradesFiles::buffer_rows`]) ...
    buffer_rows: usize,
    /// ... and this many files streaming ([`TradesFiles::streaming`]).
    max_streaming: usize,
}

#[derive(Default)]
struct SymbolFiles {
    /// Trades not yet complete, by second of event time, so that moving the complete
    /// ones out costs what is moved, not what stays.
    tail: BTreeMap<i64, Vec<Trade>>,
    /// Trades complete as they arrived (below the watermark their epoch reached), and the
    /// complete ones moved out of `tail`, while an epoch is written; empty between epochs.
    /// Most trades of a fast replay go straight here, not through `tail`.
    ready: Vec<Trade>,
    open: Option<OpenFile>,
    /// The hour and index of the last file closed, so a full hour continues its numbering.
    last: Option<(i64, u32)>,
}

/// The writer of one worker's trades.
struct TradesWriter {
    lake: Arc<Lake>,
    /// Rows per file at most.
    max_rows: usize,
    symbols: FxHashMap<Symbol, SymbolFiles>,
    written_up_to: i64,
    /// What the open files hold back.
    staging: Staging,
    /// A spill's bytes, reused.
    spill_buffer: Vec<u8>,
    /// Sorting's room (see [`sort_trades`]), reused.
    sort_room: SortRoom,
    /// What the checkpoint parts keep.
    received: Received,
}

/// What a checkpoint keeps of one symbol.
#[derive(Serialize, Deserialize)]
struct SavedSymbol {
    symbol: Symbol,
    /// (hour, index, rows) of the open file.
    open: Option<(i64, u32, usize)>,
    last: Option<(i64, u32)>,
}

/// Writes the accepted trades to the lake (see the module documentation).
pub fn write_trades<'scope>(
    trades: StreamVec<'scope, Time, Trade>,
    watermarks: StreamVec<'scope, Time, WatermarkReport>,
    reporters: usize,
    lake: Arc<Lake>,
    files: TradesFiles,
    saver: Option<Saver>,
) -> Result<(), String> {
    let writer = TradesWriter {
        received: Received::new(&lake, saver.is_some()),
        lake,
        max_rows: files.max_rows,
        symbols: FxHashMap::default(),
        written_up_to: i64::MIN,
        staging: Staging { rows: 0, streaming: 0, buffer_rows: files.buffer_rows, max_streaming: files.streaming() },
        spill_buffer: Vec::new(),
        sort_room: SortRoom::default(),
    };
    let pact = Exchange::new(|t: &Trade| t.symbol.route());
    watermarked_sink("LakeTrades", trades, pact, watermarks, reporters, saver, writer)
}

impl SinkLogic<Trade> for TradesWriter {
    fn step(&mut self, step: Step<'_, Trade>) {
        // What this epoch makes complete: trades below it are written in this step.
        let complete_below = if step.watermark > self.written_up_to { step.watermark } else { i64::MIN };
        for trade in step.data.drain(..).flatten() {
            if trade.ts < self.written_up_to {
                // Sources never emit below a watermark they reported; this would be a bug.
                tracing::error!("a trade below the watermark reached the lake writer and is not written: {trade:?}");
                continue;
            }
            self.received.record(&trade);
            let files = match self.symbols.get_mut(&trade.symbol) {
                Some(files) => files,
                None => self.symbols.entry(trade.symbol.clone()).or_default(),
            };
            if trade.ts < complete_below {
                files.ready.push(trade);
            } else {
                files.tail.entry(trade.ts.div_euclid(1000)).or_default().push(trade);
            }
        }
        if step.watermark <= self.written_up_to {
            return;
        }
        self.written_up_to = step.watermark;
        let (lake, max_rows, staging, spill_buffer, sort_room) =
            (&self.lake, self.max_rows, &mut self.staging, &mut self.spill_buffer, &mut self.sort_room);
        self.symbols.retain(|symbol, files| {
            let mut complete = std::mem::take(&mut files.ready);
            // Whole seconds below the watermark's second are complete; its own second in part.
            let boundary = step.watermark.div_euclid(1000);
            if files.tail.first_key_value().is_some_and(|(second, _)| *second <= boundary) {
                let later = files.tail.split_off(&boundary);
                for (_, mut trades) in std::mem::replace(&mut files.tail, later) {
                    complete.append(&mut trades);
                }
                if let Some(partial) = files.tail.get_mut(&boundary) {
                    let (done, rest): (Vec<Trade>, Vec<Trade>) = partial.drain(..).partition(|t| t.ts < step.watermark);
                    complete.extend(done);
                    *partial = rest;
                }
            }
            sort_trades(&mut complete, sort_room);
            for trade in sort_room.sorted.drain(..) {
                let hour = trade.ts.div_euclid(HOUR) * HOUR;
                if files.open.as_ref().is_some_and(|f| f.hour != hour || f.rows >= max_rows) {
                    close(lake, symbol, files, staging);
                }
                let open = files.open.get_or_insert_with(|| open_file(lake, hour, files.last));
                push_row(lake, open, trade, staging);
            }
            files.ready = complete;
            // The buffer bounds what is staged within a step too (a long epoch of a replay
            // can bring a symbol's whole hour): a file that takes it over spills at once.
            if staging.rows > staging.buffer_rows
                && let Some(open) = files.open.as_mut().filter(|o| !o.streaming && !o.staged.is_empty())
            {
                match spill(lake, open, staging, spill_buffer) {
                    Ok(()) => tracing::debug!(
                        "lake trades: {symbol} took the staged rows over --lake-buffer-rows {}; spilled staged rows to the spool",
                        staging.buffer_rows
                    ),
                    Err(e) => lake.report_error(e),
                }
            }
            if files.open.as_ref().is_some_and(|f| f.hour + HOUR <= step.watermark || step.done) {
                close(lake, symbol, files, staging);
            }
            files.tail.retain(|_, trades| !trades.is_empty());
            files.open.is_some() || !files.tail.is_empty()
        });
        self.relieve();
    }

    fn save(&mut self, valid: Validity) -> Part {
        // Trades still needed are at or after the oldest open hour, or not yet written.
        let oldest = self.symbols.values().filter_map(|f| f.open.as_ref().map(|o| o.hour)).min();
        let needed_from = oldest.unwrap_or(self.written_up_to).min(self.written_up_to);
        let (payload, needs) = self.received.part(valid.first, needed_from);
        let mut saved: Vec<SavedSymbol> = self
            .symbols
            .iter()
            .map(|(symbol, files)| SavedSymbol {
                symbol: symbol.clone(),
                open: files.open.as_ref().map(|o| (o.hour, o.index, o.rows)),
                last: files.last,
            })
            .collect();
        saved.sort_by(|a, b| a.symbol.cmp(&b.symbol));
        Part { state: to_json(&(self.written_up_to, saved)), payload, needs }
    }

    fn restore(&mut self, restored: Restored) -> Result<(), String> {
        let (written_up_to, saved): (i64, Vec<SavedSymbol>) = from_json("the lake's trades writer", &restored.state)?;
        self.written_up_to = written_up_to;
        let mut by_symbol: FxHashMap<Symbol, Vec<Trade>> = FxHashMap::default();
        for trade in self.received.restore(&restored.payloads)? {
            by_symbol.entry(trade.symbol.clone()).or_default().push(trade);
        }
        for saved in saved {
            let mut files = SymbolFiles { last: saved.last, ..SymbolFiles::default() };
            let mut trades = by_symbol.remove(&saved.symbol).unwrap_or_default();
            let (written, tail): (Vec<Trade>, Vec<Trade>) = trades.drain(..).partition(|t| t.ts < written_up_to);
            for trade in tail {
                files.tail.entry(trade.ts.div_euclid(1000)).or_default().push(trade);
            }
            if let Some((hour, index, count)) = saved.open {
                let mut hours: Vec<Trade> =
                    written.into_iter().filter(|t| t.ts.div_euclid(HOUR) * HOUR == hour).collect();
                let mut room = SortRoom::default();
                sort_trades(&mut hours, &mut room);
                let mut rows = room.sorted;
                let earlier = (index as usize).saturating_mul(self.max_rows);
                if rows.len() != earlier + count {
                    return Err(format!(
                        "the checkpoint holds {} of the {} trades of {} in the hour {} (lake trades files open at the checkpoint)",
                        rows.len(),
                        earlier + count,
                        saved.symbol.as_str(),
                        hour_label(hour)
                    ));
                }
                let mut open = open_file(&self.lake, hour, files.last);
                open.index = index;
                for trade in rows.drain(earlier..) {
                    push_row(&self.lake, &mut open, trade, &mut self.staging);
                }
                files.open = Some(open);
                self.relieve();
            }
            if files.open.is_some() || !files.tail.is_empty() {
                self.symbols.insert(saved.symbol, files);
            }
        }
        tracing::debug!(
            "lake trades: restored {} symbols, {} trades not yet complete, {} files open",
            self.symbols.len(),
            self.symbols.values().flat_map(|f| f.tail.values()).map(Vec::len).sum::<usize>(),
            self.symbols.values().filter(|f| f.open.is_some()).count()
        );
        // Symbols with nothing open but trades not yet complete.
        for (symbol, trades) in by_symbol {
            let mut files = SymbolFiles::default();
            for trade in trades.into_iter().filter(|t| t.ts >= written_up_to) {
                files.tail.entry(trade.ts.div_euclid(1000)).or_default().push(trade);
            }
            if !files.tail.is_empty() {
                self.symbols.insert(symbol, files);
            }
        }
        Ok(())
    }
}

impl TradesWriter {
    /// Spills staged rows while more than allowed are staged, down to half of it:
    /// each round the files staging at least their average share. A spill that cannot be
    /// written fails the lake (and so stops the run).
    fn relieve(&mut self) {
        if self.staging.rows <= self.staging.buffer_rows {
            return;
        }
        while self.staging.rows > self.staging.buffer_rows / 2 {
            let staging = self.symbols.values().filter(|f| f.open.as_ref().is_some_and(|o| !o.staged.is_empty()));
            let share = self.staging.rows / staging.count().max(1);
            let before = self.staging.rows;
            for open in self.symbols.values_mut().filter_map(|f| f.open.as_mut()) {
                if !open.staged.is_empty()
                    && open.staged.len() >= share
                    && let Err(e) = spill(&self.lake, open, &mut self.staging, &mut self.spill_buffer)
                {
                    self.lake.report_error(e);
                    return;
                }
            }
            if self.staging.rows == before {
                debug_assert!(false, "{before} rows counted as staged, none found");
                return;
            }
        }
        tracing::debug!(
            "lake trades: over --lake-buffer-rows {}; spilled staged rows to the spool, {} still staged",
            self.staging.buffer_rows,
            self.staging.rows
        );
    }
}

/// Appends `open`'s staged rows to its spill file and frees them.
fn spill(lake: &Lake, open: &mut OpenFile, staging: &mut Staging, buffer: &mut Vec<u8>) -> Result<(), String> {
    use std::io::Write;
    buffer.clear();
    for trade in &open.staged {
        write_trade(buffer, trade);
    }
    let (path, rows) = open.spilled.get_or_insert_with(|| (lake.spool_path(), 0));
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&*path)
        .and_then(|mut file| file.write_all(buffer))
        .map_err(|e| format!("spilling staged trades to {}: {e}", path.display()))?;
    *rows += open.staged.len();
    staging.rows -= open.staged.len();
    open.staged = Vec::new();
    Ok(())
}

/// What a checkpointed trades writer keeps for its parts: the trades received since the
/// last part, compactly (that part's payload), and which earlier parts' payloads may still
/// hold trades a resume needs. Off (recording nothing) when the run is not checkpointed.
///
/// The payload is written as the trades arrive to a file in the lake's spool directory,
/// which the part hands over (the lake uploads it and removes it): held in memory, a
/// long interval's trades grew a buffer of hundreds of MiB, and zeroing and copying its
/// pages cost a fast replay a fifth of its speed.
pub(super) struct Received {
    /// The lake, whose spool directory holds the payload being written; `None`: off.
    lake: Option<Arc<Lake>>,
    /// The payload being written, once a trade arrived since the last part.
    spool: Option<(std::path::PathBuf, std::io::BufWriter<std::fs::File>)>,
    /// One trade's bytes, reused.
    record: Vec<u8>,
    newest: i64,
    /// (first boundary, newest event time) of the parts with payloads.
    payloads: Vec<(u64, i64)>,
}

/// The spool's write buffer.
const SPOOL_BUFFER: usize = 256 * 1024;

impl Received {
    /// Records into `lake`'s spool when the run is checkpointed (`on`).
    pub(super) fn new(lake: &Arc<Lake>, on: bool) -> Received {
        let lake = on.then(|| lake.clone());
        Received { lake, spool: None, record: Vec::new(), newest: i64::MIN, payloads: Vec::new() }
    }

    /// Records a trade the writer received. A spool that cannot be written fails the
    /// lake (and so stops the run) rather than leaving a checkpoint without its trades.
    pub(super) fn record(&mut self, trade: &Trade) {
        use std::io::Write;
        let Some(lake) = &self.lake else { return };
        self.record.clear();
        write_trade(&mut self.record, trade);
        self.newest = self.newest.max(trade.ts);
        if self.spool.is_none() {
            let path = lake.spool_path();
            match std::fs::File::create(&path) {
                Ok(file) => self.spool = Some((path, std::io::BufWriter::with_capacity(SPOOL_BUFFER, file))),
                Err(e) => return self.fail(&path, e),
            }
        }
        let (path, spool) = self.spool.as_mut().expect("opened above");
        if let Err(e) = spool.write_all(&self.record) {
            let path = path.clone();
            self.fail(&path, e);
        }
    }

    /// Reports the spool `path` that cannot be written, once: the lake fails (which stops
    /// the run and every later checkpoint), the file goes, and this writer records nothing
    /// more.
    fn fail(&mut self, path: &std::path::Path, error: impl std::fmt::Display) {
        self.spool = None;
        let _ = std::fs::remove_file(path);
        if let Some(lake) = self.lake.take() {
            lake.report_error(format!("spooling checkpoint trades to {}: {error}", path.display()));
        }
    }

    /// The payload and the needs of the part valid from `first`, when no trade before
    /// `needed_from` can be needed any more: a payload of trades all written already (the
    /// end of a bounded run) is not kept.
    pub(super) fn part(&mut self, first: u64, needed_from: i64) -> (Option<PartPayload>, Vec<u64>) {
        let newest = std::mem::replace(&mut self.newest, i64::MIN);
        let payload = match self.spool.take() {
            // Flushed for the lake's uploader to read (a temporary file: not synced).
            Some((path, spool)) => match spool.into_inner() {
                Err(e) => {
                    self.fail(&path, e.error());
                    None
                }
                Ok(_) if newest >= needed_from => Some(PartPayload::File(path)),
                Ok(_) => {
                    let _ = std::fs::remove_file(&path);
                    None
                }
            },
            None => None,
        };
        if payload.is_some() {
            self.payloads.push((first, newest));
        }
        self.payloads.retain(|(_, newest)| *newest >= needed_from);
        (payload, self.payloads.iter().map(|(first, _)| *first).collect())
    }

    /// The trades of a resumed checkpoint's payloads, in order; their parts are kept as
    /// needed as before.
    pub(super) fn restore(&mut self, payloads: &[(u64, Vec<u8>)]) -> Result<Vec<Trade>, String> {
        let mut all = Vec::new();
        for (first, payload) in payloads {
            let trades = read_trades(payload)?;
            self.payloads.push((*first, trades.iter().map(|t| t.ts).max().unwrap_or(i64::MIN)));
            if all.is_empty() {
                all = trades;
            } else {
                all.extend(trades);
            }
        }
        Ok(all)
    }
}

impl Drop for Received {
    fn drop(&mut self) {
        if let Some((path, _)) = self.spool.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Adds a row to an open file, handing the encoder its rows when the file streams (or
/// may start to) and [`WRITE_ROWS`] of them are there, or when a whole row group is.
fn push_row(lake: &Lake, open: &mut OpenFile, trade: Trade, staging: &mut Staging) {
    open.staged.push(trade);
    open.rows += 1;
    staging.rows += 1;
    let unencoded = open.unencoded();
    if !unencoded.is_multiple_of(WRITE_ROWS) {
        return;
    }
    if !open.streaming && unencoded < ROW_GROUP_ROWS && staging.streaming < staging.max_streaming {
        open.streaming = true;
        staging.streaming += 1;
    }
    if open.streaming || unencoded >= ROW_GROUP_ROWS {
        start(lake, open);
        hand_over(lake, open, staging);
        if open.streaming {
            if open.rows.is_multiple_of(ROW_GROUP_ROWS) {
                // The encoder finished the row group: another file may stream.
                open.streaming = false;
                staging.streaming -= 1;
            } else {
                open.staged.reserve(WRITE_ROWS);
            }
        }
    }
}

/// Hands the encoder `open`'s rows not yet encoded.
fn hand_over(lake: &Lake, open: &mut OpenFile, staging: &mut Staging) {
    let spilled = open.spilled.take().map(|(path, _)| path);
    let rows = std::mem::take(&mut open.staged);
    staging.rows -= rows.len();
    if spilled.is_some() || !rows.is_empty() {
        lake.encode(EncodeJob::Rows { id: open.id, spilled, rows });
    }
}

/// Has the encoder start `open`'s file, if it has not yet.
fn start(lake: &Lake, open: &mut OpenFile) {
    if !open.started {
        open.started = true;
        lake.encode(EncodeJob::Open { id: open.id, spool: lake.spool_path(), with_symbol: false });
    }
}

/// Where [`sort_trades`] sorts: its keys, and the trades in order. Kept by a writer for
/// the capacity, so that sorting an epoch's trades allocates nothing.
#[derive(Default)]
struct SortRoom {
    keys: Vec<u64>,
    sorted: Vec<Trade>,
}

/// Moves `trades` (left empty, with its capacity) into `room.sorted` (which must be
/// empty), sorted by (ts, price, volume, conditions). Equal keys are identical rows, so
/// the order is fully determined: a resumed run rebuilding a file sorts its rows the same
/// way.
///
/// The trades arrive nearly in time order, and moving 72-byte trades around was most of
/// a sort's cost: so when the times of `trades` span less than 2^40 ms and they number
/// less than 2^24, it sorts 8-byte keys instead (time since the earliest, then position),
/// orders each run of equal times by the rest, and then moves every trade once.
fn sort_trades(trades: &mut Vec<Trade>, room: &mut SortRoom) {
    const POSITION_BITS: u32 = 24;
    debug_assert!(room.sorted.is_empty(), "the sorted trades of the last sort were not taken");
    let by_rest = |a: &Trade, b: &Trade| (a.price, a.volume, &a.conditions).cmp(&(b.price, b.volume, &b.conditions));
    let Some(earliest) = trades.iter().map(|t| t.ts).min() else { return };
    let latest = trades.iter().map(|t| t.ts).max().unwrap_or(earliest);
    if trades.len() >= 1 << POSITION_BITS || latest.abs_diff(earliest) >= 1 << (64 - POSITION_BITS) {
        trades.sort_unstable_by(|a, b| a.ts.cmp(&b.ts).then_with(|| by_rest(a, b)));
        room.sorted.append(trades);
        return;
    }
    let keys = &mut room.keys;
    keys.clear();
    keys.extend(trades.iter().enumerate().map(|(i, t)| (t.ts.abs_diff(earliest) << POSITION_BITS) | i as u64));
    keys.sort_unstable();
    let position = |key: u64| (key & ((1 << POSITION_BITS) - 1)) as usize;
    let mut start = 0;
    while start < keys.len() {
        let time = keys[start] >> POSITION_BITS;
        let end = start + keys[start..].iter().take_while(|k| *k >> POSITION_BITS == time).count();
        if end - start > 1 {
            keys[start..end].sort_unstable_by(|a, b| by_rest(&trades[position(*a)], &trades[position(*b)]));
        }
        start = end;
    }
    room.sorted.extend(keys.iter().map(|k| trades[position(*k)].clone()));
    trades.clear();
}

fn open_file(lake: &Lake, hour: i64, last: Option<(i64, u32)>) -> OpenFile {
    let index = match last {
        Some((h, i)) if h == hour => i + 1,
        _ => 0,
    };
    // Rows are staged as they come: memory follows what is buffered, not the number of
    // symbols (most of a large universe's symbols have a few trades an hour).
    OpenFile {
        id: lake.next_file_id(),
        started: false,
        hour,
        index,
        rows: 0,
        streaming: false,
        spilled: None,
        staged: Vec::new(),
    }
}

fn close(lake: &Lake, symbol: &Symbol, files: &mut SymbolFiles, staging: &mut Staging) {
    let Some(mut open) = files.open.take() else { return };
    start(lake, &mut open);
    files.last = Some((open.hour, open.index));
    staging.streaming -= usize::from(open.streaming);
    hand_over(lake, &mut open, staging);
    let key = format!(
        "trades/date={}/{}/{}-{:04}.parquet",
        date_of(open.hour),
        partition("symbol", symbol.as_str()),
        hour_label(open.hour),
        open.index
    );
    lake.encode(EncodeJob::Close { id: open.id, key });
}

#[cfg(test)]
mod tests {
    use super::{SortRoom, sort_trades};
    use tradeflow_model::{Conditions, Price, Qty, Symbol, Trade};

    /// Trades with many equal times, prices and volumes, in a scrambled order.
    fn scrambled(count: u64, spread_ms: i64) -> Vec<Trade> {
        let symbol = Symbol::parse("AAPL").expect("valid");
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |modulo: u64| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) % modulo
        };
        (0..count)
            .map(|_| {
                let conditions = match next(3) {
                    0 => Conditions::none(),
                    1 => Conditions::from_list(&["T"]),
                    _ => Conditions::from_list(&["I", "T"]),
                };
                let ts = 1_700_000_000_000 + (next(1000) as i64 * spread_ms / 1000);
                let mut trade =
                    Trade::new(symbol.clone(), ts, Price(100 + next(4) as i64), Qty(next(3) as i64 * 100_000_000));
                trade.conditions = conditions;
                trade
            })
            .collect()
    }

    fn reference(trades: &[Trade]) -> Vec<Trade> {
        let mut sorted = trades.to_vec();
        sorted.sort_by(|a, b| (a.ts, a.price, a.volume, &a.conditions).cmp(&(b.ts, b.price, b.volume, &b.conditions)));
        sorted
    }

    #[test]
    fn trades_sort_by_time_then_price_volume_and_conditions_whichever_way_they_are_sorted() {
        // Times within a few seconds (sorted by keys), and spread over more than 2^40 ms
        // (sorted directly): the same total order.
        for spread_ms in [2_000, 1 << 41] {
            let trades = scrambled(5_000, spread_ms);
            let mut room = SortRoom::default();
            // Twice with the same room: what the first sort leaves does not change the second.
            for _ in 0..2 {
                let mut unsorted = trades.clone();
                sort_trades(&mut unsorted, &mut room);
                assert!(unsorted.is_empty(), "the trades are moved out");
                assert_eq!(room.sorted.drain(..).collect::<Vec<_>>(), reference(&trades), "spread {spread_ms} ms");
            }
        }
        let mut room = SortRoom::default();
        sort_trades(&mut Vec::new(), &mut room);
        assert!(room.sorted.is_empty());
    }
}
