//! One validated configuration for `tradeflow run`, built from the raw flags.
//!
//! Every error names the flag, the value given and what would work.

use crate::cli::{AnalyticsArgs, RunArgs, TimelyArgs};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tradeflow_model::{CONFIG_VARIABLES, WindowSpec, format_ts};
use tradeflow_operators::{AnalyticsParams, AnomalyParams};
use tradeflow_sinks::postgres::PgTarget;
use tradeflow_sources::batch::wall_ms;
use tradeflow_sources::url::parse_source;

/// A configuration error: the message says what and how to fix it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

pub use tradeflow_sources::source::Source;

/// The PostgreSQL sink's settings.
#[derive(Clone, Debug)]
pub struct PostgresConfig {
    /// The server, database and user.
    pub target: PgTarget,
    /// How long a lost connection is retried before the run stops.
    pub retry_for: Duration,
}

/// Checkpointing settings (see `tradeflow_sinks::checkpoint`).
#[derive(Clone, Debug)]
pub struct CheckpointConfig {
    /// Between boundaries.
    pub interval: Duration,
    /// What identifies the job's results.
    pub header: tradeflow_sinks::checkpoint::JobHeader,
    /// Ignore an existing checkpoint.
    pub from_scratch: bool,
}

/// Everything `tradeflow run` needs, validated.
#[derive(Clone)]
pub struct RunConfig {
    /// Inputs.
    pub sources: Vec<Arc<dyn Source>>,
    /// The `source` label of each input in metrics (its URL scheme), in order.
    pub source_names: Vec<String>,
    /// True when every source ends by itself.
    pub bounded: bool,
    /// Lake URL, or `None` with `--no-lake`.
    pub lake: Option<String>,
    /// `--lake-retry-for`.
    pub lake_retry_for: Duration,
    /// `--kafka-retry-for`.
    pub kafka_retry_for: Duration,
    /// The PostgreSQL sink, if on.
    pub postgres: Option<PostgresConfig>,
    /// Windows, volatility and anomaly parameters.
    pub params: AnalyticsParams,
    /// `--allowed-lateness` in ms.
    pub lateness_ms: i64,
    /// `--idle-timeout`.
    pub idle_timeout: Duration,
    /// Progress line interval, `None` for none.
    pub progress_interval: Option<Duration>,
    /// The changelog's run id.
    pub run_id: String,
    /// `--changelog-resolution` in ms (0: every update).
    pub changelog_resolution_ms: u64,
    /// The job (`--job`, or derived from the settings): its lease and checkpoints.
    pub job: String,
    /// Largest trades file in rows.
    pub lake_file_rows: usize,
    /// `--lake-final-rows`.
    pub lake_final_rows: usize,
    /// `--lake-buffer-rows`.
    pub lake_buffer_rows: usize,
    /// `--lake-layout`.
    pub lake_layout: tradeflow_sinks::lake::TradesLayout,
    /// Timely's execution configuration.
    pub timely: timely::Config,
    /// This process's index.
    pub process: usize,
    /// Number of processes.
    pub processes: usize,
    /// Worker threads per process.
    pub threads: usize,
    /// Where to serve Prometheus `/metrics`.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Where to serve the live dashboard.
    pub dashboard_addr: Option<std::net::SocketAddr>,
    /// Checkpoints, when on (`None`: off, or not possible for these sources and sinks).
    pub checkpoint: Option<CheckpointConfig>,
    /// Why checkpoints are off, when they are.
    pub checkpoint_off: Option<String>,
    /// `--drain`: finalise open windows on a stop.
    pub drain: bool,
}

impl std::fmt::Debug for RunConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunConfig")
            .field("sources", &self.sources)
            .field("lake", &self.lake)
            .field("postgres", &self.postgres)
            .field("params", &self.params)
            .finish()
    }
}

/// A duration flag's value (`1m`, `30s`, `500ms`), or an error naming the flag and the fix.
pub(crate) fn duration(flag: &str, text: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(text).map_err(|e| ConfigError(format!("{flag} {text:?}: {e}; use e.g. 1m, 30s, 500ms")))
}

