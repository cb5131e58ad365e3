//! `tradeflow simulate --serve ADDR`: a Finnhub-compatible WebSocket server.
//!
//! It streams the simulator's market (or a replayed NDJSON file) at real-time pace with
//! current timestamps, speaking Finnhub's protocol, so that demos, tests and the latency
//! benchmark run the real `finnhub://` source with no internet:
//!
//! * any path and any `token` are accepted (nothing about the request is logged);
//! * `{"type":"subscribe","symbol":S}` and `{"type":"unsubscribe","symbol":S}` are honoured
//!   per connection: a connection receives only the trades of the symbols it is subscribed
//!   to. Beyond `max_symbols` a subscription is refused with
//!   `{"type":"error","msg":"Subscribing to too many symbols"}`, as Finnhub's free tier does
//!   beyond about 50; anything else gets an `error` message too;
//! * trades go out every 20 ms as `{"type":"trade","data":[..]}` messages of up to 16 trades,
//!   several symbols mixed, like the real feed; `{"type":"ping"}` every `ping_interval`;
//! * with `disconnect_every`, each connection is dropped (without a closing handshake, as
//!   a crashing server would) that long after it was opened.
//!
//! The simulated market starts with the server: each trade's `t` is its arrival time,
//! sometimes a little earlier (the simulator's disorder, SPEC's lateness). A replayed file
//! starts with the first subscription, shifted so that its first trade happens then, and
//! is paced by its timestamps (never backwards); its rejected and non-trade lines are
//! skipped. Every connection shares one
//! feed: a connection too slow to keep up loses trades (logged), as on the real feed.

use crate::batch::wall_ms;
use crate::format::{Item, parse_line, write_finnhub_message};
use crate::sim::{Market, SimConfig};
use futures::{SinkExt, StreamExt};
use std::collections::{BTreeSet, VecDeque};
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;
use tradeflow_model::{Price, Qty, Symbol};

/// How often trades are sent.
const TICK: Duration = Duration::from_millis(20);
/// Trades per message at most.
const PER_MESSAGE: usize = 16;
/// Ticks buffered per connection before a slow one loses trades.
const BACKLOG: usize = 4096;

/// What the server streams.
#[derive(Clone, Debug)]
pub enum ServeFeed {
    /// The simulator (`start_ms` is replaced by the time the server starts).
    Sim(SimConfig),
    /// An NDJSON file's valid trades, replayed from now on.
    Replay(PathBuf),
}

/// How to serve.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Where to listen, `127.0.0.1:8765` (port 0: any free port).
    pub addr: String,
    /// What to stream.
    pub feed: ServeFeed,
    /// Time between `{"type":"ping"}` messages.
    pub ping_interval: Duration,
    /// Drop each connection this long after it opened, if set.
    pub disconnect_every: Option<Duration>,
    /// Subscriptions a connection may hold.
    pub max_symbols: usize,
}

/// One trade as served.
#[derive(Clone, Debug)]
struct Served {
    symbol: Symbol,
    price: Price,
    volume: Qty,
    ts: i64,
    conditions: Option<String>,
}

type Tick = Arc<Vec<Served>>;

/// Serves until the process ends; `ready` is called with the bound address once clients
/// can connect.
pub fn serve(config: ServeConfig, ready: impl FnOnce(SocketAddr)) -> std::io::Result<()> {
    if let ServeFeed::Replay(path) = &config.feed {
        std::fs::File::open(path).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(&config.addr)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("--serve {}: {e}", config.addr)))?;
        let (tx, _) = broadcast::channel::<Tick>(BACKLOG);
        let producer_tx = tx.clone();
        let feed = config.feed.clone();
        let subscribed = Arc::new(AtomicBool::new(false));
        let first = subscribed.clone();
        std::thread::Builder::new().name("serve-feed".into()).spawn(move || produce(feed, producer_tx, &first))?;
        ready(listener.local_addr()?);
        let config = Arc::new(config);
        let mut id = 0u64;
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("serve: accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            id += 1;
            tokio::spawn(connection(stream, peer, id, tx.subscribe(), config.clone(), subscribed.clone()));
        }
    })
}

