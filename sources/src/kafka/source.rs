//! The `kafka://` source as a timely [`Reader`]: one consumer per worker, reading the
//! partitions that worker owns.
//!
//! Background: partition `p` of the topic is assigned to worker `p % workers` (of all
//! processes) by tradeflow itself — manual assignment, no group rebalancing — so each
//! partition is read by exactly one worker, in offset order, whatever the worker count.
//! Each partition is one watermark partition (SPEC 6): lateness is decided per record
//! against that partition's own `max ts − allowed lateness`.
//!
//! Ranges (see [`super::plan`]): records whose Kafka timestamp (set by the producer to
//! the trade's `t`; records without one use their trades' `t`) is before `start` are
//! skipped and touch nothing. Records at or after `end` are not emitted, but still move
//! the partition's clock exactly as in a live run, and once the partition's watermark
//! reaches `end` no later record could be accepted anyway, so the partition is finished.
//! Hence a replay of `[start, end)` accepts exactly the trades with `start <= ts < end`
//! that a live run reading the partitions from their beginning accepted, and every window
//! inside the range is final with the live run's values — at any worker count.
//!
//! Each reader logs the partitions and offset ranges it owns when it starts. A start
//! given as offsets, or the group's committed offsets, may lie inside a record batch,
//! which some brokers (tansu) do not serve a fetch from: [`super::plan::fetch_start`]
//! finds where to fetch from, and the records before the start are skipped.
//!
//! A bounded replay finishes a partition at its end offset (the high watermark seen at
//! start, or the given offset); a live one never does, and a partition silent for
//! `--idle-timeout` stops holding the watermark back. Undecodable records are
//! dead-lettered with `source` = `kafka://brokers/topic/partition`, `position` = the
//! offset and `segment` = the offset rounded down to 2^20.

use super::KafkaError;
use super::avro::{AvroDecoder, AvroRecord};
use super::plan::{KafkaPlan, PartitionRange, client_config, fetch_start, group_id};
use super::registry::Registry;
use super::spec::{Start, ValueFormat};
use crate::batch::{Batch, report_failure, wall_ms};
use crate::driver::{Poll, Reader, live_poll};
use crate::format::{Item, parse_line, write_flat_trade};
use crate::lateness::{Partitions, late_detail};
use rdkafka::Message;
use rdkafka::Offset;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::TopicPartitionList;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::scheduling::SyncActivator;
use tradeflow_model::metrics::{Counter, Gauge, registry};
use tradeflow_model::{Payload, Reject, RejectReason, Trade};

/// Records handled per activation at most.
const BUDGET: usize = 16 * 1024;
/// Empty polls an activation makes before it takes the consumer's queue for empty.
/// librdkafka queues its statistics events (every 250 ms) ahead of the fetched records,
/// and a poll that serves one returns nothing, like a poll of an empty queue. An
/// activation that stopped at the first empty poll served one statistics event and
/// slept: on a loaded machine, woken less than four times a second, the reader fell
/// behind the statistics for good and a replay stalled with 200k records queued.
const EMPTY_POLLS: usize = 64;
/// librdkafka's callbacks: consumer lag from its statistics. The lag is the partition's
/// high watermark minus the offset after the last record handed to tradeflow
/// (`app_offset`): librdkafka's own `consumer_lag` counts from the group's committed
/// offset, which a checkpointed run commits only at its end (and a run without a group
/// never), so it would say nothing about how far behind the reading is.
struct LagContext {
    topic: String,
    /// Per partition read: its lag gauge, and its high watermark as last seen.
    lag: Vec<(i32, Gauge, Arc<std::sync::atomic::AtomicI64>)>,
    /// When librdkafka last reported that no broker could be reached (wall-clock ms; 0
    /// once one is reached again): see [`KafkaReader::broker_outage`].
    unreachable: Arc<std::sync::atomic::AtomicI64>,
}

impl ClientContext for LagContext {
    fn error(&self, error: RdKafkaError, reason: &str) {
        use rdkafka::types::RDKafkaErrorCode as C;
        let code = error.rdkafka_error_code();
        if matches!(code, Some(C::AllBrokersDown | C::BrokerTransportFailure | C::Resolve | C::BrokerNotAvailable)) {
            let _ = self.unreachable.compare_exchange(0, wall_ms().max(1), Ordering::AcqRel, Ordering::Acquire);
        }
        if matches!(code, Some(C::PartitionEOF)) {
            return;
        }
        tracing::warn!("kafka {}: {error}: {reason}", self.topic);
    }