fn millis(flag: &str, text: &str) -> Result<i64, ConfigError> {
    let d = duration(flag, text)?;
    if d.subsec_nanos() % 1_000_000 != 0 {
        return Err(ConfigError(format!("{flag} {text:?}: must be a whole number of milliseconds")));
    }
    i64::try_from(d.as_millis()).map_err(|_| ConfigError(format!("{flag} {text:?}: too long")))
}

/// `--checkpoint-interval` when it is not given.
const DEFAULT_CHECKPOINT_INTERVAL: &str = "10s";

/// The largest value each setting takes (README: "Limits"). Beyond them a run would
/// overflow its arithmetic or hold memory out of proportion to its input, so they are
/// refused at start, naming the flag and the limit.
pub mod limits {
    use std::time::Duration;

    /// `--window`: 7 days.
    pub const WINDOW_MS: i64 = 7 * 86_400_000;
    /// `--window` / `--slide`: the windows each trade updates.
    pub const WINDOWS_PER_PANE: i64 = 1_000;
    /// `--volatility-windows`, `--baseline-windows`: past windows kept per symbol.
    pub const HISTORY_WINDOWS: usize = 10_000;
    /// `--allowed-lateness`: 7 days (open windows are held that long).
    pub const LATENESS_MS: i64 = 7 * 86_400_000;
    /// `--idle-timeout`, `--progress-interval`, `--checkpoint-interval`,
    /// `--changelog-resolution`: 1 day.
    pub const WAIT: Duration = Duration::from_secs(86_400);
    /// `--postgres-retry-for`, `--lake-retry-for`, `--kafka-retry-for`: 7 days.
    pub const RETRY: Duration = Duration::from_secs(7 * 86_400);
    /// `--lake-file-rows`, `--lake-final-rows`.
    pub const LAKE_FILE_ROWS: usize = 10_000_000;
    /// `--lake-buffer-rows`: about 7 GB.
    pub const LAKE_BUFFER_ROWS: usize = 100_000_000;
    /// `-w`: worker threads per process (timely's buffers grow with the square).
    pub const THREADS: usize = 256;
    /// `-n`: processes.
    pub const PROCESSES: usize = 1_024;
}

fn at_most(flag: &str, text: &str, ms: i64, limit_ms: i64, limit: &str) -> Result<(), ConfigError> {
    if ms > limit_ms {
        return Err(ConfigError(format!("{flag} {text:?}: at most {limit}")));
    }
    Ok(())
}

/// Refuses a row-count flag outside 1..=`limit`.
fn rows_within(flag: &str, rows: usize, limit: usize) -> Result<(), ConfigError> {
    if rows == 0 || rows > limit {
        return Err(ConfigError(format!("{flag} {rows}: must be between 1 and {limit}")));
    }
    Ok(())
}

/// A duration flag's value, at most `limit` (`shown` in the message).
fn duration_at_most(flag: &str, text: &str, limit: Duration, shown: &str) -> Result<Duration, ConfigError> {
    let value = duration(flag, text)?;
    if value > limit {
        return Err(ConfigError(format!("{flag} {text:?}: at most {shown}")));
    }
    Ok(value)
}

