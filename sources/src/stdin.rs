//! `--source -` (also `stdin://`): NDJSON from standard input, read until it ends, as in
//! `kcat -C -t trades -e | tradeflow run --source -` or `zcat day.ndjson.gz | tradeflow
//! run --source -`. A pipe has no size and cannot be split into chunks like a file, so it
//! is read as a stream, by one worker (worker 0 of process 0); trades reach the worker of
//! their symbol downstream as for every source.
//!
//! A thread reads lines (blocking) and hands them over in blocks: a block is sent when it
//! is large, or as soon as the pipe has nothing more buffered, so that a live feed's
//! trades are not held back. Each line is decoded by [`parse_line`], like a file's.
//!
//! One partition: lateness is judged against the stream's newest timestamp, and a pipe
//! quiet for `--idle-timeout` stops holding the watermark back (windows still close
//! while a live feed is silent). The end of the input ends the source; its open windows
//! become final. Dead letters name the source `stdin` and the line's byte offset.

use crate::batch::{Batch, report_failure, stream_segment, wall_ms};
use crate::driver::{Poll, Reader, live_poll};
use crate::format::{Item, parse_line};
use crate::lateness::{Partitions, admit_parsed};
use std::io::BufRead;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::time::{Duration, Instant};
use timely::scheduling::SyncActivator;
use tradeflow_model::{Payload, Reject};

/// The source's name in dead letters, logs and metrics.
pub const LABEL: &str = "stdin";
/// A block is handed over once it holds this many bytes.
const BLOCK_BYTES: usize = 256 * 1024;
/// Blocks decoded per activation at most.
const BUDGET: usize = 8;
/// Blocks in flight between the reading thread and the source: back-pressure.
const IN_FLIGHT: usize = 16;

/// Lines read from the pipe: their bytes (each without its `\n`) and where each starts in
/// the input.
struct Block {
    bytes: Vec<u8>,
    /// (offset in the input, start in `bytes`, end in `bytes`) per line.
    lines: Vec<(u64, usize, usize)>,
}

/// Reads standard input on the worker that owns it.
pub struct StdinReader {
    partitions: Partitions,
    lateness_ms: i64,
    stop: Arc<AtomicBool>,
    blocks: Option<Receiver<std::io::Result<Block>>>,
    waker: Option<SyncActivator>,
    reported: Option<i64>,
    done: bool,
}

impl StdinReader {
    /// A reader of standard input; its thread starts at the first read.
    pub fn new(lateness_ms: i64, idle_timeout: Duration, stop: Arc<AtomicBool>) -> Self {
        StdinReader {
            partitions: Partitions::new(1, lateness_ms, Some(idle_timeout)),
            lateness_ms,
            stop,
            blocks: None,
            waker: None,
            reported: None,
            done: false,
        }
    }

    fn finish(&mut self, batch: Batch, out: &mut Vec<Batch>) -> Poll {
        self.done = true;
        self.blocks = None;
        out.push(batch);
        out.push(Batch::end());
        Poll::Done
    }

    fn decode(&mut self, block: &Block, batch: &mut Batch, now: Instant) {
        let received_at = wall_ms();
        for &(position, start, end) in &block.lines {
            let reject = |reason, detail, payload: &[u8], element| Reject {
                reason,
                detail,
                payload: Payload::from_bytes(payload),
                source: LABEL.to_owned(),
                position,
                element,
                segment: stream_segment(position),
                received_at,
            };
            let partitions = &mut self.partitions;
            let lateness_ms = self.lateness_ms;
            parse_line(&block.bytes[start..end], &mut |item| match item {
                Item::Trade(t) => admit_parsed(partitions, 0, &t, now, lateness_ms, batch, reject),
                Item::Reject(r) => batch.rejects.push(reject(r.reason, r.detail, r.payload, r.element)),
                Item::Ping => {}
                Item::ServerError(message) => {
                    tracing::warn!("{LABEL} at byte {position}: server error message in the input: {message}")
                }
            });
        }
    }
}

