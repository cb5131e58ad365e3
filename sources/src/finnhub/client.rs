//! The connection to a Finnhub(-compatible) server, on a thread of its own.
//!
//! Background: the timely worker that owns the source must never block on the network,
//! so the socket lives on a dedicated thread with a single-threaded tokio runtime. It
//! forwards every text or binary frame, with its arrival time, through a bounded channel
//! (when the dataflow falls behind, the channel fills and the socket is read no faster
//! than the pipeline takes frames) and wakes the source.
//!
//! Semantics:
//! * Connect (TLS through rustls with webpki's roots for `wss://`), then send
//!   `{"type":"subscribe","symbol":S}` for every symbol; the same after every reconnect.
//! * A connection is dead when it closes, fails, or sends nothing (no trade, no ping, no
//!   WebSocket ping) for `silence`.
//! * Reconnect after `min(max_backoff, backoff · 2^attempt)`, jittered uniformly into its
//!   upper half; `attempt` counts the failures since the last connection that delivered a
//!   frame. A server refusing the key (HTTP 401/403) is not retried: the source fails.
//! * A *gap* runs from the moment the feed went down (the last frame for a silent
//!   connection, the failure otherwise) to the next connection's subscriptions. Each gap
//!   is logged and recorded as `tradeflow_websocket_reconnects_total` and
//!   `tradeflow_websocket_gap_seconds` (a histogram: count and sum), labelled with the
//!   redacted endpoint.

use super::FinnhubConfig;
use crate::batch::{report_failure, wall_ms};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use tradeflow_model::metrics::{Counter, Gauge, Histogram, registry};

/// Frames buffered between the socket and the dataflow.
pub const CHANNEL_FRAMES: usize = 16 * 1024;
/// How long a connection attempt (TCP, TLS, WebSocket handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// How often the thread looks at the stop flag.
const STOP_CHECK: Duration = Duration::from_millis(50);
/// Gap histogram buckets, seconds.
const GAP_BUCKETS: &[f64] = &[0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0];

/// One frame as received.
#[derive(Debug)]
pub struct Frame {
    /// Its payload (text frames as UTF-8; binary frames as sent).
    pub bytes: Bytes,
    /// When it was received, ms since the epoch.
    pub received_at: i64,
    /// Which connection it came on (1, 2, ...).
    pub connection: u64,
}

/// The running connection thread, seen from the source.
pub struct Feed {
    /// The frames, in arrival order.
    pub frames: mpsc::Receiver<Frame>,
    _thread: std::thread::JoinHandle<()>,
}

/// The connection metrics of one source, labelled `source="<redacted endpoint>"`.
#[derive(Clone, Debug)]
pub struct ConnectionMetrics {
    /// `tradeflow_websocket_reconnects_total`.
    pub reconnects: Counter,
    /// `tradeflow_websocket_gap_seconds`.
    pub gaps: Histogram,
    /// `tradeflow_websocket_connected`: 1 while subscribed.
    pub connected: Gauge,
    /// `tradeflow_websocket_frames_total`.
    pub frames: Counter,
    /// `tradeflow_websocket_server_errors_total`: `{"type":"error"}` messages.
    pub server_errors: Counter,
}

impl ConnectionMetrics {
    /// The series of the source labelled `label` (a redacted URL).
    pub fn of(label: &str) -> ConnectionMetrics {
        let r = registry();
        let l = [("source", label)];
        ConnectionMetrics {
            reconnects: r.counter(
                "tradeflow_websocket_reconnects_total",
                "WebSocket reconnections after a lost connection (one per gap in the feed).",
                &l,
            ),
            gaps: r.histogram(
                "tradeflow_websocket_gap_seconds",
                "Gaps in a WebSocket feed: from the loss of a connection to the next one's subscriptions.",
                &l,
                GAP_BUCKETS,
            ),
            connected: r.gauge(
                "tradeflow_websocket_connected",
                "1 while the WebSocket source is connected and subscribed.",
                &l,
            ),
            frames: r.counter(
                "tradeflow_websocket_frames_total",
                "WebSocket frames received (trades, pings, errors).",
                &l,
            ),
            server_errors: r.counter(
                "tradeflow_websocket_server_errors_total",
                "{\"type\":\"error\"} messages from the WebSocket server.",
                &l,
            ),
        }
    }

