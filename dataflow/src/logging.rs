//! What the binary writes on stderr while it runs: logs and progress.
//!
//! * Logs go through `tracing`: `RUST_LOG` filters them (default `info`; e.g.
//!   `RUST_LOG=warn` or `RUST_LOG=tradeflow_sinks=debug`), `--log-format text` (the
//!   default: time, level, message; colours on a terminal) or `--log-format json` (one
//!   JSON object a line, for log shippers).
//! * Progress: a bounded run on a terminal shows a progress bar with an ETA, measured in
//!   bytes for file sources (this process's share of their files) and lake replays (the
//!   bytes of the trades files its workers read, known as they start), in records for
//!   bounded Kafka replays (this process's partitions' offset ranges, resolved at start)
//!   or in trades for a bounded simulator; a spinner when none is known (sources of
//!   different kinds, a simulator split over processes). Otherwise (stderr not a
//!   terminal, or an unbounded run) a plain progress line every `--progress-interval`,
//!   as before; tests and log collectors read those.
//! * The end-of-run summary stays plain text on stderr (see [`crate::stats`]).
//!
//! A log line written while the bar is drawn hides the bar for that line, so the two
//! never garble each other.

use crate::config::RunConfig;
use crate::stats::{RunStats, group};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tradeflow_model::format_ts;
use tradeflow_model::metrics::Counter;
use tradeflow_sources::lake::ReplayProgress;
use tradeflow_sources::source::Extent;

/// `--log-format`.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Time, level and message, one line each.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `message`, `target`).
    Json,
}

/// The progress bar being drawn, if any: log lines are printed around it.
static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

fn bar() -> Option<ProgressBar> {
    BAR.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Installs the process's log subscriber (once; later calls do nothing).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Stderr)
        .with_ansi(format == LogFormat::Text && std::io::stderr().is_terminal())
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_target(true).try_init(),
    };
}

/// Writes `line` and a newline to stderr, ignoring a closed or full stderr (`2>/dev/full`,
/// `2>&1 | head -1`): diagnostics are never worth a panic, unlike `eprintln!`.
pub fn eprint_line(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(line.as_bytes()).and_then(|()| err.write_all(b"\n"));
}

/// `eprintln!` that never panics: see [`eprint_line`].
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => { $crate::logging::eprint_line(&format!($($arg)*)) };
}

/// Writes each log event to stderr in one piece, around the progress bar if one is drawn.
struct Stderr;

/// One log event's bytes, written when dropped.
struct Event(Vec<u8>);

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Event;
    fn make_writer(&'a self) -> Event {
        Event(Vec::with_capacity(256))
    }
}

impl Write for Event {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        let write = || {
            let _ = std::io::stderr().lock().write_all(&self.0);
        };
        match bar() {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }
}

/// What a progress bar counts.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Measure {
    /// Bytes: of file sources, `files` of them (known now), plus with `lake` those of the
    /// lake replays (their total is known once the workers start reading).
    Bytes {
        /// This process's bytes of file sources.
        files: u64,
        /// True when lake replays count too.
        lake: bool,
    },
    /// Records of bounded Kafka replays: this many offsets of these topics.
    Records {
        /// Offsets in this process's partitions' ranges.
        total: u64,
        /// The topics read (records read are counted by topic).
        topics: Vec<String>,
    },
    /// Records (trades accepted or rejected) of this many.
    Trades(u64),
    /// Nothing known in advance: a spinner.
    Unknown,
}

/// What this process's bar can measure: every source must be measured in the same unit.
fn measure(config: &RunConfig) -> Measure {
    let peers = config.threads * config.processes;
    let workers = config.process * config.threads..(config.process + 1) * config.threads;
    let mut bytes = Some(0);
    let mut lake = false;
    let mut trades = Some(0);
    let mut records = Some((0, Vec::new()));
    for source in &config.sources {
        match source.extent(workers.clone(), peers, config.processes) {
            Extent::Bytes(mine) => {
                bytes = bytes.map(|b| b + mine);
                (trades, records) = (None, None);
            }
            Extent::LakeBytes => {
                lake = true;
                (trades, records) = (None, None);
            }
            Extent::Trades(count) => {
                trades = trades.map(|t| t + count);
                (bytes, records) = (None, None);
            }
            Extent::Records { records: mine, topic } => {
                if let Some((total, topics)) = &mut records {
                    *total += mine;
                    topics.push(topic);
                }
                (bytes, trades) = (None, None);
            }
            Extent::Unknown => (bytes, trades, records) = (None, None, None),
        }
    }
    match (bytes, trades, records) {
        (Some(files), _, _) if files > 0 || lake => Measure::Bytes { files, lake },
        (_, Some(t), _) if t > 0 => Measure::Trades(t),
        (_, _, Some((total, mut topics))) if total > 0 => {
            topics.sort();
            topics.dedup();
            Measure::Records { total, topics }
        }
        _ => Measure::Unknown,
    }
}

