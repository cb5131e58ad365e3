//! Issue 15's defects, one regression test each (named after the defect): settings that
//! overflowed or exhausted memory, a panic that hung the other workers, colliding run
//! ids and concurrent writers of one job, secrets in messages, pipes, a missing lake, a
//! closed stderr, unreadable input, lossy dead letters and byte-order marks.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tradeflow_tests::lake::{files_under, read_dead_letters, read_trades};
use tradeflow_tests::process::{Running, assert_no_panic};
use tradeflow_tests::{Finished, file_url, run_tradeflow, temp_dir, tradeflow_command};

const TIMEOUT: Duration = Duration::from_secs(60);
const LINE: &str = "{\"s\":\"AAPL\",\"p\":1,\"t\":1700000000000,\"v\":1}\n";

/// `tradeflow run` with `args`, over a one-trade file and into a lake in `dir` unless
/// `args` give a source or a lake.
fn run_in(dir: &Path, args: &[&str]) -> Finished {
    let input = dir.join("ok.ndjson");
    std::fs::write(&input, LINE).expect("writing the input");
    let (source, lake) = (file_url(&input), file_url(&dir.join("lake")));
    let mut all = vec!["run", "--progress-interval", "0"];
    if !args.contains(&"--source") {
        all.extend(["--source", &source]);
    }
    if !args.contains(&"--lake") {
        all.extend(["--lake", &lake]);
    }
    all.extend_from_slice(args);
    run_tradeflow(&all, TIMEOUT)
}

fn assert_refused(args: &[&str], needles: &[&str]) {
    let dir = temp_dir();
    let started = Instant::now();
    let out = run_in(dir.path(), args);
    assert_eq!(out.status.code(), Some(1), "{args:?}: not a clean refusal:\n{}", out.stderr);
    assert_no_panic(&out.stderr);
    for needle in needles {
        assert!(out.stderr.contains(needle), "{args:?}: the error does not mention {needle:?}:\n{}", out.stderr);
    }
    assert!(started.elapsed() < Duration::from_secs(20), "{args:?}: refused only after {:?}", started.elapsed());
}

#[test]
fn large_numeric_settings_overflowed_and_panicked() {
    assert_refused(
        &["--baseline-windows", "10000000000000000", "--min-history", "1"],
        &["--baseline-windows", "10000"],
    );
    assert_refused(&["--window", "100000000000d"], &["--window", "7d"]);
    assert_refused(&["--volatility-windows", "18446744073709551615"], &["--volatility-windows", "10000"]);
    assert_refused(&["--allowed-lateness", "100000000000d"], &["--allowed-lateness", "7d"]);
    assert_refused(&["--idle-timeout", "100000000000d"], &["--idle-timeout", "1d"]);
    assert_refused(&["--checkpoint-interval", "100000000000d"], &["--checkpoint-interval", "1d"]);
    assert_refused(&["--lake-file-rows", "18446744073709551615"], &["--lake-file-rows", "10000000"]);
    assert_refused(&["--lake-final-rows", "18446744073709551615"], &["--lake-final-rows", "10000000"]);
    // At the limits, a run works.
    let dir = temp_dir();
    let args = ["--volatility-windows", "10000", "--baseline-windows", "10000", "--window", "7d", "--slide", "1d"];
    run_in(dir.path(), &args).assert_success("a run at the limits");
}

#[test]
fn a_panic_in_one_worker_hung_the_others() {
    let dir = temp_dir();
    let lake = file_url(&dir.path().join("lake"));
    let mut command = tradeflow_command();
    command.env("TRADEFLOW_PANIC_WORKER", "1").args([
        "run",
        "-w",
        "2",
        "--progress-interval",
        "0",
        "--source",
        "sim://?rate=1000",
        "--lake",
        &lake,
    ]);
    let started = Instant::now();
    let out = Running::spawn(command).finish(TIMEOUT);
    assert_eq!(out.status.code(), Some(101), "exit code of a panic:\n{}", out.stderr);
    assert!(out.stderr.contains("injected by TRADEFLOW_PANIC_WORKER=1"), "the panic's message:\n{}", out.stderr);
    assert!(started.elapsed() < Duration::from_secs(20), "ended only after {:?}", started.elapsed());
}

#[test]
fn window_over_slide_was_unbounded() {
    assert_refused(&["--window", "1h", "--slide", "1ms"], &["--slide", "3600000 windows", "1000", "at least 3s 600ms"]);
    assert_refused(&["--window", "1d", "--slide", "1ms"], &["--slide", "1000"]);
    let dir = temp_dir();
    run_in(dir.path(), &["--window", "1h", "--slide", "5s"]).assert_success("720 windows per trade");
}