/// Generates the feed in real time, one tick every [`TICK`]; a replay waits for the
/// first subscription (`subscribed`).
fn produce(feed: ServeFeed, tx: broadcast::Sender<Tick>, subscribed: &AtomicBool) {
    let mut next: Box<dyn FnMut(i64) -> (Vec<Served>, bool)> = match feed {
        ServeFeed::Sim(mut config) => {
            config.start_ms = wall_ms();
            let mut market = Market::new(&config, |_| true);
            Box::new(move |now| {
                let mut tick = Vec::new();
                while market.peek_arrival().is_some_and(|a| a <= now) && tick.len() < 1 << 16 {
                    let Some((_, symbol, t)) = market.next() else { break };
                    let conditions = t.conditions.as_json().map(str::to_owned);
                    tick.push(Served {
                        symbol: symbol.clone(),
                        price: t.price,
                        volume: t.volume,
                        ts: t.ts,
                        conditions,
                    });
                }
                (tick, market.is_done())
            })
        }
        ServeFeed::Replay(path) => {
            let mut replay = match Replay::open(&path) {
                Ok(replay) => replay,
                Err(e) => {
                    tracing::error!("serve: {}: {e}", path.display());
                    return;
                }
            };
            while !subscribed.load(Ordering::Acquire) {
                std::thread::sleep(TICK / 4);
            }
            tracing::info!("serve: replaying {} from now on", path.display());
            Box::new(move |now| replay.due(now))
        }
    };
    let mut total = 0u64;
    loop {
        let (tick, done) = next(wall_ms());
        total += tick.len() as u64;
        if !tick.is_empty() {
            // No receiver (no client yet) is fine: the market goes on regardless.
            let _ = tx.send(Arc::new(tick));
        }
        if done {
            tracing::info!("serve: the feed ended after {total} trades; connections stay open (pings only)");
            // Keep `tx` alive: connections go on with pings.
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        std::thread::sleep(TICK);
    }
}

/// An NDJSON file's trades, shifted to start now and paced by their timestamps.
struct Replay {
    lines: std::io::BufReader<std::fs::File>,
    pending: VecDeque<Served>,
    offset: Option<i64>,
    pace: i64,
    eof: bool,
}

impl Replay {
    fn open(path: &std::path::Path) -> std::io::Result<Replay> {
        let file = std::fs::File::open(path)?;
        Ok(Replay {
            lines: std::io::BufReader::with_capacity(1 << 20, file),
            pending: VecDeque::new(),
            offset: None,
            pace: i64::MIN,
            eof: false,
        })
    }

    /// Reads lines until some trades are pending or the file ends.
    fn fill(&mut self) {
        let mut line = Vec::new();
        while self.pending.is_empty() && !self.eof {
            line.clear();
            match self.lines.read_until(b'\n', &mut line) {
                Ok(0) => self.eof = true,
                Ok(_) => {
                    let pending = &mut self.pending;
                    parse_line(line.strip_suffix(b"\n").unwrap_or(&line), &mut |item| {
                        if let Item::Trade(t) = item
                            && let Ok(symbol) = Symbol::parse(&t.symbol)
                        {
                            let conditions = t.conditions.map(str::to_owned);
                            pending.push_back(Served {
                                symbol,
                                price: t.price,
                                volume: t.volume,
                                ts: t.ts,
                                conditions,
                            });
                        }
                    });
                }
                Err(e) => {
                    tracing::error!("serve: reading the replayed file failed: {e}");
                    self.eof = true;
                }
            }
        }
    }

    /// The trades due at `now`, and whether the file is done.
    fn due(&mut self, now: i64) -> (Vec<Served>, bool) {
        let mut tick = Vec::new();
        loop {
            self.fill();
            let Some(front) = self.pending.front() else { break };
            let offset = *self.offset.get_or_insert(now - front.ts);
            let pace = self.pace.max(front.ts);
            if pace.saturating_add(offset) > now || tick.len() >= 1 << 16 {
                break;
            }
            self.pace = pace;
            let mut trade = self.pending.pop_front().expect("front exists");
            trade.ts += offset;
            tick.push(trade);
        }
        (tick, self.eof && self.pending.is_empty())
    }
}

/// Serves one client until it leaves or is dropped on purpose.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    mut feed: broadcast::Receiver<Tick>,
    config: Arc<ServeConfig>,
    first_subscription: Arc<AtomicBool>,
) {
    let _ = stream.set_nodelay(true);
    let mut ws = match tokio_tungstenite::accept_async(stream).await {
        Ok(ws) => ws,
        Err(e) => {
            // Port probes and health checks end here too.
            tracing::debug!("serve: connection {id} from {peer}: WebSocket handshake failed: {e}");
            return;
        }
    };
    tracing::info!("serve: client {id} connected from {peer}");
    let mut subscribed: BTreeSet<String> = BTreeSet::new();
    let start = tokio::time::Instant::now();
    let mut ping = tokio::time::interval_at(start + config.ping_interval, config.ping_interval);
    let drop_at = config.disconnect_every.map(|d| start + d);
    let mut feed_open = true;
    let mut sent = 0u64;
    let mut message = Vec::with_capacity(4096);
    let outcome: Result<&str, tokio_tungstenite::tungstenite::Error> = async {
        loop {
            tokio::select! {
                request = ws.next() => match request {
                    Some(Ok(Message::Text(text))) => {
                        if let Some(reply) = handle_request(id, &text, &mut subscribed, config.max_symbols) {
                            ws.send(Message::text(reply)).await?;
                        }
                        if !subscribed.is_empty() {
                            first_subscription.store(true, Ordering::Release);
                        }
                    }
                    Some(Ok(Message::Close(_))) | None => return Ok("left"),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e),
                },
                tick = feed.recv(), if feed_open => match tick {
                    Ok(tick) => {
                        let mine: Vec<&Served> =
                            tick.iter().filter(|t| subscribed.contains(t.symbol.as_str())).collect();
                        for chunk in mine.chunks(PER_MESSAGE) {
                            let trades: Vec<_> = chunk
                                .iter()
                                .map(|t| (t.symbol.as_str(), t.price, t.volume, t.ts, t.conditions.as_deref()))
                                .collect();
                            message.clear();
                            write_finnhub_message(&mut message, &trades);
                            while message.last() == Some(&b'\n') {
                                message.pop();
                            }
                            let text = String::from_utf8_lossy(&message).into_owned();
                            ws.feed(Message::text(text)).await?;
                        }
                        if !mine.is_empty() {
                            ws.flush().await?;
                            sent += mine.len() as u64;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!("serve: client {id} is too slow: {n} ticks of trades were dropped for it");
                    }
                    Err(broadcast::error::RecvError::Closed) => feed_open = false,
                },
                _ = ping.tick() => ws.send(Message::text(r#"{"type":"ping"}"#)).await?,
                _ = tokio::time::sleep_until(drop_at.unwrap_or(start)), if drop_at.is_some() => {
                    return Ok("dropped on purpose (--disconnect-every)");
                }
            }
        }
    }
    .await;
    match outcome {
        Ok(how) => tracing::info!("serve: client {id} {how} after {sent} trades"),
        Err(e) => tracing::info!("serve: client {id} lost after {sent} trades: {e}"),
    }
    // Dropping the socket without a closing handshake is the point of --disconnect-every.
    drop(ws);
}

/// Applies a client's request; the reply to send, if any.
fn handle_request(id: u64, text: &str, subscribed: &mut BTreeSet<String>, max_symbols: usize) -> Option<String> {
    let error = |msg: &str| serde_json::json!({"type": "error", "msg": msg}).to_string();
    let Ok(request) = serde_json::from_str::<serde_json::Value>(text) else {
        return Some(error("Invalid message: not JSON"));
    };
    let symbol = request.get("symbol").and_then(|s| s.as_str());
    match (request.get("type").and_then(|t| t.as_str()), symbol) {
        (Some("subscribe"), Some(symbol)) => {
            if subscribed.contains(symbol) {
                return None;
            }
            if subscribed.len() >= max_symbols {
                tracing::info!("serve: client {id}: refused {symbol:?}: more than {max_symbols} symbols");
                return Some(error("Subscribing to too many symbols"));
            }
            tracing::info!("serve: client {id} subscribed to {symbol:?}");
            subscribed.insert(symbol.to_owned());
            None
        }
        (Some("unsubscribe"), Some(symbol)) => {
            tracing::info!("serve: client {id} unsubscribed from {symbol:?}");
            subscribed.remove(symbol);
            None
        }
        _ => Some(error("Invalid message: expected {\"type\":\"subscribe\" or \"unsubscribe\",\"symbol\":\"...\"}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_are_per_connection_and_capped() {
        let mut subscribed = BTreeSet::new();
        assert_eq!(handle_request(1, r#"{"type":"subscribe","symbol":"AAPL"}"#, &mut subscribed, 2), None);
        assert_eq!(handle_request(1, r#"{"type":"subscribe","symbol":"AAPL"}"#, &mut subscribed, 2), None);
        assert_eq!(handle_request(1, r#"{"type":"subscribe","symbol":"MSFT"}"#, &mut subscribed, 2), None);
        let reply = handle_request(1, r#"{"type":"subscribe","symbol":"NVDA"}"#, &mut subscribed, 2).unwrap();
        assert_eq!(reply, r#"{"msg":"Subscribing to too many symbols","type":"error"}"#);
        assert_eq!(handle_request(1, r#"{"type":"unsubscribe","symbol":"AAPL"}"#, &mut subscribed, 2), None);
        assert_eq!(subscribed, BTreeSet::from(["MSFT".to_owned()]));
        assert!(handle_request(1, "nope", &mut subscribed, 2).unwrap().contains("error"));
        assert!(handle_request(1, r#"{"type":"news"}"#, &mut subscribed, 2).unwrap().contains("error"));
    }

    #[test]
    fn a_replay_starts_now_and_keeps_the_gaps() {
        let dir = std::env::temp_dir().join(format!("tradeflow-replay-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("in.ndjson");
        let lines = [
            r#"{"s":"AAPL","p":1,"t":1700000000000,"v":1,"c":null}"#,
            "garbage",
            r#"{"type":"trade","data":[{"s":"MSFT","p":2,"t":1700000000500,"v":0},{"s":"AAPL","p":3,"t":1700000000400,"v":1}]}"#,
            r#"{"s":"AAPL","p":4,"t":1700000002000,"v":1,"c":["x"]}"#,
        ];
        std::fs::write(&path, lines.join("\n")).unwrap();
        let mut replay = Replay::open(&path).unwrap();
        let now = 1_800_000_000_000;
        let (first, done) = replay.due(now);
        assert_eq!(first.iter().map(|t| t.ts).collect::<Vec<_>>(), [now]);
        assert!(!done);
        // The disordered trade goes with the one before it: pacing never goes backwards.
        let (second, _) = replay.due(now + 500);
        assert_eq!(second.iter().map(|t| t.ts).collect::<Vec<_>>(), [now + 500, now + 400]);
        assert!(replay.due(now + 1999).0.is_empty());
        let (last, done) = replay.due(now + 2000);
        assert_eq!((last.len(), last[0].conditions.as_deref(), done), (1, Some(r#"["x"]"#), true));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
