"""``roiml serve`` as a subprocess on a free port of 127.0.0.1, over a small trained world, and a
bounded load against it: what the fault tests (worker kill, full spool, unwritable journal, a
second instance) drive.

The world is :func:`model_world.build_world`'s (1,500 homeowners) with the four models trained
once per session, registered and promoted in its own MLflow store, and its last day in the
embedded online store: a template directory, copied for each server. Nothing here skips: a
server that does not come up fails the test (the CI rule for an unreachable service).
"""

from __future__ import annotations

import gc
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, func, select, text

from model_world import TENANT, WORLD_END, World
from roiml.db.engine import make_engine
from roiml.db.ml_tables import MLPrediction
from roiml.models.train import TrainingReport
from roiml.settings import Settings
from roiml.store.materialize import materialize_day
from roiml.store.online_sqlite import SqliteOnlineStore
from roiml.store.retrieval import FeatureStore

USERS = 1500
ROIML = str(Path(sys.executable).parent / "roiml")
ROUTE = "/v1/predict/move-probability"
# Everything a client must not learn from an error body.
INTERNALS = ("127.0.0.1", "prediction-buffer", "/tmp", "sqlite", "postgres", "Traceback")


@pytest.fixture(scope="session")
def served_template(
    model_world: World,
    trained_models: dict[str, TrainingReport],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """A data directory ``roiml serve`` can serve: the world, its last day online, and the
    four models registered and in production."""
    from roiml.registry import ModelRegistry  # MLflow imports take seconds

    template = tmp_path_factory.mktemp("served") / "data"
    shutil.copytree(model_world.settings.data_dir, template)
    settings = Settings(_env_file=None, data_dir=template, tenant_id=TENANT)
    engine = make_engine(settings.resolved_database_url)
    store = FeatureStore(
        engine, TENANT, settings.data_dir, SqliteOnlineStore(settings.online_store_path)
    )
    day = WORLD_END - timedelta(days=1)
    materialize_day(
        store,
        day,
        now=datetime.combine(day, datetime.min.time()) + timedelta(hours=2),
        on_time=True,
    )
    store.online.close()
    moment = datetime.combine(day, datetime.min.time())
    registry = ModelRegistry(settings, engine, TENANT, clock=lambda: moment)
    for report in trained_models.values():
        version = registry.register_model(report.trained.artifact, tags={"by": "fault tests"})
        registry.promote_model(report.trained.artifact.name, version.version, "production", "t")
    engine.dispose()
    return template


def free_port() -> int:
    """A port nothing listens on now (the server binds it a moment later)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """The environment of a server on ``data_dir``: the test's, less any ROIML_ setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROIML_")}
    env.update(
        ROIML_DATA_DIR=str(data_dir),
        ROIML_TENANT_ID=TENANT,
        ROIML_TODAY=WORLD_END.isoformat(),
        ROIML_ENVIRONMENT="development",
        ROIML_LOG_LEVEL="WARNING",
        ROIML_RATE_LIMIT_PER_MINUTE="10000000",
        ROIML_RATE_LIMIT_BURST="1000000",
        ROIML_PREDICTION_LOG_FLUSH_SECONDS="0.1",
    )
    env.update({f"ROIML_{k.upper()}": v for k, v in settings.items()})
    return env


@dataclass
class Server:
    """A running ``roiml serve``."""

    process: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    log_path: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def workers(self) -> list[int]:
        """The supervisor's worker processes (not its resource tracker)."""
        found = []
        for pid in _children(self.process.pid):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"spawn_main" in cmdline:
                found.append(pid)
        return sorted(found)

    def listening(self, pid: int) -> bool:
        """Whether ``pid`` holds a socket listening on the server's port."""
        return _listens(pid, self.port)

    def health(self) -> tuple[int, dict[str, Any]]:
        """/health's status and body; (0, {}) if the connection failed (a connection queued
        on a worker that was just killed is reset)."""
        try:
            response = httpx.get(f"{self.base}/health", timeout=10)
        except httpx.TransportError:
            _drop_reset_sockets()
            return 0, {}
        return response.status_code, response.json()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        return self.process.returncode


def start_server(
    data_dir: Path, *, workers: int = 2, port: int | None = None, **settings: str
) -> Server:
    """``roiml serve`` on ``data_dir``; returns once every worker listens and /health answers."""
    port = port or free_port()
    log_path = data_dir.parent / f"serve-{port}-{time.monotonic_ns()}.log"
    handle = log_path.open("wb")
    process = subprocess.Popen(
        [ROIML, "serve", "--port", str(port), "--workers", str(workers)],
        env=server_env(data_dir, **settings),
        cwd=data_dir.parent,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    handle.close()
    server = Server(process, port, data_dir, log_path)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"roiml serve exited with {process.returncode}:\n{server.output()[-3000:]}")
        pids = server.workers()
        if len(pids) == workers and all(server.listening(pid) for pid in pids):
            status, _ = server.health()
            if status:
                return server
        time.sleep(0.5)
    server.stop()
    pytest.fail(f"roiml serve did not come up in 240 s:\n{server.output()[-3000:]}")


@pytest.fixture
def serve_data_dir(served_template: Path, tmp_path: Path) -> Path:
    """A copy of the template for one test's server."""
    target = tmp_path / "data"
    shutil.copytree(served_template, target)
    return target


@pytest.fixture
def serve_processes() -> Iterator[list[Server]]:
    """Servers a test started, stopped at its end whatever happened."""
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


@dataclass
class LoadResult:
    """What a bounded load saw, request by request."""

    answered: list[str] = field(default_factory=list)  # prediction ids of 200s
    statuses: Counter[int] = field(default_factory=Counter)
    retry_after_503: int = 0
    bodies_503: list[str] = field(default_factory=list)
    transport_errors: int = 0

    @property
    def other_5xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500 and status != 503)