#[test]
fn memory_grew_with_the_square_of_the_workers() {
    assert_refused(&["-w", "1000"], &["-w 1000", "256"]);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let dir = temp_dir();
    let workers = (cores + 1).to_string();
    let out = run_in(dir.path(), &["-w", &workers]);
    out.assert_success("more workers than cores");
    assert!(out.stderr.contains("more worker threads than this machine's"), "a warning:\n{}", out.stderr);
    let out = run_in(temp_dir().path(), &["-w", "1"]);
    assert!(!out.stderr.contains("more worker threads"), "no warning at -w 1:\n{}", out.stderr);
}

#[test]
fn run_ids_collided_within_a_second() {
    // Two runs of two jobs started together on one lake: each writes its own changelog.
    let dir = temp_dir();
    let input = dir.path().join("ok.ndjson");
    std::fs::write(&input, LINE).expect("writing the input");
    let (source, lake) = (file_url(&input), file_url(&dir.path().join("lake")));
    let runs: Vec<Running> = ["a", "b"]
        .iter()
        .map(|job| {
            let mut command = tradeflow_command();
            command.args(["run", "--progress-interval", "0", "--source", &source, "--lake", &lake, "--job", job]);
            Running::spawn(command)
        })
        .collect();
    for run in runs {
        run.finish(TIMEOUT).assert_success("a run of its own job");
    }
    let changelog: Vec<String> = files_under(&dir.path().join("lake").join("changelog").join("window_metrics"))
        .iter()
        .map(|p| p.file_name().expect("a file").to_string_lossy().into_owned())
        .collect();
    let run_ids: std::collections::BTreeSet<&str> =
        changelog.iter().map(|name| name.rsplit_once("-w").expect("<run id>-wNNNN-seq").0).collect();
    assert_eq!(run_ids.len(), 2, "two run ids: {changelog:?}");
}

#[test]
fn two_writers_of_one_job_shared_a_lake() {
    let dir = temp_dir();
    let lake = file_url(&dir.path().join("lake"));
    let args = ["run", "--progress-interval", "200ms", "--source", "sim://?rate=1000&seed=7", "--lake", &lake];
    let spawn = || {
        let mut command = tradeflow_command();
        command.args(args);
        Running::spawn(command)
    };
    let mut first = spawn();
    assert!(
        first.wait_for_stderr(TIMEOUT, |e| e.contains("open windows")),
        "the first run did not start:\n{}",
        first.stderr_so_far()
    );
    let second = spawn().finish(TIMEOUT);
    assert_eq!(second.status.code(), Some(1), "the second writer is refused:\n{}", second.stderr);
    let pid = first.pid().to_string();
    for needle in ["is already running", "lease-p0.json", &pid, "--job"] {
        assert!(second.stderr.contains(needle), "the refusal names {needle:?}:\n{}", second.stderr);
    }
    // A writer killed with -9 holds nothing: the next run takes over at once.
    assert!(first.kill9(), "kill -9");
    let mut third = spawn();
    assert!(
        third.wait_for_stderr(TIMEOUT, |e| e.contains("taking over the lease") && e.contains("open windows")),
        "the lease of a dead run is taken over:\n{}",
        third.stderr_so_far()
    );
    assert!(third.terminate(), "SIGTERM");
    let third = third.finish(TIMEOUT);
    third.assert_success("the run that took over");
    // A run that ends removes its lease.
    let leases: Vec<_> = files_under(&dir.path().join("lake"))
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("lease-")))
        .collect();
    assert!(leases.is_empty(), "leases left behind: {leases:?}");
}

#[test]
fn the_postgres_password_was_printed_from_malformed_urls() {
    let secret = "Sup3rS3cret";
    for url in [
        format!("u:{secret}@127.0.0.1:1"),
        format!("postgres:/u:{secret}@127.0.0.1:1"),
        format!("postgres//u:{secret}@127.0.0.1:1"),
        format!("postgres://u:{secret}"),
        format!("postgres://u:ab@{secret}@127.0.0.1:1/db"),
    ] {
        let dir = temp_dir();
        let out = run_in(dir.path(), &["--postgres", &url]);
        assert!(!out.success(), "{url} was accepted");
        assert!(out.stderr.contains("--postgres"), "{url}: names the flag:\n{}", out.stderr);
        assert!(!out.stderr.contains(secret), "{url}: the password is shown:\n{}", out.stderr);
    }
    let dir = temp_dir();
    let mut command = tradeflow_command();
    let input = dir.path().join("ok.ndjson");
    std::fs::write(&input, LINE).expect("writing the input");
    command.env("DATABASE_URL", format!("u:{secret}@h")).args(["run", "--no-lake", "--source", &file_url(&input)]);
    let out = Running::spawn(command).finish(TIMEOUT);
    assert!(!out.success() && out.stderr.contains("DATABASE_URL"), "{}", out.stderr);
    assert!(!out.stderr.contains(secret), "DATABASE_URL: the password is shown:\n{}", out.stderr);
}

