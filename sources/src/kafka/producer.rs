//! Trades to a Kafka topic: the ingestion producer behind `tradeflow produce`.
//!
//! * Key = the symbol, so librdkafka's partitioner (CRC32 of the key, the same as every
//!   librdkafka-based client) keeps all of a symbol's trades in one partition, in order.
//! * The record timestamp is the trade's `t`, so consumers can bound replays by time.
//! * Values: a flat JSON trade line (without its newline) or Avro in the Confluent wire
//!   format (see [`super::avro`]).
//! * Idempotent (`enable.idempotence=true`: no duplicates and no reordering within a
//!   partition despite librdkafka's internal retries), batched (`linger.ms`), compressed
//!   (lz4 by default; the bundled librdkafka also has snappy and gzip).
//! * A record that still fails after librdkafka's own retries is re-sent, up to
//!   [`RESENDS`] times, then counted as failed; the caller reports failures.
//! * The topic is created with the requested partition count when it does not exist.

use super::KafkaError;
use super::avro::{TRADE_SCHEMA, encode_trade};
use super::plan::{QUERY_TIMEOUT, client_config};
use super::registry::Registry;
use super::spec::{KafkaSpec, ValueFormat};
use crate::format::write_flat_trade;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tradeflow_model::Trade;
use tradeflow_model::metrics::{Counter, registry};

/// How many times a record whose delivery failed is sent again.
pub const RESENDS: usize = 3;

/// How the producer is set up.
#[derive(Clone, Debug)]
pub struct ProducerOptions {
    /// Partitions of the topic if it has to be created.
    pub partitions: i32,
    /// Replication factor of the topic if it has to be created.
    pub replication: i32,
    /// Value encoding.
    pub format: ValueFormat,
    /// `linger.ms`: how long records wait to fill a batch.
    pub linger: Duration,
    /// `compression.type`: none, lz4, snappy or gzip.
    pub compression: String,
}

/// Counts, readable while producing.
#[derive(Debug, Default)]
pub struct ProduceCounts {
    /// Records handed to librdkafka (re-sends not counted).
    pub sent: AtomicU64,
    /// Records acknowledged by the brokers.
    pub delivered: AtomicU64,
    /// Records given up on after [`RESENDS`] re-sends.
    pub failed: AtomicU64,
    /// Re-sends after a failed delivery.
    pub resent: AtomicU64,
}

/// A record to send again: key, value, timestamp, attempts so far.
type Resend = (Vec<u8>, Vec<u8>, Option<i64>, usize);

