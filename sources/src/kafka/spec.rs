//! `kafka://` URLs (SPEC 8), parsed into a validated [`KafkaSpec`].
//!
//! `kafka://host:port[,host:port]/topic?group=G&start=…&end=…&format=json|avro`
//!
//! * `start` — `earliest`, `latest`, `committed` (the group's committed offsets;
//!   partitions without one start at earliest), a time (`<ms>` or RFC 3339: the first
//!   record at or after it), or `offsets:0=10,1=20` (per partition; unlisted partitions
//!   start at earliest). Default: `committed` with a `group`, else `earliest`.
//! * `end` — absent: the source is live (unbounded). `latest`: the high watermarks seen at
//!   start; a time: records before it; `offsets:0=100,1=200`: offsets below these
//!   (unlisted partitions end at their high watermark at start). Any `end` makes the
//!   replay bounded.
//! * `group` — the consumer group whose offsets `start=committed` resumes from and to
//!   which the run commits its positions when it ends cleanly. Partitions are assigned
//!   by tradeflow (partition `p` to worker `p % workers`), never by the group's
//!   rebalancing.
//! * `format` — `json` (flat JSON trades or Finnhub messages, the default) or `avro`
//!   (Confluent wire format, `schemas/trade.avsc`).
//!
//! With no host (`kafka:///topic`) the brokers come from `KAFKA_BOOTSTRAP_SERVERS`.

use crate::url::TimeError;
use std::collections::BTreeMap;

/// An example of a working `kafka://` URL, for messages.
const EXAMPLE: &str = "e.g. kafka://127.0.0.1:9092/trades?start=earliest&end=latest";

/// Why a `kafka://` URL (or `KAFKA_BOOTSTRAP_SERVERS`) is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KafkaSpecError {
    /// The text does not start with `kafka://`.
    #[error("not a kafka:// URL; {example}", example = EXAMPLE)]
    NotKafka,
    /// The brokers in the URL are not `host:port,...`.
    #[error(transparent)]
    Brokers(#[from] BrokersError),
    /// The URL names no brokers, and `KAFKA_BOOTSTRAP_SERVERS` none usable either.
    #[error("no brokers in the URL and KAFKA_BOOTSTRAP_SERVERS is {servers:?}: {source}")]
    NoBrokers {
        /// `KAFKA_BOOTSTRAP_SERVERS` (empty when unset).
        servers: String,
        /// What is wrong with it.
        source: BrokersError,
    },
    /// The percent-decoded topic is not UTF-8.
    #[error("the topic is not UTF-8")]
    TopicNotUtf8,
    /// The topic is missing or not a legal Kafka topic name.
    #[error("{0}; {example}", example = EXAMPLE)]
    Topic(#[source] TopicError),
    /// `group=` with no name.
    #[error("group= is empty; name a consumer group or drop the option")]
    EmptyGroup,
    /// A `start=` that is not a start.
    #[error("start={value:?}: {source}")]
    Start {
        /// The value as given.
        value: String,
        /// Why it is not a start.
        source: BoundError,
    },
    /// An `end=` that is not an end.
    #[error("end={value:?}: {source}")]
    End {
        /// The value as given.
        value: String,
        /// Why it is not an end.
        source: BoundError,
    },
    /// A `format=` other than `json` or `avro`.
    #[error("format={0:?}: use json or avro")]
    Format(String),
    /// An option `kafka://` does not take.
    #[error("unknown option {0:?}; kafka:// takes group, start, end and format; {example}", example = EXAMPLE)]
    UnknownOption(String),
    /// `start=committed` without `group=`.
    #[error("start=committed needs a group: add &group=NAME")]
    CommittedWithoutGroup,
    /// `start` and `end` times that leave nothing between them.
    #[error("start ({start}) must be before end ({end})")]
    EmptyRange {
        /// `start`, ms.
        start: i64,
        /// `end`, ms.
        end: i64,
    },
}

/// Why a list of brokers is not `host:port,...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokersError {
    /// No broker at all.
    #[error("no broker given; e.g. kafka://127.0.0.1:9092/trades")]
    Empty,
    /// One broker is not `host:port`.
    #[error("broker {0:?} is not host:port; e.g. 127.0.0.1:9092")]
    NotHostPort(String),
}

