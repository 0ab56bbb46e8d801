"""The fault tests' harness: a Redis server of their own, a proxy in front of PostgreSQL, a small
world ending today, the API served by uvicorn on 127.0.0.1, and a bounded load that records
every answer.

Nothing here touches the machine's shared servers: Redis is a ``redis-server`` started on a
free port, PostgreSQL is reached through :class:`~faults.proxy.TcpProxy`, which the tests kill
and hang. Under ``CI=true`` a server that cannot be started or reached fails the test.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import uvicorn
from prometheus_client import CollectorRegistry

from conftest import IN_CI
from roiml.db.base import utcnow
from roiml.db.engine import make_engine
from roiml.db.migrate import upgrade
from roiml.models.artifact import ModelArtifact
from roiml.models.train import TrainingReport
from roiml.serving.app import asgi
from roiml.serving.components import Components, serving_engine
from roiml.serving.metrics import ServingMetrics
from roiml.serving.model_cache import ModelCache
from roiml.serving.prediction_log import PredictionLog
from roiml.serving.ratelimit import make_rate_limiter
from roiml.settings import Settings
from roiml.store.materialize import materialize_day
from roiml.store.online import OnlineStore, open_online_store
from roiml.store.retrieval import FeatureStore
from roiml.world import WorldConfig, generate_world

REDIS_SERVER = "/usr/bin/redis-server"
FAULT_TENANT = "faults"
USERS = 300
# Users 0..WARM_ONLY-1 have no online vectors: the warm store serves them.
WARM_ONLY = 20


def unreachable(message: str) -> None:
    """Fail under CI (a fault test must never pass by not running), else skip."""
    if IN_CI:
        pytest.fail(f"CI=true and {message}", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A ``redis-server`` of the test's own: no persistence, killed and stopped at will."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise
                time.sleep(0.02)
            finally:
                client.close()

    def kill(self) -> None:
        """SIGKILL: connections reset, the data gone."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        """SIGSTOP: the server accepts connections (the kernel does) and answers nothing."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def cont(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis server on a free port of 127.0.0.1, for this module alone."""
    if shutil.which(REDIS_SERVER) is None:
        unreachable(f"{REDIS_SERVER} is not installed")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        server.start()
    except Exception as exc:
        server.close()
        unreachable(f"redis-server did not start: {exc}")
    yield server
    server.close()


def build_fault_world(settings: Settings, database_url: str) -> None:
    """300 homeowners over 120 days ending today at ``database_url``, and yesterday's features
    in every tier of ``settings`` (the online store minus the first :data:`WARM_ONLY` users)."""
    engine = make_engine(database_url)
    upgrade(engine)
    today = utcnow().date()
    generate_world(
        engine,
        settings.data_dir,
        WorldConfig(
            users=USERS,
            start=today - timedelta(days=120),
            end=today,
            seed=5,
            tenant_id=FAULT_TENANT,
        ),
    )
    online = open_online_store(settings)
    materialize_day(
        FeatureStore(engine, FAULT_TENANT, settings.data_dir, online), today - timedelta(days=1)
    )
    forget_online(online, range(WARM_ONLY))
    online.close()
    engine.dispose()


def forget_online(online: OnlineStore, users: range) -> None:
    """Delete the online vectors of ``users`` (Redis only: the fault tests' online store)."""
    client: redis.Redis = online._client  # type: ignore[attr-defined]
    keys = [
        k
        for k in client.scan_iter(match="*")
        if k.rsplit(b":", 1)[-1] in {f"user_{i}".encode() for i in users}
    ]
    if keys:
        client.delete(*keys)


def rewrite_online(settings: Settings, database_url: str) -> None:
    """Yesterday's vectors into the online store again (after a Redis that lost them)."""
    engine = make_engine(database_url)
    online = open_online_store(settings)
    store = FeatureStore(engine, FAULT_TENANT, settings.data_dir, online)
    materialize_day(store, utcnow().date() - timedelta(days=1))
    forget_online(online, range(WARM_ONLY))
    online.close()
    engine.dispose()


@dataclass
class Served:
    """The API on uvicorn in a thread, on a free port of 127.0.0.1."""

    base: str
    components: Components
    server: uvicorn.Server
    thread: threading.Thread
    feature_names: list[str]