class Load:
    """``connections`` clients posting predictions back to back until stopped or ``limit``
    requests are sent; each keeps its connection alive, as a real client does."""

    def __init__(self, base: str, connections: int = 4, limit: int = 100_000) -> None:
        self.base = base
        self.connections = connections
        self.limit = limit
        self.result = LoadResult()
        self._sent = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, args=(i,), daemon=True)
            for i in range(connections)
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def sent(self) -> int:
        return self._sent

    def stop(self) -> LoadResult:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        _drop_reset_sockets()
        return self.result

    def _client(self, index: int) -> None:
        client = httpx.Client(base_url=self.base, timeout=30)
        try:
            while not self._stop.is_set() and self._request(client):
                pass
        finally:
            client.close()

    def _request(self, client: httpx.Client) -> bool:
        """One request; False once ``limit`` requests are sent."""
        result = self.result
        with self._lock:
            if self._sent >= self.limit:
                return False
            number = self._sent
            self._sent += 1
        body = {"entity_id": f"user_{number % USERS}", "entity_type": "USER"}
        try:
            response = client.post(ROUTE, json=body)
        except httpx.HTTPError:
            with self._lock:
                result.transport_errors += 1
            return True  # the client opens a new connection for the next one
        with self._lock:
            result.statuses[response.status_code] += 1
            if response.status_code == 200:
                result.answered.append(response.json()["prediction_id"])
            elif response.status_code == 503:
                if response.headers.get("retry-after"):
                    result.retry_after_503 += 1
                result.bodies_503.append(response.text)
        return True


def _drop_reset_sockets() -> None:
    # A connection the server reset (a killed worker's) can leave httpcore's socket to the
    # garbage collector, whose ResourceWarning the tests' warnings-as-errors would turn into an
    # error at the session's end: collected here, where the warning is expected.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def logged_ids(data_dir: Path) -> Counter[str]:
    """Every prediction id in the server's ``ml_predictions``, with how often it is there."""
    engine = create_engine(f"sqlite:///{data_dir / 'roiml.db'}")
    try:
        with engine.connect() as conn:
            ids = conn.execute(select(MLPrediction.prediction_id)).scalars().all()
    finally:
        engine.dispose()
    return Counter(ids)


def logged_count(data_dir: Path) -> int:
    engine = create_engine(f"sqlite:///{data_dir / 'roiml.db'}")
    try:
        with engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(MLPrediction)) or 0)
    finally:
        engine.dispose()


def wait_logged(data_dir: Path, answered: list[str], timeout: float = 60) -> tuple[float, int]:
    """Wait until every answered id is logged: seconds it took and how many never were."""
    started = time.monotonic()
    wanted = set(answered)
    missing = len(wanted)
    while time.monotonic() - started < timeout:
        missing = len(wanted - set(logged_ids(data_dir)))
        if missing == 0:
            break
        time.sleep(0.5)
    return time.monotonic() - started, missing


def refuse_log_writes(data_dir: Path, refuse: bool) -> None:
    """Make the database refuse (or take again) every ``ml_predictions`` insert, the way a
    database that is not taking writes does: an OperationalError, not a refused row."""
    engine = create_engine(f"sqlite:///{data_dir / 'roiml.db'}", connect_args={"timeout": 60})
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP TRIGGER IF EXISTS fault_refuse_log"))
            if refuse:
                conn.execute(
                    text(
                        "CREATE TRIGGER fault_refuse_log BEFORE INSERT ON ml_predictions "
                        "BEGIN INSERT INTO fault_no_such_table VALUES (1); END"
                    )
                )
    finally:
        engine.dispose()


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found.extend(int(p) for p in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def _listens(pid: int, port: int) -> bool:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            local, state, inode = parts[1], parts[3], parts[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{inode}]")
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        try:
            if str(fd.readlink()) in inodes:
                return True
        except OSError:
            continue
    return False