    fn stats(&self, statistics: Statistics) {
        // A broker up again ends an outage (its state as librdkafka's statistics say).
        // (Not librdkafka's internal or logical brokers, which are always "up".)
        let real = |b: &&rdkafka::statistics::Broker| b.source == "learned" || b.source == "configured";
        if statistics.brokers.values().filter(real).any(|b| b.state == "UP") {
            self.unreachable.store(0, Ordering::Release);
        }
        let Some(topic) = statistics.topics.get(&self.topic) else { return };
        for (partition, gauge, high) in &self.lag {
            let Some(p) = topic.partitions.get(partition) else { continue };
            high.store(p.hi_offset, Ordering::Release);
            let lag = if p.app_offset >= 0 && p.hi_offset >= 0 { p.hi_offset - p.app_offset } else { p.consumer_lag };
            if lag >= 0 {
                gauge.set(lag as f64);
            }
        }
    }
}

impl ConsumerContext for LagContext {}

/// One partition this worker reads.
struct Owned {
    range: PartitionRange,
    /// `kafka://brokers/topic/partition`.
    label: String,
    /// The next offset to read (one past the last record handled).
    next: i64,
    /// The Kafka timestamp of the last record handled, if it had one: where a resumed
    /// reader asks the broker to fetch from (see [`KafkaReader::restore`]).
    last_ts: Option<i64>,
    finished: bool,
    /// The partition's high watermark as librdkafka's statistics last said (-1: not yet).
    high: Arc<std::sync::atomic::AtomicI64>,
}

/// Offsets to commit to a group when the run ends cleanly.
#[derive(Clone, Debug)]
struct PendingCommit {
    plan: Arc<KafkaPlan>,
    offsets: Vec<(i32, i64)>,
}

static COMMITS: Mutex<Vec<PendingCommit>> = Mutex::new(Vec::new());

/// Commits the positions every finished `kafka://` reader of this process reached, for
/// the sources that name a group: called once the run has flushed everything it read.
/// Returns how many partition offsets were committed.
pub fn commit_offsets() -> Result<usize, KafkaError> {
    let pending = std::mem::take(&mut *COMMITS.lock().unwrap_or_else(|e| e.into_inner()));
    let mut committed = 0;
    for commit in pending {
        let spec = &commit.plan.spec;
        let Some(group) = &spec.group else { continue };
        if commit.offsets.is_empty() {
            continue;
        }
        let consumer: BaseConsumer = client_config(spec)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|source| KafkaError::Client { label: spec.label(), source })?;
        let mut tpl = TopicPartitionList::new();
        for &(p, offset) in &commit.offsets {
            tpl.add_partition_offset(&spec.topic, p, Offset::Offset(offset))
                .map_err(|source| KafkaError::Librdkafka { label: spec.label(), source })?;
        }
        consumer.commit(&tpl, rdkafka::consumer::CommitMode::Sync).map_err(|source| KafkaError::Commit {
            label: spec.label(),
            group: group.clone(),
            source: Box::new(source),
        })?;
        committed += commit.offsets.len();
    }
    Ok(committed)
}

/// Per-reader counters.
struct ReaderMetrics {
    records: Counter,
    skipped: Counter,
    /// Records and skipped records of the current activation, added to the shared
    /// counters once at its end rather than one atomic add per record.
    pending_records: u64,
    pending_skipped: u64,
}

impl ReaderMetrics {
    fn flush(&mut self) {
        self.records.add(std::mem::take(&mut self.pending_records));
        self.skipped.add(std::mem::take(&mut self.pending_skipped));
    }
}

/// Reads this worker's partitions of a topic.
pub struct KafkaReader {
    plan: Arc<KafkaPlan>,
    owned: Vec<Owned>,
    /// Local slot of each partition number (`usize::MAX` if not owned).
    slot_of: Vec<usize>,
    partitions: Partitions,
    consumer: Option<BaseConsumer<LagContext>>,
    avro: Option<AvroDecoder>,
    lateness_ms: i64,
    stop: Arc<AtomicBool>,
    waker: Option<SyncActivator>,
    woken: Arc<AtomicBool>,
    metrics: ReaderMetrics,
    /// (this worker's index, workers in the run), for the log line at start.
    worker: (usize, usize),
    reported: Option<i64>,
    /// Partitions finished but not yet paused.
    to_pause: Vec<i32>,
    /// Positions come from a checkpoint (they may lie inside a record batch).
    resumed: bool,
    started: bool,
    done: bool,
    /// How long the brokers may stay unreachable before the run stops (`--kafka-retry-for`).
    retry_for: Duration,
    /// See [`LagContext::unreachable`].
    unreachable: Arc<std::sync::atomic::AtomicI64>,
}