#[test]
fn a_pipe_source_read_nothing() {
    // Standard input is a streaming source, read until it ends.
    let dir = temp_dir();
    let lake = dir.path().join("lake");
    let mut child = tradeflow_command()
        .args(["run", "--progress-interval", "0", "--source", "-", "--lake", &file_url(&lake)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting tradeflow");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut lines = String::new();
    for i in 0..500 {
        lines.push_str(&format!(
            "{{\"s\":\"AAPL\",\"p\":{},\"t\":{},\"v\":1}}\n",
            100 + i % 7,
            1_700_000_000_000i64 + i * 100
        ));
    }
    lines.push_str("not json\n");
    stdin.write_all(lines.as_bytes()).expect("writing to the pipe");
    drop(stdin);
    let out = child.wait_with_output().expect("waiting for tradeflow");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let summary = tradeflow_tests::summary::Summary::parse(&stderr).expect("a summary");
    assert_eq!((summary.accepted, summary.rejected), (500, 1), "{stderr}");
    assert_eq!(read_trades(&lake).len(), 500);
    let letters = read_dead_letters(&lake);
    assert_eq!((letters[0].source.as_str(), letters[0].payload.as_str()), ("stdin", "not json"));

    // A FIFO named as a file is refused with the way to read it.
    let fifo = dir.path().join("fifo");
    let status = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(status.success());
    let out = run_in(dir.path(), &["--source", &file_url(&fifo)]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("not a regular file") && out.stderr.contains("--source -"), "{}", out.stderr);
}

#[test]
fn a_missing_lake_to_replay_was_created() {
    let dir = temp_dir();
    let missing = dir.path().join("no").join("lake");
    let out = run_in(dir.path(), &["--source", &format!("lake://{}", missing.display())]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains(&missing.display().to_string()) && out.stderr.contains("does not exist"),
        "{}",
        out.stderr
    );
    assert!(!dir.path().join("no").exists(), "the lake to read was created");
}

#[test]
fn a_closed_or_full_stderr_changed_the_exit_code() {
    let dir = temp_dir();
    let input = dir.path().join("ok.ndjson");
    std::fs::write(&input, LINE).expect("writing the input");
    let lake = file_url(&dir.path().join("lake"));
    let args = ["run", "--source", &file_url(&input), "--lake", &lake, "--progress-interval", "10ms"];
    // 2>/dev/full
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full");
    let status = tradeflow_command().args(args).stdout(Stdio::null()).stderr(full).status().expect("running");
    assert_eq!(status.code(), Some(0), "2>/dev/full");
    // 2>&1 | head -0: the reader is gone before anything is written.
    let mut child =
        tradeflow_command().args(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("running");
    drop(child.stderr.take());
    assert_eq!(child.wait().expect("waiting").code(), Some(0), "stderr closed");
}

#[test]
fn an_unreadable_file_in_a_directory_was_skipped() {
    let dir = temp_dir();
    let input = dir.path().join("input");
    std::fs::create_dir(&input).expect("mkdir");
    std::fs::write(input.join("a.ndjson"), LINE).expect("writing");
    std::fs::write(input.join("b.ndjson"), LINE).expect("writing");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(input.join("b.ndjson"), std::fs::Permissions::from_mode(0o000)).expect("chmod");
    for path in [dir.path(), input.as_path()] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    }
    let args = ["run", "--no-lake", "--progress-interval", "0", "--source", &file_url(&input)];
    // Root reads any file: run as an unprivileged user then.
    let mut command = if tradeflow_tests::postgres::is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--"]).arg(tradeflow_tests::tradeflow_bin());
        c
    } else {
        tradeflow_command()
    };
    let out = command.args(args).current_dir(dir.path()).output().expect("running tradeflow");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("b.ndjson") && stderr.contains("ermission denied"), "names the file and why:\n{stderr}");
}

