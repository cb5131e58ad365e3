//! Kafka: the `kafka://` source (live, or replaying a bounded range of history) and the
//! producer behind `tradeflow produce`, on librdkafka (`rdkafka`).
//!
//! Transport and format are kept apart: the consumer hands each record's value to the
//! same decoders every source uses — [`crate::format::parse_line`] for JSON (a flat trade,
//! or a Finnhub message), [`avro`] for Avro in the Confluent wire format — and decides
//! lateness per partition with [`crate::lateness::Partitions`].
//!
//! * [`spec`] — the `kafka://` URL: brokers, topic, group, start, end, format.
//! * [`plan`] — the spec resolved against the brokers once at start: partitions and
//!   their offset ranges.
//! * [`source`] — the consumer as a timely reader: partition `p` on worker
//!   `p % workers`, each partition its own watermark; offsets committed to the group
//!   when the run ends cleanly.
//! * [`avro`] and [`registry`] — Avro values and the schema registry.
//! * [`error`] — [`KafkaError`], why talking to the brokers failed (the URL's own
//!   errors are [`KafkaSpecError`]).
//! * [`producer`] — trades to a topic: key = symbol, timestamp = `t`, idempotent,
//!   batched, compressed; creates the topic.

pub mod avro;
pub mod error;
pub mod plan;
pub mod producer;
pub mod registry;
pub mod source;
pub mod spec;

pub use error::KafkaError;
pub use plan::{KafkaPlan, resolve};
pub use registry::RegistryError;
pub use source::{KafkaReader, commit_offsets};
pub use spec::{BoundError, BrokersError, End, KafkaSpec, KafkaSpecError, Start, TopicError, ValueFormat, parse_url};

#[cfg(test)]
mod tests;

/// `tradeflow_kafka_records_total{topic}`: records the `kafka://` readers of `topic` have
/// read in this process (the progress bar of a bounded replay reads it too).
pub fn records_read(topic: &str) -> tradeflow_model::metrics::Counter {
    tradeflow_model::metrics::registry().counter(
        "tradeflow_kafka_records_total",
        "Kafka records read by the kafka:// source, by topic.",
        &[("topic", topic)],
    )
}
