"""The Airflow DAG (dags/feature_pipeline_dag.py), checked inside its own virtual environment.

Airflow's dependency pins must never meet the project's, so this module (run by .venv's pytest)
imports nothing from Airflow: scripts/airflow_env.sh builds or reuses .venv-airflow from
requirements-airflow.txt, and every check runs there as a subprocess that prints one JSON line.
The end-to-end check runs ``airflow dags test`` on SQLite against a small world made here, with
the tasks calling this venv's real ``roiml pipeline step`` through ``ROIML_CLI``.

``ROIML_SKIP_AIRFLOW=1`` skips the module locally; under ``CI=true`` it never skips.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from roiml.db.engine import make_engine
from roiml.pipeline.runs import list_runs

# Slow: a first run builds .venv-airflow (about 10 s with uv, 35 s with pip) before the checks.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW_PYTHON = ROOT / ".venv-airflow" / "bin" / "python"
ROIML_CLI = Path(sys.executable).with_name("roiml")
DAG_ID = "feature_engineering_daily"
MONITOR_DAG_ID = "model_monitoring_daily"
RUN_DAY = "2024-12-30"
SHARDS = 2
TENANT = "airflow_dag_test"
COMPUTE_TASKS = [
    f"compute_{name}_features"
    for name in ("behavioral", "property", "market", "transactional", "temporal")
]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
MARKER = "ROIML-JSON "

# Runs inside .venv-airflow: what the DagBag makes of the dags folder, as one JSON line.
INSPECT_DAG = textwrap.dedent(
    """
    import importlib.util, json
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder="{dags}")
    facts = {{
        "import_errors": {{str(k): str(v) for k, v in bag.import_errors.items()}},
        "dag_ids": sorted(bag.dag_ids),
        "roiml_importable": importlib.util.find_spec("roiml") is not None,
    }}
    dag = bag.dags.get("{dag_id}")
    if dag is not None:
        facts["schedule"] = str(dag.schedule)
        facts["timetable"] = type(dag.timetable).__name__
        facts["timezone"] = str(dag.timezone)
        facts["catchup"] = dag.catchup
        facts["tasks"] = {{}}
        for task in dag.tasks:
            callbacks = task.on_failure_callback or []  # a mapped task keeps it unlisted
            callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
            mapped = bool(getattr(task, "is_mapped", False))
            # A @task's mapped arguments live apart from an operator's.
            expanded = (
                getattr(task, "op_kwargs_expand_input", None) or task.expand_input
            ).value if mapped else {{}}
            facts["tasks"][task.task_id] = {{
                "upstream": sorted(task.upstream_task_ids),
                "downstream": sorted(task.downstream_task_ids),
                "mapped": mapped,
                "expand": {{
                    key: getattr(getattr(arg, "operator", None), "task_id", repr(arg))
                    for key, arg in expanded.items()
                }},
                "retries": task.retries,
                "retry_delay_s": task.retry_delay.total_seconds(),
                "email_on_failure": task.email_on_failure,
                "execution_timeout_s": task.execution_timeout.total_seconds(),
                "failure_notifiers": [type(c).__name__ for c in callbacks],
                "alert_to": [str(getattr(c, "to", "")) for c in callbacks],
                "bash_command": None if mapped else getattr(task, "bash_command", None),
                "step": (task.partial_kwargs.get("op_kwargs") or {{}}).get("step")
                if mapped else None,
            }}
    print("{marker}" + json.dumps(facts))
    """
)

# Runs inside .venv-airflow after `airflow dags test`: the runs and task instances recorded.
INSPECT_RUNS = textwrap.dedent(
    """
    import json
    from sqlalchemy import select
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    runs = []
    with create_session() as session:
        for run in session.scalars(select(DagRun).where(DagRun.dag_id == "{dag_id}")):
            instances = session.scalars(
                select(TaskInstance).where(
                    TaskInstance.dag_id == run.dag_id, TaskInstance.run_id == run.run_id
                )
            )
            runs.append({{
                "logical_date": run.logical_date.date().isoformat(),
                "state": str(run.state),
                "tasks": sorted(
                    [ti.task_id, ti.map_index, str(ti.state), ti.rendered_map_index]
                    for ti in instances
                ),
            }})
    print("{marker}" + json.dumps(runs))
    """
)


def _clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without its ROIML_* and AIRFLOW* settings, plus ``extra``.

    The run must use the embedded default and a throwaway Airflow home whatever the developer's
    shell has set (a ROIML_REDIS_URL or an AIRFLOW_HOME would otherwise leak in).
    """
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("ROIML_", "AIRFLOW"))
    }
    env.update(extra)
    return env


def _json_line(output: str) -> Any:
    for line in output.splitlines():
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER) :])
    raise AssertionError(f"no {MARKER.strip()} line in the output:\n{output[-4000:]}")


