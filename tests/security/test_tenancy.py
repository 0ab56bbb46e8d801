"""Attacks on the separation of tenants, each refused: model health's error rate made of
another tenant's errors, ``/metrics`` showing every tenant's class counts, public ``/health``
showing hosts, ports and the spool path; and model health that scanned the whole log per
request (now a roll-up that still sees recent traffic).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from serving_stubs import (
    DB_ERROR,
    MOVE,
    SPOOL_PATH,
    add_predictions,
    make_api,
    make_parts,
    migrated_engine,
)
from sqlalchemy import Engine, create_engine, event
from tests.test_serving_security import TestClient, bearer, claims, hs256, make_settings

from roiml.db.base import utcnow
from roiml.db.enums import ModelType
from roiml.serving.components import Components
from roiml.serving.health import ModelHealthRollup
from roiml.serving.ratelimit import MemoryRateLimiter

MODEL_HEALTH = f"/api/ml/v1/models/{MOVE}/health"


@dataclass
class Api:
    client: TestClient
    parts: Components

    def token(self, tenant: str, scope: str = "predict") -> dict[str, str]:
        return bearer(hs256(claims(tenant_id=tenant, scope=scope, sub=f"{tenant}-client")))


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    settings = make_settings()  # auth on
    limiter = MemoryRateLimiter(600_000, 100_000)
    parts = make_parts(settings, migrated_engine(tmp_path), limiter, ["acme", "globex"])
    with TestClient(make_api(settings, parts)) as client:
        yield Api(client, parts)
    parts.engine.dispose()


# --- error counts and rates are per tenant -----------------------------------------------------


def test_another_tenants_errors_are_not_my_error_rate(api: Api) -> None:
    """The audit's case: a tenant with no traffic saw error_rate 1.0 made of another's 404s."""
    for _ in range(4):
        response = api.client.post("/serve-stub?failed=1", headers=api.token("acme"))
        assert response.status_code == 200 and response.json() == "acme"
    quiet = api.client.get(MODEL_HEALTH, headers=api.token("globex")).json()
    assert quiet["prediction_count"] == 0
    assert quiet["error_rate"] is None
    busy = api.client.get(MODEL_HEALTH, headers=api.token("acme")).json()
    assert busy["error_rate"] == 1.0
    assert api.parts.metrics.error_count("acme", MOVE) == 4
    assert api.parts.metrics.error_count("globex", MOVE) == 0


def test_error_rate_is_errors_over_the_tenants_own_traffic(api: Api) -> None:
    add_predictions(api.parts.engine, "acme", 3)
    add_predictions(api.parts.engine, "globex", 50)
    api.client.post("/serve-stub?failed=1", headers=api.token("acme"))
    health = api.client.get(MODEL_HEALTH, headers=api.token("acme")).json()
    assert health["prediction_count"] == 3
    assert health["error_rate"] == pytest.approx(1 / 4)


# --- /metrics --------------------------------------------------------------------------------


def _class_counts(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("roiml_predictions_total{")]


def test_metrics_show_a_tenant_only_its_own_class_counts(api: Api) -> None:
    api.client.post("/serve-stub?served=3", headers=api.token("acme"))
    api.client.post("/serve-stub?served=2&failed=1", headers=api.token("globex"))
    acme = api.client.get("/metrics", headers=api.token("acme")).text
    assert _class_counts(acme) == [
        'roiml_predictions_total{model="move_probability_model",model_version="1",'
        'predicted_class="HIGH",tenant="acme"} 3.0'
    ]
    assert "globex" not in acme
    globex = api.client.get("/metrics", headers=api.token("globex")).text
    assert _class_counts(globex)[0].endswith('tenant="globex"} 2.0')
    errors = 'roiml_prediction_errors_total{model="move_probability_model",status="404",'
    assert errors + 'tenant="globex"} 1.0' in globex
    assert "acme" not in globex


def test_metrics_without_a_token_show_no_tenant(api: Api) -> None:
    api.client.post("/serve-stub?served=3&failed=2", headers=api.token("acme"))
    public = api.client.get("/metrics")
    assert public.status_code == 200
    assert 'tenant="' not in public.text
    assert "roiml_predictions_total" in public.text  # the family is declared, with no series


SCRAPER_TOKEN = "prometheus-scrapes-with-this-0123456789"


def test_the_scrapers_token_sees_every_tenant_and_nothing_else_does(tmp_path: Path) -> None:
    """Prometheus holds ROIML_METRICS_TOKEN (no tenant's JWT): it sees every tenant's series,
    so per-tenant panels need no token per tenant; a near miss is a bad token (401)."""
    settings = make_settings(metrics_token=SCRAPER_TOKEN)
    limiter = MemoryRateLimiter(600_000, 100_000)
    parts = make_parts(settings, migrated_engine(tmp_path), limiter, ["acme", "globex"])
    try:
        with TestClient(make_api(settings, parts)) as client:
            api = Api(client, parts)
            client.post("/serve-stub?served=3", headers=api.token("acme"))
            client.post("/serve-stub?served=2", headers=api.token("globex"))
            scraped = client.get("/metrics", headers={"Authorization": f"Bearer {SCRAPER_TOKEN}"})
            assert scraped.status_code == 200
            counts = _class_counts(scraped.text)
            assert any('tenant="acme"} 3.0' in line for line in counts), counts
            assert any('tenant="globex"} 2.0' in line for line in counts), counts
            near = client.get("/metrics", headers={"Authorization": f"Bearer {SCRAPER_TOKEN}x"})
            assert near.status_code == 401
            # The scraper's token is good for /metrics only.
            other = client.get(MODEL_HEALTH, headers={"Authorization": f"Bearer {SCRAPER_TOKEN}"})
            assert other.status_code == 401
            acme = client.get("/metrics", headers=api.token("acme")).text
            assert "globex" not in acme
    finally:
        parts.engine.dispose()


# --- /health ---------------------------------------------------------------------------------


def test_public_health_is_status_only(api: Api) -> None:
    for headers in ({}, api.token("acme", "predict feedback")):
        response = api.client.get("/health", headers=headers)
        assert response.status_code == 200
        assert response.json() == {"status": "ok", "failing": []}
        for leak in (SPOOL_PATH, "db.internal", "5432", "10.0.0.7", "sqlite", "roiml.db"):
            assert leak not in response.text


def test_admin_health_has_the_details(api: Api) -> None:
    body = api.client.get("/health", headers=api.token("acme", "admin")).json()
    assert body["database"] == "ok"
    assert body["prediction_log"]["spool_dir"] == SPOOL_PATH
    assert body["prediction_log"]["last_error"] == DB_ERROR
    assert set(body["models"].values()) == {"v1"}


def test_admin_health_shows_the_callers_models_only(api: Api) -> None:
    """The report's models are the admin's tenant's, not the default tenant's."""
    api.parts.models.deployed.discard("initech")  # type: ignore[attr-defined]
    body = api.client.get("/health", headers=api.token("initech", "admin")).json()
    assert set(body["models"].values()) == {"not loaded"}


def test_public_health_names_failing_parts_only(api: Api, tmp_path: Path) -> None:
    working = api.parts.engine
    api.parts.engine = create_engine(f"sqlite:///{tmp_path}/no-such-dir/roiml.db")
    try:
        response = api.client.get("/health")
    finally:
        api.parts.engine.dispose()
        api.parts.engine = working
    assert response.status_code == 503
    assert response.json() == {"status": "degraded", "failing": ["database"]}
    assert "OperationalError" not in response.text


def test_a_refusing_prediction_log_is_down_publicly(api: Api) -> None:
    api.parts.prediction_log.state = "refusing"  # type: ignore[attr-defined]
    response = api.client.get("/health")
    assert response.status_code == 503
    assert response.json() == {"status": "down", "failing": ["prediction_log"]}


# --- model health from a roll-up -------------------------------------------------------------


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def _statements(engine: Engine) -> list[str]:
    seen: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("SELECT") and "ml_predictions" in statement:
            seen.append(statement)

    return seen


def test_model_health_reads_a_rollup_not_the_log(api: Api) -> None:
    engine = api.parts.engine
    start = utcnow()
    api.parts.clock = lambda: start + timedelta(seconds=clock.now - 1000)
    clock = Clock()
    rollup = ModelHealthRollup(api.parts, ttl_seconds=2, settle_seconds=30, monotonic=clock)
    add_predictions(engine, "acme", 200, at=start - timedelta(minutes=5), latency_ms=4.0)
    statements = _statements(engine)

    first = rollup.get("acme", ModelType.MOVE_PROBABILITY)
    assert first.prediction_count == 200 and first.avg_latency_ms == pytest.approx(4.0)
    scanned = len(statements)

    # Within the TTL: answered from memory, no query, however many pollers.
    for _ in range(50):
        cached = rollup.cached("acme", ModelType.MOVE_PROBABILITY)
        assert cached is not None and cached.prediction_count == 200
        assert rollup.get("acme", ModelType.MOVE_PROBABILITY).prediction_count == 200
    assert len(statements) == scanned

    # Recent traffic shows after the TTL, and the refresh reads only new rows: every query
    # on the log is bounded below by a time past the settled 200.
    add_predictions(engine, "acme", 7, at=start + timedelta(seconds=2), latency_ms=11.0)
    clock.now += 2.5
    later = rollup.get("acme", ModelType.MOVE_PROBABILITY)
    assert later.prediction_count == 207
    assert later.avg_latency_ms == pytest.approx((200 * 4.0 + 7 * 11.0) / 207)
    assert later.last_prediction_at is not None
    refresh = statements[scanned:]
    assert refresh and all("predicted_at >=" in sql for sql in refresh), refresh

    # Another tenant's roll-up is its own.
    assert rollup.get("globex", ModelType.MOVE_PROBABILITY).prediction_count == 0


def test_model_health_route_is_cheap_when_polled(api: Api) -> None:
    add_predictions(api.parts.engine, "acme", 100)
    statements = _statements(api.parts.engine)
    for _ in range(30):
        response = api.client.get(MODEL_HEALTH, headers=api.token("acme"))
        assert response.status_code == 200 and response.json()["prediction_count"] == 100
    # One refresh (settled part, tail) for thirty polls within the roll-up's TTL.
    assert len(statements) <= 3, statements


def test_pollers_do_not_queue_behind_a_refresh(api: Api) -> None:
    """While one refresh runs (a slow database), the others answer from the last roll-up at
    once instead of holding threads."""
    clock = Clock()
    rollup = ModelHealthRollup(api.parts, ttl_seconds=2, monotonic=clock)
    add_predictions(api.parts.engine, "acme", 5)
    assert rollup.get("acme", ModelType.MOVE_PROBABILITY).prediction_count == 5
    clock.now += 3  # stale
    add_predictions(api.parts.engine, "acme", 2)
    lock = rollup._locks["acme", MOVE]
    with lock:  # a refresh in progress
        started = time.perf_counter()
        stale = rollup.get("acme", ModelType.MOVE_PROBABILITY)
        assert time.perf_counter() - started < 0.5
        assert stale.prediction_count == 5
    assert rollup.get("acme", ModelType.MOVE_PROBABILITY).prediction_count == 7