    fn disconnect(label: &str, reason: &str) -> Counter {
        registry().counter(
            "tradeflow_websocket_disconnects_total",
            "Lost WebSocket connections, by reason (closed, error, silence).",
            &[("source", label), ("reason", reason)],
        )
    }
}

/// Starts the connection thread. `wake` is called after frames are queued; setting `stop`
/// closes the connection and ends the thread, as does dropping the [`Feed`].
pub fn spawn(config: FinnhubConfig, stop: Arc<AtomicBool>, wake: Box<dyn Fn() + Send>) -> std::io::Result<Feed> {
    let (tx, frames) = mpsc::channel(CHANNEL_FRAMES);
    let thread = std::thread::Builder::new().name("finnhub".into()).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(e) => {
                report_failure(format!("finnhub {}: cannot start its runtime: {e}", config.label()));
                stop.store(true, Ordering::Relaxed);
                return;
            }
        };
        runtime.block_on(Connection::new(config, stop, tx, wake).run());
    })?;
    Ok(Feed { frames, _thread: thread })
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How a session ended.
enum End {
    /// Ctrl-C: the connection was closed politely.
    Stopped,
    /// The source is gone.
    Abandoned,
    /// The connection was lost; the feed went down at `since`.
    Lost { reason: String, kind: &'static str, since: Instant, frames: u64 },
}

struct Connection {
    config: FinnhubConfig,
    stop: Arc<AtomicBool>,
    tx: mpsc::Sender<Frame>,
    wake: Box<dyn Fn() + Send>,
    metrics: ConnectionMetrics,
    tls: Option<Arc<rustls::ClientConfig>>,
    jitter: u64,
}

impl Connection {
    fn new(config: FinnhubConfig, stop: Arc<AtomicBool>, tx: mpsc::Sender<Frame>, wake: Box<dyn Fn() + Send>) -> Self {
        let metrics = ConnectionMetrics::of(config.label());
        let seed =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        Connection { config, stop, tx, wake, metrics, tls: None, jitter: seed | 1 }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.tx.is_closed()
    }

    async fn run(mut self) {
        let label = self.config.label().to_owned();
        let count = self.config.symbols.len();
        if count > super::FREE_TIER_SYMBOLS {
            tracing::warn!(
                "finnhub {label}: subscribing to {count} symbols; Finnhub's free tier takes about {} per connection \
                 (one connection per API key) and answers \"Subscribing to too many symbols\" beyond that",
                super::FREE_TIER_SYMBOLS
            );
        }
        let mut attempt: u32 = 0;
        let mut connection: u64 = 0;
        let mut gap: Option<Instant> = None;
        loop {
            if self.stopped() {
                return;
            }
            let mut socket = match self.connect().await {
                Ok(socket) => socket,
                Err(Failure::Permanent(message)) => {
                    report_failure(format!("finnhub {label}: {message}"));
                    self.stop.store(true, Ordering::Relaxed);
                    return;
                }
                Err(Failure::Transient(message)) => {
                    let delay = self.backoff(attempt);
                    attempt = attempt.saturating_add(1);
                    tracing::warn!(
                        "finnhub {label}: cannot connect: {message}; retrying in {} (attempt {attempt})",
                        seconds(delay)
                    );
                    if self.sleep(delay).await {
                        return;
                    }
                    continue;
                }
            };
            connection += 1;
            if let Err(e) = self.subscribe(&mut socket).await {
                let delay = self.backoff(attempt);
                attempt = attempt.saturating_add(1);
                let e = self.config.scrub(&e.to_string());
                tracing::warn!("finnhub {label}: subscribing failed: {e}; retrying in {}", seconds(delay));
                if self.sleep(delay).await {
                    return;
                }
                continue;
            }
            match gap.take() {
                Some(since) => {
                    let lasted = since.elapsed();
                    self.metrics.reconnects.inc();
                    self.metrics.gaps.observe(lasted.as_secs_f64());
                    tracing::info!(
                        "finnhub {label}: reconnected (connection {connection}) after a gap of {} in the feed; \
                         resubscribed to {count} symbols",
                        seconds(lasted)
                    );
                }
                None => tracing::info!("finnhub {label}: connected; subscribed to {count} symbols"),
            }
            self.metrics.connected.set(1.0);
            let started = Instant::now();
            let end = self.session(&mut socket, connection).await;
            self.metrics.connected.set(0.0);
            match end {
                End::Stopped => {
                    tracing::info!("finnhub {label}: connection closed (stopping)");
                    return;
                }
                End::Abandoned => return,
                End::Lost { reason, kind, since, frames } => {
                    ConnectionMetrics::disconnect(&label, kind).inc();
                    gap = Some(since);
                    if frames > 0 {
                        attempt = 0;
                    }
                    let delay = self.backoff(attempt);
                    attempt = attempt.saturating_add(1);
                    tracing::warn!(
                        "finnhub {label}: connection {connection} lost after {} ({frames} frames): {reason}; \
                         reconnecting in {}",
                        seconds(started.elapsed()),
                        seconds(delay)
                    );
                    if self.sleep(delay).await {
                        return;
                    }
                }
            }
        }
    }

