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
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--source {url:?}: {reason}")]
pub struct SourceUrlError {
    /// The URL as given.
    pub url: String,
    /// What is wrong and how to fix it.
    pub reason: String,
}

/// Parses a `--source` URL.
pub fn parse_source(text: &str) -> Result<SourceSpec, SourceUrlError> {
    let fail = |reason: String| SourceUrlError { url: text.to_owned(), reason };
    // Several brokers (`kafka://h1:9092,h2:9092/topic`) are not a URL authority the `url`
    // crate accepts.
    if text == "-" || text == "stdin://" {
        return Ok(SourceSpec::Stdin);
    }
    if text.starts_with("kafka://") {
        return crate::kafka::parse_url(text).map(SourceSpec::Kafka).map_err(fail);
    }
    let url = Url::parse(text).map_err(|e| {
        fail(format!("not a URL ({e}); use file:///abs/path.ndjson, - (standard input), sim://?rate=50000, kafka://host:9092/topic, finnhub://?symbols=AAPL or lake:///abs/dir"))
    })?;
    match url.scheme() {
        "file" => parse_file(&url).map_err(fail),
        "sim" => parse_sim(&url).map_err(fail),
        "kafka" => crate::kafka::parse_url(text).map(SourceSpec::Kafka).map_err(fail),
        "finnhub" => crate::finnhub::parse_url(&url)
            .map(SourceSpec::Finnhub)
            .map_err(|reason| SourceUrlError { url: crate::finnhub::redact_token(text), reason }),
        "lake" | "lake+s3" => parse_lake(&url).map_err(fail),
        other => Err(fail(format!("unknown scheme {other:?}; supported: file:///abs/path, sim://?..."))),
    }
}

fn parse_file(url: &Url) -> Result<SourceSpec, String> {
    if url.host_str().is_some_and(|h| !h.is_empty()) {
        return Err(format!(
            "the path must be absolute, with three slashes: file:///{}{}",
            url.host_str().unwrap_or_default(),
            url.path()
        ));
    }
    if url.query().is_some() {
        return Err("file:// sources take no options".into());
    }
    let path =
        url.to_file_path().map_err(|_| "not a local absolute path; e.g. file:///data/trades.ndjson".to_owned())?;
    Ok(SourceSpec::File { path })
}

fn parse_lake(url: &Url) -> Result<SourceSpec, String> {
    let lake = if url.scheme() == "lake" {
        if url.host_str().is_some_and(|h| !h.is_empty()) {
            return Err(format!(
                "the path must be absolute, with three slashes: lake:///{}{}",
                url.host_str().unwrap_or_default(),
                url.path()
            ));
        }
        let path = url.to_file_path().map_err(|_| "not a local absolute path; e.g. lake:///data/lake".to_owned())?;
        format!("file://{}", path.display())
    } else {
        let bucket = url.host_str().unwrap_or_default();
        let path = percent_encoding::percent_decode_str(url.path()).decode_utf8_lossy();
        format!("s3://{bucket}{path}")
    };
    let (mut from, mut to) = (None, None);
    for (key, value) in url.query_pairs() {
        match key.as_ref() {
            "from" => from = Some(parse_time(&value).map_err(|e| format!("from={value:?}: {e}"))?),
            "to" => to = Some(parse_time(&value).map_err(|e| format!("to={value:?}: {e}"))?),
            other => return Err(format!("unknown option {other:?}; lake sources take from and to (RFC 3339 or ms)")),
        }
    }
    if let (Some(f), Some(t)) = (from, to)
        && f >= t
    {
        return Err(format!("from ({f}) must be before to ({t})"));
    }
    Ok(SourceSpec::Lake { lake, from, to })
}

fn parse_sim(url: &Url) -> Result<SourceSpec, String> {
    if url.host_str().is_some_and(|h| !h.is_empty()) || !(url.path().is_empty() || url.path() == "/") {
        return Err("options go in the query: sim://?symbols=AAPL,MSFT&rate=50000&count=1000000&seed=42".into());
    }
    let mut config = SimConfig { rate: DEFAULT_SIM_RATE, ..SimConfig::default() };
    let mut start = None;
    for (key, value) in url.query_pairs() {
        let number = |what: &str| -> Result<u64, String> {
            value.parse::<u64>().map_err(|_| format!("{key}={value:?} is not a non-negative integer ({what})"))
        };
        match key.as_ref() {
            "symbols" => {
                config.symbols = value.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()
            }
            "rate" => config.rate = number("trades per second, 0 = as fast as possible")?,
            "count" => config.count = Some(number("total trades")?),
            "seed" => config.seed = number("random seed")?,
            "start" => {
                start =
                    Some(parse_time(&value).map_err(|e| format!("start={value:?}: {e}"))?).filter(|_| value != "now")
            }
            other => return Err(format!("unknown option {other:?}; sim:// takes symbols, rate, count, seed, start")),
        }
    }
    config.start_ms = start.unwrap_or(crate::sim::DEFAULT_START_MS);
    config.check().map_err(|e| e.to_string())?;
    Ok(SourceSpec::Sim { config, start })
}

/// Parses a time as integer ms since the epoch, RFC 3339, or `now`.
pub fn parse_time(text: &str) -> Result<i64, String> {
    if text == "now" {
        return Ok(crate::batch::wall_ms());
    }
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    // A `+01:00` offset written unescaped in a URL query arrives as ` 01:00`.
    let text = &text.replace(' ', "+");
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("not ms since the epoch nor RFC 3339 ({e}); e.g. 1700000000000 or 2023-11-14T22:13:20Z"))
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