def serve(settings: Settings, trained: dict[str, TrainingReport], database_url: str) -> Served:
    """The production wiring (bounded engine with its breaker, the settings' online store and
    rate limiter) with the session's trained models, served."""
    artifacts = {name: ModelArtifact.load(r.artifact_dir) for name, r in trained.items()}
    engine, breaker = serving_engine(settings, database_url)
    components = Components(
        settings=settings,
        engine=engine,
        online=open_online_store(settings),
        models=ModelCache(lambda t, n: ("1", artifacts[n]), lambda t, n: "1", 3600),
        prediction_log=PredictionLog(settings, engine),
        rate_limiter=make_rate_limiter(settings),
        metrics=ServingMetrics(CollectorRegistry()),
        database_breaker=breaker,
    )
    port = free_port()
    config = uvicorn.Config(
        asgi(settings, components),
        host="127.0.0.1",
        port=port,
        lifespan="on",
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    names = artifacts["move_probability_model"].feature_names
    return Served(f"http://127.0.0.1:{port}", components, server, thread, list(names))


def stop_serving(served: Served) -> None:
    served.server.should_exit = True
    served.thread.join(timeout=30)


# --------------------------------------------------------------------------- the load


@dataclass
class Answer:
    kind: str
    started: float  # seconds since the fault began (negative before)
    seconds: float
    status: int  # 0: no answer (a client timeout or a reset connection)
    retry_after: str | None
    sources: list[str] = field(default_factory=list)
    item_statuses: list[int] = field(default_factory=list)
    body: Any = None


Request = Callable[[httpx.Client], httpx.Response]


def kinds(served: Served, *, prediction_id: str | None = None) -> dict[str, Request]:
    """The request mix: online hits, warm-only users, given features, an unknown id, a past
    date, a mixed batch with one unknown id, feedback, model health, /health, /metrics, the
    schema."""
    counter = itertools.count()
    given = {n: 0.0 for n in served.feature_names}
    past = (utcnow() - timedelta(days=10)).isoformat() + "+00:00"

    def online(c: httpx.Client) -> httpx.Response:
        user = f"user_{WARM_ONLY + next(counter) % (USERS - WARM_ONLY)}"
        return c.post("/v1/predict/move-probability", json={"entity_id": user})

    def batch(c: httpx.Client) -> httpx.Response:
        types = ["MOVE_PROBABILITY", "TRANSACTION_TYPE", "CONTACT_TIMING", "PROPERTY_VALUE"]
        items = [
            {"entity_id": f"user_{WARM_ONLY + i}", "prediction_type": types[i % 4]}
            for i in range(20)
        ]
        items.append({"entity_id": "ghost", "prediction_type": "MOVE_PROBABILITY"})
        return c.post("/v1/predict/batch", json={"requests": items})

    out: dict[str, Request] = {
        "online": online,
        "warm-only": lambda c: c.post(
            "/v1/predict/transaction-type", json={"entity_id": f"user_{next(counter) % WARM_ONLY}"}
        ),
        "given": lambda c: c.post(
            "/v1/predict/move-probability", json={"entity_id": "user_1", "features": given}
        ),
        "unknown": lambda c: c.post("/v1/predict/move-probability", json={"entity_id": "ghost"}),
        "as-of": lambda c: c.post(
            "/v1/predict/move-probability", json={"entity_id": "user_30", "as_of_date": past}
        ),
        "batch": batch,
        "model-health": lambda c: c.get("/v1/models/move_probability_model/health"),
        "health": lambda c: c.get("/health"),
        "metrics": lambda c: c.get("/metrics"),
        "openapi": lambda c: c.get("/api/ml/openapi.json"),
    }
    if prediction_id is not None:
        out["feedback"] = lambda c: c.post(
            f"/v1/predictions/{prediction_id}/feedback", json={"actual_class": "HIGH"}
        )
    return out


def record(kind: str, response: httpx.Response, started: float, seconds: float) -> Answer:
    answer = Answer(
        kind, started, seconds, response.status_code, response.headers.get("Retry-After")
    )
    if response.status_code == 200 and kind != "metrics":
        body = response.json()
        if kind == "batch":
            answer.sources = [p["feature_source"] for p in body["predictions"]]
            answer.item_statuses = [200] * len(body["predictions"]) + [
                e["status_code"] for e in body["errors"]
            ]
        elif "feature_source" in body:
            answer.sources = [body["feature_source"]]
        if kind == "health":
            answer.body = body
    elif kind == "health" and response.status_code == 503:
        answer.body = response.json()
    return answer


def run_load(
    served: Served,
    requests: dict[str, Request],
    fault: Callable[[], None],
    restore: Callable[[], None],
    *,
    before: float = 1.0,
    during: float = 3.0,
    after: float = 3.0,
    threads: int = 3,
    pause: float = 0.02,
    probe: str | None = None,
) -> tuple[list[Answer], float]:
    """Send ``requests`` round-robin from ``threads`` clients (``pause`` between a client's
    requests: a few hundred in all); call ``fault`` after ``before`` seconds, ``restore``
    ``during`` later, and stop ``after`` seconds after the restore is done. Returns every
    answer (times relative to the fault) and when the restore was done.

    ``probe`` names a kind one more client sends alone: under a hung dependency the
    round-robin clients sit in their slow requests, and on a loaded machine a kind can go
    unsent for the whole fault (CI once saw no warm-only request in a hung PostgreSQL's 3 s);
    the probe's own client keeps asking, so the fault and the recovery are always seen."""
    answers: list[Answer] = []
    lock = threading.Lock()
    names = list(requests)
    t0 = time.monotonic() + before
    stop = threading.Event()

    def client(offset: int, only: str | None = None) -> None:
        order = itertools.cycle([only] if only else names[offset:] + names[:offset])
        with httpx.Client(base_url=served.base, timeout=10) as http:
            while not stop.is_set():
                kind = next(order)
                start = time.monotonic()
                try:
                    response = requests[kind](http)
                    answer = record(kind, response, start, time.monotonic() - start)
                except httpx.HTTPError:
                    answer = Answer(kind, start, time.monotonic() - start, 0, None)
                with lock:
                    answers.append(answer)
                time.sleep(pause)

    workers = [threading.Thread(target=client, args=(i * 3,)) for i in range(threads)]
    if probe is not None:
        workers.append(threading.Thread(target=client, args=(0, probe)))
    for w in workers:
        w.start()
    time.sleep(max(0.0, t0 - time.monotonic()))
    # Times count from when the fault begins: on a busy machine this thread may wake late.
    t0 = time.monotonic()
    fault()
    time.sleep(during)
    restore()
    restored = time.monotonic() - t0
    time.sleep(after)
    stop.set()
    for w in workers:
        w.join(timeout=60)
    for a in answers:
        a.started -= t0
    return sorted(answers, key=lambda a: a.started), restored


@dataclass
class Figures:
    """What one fault did to the API: the row of docs/API.md's Faults table."""

    scenario: str
    requests: int
    ok: int
    not_found: int
    unavailable: int
    unavailable_without_retry_after: int
    other_5xx: int
    unanswered: int
    max_seconds_during: float
    max_seconds_health_during: float
    health_during: str
    recover_seconds: float

    def row(self) -> str:
        return (
            f"| {self.scenario} | {self.requests} | {self.ok} | {self.not_found} | "
            f"{self.unavailable} | {self.other_5xx} | {self.unanswered} | "
            f"{self.max_seconds_during:.3f} | {self.max_seconds_health_during:.3f} | "
            f"{self.health_during} | {self.recover_seconds:.2f} |"
        )


def figures(
    scenario: str,
    answers: list[Answer],
    during: float,
    restored: float,
    recovered: Callable[[Answer], bool],
    probe_kind: str,
) -> Figures:
    """The figures of one run; ``recovered`` says whether an answer of ``probe_kind`` after the
    restore is a normal one again."""
    in_fault = [a for a in answers if 0 <= a.started < during]
    health = [a for a in in_fault if a.kind == "health"]
    states = sorted(
        {
            ", ".join(
                f"{k}: {v}" for k, v in a.body.items() if k in ("status", "database", "redis")
            )
            for a in health
            if a.body
        }
    )
    after = [a for a in answers if a.kind == probe_kind and a.started >= restored]
    first_ok = next((a for a in after if recovered(a)), None)
    recover = (first_ok.started + first_ok.seconds - restored) if first_ok else float("inf")
    return Figures(
        scenario=scenario,
        requests=len(answers),
        ok=sum(a.status == 200 for a in answers),
        not_found=sum(a.status == 404 for a in answers),
        unavailable=sum(a.status == 503 for a in answers),
        unavailable_without_retry_after=sum(a.status == 503 and not a.retry_after for a in answers),
        other_5xx=sum(a.status >= 500 and a.status != 503 for a in answers),
        unanswered=sum(a.status == 0 for a in answers),
        max_seconds_during=max((a.seconds for a in in_fault), default=0.0),
        max_seconds_health_during=max(
            (a.seconds for a in in_fault if a.kind in ("health", "metrics", "openapi")),
            default=0.0,
        ),
        health_during="; ".join(states) or "no answer",
        recover_seconds=recover,
    )


def report(figures: Figures, answers: list[Answer], during: float) -> None:
    """Print the row and the slowest answers during the fault (pytest -s shows them), and
    append the row to $ROIML_FAULT_TABLE if set."""
    print(figures.row())
    slowest = sorted((a for a in answers if 0 <= a.started < during), key=lambda a: -a.seconds)
    for a in slowest[:5]:
        print(f"  slow: {a.kind} at {a.started:.3f} s took {a.seconds:.3f} s -> {a.status}")
    target = os.environ.get("ROIML_FAULT_TABLE")
    if target:
        with Path(target).open("a", encoding="utf-8") as out:
            out.write(figures.row() + "\n")
