//! Issue 7: `deploy/` and the metrics' documentation. The Grafana dashboard parses as a
//! dashboard whose panels all query the provisioned Prometheus data source, and every
//! metric it queries exists on `/metrics` of a running pipeline that has every kind of
//! source (simulator, NDJSON file, lake replay, a Finnhub-compatible WebSocket server
//! that drops each connection every second, a Kafka topic of two partitions on a real
//! broker) and every sink (lake, PostgreSQL, dashboard). The same page serves exactly
//! the families the README's metrics table lists, with the types it gives, and holds no
//! secret. The Prometheus scrape config passes `promtool check config`, and
//! docker-compose.yml mounts and builds from files that exist.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tradeflow_tests::finnhub::serve;
use tradeflow_tests::kafka::Broker;
use tradeflow_tests::postgres::{PASSWORD, PgCluster};
use tradeflow_tests::process::Running;
use tradeflow_tests::prometheus::{Exposition, http_get, metric_names, promtool};
use tradeflow_tests::{file_url, free_ports, run_tradeflow, simulate, temp_dir, tradeflow_command};

/// The Finnhub key the run gets: it must appear nowhere.
const FINNHUB_KEY: &str = "grafana-test-key-5b1e0c";

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the repository").to_path_buf()
}

fn read(relative: &str) -> String {
    let path = repository().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &serde_json::Value) -> Vec<&serde_json::Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("a dashboard has panels") {
        out.push(panel);
        if let Some(nested) = panel["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

/// The metric names the dashboard's queries read, with the panels reading each.
fn queried_metrics(dashboard: &serde_json::Value) -> BTreeMap<String, BTreeSet<String>> {
    let mut names: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for panel in panels(dashboard).into_iter().filter(|p| p["type"] != "row") {
        let title = panel["title"].as_str().expect("a panel title").to_owned();
        let targets = panel["targets"].as_array().unwrap_or_else(|| panic!("{title}: no targets"));
        assert!(!targets.is_empty(), "{title}: no targets");
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}: not the dashboard's data source");
            let expr = target["expr"].as_str().unwrap_or_else(|| panic!("{title}: a target without expr"));
            let found = metric_names(expr);
            assert!(!found.is_empty(), "{title}: {expr} reads no tradeflow_*, process_* or up metric");
            for name in found {
                names.entry(name).or_default().insert(title.clone());
            }
        }
    }
    for variable in dashboard["templating"]["list"].as_array().expect("templating") {
        if let Some(definition) = variable["definition"].as_str() {
            for name in metric_names(definition) {
                names.entry(name).or_default().insert(format!("variable {}", variable["name"]));
            }
        }
    }
    names
}

/// The README's metrics table: family name -> type.
fn readme_metrics() -> BTreeMap<String, String> {
    let readme = read("README.md");
    let start = readme.find("\n## Metrics, dashboard and logs\n").expect("the README's metrics section");
    let section = &readme[start + 1..];
    let section = &section[..section[1..].find("\n## ").map_or(section.len(), |e| e + 1)];
    section
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            let kind = cells.get(2)?;
            (name.starts_with("tradeflow_") || name.starts_with("process_"))
                .then(|| (name.to_owned(), (*kind).to_owned()))
        })
        .collect()
}

/// True for the families only a Kafka source serves.
fn kafka_only(name: &str) -> bool {
    name.starts_with("tradeflow_kafka_")
}

