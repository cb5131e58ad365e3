"""Shared pieces of tradeflow's Airflow DAGs (dags/): settings, retries, the failure
callback and a reader of tradeflow's Prometheus page.

Settings come from an Airflow Variable when it exists (which Airflow also reads from
``AIRFLOW_VAR_<NAME>``), else from an environment variable of the worker, else a default:
no host, path or secret is written in the DAGs. Variables are read when a task runs,
never when the scheduler parses the files.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import urllib.request
from datetime import timedelta

log = logging.getLogger(__name__)


def setting(variable: str, env: str, default: str | None = None) -> str | None:
    """The Airflow Variable ``variable`` if set, else ``$env`` if set, else ``default``."""
    from airflow.models import Variable

    value = Variable.get(variable, default_var=None)
    if value not in (None, ""):
        return value
    value = os.environ.get(env)
    if value not in (None, ""):
        return value
    return default


def required_setting(variable: str, env: str, what: str) -> str:
    """Like :func:`setting`, failing with a message saying how to set it."""
    value = setting(variable, env)
    if value is None:
        raise ValueError(f"{what} is not configured: set the Airflow Variable {variable!r} or ${env} on the workers")
    return value


def default_args(retries: int, retry_delay: timedelta, timeout: timedelta) -> dict:
    """Retries, their delay and the failure callback; ``TRADEFLOW_AIRFLOW_RETRIES`` and
    ``TRADEFLOW_AIRFLOW_RETRY_DELAY_SECONDS`` override the first two (read at parse time,
    from the environment only)."""
    retries = int(os.environ.get("TRADEFLOW_AIRFLOW_RETRIES", retries))
    delay = os.environ.get("TRADEFLOW_AIRFLOW_RETRY_DELAY_SECONDS")
    return {
        "owner": "tradeflow",
        "retries": retries,
        "retry_delay": timedelta(seconds=float(delay)) if delay else retry_delay,
        "execution_timeout": timeout,
        "on_failure_callback": notify_failure,
    }


_USERINFO = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


def redact(text: str) -> str:
    """``text`` without URL credentials (``scheme://user:password@``) nor the values of the
    secret variables the workers may hold."""
    text = _USERINFO.sub(r"\1***@", text)
    for name in ("POSTGRES_PASSWORD", "SLACK_WEBHOOK_URL", "AWS_SECRET_ACCESS_KEY", "FINNHUB_API_KEY", "DATABASE_URL"):
        secret = os.environ.get(name)
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def notify_failure(context: dict) -> None:
    """Failure callback: posts the failed task and its error to ``$SLACK_WEBHOOK_URL`` (a
    Slack incoming webhook, or anything that takes ``{"text": ...}``) when it is set, and
    does nothing otherwise. A failed post is logged, never raised."""
    url = os.environ.get("SLACK_WEBHOOK_URL")
    if not url:
        return
    ti = context.get("task_instance")
    dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", "?")
    task_id = getattr(ti, "task_id", "?")
    error = context.get("exception") or context.get("reason") or "failed"
    text = (
        f"tradeflow: task {dag_id}.{task_id} failed "
        f"(run {context.get('run_id', '?')}, try {getattr(ti, 'try_number', '?')}): {str(error)[:1500]}"
    )
    body = json.dumps({"text": redact(text)}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            log.info("failure posted to SLACK_WEBHOOK_URL: HTTP %s", response.status)
    except Exception as e:  # noqa: BLE001 - a notification must not fail the callback
        log.warning("posting the failure to SLACK_WEBHOOK_URL failed: %s", redact(str(e)))


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def parse_exposition(text: str) -> list[tuple[str, dict, float]]:
    """The samples of a Prometheus text exposition (format 0.0.4): (name, labels, value)."""
    samples = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if not match:
            raise ValueError(f"not a Prometheus sample line: {line[:200]!r}")
        name, _, labels, value, _ = match.groups()
        parsed = {k: _unescape(v) for k, v in _LABEL.findall(labels or "")}
        samples.append((name, parsed, float(value)))
    return samples


def scrape(url: str, timeout: float = 10.0) -> dict:
    """What the health checks read from one tradeflow process's ``/metrics``."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        if response.status != 200:
            raise RuntimeError(f"GET {redact(url)}: HTTP {response.status}")
        text = response.read().decode("utf-8")
    samples = parse_exposition(text)

    def one(name):
        values = [v for n, _, v in samples if n == name]
        return values[0] if values else None

    def finite(value):
        return None if value is None or math.isnan(value) else value

    if one("tradeflow_build_info") is None:
        raise RuntimeError(f"{redact(url)} does not look like tradeflow's /metrics (no tradeflow_build_info)")
    by = lambda name, label: {l.get(label, ""): v for n, l, v in samples if n == name}  # noqa: E731
    return {
        "start_time": one("process_start_time_seconds"),
        "watermark_lag_seconds": finite(one("tradeflow_watermark_lag_seconds")),
        "watermark_timestamp_seconds": finite(one("tradeflow_watermark_timestamp_seconds")),
        "trades_total": sum(v for n, _, v in samples if n == "tradeflow_trades_total"),
        "windows_finalized_total": one("tradeflow_windows_finalized_total"),
        "sink_errors_total": by("tradeflow_sink_errors_total", "sink"),
        "sink_rows_total": by("tradeflow_sink_rows_total", "sink"),
        "kafka_consumer_lag": {
            f"{l.get('topic', '')}/{l.get('partition', '')}": v
            for n, l, v in samples
            if n == "tradeflow_kafka_consumer_lag"
        },
    }