/// The analytics parameters of `args`, range-checked (see [`limits`]); every error names
/// the flag. Shared by `run` and `check`.
pub fn analytics_params(args: &AnalyticsArgs) -> Result<AnalyticsParams, ConfigError> {
    let window = millis("--window", &args.window)?;
    let slide = match &args.slide {
        Some(s) => millis("--slide", s)?,
        None => window,
    };
    let windows = WindowSpec::hopping(window, slide).map_err(|e| {
        ConfigError(format!("--window {} --slide {}: {e}", args.window, args.slide.as_deref().unwrap_or("(= window)")))
    })?;
    at_most("--window", &args.window, window, limits::WINDOW_MS, "7d")?;
    if windows.windows_per_pane() > limits::WINDOWS_PER_PANE {
        return Err(ConfigError(format!(
            "--window {} --slide {}: {} windows hold each trade, more than the limit of {}: every trade would update that many rows; use a longer --slide (at least {})",
            args.window,
            args.slide.as_deref().unwrap_or("(= window)"),
            windows.windows_per_pane(),
            limits::WINDOWS_PER_PANE,
            humantime::format_duration(Duration::from_millis(
                (window as u64).div_ceil(limits::WINDOWS_PER_PANE as u64)
            )),
        )));
    }
    for (flag, value) in
        [("--volatility-windows", args.volatility_windows), ("--baseline-windows", args.baseline_windows)]
    {
        if value == 0 {
            return Err(ConfigError(format!(
                "{flag} 0: must be at least 1{}",
                if flag == "--volatility-windows" { " (volatility needs 3 windows to be non-NULL)" } else { "" }
            )));
        }
        if value > limits::HISTORY_WINDOWS {
            return Err(ConfigError(format!(
                "{flag} {value}: at most {}: each symbol keeps that many past windows in memory",
                limits::HISTORY_WINDOWS
            )));
        }
    }
    if args.min_history > args.baseline_windows {
        return Err(ConfigError(format!(
            "--min-history {} is more than --baseline-windows {}: a spike could never fire; use at most {}",
            args.min_history, args.baseline_windows, args.baseline_windows
        )));
    }
    for (flag, value) in [("--spike-factor", args.spike_factor), ("--jump-sigma", args.jump_sigma)] {
        if !(value.is_finite() && value > 0.0) {
            return Err(ConfigError(format!("{flag} {value}: must be a positive number")));
        }
    }
    Ok(AnalyticsParams {
        windows,
        volatility_windows: args.volatility_windows,
        anomalies: AnomalyParams {
            spike_factor: args.spike_factor,
            baseline_windows: args.baseline_windows,
            min_history: args.min_history,
            jump_sigma: args.jump_sigma,
        },
    })
}

