//! `tradeflow produce --from URL --to kafka://host:port/topic`: the ingestion producer.
//!
//! Reads trades from the simulator (`sim://`, paced in wall-clock time when `rate > 0`,
//! as fast as possible with `rate=0`), from NDJSON files (`file://`, in file order) or
//! from Finnhub (`finnhub://`), and sends each valid trade to the topic with key = its
//! symbol and timestamp = its `t` (see [`tradeflow_sources::kafka::producer`]). Input
//! records that are not valid trades are counted by reason and not sent (the consumer
//! would only reject them again). Lateness is the consumer's business: nothing is
//! dropped for being late here.
//!
//! A progress line goes to stderr every `--progress-interval`, and a summary at the end;
//! the exit status is non-zero if any trade could not be delivered, or if the input
//! failed (Finnhub refusing the key). An unbounded input (`finnhub://`, `sim://` without
//! `count`) runs until Ctrl-C, which stops reading, sends what was already received,
//! waits for every delivery and prints the summary. From Finnhub, the connection
//! reconnects and resubscribes as for `tradeflow run` ([`tradeflow_sources::finnhub`]),
//! and the server's `error` messages are logged as warnings naming the cause.

use crate::config::seed_variable;
use crate::stats::group;
use anyhow::Context;
use clap::Args;
use std::collections::BTreeMap;
use std::io::BufRead;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tradeflow_model::Trade;
use tradeflow_sources::format::{Item, parse_line};
use tradeflow_sources::kafka::KafkaError;
use tradeflow_sources::kafka::producer::{ProducerOptions, TradeProducer};
use tradeflow_sources::kafka::spec::{ValueFormat, parse_url};
use tradeflow_sources::sim::Market;
use tradeflow_sources::url::{SourceSpec, parse_source};

/// `tradeflow produce`.
#[derive(Debug, Clone, Args)]
pub struct ProduceArgs {
    /// Input: sim://?symbols=AAPL,MSFT&rate=50000&count=1000000&seed=42&start=now,
    /// file:///abs/path (NDJSON file or directory), or finnhub://?symbols=AAPL,MSFT.
    #[arg(long, value_name = "URL")]
    pub from: String,
    /// The topic: kafka://host:port[,host:port]/topic (kafka:///topic: brokers from
    /// KAFKA_BOOTSTRAP_SERVERS); `?format=avro` there works like --format.
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// Partitions of the topic when it has to be created (an existing topic keeps its own).
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub partitions: i32,
    /// Replication factor of the topic when it has to be created.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub replication_factor: i32,
    /// Value encoding: json (flat trades) or avro (Confluent wire format,
    /// schemas/trade.avsc; registered with SCHEMA_REGISTRY_URL when set). Default: the
    /// URL's format=, else json.
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// How long records wait to fill a batch (librdkafka linger.ms).
    #[arg(long, default_value = "5ms", value_name = "DURATION")]
    pub linger: String,
    /// Compression: lz4, snappy, gzip or none.
    #[arg(long, default_value = "lz4", value_name = "CODEC")]
    pub compression: String,
    /// Seconds between progress lines on stderr (0 = none).
    #[arg(long, default_value = "2s", value_name = "DURATION")]
    pub progress_interval: String,
}

impl ProduceArgs {
    /// `tradeflow produce --from FROM --to TO` with every other option at its default.
    pub fn defaults(from: String, to: String) -> ProduceArgs {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: ProduceArgs,
        }
        use clap::Parser;
        Wrapper::parse_from(["produce", "--from", &from, "--to", &to]).args
    }
}

/// Where trades come from.
enum Input {
    Sim(Box<Market>, u64, i64),
    Files(Vec<std::path::PathBuf>),
    Finnhub(tradeflow_sources::finnhub::FinnhubConfig),
}

/// Counts of the input side.
#[derive(Default)]
struct Read {
    trades: u64,
    rejected: BTreeMap<&'static str, u64>,
}