    /// Sleeps `delay`, or less if stopped; true when stopped.
    async fn sleep(&self, delay: Duration) -> bool {
        let until = tokio::time::Instant::now() + delay;
        while tokio::time::Instant::now() < until {
            if self.stopped() {
                return true;
            }
            tokio::time::sleep_until(until.min(tokio::time::Instant::now() + STOP_CHECK)).await;
        }
        self.stopped()
    }

    /// `min(max_backoff, backoff · 2^attempt)`, jittered uniformly into its upper half.
    fn backoff(&mut self, attempt: u32) -> Duration {
        let base = self.config.backoff.saturating_mul(1u32 << attempt.min(20)).min(self.config.max_backoff);
        self.jitter = crate::sim::profile::splitmix64(self.jitter);
        let fraction = (self.jitter >> 11) as f64 / (1u64 << 53) as f64;
        base.mul_f64(0.5 + 0.5 * fraction)
    }

    async fn connect(&mut self) -> Result<Socket, Failure> {
        let url = self.config.connect_url().clone();
        let connector = if url.scheme() == "wss" {
            let tls = match &self.tls {
                Some(tls) => tls.clone(),
                None => {
                    let tls = tls_config().map_err(|e| Failure::Permanent(format!("TLS setup failed: {e}")))?;
                    self.tls.insert(tls).clone()
                }
            };
            Connector::Rustls(tls)
        } else {
            Connector::Plain
        };
        let attempt = tokio_tungstenite::connect_async_tls_with_config(url.as_str(), None, true, Some(connector));
        match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Err(_) => Err(Failure::Transient(format!("no answer within {}", seconds(CONNECT_TIMEOUT)))),
            Ok(Ok((socket, _response))) => Ok(socket),
            Ok(Err(e)) => Err(self.classify(e)),
        }
    }

    fn classify(&self, e: tungstenite::Error) -> Failure {
        match &e {
            tungstenite::Error::Http(response) if matches!(response.status().as_u16(), 401 | 403) => {
                Failure::Permanent(format!(
                    "the server refused the API key (HTTP {}); check FINNHUB_API_KEY",
                    response.status()
                ))
            }
            tungstenite::Error::Url(_) => Failure::Permanent(self.config.scrub(&e.to_string())),
            tungstenite::Error::Http(response) => Failure::Transient(format!("HTTP {}", response.status())),
            _ => Failure::Transient(self.config.scrub(&e.to_string())),
        }
    }

