"""A worker SIGKILLed under load: every prediction it answered is logged once, and the
supervisor starts a new worker within a few seconds.

The figures go to docs/API.md (Faults, prediction log); ``-s`` prints them.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from faults.api_process import (
    Load,
    Server,
    logged_ids,
    serve_data_dir,  # noqa: F401 (fixture)
    serve_processes,  # noqa: F401 (fixture)
    served_template,  # noqa: F401 (fixture)
    start_server,
    wait_logged,
)

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(600)]


def test_a_killed_worker_loses_no_logged_prediction_and_comes_back(
    serve_data_dir: Path,  # noqa: F811
    serve_processes: list[Server],  # noqa: F811
) -> None:
    data_dir = serve_data_dir
    server = start_server(data_dir, workers=2)
    serve_processes.append(server)
    before = server.workers()
    assert len(before) == 2

    with Load(server.base, connections=4, limit=3000) as load:
        while load.sent < 300:
            time.sleep(0.05)
        victim = before[0]
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        restarted = listening = None
        health_during: list[tuple[int, object]] = []
        while time.monotonic() - killed_at < 120:
            now = server.workers()
            fresh = [pid for pid in now if pid not in before]
            if fresh and restarted is None:
                restarted = time.monotonic() - killed_at
            if fresh and server.listening(fresh[0]):
                listening = time.monotonic() - killed_at
                break
            if len(health_during) < 3:
                status, body = server.health()
                health_during.append((status, body.get("prediction_log", {}).get("state")))
            time.sleep(0.1)
        while load.sent < 1500 and time.monotonic() - killed_at < 120:
            time.sleep(0.1)
    result = load.result
    seconds, missing = wait_logged(data_dir, result.answered, timeout=60)
    logged = logged_ids(data_dir)
    duplicated = sum(1 for n in logged.values() if n > 1)
    status, health = server.health()
    print(
        f"\nworker kill: answered={len(result.answered)} statuses={dict(result.statuses)} "
        f"transport_errors={result.transport_errors} other_5xx={result.other_5xx} "
        f"503_retry_after={result.retry_after_503} answered_not_logged={missing} "
        f"duplicated={duplicated} logged_not_answered={len(set(logged) - set(result.answered))} "
        f"new_worker_pid_after={restarted} new_worker_listening_after={listening} "
        f"all_logged_after={seconds:.1f}s health_during={health_during} "
        f"health_after={status} {health.get('prediction_log', {}).get('state')} "
        f"workers={health.get('workers')}"
    )
    assert restarted is not None and restarted < 5, server.output()[-3000:]
    assert listening is not None, server.output()[-3000:]
    assert len(server.workers()) == 2
    assert "exited with signal SIGKILL" in server.output()
    # What a worker's /health can read of its siblings (roiml.serving.server.supervisor_status).
    state = json.loads((data_dir / f"serve-supervisor-{server.process.pid}.json").read_text())
    assert state["workers"] == state["alive"] == 2
    assert state["restarts"] == 1
    assert state["last_exit"]["exit"] == "signal SIGKILL"
    assert state["last_exit"]["pid"] == victim
    assert len(result.answered) > 500
    assert missing == 0
    assert duplicated == 0
    assert result.other_5xx == 0
    # Either worker's /health tells of the death for a minute (degraded, 503), then is ok.
    if time.monotonic() - killed_at < 55:
        assert status == 503, health
        assert health["workers_ok"] is False and "died" in health["workers"], health
        assert "signal SIGKILL" in health["workers"], health
    else:
        assert status == 200, health


def test_a_single_worker_is_supervised_too(
    serve_data_dir: Path,  # noqa: F811
    serve_processes: list[Server],  # noqa: F811
) -> None:
    """`--workers 1` (the demo's) is supervised like several: a SIGKILLed worker comes back and
    answers, and /health tells of the death meanwhile."""
    server = start_server(serve_data_dir, workers=1)
    serve_processes.append(server)
    (victim,) = server.workers()
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    fresh: list[int] = []
    while time.monotonic() - killed_at < 120:
        fresh = [pid for pid in server.workers() if pid != victim]
        if fresh and server.listening(fresh[0]):
            break
        time.sleep(0.1)
    assert fresh and server.listening(fresh[0]), server.output()[-3000:]
    assert "exited with signal SIGKILL" in server.output()
    status, health = server.health()
    if time.monotonic() - killed_at < 55:
        assert status == 503 and "died" in health["workers"], health
    answer = httpx.post(f"{server.base}/v1/predict/move-probability", json={"entity_id": "user_1"})
    assert answer.status_code == 200, answer.text
