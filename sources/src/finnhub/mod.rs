//! `finnhub://` sources: live trades from Finnhub's WebSocket API, and a compatible server.
//!
//! Background: Finnhub streams trades over one WebSocket per API key
//! (`wss://ws.finnhub.io?token=KEY`). A client sends `{"type":"subscribe","symbol":S}` per
//! symbol (the free tier takes about 50 per connection) and receives
//! `{"type":"trade","data":[{"s":..,"p":..,"t":..,"v":..,"c":[..]},..]}` messages holding
//! several trades of several symbols, `{"type":"ping"}` keep-alives about once a minute,
//! and `{"type":"error","msg":..}` when it refuses something. The connection drops
//! routinely (server restarts, market close, weekends) and the server never replays what
//! was missed.
//!
//! * [`client`] — the connection, on a thread of its own with its own tokio runtime:
//!   connect (TLS through rustls), subscribe, forward every frame, treat silence longer
//!   than `silence` as a dead socket, reconnect with exponential backoff and jitter,
//!   resubscribe, and record every gap in the feed (log line and metrics).
//! * [`source`] — the timely side: frames decoded with the shared parser
//!   ([`crate::format::parse_line`]), lateness decided per symbol, malformed frames
//!   dead-lettered, server errors surfaced as warnings, the watermark reported.
//! * [`server`] — `tradeflow simulate --serve`: a Finnhub-compatible server streaming the
//!   simulator (or a replayed NDJSON file) at real-time pace with current timestamps.
//!
//! The API key travels only in the connection URL. Everything shown — logs, errors,
//! metric labels, dead letters' `source` — uses [`FinnhubConfig::label`], the URL with
//! `token=***`, and any text from outside is passed through [`FinnhubConfig::scrub`].

pub mod client;
pub mod server;
pub mod source;

pub use source::FinnhubReader;

use std::fmt;
use std::time::Duration;
use tradeflow_model::{Symbol, SymbolError};
use url::Url;

/// Finnhub's WebSocket endpoint.
pub const DEFAULT_ENDPOINT: &str = "wss://ws.finnhub.io";
/// Symbols Finnhub's free tier accepts on one connection (about).
pub const FREE_TIER_SYMBOLS: usize = 50;
/// Default silence after which a connection is taken for dead (pings come about once a
/// minute).
pub const DEFAULT_SILENCE: Duration = Duration::from_secs(90);
/// Default first reconnection delay (doubled per failed attempt, with jitter).
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(500);
/// Default longest reconnection delay.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(60);

/// An example of a working `finnhub://` URL, for messages.
const EXAMPLE: &str = "finnhub://?symbols=AAPL,MSFT,BINANCE:BTCUSDT";

