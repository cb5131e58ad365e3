//! The `finnhub://` source as a timely [`Reader`]: frames in, batches out.
//!
//! One worker (worker 0 of process 0) owns the connection; the others contribute an
//! empty, finished source, and trades reach the worker of their symbol downstream as for
//! every source. The connection thread ([`super::client`]) is started at the first read.
//!
//! Each frame is decoded by [`parse_line`]: a message holds several trades of several
//! symbols, `c` may be missing or empty, `v` may be 0. `ping` is ignored, `error` is
//! logged as a warning naming the cause, and anything malformed is dead-lettered with the
//! parser's reason, `source` = the redacted endpoint, `position` = the frame's number in
//! the run and `element` = its index in the message.
//!
//! Partitions (SPEC 6): one per subscribed symbol, plus one for any symbol the server
//! sends unasked. Finnhub relays trades from many venues whose clocks and delays differ
//! (a US stock's trades can arrive seconds behind a crypto pair's): deciding lateness
//! against the whole connection's newest timestamp would drop every trade of a slower
//! venue, so each symbol is judged against its own. A symbol quiet for `--idle-timeout`
//! (a closed market, a gap in the feed) stops holding the watermark back; when all are
//! quiet the watermark follows the wall clock, so windows still close, and trades
//! arriving after that below the watermark are late. The partitions outlive connections:
//! a reconnect changes nothing for lateness.

use super::FinnhubConfig;
use super::client::{ConnectionMetrics, Feed, Frame, spawn};
use crate::batch::{Batch, report_failure, wall_ms};
use crate::driver::{Poll, Reader, live_poll};
use crate::format::{Item, parse_line};
use crate::lateness::{Partitions, admit_parsed};
use rustc_hash::FxHashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use timely::scheduling::SyncActivator;
use tokio::sync::mpsc::error::TryRecvError;
use tradeflow_model::{Payload, Reject};

/// Frames decoded per activation at most.
const BUDGET: usize = 4096;
/// Dead letters are grouped in segments of one minute of arrival time.
const SEGMENT_MS: i64 = 60_000;

/// Reads a Finnhub feed on the worker that owns it.
pub struct FinnhubReader {
    config: FinnhubConfig,
    partitions: Partitions,
    /// Partition of each subscribed symbol; others go to the last partition.
    partition_of: FxHashMap<String, usize>,
    lateness_ms: i64,
    stop: Arc<AtomicBool>,
    feed: Option<Feed>,
    waker: Option<SyncActivator>,
    /// Set by the connection thread when it has woken the source, cleared by `read`.
    woken: Arc<AtomicBool>,
    metrics: ConnectionMetrics,
    frames: u64,
    reported: Option<i64>,
    done: bool,
}

impl FinnhubReader {
    /// A reader of `config`'s feed; it connects at its first read.
    pub fn new(config: FinnhubConfig, lateness_ms: i64, idle_timeout: Duration, stop: Arc<AtomicBool>) -> Self {
        let partition_of: FxHashMap<String, usize> =
            config.symbols.iter().enumerate().map(|(i, s)| (s.as_str().to_owned(), i)).collect();
        let partitions = Partitions::new(config.symbols.len() + 1, lateness_ms, Some(idle_timeout));
        let metrics = ConnectionMetrics::of(config.label());
        FinnhubReader {
            config,
            partitions,
            partition_of,
            lateness_ms,
            stop,
            feed: None,
            waker: None,
            woken: Arc::default(),
            metrics,
            frames: 0,
            reported: None,
            done: false,
        }
    }

    fn finish(&mut self, out: &mut Vec<Batch>) -> Poll {
        self.done = true;
        // Dropping the receiver ends the connection thread.
        self.feed = None;
        out.push(Batch::end());
        Poll::Done
    }

    fn start(&mut self) -> std::io::Result<()> {
        let woken = self.woken.clone();
        let waker = self.waker.clone();
        let wake = Box::new(move || {
            if let Some(waker) = &waker
                && !woken.swap(true, Ordering::AcqRel)
            {
                let _ = waker.activate();
            }
        });
        self.feed = Some(spawn(self.config.clone(), self.stop.clone(), wake)?);
        Ok(())
    }

