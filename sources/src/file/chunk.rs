//! Reading and parsing one chunk of a file.
//!
//! Lateness cannot be decided here: it depends on every earlier chunk of the file. A
//! parsed chunk keeps its valid trades in file order with their raw text (a trade found
//! late later is dead-lettered with its exact payload), its rejects, and the greatest ts
//! of its valid trades, which the other chunks of the file need.

use super::plan::{ChunkRef, FilePlan};
use crate::batch::wall_ms;
use crate::format::{Item, parse_line};
use std::io::{Read, Seek, SeekFrom};
use tradeflow_model::{Payload, Reject, RejectReason, Symbol, Trade};

/// Where a valid trade came from (kept beside the trades, for the rare late one).
#[derive(Copy, Clone, Debug)]
pub struct Origin {
    /// Byte offset of its line in the file.
    pub position: u64,
    /// Element index inside a Finnhub message.
    pub element: u32,
    /// Its raw record (the line, or the element of a message), as a range of the chunk's bytes.
    pub line: (u32, u32),
}

/// A parsed chunk, waiting for the lateness decision.
#[derive(Debug)]
pub struct ParsedChunk {
    /// Which chunk.
    pub chunk: ChunkRef,
    /// The bytes read (for payloads of late trades).
    pub bytes: Vec<u8>,
    /// Valid trades in file order.
    pub trades: Vec<Trade>,
    /// Where each of `trades` came from.
    pub origins: Vec<Origin>,
    /// Rejected records (everything but `late`).
    pub rejects: Vec<Reject>,
    /// Greatest ts of the valid trades.
    pub max_ts: Option<i64>,
}

thread_local! {
    /// The bytes and origins vectors of the last chunk decided on this thread.
    static SPARE: std::cell::RefCell<(Vec<u8>, Vec<Origin>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Gives back a decided chunk's bytes and origins, for the next chunk read on this thread
/// (fresh vectors of megabytes each cost their pages being zeroed again).
pub fn recycle(mut bytes: Vec<u8>, mut origins: Vec<Origin>) {
    bytes.clear();
    origins.clear();
    SPARE.with_borrow_mut(|spare| *spare = (bytes, origins));
}

/// Reads and parses chunk `chunk` of `plan`.
pub fn parse_chunk(plan: &FilePlan, chunk: ChunkRef) -> std::io::Result<ParsedChunk> {
    let info = &plan.files[chunk.file];
    let mut file = std::fs::File::open(&info.path)?;
    // Start one byte early to see whether `start` begins a line.
    let from = chunk.start.saturating_sub(1);
    file.seek(SeekFrom::Start(from))?;
    let (mut bytes, mut origins) = SPARE.with_borrow_mut(std::mem::take);
    bytes.reserve((chunk.end - from) as usize + 256);
    (&mut file).take(chunk.end - from).read_to_end(&mut bytes)?;
    // Finish the last line, which may run past the chunk's end.
    if chunk.end < info.size && bytes.last() != Some(&b'\n') {
        let mut rest = [0u8; 4096];
        loop {
            let n = file.read(&mut rest)?;
            if n == 0 {
                break;
            }
            match memchr::memchr(b'\n', &rest[..n]) {
                Some(i) => {
                    bytes.extend_from_slice(&rest[..=i]);
                    break;
                }
                None => bytes.extend_from_slice(&rest[..n]),
            }
        }
    }

    let mut pos = if chunk.start == 0 {
        0
    } else {
        match memchr::memchr(b'\n', &bytes) {
            Some(i) => i + 1,
            None => bytes.len(),
        }
    };
    let received_at = wall_ms();
    let mut trades = crate::batch::spare_trades();
    trades.reserve(bytes.len() / 72);
    origins.reserve(bytes.len() / 72);
    let mut rejects = Vec::new();
    let mut max_ts: Option<i64> = None;
    while pos < bytes.len() && from + (pos as u64) < chunk.end {
        let line_end = memchr::memchr(b'\n', &bytes[pos..]).map_or(bytes.len(), |i| pos + i);
        let line = &bytes[pos..line_end];
        let position = from + pos as u64;
        parse_line(line, &mut |item| match item {
            Item::Trade(t) => {
                let symbol = match Symbol::parse(&t.symbol) {
                    Ok(symbol) => symbol,
                    Err(e) => {
                        // Unreachable: the parser applies the same check.
                        rejects.push(Reject {
                            reason: RejectReason::BadSymbol,
                            detail: format!("field \"s\": {e}"),
                            payload: Payload::from_bytes(line),
                            source: info.label.clone(),
                            position,
                            element: t.element,
                            segment: chunk.start,
                            received_at,
                        });
                        return;
                    }
                };
                max_ts = Some(max_ts.map_or(t.ts, |m| m.max(t.ts)));
                let trade = t.trade_with(symbol);
                // The record's own text (the element of a message), as a range of `bytes`.
                let start = t.raw.as_ptr() as usize - bytes.as_ptr() as usize;
                trades.push(trade);
                origins.push(Origin { position, element: t.element, line: (start as u32, t.raw.len() as u32) });
            }
            Item::Reject(r) => rejects.push(Reject {
                reason: r.reason,
                detail: r.detail,
                payload: Payload::from_bytes(r.payload),
                source: info.label.clone(),
                position,
                element: r.element,
                segment: chunk.start,
                received_at,
            }),
            Item::Ping => {}
            Item::ServerError(message) => {
                tracing::warn!("{} at byte {position}: server error message in the file: {message}", info.label);
            }
        });
        pos = line_end + 1;
    }
    Ok(ParsedChunk { chunk, bytes, trades, origins, rejects, max_ts })
}

/// The reject of a late trade of a chunk whose bytes are `bytes`.
pub fn late_reject(
    bytes: &[u8],
    label: &str,
    segment: u64,
    trade: &Trade,
    origin: &Origin,
    watermark: i64,
    lateness_ms: i64,
) -> Reject {
    let (start, len) = origin.line;
    let payload = bytes.get(start as usize..(start + len) as usize).unwrap_or_default();
    Reject {
        reason: RejectReason::Late,
        detail: crate::lateness::late_detail(trade.ts, watermark, lateness_ms),
        payload: Payload::from_bytes(payload),
        source: label.to_owned(),
        position: origin.position,
        element: origin.element,
        segment,
        received_at: wall_ms(),
    }
}
