//! Why a Kafka source, or the producer, cannot go on: each error names the source
//! (`kafka://brokers/topic`), what was being done, and librdkafka's reason.

use super::registry::RegistryError;
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::types::RDKafkaRespErr;
use std::time::Duration;

/// What went wrong talking to the brokers (or the schema registry), or restoring a
/// checkpoint of a `kafka://` source. `label` is always the source's
/// `kafka://brokers/topic` (or a partition's `kafka://brokers/topic/partition`).
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// librdkafka refused the client configuration.
    #[error("{label}: cannot create a Kafka client: {source}")]
    Client {
        /// The source.
        label: String,
        /// librdkafka's error.
        source: RdKafkaError,
    },
    /// librdkafka refused the consumer configuration.
    #[error("{label}: cannot create a Kafka consumer: {source}")]
    Consumer {
        /// The source.
        label: String,
        /// librdkafka's error.
        source: RdKafkaError,
    },
    /// librdkafka refused the producer configuration.
    #[error("{label}: cannot create a Kafka producer: {source}")]
    Producer {
        /// The source.
        label: String,
        /// librdkafka's error.
        source: RdKafkaError,
    },
    /// librdkafka refused the admin client configuration.
    #[error("{label}: cannot create an admin client: {source}")]
    AdminClient {
        /// The source.
        label: String,
        /// librdkafka's error.
        source: RdKafkaError,
    },
    /// The metadata query of a run starting got no answer.
    #[error("{label}: cannot reach the brokers: {source} (within {timeout:?}); is a broker listening there?")]
    NotListening {
        /// The source.
        label: String,
        /// librdkafka's error.
        source: RdKafkaError,
        /// How long the query waited.
        timeout: Duration,
    },
    /// The producer's metadata query got no answer.
    #[error("{label}: cannot reach the brokers: {source} (within {timeout:?})")]
    Unreachable {
        /// The source.
        label: String,
        /// librdkafka's error.
        source: RdKafkaError,
        /// How long the query waited.
        timeout: Duration,
    },
    /// The topic is not in the brokers' metadata.
    #[error("{label}: no such topic: {}", missing_topic(.brokers, .topic))]
    NoSuchTopic {
        /// The source.
        label: String,
        /// The brokers, for the `tradeflow produce` example.
        brokers: String,
        /// The topic.
        topic: String,
    },
    /// The metadata has an error for the topic.
    #[error("{label}: {}: {code:?}", missing_topic(.brokers, .topic))]
    TopicUnavailable {
        /// The source.
        label: String,
        /// The brokers, for the `tradeflow produce` example.
        brokers: String,
        /// The topic.
        topic: String,
        /// The brokers' error code for it.
        code: RDKafkaRespErr,
    },
    /// The topic has no partitions.
    #[error("{label}: the topic has no partitions: {}", missing_topic(.brokers, .topic))]
    NoPartitions {
        /// The source.
        label: String,
        /// The brokers, for the `tradeflow produce` example.
        brokers: String,
        /// The topic.
        topic: String,
    },
    /// A partition's low and high watermarks could not be read.
    #[error("{label}: partition {partition}: cannot read its watermarks: {source}")]
    Watermarks {
        /// The source.
        label: String,
        /// The partition.
        partition: i32,
        /// librdkafka's error.
        source: RdKafkaError,
    },
    /// The small fetches that find the true high watermarks failed.
    #[error("{label}: probing the watermarks: {source}")]
    Probe {
        /// The source.
        label: String,
        /// librdkafka's error.
        source: RdKafkaError,
    },
    /// The small fetches that find the true high watermarks got no answer.
    #[error("{label}: probing the high watermarks: no fetch answered within {timeout:?}")]
    ProbeTimeout {
        /// The source.
        label: String,
        /// How long they waited.
        timeout: Duration,
    },
    /// The group's committed offsets could not be read.
    #[error("{label}: cannot read the group's committed offsets: {source}")]
    CommittedOffsets {
        /// The source.
        label: String,
        /// librdkafka's error.
        source: RdKafkaError,
    },
    /// A start time could not be put in an offset-for-time query.
    #[error("{label}: offset lookup: {source}")]
    OffsetLookup {
        /// The source.
        label: String,
        /// librdkafka's error.
        source: RdKafkaError,
    },
    /// A partition could not be assigned to a probing consumer.
    #[error("{topic}/{partition}: cannot assign the partition: {source}")]
    AssignPartition {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// librdkafka's error.
        source: RdKafkaError,
    },
    /// This worker's partitions could not be assigned to its consumer.
    #[error("{label}: cannot assign partitions: {source}")]
    Assign {
        /// The source.
        label: String,
        /// librdkafka's error.
        source: RdKafkaError,
    },
    /// librdkafka refused an offset or a record of the source or partition `label`.
    #[error("{label}: {source}")]
    Librdkafka {
        /// The source or partition.
        label: String,
        /// librdkafka's error.
        source: RdKafkaError,
    },
    /// librdkafka refused an offset, outside of any source's context.
    #[error(transparent)]
    Offset(RdKafkaError),
    /// Committing the positions reached to the consumer group failed.
    #[error("{label}: committing offsets for group {group:?}: {source}")]
    Commit {
        /// The source.
        label: String,
        /// The group.
        group: String,
        /// librdkafka's error (boxed: the one variant that would make every
        /// `Result<_, KafkaError>` larger).
        source: Box<RdKafkaError>,
    },
    /// The request to create the topic failed.
    #[error("{label}: creating the topic: {source}")]
    CreateTopic {
        /// The source.
        label: String,
        /// librdkafka's error.
        source: RdKafkaError,
    },
    /// The brokers refused to create the topic.
    #[error("{label}: creating topic {topic:?} with {partitions} partitions (replication {replication}): {code}")]
    TopicRefused {
        /// The source.
        label: String,
        /// The topic.
        topic: String,
        /// Partitions asked for.
        partitions: i32,
        /// Replication factor asked for.
        replication: i32,
        /// The brokers' answer.
        code: RDKafkaErrorCode,
    },
    /// The topic was created but never appeared in the metadata.
    #[error("{label}: the topic was created but does not show in the metadata")]
    TopicNotShown {
        /// The source.
        label: String,
    },
    /// Records still in flight when the producer's flush gave up.
    #[error("{label}: {records} records still undelivered after {timeout:?}")]
    Undelivered {
        /// The topic's label.
        label: String,
        /// Records in flight.
        records: i32,
        /// How long the flush waited.
        timeout: Duration,
    },
    /// The schema registry could not be used.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A checkpoint's state of the source cannot be decoded.
    #[error("{0}")]
    Checkpoint(String),
    /// A checkpoint taken with other partitions on this worker.
    #[error("{label}: the checkpoint was taken with other partitions on this worker ({then:?}, now {now:?})")]
    CheckpointPartitions {
        /// The source.
        label: String,
        /// The partitions the checkpoint has for this worker.
        then: Vec<i32>,
        /// The partitions this worker reads now.
        now: Vec<i32>,
    },
}

