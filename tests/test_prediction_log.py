"""The prediction log: batches into ml_predictions, spools while the database is away, replays
once it is back, isolates rows the table refuses, refuses new work when its disk bound is hit.

The key test stops a private PostgreSQL (``pg_ctl stop -m immediate``) in the middle of a steady
load and checks that every prediction submitted ends up in ml_predictions exactly once.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import orjson
import pytest
from sqlalchemy import Engine, delete, event, func, select

from roiml.db.engine import make_engine
from roiml.db.migrate import upgrade
from roiml.db.ml_tables import MLPrediction
from roiml.db.roles import grant_app_role
from roiml.errors import PredictionLogFullError
from roiml.serving.prediction_log import PredictionLog, PredictionLogRefusedError
from roiml.settings import Settings

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
T0 = datetime(2024, 3, 1, 12, 0, 0, 123456)
TENANTS = ("t_alpha", "t_beta", "t_gamma")


def record(tenant: str, prediction_id: str, **changes: Any) -> dict[str, Any]:
    """A record as the API builds it."""
    row: dict[str, Any] = {
        "prediction_id": prediction_id,
        "tenant_id": tenant,
        "model_name": "move_probability",
        "model_version": "3",
        "prediction_type": "MOVE_PROBABILITY",
        "entity_type": "USER",
        "entity_id": f"u-{prediction_id}",
        "features": {"tenure_days": 812.0, "email_opens_30d": None},
        "feature_source": "online",
        "predicted_value": 0.42,
        "predicted_class": None,
        "probabilities": None,
        "confidence": 0.84,
        "shap_values": {"tenure_days": 0.11, "_base": 0.3},
        "latency_ms": 1.7,
        "as_of_date": None,
        "predicted_at": T0,
    }
    row.update(changes)
    return row


def records(n: int, prefix: str = "p", start: int = 0) -> list[dict[str, Any]]:
    return [record(TENANTS[i % 2], f"{prefix}{i}") for i in range(start, start + n)]


def prediction_ids(engine: Engine) -> list[str]:
    """Every prediction id in the table (SQLite, or a PostgreSQL owner: no RLS)."""
    with engine.connect() as conn:
        return list(conn.execute(select(MLPrediction.prediction_id)).scalars())


def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.02)


def writer_is_asleep(log: PredictionLog) -> bool:
    """The log's writer thread waits on its condition, having found no work under the lock."""
    frame = sys._current_frames().get(log._thread.ident or -1)
    return (
        frame is not None
        and frame.f_code is threading.Condition.wait.__code__
        and frame.f_back is not None
        and frame.f_back.f_code.co_name == "_wait_for_work"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def configure(settings: Settings) -> Callable[..., Settings]:
    """The test's settings with prediction-log fields changed."""

    def build(**changes: Any) -> Settings:
        return settings.model_copy(update=changes)

    return build


@pytest.fixture
def open_log() -> Iterator[Callable[..., PredictionLog]]:
    """Opens prediction logs and closes whatever a test left open."""
    opened: list[PredictionLog] = []

    def build(settings: Settings, engine: Engine, **kwargs: Any) -> PredictionLog:
        log = PredictionLog(settings, engine, **kwargs)
        opened.append(log)
        return log

    yield build
    for log in opened:
        log.close()


@pytest.fixture
def dead_engine() -> Iterator[Engine]:
    """A PostgreSQL engine pointing at a port nobody listens on: the database is down."""
    engine = make_engine(f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere")
    yield engine
    engine.dispose()


def spool_segments(settings: Settings) -> list[Path]:
    """Legacy spool segments and journals that still hold records."""
    directory = settings.prediction_buffer_dir
    found = [*directory.glob("seg-*.jsonl"), *directory.glob("journal-*.jsonl")]
    return sorted(path for path in found if path.stat().st_size > 0)


# --------------------------------------------------------------------------- SQLite


def test_batches_one_multirow_insert_per_tenant_per_batch(
    configure: Callable[..., Settings],
    sqlite_engine: Engine,
    open_log: Callable[..., PredictionLog],
) -> None:
    cfg = configure(prediction_log_batch_size=250, prediction_log_flush_seconds=30.0)
    inserts: list[int] = []
    commits: list[int] = []

    @event.listens_for(sqlite_engine, "before_cursor_execute")
    def _count(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, _many: bool) -> None:
        if statement.startswith("INSERT INTO ml_predictions"):
            inserts.append(len(params))

    event.listen(sqlite_engine, "commit", lambda _conn: commits.append(1))
    log = open_log(cfg, sqlite_engine)

    sent = records(1000)
    for offset in range(0, len(sent), 10):
        log.submit(sent[offset : offset + 10])
    assert log.flush(timeout=60)

    assert sorted(prediction_ids(sqlite_engine)) == sorted(r["prediction_id"] for r in sent)
    # 4 batches of 250, two tenants each: 8 transactions, each one multi-row INSERT.
    assert len(commits) == 8
    assert len(inserts) == 8
    columns = len(MLPrediction.__table__.columns)
    assert all(n == 125 * columns for n in inserts)  # 125 rows x every column per statement
    # What a submit costs (the hot path only appends to a queue): python -m bench fail-fast.

    stats = log.stats()
    assert stats["written_total"] == 1000
    assert stats["queued"] == 0
    assert stats["failed_batches"] == 0
    assert stats["database_ok"] is True
    assert all(isinstance(v, float | int | str | bool | type(None)) for v in stats.values())

    with sqlite_engine.connect() as conn:
        row = conn.execute(select(MLPrediction).where(MLPrediction.prediction_id == "p7")).one()
        nulls = conn.scalar(
            select(func.count())
            .select_from(MLPrediction)
            .where(MLPrediction.probabilities.is_(None))  # SQL NULL, not JSON 'null'
        )
    assert row.features == {"tenure_days": 812.0, "email_opens_30d": None}
    assert row.predicted_at == T0
    assert row.tenant_id == TENANTS[1]
    assert nulls == 1000


def test_flush_seconds_bounds_the_wait_of_a_small_batch(
    configure: Callable[..., Settings],
    sqlite_engine: Engine,
    open_log: Callable[..., PredictionLog],
) -> None:
    log = open_log(
        configure(prediction_log_batch_size=500, prediction_log_flush_seconds=0.1), sqlite_engine
    )
    log.submit(records(3))
    wait_until(lambda: len(prediction_ids(sqlite_engine)) == 3)
    # A record without predicted_at gets the time it was taken from the queue.
    log.submit([{k: v for k, v in record("t_alpha", "no-time").items() if k != "predicted_at"}])
    assert log.flush(timeout=60)
    with sqlite_engine.connect() as conn:
        at = conn.scalar(
            select(MLPrediction.predicted_at).where(MLPrediction.prediction_id == "no-time")
        )
    assert at is not None and at > T0


def test_a_full_batch_submitted_without_wake_waits_for_wake(
    configure: Callable[..., Settings],
    sqlite_engine: Engine,
    open_log: Callable[..., PredictionLog],
) -> None:
    """The batch route submits with ``wake=False`` and wakes the writer once its response is
    sent: until then a full batch stays queued (the flush interval is long here)."""
    log = open_log(
        configure(prediction_log_batch_size=10, prediction_log_flush_seconds=30.0), sqlite_engine
    )
    log.submit(records(1, prefix="first"))
    assert log.flush(timeout=60)
    # The writer goes back to sleep, until woken or 30 s pass: wait until it does, so that it
    # saw an empty queue and only a wake can send it to the 25 records below.
    wait_until(lambda: writer_is_asleep(log))
    log.submit(records(25), wake=False)
    # Not a race to win: a window in which a wrong wake would show (the test cannot fail for
    # being slow, only miss a wrong wake if the writer takes longer than this to act on it).
    time.sleep(0.3)
    assert prediction_ids(sqlite_engine) == ["first0"]
    log.wake()
    wait_until(lambda: len(prediction_ids(sqlite_engine)) >= 21, timeout=20)
    assert log.flush(timeout=60)
    assert len(prediction_ids(sqlite_engine)) == 26


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_nan_in_json_columns_is_written_as_null(
    backend: str,
    configure: Callable[..., Settings],
    request: pytest.FixtureRequest,
    open_log: Callable[..., PredictionLog],
) -> None:
    """A NaN feature (a model input missing as NaN rather than None) is stored as JSON null:
    the json module would write the bare token NaN, which PostgreSQL's JSONB refuses."""
    engine: Engine = request.getfixturevalue(f"{backend}_engine")
    prediction_id = f"nan-{backend}-{time.monotonic_ns()}"
    nan = float("nan")
    row = record("t_alpha", prediction_id, features={"a": nan, "b": 1.5}, shap_values={"a": nan})
    log = open_log(configure(prediction_log_flush_seconds=0.05), engine)
    log.submit([row])
    assert log.flush(timeout=60)
    assert log.stats()["failed_batches"] == 0
    with engine.connect() as conn:
        stored = conn.execute(
            select(MLPrediction.features, MLPrediction.shap_values).where(
                MLPrediction.prediction_id == prediction_id
            )
        ).one()
    assert stored.features == {"a": None, "b": 1.5}
    assert stored.shap_values == {"a": None}


def test_replay_is_idempotent(
    configure: Callable[..., Settings],
    sqlite_engine: Engine,
    dead_engine: Engine,
    open_log: Callable[..., PredictionLog],
) -> None:
    cfg = configure(prediction_log_batch_size=100, prediction_log_flush_seconds=0.05)
    first = open_log(cfg, sqlite_engine)
    first.submit(records(30))
    assert first.flush(timeout=60)
    # The same records again, one twice within a batch: skipped, and the batch does not fail.
    first.submit([*records(30), records(1)[0], *records(10, start=30)])
    assert first.flush(timeout=60)
    assert first.stats()["duplicates_total"] == 31
    first.close()

    # A spool holding rows already written (the commit landed but its answer was lost).
    down = open_log(cfg, dead_engine)
    down.submit(records(50))
    assert down.flush(timeout=60)
    down.close()
    assert down.stats()["queued"] == 50

    again = open_log(cfg, sqlite_engine)
    wait_until(lambda: again.stats()["spooled_bytes"] == 0)
    ids = prediction_ids(sqlite_engine)
    assert sorted(ids) == sorted(f"p{i}" for i in range(50))
    stats = again.stats()
    assert stats["failed_batches"] == 0
    assert stats["written_total"] == 10
    assert stats["duplicates_total"] == 40
    assert stats["replayed_files"] == 1
    assert spool_segments(cfg) == []


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_poison_rows_are_isolated_and_kept(
    backend: str,
    configure: Callable[..., Settings],
    request: pytest.FixtureRequest,
    open_log: Callable[..., PredictionLog],
) -> None:
    """PostgreSQL's batch is one JSON array the server expands: a refused row still fails
    only itself, and a prediction id twice in one batch is a duplicate, not a failed batch."""
    sqlite_engine: Engine = request.getfixturevalue(f"{backend}_engine")
    with sqlite_engine.begin() as conn:  # the PostgreSQL database is the session's
        conn.execute(delete(MLPrediction))
    cfg = configure(prediction_log_batch_size=100, prediction_log_flush_seconds=0.05)
    log = open_log(cfg, sqlite_engine)
    good = records(15)
    bad: list[Any] = [
        record("t_alpha", "bad-enum", prediction_type="NOT_A_MODEL"),  # CHECK / enum
        record("t_alpha", "bad-null", model_name=None),  # NOT NULL
        record("t_beta", "bad-json", features={"x": object()}),  # JSON cannot: kept at submit
        record("t_beta", "bad-column", surprise=1),  # no such column
        "not a record",
    ]
    log.submit([*good[:7], *bad, *good[7:]])
    assert log.flush(timeout=60)

    assert sorted(prediction_ids(sqlite_engine)) == sorted(r["prediction_id"] for r in good)
    rejected_files = list(cfg.prediction_buffer_dir.glob("rejected-*.jsonl"))
    assert len(rejected_files) == 1
    lines = [orjson.loads(line) for line in rejected_files[0].read_bytes().splitlines()]
    assert len(lines) == 5
    assert all(line["error"] and "rejected_at" in line for line in lines)
    kept = {
        line["record"]["prediction_id"] if isinstance(line["record"], dict) else line["record"]
        for line in lines
    }
    assert kept == {"bad-enum", "bad-null", "bad-json", "bad-column", "not a record"}
    stats = log.stats()
    assert stats["rejected_total"] == 5
    assert stats["written_total"] == 15
    assert stats["database_ok"] is True

    # The log goes on: nothing is stuck behind the refused rows.
    log.submit(records(5, start=100))
    assert log.flush(timeout=60)
    assert len(prediction_ids(sqlite_engine)) == 20
    assert log.stats()["queued"] == 0
    # A replayed record beside its own duplicate in one batch: both skipped, the batch written.
    log.submit([*records(2, start=100), records(1, start=200)[0], records(1, start=200)[0]])
    assert log.flush(timeout=60)
    assert len(prediction_ids(sqlite_engine)) == 21
    assert log.stats()["duplicates_total"] == 3
    assert log.stats()["failed_batches"] == stats["failed_batches"]


def test_spool_bound_refuses_with_503_and_loses_nothing(
    configure: Callable[..., Settings],
    sqlite_engine: Engine,
    dead_engine: Engine,
    open_log: Callable[..., PredictionLog],
) -> None:
    """With the database away, the journals of every log on the directory share the bound; a
    refusal is an HTTP 503 with Retry-After whose message names no host, port or path."""
    cfg = configure(
        prediction_log_batch_size=100,
        prediction_log_flush_seconds=0.05,
        prediction_log_buffer_max_mb=1,
    )
    # Two logs on one directory, as two workers are.
    logs = [open_log(cfg, dead_engine), open_log(cfg, dead_engine)]
    for index, log in enumerate(logs):
        log.submit(records(1, prefix=f"first{index}-"))
        wait_until(lambda log=log: log.stats()["database_ok"] is False)
    accepted = [f"first{index}-0" for index in range(2)]
    wide = {f"feature_{k}": k * 0.5 for k in range(40)}  # about 1.4 kB a record
    refused: PredictionLogRefusedError | None = None
    for call in range(2000):
        batch = [record(TENANTS[i % 3], f"b{call}-{i}", features=wide) for i in range(10)]
        try:
            logs[call % 2].submit(batch)
        except PredictionLogRefusedError as exc:
            refused = exc
            break
        accepted.extend(r["prediction_id"] for r in batch)
    assert refused is not None
    assert isinstance(refused, PredictionLogFullError)
    assert refused.status_code == 503
    assert refused.headers is not None and int(refused.headers["Retry-After"]) >= 1
    message = str(refused)
    assert "Retry" in message
    assert str(cfg.prediction_buffer_dir) not in message and "127.0.0.1" not in message
    assert "buffer" in message
    for log in logs:
        health = log.health()
        assert health["state"] == "refusing"
        assert health["database_writes"] == "failing"
        assert 0 < int(health["spool_bytes"] or 0) <= 1024 * 1024
        assert health["spool_max_bytes"] == 1024 * 1024
        with pytest.raises(PredictionLogFullError):
            log.submit([record("t_alpha", f"late{i}", features=wide) for i in range(10)])
        log.close()

    replay = open_log(cfg, sqlite_engine)
    wait_until(lambda: replay.stats()["spooled_bytes"] == 0)
    ids = prediction_ids(sqlite_engine)
    assert len(ids) == len(accepted)
    assert set(ids) == set(accepted)
    assert replay.health()["state"] == "ok"


def test_an_unwritable_journal_refuses_then_recovers_without_a_restart(
    configure: Callable[..., Settings],
    sqlite_engine: Engine,
    open_log: Callable[..., PredictionLog],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A disk that refuses writes (read-only, full) makes submit refuse and /health say so;
    once it takes writes again, the same log serves and writes without a restart."""
    cfg = configure(prediction_log_flush_seconds=0.05)
    log = open_log(cfg, sqlite_engine)
    log.submit(records(3))
    assert log.flush(timeout=60)

    def broken(self: Any, payload: bytes) -> None:
        raise OSError(30, "Read-only file system")

    def no_new(directory: Path) -> Any:
        raise OSError(30, "Read-only file system")

    with monkeypatch.context() as patch:
        patch.setattr("roiml.serving.prediction_log._Journal.append", broken)
        patch.setattr("roiml.serving.prediction_log._Journal.create", no_new)
        with pytest.raises(PredictionLogRefusedError) as refused:
            log.submit(records(1, prefix="lost"))
        assert "Read-only" not in str(refused.value)
        assert log.health()["state"] == "refusing"
        assert log.health()["journal"] == "last write failed"
    log.submit(records(4, start=10))
    assert log.flush(timeout=60)
    assert sorted(prediction_ids(sqlite_engine)) == sorted(
        [f"p{i}" for i in range(3)] + [f"p{i}" for i in range(10, 14)]
    )
    wait_until(lambda: log.health()["state"] == "ok", timeout=10)


_KILLED_CHILD = """
import os, signal, sys
from sqlalchemy import create_engine
from roiml.serving.prediction_log import PredictionLog, PredictionLogRefusedError
from roiml.settings import Settings
sys.path.insert(0, sys.argv[2])
from test_prediction_log import records
settings = Settings(_env_file=None, data_dir=sys.argv[1], prediction_log_flush_seconds=60.0,
                    prediction_log_batch_size=100_000)
log = PredictionLog(settings, create_engine("sqlite:///" + sys.argv[1] + "/roiml.db"))
for offset in range(0, 250, 10):
    log.submit(records(10, prefix="killed", start=offset))
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_answered_predictions_survive_a_sigkill(
    configure: Callable[..., Settings],
    sqlite_engine: Engine,
    open_log: Callable[..., PredictionLog],
) -> None:
    """A process killed right after submit returned (its writer never ran) loses nothing: the
    next log on the directory replays its journal."""
    cfg = configure(prediction_log_flush_seconds=0.05)
    done = subprocess.run(
        [sys.executable, "-c", _KILLED_CHILD, str(cfg.data_dir), str(Path(__file__).parent)],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == -9, done.stderr.decode()
    assert prediction_ids(sqlite_engine) == []
    assert len(spool_segments(cfg)) == 1
    log = open_log(cfg, sqlite_engine)
    wait_until(lambda: log.stats()["replayed_files"] == 1)
    ids = prediction_ids(sqlite_engine)
    assert len(ids) == 250
    assert set(ids) == {f"killed{i}" for i in range(250)}
    assert spool_segments(cfg) == []


def test_restart_replays_what_an_earlier_process_left(
    configure: Callable[..., Settings],
    sqlite_engine: Engine,
    dead_engine: Engine,
    open_log: Callable[..., PredictionLog],
) -> None:
    cfg = configure(prediction_log_batch_size=64, prediction_log_flush_seconds=0.05)
    before = open_log(cfg, dead_engine)
    sent = [record(TENANTS[i % 3], f"r{i}") for i in range(300)]
    for offset in range(0, 300, 25):
        before.submit(sent[offset : offset + 25])
    before.close()
    stats = before.stats()
    assert stats["queued"] == 300
    assert stats["database_ok"] is False
    assert stats["last_error"] and "OperationalError" in str(stats["last_error"])
    assert prediction_ids(sqlite_engine) == []

    # A writer that died mid-segment: two complete lines and a cut-off third.
    lines = b"".join(
        orjson.dumps(record("t_alpha", f"crash{i}"), option=orjson.OPT_APPEND_NEWLINE)
        for i in range(2)
    )
    partial = cfg.prediction_buffer_dir / f"seg-{time.time_ns():020d}-1-00000000-3.jsonl.partial"
    partial.write_bytes(lines + b'{"prediction_id": "crash2", "tena')

    after = open_log(cfg, sqlite_engine)
    wait_until(lambda: after.stats()["spooled_bytes"] == 0 and len(spool_segments(cfg)) == 0)
    ids = prediction_ids(sqlite_engine)
    assert sorted(ids) == sorted([r["prediction_id"] for r in sent] + ["crash0", "crash1"])
    assert not partial.exists()
    assert after.stats()["rejected_total"] == 1  # the cut-off line, kept in rejected-*.jsonl
    assert after.stats()["replayed_files"] == 2  # the closed log's journal and the segment
    with sqlite_engine.connect() as conn:
        at = conn.scalar(
            select(MLPrediction.predicted_at).where(MLPrediction.prediction_id == "r5")
        )
    assert at == T0  # microseconds survive the trip through JSON


# --------------------------------------------------------------------------- private PostgreSQL


def _postgres_bin() -> Path | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).parent)
    for directory in candidates:
        if (directory / "initdb").exists() and (directory / "pg_ctl").exists():
            return directory
    return None


def _unavailable(message: str) -> NoReturn:
    if IN_CI:
        pytest.fail(f"CI=true and {message}", pytrace=False)
    pytest.skip(message)


class PrivatePostgres:
    """A throw-away PostgreSQL cluster on a free port, owned by the test."""

    def __init__(self, bindir: Path, root: Path, prefix: list[str]) -> None:
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.prefix = prefix  # runs the server binaries as a non-root user when we are root
        self.port = free_port()

    def run(self, program: str, *args: str) -> None:
        command = [*self.prefix, str(self.bindir / program), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{command} failed: {done.stdout}{done.stderr}{tail}")

    def init(self) -> None:
        self.run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8")

    def start(self) -> None:
        # fsync=off: the test kills the server, not the machine; WAL still reaches the kernel at
        # every commit, so an immediate stop loses nothing that was acknowledged.
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=20"
        )
        log = str(self.root / "server.log")
        self.run(
            "pg_ctl", "-D", str(self.data), "-l", log, "-o", options, "-w", "-t", "30", "start"
        )

    def stop(self, mode: str) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, user: str, database: str) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A private cluster: never the shared server on 5432, which this test stops and starts."""
    bindir = _postgres_bin()
    if bindir is None:
        _unavailable("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    prefix: list[str] = []
    owner: pwd.struct_passwd | None = None
    if os.geteuid() == 0:
        # initdb refuses to run as root; the postgres OS user owns the cluster instead.
        runuser = shutil.which("runuser")
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            owner = None
        if runuser is None or owner is None:
            _unavailable("running as root without runuser and a 'postgres' user for initdb")
        prefix = [str(runuser), "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="roiml-pg-"))
    if owner is not None:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    server = PrivatePostgres(bindir, root, prefix)
    try:
        server.init()
        server.start()
        yield server
    finally:
        # Not running (a failed start) or already stopped is fine here.
        with contextlib.suppress(Exception):
            server.stop("fast")
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.postgres
@pytest.mark.timeout(120)
def test_no_prediction_lost_when_postgres_stops_under_load(
    private_postgres: PrivatePostgres,
    configure: Callable[..., Settings],
    open_log: Callable[..., PredictionLog],
) -> None:
    pg = private_postgres
    admin = make_engine(pg.url("postgres", "postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql("CREATE DATABASE roiml")
    admin.dispose()
    owner = make_engine(pg.url("postgres", "roiml"))
    upgrade(owner)
    grant_app_role(owner, "roiml_app")
    # The log writes as the application role, so row-level security applies to every insert.
    app = make_engine(pg.url("roiml_app", "roiml"))

    cfg = configure(prediction_log_batch_size=50, prediction_log_flush_seconds=0.1)
    log = open_log(cfg, app, retry_max_seconds=1.0)

    submitted: list[str] = []
    latencies: list[float] = []
    spooled_samples: list[int] = []
    failures: list[BaseException] = []
    stop = threading.Event()
    interval = 0.004  # 250 predictions a second

    def produce() -> None:
        try:
            due = time.monotonic()
            i = 0
            while not stop.is_set():
                prediction_id = f"pg-{i}"
                item = record(TENANTS[i % 3], prediction_id, predicted_at=T0 + timedelta(seconds=i))
                began = time.perf_counter()
                log.submit([item])
                latencies.append(time.perf_counter() - began)
                submitted.append(prediction_id)
                if i % 25 == 0:
                    spooled_samples.append(int(log.stats()["queued"] or 0))
                i += 1
                due += interval
                time.sleep(max(0.0, due - time.monotonic()))
        except BaseException as exc:
            failures.append(exc)

    def run_for(count: int) -> None:
        # Each phase lasts for a number of predictions (about 250 a second when the machine is
        # idle), not for a time: a busy machine makes it longer, never emptier.
        target = len(submitted) + count
        wait_until(lambda: len(submitted) >= target or bool(failures), timeout=60)

    producer = threading.Thread(target=produce, name="producer")
    started = time.monotonic()
    producer.start()
    run_for(375)
    before_stop = len(submitted)
    pg.stop("immediate")
    stopped_at = time.monotonic()
    run_for(625)
    during_outage = len(submitted) - before_stop
    spooled_in_outage = log.stats()["queued"]
    pg.start()
    restarted_at = time.monotonic()
    wait_until(lambda: log.stats()["database_ok"] is True, timeout=30)
    back_at = time.monotonic()
    run_for(375)
    stop.set()
    producer.join(timeout=10)
    stopped_load_at = time.monotonic()
    assert not failures, failures
    assert log.flush(timeout=60)
    wait_until(
        lambda: log.stats()["queued"] == 0 and log.stats()["database_ok"] is True,
        timeout=30,
    )
    drained_at = time.monotonic()
    stats = log.stats()
    log.close()
    app.dispose()

    # The owner bypasses row-level security: it sees every tenant's rows.
    with owner.connect() as conn:
        rows = conn.execute(select(MLPrediction.prediction_id, MLPrediction.tenant_id)).all()
    owner.dispose()
    ids = [pid for pid, _ in rows]
    assert len(ids) == len(submitted)
    assert len(set(ids)) == len(ids)
    assert set(ids) == set(submitted)
    assert all(tenant == TENANTS[int(pid.split("-")[1]) % 3] for pid, tenant in rows)

    # The outage really happened and went through the spool.
    assert during_outage > 100
    assert max(spooled_samples) > 0
    assert int(stats["failed_batches"] or 0) >= 1
    assert stats["rejected_total"] == 0
    # Each id was new exactly once; replays of batches whose commit did land count as duplicates.
    assert stats["written_total"] == len(submitted)
    # That submit never waits on the database, measured: python -m bench fail-fast.

    print(
        f"\nPG stop test: submitted={len(submitted)} in table={len(ids)} "
        f"during_outage={during_outage} spooled_at_restart={spooled_in_outage} "
        f"max_spooled_seen={max(spooled_samples)} failed_batches={stats['failed_batches']} "
        f"written_total={stats['written_total']} duplicates={stats['duplicates_total']} "
        f"stop_at={stopped_at - started:.2f}s down_for={restarted_at - stopped_at:.2f}s "
        f"writes_ok_after_restart={back_at - restarted_at:.2f}s "
        f"spool_empty_after_load_end={drained_at - stopped_load_at:.2f}s "
        f"submit_p50_us={sorted(latencies)[len(latencies) // 2] * 1e6:.1f} "
        f"submit_max_ms={max(latencies) * 1e3:.2f}"
    )
