"""tradeflow_quality: every six hours, ``tradeflow check`` over the last six hours of the
lake (the original system's quality checks, every 6 hours): it recomputes the final
window metrics and anomalies from the lake's raw trades and reconciles them, bit for bit,
with the lake's and PostgreSQL's rows, and fails naming the first difference.

Settings (Airflow Variable, else the workers' environment):

* ``tradeflow_lake`` / ``$TRADEFLOW_LAKE``: the lake (``file:///abs/dir`` or
  ``s3://bucket/prefix``; required);
* ``tradeflow_bin`` / ``$TRADEFLOW_BIN``: the ``tradeflow`` executable (``tradeflow`` on
  the PATH);
* ``tradeflow_check_args`` / ``$TRADEFLOW_CHECK_ARGS``: the run's analytics flags, e.g.
  ``--window 30s --volatility-windows 10`` (tradeflow's defaults otherwise), and
  ``--no-postgres`` to check the lake only. PostgreSQL is reconciled too when the workers
  have ``DATABASE_URL`` or ``POSTGRES_*`` set.

The check is not retried on a mismatch (the same data gives the same answer); it is
retried once for anything else. A failure posts to ``$SLACK_WEBHOOK_URL`` when it is set.
"""

from __future__ import annotations

import shlex
from datetime import timedelta

import pendulum
from airflow.decorators import dag, task
from tradeflow_airflow import default_args, required_setting, setting


@task.bash
def check(data_interval_start=None, data_interval_end=None) -> str:
    args = [
        setting("tradeflow_bin", "TRADEFLOW_BIN", "tradeflow"),
        "check",
        "--lake",
        required_setting("tradeflow_lake", "TRADEFLOW_LAKE", "the lake to check"),
        "--from",
        data_interval_start.isoformat(),
        "--to",
        data_interval_end.isoformat(),
        "--format",
        "json",
    ]
    args += shlex.split(setting("tradeflow_check_args", "TRADEFLOW_CHECK_ARGS", "") or "")
    return shlex.join(args)


@dag(
    dag_id="tradeflow_quality",
    schedule="0 */6 * * *",
    start_date=pendulum.datetime(2020, 1, 1, tz="UTC"),  # catchup=False: no backfill; early, so that any date can be run by hand
    catchup=False,
    max_active_runs=1,
    default_args=default_args(retries=1, retry_delay=timedelta(minutes=10), timeout=timedelta(hours=2)),
    tags=["tradeflow", "quality"],
    doc_md=__doc__,
)
def tradeflow_quality():
    check()


tradeflow_quality()
