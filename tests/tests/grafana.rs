//! Issue 7: `deploy/`. The Grafana dashboard parses as a dashboard whose panels all
//! query the provisioned Prometheus data source, and every metric it queries exists on
//! `/metrics` of a running pipeline with every sink (simulator -> lake, PostgreSQL,
//! dashboard), but for the Kafka and WebSocket sources' series, which exist only while
//! such a source runs: those must be registered under that name in the sources' code.
//! The Prometheus scrape config passes `promtool check config`, and docker-compose.yml
//! mounts and builds from files that exist.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tradeflow_tests::postgres::PgCluster;
use tradeflow_tests::process::Running;
use tradeflow_tests::prometheus::{Exposition, http_get, metric_names, promtool};
use tradeflow_tests::{file_url, free_ports, temp_dir, tradeflow_command};

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

/// True when some file under `sources/src` registers the metric family `name`.
fn registered_in_sources(name: &str) -> bool {
    let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
    let quoted = format!("\"{family}\"");
    let mut stack = vec![repository().join("sources/src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read_to_string(&path).is_ok_and(|text| text.contains(&quoted)) {
                return true;
            }
        }
    }
    false
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

    // A running pipeline with every sink.
    let Some(cluster) = PgCluster::shared() else { return };
    let db = cluster.database("grafana");
    let dir = temp_dir();
    let ports = free_ports(2);
    let metrics = format!("127.0.0.1:{}", ports[0]);
    let mut command = tradeflow_command();
    command.args([
        "run",
        "--source",
        "sim://?rate=2000&symbols=AAPL,MSFT",
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
        &format!("127.0.0.1:{}", ports[1]),
        "--progress-interval",
        "0",
    ]);
    let mut run = Running::spawn(command);
    assert!(
        run.wait_for_stderr(Duration::from_secs(60), |s| s.contains("Prometheus metrics on http://")),
        "{}",
        run.stderr_so_far()
    );
    // Once PostgreSQL has committed rows, every sink and latency series has moved.
    let deadline = Instant::now() + Duration::from_secs(45);
    let served = loop {
        let page = Exposition::parse(&http_get(&metrics, "/metrics").expect("GET /metrics").body);
        if page.sum("tradeflow_sink_rows_total", &[("sink", "postgres")]) > 0.0
            && page.sum("tradeflow_end_to_end_latency_seconds_count", &[("sink", "postgres")]) > 0.0
        {
            break page;
        }
        assert!(Instant::now() < deadline, "no PostgreSQL commit within 45 s:\n{}", run.stderr_so_far());
        std::thread::sleep(Duration::from_millis(200));
    };
    let names = served.series_names();
    let mut missing = Vec::new();
    for (name, panels) in &queried {
        let source_specific = name.starts_with("tradeflow_kafka_") || name.starts_with("tradeflow_websocket_");
        let exists = names.contains(name) || name == "up" || (source_specific && registered_in_sources(name));
        if !exists {
            missing.push(format!("{name} (in {panels:?})"));
        }
    }
    assert!(missing.is_empty(), "the dashboard queries metrics tradeflow does not serve: {missing:#?}");
    run.interrupt();
    run.finish(Duration::from_secs(60)).assert_success("tradeflow run with every sink");
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