/// Why a `finnhub://` source is not usable: its URL, the endpoint or key the environment
/// gives, or a checkpoint being resumed. Values from outside that could hold the key are
/// shown with `token=***`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FinnhubError {
    /// Something between `finnhub://` and `?`.
    #[error("options go in the query: {example}&endpoint=ws://127.0.0.1:8765", example = EXAMPLE)]
    OptionsInPath,
    /// A duration option (`silence`, `backoff`, `max_backoff`) that is not a duration.
    #[error("{option}={value:?}: {source}; use e.g. 90s")]
    BadDuration {
        /// The option.
        option: String,
        /// Its value.
        value: String,
        /// Why it is not a duration.
        source: humantime::DurationError,
    },
    /// A duration option of zero.
    #[error("{option}={value:?}: must be positive, e.g. 90s")]
    ZeroDuration {
        /// The option.
        option: String,
        /// Its value.
        value: String,
    },
    /// One of `symbols=` is not a valid symbol.
    #[error("symbols: {symbol:?} is not a valid symbol: {source}")]
    BadSymbol {
        /// The symbol as given.
        symbol: String,
        /// What is wrong with it.
        source: SymbolError,
    },
    /// `endpoint=` is not a URL.
    #[error("endpoint={:?} is not a URL ({source}); e.g. endpoint=ws://127.0.0.1:8765", redact_token(.value))]
    EndpointNotAUrl {
        /// The value as given.
        value: String,
        /// What the URL parser says.
        source: url::ParseError,
    },
    /// `endpoint=` is not a WebSocket URL.
    #[error("endpoint={:?}: use a ws:// or wss:// URL, e.g. ws://127.0.0.1:8765", redact_token(.value))]
    EndpointNotWebSocket {
        /// The value as given.
        value: String,
    },
    /// `token=` in the source URL.
    #[error("the API key does not go in the URL (URLs end up in logs): set FINNHUB_API_KEY instead")]
    TokenInUrl,
    /// An option `finnhub://` does not take.
    #[error("unknown option {0:?}; finnhub:// takes symbols, endpoint, silence, backoff, max_backoff")]
    UnknownOption(String),
    /// No `symbols=`, or an empty list.
    #[error("no symbols to subscribe to: {example}", example = EXAMPLE)]
    NoSymbols,
    /// `max_backoff` below `backoff`.
    #[error("max_backoff ({max_backoff:?}) is shorter than backoff ({backoff:?}); raise max_backoff")]
    BackoffOrder {
        /// `backoff=`.
        backoff: Duration,
        /// `max_backoff=`.
        max_backoff: Duration,
    },
    /// The endpoint resolved (from `endpoint=`, `FINNHUB_WS_URL` or the default) is not a
    /// URL.
    #[error("{from} {:?} is not a URL: {source}", redact_token(.endpoint))]
    Endpoint {
        /// Where the endpoint came from.
        from: &'static str,
        /// The endpoint.
        endpoint: String,
        /// What the URL parser says.
        source: url::ParseError,
    },
    /// The endpoint resolved is not a WebSocket URL.
    #[error("{from} {:?}: use a ws:// or wss:// URL, e.g. ws://127.0.0.1:8765", redact_token(.endpoint))]
    EndpointScheme {
        /// Where the endpoint came from.
        from: &'static str,
        /// The endpoint.
        endpoint: String,
    },
    /// The endpoint resolved has a `token=`.
    #[error("{from}: the API key does not go in the URL: set FINNHUB_API_KEY instead")]
    TokenInEndpoint {
        /// Where the endpoint came from.
        from: &'static str,
    },
    /// Finnhub's own endpoint without a key.
    #[error(
        "FINNHUB_API_KEY is not set: Finnhub's WebSocket API needs an API key (free at finnhub.io); set it in the environment or in .env, or point the source at a local server with &endpoint=ws://127.0.0.1:8765 (see `tradeflow simulate --serve`)"
    )]
    NoApiKey,
    /// A symbol that is not valid (checked again when resolving).
    #[error("symbol {symbol:?}: {source}")]
    Symbol {
        /// The symbol.
        symbol: String,
        /// What is wrong with it.
        source: SymbolError,
    },
    /// A checkpoint's state of the feed cannot be decoded.
    #[error("{0}")]
    Checkpoint(String),
    /// A checkpoint taken with another number of symbols.
    #[error("{label}: the checkpoint was taken with {then} symbols, now {now}")]
    CheckpointSymbols {
        /// The endpoint as shown (`token=***`).
        label: String,
        /// Symbols when the checkpoint was taken.
        then: usize,
        /// Symbols now.
        now: usize,
    },
}

/// A parsed `finnhub://?symbols=..` URL, before the environment is consulted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinnhubSpec {
    /// Symbols to subscribe to, in order, without repeats.
    pub symbols: Vec<String>,
    /// `endpoint=`: another server (`ws://127.0.0.1:8765`), if given.
    pub endpoint: Option<String>,
    /// `silence=`: no frame for this long means the connection is dead.
    pub silence: Duration,
    /// `backoff=`: the first reconnection delay.
    pub backoff: Duration,
    /// `max_backoff=`: the longest reconnection delay.
    pub max_backoff: Duration,
}

