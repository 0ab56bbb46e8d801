"""``GET /health`` (the service's parts: 200, or 503 naming what is down) and ``GET /metrics``
(Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from roiml.serving.dependencies import ServingDep
from roiml.serving.health import service_health
from roiml.serving.metrics import CONTENT_TYPE_LATEST, render
from roiml.serving.schemas import ServiceHealth

__all__ = ["router"]

router = APIRouter()


@router.get("/health", response_model=ServiceHealth, responses={503: {"model": ServiceHealth}})
async def health(serving: ServingDep) -> Response:
    """Database, Redis, registry, prediction log and models: 200, or 503 naming what's down."""
    report = await run_in_threadpool(service_health, serving.parts, serving.health_redis)
    status = 200 if report.status == "ok" else 503
    return JSONResponse(report.model_dump(mode="json"), status_code=status)


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(serving: ServingDep) -> Response:
    parts = serving.parts
    return Response(render(parts.metrics, parts.multiprocess_dir), media_type=CONTENT_TYPE_LATEST)
