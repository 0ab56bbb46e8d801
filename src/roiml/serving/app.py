"""The prediction API's app factory: wires the routes (:mod:`roiml.serving.routes`), auth,
rate limits, CORS, error handling, start-up and shutdown around one
:class:`~roiml.serving.runtime.Serving`.

Routes live under ``/api/ml`` (the seed's base URL; OpenAPI docs at ``/api/ml/docs``) and are
also answered at ``/v1/...``: a tiny ASGI shim rewrites the short form, so there is one route
table and one schema.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from redis.exceptions import RedisError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from roiml.errors import PredictionLogFullError, RoimlError
from roiml.logs import reset_request_id, set_request_id
from roiml.serving.body_limit import BodyLimit
from roiml.serving.components import Components, registry_components
from roiml.serving.docs_pages import install_docs
from roiml.serving.metrics import ServingMetrics
from roiml.serving.model_cache import ModelUnavailableError
from roiml.serving.monitoring_gauges import database_gauges
from roiml.serving.ratelimit import install_rate_limiter
from roiml.serving.request_context import HEADER, log_access, request_id_of
from roiml.serving.routes import ROUTERS
from roiml.serving.routes.common import BASE
from roiml.serving.runtime import Serving
from roiml.serving.security import install_auth
from roiml.settings import Settings
from roiml.store.breaker import DependencyUnavailableError

__all__ = ["asgi", "create_app"]

log = logging.getLogger(__name__)


class _Edge:
    """The outermost layer: serves ``/v1/...`` as ``/api/ml/v1/...`` (the seed names both),
    gives every request its id (:mod:`~roiml.serving.request_context`: the caller's sane
    ``X-Request-ID`` or a new one, answered in the same header and on every log record of the
    request), counts it by route template and status, and writes its access-log line
    (``access_log``). Pure ASGI: a ``BaseHTTPMiddleware`` would cost more than the prediction
    itself."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: ServingMetrics,
        retry_after: int = 1,
        *,
        access_log: bool = True,
    ) -> None:
        self.app = app
        self.metrics = metrics
        # Every 503 says when to come back, the health report's included.
        self.retry_after = (b"retry-after", str(retry_after).encode())
        self.access_log = access_log

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
        answered = False
        request_id = request_id_of(scope.get("headers", ()))
        token = set_request_id(request_id)
        id_header = (HEADER, request_id.encode("ascii"))

        async def send_status(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.body" and not message.get("more_body"):
                answered = True
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != HEADER]
                headers.append(id_header)
                if status == 503 and not any(k.lower() == b"retry-after" for k, _ in headers):
                    headers.append(self.retry_after)
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except Exception:
            # Starlette's error middleware sends the 500 and then re-raises, and uvicorn closes
            # a connection whose app raised: the client's next request on it was reset. Once
            # the 500 has gone out whole, the error is logged here and the connection kept.
            if not answered:
                raise
            route = getattr(scope.get("route"), "path", "unmatched")
            log.exception("unhandled error in %s %s (answered 500)", scope["method"], route)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            seconds = time.perf_counter() - started
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.latency.labels(route).observe(seconds)
            if self.access_log:
                client = scope.get("client")
                log_access(
                    method=scope["method"],
                    route=route,
                    status=status,
                    seconds=seconds,
                    request_id=request_id,
                    tenant=_tenant_of(scope),
                    client=client[0] if client else None,
                )
            reset_request_id(token)


def _tenant_of(scope: Scope) -> str | None:
    # Set by authentication on the request's state (a 401 or an unmatched route has none).
    # The request's state, not the context variable: a dependency run on a worker thread sets
    # that in a copy of the context, which never comes back here.
    principal = scope.get("state", {}).get("principal")
    return getattr(principal, "tenant_id", None)


# The docs pages' sections, in this order, each saying what its routes are for.
OPENAPI_TAGS: list[dict[str, str]] = [
    {
        "name": "predictions",
        "description": "Explained predictions of the four models, one or up to 1,000 at once, "
        "and the real outcome fed back. Features come from the online store unless given.",
    },
    {
        "name": "models",
        "description": "The caller's tenant's models: which versions are served, the inputs "
        "each reads (its feature service), and each one's traffic, errors and drift.",
    },
    {
        "name": "features",
        "description": "The online store as it is: each homeowner's stored feature vectors "
        "per feature set, with how old each is (Feast's online read; no fallback).",
    },
    {
        "name": "service",
        "description": "Liveness and dependencies (public status; details need the admin "
        "scope) and Prometheus metrics.",
    },
    {
        "name": "monitoring",
        "description": "The monitoring dashboard (HTML) and the data it draws.",
    },
]


