//! One validated configuration for `tradeflow run`, built from the raw flags.
//!
//! Every error names the flag, the value given and what would work.

use crate::cli::{RunArgs, TimelyArgs};
use std::path::PathBuf;
use std::time::Duration;
use tradeflow_model::{WindowSpec, format_ts};
use tradeflow_operators::{AnalyticsParams, AnomalyParams};
use tradeflow_sources::batch::wall_ms;
use tradeflow_sources::file::plan::FilePlan;
use tradeflow_sources::url::{SourceSpec, parse_source};

/// A configuration error: the message says what and how to fix it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// A source ready to run.
#[derive(Clone, Debug)]
pub enum Source {
    /// NDJSON files, already listed and chunked.
    File(FilePlan),
    /// The simulator, with its start resolved.
    Sim(tradeflow_sources::sim::SimConfig),
}

/// Everything `tradeflow run` needs, validated.
#[derive(Clone)]
pub struct RunConfig {
    /// Inputs.
    pub sources: Vec<Source>,
    /// True when every source ends by itself.
    pub bounded: bool,
    /// Lake URL, or `None` with `--no-lake`.
    pub lake: Option<String>,
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
    /// Largest trades file in rows.
    pub lake_file_rows: usize,
    /// Timely's execution configuration.
    pub timely: timely::Config,
    /// This process's index.
    pub process: usize,
    /// Number of processes.
    pub processes: usize,
    /// Worker threads per process.
    pub threads: usize,
}

impl std::fmt::Debug for RunConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunConfig")
            .field("sources", &self.sources)
            .field("lake", &self.lake)
            .field("params", &self.params)
            .finish()
    }
}

fn duration(flag: &str, text: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(text).map_err(|e| ConfigError(format!("{flag} {text:?}: {e}; use e.g. 1m, 30s, 500ms")))
}

fn millis(flag: &str, text: &str) -> Result<i64, ConfigError> {
    let d = duration(flag, text)?;
    if d.subsec_nanos() % 1_000_000 != 0 {
        return Err(ConfigError(format!("{flag} {text:?}: must be a whole number of milliseconds")));
    }
    i64::try_from(d.as_millis()).map_err(|_| ConfigError(format!("{flag} {text:?}: too long")))
}

impl RunConfig {
    /// Validates the raw flags.
    pub fn from_args(args: &RunArgs) -> Result<RunConfig, ConfigError> {
        if args.postgres.is_some() {
            return Err(ConfigError(
                "--postgres: the PostgreSQL sink is not in this build yet (issue 3); drop the flag".into(),
            ));
        }
        if std::env::var_os("DATABASE_URL").is_some() || std::env::var_os("POSTGRES_HOST").is_some() {
            eprintln!(
                "warning: DATABASE_URL/POSTGRES_* are set but the PostgreSQL sink is not in this build yet (issue 3); ignoring them"
            );
        }
        if args.metrics_addr.is_some() {
            return Err(ConfigError(
                "--metrics-addr: Prometheus metrics are not in this build yet (issue 7); drop the flag".into(),
            ));
        }
        if args.dashboard_addr.is_some() {
            return Err(ConfigError(
                "--dashboard-addr: the dashboard is not in this build yet (issue 7); drop the flag".into(),
            ));
        }

        let window = millis("--window", &args.window)?;
        let slide = match &args.slide {
            Some(s) => millis("--slide", s)?,
            None => window,
        };
        let windows = WindowSpec::hopping(window, slide).map_err(|e| {
            ConfigError(format!(
                "--window {} --slide {}: {e}",
                args.window,
                args.slide.as_deref().unwrap_or("(= window)")
            ))
        })?;
        let lateness_ms = millis("--allowed-lateness", &args.allowed_lateness)?;
        let idle_timeout = duration("--idle-timeout", &args.idle_timeout)?;
        if idle_timeout.is_zero() {
            return Err(ConfigError("--idle-timeout 0: must be positive, e.g. 10s".into()));
        }
        let progress = duration("--progress-interval", &args.progress_interval)?;
        if args.volatility_windows == 0 {
            return Err(ConfigError(
                "--volatility-windows 0: must be at least 1 (volatility needs 3 windows to be non-NULL)".into(),
            ));
        }
        if args.baseline_windows == 0 {
            return Err(ConfigError("--baseline-windows 0: must be at least 1".into()));
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
        if args.lake_file_rows == 0 {
            return Err(ConfigError("--lake-file-rows 0: must be positive".into()));
        }

        let start = wall_ms() / 1000 * 1000;
        let mut sources = Vec::new();
        for text in &args.sources {
            match parse_source(text).map_err(|e| ConfigError(e.to_string()))? {
                SourceSpec::File { path } => {
                    let plan = FilePlan::new(&path, tradeflow_sources::file::DEFAULT_CHUNK_BYTES)
                        .map_err(|e| ConfigError(e.to_string()))?;
                    sources.push(Source::File(plan));
                }
                SourceSpec::Sim { mut config, start: given } => {
                    config.start_ms = given.unwrap_or(start);
                    config.check().map_err(|e| ConfigError(format!("--source {text:?}: {e}")))?;
                    sources.push(Source::Sim(config));
                }
            }
        }
        let bounded = sources.iter().all(|s| match s {
            Source::File(_) => true,
            Source::Sim(c) => c.count.is_some(),
        });

        let (timely, processes) = timely_config(&args.timely)?;
        let run_id = args
            .run_id
            .clone()
            .unwrap_or_else(|| format_ts(start).replace([':', '-'], "").trim_end_matches(".000Z").to_owned() + "Z");
        if run_id.is_empty() || !run_id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(ConfigError(format!("--run-id {run_id:?}: use letters, digits, '-', '_' and '.' only")));
        }
        Ok(RunConfig {
            sources,
            bounded,
            lake: (!args.no_lake).then(|| args.lake.clone()),
            params: AnalyticsParams {
                windows,
                volatility_windows: args.volatility_windows,
                anomalies: AnomalyParams {
                    spike_factor: args.spike_factor,
                    baseline_windows: args.baseline_windows,
                    min_history: args.min_history,
                    jump_sigma: args.jump_sigma,
                },
            },
            lateness_ms,
            idle_timeout,
            progress_interval: (!progress.is_zero()).then_some(progress),
            run_id,
            lake_file_rows: args.lake_file_rows,
            timely,
            process: args.timely.process,
            processes,
            threads: args.timely.workers,
        })
    }
}

/// Timely's configuration from `-w`, `-n`, `-p`, `-h`.
fn timely_config(args: &TimelyArgs) -> Result<(timely::Config, usize), ConfigError> {
    if args.workers == 0 {
        return Err(ConfigError("-w 0: need at least one worker thread".into()));
    }
    if args.processes == 0 {
        return Err(ConfigError("-n 0: need at least one process".into()));
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
