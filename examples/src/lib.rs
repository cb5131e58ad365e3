//! Runnable tradeflow examples (see `examples/`): each is one file with a doc header
//! saying what it shows and how to run it. The test suite compiles them all.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The `tradeflow` binary next to the running example (target/<profile>/tradeflow), for
/// the benchmarks that run it.
pub fn tradeflow_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let binary = exe.parent().and_then(Path::parent).map(|d| d.join("tradeflow")).context("locating target dir")?;
    if !binary.exists() {
        bail!("{} not found: run `cargo build --release -p tradeflow` first", binary.display());
    }
    Ok(binary)
}

/// `tradeflow run --source SOURCE -w WORKERS` into a fresh lake `lake_dir` (or with
/// `--no-lake`), timed: its wall-clock seconds and its stderr (progress off), or an error
/// with the stderr when it fails.
pub fn timed_run(
    binary: &Path,
    source: &str,
    workers: usize,
    lake_dir: &Path,
    lake: bool,
) -> anyhow::Result<(f64, String)> {
    timed_run_with(binary, source, workers, lake_dir, lake, &[])
}

/// [`timed_run`] with `extra` flags.
pub fn timed_run_with(
    binary: &Path,
    source: &str,
    workers: usize,
    lake_dir: &Path,
    lake: bool,
    extra: &[&str],
) -> anyhow::Result<(f64, String)> {
    let _ = std::fs::remove_dir_all(lake_dir);
    let started = Instant::now();
    let output = run_command(binary, source, workers, lake_dir, lake, extra).output()?;
    let seconds = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        bail!("tradeflow run --source {source} -w {workers} failed:\n{stderr}");
    }
    Ok((seconds, stderr))
}

/// [`timed_run_with`] on `processes` processes of one worker each on this machine (`-n`,
/// `-p`, and a host file of free local ports), timed until every process has exited:
/// the seconds and process 0's stderr, whose summary counts every process's trades,
/// windows and anomalies (its peak memory is its own).
pub fn timed_processes(
    binary: &Path,
    source: &str,
    processes: usize,
    lake_dir: &Path,
    lake: bool,
    extra: &[&str],
) -> anyhow::Result<(f64, String)> {
    let _ = std::fs::remove_dir_all(lake_dir);
    let hosts = lake_dir.with_extension("hosts.txt");
    let listeners = (0..processes)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("finding free local ports for the processes")?;
    let mut lines = String::new();
    for listener in &listeners {
        lines += &format!("{}\n", listener.local_addr()?);
    }
    drop(listeners);
    std::fs::write(&hosts, lines)?;
    let n = processes.to_string();
    let started = Instant::now();
    let mut children = Vec::new();
    for process in 0..processes {
        let mut command = run_command(binary, source, 1, lake_dir, lake, extra);
        command.args(["-n", &n, "-p", &process.to_string(), "-h"]).arg(&hosts);
        command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
        match command.spawn() {
            Ok(child) => children.push(child),
            Err(e) => {
                for mut child in children {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                return Err(e.into());
            }
        }
    }
    // Every stderr pipe is drained at once: any process may fill its pipe first.
    let drains: Vec<_> = children
        .iter_mut()
        .map(|child| {
            let mut stderr = child.stderr.take().expect("piped");
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
                text
            })
        })
        .collect();
    // Until every process has exited; the first to fail, or the deadline, stops the others
    // (a process whose peer is gone would wait for it forever).
    let mut statuses: Vec<Option<std::process::ExitStatus>> = vec![None; processes];
    let failure = loop {
        for (child, status) in children.iter_mut().zip(&mut statuses) {
            if status.is_none() {
                *status = child.try_wait()?;
            }
        }
        if let Some(process) = statuses.iter().position(|s| s.is_some_and(|s| !s.success())) {
            break Some(format!("process {process} failed ({})", statuses[process].expect("exited")));
        }
        if statuses.iter().all(Option::is_some) {
            break None;
        }
        if started.elapsed() > PROCESSES_DEADLINE {
            break Some(format!("still running after {PROCESSES_DEADLINE:?}"));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let seconds = started.elapsed().as_secs_f64();
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    let stderrs: Vec<String> = drains.into_iter().map(|d| d.join().unwrap_or_default()).collect();
    let _ = std::fs::remove_file(&hosts);
    if let Some(failure) = failure {
        let mut report = format!("tradeflow run --source {source} -n {processes}: {failure}");
        for (process, stderr) in stderrs.iter().enumerate() {
            report += &format!("\nprocess {process}'s stderr:\n{stderr}");
        }
        bail!(report);
    }
    Ok((seconds, stderrs.into_iter().next().unwrap_or_default()))
}

/// How long [`timed_processes`] waits for its processes before it stops them.
const PROCESSES_DEADLINE: std::time::Duration = std::time::Duration::from_secs(3600);

/// `tradeflow run --source SOURCE -w WORKERS`, progress off, into `lake_dir` or with
/// `--no-lake`, and `extra`.
fn run_command(binary: &Path, source: &str, workers: usize, lake_dir: &Path, lake: bool, extra: &[&str]) -> Command {
    let mut command = crate::command(binary);
    command.args(["run", "--source", source, "-w", &workers.to_string(), "--progress-interval", "0"]).args(extra);
    if lake {
        command.arg("--lake").arg(format!("file://{}", lake_dir.display()));
    } else {
        command.arg("--no-lake");
    }
    command
}

/// The number on the summary line that starts with `name` (`trades accepted`, `peak
/// memory`, ...) of a run's stderr; 0 when there is none.
pub fn summary_field(stderr: &str, name: &str) -> u64 {
    stderr
        .lines()
        .find(|l| l.trim_start().starts_with(name))
        .and_then(|l| l.trim_start()[name.len()..].split_whitespace().next().map(|v| v.replace(',', "")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// One line describing this machine, for the benchmarks' headers: the CPU model, the
/// cores this process may use, memory, the kernel, and the load average at the start.
pub fn machine() -> String {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, v)| v.trim().to_owned()))
        .unwrap_or_else(|| "an unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let memory_gib = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:")?.split_whitespace().next()?.parse::<f64>().ok())
        .map_or_else(|| "?".into(), |kib| format!("{:.1}", kib / 1024.0 / 1024.0));
    let kernel = read("/proc/sys/kernel/osrelease").trim().to_owned();
    let load = read("/proc/loadavg").split_whitespace().take(3).collect::<Vec<_>>().join(" ");
    format!("machine: {cores} cores of {model}, {memory_gib} GiB, Linux {kernel}, load average {load}")
}

