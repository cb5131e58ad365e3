"""tradeflow_health: every 10 minutes, reads tradeflow's Prometheus page (``/metrics``) and
fails when the pipeline is unhealthy (the original system's pipeline-health DAG).

Tasks:

* ``scrape_metrics`` reads ``/metrics`` of every process (the Variable
  ``tradeflow_metrics_url`` or ``$TRADEFLOW_METRICS_URL``: one URL, or several separated by
  commas for a ``-n N`` run), and keeps what it read in the Variable
  ``tradeflow_health_last`` for the next run. Retried: a scrape can fail for a moment.
* ``check_watermark``: fails when ``tradeflow_watermark_lag_seconds`` (wall clock minus the
  pipeline's watermark) exceeds ``tradeflow_max_watermark_lag_seconds`` /
  ``$TRADEFLOW_MAX_WATERMARK_LAG_SECONDS`` (300 s): windows stop becoming final, because a
  source partition is stuck (holding the watermark back) or the pipeline falls behind; also
  when a process running longer than that has never reported a watermark.
* ``check_sink_errors``: fails when ``tradeflow_sink_errors_total`` of a sink (lake,
  PostgreSQL) grew since the previous check (on the first check, or after a restart, since
  the process started): failed writes, even if a retry then succeeded.
* ``check_kafka_lag``: fails when a partition's ``tradeflow_kafka_consumer_lag`` exceeds
  ``tradeflow_max_kafka_lag`` / ``$TRADEFLOW_MAX_KAFKA_LAG`` (100000 records); passes when the
  run has no Kafka source.

The checks fail without retrying (AirflowFailException): they judge what the scrape read,
and a second look at the same numbers would say the same. A failure posts to
``$SLACK_WEBHOOK_URL`` when it is set.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pendulum
from airflow.decorators import dag, task
from airflow.exceptions import AirflowFailException
from tradeflow_airflow import default_args, redact, required_setting, scrape, setting

STATE = "tradeflow_health_last"


@task(retries=2)
def scrape_metrics() -> dict:
    """Reads every target's /metrics; returns each with what the previous check read."""
    from airflow.models import Variable

    urls = [u.strip() for u in required_setting("tradeflow_metrics_url", "TRADEFLOW_METRICS_URL", "tradeflow's /metrics URL").split(",") if u.strip()]
    previous = json.loads(Variable.get(STATE, default_var="{}"))
    targets = {}
    for url in urls:
        current = scrape(url)
        current["scraped_at"] = time.time()
        before = previous.get(url)
        # Counters restart with the process: compare only within one process.
        if before is not None and before.get("start_time") != current.get("start_time"):
            before = None
        targets[redact(url)] = {"current": current, "previous": before}
        previous[url] = current
    Variable.set(STATE, json.dumps(previous))
    return targets


@task
def check_watermark(targets: dict) -> str:
    limit = float(setting("tradeflow_max_watermark_lag_seconds", "TRADEFLOW_MAX_WATERMARK_LAG_SECONDS", "300"))
    problems, fine = [], []
    for url, seen in targets.items():
        now = seen["current"]
        lag = now["watermark_lag_seconds"]
        uptime = now["scraped_at"] - (now["start_time"] or now["scraped_at"])
        if lag is None:
            if uptime > limit:
                problems.append(f"{url}: no watermark reported in {uptime:.0f} s of running (limit {limit:g} s)")
            else:
                fine.append(f"{url}: starting, no watermark yet")
        elif lag > limit:
            problems.append(
                f"{url}: stale watermark, {lag:.1f} s behind the clock (limit {limit:g} s); "
                f"{now['windows_finalized_total']:.0f} windows finalised so far. A source partition is stuck "
                "(see --idle-timeout) or the pipeline is falling behind"
            )
        else:
            fine.append(f"{url}: watermark {lag:.1f} s behind the clock")
    if problems:
        raise AirflowFailException("; ".join(problems))
    return "; ".join(fine)


@task
def check_sink_errors(targets: dict) -> str:
    problems, fine = [], []
    for url, seen in targets.items():
        now, before = seen["current"], seen["previous"]
        since = "the previous check" if before else "the process started"
        for sink, errors in sorted(now["sink_errors_total"].items()):
            new = errors - (before or {}).get("sink_errors_total", {}).get(sink, 0.0)
            if new > 0:
                problems.append(f"{url}: sink {sink}: {new:.0f} failed writes since {since} (tradeflow_sink_errors_total)")
            else:
                fine.append(f"{url}: sink {sink}: no errors since {since}")
    if problems:
        raise AirflowFailException("; ".join(problems))
    return "; ".join(fine) or "no sinks"


@task
def check_kafka_lag(targets: dict) -> str:
    limit = float(setting("tradeflow_max_kafka_lag", "TRADEFLOW_MAX_KAFKA_LAG", "100000"))
    problems, fine = [], []
    for url, seen in targets.items():
        lags = seen["current"]["kafka_consumer_lag"]
        if not lags:
            fine.append(f"{url}: no Kafka source")
            continue
        behind = {p: v for p, v in lags.items() if v > limit}
        if behind:
            worst = ", ".join(f"{p} {v:.0f}" for p, v in sorted(behind.items(), key=lambda kv: -kv[1])[:5])
            problems.append(f"{url}: Kafka consumer lagging by more than {limit:g} records: {worst}")
        else:
            fine.append(f"{url}: Kafka lag at most {max(lags.values()):.0f} records")
    if problems:
        raise AirflowFailException("; ".join(problems))
    return "; ".join(fine)


@dag(
    dag_id="tradeflow_health",
    schedule="*/10 * * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=9),
    default_args=default_args(retries=1, retry_delay=timedelta(minutes=1), timeout=timedelta(minutes=2)),
    tags=["tradeflow"],
    doc_md=__doc__,
)
def tradeflow_health():
    targets = scrape_metrics()
    check_watermark(targets)
    check_sink_errors(targets)
    check_kafka_lag(targets)


tradeflow_health()