#[test]
fn dead_letter_payloads_lost_invalid_utf8() {
    let dir = temp_dir();
    let input = dir.path().join("bytes.ndjson");
    let bad: &[u8] = b"{\"s\":\"AA\xffPL\",\"p\":1,\"t\":1700000000000,\"v\":1}";
    let mut bytes = LINE.as_bytes().to_vec();
    bytes.extend_from_slice(bad);
    bytes.extend_from_slice(b"\n{\"s\":\"caf\xc3\xa9\"}\n");
    std::fs::write(&input, &bytes).expect("writing");
    let lake = dir.path().join("lake");
    run_in(dir.path(), &["--source", &file_url(&input), "--lake", &file_url(&lake)]).assert_success("the run");
    let mut letters = read_dead_letters(&lake);
    letters.sort_by_key(|l| l.position);
    assert_eq!(letters.len(), 2);
    assert_eq!(letters[0].payload_bytes.as_deref(), Some(bad), "the exact bytes");
    assert!(letters[0].payload.contains('\u{FFFD}'));
    assert_eq!((letters[1].payload.as_str(), letters[1].payload_bytes.as_deref()), ("{\"s\":\"café\"}", None));
}

#[test]
fn a_byte_order_mark_made_the_first_line_invalid() {
    let dir = temp_dir();
    let input = dir.path().join("excel.ndjson");
    std::fs::write(&input, format!("\u{FEFF}{LINE}{LINE}")).expect("writing");
    let out = run_in(dir.path(), &["--source", &file_url(&input)]);
    out.assert_success("a file with a BOM");
    assert_eq!((out.summary().accepted, out.summary().rejected), (2, 0), "{}", out.stderr);
}

#[test]
fn the_trades_writer_held_a_file_open_per_symbol() {
    // 3 000 symbols with 40 trades each over one hour, read in several chunks so that the
    // hour's files are open while the input is read, under a limit of 256 open files: the
    // writer used to hold one open file (and a Parquet writer) per symbol.
    let dir = temp_dir();
    let input = dir.path().join("universe.ndjson");
    let (symbols, each) = (3_000usize, 40usize);
    let mut text = String::new();
    for i in 0..symbols * each {
        let ts = 1_699_999_200_000i64 + (i as i64 * 3_599_000) / (symbols * each) as i64;
        text.push_str(&format!(
            "{{\"s\":\"X{:05}\",\"p\":{}.5,\"t\":{ts},\"v\":1,\"c\":[\"padding-to-span-chunks\"]}}\n",
            i % symbols,
            10 + i % 50
        ));
    }
    assert!(text.len() > 8 << 20, "more than two 4 MiB chunks");
    std::fs::write(&input, text).expect("writing the input");
    let lake = dir.path().join("lake");
    let command = format!(
        "ulimit -n 256 && exec {} run --progress-interval 0 --source {} --lake {}",
        tradeflow_tests::tradeflow_bin().display(),
        file_url(&input),
        file_url(&lake)
    );
    let out = Command::new("sh").args(["-c", &command]).output().expect("running tradeflow");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("Too many open files"), "{stderr}");
    let files = files_under(&lake.join("trades")).len();
    assert_eq!(files, symbols, "one file per symbol and hour");
    assert_eq!(read_trades(&lake).len(), symbols * each);
}

#[test]
fn a_killed_run_left_its_staging_files_behind() {
    // A kill -9 leaves the spool files and spilled runs of the killed process in the
    // lake's staging directory; the next run on this host removes them, and keeps those
    // of other hosts (a shared local lake) and of live processes.
    let dir = temp_dir();
    let lake = dir.path().join("lake");
    let host: String = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' })
        .take(48)
        .collect();
    let staging = lake.join(".tradeflow-staging");
    let gone = staging.join(format!("{host}-4000000"));
    let elsewhere = staging.join("another-host-4000000");
    // A live tradeflow (another job, no lake) whose pid names a staging directory.
    let mut live = tradeflow_command();
    live.args(["run", "--no-lake", "--progress-interval", "0", "--source", "sim://?rate=10"]);
    let mut live = Running::spawn(live);
    let alive = staging.join(format!("{host}-{}", live.pid()));
    for stale in [&gone, &elsewhere, &alive] {
        std::fs::create_dir_all(stale).expect("mkdir");
        std::fs::write(stale.join("7.run"), b"spilled trades").expect("writing");
    }
    let out = run_in(dir.path(), &[]);
    assert!(live.terminate(), "stopping the live run");
    live.finish(TIMEOUT);
    out.assert_success("a run after a killed one");
    assert!(!gone.exists(), "the staging files of a process that is gone are removed:\n{}", out.stderr);
    assert!(elsewhere.exists(), "another host's staging files are kept");
    assert!(alive.exists(), "a live process's staging files are kept");
}
