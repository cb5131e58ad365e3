"""tradeflow_report: every day at 09:00 UTC, ``tradeflow report`` for the previous UTC
day (the original system's daily report): a self-contained HTML file with charts and
its Markdown version, written to the report directory.

Settings (Airflow Variable, else the workers' environment):

* ``tradeflow_lake`` / ``$TRADEFLOW_LAKE``: the lake the report reads (required);
* ``tradeflow_report_dir`` / ``$TRADEFLOW_REPORT_DIR``: where the reports are written
  (required);
* ``tradeflow_bin`` / ``$TRADEFLOW_BIN``: the ``tradeflow`` executable (``tradeflow`` on
  the PATH).

Retried twice (a lake briefly unreachable); a failure posts to ``$SLACK_WEBHOOK_URL`` when
it is set.
"""

from __future__ import annotations

import shlex
from datetime import timedelta

import pendulum
from airflow.decorators import dag, task
from tradeflow_airflow import default_args, required_setting, setting


@task.bash
def report(data_interval_start=None) -> str:
    # The run of day D+1 at 09:00 covers the interval starting on day D at 09:00.
    day = data_interval_start.in_timezone("UTC").date().isoformat()
    return shlex.join(
        [
            setting("tradeflow_bin", "TRADEFLOW_BIN", "tradeflow"),
            "report",
            "--date",
            day,
            "--lake",
            required_setting("tradeflow_lake", "TRADEFLOW_LAKE", "the lake to report on"),
            "--out",
            required_setting("tradeflow_report_dir", "TRADEFLOW_REPORT_DIR", "the report directory"),
        ]
    )


@dag(
    dag_id="tradeflow_report",
    schedule="0 9 * * *",
    start_date=pendulum.datetime(2020, 1, 1, tz="UTC"),  # catchup=False: no backfill; early, so that any date can be run by hand
    catchup=False,
    max_active_runs=1,
    default_args=default_args(retries=2, retry_delay=timedelta(minutes=5), timeout=timedelta(minutes=30)),
    tags=["tradeflow", "report"],
    doc_md=__doc__,
)
def tradeflow_report():
    report()


tradeflow_report()
