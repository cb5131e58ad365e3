//! Raw command-line flags (clap), before validation.
//!
//! Timely's own flags work as in timely: `-w` worker threads per process, `-n`
//! processes, `-p` this process's index, `-h` host file; so help is `--help` only.

use clap::{ArgAction, Args, Parser, Subcommand};
use std::path::PathBuf;

/// Real-time market analytics: trades in, exact windowed VWAP, volatility and anomalies
/// out, on timely and differential dataflow.
#[derive(Debug, Parser)]
#[command(name = "tradeflow", version, disable_help_flag = true, disable_help_subcommand = true)]
pub struct Cli {
    /// Print help.
    #[arg(long, action = ArgAction::Help, global = true)]
    help: Option<bool>,
    /// Log lines on stderr: text, or one JSON object a line. RUST_LOG filters them
    /// (default info).
    #[arg(long, value_enum, global = true, default_value_t = crate::logging::LogFormat::Text, value_name = "FORMAT")]
    pub log_format: crate::logging::LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the pipeline: sources -> window metrics, volatility, anomalies -> sinks.
    #[command(disable_help_flag = true)]
    Run(Box<RunArgs>),
    /// Write a simulated market to an NDJSON file (test and benchmark inputs), or serve it
    /// as a Finnhub-compatible WebSocket feed (--serve).
    #[command(disable_help_flag = true)]
    Simulate(SimulateArgs),
    /// Create or upgrade the PostgreSQL schema (also done by `run` at start); idempotent.
    #[command(disable_help_flag = true)]
    Migrate(MigrateArgs),
    /// Send trades (simulator, file, Finnhub) to a Kafka topic: key = symbol, timestamp =
    /// the trade's time; creates the topic if needed.
    #[command(disable_help_flag = true)]
    Produce(crate::produce::ProduceArgs),
    /// Recompute a day's or range's final window metrics and anomalies from the lake's
    /// raw trades and reconcile them, bit for bit, with the lake and PostgreSQL; reports
    /// completeness and a data-quality score, and fails naming the first difference.
    #[command(disable_help_flag = true)]
    Check(crate::check::CheckArgs),
    /// Write the daily report of a UTC day: one self-contained HTML page with charts (top
    /// volatile symbols, volume by hour, VWAP of the top symbols, anomalies) and the same
    /// numbers as Markdown, from the lake (default) or PostgreSQL (--postgres).
    #[command(disable_help_flag = true)]
    Report(crate::report::ReportArgs),
}

/// Timely's execution flags.
#[derive(Debug, Clone, Args)]
pub struct TimelyArgs {
    /// Worker threads per process.
    #[arg(short = 'w', long = "threads", default_value_t = 1, value_name = "N")]
    pub workers: usize,
    /// Number of processes.
    #[arg(short = 'n', long = "processes", default_value_t = 1, value_name = "N")]
    pub processes: usize,
    /// Index of this process (0..N).
    #[arg(short = 'p', long = "process", default_value_t = 0, value_name = "I")]
    pub process: usize,
    /// Host file: one host:port per line, process i listens on line i.
    #[arg(short = 'h', long = "hostfile", value_name = "FILE")]
    pub hostfile: Option<PathBuf>,
}