/// What a checkpoint records of a reader: each partition's next offset and clock.
#[derive(serde::Serialize, serde::Deserialize)]
struct ReaderState {
    /// (partition, next offset) of each partition owned.
    next: Vec<(i32, i64)>,
    clocks: Vec<crate::lateness::PartitionClock>,
    reported: i64,
    /// The Kafka timestamp of each partition's last record handled.
    #[serde(default)]
    last_ts: Vec<Option<i64>>,
}

impl KafkaReader {
    /// The reader of worker `index` of `peers`; it connects at its first read.
    pub fn new(
        plan: Arc<KafkaPlan>,
        index: usize,
        peers: usize,
        lateness_ms: i64,
        idle_timeout: Duration,
        retry_for: Duration,
        stop: Arc<AtomicBool>,
    ) -> KafkaReader {
        let ranges = plan.owned_by(index, peers);
        let max = ranges.iter().map(|r| r.partition as usize + 1).max().unwrap_or(0);
        let mut slot_of = vec![usize::MAX; max];
        let spec = &plan.spec;
        let owned: Vec<Owned> = ranges
            .into_iter()
            .enumerate()
            .map(|(slot, range)| {
                slot_of[range.partition as usize] = slot;
                let label = format!("{}/{}", spec.label(), range.partition);
                // A range that is empty from the start is finished before any read.
                let finished = range.end.is_some_and(|end| range.start >= end);
                let high = Arc::new(std::sync::atomic::AtomicI64::new(-1));
                Owned { next: range.start, range, label, last_ts: None, finished, high }
            })
            .collect();
        let live = !plan.is_bounded();
        let mut partitions = Partitions::new(owned.len(), lateness_ms, live.then_some(idle_timeout));
        for (slot, _) in owned.iter().enumerate().filter(|(_, o)| o.finished) {
            partitions.finish(slot);
        }
        let r = registry();
        let topic = spec.topic.as_str();
        let metrics = ReaderMetrics {
            records: super::records_read(topic),
            skipped: r.counter(
                "tradeflow_kafka_records_skipped_total",
                "Kafka records outside the replay's time range (before start, or at or after end).",
                &[("topic", topic)],
            ),
            pending_records: 0,
            pending_skipped: 0,
        };
        KafkaReader {
            plan,
            owned,
            slot_of,
            partitions,
            consumer: None,
            avro: None,
            lateness_ms,
            stop,
            waker: None,
            woken: Arc::default(),
            metrics,
            worker: (index, peers),
            reported: None,
            to_pause: Vec::new(),
            resumed: false,
            started: false,
            done: false,
            retry_for,
            unreachable: Arc::new(std::sync::atomic::AtomicI64::new(0)),
        }
    }

    /// Continues from a checkpoint's [`Reader::snapshot`] of this worker's reader: each
    /// partition from its recorded offset, with its recorded clock (so lateness is decided
    /// exactly as in an uninterrupted run). The offset may lie inside a record batch, which
    /// some brokers (tansu) do not serve a fetch from; the broker's offset for the last
    /// record's timestamp (a batch start on such brokers, and never after the record) is
    /// where fetching starts, so finding it costs one look-up instead of probes.
    pub fn restore(&mut self, state: &[u8]) -> Result<(), KafkaError> {
        let state: ReaderState =
            tradeflow_model::checkpoint::from_json(&self.plan.spec.label(), state).map_err(KafkaError::Checkpoint)?;
        if state.next.len() != self.owned.len()
            || state.next.iter().zip(&self.owned).any(|((p, _), o)| *p != o.range.partition)
        {
            return Err(KafkaError::CheckpointPartitions {
                label: self.plan.spec.label(),
                then: state.next.iter().map(|(p, _)| *p).collect(),
                now: self.partitions(),
            });
        }
        for (slot, (_, next)) in state.next.into_iter().enumerate() {
            let o = &mut self.owned[slot];
            o.next = next;
            o.last_ts = state.last_ts.get(slot).copied().flatten();
            o.finished = false;
            if o.range.end.is_some_and(|end| next >= end) {
                self.finish_partition(slot);
            }
        }
        self.partitions.restore_clocks(&state.clocks, state.reported);
        // A partition whose watermark had passed the replay's end time was finished.
        if let Some(end_ts) = self.plan.end_ts {
            for slot in 0..self.owned.len() {
                if self.partitions.watermark(slot) >= end_ts {
                    self.finish_partition(slot);
                }
            }
        }
        self.to_pause.clear();
        self.resumed = true;
        Ok(())
    }

