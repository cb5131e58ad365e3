//! `sim://` sources: the simulator as a live or bounded source.
//!
//! Each worker simulates the symbols it owns (symbol `i` on worker `i % peers`); each
//! symbol's stream is one partition with its own watermark. With `rate > 0` trades are
//! emitted when their arrival time comes (event times follow the wall clock from
//! `start`); with `rate = 0` as fast as the pipeline takes them. A paced source is live:
//! symbols that go quiet for `--idle-timeout` stop holding the watermark back.

use super::{Market, SimConfig};
use crate::batch::{Batch, wall_ms};
use crate::driver::{Poll, Reader};
use crate::format::write_flat_trade;
use crate::lateness::{Partitions, late_detail};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tradeflow_model::{Payload, Reject, RejectReason};

/// Trades emitted per activation at most.
const BUDGET: usize = 16 * 1024;

/// Reads the simulated market of one worker.
pub struct SimReader {
    market: Market,
    partitions: Partitions,
    /// Local partition of each symbol index (`usize::MAX` if not owned).
    partition_of: Vec<usize>,
    config: SimConfig,
    lateness_ms: i64,
    started: Instant,
    stop: Arc<AtomicBool>,
    done: bool,
}

impl SimReader {
    /// The reader of worker `index` of `peers`. `config` must have passed
    /// [`SimConfig::check`].
    pub fn new(
        config: SimConfig,
        index: usize,
        peers: usize,
        lateness_ms: i64,
        idle_timeout: Duration,
        stop: Arc<AtomicBool>,
    ) -> Self {
        let owned = |i: usize| i % peers == index;
        let market = Market::new(&config, owned);
        let symbols = config.resolved_symbols().len();
        let mut partition_of = vec![usize::MAX; symbols];
        let mut count = 0;
        for (i, slot) in partition_of.iter_mut().enumerate() {
            if owned(i) {
                *slot = count;
                count += 1;
            }
        }
        let live = config.rate > 0;
        let partitions = Partitions::new(count, lateness_ms, live.then_some(idle_timeout));
        SimReader { market, partitions, partition_of, config, lateness_ms, started: Instant::now(), stop, done: false }
    }

    fn finish(&mut self, out: &mut Vec<Batch>) -> Poll {
        self.done = true;
        out.push(Batch::end());
        Poll::Done
    }
}

impl Reader for SimReader {
    type Item = Batch;

    fn read(&mut self, out: &mut Vec<Batch>) -> Poll {
        if self.done {
            return Poll::Done;
        }
        if self.stop.load(Ordering::Relaxed) {
            return self.finish(out);
        }
        let now = Instant::now();
        let paced = self.config.rate > 0;
        // With pacing, trades whose arrival has come; otherwise everything.
        let horizon = if paced { self.config.start_ms + self.started.elapsed().as_millis() as i64 } else { i64::MAX };
        let mut batch = Batch::default();
        let mut emitted = 0;
        while emitted < BUDGET {
            match self.market.peek_arrival() {
                Some(arrival) if arrival <= horizon => {}
                _ => break,
            }
            let Some((index, symbol, sim)) = self.market.next() else { break };
            emitted += 1;
            let partition = self.partition_of[index];
            if self.partitions.admit(partition, sim.ts, now) {
                batch.trades.push(sim.to_trade(symbol));
            } else {
                let mut payload = Vec::with_capacity(96);
                write_flat_trade(
                    &mut payload,
                    symbol.as_str(),
                    sim.price,
                    sim.volume,
                    sim.ts,
                    sim.conditions.as_json(),
                );
                while payload.last() == Some(&b'\n') {
                    payload.pop();
                }
                batch.rejects.push(Reject {
                    reason: RejectReason::Late,
                    // The watermark that decided: admit may have just raised an idle
                    // partition's floor.
                    detail: late_detail(sim.ts, self.partitions.watermark(partition), self.lateness_ms),
                    payload: Payload::from_bytes(&payload),
                    source: format!("sim://{symbol}?seed={}", self.config.seed),
                    position: sim.seq,
                    element: 0,
                    segment: crate::batch::stream_segment(sim.seq),
                    received_at: wall_ms(),
                });
            }
        }
        if self.market.is_done() {
            out.push(batch);
            return self.finish(out);
        }
        batch.low = Some(self.partitions.low(now, wall_ms()));
        out.push(batch);
        if emitted == BUDGET || !paced {
            return Poll::Ready;
        }
        // Sleep until the next arrival, but wake at least every 100 ms to move the
        // watermark of idle symbols along.
        let wait = self.market.peek_arrival().map_or(100, |a| (a - horizon).clamp(1, 100));
        Poll::Wait(Duration::from_millis(wait as u64))
    }
}