/// Runs `tradeflow produce`.
pub fn produce(args: &ProduceArgs) -> anyhow::Result<()> {
    let mut spec = parse_url(&args.to).map_err(|e| anyhow::anyhow!("--to {:?}: {e}", args.to))?;
    spec.resolve_brokers(seed_variable).map_err(|e| anyhow::anyhow!("--to {:?}: {e}", args.to))?;
    let format = match &args.format {
        Some(f) => ValueFormat::parse(f).map_err(|e| anyhow::anyhow!("--format: {e}"))?,
        None => spec.format,
    };
    if args.partitions < 1 {
        anyhow::bail!("--partitions {}: must be at least 1", args.partitions);
    }
    let compression = args.compression.to_ascii_lowercase();
    if !["lz4", "snappy", "gzip", "none"].contains(&compression.as_str()) {
        anyhow::bail!("--compression {:?}: use lz4, snappy, gzip or none", args.compression);
    }
    let linger = crate::config::duration("--linger", &args.linger)?;
    let progress = crate::config::duration("--progress-interval", &args.progress_interval)?;
    let input = open_input(&args.from)?;

    let options = ProducerOptions {
        partitions: args.partitions,
        replication: args.replication_factor,
        format,
        linger,
        compression,
    };
    let (producer, topic) = TradeProducer::open(&spec, &options).map_err(message)?;
    crate::say!(
        "produce: {} {} with {} partition(s); {} values, {} compression",
        spec.label(),
        if topic.created { "created" } else { "exists" },
        topic.partitions,
        format.as_str(),
        options.compression
    );

    let stop = Arc::new(AtomicBool::new(false));
    crate::run::on_signals(
        stop.clone(),
        || crate::say!("Ctrl-C: stopping; waiting for the trades already sent to be delivered (Ctrl-C again to abort)"),
        || crate::say!("second Ctrl-C: exiting without waiting for deliveries"),
    );
    let started = Instant::now();
    let mut pump = Pump { producer, read: Read::default(), ticker: Ticker::new(progress), started };
    match input {
        Input::Sim(mut market, rate, start_ms) => {
            let paced = rate > 0;
            while !stop.load(Ordering::Relaxed) {
                if paced {
                    let horizon = start_ms + started.elapsed().as_millis() as i64;
                    match market.peek_arrival() {
                        None => break,
                        Some(arrival) if arrival > horizon => {
                            pump.idle()?;
                            std::thread::sleep(Duration::from_millis((arrival - horizon).clamp(1, 50) as u64));
                            continue;
                        }
                        Some(_) => {}
                    }
                }
                let Some((_, symbol, sim)) = market.next() else { break };
                let trade = sim.to_trade(symbol);
                pump.send(&trade)?;
            }
        }
        Input::Files(paths) => {
            'files: for path in paths {
                let file = std::fs::File::open(&path).with_context(|| format!("--from: reading {}", path.display()))?;
                let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
                let mut line = Vec::with_capacity(256);
                loop {
                    line.clear();
                    let n =
                        reader.read_until(b'\n', &mut line).with_context(|| format!("reading {}", path.display()))?;
                    if n == 0 {
                        break;
                    }
                    if stop.load(Ordering::Relaxed) {
                        break 'files;
                    }
                    if line.last() == Some(&b'\n') {
                        line.pop();
                    }
                    for trade in trades_of(&line, &mut pump.read, &mut |_| {}) {
                        pump.send(&trade)?;
                    }
                }
            }
        }
        Input::Finnhub(config) => {
            use tokio::sync::mpsc::error::TryRecvError;
            let feed = tradeflow_sources::finnhub::client::spawn(config.clone(), stop.clone(), Box::new(|| {}))
                .context("starting the Finnhub connection thread")?;
            let mut frames = feed.frames;
            // After Ctrl-C the connection closes; the frames already received are still sent.
            let mut stopping = false;
            loop {
                stopping = stopping || stop.load(Ordering::Relaxed);
                match frames.try_recv() {
                    Ok(frame) => {
                        let mut warn = |message: &str| {
                            tradeflow_sources::finnhub::warn_server_error(&config, message, frame.connection);
                        };
                        for trade in trades_of(&frame.bytes, &mut pump.read, &mut warn) {
                            pump.send(&trade)?;
                        }
                    }
                    Err(TryRecvError::Empty) if !stopping => {
                        pump.idle()?;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
        }
    }
    let Pump { producer, read, .. } = pump;
    let flushed = producer.flush(Duration::from_secs(180));
    let counts = producer.counts();
    let (sent, delivered, failed, resent) = (
        counts.sent.load(Ordering::Relaxed),
        counts.delivered.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
        counts.resent.load(Ordering::Relaxed),
    );
    let elapsed = started.elapsed();
    let rate = delivered as f64 / elapsed.as_secs_f64().max(1e-9);
    let rejected: u64 = read.rejected.values().sum();
    let reasons: Vec<String> = read.rejected.iter().map(|(r, n)| format!("{r} {}", group(*n))).collect();
    crate::say!("tradeflow produce finished in {:.2}s", elapsed.as_secs_f64());
    crate::say!("  topic            {} ({} partitions)", spec.label(), topic.partitions);
    crate::say!("  trades sent      {:>12}", group(sent));
    crate::say!("  delivered        {:>12}  ({}/s)", group(delivered), group(rate as u64));
    crate::say!("  failed           {:>12}  (re-sent {})", group(failed), group(resent));
    if rejected > 0 {
        crate::say!("  input rejected   {:>12}  ({}; not sent)", group(rejected), reasons.join(", "));
    } else {
        crate::say!("  input rejected   {:>12}", 0);
    }
    flushed.map_err(message)?;
    // A source that gave up (Finnhub refusing the key) already logged why.
    if let Some(failure) = tradeflow_sources::batch::failure() {
        anyhow::bail!("the input failed: {failure}");
    }
    if failed > 0 {
        anyhow::bail!(
            "{} of {} trades were not delivered (first error: {})",
            group(failed),
            group(sent),
            producer.first_error().unwrap_or_default()
        );
    }
    Ok(())
}

/// A producer's error as the message `error: ...` shows: its text once. (Its `#[source]`
/// is already part of that text; wrapped whole, `{:#}` would print it twice.)
fn message(e: KafkaError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// The producer with its input counts and progress line.
struct Pump {
    producer: TradeProducer,
    read: Read,
    ticker: Ticker,
    started: Instant,
}

impl Pump {
    fn send(&mut self, trade: &Trade) -> anyhow::Result<()> {
        self.read.trades += 1;
        self.producer.send(trade).map_err(message)?;
        if self.read.trades.is_multiple_of(1024) {
            self.idle()?;
        }
        Ok(())
    }

    /// Serves delivery reports and prints progress when due.
    fn idle(&mut self) -> anyhow::Result<()> {
        self.producer.poll().map_err(message)?;
        self.ticker.tick(&self.producer, self.started);
        Ok(())
    }
}

/// Valid trades of one NDJSON line or frame; rejects counted by reason, a server's
/// `{"type":"error"}` message passed to `server_error`.
fn trades_of(line: &[u8], read: &mut Read, server_error: &mut dyn FnMut(&str)) -> Vec<Trade> {
    let mut trades = Vec::new();
    parse_line(line, &mut |item| match item {
        Item::Trade(t) => match t.to_trade() {
            Ok(trade) => trades.push(trade),
            Err(_) => *read.rejected.entry("bad_symbol").or_default() += 1,
        },
        Item::Reject(r) => *read.rejected.entry(r.reason.as_str()).or_default() += 1,
        Item::Ping => {}
        Item::ServerError(message) => server_error(&message),
    });
    trades
}

fn open_input(from: &str) -> anyhow::Result<Input> {
    let spec = parse_source(from).map_err(|e| anyhow::anyhow!("--from: {e}"))?;
    Ok(match spec {
        SourceSpec::Sim { mut config, start } => {
            config.start_ms = start.unwrap_or_else(tradeflow_sources::batch::wall_ms);
            config.check().map_err(|e| anyhow::anyhow!("--from {from:?}: {e}"))?;
            let (rate, start_ms) = (config.rate, config.start_ms);
            Input::Sim(Box::new(Market::new(&config, |_| true)), rate, start_ms)
        }
        SourceSpec::File { path } => {
            let plan =
                tradeflow_sources::file::plan::FilePlan::new(&path, tradeflow_sources::file::DEFAULT_CHUNK_BYTES)
                    .map_err(|e| anyhow::anyhow!("--from {from:?}: {e}"))?;
            Input::Files(plan.files.into_iter().map(|f| f.path).collect())
        }
        SourceSpec::Finnhub(spec) => {
            let config = spec
                .resolve(seed_variable("FINNHUB_API_KEY"), seed_variable("FINNHUB_WS_URL"))
                .map_err(|e| anyhow::anyhow!("--from {from:?}: {e}"))?;
            Input::Finnhub(config)
        }
        SourceSpec::Kafka(_) | SourceSpec::Lake { .. } | SourceSpec::Stdin => {
            anyhow::bail!("--from {from:?}: produce reads sim://, file:// or finnhub:// sources")
        }
    })
}

/// Prints a progress line every `every` (never if zero).
struct Ticker {
    every: Duration,
    next: Instant,
    last: (Instant, u64),
}

impl Ticker {
    fn new(every: Duration) -> Ticker {
        Ticker { every, next: Instant::now() + every, last: (Instant::now(), 0) }
    }

    fn tick(&mut self, producer: &TradeProducer, started: Instant) {
        if self.every.is_zero() || Instant::now() < self.next {
            return;
        }
        self.next += self.every;
        let counts = producer.counts();
        let sent = counts.sent.load(Ordering::Relaxed);
        let now = Instant::now();
        let rate = (sent - self.last.1) as f64 / now.duration_since(self.last.0).as_secs_f64().max(1e-9);
        self.last = (now, sent);
        crate::say!(
            "[{:>7.1}s] produce: sent {} ({}/s) | delivered {} | failed {}",
            started.elapsed().as_secs_f64(),
            group(sent),
            group(rate as u64),
            group(counts.delivered.load(Ordering::Relaxed)),
            group(counts.failed.load(Ordering::Relaxed))
        );
    }
}