/// `tradeflow run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Input, repeatable: file:///abs/path (NDJSON file or directory),
    /// sim://?symbols=AAPL,MSFT&rate=50000&count=1000000&seed=42&start=now,
    /// lake:///abs/dir or lake+s3://bucket/prefix (?from=..&to=..: replay a lake's trades),
    /// kafka://host:port/topic?start=..&end=..&group=..&format=json|avro,
    /// finnhub://?symbols=AAPL,MSFT (FINNHUB_API_KEY; endpoint=ws://.. for another server).
    #[arg(long = "source", value_name = "URL", default_value = "sim://")]
    pub sources: Vec<String>,
    /// Parquet lake root: file:///abs/dir (or file://relative/dir), or s3://bucket/prefix
    /// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL,
    /// AWS_ALLOW_HTTP; s3:///prefix takes the bucket from S3_BUCKET).
    #[arg(long, value_name = "URL", default_value = "file://./data/lake")]
    pub lake: String,
    /// Do not write the lake.
    #[arg(long, conflicts_with = "lake")]
    pub no_lake: bool,
    /// PostgreSQL sink: postgres://user:password@host:5432/database. Default: DATABASE_URL,
    /// else POSTGRES_HOST/PORT/DB/USER/PASSWORD (from the environment, then ./.env); off
    /// when none is set.
    #[arg(long, value_name = "URL")]
    pub postgres: Option<String>,
    /// How long the PostgreSQL sink retries a lost connection before the run stops.
    #[arg(long, default_value = "5m", value_name = "DURATION")]
    pub postgres_retry_for: String,
    /// How long a kafka:// source waits for its brokers when none answers before the run
    /// stops (a checkpointed run then resumes from its last checkpoint).
    #[arg(long, default_value = "5m", value_name = "DURATION")]
    pub kafka_retry_for: String,
    /// How long writes to an S3 lake are retried while the store is unreachable before
    /// the run stops (a checkpointed run then resumes from its last checkpoint).
    #[arg(long, default_value = "2m", value_name = "DURATION")]
    pub lake_retry_for: String,
    /// Windows, volatility and anomaly rules.
    #[command(flatten)]
    pub analytics: AnalyticsArgs,
    /// How far behind its partition's newest trade a trade may be and still count.
    #[arg(long, default_value = "5s", value_name = "DURATION")]
    pub allowed_lateness: String,
    /// Wall-clock silence after which a live partition stops holding the watermark back.
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub idle_timeout: String,
    /// Serve Prometheus metrics at http://ADDR/metrics (host:port, or a port on
    /// 127.0.0.1, e.g. 127.0.0.1:9898). Each process of a -n N run serves its own.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<String>,
    /// Serve the live dashboard at http://ADDR/ (host:port, or a port on 127.0.0.1, e.g.
    /// 127.0.0.1:8501). Each process of a -n N run shows its own workers' symbols.
    #[arg(long, value_name = "ADDR")]
    pub dashboard_addr: Option<String>,
    /// Seconds between progress lines on stderr (0 = none).
    #[arg(long, default_value = "2s", value_name = "DURATION")]
    pub progress_interval: String,
    /// Time resolution of the lake's changelog: the updates of each row within one such
    /// interval are consolidated into its net change, written once (a window's provisional
    /// values then show at most once per interval; every final value is kept). 0 = every
    /// update as it happened.
    #[arg(long, default_value = "1s", value_name = "DURATION")]
    pub changelog_resolution: String,
    /// Identifier of this run in the changelog (default: the start time of process 0).
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,
    /// Largest trades file, in rows.
    #[arg(long, default_value_t = 1_000_000, value_name = "ROWS")]
    pub lake_file_rows: usize,
    /// Largest `window_metrics` and `anomalies` file, in rows: an hour's final rows are
    /// written in files of this many as soon as they are known, so this is also the most
    /// final rows the lake holds in memory per dataset.
    #[arg(long, default_value_t = crate::pipeline::FINALS_FILE_ROWS, value_name = "ROWS")]
    pub lake_final_rows: usize,
    /// Trades the lake's writer holds in memory per worker (about 72 bytes each) for
    /// files not yet written; past it, the files holding the most spill theirs to the
    /// lake's local spool directory. Memory is then bounded however many symbols are
    /// open; a larger value spills less. Applies to the symbol layout.
    #[arg(long, default_value_t = 1 << 20, value_name = "ROWS")]
    pub lake_buffer_rows: usize,
    /// Layout of the lake's trades: symbol = a file per symbol and hour
    /// (trades/date=D/symbol=S/); hour = an hour's trades of every symbol, sorted by
    /// symbol (trades/date=D/hour=HH/), for large universes.
    #[arg(long, value_enum, default_value_t = LakeLayout::Symbol, value_name = "LAYOUT")]
    pub lake_layout: LakeLayout,
    /// How often a durable checkpoint is written to the lake (every source position, the
    /// open windows, what the sinks hold), so that a stopped or crashed run resumes where
    /// it was when the same command runs again; 0 = off. Needs the lake and sources that
    /// can be re-read: kafka:// (checkpointed every 10s unless given), file:// and lake://
    /// (checkpointed only when this is given: their checkpoints keep a copy of the trades
    /// of the hours still open, which a fast replay fills quickly).
    #[arg(long, value_name = "DURATION")]
    pub checkpoint_interval: Option<String>,
    /// The job's name: where its checkpoint lives (`<lake>/_checkpoints/<NAME>/`). Default:
    /// derived from the sources (without their start, end and group) and the sinks.
    #[arg(long, value_name = "NAME")]
    pub job: Option<String>,
    /// Ignore the job's checkpoint and start from the sources' configured start.
    #[arg(long)]
    pub from_scratch: bool,
    /// On Ctrl-C or SIGTERM, finalise every open window (as if the input had ended)
    /// instead of leaving them open for a resumed run to complete.
    #[arg(long)]
    pub drain: bool,
    /// Timely execution.
    #[command(flatten)]
    pub timely: TimelyArgs,
}

