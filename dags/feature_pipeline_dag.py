"""The nightly feature pipeline as an Airflow 3 DAG: one task per ``roiml pipeline step``.

Every task shells out to the ``roiml`` CLI, so this file imports nothing from roiml and the
Airflow environment never installs the project: Airflow's dependency pins and the project's
stay in separate virtual environments (or images). The worker finds the CLI through
``ROIML_CLI`` (default ``roiml`` on its PATH) and the CLI reads its own ``ROIML_*`` settings
(data directory, database, tenant) from the worker's environment.

The compute steps fan out over shards with dynamic task mapping: ``plan_shards`` decides N once
per run (Airflow Variable ``roiml_pipeline_shards``, else the worker's ``ROIML_PIPELINE_SHARDS``,
else 1), each compute task gets ``--shard i/N``, and validate refuses the day unless the shard
files of one N are all there. See dags/README.md.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.providers.smtp.notifications.smtp import SmtpNotifier
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Param, Variable, task

DAG_ID = "feature_engineering_daily"
SHARDS_VARIABLE = "roiml_pipeline_shards"
COMPUTE_STEPS = (
    "compute_behavioral",
    "compute_property",
    "compute_market",
    "compute_transactional",
    "compute_temporal",
)

# Resolved by the worker's shell at run time, not here: the DAG processor's environment need
# not know where the project's virtual environment lives.
CLI = '"${ROIML_CLI:-roiml}"'
# The param's pattern keeps the tenant a slug, so it is safe to paste into the command.
TENANT_ARG = "{% if params.tenant %} --tenant {{ params.tenant }}{% endif %}"
SHARD_COUNT = "{{ ti.xcom_pull(task_ids='plan_shards') | length }}"
ALERT_EMAIL = (
    "{{ var.value.get('roiml_alert_email', '"
    + os.environ.get("ROIML_ALERT_EMAIL", "ml-alerts@example.com")
    + "') }}"
)


def step_command(step: str, shard: str | None = None) -> str:
    """The shell command (a Jinja template) that runs one pipeline step for the run's day.

    ``{{ ds }}`` is the run's logical day. With Airflow 3's cron timetable the 02:00 run of day D
    has logical date D, and ``--date D`` means "as of D's midnight", i.e. through day D-1.
    """
    shard_arg = f" --shard {shard}" if shard else ""
    return f"{CLI} pipeline step {step} --date {{{{ ds }}}}{TENANT_ARG}{shard_arg}"


default_args = {
    "owner": "ml-platform",
    "retries": 3,
    "retry_delay": timedelta(minutes=5),
    # Email on failure the Airflow 3 way: a SmtpNotifier callback. The task-level `email`
    # argument still works but warns on every task that Airflow 4 removes it, so it is unset and
    # the flags below only state the intent (with no `email` they send nothing themselves). The
    # address is read when a task fails: Variable roiml_alert_email, else ROIML_ALERT_EMAIL as
    # the DAG processor saw it, else a placeholder.
    "on_failure_callback": SmtpNotifier(to=ALERT_EMAIL),
    "email_on_failure": True,
    "email_on_retry": False,
    "execution_timeout": timedelta(hours=2),
    # Every step of a run sees the run's N, never a worker's own ROIML_PIPELINE_SHARDS that may
    # disagree with the Variable (validate itself counts the shard files it finds).
    "env": {"ROIML_PIPELINE_SHARDS": SHARD_COUNT},
    "append_env": True,
}


@task
def plan_shards() -> list[str]:
    """The run's shard specs, ``["0/N", ..., "N-1/N"]``; one mapped compute task per spec."""
    raw = Variable.get(SHARDS_VARIABLE, default=os.environ.get("ROIML_PIPELINE_SHARDS", "1"))
    count = int(raw)
    if not 1 <= count <= 1024:
        raise ValueError(f"{SHARDS_VARIABLE} must be between 1 and 1024, got {raw!r}")
    return [f"{index}/{count}" for index in range(count)]


@task.bash(map_index_template="{{ shard }}")
def compute_features(step: str, shard: str) -> str:
    """One shard of one feature set; the returned command is rendered, then run by bash."""
    from airflow.sdk import get_current_context

    get_current_context()["shard"] = shard
    return step_command(step, shard)


with DAG(
    dag_id=DAG_ID,
    description="Nightly feature pipeline: extract, compute (sharded), validate, store, stats.",
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    # Days go one at a time: validate compares a day with the previous stored one, and the
    # statistics are those of the last day stored.
    max_active_runs=1,
    default_args=default_args,
    params={
        "tenant": Param(
            None,
            type=["null", "string"],
            pattern="^[A-Za-z0-9_-]{1,64}$",
            description="Tenant to run; empty uses the worker's ROIML_TENANT_ID.",
        )
    },
    tags=["roiml", "features"],
) as dag:
    shards = plan_shards()
    extract = BashOperator(task_id="extract_raw_data", bash_command=step_command("extract"))
    computed = [
        compute_features.override(task_id=f"{step}_features")
        .partial(step=step)
        .expand(shard=shards)
        for step in COMPUTE_STEPS
    ]
    validate = BashOperator(task_id="validate_features", bash_command=step_command("validate"))
    store = BashOperator(task_id="store_features", bash_command=step_command("store"))
    statistics = BashOperator(
        task_id="update_statistics", bash_command=step_command("update_statistics")
    )

    shards >> extract >> computed >> validate >> store >> statistics