    /// The partitions this reader owns.
    pub fn partitions(&self) -> Vec<i32> {
        self.owned.iter().map(|o| o.range.partition).collect()
    }

    /// What this reader reads, as logged when it starts:
    /// `kafka://b/t: worker 1 of 2 reads partition 1 (offsets 0..7520), 3 (offsets 12..)`.
    pub fn describe(&self) -> String {
        let (index, peers) = self.worker;
        let label = self.plan.spec.label();
        if self.owned.is_empty() {
            let total = self.plan.partitions.len();
            return format!("{label}: worker {index} of {peers} reads no partition (the topic has {total})");
        }
        let ranges: Vec<String> = self
            .owned
            .iter()
            .map(|o| {
                let end = o.range.end.map(|e| e.to_string()).unwrap_or_default();
                format!("{} (offsets {}..{end})", o.range.partition, o.next)
            })
            .collect();
        let noun = if ranges.len() == 1 { "partition" } else { "partitions" };
        format!("{label}: worker {index} of {peers} reads {noun} {}", ranges.join(", "))
    }

    fn finish(&mut self, out: &mut Vec<Batch>) -> Poll {
        let stopped = !self.partitions.all_done();
        self.done = true;
        self.consumer = None;
        let offsets: Vec<(i32, i64)> = self.owned.iter().map(|o| (o.range.partition, o.next)).collect();
        if self.plan.spec.group.is_some() && !offsets.is_empty() {
            COMMITS.lock().unwrap_or_else(|e| e.into_inner()).push(PendingCommit { plan: self.plan.clone(), offsets });
        }
        out.push(Batch::last(stopped));
        Poll::Done
    }

    /// An outage of every broker longer than `--kafka-retry-for`, as an error. librdkafka
    /// reconnects by itself, says when no broker can be reached, and its statistics
    /// (every 250 ms, while the consumer is polled) show when one is up again.
    fn broker_outage(&self) -> Option<String> {
        let since = self.unreachable.load(Ordering::Acquire);
        if since == 0 {
            return None;
        }
        let down = Duration::from_millis(u64::try_from(wall_ms().saturating_sub(since)).unwrap_or(0));
        (down > self.retry_for).then(|| {
            format!(
                "{}: no broker has answered for {:.0} s (--kafka-retry-for {:?}); stopping. Once the brokers are back, \
                 the same command resumes from the last checkpoint",
                self.plan.spec.label(),
                down.as_secs_f64(),
                self.retry_for
            )
        })
    }

