//! Running the `tradeflow` binary: where it is, with a timeout, while it runs.

use crate::summary::Summary;
use std::ffi::OsStr;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The `tradeflow` binary: `TRADEFLOW_BIN` if set, else `target/<profile>/tradeflow`
/// next to the test executables, brought up to date once per test executable with
/// `cargo build -p tradeflow` (a no-op when it is fresh), so that a test never runs a
/// binary older than the sources it tests.
pub fn tradeflow_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(locate).clone()
}

fn locate() -> PathBuf {
    if let Some(path) = std::env::var_os("TRADEFLOW_BIN") {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "TRADEFLOW_BIN={} is not a file", path.display());
        return path;
    }
    let exe = std::env::current_exe().expect("the path of the test executable");
    // Test executables live in target/<profile>/deps/.
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("{} is not in target/<profile>/deps/", exe.display()));
    let bin = profile_dir.join(format!("tradeflow{}", std::env::consts::EXE_SUFFIX));
    build(profile_dir, &["-p", "tradeflow", "--bin", "tradeflow"]);
    assert!(bin.is_file(), "{} is missing even after `cargo build -p tradeflow`", bin.display());
    bin
}

/// The example program `name` of `tradeflow-examples`, built (or brought up to date)
/// next to the test executables.
pub fn example_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the test executable");
    let profile_dir = exe.parent().and_then(Path::parent).expect("test executables live in target/<profile>/deps/");
    build(profile_dir, &["-p", "tradeflow-examples", "--example", name]);
    let bin = profile_dir.join("examples").join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.is_file(), "{} is missing even after building the example", bin.display());
    bin
}

/// `cargo build <what>` for the profile of `profile_dir`.
fn build(profile_dir: &Path, what: &[&str]) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the workspace");
    let mut command = Command::new(cargo);
    command.current_dir(workspace).arg("build").args(what);
    match profile_dir.file_name().and_then(OsStr::to_str) {
        Some("debug") | None => {}
        Some("release") => {
            command.arg("--release");
        }
        Some(profile) => {
            command.args(["--profile", profile]);
        }
    }
    let out = command.arg("--quiet").output().expect("running cargo build");
    assert!(
        out.status.success(),
        "`cargo build {}` failed: {}\n{}",
        what.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A `tradeflow` command with the ambient configuration variables removed.
pub fn tradeflow_command() -> Command {
    let mut command = Command::new(tradeflow_bin());
    // The configuration variables would change what a run does: tests see only their
    // own flags and settings.
    for name in tradeflow_model::CONFIG_VARIABLES {
        command.env_remove(name);
    }
    command.env("RUST_BACKTRACE", "1");
    command
}

/// A finished process.
#[derive(Debug)]
pub struct Finished {
    /// How it ended.
    pub status: ExitStatus,
    /// Everything it wrote on stdout.
    pub stdout: String,
    /// Everything it wrote on stderr.
    pub stderr: String,
}

impl Finished {
    /// True when it exited with status 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The summary a `tradeflow run` prints on stderr; panics if there is none.
    pub fn summary(&self) -> Summary {
        Summary::parse(&self.stderr).unwrap_or_else(|| panic!("no run summary on stderr:\n{}", self.stderr))
    }

    /// Panics, showing the output, unless the process exited with status 0.
    pub fn assert_success(&self, what: &str) -> &Self {
        assert!(
            self.success(),
            "{what} failed with {}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        assert_no_panic(&self.stderr);
        self
    }
}

/// Panics if `stderr` shows a Rust panic.
pub fn assert_no_panic(stderr: &str) {
    assert!(!stderr.contains("panicked at"), "the process panicked:\n{stderr}");
}

/// Runs `tradeflow ARGS` to completion, failing the test after `timeout`.
pub fn run_tradeflow<S: AsRef<OsStr>>(args: &[S], timeout: Duration) -> Finished {
    let mut command = tradeflow_command();
    command.args(args);
    Running::spawn(command).finish(timeout)
}

/// A process running in the background with its output being collected.
pub struct Running {
    child: Child,
    what: String,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

fn collect(mut pipe: impl Read + Send + 'static, into: Arc<Mutex<String>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buffer = [0u8; 8192];
        loop {
            match pipe.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => into.lock().expect("output lock").push_str(&String::from_utf8_lossy(&buffer[..n])),
            }
        }
    })
}