/// The explanation of a missing topic, with the command that creates it.
fn missing_topic(brokers: &str, topic: &str) -> String {
    format!(
        "topic {topic:?} does not exist (topics are not created automatically): create it, e.g. with `tradeflow produce --to kafka://{brokers}/{topic} --partitions 4`"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The messages are what users and tests match on: the same text as when they were
    /// formatted in place.
    #[test]
    fn messages_are_unchanged() {
        let (label, brokers, topic) = ("kafka://h:9092/t".to_owned(), "h:9092".to_owned(), "t".to_owned());
        let e = KafkaError::NoSuchTopic { label: label.clone(), brokers: brokers.clone(), topic: topic.clone() };
        assert_eq!(
            e.to_string(),
            "kafka://h:9092/t: no such topic: topic \"t\" does not exist (topics are not created automatically): \
             create it, e.g. with `tradeflow produce --to kafka://h:9092/t --partitions 4`"
        );
        let e = KafkaError::NoPartitions { label: label.clone(), brokers, topic };
        assert!(e.to_string().starts_with("kafka://h:9092/t: the topic has no partitions: topic \"t\" does not exist"));
        let timeout = Duration::from_secs(15);
        let source = RdKafkaError::MetadataFetch(RDKafkaErrorCode::OperationTimedOut);
        let text = format!("{source} (within {timeout:?}); is a broker listening there?");
        let e = KafkaError::NotListening { label: label.clone(), source, timeout };
        assert_eq!(e.to_string(), format!("kafka://h:9092/t: cannot reach the brokers: {text}"));
        let e = KafkaError::Undelivered { label: label.clone(), records: 3, timeout: Duration::from_secs(180) };
        assert_eq!(e.to_string(), "kafka://h:9092/t: 3 records still undelivered after 180s");
        let e = KafkaError::CheckpointPartitions { label, then: vec![0, 2], now: vec![1] };
        assert_eq!(
            e.to_string(),
            "kafka://h:9092/t: the checkpoint was taken with other partitions on this worker ([0, 2], now [1])"
        );
    }
}