/// The analytics settings: windows, volatility and the anomaly rules (`run`; `check`
/// takes the same, to recompute what the run computed).
#[derive(Debug, Clone, Args)]
pub struct AnalyticsArgs {
    /// Window size.
    #[arg(long, default_value = "1m", value_name = "DURATION")]
    pub window: String,
    /// Hop between window starts (must divide --window); default: tumbling.
    #[arg(long, value_name = "DURATION")]
    pub slide: Option<String>,
    /// Windows spanned by the rolling volatility (K).
    #[arg(long, default_value_t = 20, value_name = "K")]
    pub volatility_windows: usize,
    /// A volume spike is volume > F x baseline.
    #[arg(long, default_value_t = 3.0, value_name = "F")]
    pub spike_factor: f64,
    /// Windows before a window that form its volume baseline (K).
    #[arg(long, default_value_t = 20, value_name = "K")]
    pub baseline_windows: usize,
    /// Baseline windows that must have trades before a spike can fire (H).
    #[arg(long, default_value_t = 5, value_name = "H")]
    pub min_history: usize,
    /// A price jump is |r - mean| > Z x volatility.
    #[arg(long, default_value_t = 4.0, value_name = "Z")]
    pub jump_sigma: f64,
}

/// `tradeflow simulate`.
#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// Output NDJSON file.
    #[arg(long, value_name = "PATH", required_unless_present_any = ["serve", "to"], conflicts_with_all = ["serve", "to"])]
    pub out: Option<PathBuf>,
    /// Send the market to a Kafka topic instead (kafka://host:port/topic): the same as
    /// `tradeflow produce --from sim://...` with these --symbols, --rate (paced; 0 = as
    /// fast as possible), --count (absent: until Ctrl-C), --seed and --start.
    #[arg(long, value_name = "URL", conflicts_with = "serve")]
    pub to: Option<String>,
    /// Serve a Finnhub-compatible WebSocket feed at ADDR (e.g. 127.0.0.1:8765) instead:
    /// the market (or --from) in real time with current timestamps, until stopped.
    #[arg(long, value_name = "ADDR")]
    pub serve: Option<String>,
    /// With --serve: replay this NDJSON file's trades (file:///abs/path), shifted to now
    /// and paced by their timestamps, instead of simulating.
    #[arg(long, value_name = "URL", requires = "serve")]
    pub from: Option<String>,
    /// With --serve: time between {"type":"ping"} messages (Finnhub's come about a
    /// minute apart).
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    pub ping_interval: String,
    /// With --serve: drop every connection this long after it opened (no closing
    /// handshake), to exercise reconnects.
    #[arg(long, value_name = "DURATION", requires = "serve")]
    pub disconnect_every: Option<String>,
    /// With --serve: symbols one connection may subscribe to; beyond, the server answers
    /// "Subscribing to too many symbols" as Finnhub's free tier does.
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub max_symbols: usize,
    /// Comma-separated symbols (default: a built-in universe of stocks, crypto and forex).
    #[arg(long, value_delimiter = ',')]
    pub symbols: Vec<String>,
    /// Number of trades (default: 1000000 with --out, unbounded with --serve).
    #[arg(long)]
    pub count: Option<u64>,
    /// Random seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Event time of the first trade: ms since the epoch, RFC 3339, or now (--serve
    /// always starts now).
    #[arg(long, default_value = "2023-11-14T22:13:20Z")]
    pub start: String,
    /// Event-time rate in trades/s (with --out timestamps only, the file is written at
    /// full speed; with --serve the pace of the feed).
    #[arg(long, default_value_t = 50_000)]
    pub rate: u64,
    /// Line encoding: flat trades, Finnhub messages of 1-8 trades, or a mix.
    #[arg(long, value_enum, default_value_t = LineFormat::Flat)]
    pub format: LineFormat,
}

/// `tradeflow migrate`.
#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// The database: postgres://user:password@host:5432/database. Default: DATABASE_URL,
    /// else POSTGRES_HOST/PORT/DB/USER/PASSWORD (from the environment, then ./.env).
    #[arg(long, value_name = "URL")]
    pub postgres: Option<String>,
    /// How long to retry while the server is unreachable.
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    pub retry_for: String,
}

/// `--lake-layout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LakeLayout {
    /// A file per symbol and hour.
    Symbol,
    /// Files per hour, sorted by symbol.
    Hour,
}

/// How `simulate` encodes trades.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LineFormat {
    /// `{"s":..,"p":..,"t":..,"v":..,"c":..}` per line.
    Flat,
    /// `{"type":"trade","data":[...]}` per line.
    Finnhub,
    /// Both, alternating by chance.
    Mixed,
}