/// Why a topic name is not one Kafka accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// No topic.
    #[error("no topic given")]
    Empty,
    /// Characters or a length Kafka does not allow.
    #[error("topic {0:?} is not a legal Kafka topic name (1-249 of a-z A-Z 0-9 . _ -)")]
    Illegal(String),
}

/// Why a `start=` or `end=` value is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoundError {
    /// An element of `offsets:...` that is not `partition=offset`.
    #[error("{0:?} is not partition=offset; e.g. offsets:0=10,1=20")]
    NotPartitionOffset(String),
    /// `offsets:` with nothing after it.
    #[error("no offsets given; e.g. offsets:0=10,1=20")]
    NoOffsets,
    /// A `start=` that is no keyword, offsets, nor a time.
    #[error("not earliest, latest, committed, offsets:P=O,... nor a time: {0}")]
    StartNotATime(#[source] TimeError),
    /// An `end=` that is no keyword, offsets, nor a time.
    #[error("not latest, offsets:P=O,... nor a time: {0}")]
    EndNotATime(#[source] TimeError),
}

/// Where each partition starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Start {
    /// The oldest record still in the log.
    Earliest,
    /// The end of the log at start: only records produced from now on.
    Latest,
    /// The group's committed offsets (earliest where there is none).
    Committed,
    /// The first record whose timestamp is at or after this time (ms); earlier records
    /// met after it are skipped by the consumer.
    Time(i64),
    /// Explicit offsets by partition; unlisted partitions start at earliest.
    Offsets(BTreeMap<i32, i64>),
}

/// Where a bounded replay ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// The high watermarks seen at start.
    Latest,
    /// Records whose timestamp is before this time (ms).
    Time(i64),
    /// Offsets below these, by partition; unlisted partitions end at their high
    /// watermark at start.
    Offsets(BTreeMap<i32, i64>),
}

/// How record values are encoded.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum ValueFormat {
    /// A flat JSON trade (or a Finnhub message), as NDJSON lines hold them.
    #[default]
    Json,
    /// Avro in the Confluent wire format (magic 0, 4-byte schema id, Avro binary).
    Avro,
}

impl ValueFormat {
    /// `json` or `avro`.
    pub fn as_str(self) -> &'static str {
        match self {
            ValueFormat::Json => "json",
            ValueFormat::Avro => "avro",
        }
    }

    /// Parses `json` or `avro`.
    pub fn parse(text: &str) -> Result<ValueFormat, KafkaSpecError> {
        match text {
            "json" => Ok(ValueFormat::Json),
            "avro" => Ok(ValueFormat::Avro),
            other => Err(KafkaSpecError::Format(other.to_owned())),
        }
    }
}

/// A parsed `kafka://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaSpec {
    /// Bootstrap servers, `host:port,host:port` (empty: from `KAFKA_BOOTSTRAP_SERVERS`).
    pub brokers: String,
    /// The topic.
    pub topic: String,
    /// The consumer group, if any.
    pub group: Option<String>,
    /// Where each partition starts.
    pub start: Start,
    /// Where a bounded replay ends; `None` for a live source.
    pub end: Option<End>,
    /// How values are encoded.
    pub format: ValueFormat,
}

impl KafkaSpec {
    /// True when the replay ends by itself.
    pub fn is_bounded(&self) -> bool {
        self.end.is_some()
    }

    /// `kafka://brokers/topic`: the source's name in messages and dead letters.
    pub fn label(&self) -> String {
        format!("kafka://{}/{}", self.brokers, self.topic)
    }