/// Reads standard input into blocks until it ends, the source goes away, or reading fails.
fn read_blocks(blocks: SyncSender<std::io::Result<Block>>, wake: impl Fn()) {
    let stdin = std::io::stdin();
    let mut input = std::io::BufReader::with_capacity(1 << 20, stdin.lock());
    let mut offset = 0u64;
    let mut block = Block { bytes: Vec::with_capacity(BLOCK_BYTES), lines: Vec::new() };
    loop {
        let start = block.bytes.len();
        let read = match input.read_until(b'\n', &mut block.bytes) {
            Ok(read) => read,
            Err(e) => {
                let _ = blocks.send(Err(e));
                wake();
                return;
            }
        };
        if read > 0 {
            let end = if block.bytes.last() == Some(&b'\n') { block.bytes.len() - 1 } else { block.bytes.len() };
            block.lines.push((offset, start, end));
            offset += read as u64;
        }
        // Hand over when large, at the end, or when the next read would wait for input.
        if read == 0 || block.bytes.len() >= BLOCK_BYTES || input.buffer().is_empty() {
            if !block.lines.is_empty() {
                let full =
                    std::mem::replace(&mut block, Block { bytes: Vec::with_capacity(BLOCK_BYTES), lines: Vec::new() });
                if blocks.send(Ok(full)).is_err() {
                    return;
                }
                wake();
            }
            if read == 0 {
                return;
            }
        }
    }
}

impl Reader for StdinReader {
    type Item = Batch;

    fn set_waker(&mut self, waker: SyncActivator) {
        self.waker = Some(waker);
    }

    fn read(&mut self, out: &mut Vec<Batch>) -> Poll {
        if self.done {
            return Poll::Done;
        }
        if self.stop.load(Ordering::Relaxed) {
            return self.finish(Batch::default(), out);
        }
        if self.blocks.is_none() {
            let (sender, receiver) = sync_channel(IN_FLIGHT);
            let waker = self.waker.clone();
            let wake = move || {
                if let Some(waker) = &waker {
                    let _ = waker.activate();
                }
            };
            let spawned = std::thread::Builder::new().name("stdin".into()).spawn(move || read_blocks(sender, wake));
            if let Err(e) = spawned {
                report_failure(format!("{LABEL}: cannot start the reading thread: {e}"));
                return self.finish(Batch::default(), out);
            }
            self.blocks = Some(receiver);
        }
        let now = Instant::now();
        let mut batch = Batch::default();
        let mut handled = 0;
        while handled < BUDGET {
            let Some(blocks) = self.blocks.as_ref() else { break };
            match blocks.try_recv() {
                Ok(Ok(block)) => {
                    handled += 1;
                    self.decode(&block, &mut batch, now);
                }
                Ok(Err(e)) => {
                    report_failure(format!("{LABEL}: reading standard input failed: {e}"));
                    return self.finish(batch, out);
                }
                Err(TryRecvError::Empty) => break,
                // The input ended.
                Err(TryRecvError::Disconnected) => return self.finish(batch, out),
            }
        }
        batch.push_with_low(out, self.partitions.low(now, wall_ms()), &mut self.reported);
        live_poll(handled, BUDGET, self.waker.is_some())
    }
}

/// Standard input (`-`), read once by worker 0 until it ends; a pipe cannot be re-read,
/// so it is never checkpointed.
#[derive(Debug)]
pub struct Stdin;

impl crate::source::Source for Stdin {
    fn bounded(&self) -> bool {
        // It ends with its input, but nothing says when: reported like a live source.
        false
    }
    fn resumable(&self, _asked: bool) -> bool {
        false
    }
    fn extent(&self, _workers: std::ops::Range<usize>, _peers: usize, _processes: usize) -> crate::source::Extent {
        crate::source::Extent::Unknown
    }
    fn build<'scope>(
        &self,
        scope: timely::dataflow::Scope<'scope, tradeflow_model::Time>,
        context: &crate::source::Context,
    ) -> crate::source::Built<'scope> {
        use crate::driver::{Finished, polled_source};
        if scope.index() != 0 {
            return Ok(polled_source(scope, "Stdin", Finished));
        }
        let c = context;
        Ok(polled_source(scope, "Stdin", StdinReader::new(c.lateness_ms, c.idle_timeout, c.stop.clone())))
    }
}