impl RunConfig {
    /// Validates the raw flags.
    pub fn from_args(args: &RunArgs) -> Result<RunConfig, ConfigError> {
        let postgres = match postgres_target(args.postgres.as_deref())? {
            Some(target) => {
                let retry_for =
                    duration_at_most("--postgres-retry-for", &args.postgres_retry_for, limits::RETRY, "7d")?;
                Some(PostgresConfig { target, retry_for })
            }
            None => None,
        };
        let lake_retry_for = duration_at_most("--lake-retry-for", &args.lake_retry_for, limits::RETRY, "7d")?;
        let kafka_retry_for = duration_at_most("--kafka-retry-for", &args.kafka_retry_for, limits::RETRY, "7d")?;
        let metrics_addr =
            args.metrics_addr.as_deref().map(|a| crate::web::parse_addr("--metrics-addr", a)).transpose()?;
        let dashboard_addr =
            args.dashboard_addr.as_deref().map(|a| crate::web::parse_addr("--dashboard-addr", a)).transpose()?;

        let params = analytics_params(&args.analytics)?;
        let lateness_ms = millis("--allowed-lateness", &args.allowed_lateness)?;
        at_most("--allowed-lateness", &args.allowed_lateness, lateness_ms, limits::LATENESS_MS, "7d")?;
        let idle_timeout = duration_at_most("--idle-timeout", &args.idle_timeout, limits::WAIT, "1d")?;
        if idle_timeout.is_zero() {
            return Err(ConfigError("--idle-timeout 0: must be positive, e.g. 10s".into()));
        }
        let resolution = duration_at_most("--changelog-resolution", &args.changelog_resolution, limits::WAIT, "1d")?;
        let progress = duration_at_most("--progress-interval", &args.progress_interval, limits::WAIT, "1d")?;
        rows_within("--lake-file-rows", args.lake_file_rows, limits::LAKE_FILE_ROWS)?;
        rows_within("--lake-final-rows", args.lake_final_rows, limits::LAKE_FILE_ROWS)?;
        rows_within("--lake-buffer-rows", args.lake_buffer_rows, limits::LAKE_BUFFER_ROWS)?;

        let start = wall_ms() / 1000 * 1000;
        let mut sources = Vec::new();
        for text in &args.sources {
            let spec = parse_source(text).map_err(|e| ConfigError(e.to_string()))?;
            sources.push(
                tradeflow_sources::source::resolve(text, spec, start, &seed_variable)
                    .map_err(|e| ConfigError(e.to_string()))?,
            );
        }
        let bounded = sources.iter().all(|s| s.bounded());

        let (timely, processes) = timely_config(&args.timely)?;
        let given = args.checkpoint_interval.as_deref();
        let interval_text = given.unwrap_or(DEFAULT_CHECKPOINT_INTERVAL);
        let interval = duration_at_most("--checkpoint-interval", interval_text, limits::WAIT, "1d")?;
        // Sources that can be read again from a recorded position. Replays of files and
        // lakes only when asked for: their checkpoints hold a copy of the open hours'
        // trades, which costs memory and time on a fast bounded run (issue 12). The
        // Finnhub feed cannot be read again, but its window state can survive a crash
        // (losing what arrived since the last checkpoint) when asked for.
        let resumable = |s: &Arc<dyn Source>| s.resumable(given.is_some());
        let checkpoint_off = if interval.is_zero() {
            Some("--checkpoint-interval 0".to_owned())
        } else if args.no_lake && postgres.is_none() {
            Some("--no-lake without --postgres: checkpoints are kept in the lake or in PostgreSQL".to_owned())
        } else if !sources.iter().all(resumable) {
            Some(
                "only kafka:// sources, and file://, lake:// and finnhub:// ones with an explicit --checkpoint-interval, can be resumed from a checkpoint"
                    .to_owned(),
            )
        } else {
            None
        };
        if let Some(job) = &args.job
            && (job.is_empty() || !job.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
        {
            return Err(ConfigError(format!("--job {job:?}: use letters, digits, '-', '_' and '.' only")));
        }
        let run_id = args.run_id.clone().unwrap_or_else(unique_run_id);
        if run_id.is_empty() || !run_id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(ConfigError(format!("--run-id {run_id:?}: use letters, digits, '-', '_' and '.' only")));
        }
        let settings = job_settings(args, &sources, postgres.as_ref(), processes);
        let job = args.job.clone().unwrap_or_else(|| default_job(&settings));
        let checkpoint = checkpoint_off.is_none().then(|| CheckpointConfig {
            interval,
            header: tradeflow_sinks::checkpoint::JobHeader { job: job.clone(), settings, run_id: run_id.clone() },
            from_scratch: args.from_scratch,
        });
        Ok(RunConfig {
            checkpoint,
            checkpoint_off,
            drain: args.drain,
            sources,
            source_names: crate::metrics::source_names(&args.sources),
            bounded,
            lake: (!args.no_lake).then(|| args.lake.clone()),
            lake_retry_for,
            kafka_retry_for,
            postgres,
            params,
            lateness_ms,
            idle_timeout,
            progress_interval: (!progress.is_zero()).then_some(progress),
            changelog_resolution_ms: resolution.as_millis() as u64,
            run_id,
            job,
            lake_file_rows: args.lake_file_rows,
            lake_final_rows: args.lake_final_rows,
            lake_buffer_rows: args.lake_buffer_rows,
            lake_layout: match args.lake_layout {
                crate::cli::LakeLayout::Symbol => tradeflow_sinks::lake::TradesLayout::Symbol,
                crate::cli::LakeLayout::Hour => tradeflow_sinks::lake::TradesLayout::Hour,
            },
            timely,
            process: args.timely.process,
            processes,
            threads: args.timely.workers,
            metrics_addr,
            dashboard_addr,
        })
    }
}

/// A run id no other run shares: the start time to the millisecond (`20231114T221320.123Z`)
/// and 32 random bits, so that runs started at the same instant on one lake still write
/// changelog files of their own.
fn unique_run_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut random = std::collections::hash_map::RandomState::new().build_hasher();
    random.write_u32(std::process::id());
    random.write_i64(wall_ms());
    let time = format_ts(wall_ms()).replace([':', '-'], "");
    format!("{time}-{:08x}", random.finish() as u32)
}

