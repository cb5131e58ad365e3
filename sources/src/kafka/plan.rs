//! Resolving a `kafka://` spec against the brokers once, when the run starts: the
//! topic's partitions, and for each the offset it starts at and (for a bounded replay)
//! the offset it ends before.
//!
//! * Earliest / latest are the low / high watermarks at start; `committed` is the
//!   group's committed offset (the low watermark where there is none).
//! * A start time is looked up with the broker's offset-for-time index. Kafka defines it
//!   as the first offset whose timestamp is at or after the time, and a coarser broker
//!   (tansu lands on the start of the batch holding it) returns an earlier offset: either
//!   way every record at or after the time lies at or after the returned offset, and the
//!   consumer skips the earlier ones itself, so the replay is exact. Where the broker has
//!   no such lookup the replay starts at the low watermark and filters everything.
//! * An end (`latest`, a time, or offsets) is capped by the high watermark at start:
//!   a bounded replay never waits for records produced after it started.

use super::KafkaError;
use super::spec::{End, KafkaSpec, Start};
use rdkafka::Offset;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::TopicPartitionList;
use std::time::Duration;

/// How long each broker query may take.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(15);

/// One partition's range of offsets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionRange {
    /// The partition.
    pub partition: i32,
    /// The first offset to read.
    pub start: i64,
    /// Offsets at or beyond this are not read (bounded replays only).
    pub end: Option<i64>,
}

/// A spec resolved against the brokers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaPlan {
    /// The spec (brokers resolved).
    pub spec: KafkaSpec,
    /// Every partition of the topic, by partition number.
    pub partitions: Vec<PartitionRange>,
    /// Records whose timestamp is before this are skipped.
    pub start_ts: Option<i64>,
    /// Records whose timestamp is at or after this are not emitted.
    pub end_ts: Option<i64>,
}

impl KafkaPlan {
    /// True when the replay ends by itself.
    pub fn is_bounded(&self) -> bool {
        self.spec.is_bounded()
    }

    /// The partitions worker `index` of `peers` reads: partition `p` goes to worker
    /// `p % peers`, so each is read by exactly one worker of the whole run.
    pub fn owned_by(&self, index: usize, peers: usize) -> Vec<PartitionRange> {
        self.partitions.iter().filter(|r| r.partition as usize % peers.max(1) == index).cloned().collect()
    }
}

/// The librdkafka settings every tradeflow client shares.
pub fn client_config(spec: &KafkaSpec) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &spec.brokers)
        .set("client.id", "tradeflow")
        .set("socket.keepalive.enable", "true")
        // librdkafka logs connection trouble itself; keep it to warnings.
        .set("log_level", "4");
    config
}

/// The consumer group the clients of this spec use (librdkafka wants one even for
/// assigned partitions; nothing is committed unless the spec names a group).
pub fn group_id(spec: &KafkaSpec) -> String {
    spec.group.clone().unwrap_or_else(|| format!("tradeflow-{}", spec.topic))
}

