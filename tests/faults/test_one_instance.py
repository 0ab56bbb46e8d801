"""One ``roiml serve`` per port: every worker binds with SO_REUSEPORT, so without a check a
second instance would start without an error and silently take a share of the connections."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from faults.api_process import (
    ROIML,
    Server,
    free_port,
    serve_data_dir,  # noqa: F401 (fixture)
    serve_processes,  # noqa: F401 (fixture)
    served_template,  # noqa: F401 (fixture)
    server_env,
    start_server,
)
from roiml.serving.server import AddressInUseError, claim_address, supervisor_status
from roiml.settings import Settings


def _second_serve(data_dir: Path, port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ROIML, "serve", "--port", str(port), "--workers", "2"],
        env=server_env(data_dir),
        cwd=data_dir.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_a_second_serve_on_a_served_port_refuses_to_start(
    serve_data_dir: Path,  # noqa: F811
    serve_processes: list[Server],  # noqa: F811
    served_template: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    server = start_server(serve_data_dir, workers=2)
    serve_processes.append(server)

    # The same deployment (same data directory): the lock says who holds the port.
    same = _second_serve(serve_data_dir, server.port)
    assert same.returncode != 0
    text = " ".join((same.stdout + same.stderr).split())
    assert f"already serves 127.0.0.1:{server.port}" in text, text
    assert "Traceback" not in text

    # Another data directory (another deployment's): the port itself is found taken.
    other = tmp_path / "other" / "data"
    shutil.copytree(served_template, other)
    elsewhere = _second_serve(other, server.port)
    assert elsewhere.returncode != 0
    text = " ".join((elsewhere.stdout + elsewhere.stderr).split())
    assert f"127.0.0.1:{server.port} is already served" in text, text

    # The first instance still has all its workers and answers.
    assert len(server.workers()) == 2
    assert httpx.get(f"{server.base}/health", timeout=10).status_code in (200, 503)


def test_claim_refuses_a_port_another_program_listens_on(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(AddressInUseError, match="is already served"):
            claim_address(settings, "127.0.0.1", port)


def test_claim_is_exclusive_per_data_directory_and_released(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")
    port = free_port()
    first = claim_address(settings, "127.0.0.1", port)
    with pytest.raises(AddressInUseError, match="already serves"):
        claim_address(settings, "127.0.0.1", port)
    first.release()
    claim_address(settings, "127.0.0.1", port).release()


def test_supervisor_status_is_read_from_the_parent_s_file(tmp_path: Path) -> None:
    """A worker reads what its supervisor (its parent process) last wrote; none without one."""
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")
    assert supervisor_status(settings) is None
    settings.data_dir.mkdir(parents=True)
    state = {"workers": 2, "alive": 1, "restarting": 1, "restarts": 1, "last_exit": None}
    (settings.data_dir / f"serve-supervisor-{os.getppid()}.json").write_text(json.dumps(state))
    assert supervisor_status(settings) == state


def test_health_reads_a_siblings_death_from_the_supervisor() -> None:
    """A worker's /health is degraded, naming ``workers``, while a sibling is dead or died in
    the last minute; one process (no supervisor) and every worker alive are ok."""
    from roiml.serving.health import _workers, public_health
    from roiml.serving.schemas import ServiceHealth

    now = 1_000_000.0
    assert _workers(None, now) == ("one process", True)
    assert _workers({"workers": 2, "alive": 2, "last_exit": None}, now) == ("2 of 2 alive", True)
    died = {"worker": 1, "pid": 42, "exit": "signal SIGKILL", "at": now - 4}
    line, ok = _workers({"workers": 2, "alive": 2, "last_exit": died}, now)
    assert not ok and "worker 1 (pid 42) died 4 s ago: signal SIGKILL" in line
    assert _workers({"workers": 2, "alive": 1, "last_exit": None}, now)[1] is False
    old = {**died, "at": now - 120}
    assert _workers({"workers": 2, "alive": 2, "last_exit": old}, now) == ("2 of 2 alive", True)

    report = ServiceHealth(
        status="degraded",
        database="ok",
        redis="ok",
        registry="ok",
        prediction_log={"state": "ok"},
        models={},
        workers=line,
        workers_ok=False,
    )
    public = public_health(report)
    assert public.status == "degraded" and public.failing == ["workers"]