def create_app(settings: Settings, components: Components | None = None) -> FastAPI:
    """The API. ``components`` defaults to the registry-backed production wiring."""
    serving = Serving.build(settings, components or registry_components(settings))
    parts = serving.parts
    # Drift, decay and freshness on /metrics, for the server's tenant and every tenant it has
    # loaded a model for; read in the background, never per scrape.
    gauges = database_gauges(
        parts.engine,
        settings.data_dir,
        lambda: {settings.tenant_id, *(tenant for tenant, _ in parts.models.loaded())},
        parts.clock,
    )
    parts.metrics.add_collector("monitoring", gauges)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(parts.models.preload, settings.tenant_id)
        parts.models.start()
        gauges.start()
        yield
        gauges.stop()
        await parts.rate_limiter.aclose()
        serving.close()

    app = FastAPI(
        title="roiml prediction API",
        version="1.0",
        description="Move probability, transaction type, contact timing and property value, "
        "each with exact TreeSHAP explanations.",
        # Served by install_docs from the package: FastAPI's pages load Swagger UI from a CDN.
        docs_url=None,
        redoc_url=None,
        openapi_url=f"{BASE}/openapi.json",
        openapi_tags=OPENAPI_TAGS,
        lifespan=lifespan,
    )
    # Added first, so CORS (when on) wraps it and a 413 carries its headers too.
    app.add_middleware(BodyLimit, max_bytes=settings.api_max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            # A browser client may send its own request id and read the one answered.
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID"],
        )
    install_auth(app, settings)
    install_rate_limiter(app, parts.rate_limiter)
    # What roiml.serving.dependencies hands the routes.
    app.state.serving = serving
    app.state.metrics = parts.metrics
    for router in ROUTERS:
        app.include_router(router)
    install_docs(app, BASE)
    _install_error_handlers(app, settings)
    return app


def asgi(
    settings: Settings,
    components: Components | None = None,
    *,
    multiprocess_dir: str | None = None,
) -> ASGIApp:
    """The app as served: with the ``/v1`` short paths and request metrics."""
    app = create_app(settings, components or registry_components(settings, multiprocess_dir))
    return _Edge(
        app,
        app.state.metrics,
        max(1, math.ceil(settings.breaker_cooldown_seconds)),
        access_log=settings.access_log,
    )


def _install_error_handlers(app: FastAPI, settings: Settings) -> None:
    # Every 503 says when to come back: a breaker's next probe is at most a cool-down away.
    retry_after = {"Retry-After": str(max(1, math.ceil(settings.breaker_cooldown_seconds)))}

    @app.exception_handler(RoimlError)
    async def roiml_error(_: Request, exc: RoimlError) -> JSONResponse:
        # Both are "not now", not "not this request": a 422 would tell the client not to retry.
        if isinstance(exc, ModelUnavailableError | PredictionLogFullError):
            return JSONResponse({"detail": str(exc)}, status_code=503, headers=retry_after)
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(DependencyUnavailableError)
    async def unavailable(_: Request, exc: DependencyUnavailableError) -> JSONResponse:
        headers = {"Retry-After": exc.retry_after_header}
        return JSONResponse({"detail": str(exc)}, status_code=503, headers=headers)

    # A store failing under a route that does not degrade (feedback, model health): a 503 the
    # client can retry, never a 500.
    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(psycopg.OperationalError)
    @app.exception_handler(psycopg.InterfaceError)
    @app.exception_handler(PoolTimeoutError)
    @app.exception_handler(RedisError)
    async def store_down(_: Request, exc: Exception) -> JSONResponse:
        log.warning("a store is unavailable: %s", type(exc).__name__)
        detail = f"a store is unavailable ({type(exc).__name__}); retry in a moment"
        return JSONResponse({"detail": detail}, status_code=503, headers=retry_after)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 503 and not (exc.headers and "Retry-After" in exc.headers):
            exc.headers = {**(exc.headers or {}), **retry_after}
        return await http_exception_handler(request, exc)

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