impl Running {
    /// Starts `command` with stdin closed and stdout/stderr collected.
    pub fn spawn(command: Command) -> Running {
        Running::start(command, Stdio::null())
    }

    /// Starts `command` with stdout/stderr collected and its stdin a pipe whose writing
    /// end is returned (dropping it ends the input), for `--source -`.
    pub fn spawn_with_stdin(command: Command) -> (Running, ChildStdin) {
        let mut running = Running::start(command, Stdio::piped());
        let stdin = running.child.stdin.take().expect("piped stdin");
        (running, stdin)
    }

    fn start(mut command: Command, stdin: Stdio) -> Running {
        // The program and its arguments, not its environment (which may hold a test
        // server's password): what failure messages show.
        let what = std::iter::once(command.get_program())
            .chain(command.get_args())
            .map(|a| format!("{:?}", a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ");
        let mut child = command
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            collect(child.stdout.take().expect("piped stdout"), stdout.clone()),
            collect(child.stderr.take().expect("piped stderr"), stderr.clone()),
        ];
        Running { child, what, stdout, stderr, readers }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What stderr holds so far.
    pub fn stderr_so_far(&self) -> String {
        self.stderr.lock().expect("output lock").clone()
    }

    /// Waits until `ready(stderr so far)` holds; false if the process ended first or
    /// `timeout` passed.
    pub fn wait_for_stderr(&mut self, timeout: Duration, ready: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if ready(&self.stderr_so_far()) {
                return true;
            }
            if Instant::now() >= deadline || matches!(self.child.try_wait(), Ok(Some(_))) {
                return ready(&self.stderr_so_far());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGINT, as Ctrl-C in a terminal does.
    pub fn interrupt(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid fits pid_t");
        // SAFETY: kill(2) with a pid of a child this process started and has not reaped
        // (so the pid cannot have been reused) has no memory-safety requirements.
        #[allow(unsafe_code)]
        let result = unsafe { libc::kill(pid, libc::SIGINT) };
        assert_eq!(result, 0, "kill -INT {pid}: {}", std::io::Error::last_os_error());
    }

    /// Sends `signal` (`libc::SIGTERM`, `libc::SIGKILL`, ...) unless the process has
    /// already ended; false if it had.
    pub fn signal(&mut self, signal: libc::c_int) -> bool {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return false;
        }
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid fits pid_t");
        // SAFETY: kill(2) with the pid of a child this process started and that try_wait
        // just found running (so it is not reaped and the pid cannot have been reused) has
        // no memory-safety requirements.
        #[allow(unsafe_code)]
        let result = unsafe { libc::kill(pid, signal) };
        assert_eq!(result, 0, "kill -{signal} {pid}: {}", std::io::Error::last_os_error());
        true
    }

    /// Sends SIGTERM, as `kill PID`, `timeout` and service managers do; false if the
    /// process had already ended.
    pub fn terminate(&mut self) -> bool {
        self.signal(libc::SIGTERM)
    }

    /// Sends SIGKILL: the process ends at once wherever it was, as in a crash, an OOM kill
    /// or a lost machine; false if it had already ended.
    pub fn kill9(&mut self) -> bool {
        self.signal(libc::SIGKILL)
    }

    /// Waits up to `timeout` for the process to end by itself; true if it did.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the process to end; after `timeout` it is killed and the test fails.
    pub fn finish(mut self, timeout: Duration) -> Finished {
        let deadline = Instant::now() + timeout;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                Ok(None) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!(
                        "{} did not finish within {timeout:?}; it was killed.\nstderr:\n{}",
                        self.what,
                        self.stderr_so_far()
                    );
                }
                Err(e) => panic!("waiting for {}: {e}", self.what),
            }
        };
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let stdout = self.stdout.lock().expect("output lock").clone();
        let stderr = self.stderr.lock().expect("output lock").clone();
        Finished { status, stdout, stderr }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A test that fails half-way must not leave processes behind.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `tradeflow ARGS` on `-n 2` processes at once (one worker each, two local ports in a
/// host file written to `dir`), each run to a successful end within `timeout`;
/// (process 0, process 1).
pub fn run_two_processes<S: AsRef<OsStr>>(args: &[S], dir: &Path, timeout: Duration) -> (Finished, Finished) {
    let hosts = dir.join("hosts.txt");
    let ports = free_ports(2);
    std::fs::write(&hosts, format!("127.0.0.1:{}\n127.0.0.1:{}\n", ports[0], ports[1])).expect("writing the host file");
    let spawn = |process: &str| {
        let mut command = tradeflow_command();
        command.args(args).args(["-n", "2", "-p", process, "-h"]).arg(&hosts);
        Running::spawn(command)
    };
    let (first, second) = (spawn("0"), spawn("1"));
    let second = second.finish(timeout);
    let first = first.finish(timeout);
    second.assert_success("tradeflow run -n 2 -p 1");
    first.assert_success("tradeflow run -n 2 -p 0");
    (first, second)
}

/// The file `name` in a directory of the `PATH`, if any.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// A server the tests build from crates.io once: `$OVERRIDE` if set (which must be a
/// file), else `name` on the `PATH`, else in `~/.cargo/bin`. Without it, a panic naming
/// `install` when `$REQUIRE=1`, else `None` after printing that the `checks` are skipped.
pub fn installed_binary(
    name: &str,
    override_var: &str,
    require_var: &str,
    checks: &str,
    install: &str,
) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(override_var) {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "{override_var}={} is not a file", path.display());
        return Some(path);
    }
    let in_cargo_home = std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo/bin").join(name));
    if let Some(found) = on_path(name).or(in_cargo_home.filter(|p| p.is_file())) {
        return Some(found);
    }
    let problem = format!("{name} is not in {override_var}, on PATH or in ~/.cargo/bin");
    let required = std::env::var(require_var).is_ok_and(|v| v == "1");
    assert!(!required, "{require_var}=1 but {problem}; install it with `{install}`");
    eprintln!("skipping the {checks} checks: {problem}; install it with `{install}`");
    None
}

/// `n` distinct TCP ports on 127.0.0.1 that were free a moment ago.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> =
        (0..n).map(|_| TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0")).collect();
    listeners.iter().map(|l| l.local_addr().expect("bound address").port()).collect()
}

/// One TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// Starts `command`, a server told to listen on 127.0.0.1:`port`, its stdout and stderr
/// appended to `log`: the child once it accepts connections; `None` if it exited first
/// (the port was taken) or did not listen within `timeout` (it is killed then).
pub fn start_server(mut command: Command, log: &Path, port: u16, timeout: Duration) -> Option<Child> {
    let file = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("opening the server log");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("cloning the log handle"))
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", command.get_program()));
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + timeout;
    loop {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return None;
        }
        if std::net::TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
            return Some(child);
        }
        if Instant::now() >= deadline {
            stop_server(&mut Some(child));
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Kills a server started by [`start_server`] (SIGKILL, as a crash would), if running.
pub fn stop_server(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Calls `start` (one attempt to start a killed server again on its port, true once it
/// listens) for up to 20 s, as the port can stay busy for a moment after the kill; false
/// if no attempt succeeded.
pub fn start_again_within_20s(mut start: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if start() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// A fresh temporary directory, removed when dropped.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("tradeflow-e2e-").tempdir().expect("creating a temporary directory")
}

/// `file:///abs/path` of an absolute path.
pub fn file_url(path: &Path) -> String {
    assert!(path.is_absolute(), "{} is not absolute", path.display());
    format!("file://{}", path.display())
}

/// Writes `tradeflow simulate --out PATH ARGS` and checks it succeeded.
pub fn simulate<S: AsRef<OsStr>>(out: &Path, args: &[S]) {
    let mut command = tradeflow_command();
    command.arg("simulate").arg("--out").arg(out).args(args);
    Running::spawn(command).finish(Duration::from_secs(60)).assert_success("tradeflow simulate");
}
