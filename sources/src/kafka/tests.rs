//! Unit tests of the producer and the Kafka source against librdkafka's in-process mock
//! cluster (`rdkafka::mocking::MockCluster`): real protocol, no broker process. (The
//! end-to-end tests against a real broker are in `tests/tests/kafka/`.)

use super::producer::{ProducerOptions, TradeProducer};
use super::spec::{ValueFormat, parse_url};
use super::{KafkaReader, resolve};
use crate::batch::Batch;
use crate::driver::{Poll, Reader};
use rdkafka::mocking::MockCluster;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};
use tradeflow_model::{Conditions, Price, Qty, RejectReason, Symbol, Trade};

/// How long the readers wait for unreachable brokers.
const RETRY_FOR: Duration = Duration::from_secs(300);

fn trade(symbol: &str, ts: i64, price: i64) -> Trade {
    Trade {
        symbol: Symbol::parse(symbol).unwrap(),
        ts,
        price: Price(price),
        volume: Qty(100_000_000),
        conditions: Conditions::from_list(&["1"]),
    }
}

/// Sends `trades` to `topic` of the cluster (created with `partitions`).
fn fill(brokers: &str, topic: &str, format: ValueFormat, trades: &[Trade]) {
    let spec = parse_url(&format!("kafka://{brokers}/{topic}")).unwrap();
    let options = ProducerOptions {
        partitions: 3,
        replication: 1,
        format,
        linger: Duration::from_millis(1),
        compression: "lz4".into(),
    };
    let (mut producer, status) = TradeProducer::open(&spec, &options).unwrap();
    assert_eq!(status.partitions, 3);
    for t in trades {
        producer.send(t).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let counts = producer.counts();
    assert_eq!(counts.delivered.load(std::sync::atomic::Ordering::Relaxed), trades.len() as u64);
}

/// The `peers` readers of the source `url`.
fn readers(url: &str, peers: usize, lateness_ms: i64) -> Vec<KafkaReader> {
    let plan = Arc::new(resolve(&parse_url(url).unwrap()).unwrap());
    (0..peers)
        .map(|i| {
            KafkaReader::new(plan.clone(), i, peers, lateness_ms, Duration::from_secs(10), RETRY_FOR, Arc::default())
        })
        .collect()
}

/// Reads a bounded source with `peers` readers to the end; everything they emitted.
fn drain(url: &str, peers: usize, lateness_ms: i64) -> Vec<Batch> {
    let mut readers = readers(url, peers, lateness_ms);
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut done = vec![false; peers];
    while done.iter().any(|d| !d) {
        assert!(Instant::now() < deadline, "the replay did not finish");
        for (reader, done) in readers.iter_mut().zip(&mut done) {
            if !*done {
                *done = reader.read(&mut out) == Poll::Done;
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    out
}

fn accepted(batches: &[Batch]) -> Vec<Trade> {
    let mut trades: Vec<Trade> = batches.iter().flat_map(|b| b.trades.iter().cloned()).collect();
    trades.sort();
    trades
}

#[test]
fn a_bounded_replay_reads_every_partition_once_at_any_reader_count() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("t", 3, 1).unwrap();
    let symbols = ["AAPL", "MSFT", "BINANCE:BTCUSDT", "IC MARKETS:1", "OANDA:EUR_USD"];
    let trades: Vec<Trade> = (0..3_000)
        .map(|i| trade(symbols[i % symbols.len()], 1_700_000_000_000 + i as i64 * 10, 100 + i as i64))
        .collect();
    fill(&brokers, "t", ValueFormat::Json, &trades);
    let mut want = trades.clone();
    want.sort();
    for peers in [1, 2, 4] {
        let out = drain(&format!("kafka://{brokers}/t?end=latest"), peers, 5_000);
        assert!(accepted(&out) == want, "{peers} readers");
        assert_eq!(out.iter().filter(|b| b.low == Some(i64::MAX)).count(), peers, "each reader finishes once");
    }
}

#[test]
fn avro_values_decode_to_the_same_trades() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("a", 3, 1).unwrap();
    let trades: Vec<Trade> =
        (0..500).map(|i| trade(["X", "Y"][i % 2], 1_700_000_000_000 + i as i64, 7 + i as i64)).collect();
    fill(&brokers, "a", ValueFormat::Avro, &trades);
    let out = drain(&format!("kafka://{brokers}/a?end=latest&format=avro"), 2, 5_000);
    let mut want = trades;
    want.sort();
    assert!(accepted(&out) == want);
}

/// An end time is applied by the consumer to each record (the mock cluster has no
/// offset-for-time lookup, so start times are tested against the real broker).
#[test]
fn an_end_time_keeps_exactly_the_earlier_trades() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("r", 3, 1).unwrap();
    let base = 1_700_000_000_000;
    let symbols = ["A", "B", "C", "D", "E"];
    let trades: Vec<Trade> =
        (0..1_000).map(|i| trade(symbols[i % symbols.len()], base + i as i64 * 100, 1 + i as i64)).collect();
    fill(&brokers, "r", ValueFormat::Json, &trades);
    let to = base + 60_050;
    let out = drain(&format!("kafka://{brokers}/r?end={to}"), 2, 5_000);
    let mut want: Vec<Trade> = trades.into_iter().filter(|t| t.ts < to).collect();
    want.sort();
    assert!(accepted(&out) == want);
}

/// librdkafka serves its statistics events ahead of fetched records, and a poll that
/// serves one returns nothing. A reader that took that for an empty queue, and so read
/// nothing in an activation that found statistics waiting, stalled a replay for good on a
/// loaded machine. Here statistics pile up while the reader is not woken (the records are
/// fetched meanwhile): its next activation must still read records.
#[test]
fn statistics_waiting_ahead_of_the_records_do_not_stop_a_read() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("s", 3, 1).unwrap();
    let trades: Vec<Trade> =
        (0..60_000).map(|i| trade(["A", "B", "C"][i % 3], 1_700_000_000_000 + i as i64, 1 + i as i64)).collect();
    fill(&brokers, "s", ValueFormat::Json, &trades);
    let mut reader = readers(&format!("kafka://{brokers}/s?end=latest"), 1, 5_000).remove(0);
    let mut out = Vec::new();
    // The first activation assigns the partitions; then statistics (every 250 ms) pile up.
    reader.read(&mut out);
    std::thread::sleep(Duration::from_millis(1_500));
    let before = accepted(&out).len();
    assert!(before < trades.len(), "the first activation read everything ({before} trades)");
    reader.read(&mut out);
    let after = accepted(&out).len();
    assert!(after > before, "an activation with statistics waiting read nothing ({before} trades before it)");
}