    /// Decodes one frame into `batch`.
    fn decode(&mut self, frame: &Frame, batch: &mut Batch, now: Instant) {
        let position = self.frames;
        self.frames += 1;
        let received_at = frame.received_at;
        let segment = received_at.div_euclid(SEGMENT_MS) * SEGMENT_MS;
        let label = self.config.label();
        let (partitions, partition_of) = (&mut self.partitions, &self.partition_of);
        let other = partition_of.len();
        let lateness_ms = self.lateness_ms;
        let reject = |reason, detail, payload: &[u8], element| Reject {
            reason,
            detail,
            payload: Payload::from_bytes(payload),
            source: label.to_owned(),
            position,
            element,
            segment: segment as u64,
            received_at,
        };
        parse_line(&frame.bytes, &mut |item| match item {
            Item::Trade(t) => {
                let partition = partition_of.get(t.symbol.as_ref()).copied().unwrap_or(other);
                admit_parsed(partitions, partition, &t, now, lateness_ms, batch, reject);
            }
            Item::Reject(r) => batch.rejects.push(reject(r.reason, r.detail, r.payload, r.element)),
            Item::Ping => {}
            Item::ServerError(message) => {
                self.metrics.server_errors.inc();
                super::warn_server_error(&self.config, &message, frame.connection);
            }
        });
    }
}

/// What a checkpoint records of the feed: only the lateness clocks. A WebSocket cannot
/// be read again: a resumed run goes on from the live feed, and what arrived between the
/// checkpoint and a crash is lost (the durable path is `produce` into Kafka).
#[derive(serde::Serialize, serde::Deserialize)]
struct FeedState {
    clocks: Vec<crate::lateness::PartitionClock>,
    reported: i64,
}

impl FinnhubReader {
    /// Restores the lateness clocks of a checkpoint (see [`Reader::snapshot`]).
    pub fn restore(&mut self, state: &[u8]) -> Result<(), super::FinnhubError> {
        let state: FeedState = tradeflow_model::checkpoint::from_json(self.config.label(), state)
            .map_err(super::FinnhubError::Checkpoint)?;
        if state.clocks.len() != self.config.symbols.len() + 1 {
            return Err(super::FinnhubError::CheckpointSymbols {
                label: self.config.label().to_owned(),
                then: state.clocks.len().saturating_sub(1),
                now: self.config.symbols.len(),
            });
        }
        self.partitions.restore_clocks(&state.clocks, state.reported);
        Ok(())
    }
}

impl Reader for FinnhubReader {
    type Item = Batch;

    fn set_waker(&mut self, waker: SyncActivator) {
        self.waker = Some(waker);
    }

    fn snapshot(&self) -> Vec<u8> {
        let (clocks, reported) = self.partitions.clocks();
        tradeflow_model::checkpoint::to_json(&FeedState { clocks, reported })
    }

    fn held(&mut self, held: Duration) {
        self.partitions.postpone_idle(held);
    }

    fn read(&mut self, out: &mut Vec<Batch>) -> Poll {
        if self.done {
            return Poll::Done;
        }
        self.woken.store(false, Ordering::Release);
        if self.stop.load(Ordering::Relaxed) {
            return self.finish(out);
        }
        if self.feed.is_none()
            && let Err(e) = self.start()
        {
            report_failure(format!("finnhub {}: cannot start the connection thread: {e}", self.config.label()));
            self.stop.store(true, Ordering::Relaxed);
            return self.finish(out);
        }
        let now = Instant::now();
        let mut batch = Batch::default();
        let mut decoded = 0;
        let mut ended = false;
        while decoded < BUDGET {
            let Some(feed) = self.feed.as_mut() else { break };
            match feed.frames.try_recv() {
                Ok(frame) => {
                    decoded += 1;
                    self.decode(&frame, &mut batch, now);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    ended = true;
                    break;
                }
            }
        }
        if ended {
            // The thread gave up (the key was refused) or was stopped.
            out.push(batch);
            return self.finish(out);
        }
        batch.push_with_low(out, self.partitions.low(now, wall_ms()), &mut self.reported);
        live_poll(decoded, BUDGET, self.waker.is_some())
    }
}
