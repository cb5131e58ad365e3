//! A bad `kafka://` URL, or brokers that do not answer, stop `run` and `produce` before
//! anything runs, with the value and the fix. None of this needs a broker.

use std::time::{Duration, Instant};
use tradeflow_tests::process::Running;
use tradeflow_tests::{Finished, free_port, temp_dir, tradeflow_command};

/// Runs `tradeflow ARGS`, which must fail without a panic.
fn fails(args: &[&str]) -> Finished {
    let mut command = tradeflow_command();
    command.args(args);
    let out = Running::spawn(command).finish(Duration::from_secs(120));
    assert!(!out.success(), "tradeflow {args:?} succeeded:\n{}", out.stderr);
    tradeflow_tests::process::assert_no_panic(&out.stderr);
    out
}

#[test]
fn bad_kafka_urls_stop_run_and_produce_with_the_value_and_the_fix() {
    let dir = temp_dir();
    let lake = format!("file://{}", dir.path().display());
    for (url, needles) in [
        ("kafka://localhost/trades", &["\"localhost\" is not host:port", "e.g. 127.0.0.1:9092"][..]),
        ("kafka://127.0.0.1:9092/", &["no topic given", "e.g. kafka://"]),
        ("kafka://127.0.0.1:9092/a%20b", &["\"a b\" is not a legal Kafka topic name"]),
        ("kafka://127.0.0.1:9092/trades?start=yesterday", &["start=\"yesterday\"", "earliest, latest"]),
        ("kafka://127.0.0.1:9092/trades?end=offsets:0=-5", &["\"0=-5\" is not partition=offset", "offsets:0=10"]),
        ("kafka://127.0.0.1:9092/trades?format=protobuf", &["format=\"protobuf\"", "json or avro"]),
        (
            "kafka://127.0.0.1:9092/trades?partition=1",
            &["unknown option \"partition\"", "group, start, end and format"],
        ),
        ("kafka://127.0.0.1:9092/trades?start=committed", &["needs a group", "&group=NAME"]),
    ] {
        let started = Instant::now();
        let run = fails(&["run", "--source", url, "--lake", &lake]);
        assert!(started.elapsed() < Duration::from_secs(10), "{url}: checking the URL took {:?}", started.elapsed());
        let produce = fails(&["produce", "--from", "sim://?count=10", "--to", url]);
        for (what, out) in [("run", &run), ("produce", &produce)] {
            assert!(out.stderr.contains(url), "{what} {url}: the URL is not named:\n{}", out.stderr);
            for needle in needles {
                assert!(out.stderr.contains(needle), "{what} {url}: no {needle:?} in\n{}", out.stderr);
            }
        }
    }
}

#[test]
fn unreachable_brokers_stop_run_and_produce_naming_them() {
    let dir = temp_dir();
    let lake = format!("file://{}", dir.path().display());
    // Nothing listens there.
    let address = format!("127.0.0.1:{}", free_port());
    let url = format!("kafka://{address}/trades");
    let bounded = format!("{url}?end=latest");
    let spawn = |args: &[&str]| {
        let mut command = tradeflow_command();
        command.args(args);
        Running::spawn(command)
    };
    let run = spawn(&["run", "--source", &bounded, "--lake", &lake]);
    let produce = spawn(&["produce", "--from", "sim://?count=10", "--to", &url]);
    for (what, running) in [("run", run), ("produce", produce)] {
        let out = running.finish(Duration::from_secs(120));
        assert!(!out.success(), "{what} succeeded:\n{}", out.stderr);
        tradeflow_tests::process::assert_no_panic(&out.stderr);
        for needle in [format!("kafka://{address}/trades"), "cannot reach the brokers".to_owned()] {
            assert!(out.stderr.contains(&needle), "{what}: no {needle:?} in\n{}", out.stderr);
        }
    }
}