/// `binary` as a command without tradeflow's configuration variables (`DATABASE_URL`,
/// `POSTGRES_*`, `FINNHUB_*`, ...): a benchmark measures only the flags it gives, not
/// whatever the environment or a `.env` file adds.
pub fn command(binary: &Path) -> Command {
    let mut command = Command::new(binary);
    for name in tradeflow_model::CONFIG_VARIABLES {
        command.env_remove(name);
    }
    command
}

/// What the single-thread yardstick found, and how long it took.
pub struct Yardstick {
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Final windows.
    pub windows: u64,
    /// Final anomalies.
    pub anomalies: u64,
    /// This process's peak memory, KiB.
    pub peak_kib: u64,
}

/// The yardstick: one thread that reads an NDJSON file, parses and validates every line,
/// applies the lateness rule (one partition: the whole file), aggregates exactly per
/// (symbol, one-minute window) with interned symbols, and computes the same final window
/// metrics and anomalies as `tradeflow run` with its defaults.
pub fn yardstick(path: &Path) -> anyhow::Result<Yardstick> {
    use rustc_hash::FxHashMap;
    use std::collections::BTreeMap;
    use std::io::Read;
    use tradeflow_model::{Symbol, WindowSpec};
    use tradeflow_operators::{AnalyticsParams, AnomalyParams, WindowAgg};
    use tradeflow_sources::format::{Item, parse_line};

    let started = Instant::now();
    let params = AnalyticsParams {
        windows: WindowSpec::tumbling(60_000).expect("valid"),
        volatility_windows: 20,
        anomalies: AnomalyParams::default(),
    };
    let mut file = std::fs::File::open(path)?;
    let mut buffer = vec![0u8; 4 << 20];
    let mut filled = 0;
    let mut clock = tradeflow_sources::lateness::PartitionClock::new(5_000);
    let mut ids: FxHashMap<String, u32> = FxHashMap::default();
    let mut names: Vec<Symbol> = Vec::new();
    let mut windows: FxHashMap<(u32, i64), WindowAgg> = FxHashMap::default();
    loop {
        let n = file.read(&mut buffer[filled..])?;
        let end = filled + n;
        let last_newline = if n == 0 { end } else { memchr::memrchr(b'\n', &buffer[..end]).map_or(0, |i| i + 1) };
        for line in buffer[..last_newline].split(|b| *b == b'\n') {
            parse_line(line, &mut |item| {
                if let Item::Trade(t) = item
                    && clock.admit(t.ts)
                {
                    let id = match ids.get(t.symbol.as_ref()) {
                        Some(id) => *id,
                        None => {
                            let id = names.len() as u32;
                            names.push(Symbol::parse(&t.symbol).expect("validated"));
                            ids.insert(t.symbol.to_string(), id);
                            id
                        }
                    };
                    windows.entry((id, params.windows.pane_of(t.ts))).or_default().add_trade(t.ts, t.price, t.volume);
                }
            });
        }
        buffer.copy_within(last_newline..end, 0);
        filled = end - last_newline;
        if n == 0 {
            break;
        }
        if filled == buffer.len() {
            buffer.resize(buffer.len() * 2, 0);
        }
    }
    let keyed: BTreeMap<(Symbol, i64), WindowAgg> =
        windows.into_iter().map(|((id, start), agg)| ((names[id as usize].clone(), start), agg)).collect();
    let (metrics, anomalies) = tradeflow_operators::reference::rows_from_windows(&keyed, &params);
    Ok(Yardstick {
        seconds: started.elapsed().as_secs_f64(),
        windows: metrics.len() as u64,
        anomalies: anomalies.len() as u64,
        peak_kib: peak_kib_self(),
    })
}

/// This process's peak resident memory (VmHWM), KiB; 0 when unknown.
fn peak_kib_self() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
