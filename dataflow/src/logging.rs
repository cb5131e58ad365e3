//! What the binary writes on stderr while it runs: logs and progress.
//!
//! * Logs go through `tracing`: `RUST_LOG` filters them (default `info`; e.g.
//!   `RUST_LOG=warn` or `RUST_LOG=tradeflow_sinks=debug`), `--log-format text` (the
//!   default: time, level, message; colours on a terminal) or `--log-format json` (one
//!   JSON object a line, for log shippers).
//! * Progress: a bounded run on a terminal shows a progress bar with an ETA, measured in
//!   bytes for file sources (this process's share of [`FilePlan::total_bytes`]) or in
//!   trades for a bounded simulator, or a spinner when neither is known (lake replays,
//!   mixed sources, a simulator split over processes). Otherwise (stderr not a terminal,
//!   or an unbounded run) a plain progress line every `--progress-interval`, as before;
//!   tests and log collectors read those.
//! * The end-of-run summary stays plain text on stderr (see [`crate::stats`]).
//!
//! A log line written while the bar is drawn hides the bar for that line, so the two
//! never garble each other.

use crate::config::{RunConfig, Source};
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
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Measure {
    /// Bytes of file sources parsed, of this many.
    Bytes(u64),
    /// Records (trades accepted or rejected) of this many.
    Trades(u64),
    /// Nothing known in advance: a spinner.
    Unknown,
}

/// What this process's bar can measure.
fn measure(config: &RunConfig) -> Measure {
    let peers = config.threads * config.processes;
    let workers = config.process * config.threads..(config.process + 1) * config.threads;
    let mut bytes = Some(0);
    let mut trades = Some(0);
    for source in &config.sources {
        match source {
            Source::File(plan) => {
                let mine: u64 = workers.clone().flat_map(|w| plan.owned(w, peers)).map(|c| c.end - c.start).sum();
                bytes = bytes.map(|b| b + mine);
                trades = None;
            }
            // One process simulates every symbol; with several, its share is unknown.
            Source::Sim(sim) if config.processes == 1 && sim.count.is_some() => {
                trades = trades.map(|t| t + sim.count.unwrap_or(0));
                bytes = None;
            }
            _ => (bytes, trades) = (None, None),
        }
    }
    match (bytes, trades) {
        (Some(b), _) if b > 0 => Measure::Bytes(b),
        (_, Some(t)) if t > 0 => Measure::Trades(t),
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
                eprintln!("{}", stats.progress_line(&mut last));
                next += every;
            }
        }
    }))
}

fn draw_bar(measure: Measure, stats: &RunStats, done: &AtomicBool) {
    let (bar, template) = match measure {
        Measure::Bytes(total) => (
            ProgressBar::new(total),
            "{spinner} {elapsed_precise} [{bar:30}] {binary_bytes}/{binary_total_bytes} {percent:>3}% ETA {eta} | {wide_msg}",
        ),
        Measure::Trades(total) => (
            ProgressBar::new(total),
            "{spinner} {elapsed_precise} [{bar:30}] {human_pos}/{human_len} trades {percent:>3}% ETA {eta} | {wide_msg}",
        ),
        Measure::Unknown => (ProgressBar::new_spinner(), "{spinner} {elapsed_precise} {wide_msg}"),
    };
    bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(10));
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    *BAR.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
    let bytes = tradeflow_sources::file::bytes_read();
    let start_bytes = bytes.get();
    let mut last = (Instant::now(), 0);
    let mut message_due = Instant::now();
    while !done.load(Ordering::Relaxed) {
        let ingest = &stats.ingest;
        let accepted = ingest.accepted.load(Ordering::Relaxed);
        match measure {
            Measure::Bytes(_) => bar.set_position(bytes.get() - start_bytes),
            Measure::Trades(_) => bar.set_position(accepted + ingest.rejected_total()),
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
        assert_eq!(measure(&config(&["--source", &url, "--no-lake", "-w", "2"])), Measure::Bytes(line.len() as u64));
        assert_eq!(
            measure(&config(&["--source", &url, "--source", "sim://?count=5&rate=0", "--no-lake"])),
            Measure::Unknown
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