    /// Fills in the brokers from `lookup("KAFKA_BOOTSTRAP_SERVERS")` when the URL named
    /// none.
    pub fn resolve_brokers(&mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<(), KafkaSpecError> {
        if self.brokers.is_empty() {
            let servers = lookup("KAFKA_BOOTSTRAP_SERVERS").unwrap_or_default();
            self.brokers =
                check_brokers(servers.trim()).map_err(|source| KafkaSpecError::NoBrokers { servers, source })?;
        }
        Ok(())
    }
}

/// Parses `kafka://host:port[,host:port]/topic?…` (see the module documentation).
pub fn parse_url(text: &str) -> Result<KafkaSpec, KafkaSpecError> {
    let rest = text.strip_prefix("kafka://").ok_or(KafkaSpecError::NotKafka)?;
    let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = location.split_once('/').unwrap_or((location, ""));
    let brokers = if authority.is_empty() { String::new() } else { check_brokers(authority)? };
    let topic = percent_encoding::percent_decode_str(path.trim_end_matches('/'))
        .decode_utf8()
        .map_err(|_| KafkaSpecError::TopicNotUtf8)?
        .into_owned();
    check_topic(&topic).map_err(KafkaSpecError::Topic)?;
    let mut spec =
        KafkaSpec { brokers, topic, group: None, start: Start::Earliest, end: None, format: ValueFormat::Json };
    let mut start = None;
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "group" if !value.is_empty() => spec.group = Some(value.into_owned()),
            "group" => return Err(KafkaSpecError::EmptyGroup),
            "start" => {
                let parsed = parse_start(&value);
                start = Some(parsed.map_err(|source| KafkaSpecError::Start { value: value.into_owned(), source })?)
            }
            "end" => {
                let parsed = parse_end(&value);
                spec.end = Some(parsed.map_err(|source| KafkaSpecError::End { value: value.into_owned(), source })?)
            }
            "format" => spec.format = ValueFormat::parse(&value)?,
            other => return Err(KafkaSpecError::UnknownOption(other.to_owned())),
        }
    }
    spec.start = match start {
        Some(Start::Committed) if spec.group.is_none() => {
            return Err(KafkaSpecError::CommittedWithoutGroup);
        }
        Some(start) => start,
        None if spec.group.is_some() => Start::Committed,
        None => Start::Earliest,
    };
    if let (Start::Time(from), Some(End::Time(to))) = (&spec.start, &spec.end)
        && from >= to
    {
        return Err(KafkaSpecError::EmptyRange { start: *from, end: *to });
    }
    Ok(spec)
}

fn check_brokers(text: &str) -> Result<String, BrokersError> {
    let brokers: Vec<&str> = text.split(',').map(str::trim).filter(|b| !b.is_empty()).collect();
    if brokers.is_empty() {
        return Err(BrokersError::Empty);
    }
    for broker in &brokers {
        let port = broker.rsplit_once(':').map(|(host, port)| (host, port.parse::<u16>()));
        match port {
            Some((host, Ok(_))) if !host.is_empty() => {}
            _ => return Err(BrokersError::NotHostPort((*broker).to_owned())),
        }
    }
    Ok(brokers.join(","))
}

/// Kafka's rule for topic names: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn check_topic(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError::Empty);
    }
    let legal = topic.len() <= 249 && topic.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !legal || topic == "." || topic == ".." {
        return Err(TopicError::Illegal(topic.to_owned()));
    }
    Ok(())
}

fn parse_offsets(text: &str) -> Result<BTreeMap<i32, i64>, BoundError> {
    let mut offsets = BTreeMap::new();
    for pair in text.split(',').filter(|p| !p.is_empty()) {
        let parsed = pair
            .split_once('=')
            .and_then(|(p, o)| Some((p.trim().parse::<i32>().ok()?, o.trim().parse::<i64>().ok()?)));
        match parsed {
            Some((partition, offset)) if partition >= 0 && offset >= 0 => {
                offsets.insert(partition, offset);
            }
            _ => return Err(BoundError::NotPartitionOffset(pair.to_owned())),
        }
    }
    if offsets.is_empty() {
        return Err(BoundError::NoOffsets);
    }
    Ok(offsets)
}