/// Parses the query of a `finnhub://` URL (see SPEC 8):
/// `finnhub://?symbols=AAPL,MSFT,BINANCE:BTCUSDT&endpoint=ws://127.0.0.1:8765&silence=90s&backoff=500ms&max_backoff=60s`.
pub fn parse_url(url: &Url) -> Result<FinnhubSpec, FinnhubError> {
    if url.host_str().is_some_and(|h| !h.is_empty()) || !(url.path().is_empty() || url.path() == "/") {
        return Err(FinnhubError::OptionsInPath);
    }
    let mut spec = FinnhubSpec {
        symbols: Vec::new(),
        endpoint: None,
        silence: DEFAULT_SILENCE,
        backoff: DEFAULT_BACKOFF,
        max_backoff: DEFAULT_MAX_BACKOFF,
    };
    for (key, value) in url.query_pairs() {
        let duration = || -> Result<Duration, FinnhubError> {
            let (option, value) = (key.to_string(), value.to_string());
            match humantime::parse_duration(&value) {
                Err(source) => Err(FinnhubError::BadDuration { option, value, source }),
                Ok(d) if d.is_zero() => Err(FinnhubError::ZeroDuration { option, value }),
                Ok(d) => Ok(d),
            }
        };
        match key.as_ref() {
            "symbols" => {
                for symbol in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    Symbol::check(symbol)
                        .map_err(|source| FinnhubError::BadSymbol { symbol: symbol.to_owned(), source })?;
                    if !spec.symbols.iter().any(|s| s == symbol) {
                        spec.symbols.push(symbol.to_owned());
                    }
                }
            }
            "endpoint" => {
                let endpoint = Url::parse(&value)
                    .map_err(|source| FinnhubError::EndpointNotAUrl { value: value.to_string(), source })?;
                if !matches!(endpoint.scheme(), "ws" | "wss") {
                    return Err(FinnhubError::EndpointNotWebSocket { value: value.into_owned() });
                }
                spec.endpoint = Some(value.into_owned());
            }
            "silence" => spec.silence = duration()?,
            "backoff" => spec.backoff = duration()?,
            "max_backoff" => spec.max_backoff = duration()?,
            "token" => return Err(FinnhubError::TokenInUrl),
            other => return Err(FinnhubError::UnknownOption(other.to_owned())),
        }
    }
    if spec.symbols.is_empty() {
        return Err(FinnhubError::NoSymbols);
    }
    if spec.max_backoff < spec.backoff {
        return Err(FinnhubError::BackoffOrder { backoff: spec.backoff, max_backoff: spec.max_backoff });
    }
    Ok(spec)
}

/// A `finnhub://` source ready to connect: the spec with the endpoint and the key resolved.
#[derive(Clone, PartialEq, Eq)]
pub struct FinnhubConfig {
    /// Symbols to subscribe to, in order.
    pub symbols: Vec<Symbol>,
    /// The URL connected to, with `token=KEY` when there is a key. Never shown.
    url: Url,
    /// The URL as shown: `token=***`.
    label: String,
    /// The key, for [`FinnhubConfig::scrub`].
    token: Option<String>,
    /// No frame for this long means the connection is dead.
    pub silence: Duration,
    /// The first reconnection delay.
    pub backoff: Duration,
    /// The longest reconnection delay.
    pub max_backoff: Duration,
}

impl fmt::Debug for FinnhubConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FinnhubConfig")
            .field("symbols", &self.symbols)
            .field("url", &self.label)
            .field("silence", &self.silence)
            .field("backoff", &self.backoff)
            .field("max_backoff", &self.max_backoff)
            .finish()
    }
}

impl FinnhubSpec {
    /// Resolves the endpoint (`endpoint=`, else `env_endpoint` from `FINNHUB_WS_URL`, else
    /// Finnhub's) and the key (`FINNHUB_API_KEY`). Finnhub's own endpoint needs a key.
    pub fn resolve(&self, token: Option<String>, env_endpoint: Option<String>) -> Result<FinnhubConfig, FinnhubError> {
        let token = token.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
        let (text, from) = match (&self.endpoint, env_endpoint.filter(|e| !e.trim().is_empty())) {
            (Some(e), _) => (e.clone(), "endpoint="),
            (None, Some(e)) => (e.trim().to_owned(), "FINNHUB_WS_URL"),
            (None, None) => (DEFAULT_ENDPOINT.to_owned(), "the default endpoint"),
        };
        let mut url = match Url::parse(&text) {
            Ok(url) => url,
            Err(source) => return Err(FinnhubError::Endpoint { from, endpoint: text, source }),
        };
        if !matches!(url.scheme(), "ws" | "wss") {
            return Err(FinnhubError::EndpointScheme { from, endpoint: text });
        }
        if url.query_pairs().any(|(k, _)| k == "token") {
            return Err(FinnhubError::TokenInEndpoint { from });
        }
        if token.is_none() && url.host_str() == Some("ws.finnhub.io") {
            return Err(FinnhubError::NoApiKey);
        }
        let mut label = url.clone();
        if let Some(token) = &token {
            url.query_pairs_mut().append_pair("token", token);
            label.query_pairs_mut().append_pair("token", "***");
        }
        let symbols: Result<Vec<Symbol>, FinnhubError> = self
            .symbols
            .iter()
            .map(|s| Symbol::parse(s).map_err(|source| FinnhubError::Symbol { symbol: s.clone(), source }))
            .collect();
        Ok(FinnhubConfig {
            symbols: symbols?,
            url,
            label: label.to_string(),
            token,
            silence: self.silence,
            backoff: self.backoff,
            max_backoff: self.max_backoff,
        })
    }
}

