"""The API as deployed: a real uvicorn server on 127.0.0.1, PostgreSQL, Redis and JWT auth.

Everything the in-process tests stub is real here: the socket (the server's own HTTP protocol,
which must set TCP_NODELAY on every connection), the online store (Redis), the rate limiter
(Redis), the prediction log and feedback (PostgreSQL), and bearer tokens. Needs
``ROIML_TEST_POSTGRES_URL`` and ``ROIML_TEST_REDIS_URL`` (skipped without, failed under CI).
"""

from __future__ import annotations

import asyncio
import gc
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import httpx
import jwt
import numpy as np
import pyarrow as pa
import pytest
import redis
import uvicorn
from prometheus_client import CollectorRegistry
from sqlalchemy import text

from roiml.db.base import utcnow
from roiml.db.engine import make_engine
from roiml.db.enums import EntityType
from roiml.features.catalog import CATALOG
from roiml.models.artifact import ModelArtifact
from roiml.models.train import TrainingReport
from roiml.serving.app import asgi
from roiml.serving.components import Components
from roiml.serving.metrics import ServingMetrics
from roiml.serving.model_cache import ModelCache
from roiml.serving.prediction_log import PredictionLog
from roiml.serving.ratelimit import RedisRateLimiter
from roiml.serving.server import FrozenHeapServer, NoDelayHttpToolsProtocol, bind_reuseport
from roiml.settings import Settings
from roiml.store.online import DEFAULT_TTL, OnlineFeatureSet
from roiml.store.online_redis import RedisOnlineStore

SECRET = "live-test-secret-" + "0123456789abcdef" * 3
# Real time: Redis expires online vectors by the wall clock.
NOW = utcnow().replace(microsecond=0)
USERS = [f"user_{i}" for i in range(1, 6)]
BURST = 40


class _ProbedProtocol(NoDelayHttpToolsProtocol):
    """Records TCP_NODELAY as each accepted connection is left by the server's protocol."""

    nodelay: ClassVar[list[int]] = []

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        self.nodelay.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


@dataclass
class Live:
    base: str
    tenant: str
    settings: Settings
    components: Components

    def token(self, scope: str = "predict feedback", **claims: Any) -> dict[str, str]:
        payload = {
            "sub": "svc",
            "tenant_id": self.tenant,
            "scope": scope,
            "exp": int(time.time()) + 300,
        } | claims
        return {"Authorization": "Bearer " + jwt.encode(payload, SECRET, algorithm="HS256")}


def _write_online_features(store: RedisOnlineStore, tenant: str) -> None:
    """Every feature set of USERS, as of an hour before the server's clock."""
    rng = np.random.default_rng(0)
    for name, names in CATALOG.feature_sets.items():
        columns: dict[str, Any] = {
            "entity_id": pa.array(USERS, pa.string()),
            "as_of": pa.array([NOW - timedelta(hours=1)] * len(USERS), pa.timestamp("us")),
        }
        for feature in names:
            columns[feature] = pa.array(rng.uniform(0, 3, len(USERS)), pa.float64())
        feature_set = OnlineFeatureSet(name, tuple(names), DEFAULT_TTL)
        written = store.write_day(pa.table(columns), tenant, EntityType.USER, feature_set, now=NOW)
        assert written == len(USERS)


@pytest.fixture(scope="module")
def live(
    postgres_url: str,
    redis_url: str,
    trained_models: dict[str, TrainingReport],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Live]:
    tenant = f"live_{uuid.uuid4().hex[:8]}"
    namespace = f"roiml-live-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        _env_file=None,
        data_dir=Path(tmp_path_factory.mktemp("live")) / "data",
        database_url=postgres_url,
        redis_url=redis_url,
        tenant_id=tenant,
        auth_enabled=True,
        jwt_secret=SECRET,
        prediction_log_flush_seconds=0.05,
    )
    artifacts = {name: ModelArtifact.load(r.artifact_dir) for name, r in trained_models.items()}
    engine = make_engine(postgres_url)
    online = RedisOnlineStore(redis.Redis.from_url(redis_url), namespace=namespace)
    _write_online_features(online, tenant)
    limiter = RedisRateLimiter(redis_url, per_minute=60, burst=BURST)
    components = Components(
        settings=settings,
        engine=engine,
        online=online,
        models=ModelCache(lambda t, n: ("1", artifacts[n]), lambda t, n: "1", 3600),
        prediction_log=PredictionLog(settings, engine),
        rate_limiter=limiter,
        metrics=ServingMetrics(CollectorRegistry()),
        clock=lambda: NOW,
    )
    sock = bind_reuseport("127.0.0.1", 0)
    port = sock.getsockname()[1]
    # Not listening until the app has started: a worker still loading models gets no share of
    # the SO_REUSEPORT group's connections.
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 0
    config = uvicorn.Config(
        asgi(settings, components),
        http=_ProbedProtocol,
        lifespan="on",
        log_level="warning",
        access_log=False,
    )
    # The server `roiml serve` runs: it freezes the heap once started (undone below, since
    # this process goes on running other tests).
    server = FrozenHeapServer(config)
    switch_interval = sys.getswitchinterval()
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
    try:
        yield Live(f"http://127.0.0.1:{port}", tenant, settings, components)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        gc.unfreeze()
        sys.setswitchinterval(switch_interval)
        cleanup = redis.Redis.from_url(redis_url)
        for key in cleanup.scan_iter(match=f"{namespace}:*"):
            cleanup.delete(key)
        cleanup.close()
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM ml_predictions WHERE tenant_id = :t"), {"t": tenant})
        engine.dispose()


@pytest.fixture
def client(live: Live) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.base, timeout=30) as http:
        yield http