#[test]
fn the_grafana_dashboard_queries_only_metrics_a_pipeline_serves() {
    let text = read("deploy/grafana/dashboards/tradeflow.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert_eq!(dashboard["uid"], "tradeflow");
    assert!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36), "schemaVersion");
    let all = panels(&dashboard);
    let ids: BTreeSet<u64> = all.iter().map(|p| p["id"].as_u64().expect("a panel id")).collect();
    assert_eq!(ids.len(), all.len(), "panel ids are unique");
    for panel in &all {
        let grid = &panel["gridPos"];
        assert!(grid["w"].as_u64().is_some_and(|w| w > 0 && w <= 24) && grid["h"].as_u64().is_some(), "{panel}");
    }
    // The data source variable defaults to the provisioned Prometheus.
    let variables = dashboard["templating"]["list"].as_array().expect("templating");
    let source = variables.iter().find(|v| v["type"] == "datasource").expect("a data source variable");
    assert_eq!((&source["name"], &source["query"]), (&"datasource".into(), &"prometheus".into()));
    let provisioned = read("deploy/grafana/provisioning/datasources/prometheus.yml");
    let uid = source["current"]["value"].as_str().expect("a default data source");
    assert!(provisioned.contains(&format!("uid: {uid}\n")), "the provisioned data source's uid is not {uid}");

    let queried = queried_metrics(&dashboard);
    for family in ["tradeflow_trades_total", "tradeflow_rejects_total", "tradeflow_sink_commit_seconds_bucket"] {
        assert!(queried.contains_key(family), "the dashboard does not show {family}");
    }

    // A running pipeline with every kind of source and every sink.
    let Some(cluster) = PgCluster::shared() else { return };
    let db = cluster.database("grafana");
    let dir = temp_dir();
    let ports = free_ports(3);
    let (metrics, dashboard) = (format!("127.0.0.1:{}", ports[0]), format!("127.0.0.1:{}", ports[1]));
    let server = serve(ports[2], &["--symbols", "AAPL,MSFT", "--rate", "100", "--disconnect-every", "1s"]);
    let file = dir.path().join("market.ndjson");
    simulate(&file, &["--count", "2000", "--rate", "200", "--seed", "3"]);
    let old = dir.path().join("old-lake");
    let args = ["run", "--progress-interval", "0", "--source", "sim://?count=2000&rate=0", "--lake", &file_url(&old)];
    run_tradeflow(&args, Duration::from_secs(60)).assert_success("writing a lake to replay");
    // Without a broker (and TRADEFLOW_REQUIRE_KAFKA unset) the Kafka families go unchecked.
    let broker = Broker::start();
    let mut sources = vec![
        "sim://?rate=2000&symbols=AAPL,MSFT".to_owned(),
        file_url(&file),
        format!("lake://{}", old.display()),
        format!("finnhub://?symbols=AAPL,MSFT&endpoint=ws://127.0.0.1:{}&backoff=100ms&max_backoff=200ms", ports[2]),
    ];
    if let Some(broker) = &broker {
        broker.create_topic("grafana", 2);
        let landed = broker.produce_lines("grafana", &file);
        assert_eq!(landed.iter().map(|(p, _)| *p).collect::<BTreeSet<_>>(), [0, 1].into(), "both partitions");
        sources.push(broker.url("grafana", "start=earliest"));
    } else {
        eprintln!("no Kafka broker: the dashboard's tradeflow_kafka_* series are not checked");
    }
    let mut command = tradeflow_command();
    command.env("FINNHUB_API_KEY", FINNHUB_KEY).arg("run");
    for source in &sources {
        command.args(["--source", source]);
    }
    command.args([
        "--window",
        "1s",
        "--allowed-lateness",
        "500ms",
        "--lake",
        &file_url(&dir.path().join("lake")),
        "--postgres",
        &db.url(),
        "--metrics-addr",
        &metrics,
        "--dashboard-addr",
        &dashboard,
        "--progress-interval",
        "0",
    ]);
    let mut run = Running::spawn(command);
    assert!(
        run.wait_for_stderr(Duration::from_secs(60), |s| s.contains("Prometheus metrics on http://")),
        "{}",
        run.stderr_so_far()
    );
    // Once every source and sink has moved, every series has been created.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (page, served) = loop {
        let page = http_get(&metrics, "/metrics").expect("GET /metrics").body;
        let m = Exposition::parse(&page);
        let moved = [
            m.sum("tradeflow_sink_rows_total", &[("sink", "postgres")]),
            m.sum("tradeflow_end_to_end_latency_seconds_count", &[("sink", "postgres")]),
            m.sum("tradeflow_end_to_end_latency_seconds_count", &[("sink", "dashboard")]),
            m.sum("tradeflow_websocket_reconnects_total", &[]),
            m.sum("tradeflow_websocket_gap_seconds_count", &[]),
            m.sum("tradeflow_trades_total", &[("source", "file")]),
            m.sum("tradeflow_trades_total", &[("source", "lake")]),
            m.sum("tradeflow_lake_replay_read_bytes_total", &[]),
            m.sum("tradeflow_file_bytes_read_total", &[]),
            if broker.is_some() { m.sum("tradeflow_trades_total", &[("source", "kafka")]) } else { 1.0 },
        ];
        let lag_partitions: BTreeSet<&str> = m
            .matching("tradeflow_kafka_consumer_lag", &[("topic", "grafana")])
            .map(|s| s.labels["partition"].as_str())
            .collect();
        if moved.iter().all(|v| *v > 0.0) && (broker.is_none() || lag_partitions == ["0", "1"].into()) {
            break (page.clone(), m);
        }
        assert!(
            Instant::now() < deadline,
            "not every series moved within 60 s ({moved:?}):\n{page}\n{}",
            run.stderr_so_far()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let names = served.series_names();
    let mut missing = Vec::new();
    for (name, panels) in &queried {
        if !(names.contains(name) || name == "up" || (broker.is_none() && kafka_only(name))) {
            missing.push(format!("{name} (in {panels:?})"));
        }
    }
    assert!(missing.is_empty(), "the dashboard queries metrics tradeflow does not serve: {missing:#?}");

    // The README lists exactly the families served, with their types.
    let documented = readme_metrics();
    assert!(documented.len() >= 30, "{documented:?}");
    for (name, kind) in &documented {
        if broker.is_none() && kafka_only(name) {
            continue;
        }
        assert_eq!(served.types.get(name), Some(kind), "the README's {name} ({kind}) on /metrics:\n{page}");
    }
    let undocumented: Vec<&String> = served.types.keys().filter(|n| !documented.contains_key(*n)).collect();
    assert!(undocumented.is_empty(), "families on /metrics missing from the README's table: {undocumented:?}");
    for sample in served.matching("tradeflow_kafka_consumer_lag", &[]) {
        assert!(sample.value >= 0.0, "{sample:?}");
    }

    // No secret on /metrics, the dashboard or stderr.
    let snapshot = http_get(&dashboard, "/api/snapshot").expect("GET /api/snapshot").body;
    let events =
        tradeflow_tests::prometheus::http_get_limited(&dashboard, "/api/events", 64 << 10, Duration::from_secs(1))
            .expect("GET /api/events")
            .body;
    assert!(snapshot.contains("postgres") && snapshot.contains("\"lake\""), "{snapshot}");
    run.interrupt();
    let out = run.finish(Duration::from_secs(60));
    drop(server);
    out.assert_success("tradeflow run with every source and sink");
    for (what, text) in
        [("/metrics", &page), ("/api/snapshot", &snapshot), ("/api/events", &events), ("stderr", &out.stderr)]
    {
        for secret in [PASSWORD, FINNHUB_KEY] {
            assert!(!text.contains(secret), "{what} shows the secret {secret:?}");
        }
    }
}