impl FinnhubConfig {
    /// The endpoint as shown everywhere (logs, metric labels, dead letters' `source`):
    /// `wss://ws.finnhub.io/?token=***`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The URL to connect to, key included: for the connection only, never to be shown.
    pub(crate) fn connect_url(&self) -> &Url {
        &self.url
    }

    /// `text` (an error, a server message) with every occurrence of the key replaced by
    /// `***`, in case a library or a server echoes the URL.
    pub fn scrub(&self, text: &str) -> String {
        match &self.token {
            Some(token) => tradeflow_model::secret::scrub(text, token),
            None => text.to_owned(),
        }
    }
}

/// Logs a `{"type":"error","msg":..}` message the server sent on `connection` as a
/// warning naming the cause (the message scrubbed of the key). For "Subscribing to too
/// many symbols" it explains Finnhub's free-tier limits: about [`FREE_TIER_SYMBOLS`]
/// symbols per connection, one connection per key. Shared by `tradeflow run`'s source and
/// `tradeflow produce`.
pub fn warn_server_error(config: &FinnhubConfig, message: &str, connection: u64) {
    let label = config.label();
    let message = config.scrub(message);
    if message.to_ascii_lowercase().contains("too many symbols") {
        tracing::warn!(
            "finnhub {label}: the server sent an error on connection {connection}: {message:?}: Finnhub's free tier \
             takes about {FREE_TIER_SYMBOLS} symbols per connection and one connection per API key; this source \
             subscribes to {}: subscribe to fewer (or use another key for the rest)",
            config.symbols.len()
        );
    } else {
        tracing::warn!("finnhub {label}: the server sent an error on connection {connection}: {message:?}");
    }
}

/// `text` with the value of every `token=` query parameter replaced by `***` (for a URL
/// typed with a key in it, shown in an error).
pub fn redact_token(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("token=") {
        let value = at + "token=".len();
        out.push_str(&rest[..value]);
        out.push_str("***");
        rest = &rest[value..];
        rest = &rest[rest.find(['&', '#']).unwrap_or(rest.len())..];
    }
    out.push_str(rest);
    out
}