    async fn subscribe(&self, socket: &mut Socket) -> Result<(), tungstenite::Error> {
        for symbol in &self.config.symbols {
            let message = serde_json::json!({"type": "subscribe", "symbol": symbol.as_str()}).to_string();
            socket.feed(Message::text(message)).await?;
        }
        socket.flush().await
    }

    /// Reads one connection until it ends.
    async fn session(&self, socket: &mut Socket, connection: u64) -> End {
        let mut last = Instant::now();
        let mut frames = 0u64;
        let lost =
            |reason: String, kind: &'static str, since: Instant, frames: u64| End::Lost { reason, kind, since, frames };
        loop {
            let silent_until = tokio::time::Instant::from_std(last + self.config.silence);
            let next = tokio::select! {
                next = socket.next() => Some(next),
                _ = tokio::time::sleep_until(silent_until) => {
                    let reason = format!(
                        "nothing received for {} (silence timeout; set &silence= to change it)",
                        seconds(self.config.silence)
                    );
                    return lost(reason, "silence", last, frames);
                }
                _ = tokio::time::sleep(STOP_CHECK) => None,
            };
            let Some(next) = next else {
                if self.stopped() {
                    let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
                    return if self.tx.is_closed() { End::Abandoned } else { End::Stopped };
                }
                continue;
            };
            let bytes = match next {
                Some(Ok(Message::Text(text))) => Bytes::from(text),
                Some(Ok(Message::Binary(bytes))) => bytes,
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {
                    last = Instant::now();
                    continue;
                }
                Some(Ok(Message::Close(frame))) => {
                    let reason = match frame {
                        Some(f) if !f.reason.is_empty() => {
                            format!("closed by the server ({} {})", u16::from(f.code), self.config.scrub(&f.reason))
                        }
                        Some(f) => format!("closed by the server ({})", u16::from(f.code)),
                        None => "closed by the server".to_owned(),
                    };
                    return lost(reason, "closed", Instant::now(), frames);
                }
                Some(Err(e)) => return lost(self.config.scrub(&e.to_string()), "error", Instant::now(), frames),
                None => return lost("the connection ended".into(), "closed", Instant::now(), frames),
            };
            last = Instant::now();
            frames += 1;
            self.metrics.frames.inc();
            let frame = Frame { bytes, received_at: wall_ms(), connection };
            if self.tx.send(frame).await.is_err() {
                return End::Abandoned;
            }
            (self.wake)();
        }
    }
}

enum Failure {
    /// Worth retrying (network, server restarting).
    Transient(String),
    /// Retrying cannot help (the key is refused).
    Permanent(String),
}

/// rustls with the aws-lc-rs provider and webpki's root certificates.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// `1.25s`, `250ms`.
pub(crate) fn seconds(d: Duration) -> String {
    if d < Duration::from_secs(1) { format!("{}ms", d.as_millis()) } else { format!("{:.2}s", d.as_secs_f64()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(backoff: &str, max: &str) -> Connection {
        let url = url::Url::parse(&format!("finnhub://?symbols=A&backoff={backoff}&max_backoff={max}")).unwrap();
        let config = super::super::parse_url(&url).unwrap().resolve(None, Some("ws://127.0.0.1:9".into())).unwrap();
        let (tx, _rx) = mpsc::channel(1);
        Connection::new(config, Arc::default(), tx, Box::new(|| {}))
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let mut c = connection("100ms", "1s");
        for attempt in 0..12 {
            let cap = Duration::from_millis(100 << attempt.min(10)).min(Duration::from_secs(1));
            for _ in 0..50 {
                let d = c.backoff(attempt);
                assert!(d >= cap / 2 && d <= cap, "attempt {attempt}: {d:?} outside {:?}..={cap:?}", cap / 2);
            }
        }
        // Jitter: not always the same delay.
        let delays: std::collections::BTreeSet<_> = (0..20).map(|_| c.backoff(3)).collect();
        assert!(delays.len() > 10);
    }

    #[test]
    fn tls_is_configured_without_a_process_provider() {
        assert!(tls_config().is_ok());
    }
}
