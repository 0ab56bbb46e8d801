"""Daily model monitoring as an Airflow 3 DAG: ``roiml monitor run`` for yesterday, then
``roiml monitor archive-predictions`` (the prediction log's retention).

Like the feature pipeline's DAG it imports nothing from roiml: the tasks shell out to the CLI
(``ROIML_CLI``, default ``roiml`` on the worker's PATH), which reads its own ``ROIML_*``
settings. The job writes one ``ml_monitoring`` row per model version and day, raises alerts
(database, log, webhook) and exits 0 whatever it finds; it fails only if it cannot run.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.providers.smtp.notifications.smtp import SmtpNotifier
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Param

DAG_ID = "model_monitoring_daily"

CLI = '"${ROIML_CLI:-roiml}"'
TENANT_ARG = "{% if params.tenant %} --tenant {{ params.tenant }}{% endif %}"
ALERT_EMAIL = (
    "{{ var.value.get('roiml_alert_email', '"
    + os.environ.get("ROIML_ALERT_EMAIL", "ml-alerts@example.com")
    + "') }}"
)
# The 04:00 run of day D has logical date D (cron timetable): it monitors day D-1, whose
# predictions are complete and whose features the 02:00 pipeline has stored.
MONITOR_COMMAND = f"{CLI} monitor run --date {{{{ macros.ds_add(ds, -1) }}}}{TENANT_ARG}"
# Then predictions older than the retention (400 days by default, never less than the longest
# horizon) leave ml_predictions for Parquet under the data dir; a rerun moves nothing twice.
ARCHIVE_COMMAND = f"{CLI} monitor archive-predictions{TENANT_ARG}"

default_args = {
    "owner": "ml-platform",
    "retries": 3,
    "retry_delay": timedelta(minutes=5),
    "on_failure_callback": SmtpNotifier(to=ALERT_EMAIL),
    "email_on_failure": True,
    "email_on_retry": False,
    "execution_timeout": timedelta(hours=1),
}

with DAG(
    dag_id=DAG_ID,
    description="Daily model monitoring: drift, realised and estimated performance, alerts.",
    schedule="0 4 * * *",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    params={
        "tenant": Param(
            None,
            type=["null", "string"],
            pattern="^[A-Za-z0-9_-]{1,64}$",
            description="Tenant to monitor; empty uses the worker's ROIML_TENANT_ID.",
        )
    },
    tags=["roiml", "monitoring"],
) as dag:
    monitor = BashOperator(task_id="monitor_models", bash_command=MONITOR_COMMAND)
    archive = BashOperator(task_id="archive_predictions", bash_command=ARCHIVE_COMMAND)
    monitor >> archive
