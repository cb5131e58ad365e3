//! `--source` URLs (SPEC 8), parsed into a validated [`SourceSpec`].
//!
//! * `file:///abs/path` — an NDJSON file, or a directory of them (read in name order).
//! * `sim://?symbols=AAPL,MSFT&rate=50000&count=1000000&seed=42&start=<ms|RFC3339|now>` —
//!   rate in trades/s (0 = as fast as possible), count = stop after that many (absent =
//!   unbounded), start = event time of the first trade (default: now).
//! * `finnhub://?symbols=AAPL,MSFT,BINANCE:BTCUSDT&endpoint=ws://127.0.0.1:8765&silence=90s`
//!   — Finnhub's WebSocket feed (see [`crate::finnhub::parse_url`]).
//! * `kafka://host:port[,host:port]/topic?group=G&start=…&end=…&format=json|avro` — a
//!   Kafka topic, live or a bounded replay (see [`crate::kafka::spec`]).
//! * `-` or `stdin://` — NDJSON from standard input, until it ends (see [`crate::stdin`]).
//!
//! Every error names the offending value and shows a working example.

use crate::sim::SimConfig;
use std::path::PathBuf;
use url::Url;

/// Default simulator rate, trades/s.
pub const DEFAULT_SIM_RATE: u64 = 10_000;

/// A parsed `--source`.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceSpec {
    /// An NDJSON file or directory.
    File {
        /// The path.
        path: PathBuf,
    },
    /// The lake's trades, replayed.
    Lake {
        /// The lake, as a `--lake` URL (`file:///abs/dir` or `s3://bucket/prefix`).
        lake: String,
        /// Keep trades at or after this time (ms).
        from: Option<i64>,
        /// Keep trades before this time (ms).
        to: Option<i64>,
    },
    /// The market simulator.
    Sim {
        /// What to simulate (`start_ms` is resolved when the run starts if `start` is None).
        config: SimConfig,
        /// Event time of the start, if given.
        start: Option<i64>,
    },
    /// Finnhub's WebSocket feed (the key and `FINNHUB_WS_URL` are resolved later).
    Finnhub(crate::finnhub::FinnhubSpec),
    /// A Kafka topic, live or replayed (brokers from `KAFKA_BOOTSTRAP_SERVERS` when the
    /// URL names none: resolved later).
    Kafka(crate::kafka::KafkaSpec),
    /// Standard input.
    Stdin,
}

impl SourceSpec {
    /// True when the source ends by itself.
    pub fn is_bounded(&self) -> bool {
        match self {
            SourceSpec::File { .. } | SourceSpec::Lake { .. } => true,
            SourceSpec::Sim { config, .. } => config.count.is_some(),
            SourceSpec::Finnhub(_) | SourceSpec::Stdin => false,
            SourceSpec::Kafka(spec) => spec.is_bounded(),
        }
    }
}

/// Why a `--source` is not usable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("--source {url:?}: {reason}")]
pub struct SourceUrlError {
    /// The URL as given (a Finnhub key in it replaced by `***`).
    pub url: String,
    /// What is wrong and how to fix it.
    #[source]
    pub reason: SourceUrlReason,
}

