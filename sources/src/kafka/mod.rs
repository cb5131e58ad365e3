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

/// A topic, its partitions and offset ranges resolved against the brokers: partition `p`
/// is read by worker `p % peers`; always resumable from its offsets.
#[derive(Clone, Debug)]
pub struct KafkaSource(pub std::sync::Arc<KafkaPlan>);

impl crate::source::Source for KafkaSource {
    fn bounded(&self) -> bool {
        self.0.is_bounded()
    }
    fn resumable(&self, _asked: bool) -> bool {
        true
    }
    fn identity(&self, _text: &str) -> String {
        format!("{} format={:?}", self.0.spec.label(), self.0.spec.format)
    }
    fn extent(&self, workers: std::ops::Range<usize>, peers: usize, _processes: usize) -> crate::source::Extent {
        if !self.0.is_bounded() {
            return crate::source::Extent::Unknown;
        }
        let records = workers
            .flat_map(|w| self.0.owned_by(w, peers))
            .map(|r| r.end.map_or(0, |end| end.saturating_sub(r.start).max(0) as u64))
            .sum();
        crate::source::Extent::Records { records, topic: self.0.spec.topic.clone() }
    }
    fn build<'scope>(
        &self,
        scope: timely::dataflow::Scope<'scope, tradeflow_model::Time>,
        context: &crate::source::Context,
    ) -> crate::source::Built<'scope> {
        let c = context;
        let (index, peers) = (scope.index(), scope.peers());
        let reader = KafkaReader::new(
            self.0.clone(),
            index,
            peers,
            c.lateness_ms,
            c.idle_timeout,
            c.kafka_retry_for,
            c.stop.clone(),
        );
        c.checkpointed(scope, "Kafka", reader, KafkaReader::restore, c.backlog.clone())
    }
}

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