/// Starts reporting progress (see the module documentation); the thread ends once
/// `done` is set.
pub fn progress(config: &RunConfig, stats: Arc<RunStats>, done: Arc<AtomicBool>) -> Option<JoinHandle<()>> {
    let every = config.progress_interval?;
    if config.bounded && std::io::stderr().is_terminal() {
        let measure = measure(config);
        return Some(std::thread::spawn(move || draw_bar(measure, &stats, &done)));
    }
    Some(std::thread::spawn(move || {
        let mut last = (Instant::now(), 0);
        let mut next = Instant::now() + every;
        while !done.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
            if Instant::now() >= next {
                crate::say!("{}", stats.progress_line(&mut last));
                next += every;
            }
        }
    }))
}

fn draw_bar(measure: Measure, stats: &RunStats, done: &AtomicBool) {
    let (bar, template) = match &measure {
        // A lake replay's total is known once its readers start: no length until then.
        Measure::Bytes { files, lake } => (
            if *lake { ProgressBar::no_length() } else { ProgressBar::new(*files) },
            "{spinner} {elapsed_precise} [{bar:30}] {binary_bytes}/{binary_total_bytes} {percent:>3}% ETA {eta} | {wide_msg}",
        ),
        Measure::Records { total, .. } => (
            ProgressBar::new(*total),
            "{spinner} {elapsed_precise} [{bar:30}] {human_pos}/{human_len} records {percent:>3}% ETA {eta} | {wide_msg}",
        ),
        Measure::Trades(total) => (
            ProgressBar::new(*total),
            "{spinner} {elapsed_precise} [{bar:30}] {human_pos}/{human_len} trades {percent:>3}% ETA {eta} | {wide_msg}",
        ),
        Measure::Unknown => (ProgressBar::new_spinner(), "{spinner} {elapsed_precise} {wide_msg}"),
    };
    bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(10));
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    *BAR.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
    let position = Position::new(&measure);
    let mut last = (Instant::now(), 0);
    let mut message_due = Instant::now();
    while !done.load(Ordering::Relaxed) {
        match &measure {
            Measure::Bytes { files, lake } => {
                let lake_total = position.lake.total.get() as u64;
                if *lake && files + lake_total > 0 {
                    bar.set_length(files + lake_total);
                }
                bar.set_position(position.bytes());
            }
            Measure::Records { .. } => bar.set_position(position.records()),
            Measure::Trades(_) => {
                bar.set_position(stats.ingest.accepted.load(Ordering::Relaxed) + stats.ingest.rejected_total())
            }
            Measure::Unknown => bar.tick(),
        }
        if Instant::now() >= message_due {
            bar.set_message(short_progress(stats, &mut last));
            message_due = Instant::now() + Duration::from_millis(500);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    *BAR.lock().unwrap_or_else(|e| e.into_inner()) = None;
    bar.finish_and_clear();
}

/// Where a bar's counts come from: process-wide counters, read relative to their
/// values when the bar started.
struct Position {
    files: Counter,
    files_start: u64,
    lake: ReplayProgress,
    lake_start: u64,
    kafka: Vec<Counter>,
    kafka_start: u64,
}

impl Position {
    fn new(measure: &Measure) -> Position {
        let files = tradeflow_sources::file::bytes_read();
        let lake = tradeflow_sources::lake::replay_progress();
        let kafka: Vec<Counter> = match measure {
            Measure::Records { topics, .. } => {
                topics.iter().map(|t| tradeflow_sources::kafka::records_read(t)).collect()
            }
            _ => Vec::new(),
        };
        Position {
            files_start: files.get(),
            files,
            lake_start: lake.read.get(),
            lake,
            kafka_start: kafka.iter().map(Counter::get).sum(),
            kafka,
        }
    }

    /// Bytes of files and lake replays read since the bar started.
    fn bytes(&self) -> u64 {
        (self.files.get() - self.files_start) + (self.lake.read.get() - self.lake_start)
    }

    /// Kafka records read since the bar started.
    fn records(&self) -> u64 {
        self.kafka.iter().map(Counter::get).sum::<u64>() - self.kafka_start
    }
}

/// The bar's message: throughput, windows, watermark.
fn short_progress(stats: &RunStats, last: &mut (Instant, u64)) -> String {
    let accepted = stats.ingest.accepted.load(Ordering::Relaxed);
    let now = Instant::now();
    let rate = (accepted - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-9);
    *last = (now, accepted);
    format!(
        "trades {} ({}/s) | rejects {} | final windows {} | watermark {}",
        group(accepted),
        group(rate as u64),
        group(stats.ingest.rejected_total()),
        group(stats.final_windows.load(Ordering::Relaxed)),
        format_ts(stats.watermark.load(Ordering::Relaxed))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::RunArgs;
    use clap::Parser;

    fn config(args: &[&str]) -> RunConfig {
        #[derive(Parser)]
        #[command(disable_help_flag = true)]
        struct Wrapper {
            #[command(flatten)]
            run: RunArgs,
        }
        let wrapper = Wrapper::try_parse_from(std::iter::once("run").chain(args.iter().copied())).unwrap();
        RunConfig::from_args(&wrapper.run).unwrap()
    }

    #[test]
    fn bars_measure_what_is_known() {
        assert_eq!(measure(&config(&["--source", "sim://?count=1000&rate=0", "--no-lake"])), Measure::Trades(1000));
        assert_eq!(measure(&config(&["--source", "sim://?rate=10", "--no-lake"])), Measure::Unknown);
        let dir = std::env::temp_dir().join(format!("tradeflow-logging-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("t.ndjson");
        let line = "{\"s\":\"A\",\"p\":1,\"t\":1700000000000,\"v\":1}\n";
        std::fs::write(&file, line).unwrap();
        let url = format!("file://{}", file.display());
        assert_eq!(
            measure(&config(&["--source", &url, "--no-lake", "-w", "2"])),
            Measure::Bytes { files: line.len() as u64, lake: false }
        );
        assert_eq!(
            measure(&config(&["--source", &url, "--source", "sim://?count=5&rate=0", "--no-lake"])),
            Measure::Unknown
        );
        // A lake replay is measured in the bytes of its trades files, alone or with files.
        std::fs::create_dir_all(dir.join("lake")).unwrap();
        let lake = format!("lake://{}", dir.join("lake").display());
        assert_eq!(measure(&config(&["--source", &lake, "--no-lake"])), Measure::Bytes { files: 0, lake: true });
        assert_eq!(
            measure(&config(&["--source", &lake, "--source", &url, "--no-lake"])),
            Measure::Bytes { files: line.len() as u64, lake: true }
        );
        assert_eq!(
            measure(&config(&["--source", &lake, "--source", "sim://?count=5&rate=0", "--no-lake"])),
            Measure::Unknown
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A bounded Kafka replay is measured in the offsets of this process's partitions;
    /// a live one, or one mixed with other kinds of source, is not.
    #[test]
    fn kafka_replays_count_their_offset_ranges() {
        use tradeflow_sources::kafka::plan::PartitionRange;
        use tradeflow_sources::kafka::{KafkaPlan, KafkaSource, parse_url};
        use tradeflow_sources::source::Source;

        let plan = |url: &str, topic_ranges: &[(i32, i64, Option<i64>)]| -> Arc<dyn Source> {
            Arc::new(KafkaSource(Arc::new(KafkaPlan {
                spec: parse_url(url).unwrap(),
                partitions: topic_ranges
                    .iter()
                    .map(|&(partition, start, end)| PartitionRange { partition, start, end })
                    .collect(),
                start_ts: None,
                end_ts: None,
            })))
        };
        let ranges = [(0, 100, Some(350)), (1, 0, Some(40)), (2, 70, Some(70)), (3, 5, Some(1005))];
        let bounded = plan("kafka://127.0.0.1:9092/trades?end=latest", &ranges);
        let with = |sources: Vec<Arc<dyn Source>>, args: &[&str]| {
            let mut c = config(&[&["--source", "sim://?rate=10", "--no-lake"], args].concat());
            c.sources = sources;
            measure(&c)
        };
        let records = |total| Measure::Records { total, topics: vec!["trades".to_owned()] };
        assert_eq!(with(vec![bounded.clone()], &[]), records(250 + 40 + 1000));
        assert_eq!(with(vec![bounded.clone()], &["-w", "2"]), records(250 + 40 + 1000));
        // Over two processes of one worker, partition p goes to process p % 2.
        let mut two = config(&["--source", "sim://?rate=10", "--no-lake", "-w", "1"]);
        (two.sources, two.processes) = (vec![bounded.clone()], 2);
        assert_eq!(measure(&two), records(250));
        two.process = 1;
        assert_eq!(measure(&two), records(40 + 1000));
        let live = plan("kafka://127.0.0.1:9092/trades", &[(0, 100, None)]);
        assert_eq!(with(vec![live], &[]), Measure::Unknown);
        let sim = config(&["--source", "sim://?count=5&rate=0", "--no-lake"]).sources;
        assert_eq!(with([vec![bounded], sim].concat(), &[]), Measure::Unknown);
    }

    /// A lake's trades files (Parquet as the lake sink writes them, two symbols over two
    /// hours) replayed by two readers: the measure's total becomes the bytes of its trades
    /// files once they start, and reading every file brings the position to it.
    #[test]
    fn lake_replays_count_the_bytes_of_their_files() {
        use std::sync::atomic::AtomicBool;
        use tradeflow_model::{Conditions, Price, Qty, Symbol, Trade};
        use tradeflow_sinks::lake::parquet::{encode, trades_batch, trades_schema};
        use tradeflow_sources::driver::{Poll, Reader};
        use tradeflow_sources::lake::{LakePlan, LakeReader, replay_progress};

        let dir = std::env::temp_dir().join(format!("tradeflow-logging-lake-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut sizes = 0;
        for (symbol, hour, n) in [("AAPL", 22, 300), ("AAPL", 23, 500), ("MSFT", 22, 200), ("MSFT", 23, 700)] {
            let start = 1_700_000_000_000 / 86_400_000 * 86_400_000 + hour * 3_600_000;
            let trades: Vec<Trade> = (0..n)
                .map(|i| Trade {
                    symbol: Symbol::parse(symbol).unwrap(),
                    ts: start + i * 1000,
                    price: Price::from_f64(100.0 + i as f64 / 100.0),
                    volume: Qty::from_f64(1.0 + i as f64),
                    conditions: Conditions::default(),
                })
                .collect();
            let bytes = encode(trades_schema(), &[trades_batch(&trades)], Vec::new()).unwrap();
            let file = dir.join(format!("trades/date=2023-11-14/symbol={symbol}/20231114T{hour}-0000.parquet"));
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, &bytes).unwrap();
            sizes += bytes.len() as u64;
        }

        let progress = replay_progress();
        let (total0, read0) = (progress.total.get(), progress.read.get());
        let url = format!("file://{}", dir.display());
        let stop = Arc::new(AtomicBool::new(false));
        // The listing the configuration checks counts nothing.
        let plan = LakePlan::list(&url, None, None).unwrap();
        assert!(plan.files() > 0);
        assert_eq!(progress.total.get(), total0);
        let mut readers: Vec<LakeReader> =
            (0..2).map(|i| LakeReader::open(&plan, i, 2, stop.clone()).unwrap()).collect();
        assert_eq!(progress.total.get(), total0, "counted before reading");
        let mut out = Vec::new();
        for reader in &mut readers {
            assert_eq!(reader.read(&mut out), Poll::Ready);
        }
        // Both have started, each with one of its two files read: the total is known.
        assert_eq!(progress.total.get() - total0, sizes as f64);
        let read = progress.read.get() - read0;
        assert!(read > 0 && read < sizes, "{read} of {sizes}");
        for reader in &mut readers {
            while reader.read(&mut out) != Poll::Done {}
        }
        assert_eq!(progress.read.get() - read0, sizes);
        assert_eq!(out.iter().map(|b| b.trades.len()).sum::<usize>(), 1700);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