/// A live feed, read by one worker (trades reach their symbol's worker downstream); a
/// checkpoint keeps its lateness clocks when asked for.
impl crate::source::Source for FinnhubConfig {
    fn bounded(&self) -> bool {
        false
    }
    fn resumable(&self, asked: bool) -> bool {
        asked
    }
    fn extent(&self, _workers: std::ops::Range<usize>, _peers: usize, _processes: usize) -> crate::source::Extent {
        crate::source::Extent::Unknown
    }
    fn build<'scope>(
        &self,
        scope: timely::dataflow::Scope<'scope, tradeflow_model::Time>,
        context: &crate::source::Context,
    ) -> crate::source::Built<'scope> {
        use crate::driver::{Backlog, Finished, polled_source};
        if scope.index() != 0 {
            return Ok(polled_source(scope, "Finnhub", Finished));
        }
        let c = context;
        let reader = FinnhubReader::new(self.clone(), c.lateness_ms, c.idle_timeout, c.stop.clone());
        // The feed cannot wait for a durable checkpoint: only the pipeline holds it back.
        c.checkpointed(scope, "Finnhub", reader, FinnhubReader::restore, c.backlog.as_ref().map(Backlog::pipeline_only))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> Result<FinnhubSpec, FinnhubError> {
        parse_url(&Url::parse(text).unwrap())
    }

    #[test]
    fn parses_symbols_and_options() {
        let s = spec("finnhub://?symbols=AAPL,%20MSFT,BINANCE:BTCUSDT,AAPL,IC%20MARKETS:1&silence=2s&backoff=100ms")
            .unwrap();
        assert_eq!(s.symbols, ["AAPL", "MSFT", "BINANCE:BTCUSDT", "IC MARKETS:1"]);
        assert_eq!(
            (s.silence, s.backoff, s.max_backoff),
            (Duration::from_secs(2), Duration::from_millis(100), DEFAULT_MAX_BACKOFF)
        );
        let s = spec("finnhub://?symbols=AAPL&endpoint=ws://127.0.0.1:8765").unwrap();
        assert_eq!(s.endpoint.as_deref(), Some("ws://127.0.0.1:8765"));
    }

    #[test]
    fn errors_name_the_value_and_the_fix() {
        assert!(spec("finnhub://").unwrap_err().to_string().contains("no symbols"));
        assert!(spec("finnhub://?symbols=A%00B").unwrap_err().to_string().contains("not a valid symbol"));
        assert!(spec("finnhub://?symbols=A&token=x").unwrap_err().to_string().contains("FINNHUB_API_KEY"));
        assert_eq!(redact_token("finnhub://?token=abc&symbols=A&token=d"), "finnhub://?token=***&symbols=A&token=***");
        assert!(spec("finnhub://?symbols=A&endpoint=http://x").unwrap_err().to_string().contains("ws://"));
        assert!(spec("finnhub://?symbols=A&silence=0s").unwrap_err().to_string().contains("positive"));
        assert!(spec("finnhub://?symbols=A&speed=1").unwrap_err().to_string().contains("unknown option \"speed\""));
        assert!(spec("finnhub://host?symbols=A").unwrap_err().to_string().contains("query"));
        assert!(
            spec("finnhub://?symbols=A&backoff=10s&max_backoff=1s").unwrap_err().to_string().contains("max_backoff")
        );
    }

    #[test]
    fn the_key_was_scrubbed_only_verbatim() {
        // A server error echoing the request path shows the key URL-encoded, as it is in
        // the connection URL.
        let s = spec("finnhub://?symbols=AAPL").unwrap();
        let c = s.resolve(Some("sek rit&x=1".into()), None).unwrap();
        let sent = c.connect_url().query().unwrap_or_default().to_owned();
        assert!(!sent.contains("sek rit&x=1"), "encoded in the URL: {sent}");
        assert_eq!(c.scrub(&format!("400 bad request: GET /?{sent}")), "400 bad request: GET /?token=***");
        assert_eq!(c.scrub("token=sek+rit%26x%3D1"), "token=***");
        assert_eq!(c.scrub("token=sek%20rit%26x%3d1"), "token=***");
    }

    #[test]
    fn the_key_is_only_in_the_connection_url() {
        let s = spec("finnhub://?symbols=AAPL").unwrap();
        let err = s.resolve(None, None).unwrap_err().to_string();
        assert!(err.contains("FINNHUB_API_KEY is not set"), "{err}");
        let c = s.resolve(Some("s3cr3t-key".into()), None).unwrap();
        assert_eq!(c.connect_url().as_str(), "wss://ws.finnhub.io/?token=s3cr3t-key");
        assert_eq!(c.label(), "wss://ws.finnhub.io/?token=***");
        assert!(!format!("{c:?}").contains("s3cr3t"));
        assert_eq!(c.scrub("GET /?token=s3cr3t-key failed"), "GET /?token=*** failed");

        // FINNHUB_WS_URL, overridden by endpoint=.
        let c = s.resolve(None, Some("ws://127.0.0.1:9/feed".into())).unwrap();
        assert_eq!((c.connect_url().as_str(), c.label()), ("ws://127.0.0.1:9/feed", "ws://127.0.0.1:9/feed"));
        let s = spec("finnhub://?symbols=AAPL&endpoint=ws://127.0.0.1:8765").unwrap();
        let c = s.resolve(Some("k".into()), Some("ws://elsewhere".into())).unwrap();
        assert_eq!(c.label(), "ws://127.0.0.1:8765/?token=***");
        let s = spec("finnhub://?symbols=AAPL").unwrap();
        assert!(s.resolve(None, Some("ws://x?token=abc".into())).unwrap_err().to_string().contains("FINNHUB_API_KEY"));
        // A key typed into the endpoint is not shown, whichever way the endpoint is wrong.
        let e = s.resolve(None, Some("http://x?token=abc".into())).unwrap_err().to_string();
        assert_eq!(e, r#"FINNHUB_WS_URL "http://x?token=***": use a ws:// or wss:// URL, e.g. ws://127.0.0.1:8765"#);
        let e = spec("finnhub://?symbols=A&endpoint=http://x%3Ftoken%3Dabc").unwrap_err().to_string();
        assert!(e.contains("token=***") && !e.contains("abc"), "{e}");
    }
}
