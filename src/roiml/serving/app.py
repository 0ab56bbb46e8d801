"""The prediction API: FastAPI app factory, routes, error handling and start-up wiring.

Routes live under ``/api/ml`` (the seed's base URL; OpenAPI docs at ``/api/ml/docs``) and are
also answered at ``/v1/...``: a tiny ASGI shim rewrites the short form, so there is one route
table and one schema.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from sqlalchemy import Engine, text
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from roiml.db.base import utcnow
from roiml.db.engine import make_engine
from roiml.db.enums import ModelType, PredictionType
from roiml.errors import RoimlError
from roiml.jsonformat import dumps
from roiml.models.artifact import MODEL_NAMES, ModelArtifact, model_type_of
from roiml.monitoring.dashboard import dashboard_router
from roiml.serving.health import model_health, record_feedback
from roiml.serving.metrics import CONTENT_TYPE_LATEST, ServingMetrics, render
from roiml.serving.model_cache import ModelCache, ModelUnavailableError
from roiml.serving.prediction_log import PredictionLog
from roiml.serving.ratelimit import (
    RateLimiter,
    install_rate_limiter,
    limited,
    make_rate_limiter,
)
from roiml.serving.schemas import (
    BatchRequest,
    BatchResponse,
    ErrorBody,
    FeedbackRequest,
    FeedbackResponse,
    ModelHealth,
    PredictionRequest,
    PredictionResponse,
    ServiceHealth,
)
from roiml.serving.security import Principal, check_startup, install_auth, require
from roiml.serving.security import Scope as AuthScope
from roiml.serving.service import ItemError, PredictionService, ServedPrediction
from roiml.settings import Settings
from roiml.store.online import OnlineStore, open_online_store

__all__ = ["Components", "asgi", "create_app", "registry_components", "serving_clock"]

log = logging.getLogger(__name__)
BASE = "/api/ml"
_ROUTE_TYPES = {
    "move-probability": PredictionType.MOVE_PROBABILITY,
    "transaction-type": PredictionType.TRANSACTION_TYPE,
    "contact-timing": PredictionType.CONTACT_TIMING,
    "property-value": PredictionType.PROPERTY_VALUE,
}
# Metric labels: the registered model names, looked up per item without an enum conversion.
_MODEL_LABELS = {kind: MODEL_NAMES[ModelType(kind.value)] for kind in PredictionType}
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (401, 403, 404, 413, 422, 429, 503)
}


@dataclass
class Components:
    """What the app runs on; tests build their own."""

    settings: Settings
    engine: Engine
    online: OnlineStore
    models: ModelCache
    prediction_log: PredictionLog
    rate_limiter: RateLimiter
    metrics: ServingMetrics
    multiprocess_dir: str | None = None
    # The serving clock: features and as-of checks are "now" by it (tests replay a past day).
    clock: Callable[[], datetime] = utcnow


def serving_clock(settings: Settings) -> Callable[[], datetime]:
    """The API's "now" as the settings ask: the wall clock (naive UTC), or, with
    ``settings.today`` pinned, that day at the wall clock's time of day.

    The real time of day rather than a fixed hour: answers keep their order and stay distinct
    instants (the log, the dashboard's last prediction and latency move as they would), while
    every one of them lands in the pinned UTC day that monitoring judges, at whatever real hour
    the demo or replay runs; past the real midnight the clock starts the same pinned day again.
    """
    pinned = settings.today
    if pinned is None:
        return utcnow

    def pinned_clock() -> datetime:
        return datetime.combine(pinned, utcnow().time())

    return pinned_clock


def registry_components(
    settings: Settings,
    multiprocess_dir: str | None = None,
    *,
    metrics: ServingMetrics | None = None,
) -> Components:
    """The production wiring: registry-backed models, the settings' stores and log, and the
    clock of :func:`serving_clock`. ``metrics`` default to the process's Prometheus registry,
    which takes one set only: an app built in process beside the served one (the demo's calls,
    a population scoring) passes ``ServingMetrics(CollectorRegistry())``."""
    check_startup(settings)
    engine = make_engine(settings.resolved_database_url)
    registries: dict[str, Any] = {}

    def registry(tenant: str) -> Any:
        if tenant not in registries:
            from roiml.registry import ModelRegistry  # MLflow imports take seconds

            registries[tenant] = ModelRegistry(settings, engine, tenant)
        return registries[tenant]

    def load(tenant: str, name: str) -> tuple[str, ModelArtifact]:
        reg = registry(tenant)
        version = probe(tenant, name)
        if version is None:
            raise ModelUnavailableError(
                f"{name} has no production version for tenant {tenant!r}; train and promote one "
                f"(roiml train, then roiml models promote {name} N production)"
            )
        return version, reg.load_model(name, version)

    def probe(tenant: str, name: str) -> str | None:
        version: str | None = registry(tenant).current_version(name, "production")
        return version

    return Components(
        settings=settings,
        engine=engine,
        online=open_online_store(settings),
        models=ModelCache(load, probe, settings.model_poll_seconds),
        prediction_log=PredictionLog(settings, engine),
        rate_limiter=make_rate_limiter(settings),
        metrics=metrics if metrics is not None else ServingMetrics(),
        multiprocess_dir=multiprocess_dir,
        clock=serving_clock(settings),
    )


class _Edge:
    """The outermost layer: serves ``/v1/...`` as ``/api/ml/v1/...`` (the seed names both) and
    counts every request by route template and status. Pure ASGI: a ``BaseHTTPMiddleware``
    would cost more than the prediction itself."""

    def __init__(self, app: ASGIApp, metrics: ServingMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope = dict(scope)
        if scope["path"].startswith("/v1/"):
            scope["path"] = BASE + scope["path"]
            scope["raw_path"] = scope["path"].encode()
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)


def create_app(settings: Settings, components: Components | None = None) -> FastAPI:
    """The API. ``components`` defaults to the registry-backed production wiring."""
    parts = components or registry_components(settings)
    service = PredictionService(
        parts.engine,
        parts.online,
        parts.models,
        settings.data_dir,
        clock=parts.clock,
        batch_threads=settings.api_batch_threads,
    )
    metrics = parts.metrics

    # One client for every /health call: a new one per call paid a TCP connect each time.
    health_redis = _redis_client(settings.redis_url)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(parts.models.preload, settings.tenant_id)
        parts.models.start()
        yield
        parts.models.stop()
        service.close()
        if health_redis is not None:
            health_redis.close()
        await parts.rate_limiter.aclose()
        parts.prediction_log.close()
        parts.online.close()
        parts.engine.dispose()

    app = FastAPI(
        title="roiml prediction API",
        version="1.0",
        description="Move probability, transaction type, contact timing and property value, "
        "each with exact TreeSHAP explanations.",
        docs_url=f"{BASE}/docs",
        redoc_url=None,
        openapi_url=f"{BASE}/openapi.json",
        lifespan=lifespan,
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )

    install_auth(app, settings)
    install_rate_limiter(app, parts.rate_limiter)
    predictor = limited(AuthScope.PREDICT)
    feedback_auth = limited(AuthScope.FEEDBACK)
    read_auth = require(AuthScope.PREDICT)

    def serve(
        tenant: str, items: list[tuple[PredictionType, PredictionRequest]], *, wake: bool = True
    ) -> list[ServedPrediction | ItemError]:
        started = time.perf_counter()
        outcomes = service.predict(tenant, items)
        served = [o.log_record for o in outcomes if isinstance(o, ServedPrediction)]
        if served:
            parts.prediction_log.submit(served, wake=wake)
        seconds = time.perf_counter() - started
        # Counted per label set, one call each: a batch of 1000 made 3000 metric calls.
        predicted: Counter[tuple[str, str]] = Counter()
        sources: Counter[str] = Counter()
        failed: Counter[tuple[str, str]] = Counter()
        for (kind, _), outcome in zip(items, outcomes, strict=True):
            name = _MODEL_LABELS[kind]
            if isinstance(outcome, ServedPrediction):
                predicted[name, outcome.body["predicted_class"] or ""] += 1
                sources[outcome.body["feature_source"]] += 1
            else:
                failed[name, str(outcome.status_code)] += 1
        for (name, label), count in predicted.items():
            metrics.predictions.labels(name, label).inc(count)
        for source, count in sources.items():
            metrics.feature_reads.labels(source).inc(count)
        for labels, count in failed.items():
            metrics.prediction_errors.labels(*labels).inc(count)
        # One observation per model and call: what the call took to serve that model's items.
        for name in {name for name, _ in predicted}:
            metrics.prediction_latency.labels(name).observe(seconds)
        return outcomes

    def predict_route(kind: PredictionType) -> Callable[..., Awaitable[Response]]:
        async def route(
            request: PredictionRequest,
            response: Response,
            principal: Principal = Depends(predictor),
        ) -> Response:
            if request.as_of_date is not None:
                # Computing features as of a past instant reads SQL: off the event loop.
                outcome = (await run_in_threadpool(serve, principal.tenant_id, [(kind, request)]))[
                    0
                ]
            else:
                outcome = serve(principal.tenant_id, [(kind, request)])[0]
            if isinstance(outcome, ItemError):
                raise HTTPException(outcome.status_code, outcome.detail)
            return _json_response(outcome.body, response)

        route.__doc__ = f"{kind.value.replace('_', ' ').title()}: an explained prediction."
        return route

    for path, kind in _ROUTE_TYPES.items():
        app.post(
            f"{BASE}/v1/predict/{path}",
            response_model=PredictionResponse,
            responses=_ERRORS,
            name=f"predict_{kind.value.lower()}",
            tags=["predictions"],
        )(predict_route(kind))

    @app.post(
        f"{BASE}/v1/predict/batch",
        response_model=BatchResponse,
        responses=_ERRORS,
        tags=["predictions"],
    )
    async def predict_batch(
        batch: BatchRequest, response: Response, principal: Principal = Depends(predictor)
    ) -> Response:
        """Up to 1000 requests of any models: one predict call per model, per-item errors."""
        started = time.perf_counter()
        items: list[tuple[PredictionType, PredictionRequest]] = [
            (item.prediction_type, item) for item in batch.requests
        ]
        # The log writer is woken once the response is sent, not while it is being written.
        outcomes = await run_in_threadpool(serve, principal.tenant_id, items, wake=False)
        predictions, indexes, errors = [], [], []
        for index, (item, outcome) in enumerate(zip(batch.requests, outcomes, strict=True)):
            if isinstance(outcome, ServedPrediction):
                predictions.append(outcome.body)
                indexes.append(index)
            else:
                errors.append(
                    {
                        "index": index,
                        "entity_id": item.entity_id,
                        "prediction_type": item.prediction_type.value,
                        "status_code": outcome.status_code,
                        "detail": outcome.detail,
                    }
                )
        body = {
            "predictions": predictions,
            "prediction_indexes": indexes,
            "errors": errors,
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
        }
        return _json_response(body, response, BackgroundTask(parts.prediction_log.wake))

    @app.get(
        f"{BASE}/v1/models/{{model_name}}/health",
        response_model=ModelHealth,
        responses=_ERRORS,
        tags=["models"],
    )
    async def health_of_model(
        model_name: str, principal: Principal = Depends(read_auth)
    ) -> ModelHealth:
        """The model's deployment, traffic, latency, errors and drift."""
        try:
            model_type = model_type_of(model_name)
        except RoimlError as exc:
            raise HTTPException(404, str(exc)) from exc
        return await run_in_threadpool(model_health, parts, principal.tenant_id, model_type)

    @app.post(
        f"{BASE}/v1/predictions/{{prediction_id}}/feedback",
        response_model=FeedbackResponse,
        responses=_ERRORS,
        tags=["predictions"],
    )
    async def feedback(
        prediction_id: str, body: FeedbackRequest, principal: Principal = Depends(feedback_auth)
    ) -> FeedbackResponse:
        """Record the real outcome of a prediction (for realised performance)."""
        if body.actual_value is None and body.actual_class is None:
            raise HTTPException(422, "give actual_value, actual_class or both")
        return await run_in_threadpool(
            record_feedback, parts, principal.tenant_id, prediction_id, body
        )

    @app.get("/health", response_model=ServiceHealth, responses={503: {"model": ServiceHealth}})
    async def health() -> Response:
        """Database, Redis, registry, prediction log and models: 200, or 503 naming what's down."""
        report = await run_in_threadpool(_service_health, parts, health_redis)
        status = 200 if report.status == "ok" else 503
        return JSONResponse(report.model_dump(mode="json"), status_code=status)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(
            render(parts.metrics, parts.multiprocess_dir), media_type=CONTENT_TYPE_LATEST
        )

    app.include_router(dashboard_router(parts.engine, parts.clock))
    _install_error_handlers(app)
    app.state.metrics = metrics
    return app


def asgi(
    settings: Settings,
    components: Components | None = None,
    *,
    multiprocess_dir: str | None = None,
) -> ASGIApp:
    """The app as served: with the ``/v1`` short paths and request metrics."""
    app = create_app(settings, components or registry_components(settings, multiprocess_dir))
    return _Edge(app, app.state.metrics)


def _json_response(
    body: Any, headers_from: Response, background: BackgroundTask | None = None
) -> Response:
    """``body`` (the shape of the route's response model) written by orjson, with the headers
    the route's dependencies set on ``headers_from`` (FastAPI copies those only onto responses
    it builds itself)."""
    response = Response(dumps(body), media_type="application/json", background=background)
    response.raw_headers.extend(
        (key, value)
        for key, value in headers_from.raw_headers
        if key not in (b"content-length", b"content-type")
    )
    return response


def _redis_client(url: str | None) -> Any:
    if not url:
        return None
    import redis

    return redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)


def _service_health(parts: Components, redis_client: Any) -> ServiceHealth:
    database = "ok"
    try:
        with parts.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        database = f"down: {type(exc).__name__}"
    redis_state = "not configured"
    if redis_client is not None:
        try:
            redis_client.ping()
            redis_state = "ok"
        except Exception as exc:
            redis_state = f"down: {type(exc).__name__}"
    registry = "ok"
    models = parts.models.status(parts.settings.tenant_id)
    loaded = parts.models.loaded()
    if not loaded:
        registry = "no model loaded"
    log_stats = parts.prediction_log.stats()
    down = database != "ok" or redis_state.startswith("down") or not loaded
    return ServiceHealth(
        status="degraded" if down else "ok",
        database=database,
        redis=redis_state,
        registry=registry,
        prediction_log=dict(log_stats),
        models=models,
    )


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RoimlError)
    async def roiml_error(_: Request, exc: RoimlError) -> JSONResponse:
        status = 503 if isinstance(exc, ModelUnavailableError) else 422
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=exc)
        return JSONResponse(
            {"detail": "internal error; it was logged, and the request can be retried"},
            status_code=500,
        )