    /// Creates the consumer and assigns this worker's unfinished partitions.
    fn start(&mut self) -> Result<(), KafkaError> {
        let spec = &self.plan.spec;
        tracing::info!("{}", self.describe());
        if spec.format == ValueFormat::Avro {
            let registry = match std::env::var("SCHEMA_REGISTRY_URL").ok().filter(|u| !u.trim().is_empty()) {
                Some(url) => Some(Arc::new(Registry::new(url.trim())?)),
                None => None,
            };
            self.avro = Some(AvroDecoder::new(registry));
        }
        let r = registry();
        let lag = self
            .owned
            .iter()
            .map(|o| {
                let partition = o.range.partition.to_string();
                let gauge = r.gauge(
                    "tradeflow_kafka_consumer_lag",
                    "Records between the last one read and the partition's high watermark (librdkafka statistics, every 250 ms).",
                    &[("topic", spec.topic.as_str()), ("partition", partition.as_str())],
                );
                (o.range.partition, gauge, o.high.clone())
            })
            .collect();
        let context = LagContext { topic: spec.topic.clone(), lag, unreachable: self.unreachable.clone() };
        let mut consumer: BaseConsumer<LagContext> = client_config(spec)
            .set("group.id", group_id(spec))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "100")
            .set("max.partition.fetch.bytes", "4194304")
            .set("queued.min.messages", "200000")
            // Once that many records wait, librdkafka stops fetching for
            // `fetch.queue.backoff.ms` (1 s by default): a replay would then spend most
            // of its time idle (0.2M records/s instead of over 1M from a local broker).
            .set("fetch.queue.backoff.ms", "10")
            .set("statistics.interval.ms", "250")
            .create_with_context(context)
            .map_err(|source| KafkaError::Consumer { label: spec.label(), source })?;
        // Offsets given or committed may lie inside a record batch, which some brokers
        // do not serve from (see `fetch_start`); the other starts are batch starts.
        // A resumed partition fetches from the broker's offset for its last record's
        // timestamp (see `restore`), or from its range's start if it read nothing yet.
        let given = matches!(spec.start, Start::Offsets(_) | Start::Committed);
        let hints = if self.resumed { self.resume_hints(&consumer) } else { Vec::new() };
        let mut tpl = TopicPartitionList::new();
        for (slot, o) in self.owned.iter().enumerate().filter(|(_, o)| !o.finished) {
            let hint = hints.get(slot).copied().flatten().filter(|h| *h <= o.next);
            let moved = self.resumed && o.next != o.range.start;
            let from = match hint {
                Some(hint) => hint,
                None if given || moved => fetch_start(spec, o.range.partition, o.next)?,
                None => o.next,
            };
            tpl.add_partition_offset(&spec.topic, o.range.partition, Offset::Offset(from))
                .map_err(|source| KafkaError::Librdkafka { label: o.label.clone(), source })?;
        }
        consumer.assign(&tpl).map_err(|source| KafkaError::Assign { label: spec.label(), source })?;
        if let Some(waker) = self.waker.clone() {
            let woken = self.woken.clone();
            consumer.set_nonempty_callback(move || {
                if !woken.swap(true, Ordering::AcqRel) {
                    let _ = waker.activate();
                }
            });
        }
        self.consumer = Some(consumer);
        Ok(())
    }

    /// For a resumed reader, per owned partition: the broker's first offset at or after the
    /// timestamp of the last record handled (`None` where unknown).
    fn resume_hints(&self, consumer: &BaseConsumer<LagContext>) -> Vec<Option<i64>> {
        let mut tpl = TopicPartitionList::new();
        for o in &self.owned {
            if let Some(ts) = o.last_ts {
                let _ = tpl.add_partition_offset(&self.plan.spec.topic, o.range.partition, Offset::Offset(ts));
            }
        }
        if tpl.count() == 0 {
            return Vec::new();
        }
        let Ok(found) = consumer.offsets_for_times(tpl, Duration::from_secs(10)) else { return Vec::new() };
        let offset = |p| match found.find_partition(&self.plan.spec.topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => Some(o),
            _ => None,
        };
        self.owned.iter().map(|o| o.last_ts.and_then(|_| offset(o.range.partition))).collect()
    }

    /// Marks the partition in `slot` finished and stops fetching it.
    fn finish_partition(&mut self, slot: usize) {
        let o = &mut self.owned[slot];
        if o.finished {
            return;
        }
        o.finished = true;
        self.partitions.finish(slot);
        self.to_pause.push(o.range.partition);
    }

    /// Stops fetching the partitions finished since the last call.
    fn pause_finished(&mut self, consumer: &BaseConsumer<LagContext>) {
        if self.to_pause.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for p in self.to_pause.drain(..) {
            tpl.add_partition(&self.plan.spec.topic, p);
        }
        let _ = consumer.pause(&tpl);
    }

    /// Handles one record of the partition in `slot`.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        slot: usize,
        offset: i64,
        timestamp: Option<i64>,
        value: Option<&[u8]>,
        batch: &mut Batch,
        now: Instant,
        received_at: i64,
    ) -> Result<(), KafkaError> {
        let (start_ts, end_ts) = (self.plan.start_ts, self.plan.end_ts);
        let o = &mut self.owned[slot];
        if o.finished || offset < o.next {
            return Ok(());
        }
        if o.range.end.is_some_and(|end| offset >= end) {
            self.finish_partition(slot);
            return Ok(());
        }
        o.next = offset + 1;
        o.last_ts = timestamp;
        self.metrics.pending_records += 1;
        let before_start = |ts: i64| start_ts.is_some_and(|s| ts < s);
        let after_end = |ts: i64| end_ts.is_some_and(|e| ts >= e);
        if timestamp.is_some_and(before_start) {
            self.metrics.pending_skipped += 1;
        } else {
            let lateness_ms = self.lateness_ms;
            let label = o.label.as_str();
            let partitions = &mut self.partitions;
            let skipped = &mut self.metrics.pending_skipped;
            let reject = |reason, detail, payload: Payload, element| Reject {
                reason,
                detail,
                payload,
                source: label.to_owned(),
                position: offset as u64,
                element,
                segment: crate::batch::stream_segment(offset as u64),
                received_at,
            };
            // A valid trade: range, then lateness against the partition's clock.
            let mut decide = |batch: &mut Batch, trade: Trade, element: u32, raw: &dyn Fn(&Trade) -> Payload| {
                let time = timestamp.unwrap_or(trade.ts);
                if before_start(time) {
                    *skipped += 1;
                    return;
                }
                let accepted = partitions.admit(slot, trade.ts, now);
                if after_end(time) {
                    // Moves the clock as in a live run, but is not part of the replay.
                    *skipped += 1;
                } else if accepted {
                    batch.trades.push(trade);
                } else {
                    let detail = late_detail(trade.ts, partitions.watermark(slot), lateness_ms);
                    batch.rejects.push(reject(RejectReason::Late, detail, raw(&trade), element));
                }
            };
            match (value, self.avro.as_ref()) {
                (None | Some([]), _) => batch.rejects.push(reject(
                    RejectReason::InvalidJson,
                    "the record has no value (an empty record or a tombstone)".into(),
                    Payload::default(),
                    0,
                )),
                (Some(value), None) => parse_line(value, &mut |item| match item {
                    Item::Trade(t) => match t.to_trade() {
                        Ok(trade) => {
                            // The raw text is copied only for a late trade's dead letter.
                            let raw = t.raw;
                            decide(batch, trade, t.element, &|_| Payload::from_bytes(raw));
                        }
                        // Unreachable: the parser applies the same check.
                        Err(e) => batch.rejects.push(reject(
                            RejectReason::BadSymbol,
                            format!("field \"s\": {e}"),
                            Payload::from_bytes(t.raw),
                            t.element,
                        )),
                    },
                    Item::Reject(r) => {
                        batch.rejects.push(reject(r.reason, r.detail, Payload::from_bytes(r.payload), r.element))
                    }
                    Item::Ping | Item::ServerError(_) => {}
                }),
                (Some(value), Some(avro)) => match avro.decode(value)? {
                    AvroRecord::Trade(trade) => decide(batch, trade, 0, &|t| flat_json(t).into()),
                    AvroRecord::Reject(reason, detail, payload) => {
                        batch.rejects.push(reject(reason, detail, payload.into(), 0))
                    }
                },
            }
        }
        let o = &self.owned[slot];
        let past_end = end_ts.is_some_and(|e| self.partitions.watermark(slot) >= e);
        if past_end || o.range.end.is_some_and(|end| o.next >= end) {
            self.finish_partition(slot);
        }
        Ok(())
    }

    /// A partition reported its end of log: a bounded partition whose position is at or
    /// past its end (records below it were control records or compacted away) is done.
    fn end_of_partition(&mut self, partition: i32, consumer: &BaseConsumer<LagContext>) {
        let Some(&slot) = self.slot_of.get(partition as usize) else { return };
        if slot == usize::MAX || self.owned[slot].finished {
            return;
        }
        let Some(end) = self.owned[slot].range.end else { return };
        let position = consumer.position().ok().and_then(|tpl| {
            match tpl.find_partition(&self.plan.spec.topic, partition).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => Some(o),
                _ => None,
            }
        });
        if position.is_some_and(|p| p >= end) {
            self.owned[slot].next = self.owned[slot].next.max(end);
            self.finish_partition(slot);
        }
    }
}

