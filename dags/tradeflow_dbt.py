"""tradeflow_dbt: every hour, ``dbt run`` then ``dbt test`` on tradeflow's dbt project
(dbt_project/, over the PostgreSQL sink's tables; the original system's hourly dbt DAG).

Settings (Airflow Variable, else the workers' environment):

* ``tradeflow_dbt_project_dir`` / ``$TRADEFLOW_DBT_PROJECT_DIR``: the dbt project (required);
* ``tradeflow_dbt`` / ``$TRADEFLOW_DBT``: the dbt executable (``dbt`` on the PATH);
* ``tradeflow_dbt_profiles_dir`` / ``$DBT_PROFILES_DIR``: the profiles (the project's own
  ``profiles.yml``, which reads ``POSTGRES_HOST``, ``POSTGRES_PORT``, ``POSTGRES_DB``,
  ``POSTGRES_USER`` and ``POSTGRES_PASSWORD`` from the workers' environment);
* ``tradeflow_dbt_target_dir`` / ``$TRADEFLOW_DBT_TARGET_DIR``: where dbt writes its
  ``target/`` and ``logs/`` (dbt's default: inside the project).

``dbt test`` runs only after ``dbt run`` succeeded, and fails the DAG on any failing data
test. Both are retried once (a database restart, a lock); a failure posts to
``$SLACK_WEBHOOK_URL`` when it is set.
"""

from __future__ import annotations

import os
import shlex
from datetime import timedelta

import pendulum
from airflow.decorators import dag, task
from tradeflow_airflow import default_args, required_setting, setting


def dbt_command(command: str) -> str:
    """The shell command of ``dbt COMMAND`` with the configured project, profiles and
    target directories (read when the task runs)."""
    project = required_setting("tradeflow_dbt_project_dir", "TRADEFLOW_DBT_PROJECT_DIR", "the dbt project directory")
    args = [
        setting("tradeflow_dbt", "TRADEFLOW_DBT", "dbt"),
        command,
        "--project-dir",
        project,
        "--profiles-dir",
        setting("tradeflow_dbt_profiles_dir", "DBT_PROFILES_DIR", project),
    ]
    target = setting("tradeflow_dbt_target_dir", "TRADEFLOW_DBT_TARGET_DIR")
    if target:
        args += ["--target-path", os.path.join(target, "target"), "--log-path", os.path.join(target, "logs")]
    return shlex.join(args)


@task.bash
def dbt_run() -> str:
    return dbt_command("run")


@task.bash
def dbt_test() -> str:
    return dbt_command("test")


@dag(
    dag_id="tradeflow_dbt",
    schedule="@hourly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(retries=1, retry_delay=timedelta(minutes=5), timeout=timedelta(minutes=50)),
    tags=["tradeflow", "dbt"],
    doc_md=__doc__,
)
def tradeflow_dbt():
    dbt_run() >> dbt_test()


tradeflow_dbt()