/// What decides a job's results, by name: a checkpoint is only resumed by a run with the
/// same. Sources are named without their start, end and group, so that a live run and
/// its bounded continuation (`end=latest`) are one job.
fn job_settings(
    args: &RunArgs,
    sources: &[Arc<dyn Source>],
    postgres: Option<&PostgresConfig>,
    processes: usize,
) -> BTreeMap<String, String> {
    let mut settings = BTreeMap::new();
    for (i, source) in sources.iter().enumerate() {
        let identity = source.identity(&args.sources[i]);
        settings.insert(format!("source {i}"), identity);
    }
    settings.insert("lake".into(), if args.no_lake { "(none)".into() } else { args.lake.clone() });
    settings.insert("postgres".into(), postgres.map_or("(none)".into(), |p| p.target.name().to_owned()));
    for (name, value) in [
        ("window", &args.analytics.window),
        ("slide", args.analytics.slide.as_ref().unwrap_or(&args.analytics.window)),
        ("allowed-lateness", &args.allowed_lateness),
        ("idle-timeout", &args.idle_timeout),
    ] {
        settings.insert(name.into(), value.clone());
    }
    settings.insert("volatility-windows".into(), args.analytics.volatility_windows.to_string());
    settings.insert("spike-factor".into(), args.analytics.spike_factor.to_string());
    settings.insert("baseline-windows".into(), args.analytics.baseline_windows.to_string());
    settings.insert("min-history".into(), args.analytics.min_history.to_string());
    settings.insert("jump-sigma".into(), args.analytics.jump_sigma.to_string());
    settings.insert("lake-file-rows".into(), args.lake_file_rows.to_string());
    // Only when not the default, so that the jobs of lakes written before the flag existed
    // keep their names.
    if args.lake_layout != crate::cli::LakeLayout::Symbol {
        settings.insert("lake-layout".into(), format!("{:?}", args.lake_layout).to_lowercase());
    }
    if args.lake_final_rows != crate::pipeline::FINALS_FILE_ROWS {
        settings.insert("lake-final-rows".into(), args.lake_final_rows.to_string());
    }
    settings.insert("workers".into(), format!("{} process(es) x {} thread(s)", processes, args.timely.workers));
    settings
}