/// Resolves `spec` (brokers already resolved): one metadata query, the watermarks of
/// every partition, and the offset lookups its start needs.
pub fn resolve(spec: &KafkaSpec) -> Result<KafkaPlan, KafkaError> {
    let label = || spec.label();
    let consumer: BaseConsumer = client_config(spec)
        .set("group.id", group_id(spec))
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|source| KafkaError::Client { label: label(), source })?;
    let metadata = consumer
        .fetch_metadata(Some(&spec.topic), QUERY_TIMEOUT)
        .map_err(|source| KafkaError::NotListening { label: label(), source, timeout: QUERY_TIMEOUT })?;
    let topic = metadata.topics().iter().find(|t| t.name() == spec.topic);
    let topic = topic.ok_or_else(|| KafkaError::NoSuchTopic {
        label: label(),
        brokers: spec.brokers.clone(),
        topic: spec.topic.clone(),
    })?;
    if let Some(code) = topic.error() {
        return Err(KafkaError::TopicUnavailable {
            label: label(),
            brokers: spec.brokers.clone(),
            topic: spec.topic.clone(),
            code,
        });
    }
    let mut ids: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
    ids.sort_unstable();
    if ids.is_empty() {
        return Err(KafkaError::NoPartitions {
            label: label(),
            brokers: spec.brokers.clone(),
            topic: spec.topic.clone(),
        });
    }

    let mut marks = Vec::with_capacity(ids.len());
    for &p in &ids {
        let (low, high) = consumer
            .fetch_watermarks(&spec.topic, p, QUERY_TIMEOUT)
            .map_err(|source| KafkaError::Watermarks { label: label(), partition: p, source })?;
        marks.push((p, low.max(0), high.max(0)));
    }
    // The offset query's high watermark can be short of the true end (tansu answers with
    // the end of an early batch); the one a fetch returns is right. Take the greater.
    let fetched = fetched_high_watermarks(spec, &marks)?;
    for (p, _, high) in &mut marks {
        *high = (*high).max(fetched.get(p).copied().unwrap_or(0));
    }

    let starts: Vec<i64> = match &spec.start {
        Start::Earliest => marks.iter().map(|m| m.1).collect(),
        Start::Latest => marks.iter().map(|m| m.2).collect(),
        Start::Offsets(given) => {
            marks.iter().map(|&(p, low, high)| given.get(&p).map_or(low, |o| (*o).clamp(low, high))).collect()
        }
        Start::Committed => {
            let mut tpl = TopicPartitionList::new();
            for &p in &ids {
                tpl.add_partition(&spec.topic, p);
            }
            let committed = consumer
                .committed_offsets(tpl, QUERY_TIMEOUT)
                .map_err(|source| KafkaError::CommittedOffsets { label: label(), source })?;
            marks
                .iter()
                .map(|&(p, low, high)| match committed.find_partition(&spec.topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o.clamp(low, high),
                    _ => low,
                })
                .collect()
        }
        Start::Time(ts) => {
            let mut tpl = TopicPartitionList::new();
            for &p in &ids {
                tpl.add_partition_offset(&spec.topic, p, Offset::Offset(*ts))
                    .map_err(|source| KafkaError::OffsetLookup { label: label(), source })?;
            }
            match consumer.offsets_for_times(tpl, QUERY_TIMEOUT) {
                Ok(found) => marks
                    .iter()
                    .map(|&(p, low, high)| match found.find_partition(&spec.topic, p).map(|e| e.offset()) {
                        Some(Offset::Offset(o)) => o.clamp(low, high),
                        // No record at or after the time.
                        Some(Offset::End) => high,
                        _ => low,
                    })
                    .collect(),
                Err(e) => {
                    tracing::warn!(
                        "{}: the brokers cannot look offsets up by time ({e}); reading from the earliest offsets and skipping records before the start",
                        spec.label()
                    );
                    marks.iter().map(|m| m.1).collect()
                }
            }
        }
    };

    let partitions = marks
        .iter()
        .zip(starts)
        .map(|(&(p, _, high), start)| {
            let end = match &spec.end {
                None => None,
                Some(End::Latest | End::Time(_)) => Some(high),
                Some(End::Offsets(given)) => Some(given.get(&p).map_or(high, |o| (*o).min(high))),
            };
            PartitionRange { partition: p, start, end }
        })
        .collect();
    let start_ts = match spec.start {
        Start::Time(ts) => Some(ts),
        _ => None,
    };
    let end_ts = match spec.end {
        Some(End::Time(ts)) => Some(ts),
        _ => None,
    };
    Ok(KafkaPlan { spec: spec.clone(), partitions, start_ts, end_ts })
}

/// Where to fetch partition `partition` from so that the broker returns the record at
/// `offset`.
///
/// Kafka answers a fetch from the middle of a record batch with the whole batch (the
/// client drops the records before the offset), so that is `offset` itself, found by one
/// fetch. tansu answers it with an empty message set, again and again, so a replay from
/// such an offset would wait for ever. Then a batch start before `offset` is found by
/// fetching from earlier offsets — `offset − 1`, `− 8`, `− 64`, … down to the low
/// watermark, a few quarter-second probes — and the reader skips the records before
/// `offset` (skipping is cheap next to a probe). A broker that is merely slow to answer
/// costs some records read and skipped, never a wrong result.
pub fn fetch_start(spec: &KafkaSpec, partition: i32, offset: i64) -> Result<i64, KafkaError> {
    let consumer: BaseConsumer = client_config(spec)
        .set("group.id", group_id(spec))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "10")
        .set("max.partition.fetch.bytes", "1024")
        .create()
        .map_err(|source| KafkaError::Client { label: spec.label(), source })?;
    let label = format!("{}/{partition}", spec.label());
    let (low, _) = consumer
        .fetch_watermarks(&spec.topic, partition, QUERY_TIMEOUT)
        .map_err(|source| KafkaError::Watermarks { label: spec.label(), partition, source })?;
    let low = low.max(0);
    let (mut candidate, mut step) = (offset, 1);
    // The watermark query connected to the partition's leader; the first fetch may still
    // include the client's fetch set-up.
    let mut wait = Duration::from_millis(500);
    loop {
        if candidate <= low || answers(&consumer, &spec.topic, partition, candidate, wait)? {
            let from = candidate.max(low).min(offset);
            if from < offset {
                tracing::info!(
                    "{label}: the broker returns nothing from offset {offset} (the middle of a record batch); fetching from {from} and skipping the {} records before it",
                    offset - from
                );
            }
            return Ok(from);
        }
        candidate = (offset - step).max(low);
        step = step.saturating_mul(8);
        wait = Duration::from_millis(250);
    }
}

