//! tradeflow's HTTP endpoints: Prometheus `/metrics` (`--metrics-addr`) and the live
//! dashboard (`--dashboard-addr`).
//!
//! One small hyper server on a dedicated thread with its own single-threaded tokio
//! runtime serves both, so the dataflow's workers never wait on a client: they hand
//! their changes to the in-process [`Dashboard`] (one lock per activation, see
//! [`feed`]), and every [`state::TICK`] the runtime publishes what changed to the pages
//! as server-sent events. Each address is bound before the run starts (a busy port
//! stops the run with the flag and the fix). A bare port (`9898`, `:9898`) listens on
//! 127.0.0.1 only; `0.0.0.0:9898` must be asked for. The dashboard's address serves
//! `/metrics` too; given the same address, both flags share one listener.
//!
//! Routes: `/metrics` (text format 0.0.4); on the dashboard, `/` and its assets
//! (embedded in the binary, see [`assets`]), `/api/snapshot?symbol=S` (JSON) and
//! `/api/events?symbol=S` (an event stream: a `snapshot`, then an `update` per tick).

pub mod assets;
pub mod feed;
pub mod health;
pub mod state;

use crate::config::{ConfigError, RunConfig};
use crate::stats::RunStats;
use anyhow::Context;
use bytes::Bytes;
use health::{Health, SinkHealth};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use tradeflow_model::Symbol;
use tradeflow_sinks::lake::Lake;
use tradeflow_sinks::postgres::PgSink;

pub use feed::feed_dashboard;
pub use state::{Dashboard, RunInfo};

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// `--metrics-addr` / `--dashboard-addr`: `host:port`, or a bare port (`9898` or
/// `:9898`) on 127.0.0.1.
pub fn parse_addr(flag: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    let trimmed = text.trim();
    let port_only = trimmed.strip_prefix(':').unwrap_or(trimmed);
    let full = if !port_only.is_empty() && port_only.bytes().all(|b| b.is_ascii_digit()) {
        format!("127.0.0.1:{port_only}")
    } else {
        trimmed.to_owned()
    };
    full.to_socket_addrs().ok().and_then(|mut addrs| addrs.next()).ok_or_else(|| {
        ConfigError(format!(
            "{flag} {text:?}: not an address to listen on; use host:port, e.g. 127.0.0.1:9898, or just a port (127.0.0.1 only)"
        ))
    })
}

fn bind(flag: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr).map_err(|e| {
        ConfigError(format!("{flag} {addr}: cannot listen there: {e}; pick another port or drop the flag"))
    })?;
    listener.set_nonblocking(true).with_context(|| format!("{flag} {addr}"))?;
    Ok(listener)
}

/// Which routes a listener serves.
#[derive(Clone)]
enum Site {
    /// `/metrics` only.
    Metrics,
    /// The dashboard and `/metrics`.
    Dashboard(Arc<Dashboard>),
}

/// Registers the run's metrics and starts the servers `config` asks for; the dashboard
/// the workers feed, if one is served.
pub fn start(
    config: &RunConfig,
    stats: &Arc<RunStats>,
    lake: Option<&Arc<Lake>>,
    postgres: Option<&Arc<PgSink>>,
) -> anyhow::Result<Option<Arc<Dashboard>>> {
    let dashboard_on = config.dashboard_addr.is_some();
    let sinks = crate::metrics::Sinks { lake, postgres: postgres.is_some(), dashboard: dashboard_on };
    crate::metrics::register(stats, sinks);
    let mut listeners = Vec::new();
    let dashboard = match config.dashboard_addr {
        Some(addr) => {
            let mut sinks = Vec::new();
            if let Some(lake) = lake {
                sinks.push(SinkHealth::new("lake", lake.url().to_owned()));
            }
            if let Some(pg) = postgres {
                sinks.push(SinkHealth::new("postgres", pg.target().name().to_owned()));
            }
            let info = RunInfo {
                window_ms: config.params.windows.size(),
                slide_ms: config.params.windows.slide(),
                process: config.process,
                processes: config.processes,
                workers: config.threads,
                sources: config.source_names.clone(),
                version: env!("CARGO_PKG_VERSION"),
            };
            let dashboard = Arc::new(Dashboard::new(info, Health::new(stats.clone(), sinks)));
            let listener = bind("--dashboard-addr", addr)?;
            tracing::info!("dashboard on http://{}/", listener.local_addr()?);
            listeners.push((listener, Site::Dashboard(dashboard.clone())));
            Some(dashboard)
        }
        None => None,
    };
    if let Some(addr) = config.metrics_addr {
        if config.dashboard_addr == Some(addr) {
            tracing::info!("Prometheus metrics on http://{addr}/metrics (with the dashboard)");
        } else {
            let listener = bind("--metrics-addr", addr)?;
            tracing::info!("Prometheus metrics on http://{}/metrics", listener.local_addr()?);
            listeners.push((listener, Site::Metrics));
        }
    }
    if listeners.is_empty() {
        return Ok(dashboard);
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("the web runtime")?;
    let publisher = dashboard.clone();
    std::thread::Builder::new()
        .name("web".into())
        .spawn(move || {
            runtime.block_on(async move {
                if let Some(dashboard) = publisher {
                    tokio::spawn(publish(dashboard));
                }
                let mut servers = tokio::task::JoinSet::new();
                for (listener, site) in listeners {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => {
                            servers.spawn(serve(listener, site));
                        }
                        Err(e) => tracing::error!("web server: {e}"),
                    }
                }
                servers.join_all().await;
            })
        })
        .context("starting the web server thread")?;
    Ok(dashboard)
}