/// A trade as a flat JSON line (for the payload of a late Avro record).
fn flat_json(trade: &Trade) -> String {
    let mut line = Vec::with_capacity(96);
    write_flat_trade(&mut line, trade.symbol.as_str(), trade.price, trade.volume, trade.ts, trade.conditions.as_json());
    line.pop();
    String::from_utf8_lossy(&line).into_owned()
}

impl Reader for KafkaReader {
    type Item = Batch;

    fn set_waker(&mut self, waker: SyncActivator) {
        self.waker = Some(waker);
    }

    fn held(&mut self, held: Duration) {
        self.partitions.postpone_idle(held);
        // Nothing polled the consumer meanwhile, so nothing could have seen a broker come
        // back: the hold is not part of an outage.
        let shift = i64::try_from(held.as_millis()).unwrap_or(i64::MAX);
        let _ = self.unreachable.fetch_update(Ordering::AcqRel, Ordering::Acquire, |since| {
            (since != 0).then(|| since.saturating_add(shift).min(wall_ms()).max(1))
        });
    }

    fn snapshot(&self) -> Vec<u8> {
        let (clocks, reported) = self.partitions.clocks();
        let next = self.owned.iter().map(|o| (o.range.partition, o.next)).collect();
        let last_ts = self.owned.iter().map(|o| o.last_ts).collect();
        tradeflow_model::checkpoint::to_json(&ReaderState { next, clocks, reported, last_ts })
    }