def _logged(live: Live, prediction_ids: list[str]) -> dict[str, Any]:
    """The ml_predictions rows of ``prediction_ids``, waiting for the writer thread."""
    deadline = time.monotonic() + 15
    query = text(
        "SELECT prediction_id, tenant_id, model_version, feature_source, shap_values, "
        "actual_class FROM ml_predictions WHERE prediction_id = ANY(:ids)"
    )
    while True:
        with live.components.engine.connect() as conn:
            rows = {r.prediction_id: r for r in conn.execute(query, {"ids": prediction_ids})}
        if len(rows) == len(prediction_ids) or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def test_predict_reads_redis_and_logs_to_postgres(live: Live, client: httpx.Client) -> None:
    response = client.post(
        "/v1/predict/move-probability", json={"entity_id": "user_1"}, headers=live.token()
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["feature_source"] == "online"
    assert len(body["top_features"]) == 5
    assert response.headers["x-ratelimit-remaining"].isdigit()
    rows = _logged(live, [body["prediction_id"]])
    row = rows[body["prediction_id"]]
    assert row.tenant_id == live.tenant and row.model_version == "1"
    assert row.feature_source == "online" and row.shap_values


def test_batch_and_feedback(live: Live, client: httpx.Client) -> None:
    kinds = ["MOVE_PROBABILITY", "TRANSACTION_TYPE", "CONTACT_TIMING", "PROPERTY_VALUE"]
    requests = [{"entity_id": u, "prediction_type": k} for u in USERS[:3] for k in kinds]
    requests.append({"entity_id": "nobody", "prediction_type": "MOVE_PROBABILITY"})
    response = client.post("/v1/predict/batch", json={"requests": requests}, headers=live.token())
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["predictions"]) == 12
    assert [(e["index"], e["status_code"]) for e in body["errors"]] == [(12, 404)]
    ids = [p["prediction_id"] for p in body["predictions"]]
    assert len(_logged(live, ids)) == 12
    feedback = client.post(
        f"/api/ml/v1/predictions/{ids[1]}/feedback",
        json={"actual_class": "SELL"},
        headers=live.token(),
    )
    assert feedback.status_code == 200, feedback.text
    assert _logged(live, [ids[1]])[ids[1]].actual_class == "SELL"


def test_missing_expired_and_forged_tokens_are_401(live: Live, client: httpx.Client) -> None:
    path, body = "/v1/predict/move-probability", {"entity_id": "user_2"}
    expired = live.token(exp=int(time.time()) - 3600)
    forged = {
        "Authorization": "Bearer "
        + jwt.encode(
            {"sub": "x", "tenant_id": live.tenant, "scope": "predict", "exp": time.time() + 60},
            "not-the-secret-" + "x" * 40,
            algorithm="HS256",
        )
    }
    for headers in ({}, expired, forged, {"Authorization": "Bearer not.a.jwt"}):
        response = client.post(path, json=body, headers=headers)
        assert response.status_code == 401, response.text
        assert response.headers.get("www-authenticate", "").startswith("Bearer")
        assert "Traceback" not in response.text and response.json()["detail"]


def test_a_token_without_the_scope_is_403(live: Live, client: httpx.Client) -> None:
    response = client.post(
        "/v1/predict/contact-timing", json={"entity_id": "user_3"}, headers=live.token("feedback")
    )
    assert response.status_code == 403 and "predict" in response.json()["detail"]
    response = client.post(
        "/v1/predictions/pred_x/feedback", json={"actual_value": 1}, headers=live.token("predict")
    )
    assert response.status_code == 403


def test_a_client_over_its_budget_gets_429_with_retry_after(
    live: Live, client: httpx.Client
) -> None:
    headers = live.token(sub=f"flood-{uuid.uuid4().hex[:6]}")
    statuses = []
    for _ in range(BURST + 5):
        response = client.post(
            "/v1/predict/move-probability", json={"entity_id": "user_4"}, headers=headers
        )
        statuses.append(response.status_code)
        if response.status_code == 429:
            break
    assert statuses[-1] == 429, statuses
    assert set(statuses[:-1]) == {200}
    assert int(response.headers["retry-after"]) >= 1
    assert "retry after" in response.json()["detail"]
    # Another client of the same tenant has its own budget.
    other = client.post(
        "/v1/predict/move-probability", json={"entity_id": "user_4"}, headers=live.token()
    )
    assert other.status_code == 200


def test_every_connection_has_nagle_off(live: Live) -> None:
    """The server's own protocol, on a pre-bound socket as each worker of ``roiml serve`` has
    it, turns Nagle off (uvicorn's --workers path does not: issue #3149)."""
    _ProbedProtocol.nodelay.clear()
    for _ in range(2):
        with httpx.Client(base_url=live.base) as fresh:
            assert fresh.get("/api/ml/openapi.json").status_code == 200
    assert _ProbedProtocol.nodelay and all(_ProbedProtocol.nodelay)


def test_health_reports_postgres_and_redis(live: Live, client: httpx.Client) -> None:
    # The details (each component) are the admin scope's; the public answer is status only.
    assert client.get("/health").json() == {"status": "ok", "failing": []}
    response = client.get("/health", headers=live.token("admin"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["database"] == "ok" and body["redis"] == "ok"
    assert all(state == "v1" for state in body["models"].values())


def test_the_started_server_has_frozen_its_heap(live: Live) -> None:
    """Models and modules loaded at startup sit outside the collector's generations, and the
    GIL is handed over every millisecond: full collections and long GIL holds do not pause
    requests."""
    assert gc.get_freeze_count() > 10_000
    assert sys.getswitchinterval() == pytest.approx(FrozenHeapServer.switch_interval)