def _airflow_python(script: str, env: dict[str, str], cwd: Path) -> Any:
    done = subprocess.run(
        [str(AIRFLOW_PYTHON), "-c", script],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"exit {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr}"
    return _json_line(done.stdout)


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a ready .venv-airflow with a fresh, migrated SQLite Airflow home."""
    if os.environ.get("ROIML_SKIP_AIRFLOW") == "1" and not IN_CI:
        pytest.skip("ROIML_SKIP_AIRFLOW=1")
    home = tmp_path_factory.mktemp("airflow-home")
    env = _clean_env(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
    )
    # Idempotent: builds .venv-airflow only when missing or stale, then migrates this home.
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "airflow_env.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, f"airflow_env.sh failed:\n{done.stdout}\n{done.stderr}"
    assert AIRFLOW_PYTHON.exists()
    return env


@pytest.fixture(scope="module")
def dag_facts(airflow_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Any:
    script = INSPECT_DAG.format(dags=ROOT / "dags", dag_id=DAG_ID, marker=MARKER)
    return _airflow_python(script, airflow_env, tmp_path_factory.mktemp("inspect"))


def test_dag_folder_imports_without_errors(dag_facts: Any) -> None:
    assert dag_facts["import_errors"] == {}
    assert dag_facts["dag_ids"] == sorted([DAG_ID, MONITOR_DAG_ID])


@pytest.fixture(scope="module")
def monitor_facts(airflow_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Any:
    script = INSPECT_DAG.format(dags=ROOT / "dags", dag_id=MONITOR_DAG_ID, marker=MARKER)
    return _airflow_python(script, airflow_env, tmp_path_factory.mktemp("inspect-monitor"))


def test_monitoring_dag_runs_roiml_monitor_daily_for_yesterday(monitor_facts: Any) -> None:
    assert monitor_facts["import_errors"] == {}
    assert monitor_facts["schedule"] == "0 4 * * *"
    assert monitor_facts["timezone"] == "UTC"
    assert monitor_facts["catchup"] is False
    task = monitor_facts["tasks"]["monitor_models"]
    assert set(monitor_facts["tasks"]) == {"monitor_models", "archive_predictions"}
    assert task["retries"] == 3
    assert task["failure_notifiers"] == ["SmtpNotifier"]
    command = task["bash_command"]
    assert shlex.split(command)[1:4] == ["monitor", "run", "--date"]
    assert "--date {{ macros.ds_add(ds, -1) }}" in command
    # Retention runs after the day is monitored, never before.
    archive = monitor_facts["tasks"]["archive_predictions"]
    assert archive["upstream"] == ["monitor_models"]
    before_tenant = archive["bash_command"].split("{%")[0]  # the optional --tenant template
    assert shlex.split(before_tenant)[1:] == ["monitor", "archive-predictions"]
    assert archive["retries"] == 3
    assert archive["failure_notifiers"] == ["SmtpNotifier"]


def test_airflow_env_does_not_hold_the_project(dag_facts: Any) -> None:
    assert dag_facts["roiml_importable"] is False


def test_schedule_is_daily_at_two_utc_without_catchup(dag_facts: Any) -> None:
    assert dag_facts["schedule"] == "0 2 * * *"
    assert dag_facts["timetable"] == "CronTriggerTimetable"
    assert dag_facts["timezone"] == "UTC"
    assert dag_facts["catchup"] is False


def test_every_task_has_the_default_args(dag_facts: Any) -> None:
    for task_id, task in dag_facts["tasks"].items():
        assert task["retries"] == 3, task_id
        assert task["retry_delay_s"] == 300, task_id
        assert task["email_on_failure"] is True, task_id
        assert task["execution_timeout_s"] == 7200, task_id
        assert task["failure_notifiers"] == ["SmtpNotifier"], task_id
        assert "roiml_alert_email" in task["alert_to"][0], task_id


def test_task_graph(dag_facts: Any) -> None:
    tasks = dag_facts["tasks"]
    assert set(tasks) == {
        "plan_shards",
        "extract_raw_data",
        *COMPUTE_TASKS,
        "validate_features",
        "store_features",
        "update_statistics",
    }
    assert tasks["extract_raw_data"]["upstream"] == ["plan_shards"]
    assert set(tasks["extract_raw_data"]["downstream"]) == set(COMPUTE_TASKS)
    for task_id in COMPUTE_TASKS:
        assert tasks[task_id]["upstream"] == ["extract_raw_data", "plan_shards"]
        assert tasks[task_id]["downstream"] == ["validate_features"]
    assert tasks["validate_features"]["upstream"] == sorted(COMPUTE_TASKS)
    assert tasks["validate_features"]["downstream"] == ["store_features"]
    assert tasks["store_features"]["downstream"] == ["update_statistics"]
    assert tasks["update_statistics"]["downstream"] == []


def test_compute_tasks_are_mapped_over_shards(dag_facts: Any) -> None:
    tasks = dag_facts["tasks"]
    for task_id in COMPUTE_TASKS:
        assert tasks[task_id]["mapped"] is True, task_id
        assert tasks[task_id]["expand"] == {"shard": "plan_shards"}, task_id
        assert tasks[task_id]["step"] == task_id.removesuffix("_features"), task_id
    unmapped = set(tasks) - set(COMPUTE_TASKS)
    assert not any(tasks[task_id]["mapped"] for task_id in unmapped)


def test_steps_call_the_cli(dag_facts: Any) -> None:
    steps = {
        "extract_raw_data": "extract",
        "validate_features": "validate",
        "store_features": "store",
        "update_statistics": "update_statistics",
    }
    for task_id, step in steps.items():
        command = dag_facts["tasks"][task_id]["bash_command"]
        assert command.startswith(
            f'"${{ROIML_CLI:-roiml}}" pipeline step {step} --date {{{{ ds }}}}'
        )


@pytest.fixture(scope="module")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """ROIML_* settings of a 300-user world on the embedded default (SQLite, files)."""
    workdir = tmp_path_factory.mktemp("world")
    data_dir = workdir / "data"
    settings = {
        "ROIML_DATA_DIR": str(data_dir),
        "ROIML_DATABASE_URL": f"sqlite:///{data_dir / 'roiml.db'}",
        "ROIML_TENANT_ID": TENANT,
    }
    for command in (
        "db upgrade",
        "world generate --users 300 --start 2024-06-01 --end 2024-12-31 --seed 1",
    ):
        done = subprocess.run(
            [str(ROIML_CLI), *shlex.split(command)],
            env=_clean_env(**settings),
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, f"roiml {command}:\n{done.stdout}\n{done.stderr}"
    return settings


def _run_until_settled(command: list[str], env: dict[str, str], cwd: Path, log: Path) -> int:
    """Run ``airflow dags test``, stopping it as soon as a task fails.

    With retries=3 and a 5-minute delay a failing step would keep `dags test` waiting for
    15 minutes; the first failed try is already the answer.
    """
    deadline = 480

    def stop(pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)

    with (
        log.open("w") as sink,
        subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        ) as process,
    ):
        timer = threading.Timer(deadline, stop, (process.pid,))
        timer.start()
        try:
            assert process.stdout is not None
            for line in process.stdout:
                sink.write(line)
                if "new_state=up_for_retry" in line or "new_state=failed" in line:
                    stop(process.pid)
                    break
        finally:
            timer.cancel()
            process.wait()
    return process.returncode


def test_dags_test_runs_to_success_with_the_real_cli(
    airflow_env: dict[str, str], small_world: dict[str, str], tmp_path: Path
) -> None:
    assert ROIML_CLI.exists(), f"{ROIML_CLI} is missing"
    env = {
        **airflow_env,
        **small_world,
        "ROIML_CLI": str(ROIML_CLI),
        "ROIML_PIPELINE_SHARDS": str(SHARDS),
    }
    log = tmp_path / "dags-test.log"
    started = time.monotonic()
    code = _run_until_settled(
        [str(AIRFLOW_PYTHON.with_name("airflow")), "dags", "test", DAG_ID, RUN_DAY],
        env,
        tmp_path,
        log,
    )
    output = log.read_text()
    failure = [
        line
        for line in output.splitlines()
        if "error" in line.lower() or "failed" in line.lower() or "Traceback" in line
    ]
    assert code == 0, (
        f"airflow dags test exited {code} after {time.monotonic() - started:.0f} s; "
        "lines mentioning errors:\n" + "\n".join(failure[-40:])
    )

    runs = _airflow_python(INSPECT_RUNS.format(dag_id=DAG_ID, marker=MARKER), env, tmp_path)
    assert [(run["logical_date"], run["state"]) for run in runs] == [(RUN_DAY, "success")]
    instances = runs[0]["tasks"]
    assert all(state == "success" for _, _, state, _ in instances), instances
    shards = [f"{index}/{SHARDS}" for index in range(SHARDS)]
    for task_id in COMPUTE_TASKS:
        ran = sorted(label for name, _, _, label in instances if name == task_id)
        assert ran == shards, (task_id, ran)

    # The project's side of the same run: every step (and shard) recorded as a success.
    engine = make_engine(small_world["ROIML_DATABASE_URL"])
    try:
        records = list_runs(engine, TENANT, limit=100)
    finally:
        engine.dispose()
    recorded = sorted(
        (record.step, record.shard or "", record.outcome)
        for record in records
        if record.run_date.date() == date.fromisoformat(RUN_DAY)
    )
    expected = sorted(
        [(step, "", "SUCCESS") for step in ("extract", "validate", "store", "update_statistics")]
        + [
            (task_id.removesuffix("_features"), shard, "SUCCESS")
            for task_id in COMPUTE_TASKS
            for shard in shards
        ]
    )
    assert recorded == expected