/// The default job name: `job-` and a hash (FNV-1a, stable across versions) of where
/// the job reads and writes.
fn default_job(settings: &BTreeMap<String, String>) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, value) in settings.iter().filter(|(k, _)| k.starts_with("source") || *k == "lake" || *k == "postgres") {
        for byte in name.bytes().chain([0]).chain(value.bytes()).chain([0]) {
            hash = (hash ^ byte as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("job-{hash:016x}")
}

/// The PostgreSQL target: `--postgres URL`, else `DATABASE_URL`, else the seed's
/// `POSTGRES_*` variables (see [`seed_variable`]); `None` when none is set.
pub fn postgres_target(flag: Option<&str>) -> Result<Option<PgTarget>, ConfigError> {
    PgTarget::resolve(flag, seed_variable).map_err(|e| ConfigError(e.to_string()))
}

/// One of the seed's configuration variables (SPEC 8): from the environment, where
/// [`load_dotenv`] has put what `./.env` holds and the environment lacked.
pub fn seed_variable(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Copies the [`CONFIG_VARIABLES`] that the environment lacks from `./.env` into the
/// process environment, so that every reader sees them, including those that read the
/// environment themselves (object_store's `AWS_*`, `S3_BUCKET`, the schema registry).
/// Must run before any thread is started: the first thing `main` does.
#[allow(unsafe_code)]
pub fn load_dotenv() {
    let values = read_dotenv(Path::new(".env"));
    for name in CONFIG_VARIABLES {
        if std::env::var_os(name).is_none()
            && let Some(value) = values.get(*name)
        {
            // SAFETY: called at the start of `main`, before any other thread exists, so
            // nothing reads or writes the environment concurrently.
            unsafe { std::env::set_var(name, value) };
        }
    }
}

/// `KEY=value` lines of a `.env` file (`export KEY=value`, quotes and `#` comments
/// allowed); empty when the file is absent or unreadable.
fn read_dotenv(path: &Path) -> BTreeMap<String, String> {
    let Ok(text) = std::fs::read_to_string(path) else { return BTreeMap::new() };
    parse_dotenv(&text)
}

fn parse_dotenv(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else { continue };
        let value = value.trim();
        let value = match value.chars().next() {
            Some(quote @ ('"' | '\'')) => value[1..].split(quote).next().unwrap_or_default().to_owned(),
            _ => value.split(" #").next().unwrap_or_default().trim().to_owned(),
        };
        out.insert(key.trim().to_owned(), value);
    }
    out
}

/// Timely's configuration from `-w`, `-n`, `-p`, `-h`.
fn timely_config(args: &TimelyArgs) -> Result<(timely::Config, usize), ConfigError> {
    if args.workers == 0 {
        return Err(ConfigError("-w 0: need at least one worker thread".into()));
    }
    if args.processes == 0 {
        return Err(ConfigError("-n 0: need at least one process".into()));
    }
    if args.workers > limits::THREADS {
        return Err(ConfigError(format!(
            "-w {}: at most {} worker threads per process (timely's channel buffers grow with the square of the workers); use about one per core, and -n for more machines",
            args.workers,
            limits::THREADS
        )));
    }
    if args.processes > limits::PROCESSES {
        return Err(ConfigError(format!("-n {}: at most {} processes", args.processes, limits::PROCESSES)));
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if args.workers > cores {
        tracing::warn!(
            "-w {}: more worker threads than this machine's {cores} cores; they take turns instead of adding speed, and memory grows with the square of -w",
            args.workers
        );
    }
    if args.process >= args.processes {
        return Err(ConfigError(format!("-p {}: the process index must be below -n {}", args.process, args.processes)));
    }
    let communication = if args.processes > 1 {
        let hostfile: &PathBuf = args.hostfile.as_ref().ok_or_else(|| {
            ConfigError(format!(
                "-n {}: a multi-process run needs -h FILE, a host file with one host:port per line",
                args.processes
            ))
        })?;
        let text =
            std::fs::read_to_string(hostfile).map_err(|e| ConfigError(format!("-h {}: {e}", hostfile.display())))?;
        let addresses: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
        if addresses.len() < args.processes {
            return Err(ConfigError(format!(
                "-h {}: has {} addresses but -n {} needs one host:port line per process",
                hostfile.display(),
                addresses.len(),
                args.processes
            )));
        }
        if let Some(bad) = addresses.iter().find(|a| !a.contains(':')) {
            return Err(ConfigError(format!("-h {}: {bad:?} is not host:port", hostfile.display())));
        }
        timely::CommunicationConfig::Cluster {
            threads: args.workers,
            process: args.process,
            addresses: addresses[..args.processes].to_vec(),
            report: false,
            zerocopy: false,
        }
    } else if args.workers > 1 {
        timely::CommunicationConfig::Process(args.workers)
    } else {
        timely::CommunicationConfig::Thread
    };
    Ok((timely::Config { communication, worker: timely::WorkerConfig::default() }, args.processes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The job settings of `tradeflow run` with `flags`.
    fn settings_of(flags: &[&str]) -> BTreeMap<String, String> {
        use clap::Parser;
        let argv = ["tradeflow", "run", "--source", "sim://"].iter().chain(flags);
        let crate::cli::Cli { command: crate::cli::Command::Run(args), .. } = crate::cli::Cli::parse_from(argv) else {
            unreachable!("a run command")
        };
        job_settings(&args, &[], None, 1)
    }

    #[test]
    fn a_final_file_size_other_than_the_default_is_a_setting_of_the_job() {
        // Absent by default, so that the jobs of lakes written before the flag keep theirs.
        assert!(!settings_of(&[]).contains_key("lake-final-rows"));
        assert!(!settings_of(&["--lake-final-rows", "250000"]).contains_key("lake-final-rows"));
        // Otherwise a restart with another size would rewrite an hour's files in another
        // split and leave the earlier split's later files beside them.
        assert_eq!(settings_of(&["--lake-final-rows", "40"])["lake-final-rows"], "40");
    }

    #[test]
    fn parses_dotenv_files() {
        let vars = parse_dotenv(
            "# seed\nPOSTGRES_HOST=db\nexport POSTGRES_PORT=5433\nPOSTGRES_PASSWORD=\"p w#d\"\nPOSTGRES_DB='m' \nPOSTGRES_USER=u # note\nnot a line\n",
        );
        assert_eq!(vars["POSTGRES_HOST"], "db");
        assert_eq!(vars["POSTGRES_PORT"], "5433");
        assert_eq!(vars["POSTGRES_PASSWORD"], "p w#d");
        assert_eq!(vars["POSTGRES_DB"], "m");
        assert_eq!(vars["POSTGRES_USER"], "u");
        assert_eq!(vars.len(), 5);
    }
}