/// True when a fetch of `partition` from `at` returns the record at `at` or an earlier one
/// (or reports the end of the partition) within `wait`. A fetch from the middle of a
/// record batch that skips to the next batch (tansu does, for a batch it has already
/// answered) returns a later record: not an answer, or the records between would be lost.
fn answers(consumer: &BaseConsumer, topic: &str, partition: i32, at: i64, wait: Duration) -> Result<bool, KafkaError> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(at)).map_err(KafkaError::Offset)?;
    consumer.assign(&tpl).map_err(|source| KafkaError::AssignPartition {
        topic: topic.to_owned(),
        partition,
        source,
    })?;
    let deadline = std::time::Instant::now() + wait;
    while std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(10)) {
            Some(Ok(message)) => return Ok(rdkafka::Message::offset(&message) <= at),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => return Ok(true),
            _ => {}
        }
    }
    Ok(false)
}

/// Collects the high watermarks librdkafka's statistics report from fetch responses.
struct FetchedWatermarks {
    topic: String,
    seen: std::sync::Mutex<std::collections::HashMap<i32, i64>>,
}

impl rdkafka::client::ClientContext for FetchedWatermarks {
    fn stats(&self, statistics: rdkafka::statistics::Statistics) {
        let Some(topic) = statistics.topics.get(&self.topic) else { return };
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        for (p, partition) in &topic.partitions {
            if *p >= 0 && partition.hi_offset >= 0 {
                seen.insert(*p, partition.hi_offset);
            }
        }
    }
}

impl rdkafka::consumer::ConsumerContext for FetchedWatermarks {}

/// The high watermark of each partition as a fetch response reports it: one small fetch
/// per partition at its last record (by the offset query), read from librdkafka's
/// statistics.
fn fetched_high_watermarks(
    spec: &KafkaSpec,
    marks: &[(i32, i64, i64)],
) -> Result<std::collections::HashMap<i32, i64>, KafkaError> {
    let context = FetchedWatermarks { topic: spec.topic.clone(), seen: Default::default() };
    let consumer: BaseConsumer<FetchedWatermarks> = client_config(spec)
        .set("group.id", group_id(spec))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("statistics.interval.ms", "20")
        .set("max.partition.fetch.bytes", "1024")
        .set("fetch.wait.max.ms", "10")
        .create_with_context(context)
        .map_err(|source| KafkaError::Client { label: spec.label(), source })?;
    let probe = |source| KafkaError::Probe { label: spec.label(), source };
    let mut tpl = TopicPartitionList::new();
    for &(p, low, high) in marks {
        tpl.add_partition_offset(&spec.topic, p, Offset::Offset((high - 1).max(low))).map_err(probe)?;
    }
    consumer.assign(&tpl).map_err(probe)?;
    let deadline = std::time::Instant::now() + QUERY_TIMEOUT;
    loop {
        let _ = consumer.poll(Duration::from_millis(10));
        let seen = consumer.context().seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if marks.iter().all(|(p, ..)| seen.contains_key(p)) {
            return Ok(seen);
        }
        if std::time::Instant::now() >= deadline {
            return Err(KafkaError::ProbeTimeout { label: spec.label(), timeout: QUERY_TIMEOUT });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_spread_over_workers() {
        let spec = super::super::spec::parse_url("kafka://h:1/t").unwrap();
        let partitions = (0..5).map(|p| PartitionRange { partition: p, start: 0, end: None }).collect();
        let plan = KafkaPlan { spec, partitions, start_ts: None, end_ts: None };
        let owned: Vec<Vec<i32>> = (0..2).map(|w| plan.owned_by(w, 2).iter().map(|r| r.partition).collect()).collect();
        assert_eq!(owned, vec![vec![0, 2, 4], vec![1, 3]]);
        assert_eq!(plan.owned_by(6, 7), vec![]);
    }
}