/// What is wrong with a `--source` URL; each message names the value and a fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceUrlReason {
    /// Not a URL at all.
    #[error(
        "not a URL ({0}); use file:///abs/path.ndjson, - (standard input), sim://?rate=50000, kafka://host:9092/topic, finnhub://?symbols=AAPL or lake:///abs/dir"
    )]
    NotAUrl(#[source] url::ParseError),
    /// A scheme no source has.
    #[error("unknown scheme {0:?}; supported: file:///abs/path, sim://?...")]
    UnknownScheme(String),
    /// `file://host/path` or `lake://host/path`: two slashes, so the first segment was
    /// taken for a host.
    #[error("the path must be absolute, with three slashes: {scheme}:///{host}{path}")]
    NotAbsolute {
        /// `file` or `lake`.
        scheme: &'static str,
        /// What the URL parser took for a host.
        host: String,
        /// The rest of the path.
        path: String,
    },
    /// The URL is no local absolute path.
    #[error("not a local absolute path; e.g. {example}")]
    NotALocalPath {
        /// A working URL of the same scheme.
        example: &'static str,
    },
    /// `file://…?…`.
    #[error("file:// sources take no options")]
    FileOptions,
    /// `sim://host/path`.
    #[error("options go in the query: sim://?symbols=AAPL,MSFT&rate=50000&count=1000000&seed=42")]
    SimOptionsInPath,
    /// An option the scheme does not take.
    #[error("unknown option {option:?}; {takes}")]
    UnknownOption {
        /// The option as given.
        option: String,
        /// Which options the scheme takes.
        takes: &'static str,
    },
    /// A time option (`from`, `to`, `start`) that is not a time.
    #[error("{option}={value:?}: {source}")]
    BadTime {
        /// The option.
        option: &'static str,
        /// Its value.
        value: String,
        /// Why it is not a time.
        source: TimeError,
    },
    /// A numeric `sim://` option that is not a non-negative integer.
    #[error("{option}={value:?} is not a non-negative integer ({meaning})")]
    NotANumber {
        /// The option.
        option: String,
        /// Its value.
        value: String,
        /// What the number means.
        meaning: &'static str,
    },
    /// `lake://…?from=F&to=T` with `F >= T`.
    #[error("from ({from}) must be before to ({to})")]
    EmptyRange {
        /// `from`, ms.
        from: i64,
        /// `to`, ms.
        to: i64,
    },
    /// A `sim://` configuration that cannot be simulated.
    #[error(transparent)]
    Sim(#[from] crate::sim::SimConfigError),
    /// A bad `kafka://` URL.
    #[error(transparent)]
    Kafka(#[from] crate::kafka::KafkaSpecError),
    /// A bad `finnhub://` URL.
    #[error(transparent)]
    Finnhub(#[from] crate::finnhub::FinnhubError),
}

/// Parses a `--source` URL.
pub fn parse_source(text: &str) -> Result<SourceSpec, SourceUrlError> {
    let fail = |reason: SourceUrlReason| SourceUrlError { url: text.to_owned(), reason };
    // Several brokers (`kafka://h1:9092,h2:9092/topic`) are not a URL authority the `url`
    // crate accepts.
    if text == "-" || text == "stdin://" {
        return Ok(SourceSpec::Stdin);
    }
    if text.starts_with("kafka://") {
        return crate::kafka::parse_url(text).map(SourceSpec::Kafka).map_err(|e| fail(e.into()));
    }
    let url = Url::parse(text).map_err(|e| fail(SourceUrlReason::NotAUrl(e)))?;
    match url.scheme() {
        "file" => parse_file(&url).map_err(fail),
        "sim" => parse_sim(&url).map_err(fail),
        "kafka" => crate::kafka::parse_url(text).map(SourceSpec::Kafka).map_err(|e| fail(e.into())),
        "finnhub" => crate::finnhub::parse_url(&url)
            .map(SourceSpec::Finnhub)
            .map_err(|e| SourceUrlError { url: crate::finnhub::redact_token(text), reason: e.into() }),
        "lake" | "lake+s3" => parse_lake(&url).map_err(fail),
        other => Err(fail(SourceUrlReason::UnknownScheme(other.to_owned()))),
    }
}

/// `file://host/path` or `lake://host/path`, as an error; `None` when the host is empty.
fn not_absolute(scheme: &'static str, url: &Url) -> Option<SourceUrlReason> {
    let host = url.host_str().filter(|h| !h.is_empty())?;
    Some(SourceUrlReason::NotAbsolute { scheme, host: host.to_owned(), path: url.path().to_owned() })
}

fn parse_file(url: &Url) -> Result<SourceSpec, SourceUrlReason> {
    if let Some(e) = not_absolute("file", url) {
        return Err(e);
    }
    if url.query().is_some() {
        return Err(SourceUrlReason::FileOptions);
    }
    let path =
        url.to_file_path().map_err(|_| SourceUrlReason::NotALocalPath { example: "file:///data/trades.ndjson" })?;
    Ok(SourceSpec::File { path })
}

fn parse_lake(url: &Url) -> Result<SourceSpec, SourceUrlReason> {
    let lake = if url.scheme() == "lake" {
        if let Some(e) = not_absolute("lake", url) {
            return Err(e);
        }
        let path = url.to_file_path().map_err(|_| SourceUrlReason::NotALocalPath { example: "lake:///data/lake" })?;
        format!("file://{}", path.display())
    } else {
        let bucket = url.host_str().unwrap_or_default();
        let path = percent_encoding::percent_decode_str(url.path()).decode_utf8_lossy();
        format!("s3://{bucket}{path}")
    };
    let (mut from, mut to) = (None, None);
    for (key, value) in url.query_pairs() {
        let time = |option| {
            parse_time(&value).map_err(|source| SourceUrlReason::BadTime { option, value: value.to_string(), source })
        };
        match key.as_ref() {
            "from" => from = Some(time("from")?),
            "to" => to = Some(time("to")?),
            other => {
                return Err(SourceUrlReason::UnknownOption {
                    option: other.to_owned(),
                    takes: "lake sources take from and to (RFC 3339 or ms)",
                });
            }
        }
    }
    if let (Some(f), Some(t)) = (from, to)
        && f >= t
    {
        return Err(SourceUrlReason::EmptyRange { from: f, to: t });
    }
    Ok(SourceSpec::Lake { lake, from, to })
}

fn parse_sim(url: &Url) -> Result<SourceSpec, SourceUrlReason> {
    if url.host_str().is_some_and(|h| !h.is_empty()) || !(url.path().is_empty() || url.path() == "/") {
        return Err(SourceUrlReason::SimOptionsInPath);
    }
    let mut config = SimConfig { rate: DEFAULT_SIM_RATE, ..SimConfig::default() };
    let mut start = None;
    for (key, value) in url.query_pairs() {
        let number = |meaning: &'static str| -> Result<u64, SourceUrlReason> {
            value.parse::<u64>().map_err(|_| SourceUrlReason::NotANumber {
                option: key.to_string(),
                value: value.to_string(),
                meaning,
            })
        };
        match key.as_ref() {
            "symbols" => {
                config.symbols = value.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()
            }
            "rate" => config.rate = number("trades per second, 0 = as fast as possible")?,
            "count" => config.count = Some(number("total trades")?),
            "seed" => config.seed = number("random seed")?,
            "start" => {
                let time = parse_time(&value).map_err(|source| SourceUrlReason::BadTime {
                    option: "start",
                    value: value.to_string(),
                    source,
                })?;
                start = Some(time).filter(|_| value != "now")
            }
            other => {
                return Err(SourceUrlReason::UnknownOption {
                    option: other.to_owned(),
                    takes: "sim:// takes symbols, rate, count, seed, start",
                });
            }
        }
    }
    config.start_ms = start.unwrap_or(crate::sim::DEFAULT_START_MS);
    config.check()?;
    Ok(SourceSpec::Sim { config, start })
}

/// A time that is neither ms since the epoch nor RFC 3339.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not ms since the epoch nor RFC 3339 ({0}); e.g. 1700000000000 or 2023-11-14T22:13:20Z")]
pub struct TimeError(#[source] pub chrono::ParseError);

/// Parses a time as integer ms since the epoch, RFC 3339, or `now`.
pub fn parse_time(text: &str) -> Result<i64, TimeError> {
    if text == "now" {
        return Ok(crate::batch::wall_ms());
    }
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    // A `+01:00` offset written unescaped in a URL query arrives as ` 01:00`.
    let text = &text.replace(' ', "+");
    chrono::DateTime::parse_from_rfc3339(text).map(|t| t.timestamp_millis()).map_err(TimeError)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spec_examples() {
        let spec = parse_source("sim://?symbols=AAPL,MSFT&rate=50000&count=1000000&seed=42").unwrap();
        let SourceSpec::Sim { config, start } = spec else { panic!() };
        assert_eq!(config.symbols, vec!["AAPL", "MSFT"]);
        assert_eq!((config.rate, config.count, config.seed, start), (50_000, Some(1_000_000), 42, None));
        assert_eq!(
            parse_source("file:///data/trades.ndjson").unwrap(),
            SourceSpec::File { path: "/data/trades.ndjson".into() }
        );
        let SourceSpec::Sim { config, .. } = parse_source("sim://").unwrap() else { panic!() };
        assert_eq!((config.rate, config.count), (DEFAULT_SIM_RATE, None));
        let SourceSpec::Sim { start, .. } = parse_source("sim://?start=2023-11-14T22:13:20Z").unwrap() else {
            panic!()
        };
        assert_eq!(start, Some(1_700_000_000_000));
        let SourceSpec::Sim { config, .. } = parse_source("sim://?symbols=IC%20MARKETS:1,KRAKEN:XBT/USD").unwrap()
        else {
            panic!()
        };
        assert_eq!(config.symbols, vec!["IC MARKETS:1", "KRAKEN:XBT/USD"]);
    }

    #[test]
    fn parses_lake_sources() {
        let spec = parse_source("lake:///data/lake?from=2023-11-14T22:00:00Z&to=1700003600000").unwrap();
        assert_eq!(
            spec,
            SourceSpec::Lake {
                lake: "file:///data/lake".into(),
                from: Some(1_699_999_200_000),
                to: Some(1_700_003_600_000)
            }
        );
        let spec = parse_source("lake+s3://bucket/some/prefix").unwrap();
        assert_eq!(spec, SourceSpec::Lake { lake: "s3://bucket/some/prefix".into(), from: None, to: None });
        assert!(parse_source("lake:///x?from=2023-11-15T00:00:00Z&to=2023-11-14T00:00:00Z").is_err());
        let spec = parse_source("lake+s3://b/my%20prefix?from=2023-11-14T23:00:00+01:00").unwrap();
        assert_eq!(spec, SourceSpec::Lake { lake: "s3://b/my prefix".into(), from: Some(1_699_999_200_000), to: None });
        assert!(parse_source("lake://x/y").unwrap_err().to_string().contains("lake:///x/y"));
    }

    #[test]
    fn errors_name_the_value_and_the_fix() {
        let e = parse_source("sim://?rate=fast").unwrap_err();
        assert!(e.to_string().contains("rate=\"fast\"") && e.to_string().contains("non-negative integer"), "{e}");
        let e = parse_source("sim://?speed=1").unwrap_err();
        assert!(e.to_string().contains("unknown option \"speed\""), "{e}");
        let e = parse_source("file://data/trades.ndjson").unwrap_err();
        assert!(e.to_string().contains("file:///data/trades.ndjson"), "{e}");
        let e = parse_source("ftp://x").unwrap_err();
        assert!(e.to_string().contains("unknown scheme"), "{e}");
        let e = parse_source("trades.ndjson").unwrap_err();
        assert!(e.to_string().contains("file:///"), "{e}");
        let e = parse_source("sim://?symbols=A%00B").unwrap_err();
        assert!(e.to_string().contains("control character"), "{e}");
    }
}