#[test]
fn the_prometheus_config_and_compose_file_hold_together() {
    match promtool() {
        Some(promtool) => {
            let config = repository().join("deploy/prometheus/prometheus.yml");
            let out = std::process::Command::new(promtool)
                .args(["check", "config", "--syntax-only"])
                .arg(&config)
                .output()
                .expect("running promtool");
            assert!(
                out.status.success(),
                "promtool check config:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        None if std::env::var("TRADEFLOW_REQUIRE_PROMETHEUS").as_deref() == Ok("1") => {
            panic!("TRADEFLOW_REQUIRE_PROMETHEUS=1 but there is no promtool")
        }
        None => eprintln!("skipped promtool check config: no promtool"),
    }
    let compose = read("deploy/docker-compose.yml");
    let deploy = repository().join("deploy");
    let mounts: Vec<&str> = compose
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- ./"))
        .map(|m| m.split(':').next().expect("source:target"))
        .collect();
    assert!(mounts.len() >= 3, "{mounts:?}");
    for mount in mounts {
        assert!(deploy.join(mount).exists(), "docker-compose.yml mounts ./{mount}, which does not exist");
    }
    assert!(compose.contains("dockerfile: deploy/Dockerfile") && deploy.join("Dockerfile").is_file());
    assert!(compose.contains("--metrics-addr") && read("deploy/prometheus/prometheus.yml").contains("tradeflow:9898"));
    let provider = read("deploy/grafana/provisioning/dashboards/tradeflow.yml");
    assert!(provider.contains("path: /var/lib/grafana/dashboards") && compose.contains(":/var/lib/grafana/dashboards"));
}