/// Lateness is decided per partition, in offset order; bad values are dead-lettered with
/// the partition's label and the record's offset.
#[test]
fn late_and_bad_records_are_dead_lettered_per_partition() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("d", 1, 1).unwrap();
    let producer: rdkafka::producer::BaseProducer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
    let t = 1_700_000_000_000i64;
    let values = [
        format!(r#"{{"s":"A","p":1,"t":{t},"v":1}}"#),
        format!(r#"{{"s":"A","p":1,"t":{},"v":1}}"#, t - 10_000),
        "not json".to_owned(),
        String::new(),
    ];
    for v in &values {
        producer.send(rdkafka::producer::BaseRecord::<(), _>::to("d").payload(v.as_bytes())).unwrap();
    }
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(10)).unwrap();
    let out = drain(&format!("kafka://{brokers}/d?end=latest"), 1, 5_000);
    assert_eq!(accepted(&out).len(), 1);
    let rejects: BTreeMap<u64, (RejectReason, String)> =
        out.iter().flat_map(|b| &b.rejects).map(|r| (r.position, (r.reason, r.source.clone()))).collect();
    let label = format!("kafka://{brokers}/d/0");
    let want: BTreeMap<u64, (RejectReason, String)> = [
        (1, (RejectReason::Late, label.clone())),
        (2, (RejectReason::InvalidJson, label.clone())),
        (3, (RejectReason::InvalidJson, label)),
    ]
    .into();
    assert_eq!(rejects, want);
}

#[test]
fn a_live_source_with_no_data_releases_its_partitions_after_the_idle_timeout() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("idle", 2, 1).unwrap();
    let plan = Arc::new(resolve(&parse_url(&format!("kafka://{brokers}/idle")).unwrap()).unwrap());
    let mut reader =
        KafkaReader::new(plan, 0, 1, 1_000, Duration::from_millis(200), RETRY_FOR, Arc::new(AtomicBool::new(false)));
    let mut out = Vec::new();
    let start = Instant::now();
    let mut low = i64::MIN;
    while start.elapsed() < Duration::from_secs(5) && low == i64::MIN {
        assert!(matches!(reader.read(&mut out), Poll::Wait(_) | Poll::Ready));
        low = out.iter().filter_map(|b| b.low).max().unwrap_or(i64::MIN);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(low > 1_700_000_000_000, "the watermark follows the wall clock once both partitions are idle: {low}");
}

/// Partition `p` is read by worker `p % workers` only, and each reader says which (with
/// its offset range) when it starts.
#[test]
fn each_reader_describes_the_partitions_it_owns() {
    use super::plan::{KafkaPlan, PartitionRange};
    let spec = parse_url("kafka://h:1/t?end=latest").unwrap();
    let partitions = (0..3).map(|p| PartitionRange { partition: p, start: 10 * p as i64, end: Some(100) }).collect();
    let plan = Arc::new(KafkaPlan { spec, partitions, start_ts: None, end_ts: None });
    let reader =
        |index, peers| KafkaReader::new(plan.clone(), index, peers, 0, Duration::ZERO, RETRY_FOR, Arc::default());
    assert_eq!(
        reader(0, 2).describe(),
        "kafka://h:1/t: worker 0 of 2 reads partitions 0 (offsets 0..100), 2 (offsets 20..100)"
    );
    assert_eq!(reader(1, 2).describe(), "kafka://h:1/t: worker 1 of 2 reads partition 1 (offsets 10..100)");
    assert_eq!(reader(3, 4).describe(), "kafka://h:1/t: worker 3 of 4 reads no partition (the topic has 3)");
    assert_eq!(reader(1, 2).partitions(), vec![1]);
}