fn parse_start(text: &str) -> Result<Start, BoundError> {
    Ok(match text {
        "earliest" => Start::Earliest,
        "latest" => Start::Latest,
        "committed" => Start::Committed,
        _ => match text.strip_prefix("offsets:") {
            Some(list) => Start::Offsets(parse_offsets(list)?),
            None => Start::Time(crate::url::parse_time(text).map_err(BoundError::StartNotATime)?),
        },
    })
}

fn parse_end(text: &str) -> Result<End, BoundError> {
    Ok(match text {
        "latest" => End::Latest,
        _ => match text.strip_prefix("offsets:") {
            Some(list) => End::Offsets(parse_offsets(list)?),
            None => End::Time(crate::url::parse_time(text).map_err(BoundError::EndNotATime)?),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spec_example() {
        let spec = parse_url("kafka://h1:9092,h2:9093/trades?group=G&start=earliest&end=latest&format=avro").unwrap();
        assert_eq!(spec.brokers, "h1:9092,h2:9093");
        assert_eq!(spec.topic, "trades");
        assert_eq!(spec.group.as_deref(), Some("G"));
        assert_eq!((&spec.start, &spec.end, spec.format), (&Start::Earliest, &Some(End::Latest), ValueFormat::Avro));
        assert_eq!(spec.label(), "kafka://h1:9092,h2:9093/trades");
    }

    #[test]
    fn parses_bounds() {
        let spec = parse_url("kafka://h:1/t?start=2023-11-14T22:13:20Z&end=1700000060000").unwrap();
        assert_eq!(spec.start, Start::Time(1_700_000_000_000));
        assert_eq!(spec.end, Some(End::Time(1_700_000_060_000)));
        assert!(!parse_url("kafka://h:1/t").unwrap().is_bounded());
        let spec = parse_url("kafka://h:1/t?start=offsets:0=10,1=20&end=offsets:1=30").unwrap();
        assert_eq!(spec.start, Start::Offsets([(0, 10), (1, 20)].into()));
        assert_eq!(spec.end, Some(End::Offsets([(1, 30)].into())));
        // A group resumes by default; without one the default is earliest.
        assert_eq!(parse_url("kafka://h:1/t?group=g").unwrap().start, Start::Committed);
        assert_eq!(parse_url("kafka://h:1/t").unwrap().start, Start::Earliest);
    }

    #[test]
    fn brokers_can_come_from_the_environment() {
        let mut spec = parse_url("kafka:///trades").unwrap();
        assert_eq!(spec.brokers, "");
        spec.resolve_brokers(|_| Some("k:9092".into())).unwrap();
        assert_eq!(spec.brokers, "k:9092");
        let mut spec = parse_url("kafka:///trades").unwrap();
        let e = spec.resolve_brokers(|_| None).unwrap_err();
        assert!(e.to_string().contains("KAFKA_BOOTSTRAP_SERVERS"), "{e}");
    }

    #[test]
    fn errors_name_the_value_and_the_fix() {
        for (url, needle) in [
            ("kafka://h:1/", "no topic"),
            ("kafka://h:1/a b", "not a legal Kafka topic"),
            ("kafka://h/t", "not host:port"),
            ("kafka://h:1/t?start=soon", "start=\"soon\""),
            ("kafka://h:1/t?end=offsets:x", "partition=offset"),
            ("kafka://h:1/t?format=xml", "json or avro"),
            ("kafka://h:1/t?speed=1", "unknown option \"speed\""),
            ("kafka://h:1/t?start=committed", "needs a group"),
            ("kafka://h:1/t?start=2000&end=1000", "must be before"),
        ] {
            let e = parse_url(url).unwrap_err().to_string();
            assert!(e.contains(needle), "{url}: {e}");
        }
    }
}