/// Delivery reports, counted; failures queued for a re-send.
struct DeliveryContext {
    counts: std::sync::Arc<ProduceCounts>,
    resend: Mutex<Vec<Resend>>,
    first_error: Mutex<Option<String>>,
    delivered: Counter,
    errors: Counter,
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, attempts: usize) {
        match result {
            Ok(_) => {
                self.counts.delivered.fetch_add(1, Ordering::Relaxed);
                self.delivered.inc();
            }
            Err((e, message)) => {
                self.errors.inc();
                let message: OwnedMessage = message.detach();
                self.first_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert_with(|| format!("partition {} : {e}", message.partition()));
                if attempts < RESENDS {
                    let key = message.key().unwrap_or_default().to_vec();
                    let value = message.payload().unwrap_or_default().to_vec();
                    let ts = message.timestamp().to_millis();
                    self.resend.lock().unwrap_or_else(|p| p.into_inner()).push((key, value, ts, attempts + 1));
                } else {
                    self.counts.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// What opening the producer found or did about the topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicStatus {
    /// Its partition count.
    pub partitions: usize,
    /// True when this producer created it.
    pub created: bool,
}

/// Sends trades to one topic.
pub struct TradeProducer {
    producer: BaseProducer<DeliveryContext>,
    topic: String,
    label: String,
    format: ValueFormat,
    schema_id: u32,
    value: Vec<u8>,
    counts: std::sync::Arc<ProduceCounts>,
    sent: Counter,
}

/// Partitions of `topic`, or `None` when it does not exist.
fn partition_count(spec: &KafkaSpec) -> Result<Option<usize>, KafkaError> {
    let consumer: BaseConsumer =
        client_config(spec).create().map_err(|source| KafkaError::Client { label: spec.label(), source })?;
    let metadata = consumer
        .fetch_metadata(Some(&spec.topic), QUERY_TIMEOUT)
        .map_err(|source| KafkaError::Unreachable { label: spec.label(), source, timeout: QUERY_TIMEOUT })?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == spec.topic && t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.partitions().len()))
}

/// Creates the topic if it does not exist; its partition count either way.
pub fn ensure_topic(spec: &KafkaSpec, partitions: i32, replication: i32) -> Result<TopicStatus, KafkaError> {
    if let Some(count) = partition_count(spec)? {
        return Ok(TopicStatus { partitions: count, created: false });
    }
    let admin: AdminClient<_> =
        client_config(spec).create().map_err(|source| KafkaError::AdminClient { label: spec.label(), source })?;
    let topic = NewTopic::new(&spec.topic, partitions, TopicReplication::Fixed(replication));
    let options = AdminOptions::new().operation_timeout(Some(QUERY_TIMEOUT)).request_timeout(Some(QUERY_TIMEOUT));
    let results = futures::executor::block_on(admin.create_topics(&[topic], &options))
        .map_err(|source| KafkaError::CreateTopic { label: spec.label(), source })?;
    let mut created = true;
    for result in results {
        match result {
            Ok(_) => {}
            // Someone else created it in the meantime.
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => created = false,
            Err((topic, code)) => {
                return Err(KafkaError::TopicRefused { label: spec.label(), topic, partitions, replication, code });
            }
        }
    }
    // Metadata can lag the creation by a moment.
    let deadline = Instant::now() + QUERY_TIMEOUT;
    loop {
        if let Some(count) = partition_count(spec)? {
            return Ok(TopicStatus { partitions: count, created });
        }
        if Instant::now() >= deadline {
            return Err(KafkaError::TopicNotShown { label: spec.label() });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl TradeProducer {
    /// Connects, creating the topic with `options.partitions` if it does not exist.
    pub fn open(spec: &KafkaSpec, options: &ProducerOptions) -> Result<(TradeProducer, TopicStatus), KafkaError> {
        let status = ensure_topic(spec, options.partitions, options.replication)?;
        let schema_id =
            match (options.format, std::env::var("SCHEMA_REGISTRY_URL").ok().filter(|u| !u.trim().is_empty())) {
                (ValueFormat::Avro, Some(url)) => {
                    Registry::new(url.trim())?.register(&format!("{}-value", spec.topic), TRADE_SCHEMA)?
                }
                // Without a registry consumers use schemas/trade.avsc whatever the id.
                _ => 0,
            };
        let r = registry();
        let topic = spec.topic.as_str();
        let counts = std::sync::Arc::new(ProduceCounts::default());
        let context = DeliveryContext {
            counts: counts.clone(),
            resend: Mutex::default(),
            first_error: Mutex::default(),
            delivered: r.counter(
                "tradeflow_kafka_produced_total",
                "Records the brokers acknowledged to `tradeflow produce`, by topic.",
                &[("topic", topic)],
            ),
            errors: r.counter(
                "tradeflow_kafka_produce_errors_total",
                "Failed deliveries reported to `tradeflow produce` (each is re-sent a few times), by topic.",
                &[("topic", topic)],
            ),
        };
        let producer: BaseProducer<DeliveryContext> = client_config(spec)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", options.linger.as_millis().to_string())
            .set("compression.type", &options.compression)
            .set("batch.num.messages", "100000")
            .set("batch.size", "4000000")
            .set("queue.buffering.max.messages", "2000000")
            .set("queue.buffering.max.kbytes", "1048576")
            .set("message.timeout.ms", "120000")
            .create_with_context(context)
            .map_err(|source| KafkaError::Producer { label: spec.label(), source })?;
        let sent = r.counter(
            "tradeflow_kafka_sent_total",
            "Records handed to librdkafka by `tradeflow produce`, by topic.",
            &[("topic", topic)],
        );
        let producer = TradeProducer {
            producer,
            topic: spec.topic.clone(),
            label: spec.label(),
            format: options.format,
            schema_id,
            value: Vec::with_capacity(256),
            counts,
            sent,
        };
        Ok((producer, status))
    }

    /// The counts so far.
    pub fn counts(&self) -> &std::sync::Arc<ProduceCounts> {
        &self.counts
    }

    /// The schema id written in Avro values (0 without a registry).
    pub fn schema_id(&self) -> u32 {
        self.schema_id
    }

    /// Encodes and enqueues one trade (waiting while librdkafka's queue is full).
    pub fn send(&mut self, trade: &Trade) -> Result<(), KafkaError> {
        self.value.clear();
        match self.format {
            ValueFormat::Json => {
                write_flat_trade(
                    &mut self.value,
                    trade.symbol.as_str(),
                    trade.price,
                    trade.volume,
                    trade.ts,
                    trade.conditions.as_json(),
                );
                self.value.pop();
            }
            ValueFormat::Avro => encode_trade(&mut self.value, self.schema_id, trade),
        }
        let key = trade.symbol.as_str().as_bytes();
        let value = std::mem::take(&mut self.value);
        let result = self.enqueue(key, &value, Some(trade.ts), 0);
        self.value = value;
        result?;
        self.counts.sent.fetch_add(1, Ordering::Relaxed);
        self.sent.inc();
        Ok(())
    }

    fn enqueue(&self, key: &[u8], value: &[u8], ts: Option<i64>, attempts: usize) -> Result<(), KafkaError> {
        loop {
            let mut record = BaseRecord::with_opaque_to(&self.topic, attempts).key(key).payload(value);
            if let Some(ts) = ts {
                record = record.timestamp(ts);
            }
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((RdKafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    self.producer.poll(Duration::from_millis(10));
                }
                Err((source, _)) => return Err(KafkaError::Librdkafka { label: self.label.clone(), source }),
            }
        }
    }

    /// Serves delivery reports and re-sends failed records; call regularly.
    pub fn poll(&self) -> Result<(), KafkaError> {
        self.producer.poll(Duration::ZERO);
        let resend = std::mem::take(&mut *self.producer.context().resend.lock().unwrap_or_else(|p| p.into_inner()));
        for (key, value, ts, attempts) in resend {
            self.counts.resent.fetch_add(1, Ordering::Relaxed);
            self.enqueue(&key, &value, ts, attempts)?;
        }
        Ok(())
    }

    /// The first delivery error seen, if any.
    pub fn first_error(&self) -> Option<String> {
        self.producer.context().first_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits until every record is delivered or given up on (at most `timeout`).
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.poll()?;
            let _ = self.producer.flush(Duration::from_millis(100));
            self.poll()?;
            let c = &self.counts;
            let settled = c.delivered.load(Ordering::Relaxed) + c.failed.load(Ordering::Relaxed);
            if settled >= c.sent.load(Ordering::Relaxed) && self.producer.in_flight_count() == 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let records = self.producer.in_flight_count();
                return Err(KafkaError::Undelivered { label: self.label.clone(), records, timeout });
            }
        }
    }
}