/// Publishes the dashboard's changes every tick.
async fn publish(dashboard: Arc<Dashboard>) {
    let mut every = tokio::time::interval(state::TICK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        every.tick().await;
        dashboard.publish();
    }
}

async fn serve(listener: tokio::net::TcpListener, site: Site) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, say: back off instead of spinning.
                tracing::warn!("web server: accepting a connection: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let site = site.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let site = site.clone();
                async move { Ok::<_, Infallible>(respond(&request, &site)) }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

fn respond(request: &Request<Incoming>, site: &Site) -> Response<Body> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        response.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let path = request.uri().path();
    if path == "/metrics" {
        return full(StatusCode::OK, crate::metrics::CONTENT_TYPE, crate::metrics::render());
    }
    let Site::Dashboard(dashboard) = site else {
        return match path {
            "/" => text(StatusCode::OK, "tradeflow: Prometheus metrics at /metrics\n"),
            _ => text(StatusCode::NOT_FOUND, "not found; metrics are at /metrics\n"),
        };
    };
    let symbol = query_value(request.uri().query(), "symbol");
    match path {
        "/api/snapshot" => {
            let symbol = dashboard.pick_symbol(symbol.as_deref());
            full(StatusCode::OK, "application/json", dashboard.snapshot_json(symbol.as_ref()))
        }
        "/api/events" => events(dashboard.clone(), symbol),
        _ => match assets::find(path) {
            Some(asset) => full(StatusCode::OK, asset.content_type, Bytes::from_static(asset.body)),
            None => text(StatusCode::NOT_FOUND, "not found\n"),
        },
    }
}

fn full(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()).boxed_unsync());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    headers.insert("x-content-type-options", header::HeaderValue::from_static("nosniff"));
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    full(status, "text/plain; charset=utf-8", body)
}

/// The percent-decoded value of `name` in a query string.
fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| percent_encoding::percent_decode_str(value).decode_utf8_lossy().into_owned())
    })
}

/// One page's event stream: a snapshot of its symbol, then every tick.
struct Subscriber {
    dashboard: Arc<Dashboard>,
    ticks: tokio::sync::broadcast::Receiver<Arc<state::Tick>>,
    requested: Option<String>,
    symbol: Option<Symbol>,
    started: bool,
    _client: state::ClientGuard,
}

impl Subscriber {
    async fn next_event(&mut self) -> Option<String> {
        if !self.started {
            self.started = true;
            return Some(self.snapshot());
        }
        match self.ticks.recv().await {
            // The first symbols arrived: start the page over with one of them.
            Ok(tick) if self.symbol.is_none() && tick.has_symbols() => Some(self.snapshot()),
            Ok(tick) => Some(tick.event_for(self.symbol.as_ref())),
            // Too slow for the ticks: a fresh snapshot replaces the missed ones.
            Err(RecvError::Lagged(_)) => Some(self.snapshot()),
            Err(RecvError::Closed) => None,
        }
    }

    fn snapshot(&mut self) -> String {
        self.symbol = self.dashboard.pick_symbol(self.requested.as_deref());
        self.dashboard.snapshot_event(self.symbol.as_ref())
    }
}

fn events(dashboard: Arc<Dashboard>, requested: Option<String>) -> Response<Body> {
    let subscriber = Subscriber {
        ticks: dashboard.subscribe(),
        _client: dashboard.client(),
        dashboard,
        requested,
        symbol: None,
        started: false,
    };
    let stream = futures::stream::unfold(subscriber, |mut s| async move {
        let event = s.next_event().await?;
        Some((Ok::<_, Infallible>(Frame::data(Bytes::from(event))), s))
    });
    let mut response = Response::new(StreamBody::new(stream).boxed_unsync());
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    headers.insert("x-accel-buffering", header::HeaderValue::from_static("no"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_default_to_loopback() {
        assert_eq!(parse_addr("--metrics-addr", "9898").unwrap(), "127.0.0.1:9898".parse().unwrap());
        assert_eq!(parse_addr("--metrics-addr", ":9898").unwrap(), "127.0.0.1:9898".parse().unwrap());
        assert_eq!(parse_addr("--metrics-addr", "0.0.0.0:80").unwrap(), "0.0.0.0:80".parse().unwrap());
        assert_eq!(parse_addr("--metrics-addr", "[::1]:9898").unwrap(), "[::1]:9898".parse().unwrap());
        let e = parse_addr("--dashboard-addr", "nowhere").unwrap_err().to_string();
        assert!(e.starts_with("--dashboard-addr \"nowhere\": not an address"), "{e}");
    }

    #[test]
    fn reads_query_values() {
        assert_eq!(query_value(Some("symbol=BINANCE%3ABTCUSDT&x=1"), "symbol").as_deref(), Some("BINANCE:BTCUSDT"));
        assert_eq!(query_value(Some("x=1"), "symbol"), None);
        assert_eq!(query_value(None, "symbol"), None);
    }
}
