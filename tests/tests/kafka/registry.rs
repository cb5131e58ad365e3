//! Avro through a schema registry (`SCHEMA_REGISTRY_URL`): `tradeflow produce` registers
//! `schemas/trade.avsc` under `TOPIC-value` and writes its id; an outside producer writes
//! with a writer schema of its own (doubles) under a second id; `tradeflow run` fetches
//! each id from the registry (once per worker: cached) and reads both to the results of
//! the same trades sent as JSON. Without the registry the outside records cannot be read
//! with the local `.avsc`, and each is dead-lettered with its offset, none dropped.

use super::{TIMEOUT, assert_same_tree, counts, knobs, market, results_tree};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use tradeflow_tests::kafka::{Broker, SchemaRegistry};
use tradeflow_tests::lake::read_dead_letters;
use tradeflow_tests::process::Running;
use tradeflow_tests::{Finished, file_url, temp_dir, tradeflow_command};

/// `tradeflow ARGS` with `SCHEMA_REGISTRY_URL` set (or not), which must succeed.
fn tradeflow(args: &[&str], registry: Option<&str>) -> Finished {
    let mut command = tradeflow_command();
    command.args(args);
    if let Some(url) = registry {
        command.env("SCHEMA_REGISTRY_URL", url);
    }
    let out = Running::spawn(command).finish(TIMEOUT);
    out.assert_success(&format!("tradeflow {args:?} (SCHEMA_REGISTRY_URL={registry:?})"));
    out
}

fn replay(broker: &Broker, topic: &str, query: &str, lake: &Path, registry: Option<&str>) -> Finished {
    let source = broker.url(topic, query);
    let mut args = vec!["run", "--source", &source, "--progress-interval", "0", "-w", "2"];
    let lake = file_url(lake);
    args.extend(["--lake", &lake]);
    let knobs = knobs().args();
    args.extend(knobs.iter().map(String::as_str));
    tradeflow(&args, registry)
}

#[test]
fn avro_with_a_schema_registry_reads_every_writer_schema_by_id() {
    let Some(broker) = Broker::start() else { return };
    let registry = SchemaRegistry::start(broker.python());
    let dir = temp_dir();
    let all = market(&dir.path().join("market.ndjson"), 16_000, 17);
    let (first, second) = (dir.path().join("first.ndjson"), dir.path().join("second.ndjson"));
    std::fs::write(&first, all[..8_000].join("\n") + "\n").unwrap();
    std::fs::write(&second, all[8_000..].join("\n") + "\n").unwrap();

    // The same trades, in the same partitions and order, as Avro and as JSON.
    for (topic, format) in [("reg", "avro"), ("plain", "json")] {
        let to = broker.url(topic, "");
        let from = file_url(&first);
        let args = ["produce", "--from", &from, "--to", &to, "--partitions", "3", "--format", format];
        tradeflow(&[&args[..], &["--progress-interval", "0"]].concat(), Some(registry.url()));
    }
    let outside = broker.produce_avro_lines("reg", &second, registry.url());
    broker.produce_lines("plain", &second);

    // tradeflow registered trade.avsc (the first id, 41); the outside producer its own (42).
    let requests = registry.requests();
    let posts: Vec<&String> = requests.iter().filter(|r| r.starts_with("POST")).collect();
    assert_eq!(posts, ["POST /subjects/reg-value/versions -> 200"; 2], "{requests:?}");
    let mut ids: BTreeMap<[u8; 5], usize> = BTreeMap::new();
    for record in broker.consume("reg").records {
        *ids.entry(record.value[..5].try_into().unwrap()).or_default() += 1;
    }
    assert_eq!(ids, [([0, 0, 0, 0, 41], 8_000), ([0, 0, 0, 0, 42], all.len() - 8_000)].into());

    let plain = replay(&broker, "plain", "end=latest", &dir.path().join("plain"), None);
    let avro = replay(&broker, "reg", "end=latest&format=avro", &dir.path().join("avro"), Some(registry.url()));
    assert_eq!(counts(&avro.summary()), counts(&plain.summary()));
    assert_eq!(avro.summary().accepted + avro.summary().rejected, all.len() as u64);
    assert_same_tree(
        "avro via the registry vs json",
        &results_tree(&dir.path().join("avro")),
        &results_tree(&dir.path().join("plain")),
    );
    assert!(plain.summary().windows_final > 100);
    // Each id fetched once per worker at most (two workers), then cached.
    let requests = registry.requests();
    for id in [41, 42] {
        let gets = requests.iter().filter(|r| **r == format!("GET /schemas/ids/{id} -> 200")).count();
        assert!((1..=2).contains(&gets), "schema {id} fetched {gets} times: {requests:?}");
    }

    // Without a registry, the local schemas/trade.avsc: tradeflow's own records still
    // read, the outside producer's are dead-lettered, each with its topic, partition
    // and offset.
    let lake = dir.path().join("local");
    let local = replay(&broker, "reg", "end=latest&format=avro", &lake, None);
    let letters = read_dead_letters(&lake);
    let outside: BTreeSet<(String, i64)> =
        outside.iter().map(|&(p, offset)| (format!("{}/{p}", broker.url("reg", "")), offset)).collect();
    let lettered: BTreeSet<(String, i64)> = letters.iter().map(|d| (d.source.clone(), d.position)).collect();
    assert!(outside.is_subset(&lettered), "an outside record was not dead-lettered");
    let unreadable = letters.iter().filter(|d| d.detail.contains("invalid Avro (schema id 42")).count();
    assert!(unreadable > outside.len() * 9 / 10, "{unreadable} of {} say why", outside.len());
    assert_eq!(local.summary().accepted + local.summary().rejected, all.len() as u64);
    assert!(local.summary().accepted > 7_000, "tradeflow's own records: {:?}", local.summary());
}
