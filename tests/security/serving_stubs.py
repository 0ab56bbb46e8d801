"""A small API for the attack tests: the real auth, rate limiter, health, metrics and model
health routes over stub models and a stub prediction log, on a migrated SQLite database.

Not a test module: ``tests/security/test_*.py`` import it (pytest puts this folder on the path).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from roiml.db.base import utcnow
from roiml.db.engine import make_engine, tenant_session
from roiml.db.enums import EntityType, ModelType, PredictionType
from roiml.db.migrate import upgrade
from roiml.db.ml_tables import MLPrediction
from roiml.models.artifact import MODEL_NAMES
from roiml.serving.components import Components
from roiml.serving.dependencies import PredictPrincipal
from roiml.serving.metrics import ServingMetrics
from roiml.serving.model_cache import ModelUnavailableError
from roiml.serving.ratelimit import RateLimiter, install_rate_limiter
from roiml.serving.routes import ROUTERS
from roiml.serving.security import install_auth
from roiml.settings import Settings

MOVE = MODEL_NAMES[ModelType.MOVE_PROBABILITY]
# What the stub prediction log's stats reveal: the details public /health must not show.
SPOOL_PATH = "/var/lib/roiml/prediction-buffer"
DB_ERROR = "connection to server at db.internal.example (10.0.0.7), port 5432 failed"


class StubModels:
    """Every model of ``deployed`` tenants at version 1; others not deployed."""

    def __init__(self, deployed: Iterable[str]) -> None:
        self.deployed = set(deployed)

    def get(self, tenant: str, model_type: ModelType) -> Any:
        if tenant not in self.deployed:
            raise ModelUnavailableError(f"no production {MODEL_NAMES[model_type]} for {tenant}")
        return SimpleNamespace(version="1")

    def status(self, tenant: str) -> dict[str, str]:
        return {
            name: "v1" if tenant in self.deployed else "not loaded" for name in MODEL_NAMES.values()
        }

    def loaded(self) -> dict[Any, Any]:
        return {(tenant, kind): None for tenant in self.deployed for kind in MODEL_NAMES}


class StubLog:
    """A prediction log with nothing queued, whose stats carry a path and a host."""

    def __init__(self) -> None:
        self.flushes = 0
        self.state = "ok"

    def flush(self, timeout: float | None = None) -> bool:
        self.flushes += 1
        return True

    def stats(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "queued": 0,
            "spool_dir": SPOOL_PATH,
            "last_error": DB_ERROR,
            "full": self.state == "refusing",
        }


def migrated_engine(tmp_path: Path) -> Engine:
    """A SQLite database with the schema."""
    engine = make_engine(f"sqlite:///{tmp_path / 'roiml.db'}")
    upgrade(engine)
    return engine


def add_predictions(
    engine: Engine,
    tenant: str,
    count: int,
    *,
    at: datetime | None = None,
    model: str = MOVE,
    latency_ms: float = 2.0,
) -> None:
    """``count`` logged predictions of ``model`` for ``tenant``, at ``at`` (default now) and a
    second apart going back: separate calls (a call's items share their second and latency,
    and are counted as one call's: roiml.monitoring.period.per_item_latency)."""
    when = at or utcnow()
    with tenant_session(engine, tenant) as session:
        session.add_all(
            MLPrediction(
                prediction_id=f"pred_{uuid.uuid4().hex}",
                tenant_id=tenant,
                model_name=model,
                model_version="1",
                prediction_type=PredictionType.MOVE_PROBABILITY,
                entity_type=EntityType.USER,
                entity_id=f"user_{i}",
                features={},
                predicted_class="HIGH",
                latency_ms=latency_ms,
                predicted_at=when - timedelta(seconds=i),
            )
            for i in range(count)
        )


def make_parts(
    settings: Settings, engine: Engine, limiter: RateLimiter, deployed: Iterable[str]
) -> Components:
    """Components over the stubs (no online store: nothing here predicts)."""
    return Components(
        settings=settings,
        engine=engine,
        online=None,  # type: ignore[arg-type]
        models=StubModels(deployed),  # type: ignore[arg-type]
        prediction_log=StubLog(),  # type: ignore[arg-type]
        rate_limiter=limiter,
        metrics=ServingMetrics(CollectorRegistry()),
    )


def make_api(settings: Settings, parts: Components) -> FastAPI:
    """The real routers, auth and rate limiter over ``parts``, plus ``POST /serve-stub``, which
    counts a prediction and an error the way the serving step does (off the event loop)."""
    app = FastAPI()
    install_auth(app, settings)
    install_rate_limiter(app, parts.rate_limiter)
    app.state.serving = SimpleNamespace(parts=parts, health_redis=None)
    for router in ROUTERS:
        app.include_router(router)

    def count(served: int, failed: int) -> None:
        metrics = parts.metrics
        if served:
            metrics.predictions.labels(MOVE, "1", "HIGH").inc(served)
        if failed:
            metrics.count_errors(MOVE, "404", failed)

    @app.post("/serve-stub")
    async def serve_stub(principal: PredictPrincipal, served: int = 0, failed: int = 0) -> str:
        await run_in_threadpool(count, served, failed)
        return principal.tenant_id

    return app