    fn read(&mut self, out: &mut Vec<Batch>) -> Poll {
        if self.done {
            return Poll::Done;
        }
        self.woken.store(false, Ordering::Release);
        if self.stop.load(Ordering::Relaxed) || self.partitions.all_done() {
            return self.finish(out);
        }
        if !self.started {
            self.started = true;
            if let Err(e) = self.start() {
                report_failure(e.to_string());
                self.stop.store(true, Ordering::Relaxed);
                return self.finish(out);
            }
        }
        let now = Instant::now();
        let received_at = wall_ms();
        let mut batch = Batch::default();
        let mut handled = 0;
        let mut failure = None;
        // Taken out for the loop: messages borrow the consumer while `record` updates
        // the reader.
        let consumer = self.consumer.take();
        let mut empty = 0;
        while let Some(consumer) = consumer.as_ref()
            && handled < BUDGET
        {
            let message = match consumer.poll(Duration::ZERO) {
                None if empty < EMPTY_POLLS => {
                    empty += 1;
                    continue;
                }
                None => break,
                Some(Ok(message)) => message,
                Some(Err(RdKafkaError::PartitionEOF(partition))) => {
                    self.end_of_partition(partition, consumer);
                    continue;
                }
                Some(Err(e)) => {
                    if is_fatal(&e) {
                        failure = Some(format!("{}: {e}", self.plan.spec.label()));
                        break;
                    }
                    tracing::warn!("{}: {e} (retrying)", self.plan.spec.label());
                    continue;
                }
            };
            handled += 1;
            let partition = message.partition();
            let Some(&slot) = self.slot_of.get(partition as usize).filter(|s| **s != usize::MAX) else { continue };
            let timestamp = message.timestamp().to_millis();
            let result =
                self.record(slot, message.offset(), timestamp, message.payload(), &mut batch, now, received_at);
            if let Err(e) = result {
                failure = Some(e.to_string());
                break;
            }
        }
        self.metrics.flush();
        if let Some(consumer) = consumer {
            if failure.is_none() {
                failure = self.broker_outage();
            }
            self.pause_finished(&consumer);
            self.consumer = Some(consumer);
        }
        if let Some(e) = failure {
            report_failure(e);
            self.stop.store(true, Ordering::Relaxed);
            out.push(batch);
            return self.finish(out);
        }
        if self.partitions.all_done() {
            out.push(batch);
            return self.finish(out);
        }
        // A partition with records waiting is not idle, however long since it delivered
        // any: the consumer's one queue serves partitions in turn, and a backlog (after a
        // hold, a restart, a slow sink) can keep one waiting longer than --idle-timeout.
        // Taking it for idle would make its waiting records late.
        for (slot, o) in self.owned.iter().enumerate().filter(|(_, o)| !o.finished) {
            if o.high.load(Ordering::Acquire) > o.next {
                self.partitions.waiting(slot, now);
            }
        }
        batch.push_with_low(out, self.partitions.low(now, wall_ms()), &mut self.reported);
        live_poll(handled, BUDGET, self.waker.is_some())
    }
}

/// Errors that retrying cannot fix: the topic or partition is gone, or access is denied.
fn is_fatal(e: &RdKafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::UnknownTopicOrPartition
                | C::UnknownTopic
                | C::UnknownPartition
                | C::TopicAuthorizationFailed
                | C::GroupAuthorizationFailed
                | C::ClusterAuthorizationFailed
                | C::Fatal
        )
    )
}
