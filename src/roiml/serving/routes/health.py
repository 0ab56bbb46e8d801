"""``GET /health`` (200 when the service is ok, else 503 naming the failing parts) and
``GET /metrics`` (Prometheus), both open to anyone and rate limited.

Without the ``admin`` scope (auth on, no token or another scope) ``/health`` says only
``ok`` / ``degraded`` / ``down`` and which parts fail: the full report names error types,
the prediction log's spool and its usage, which are the operators' business. ``/metrics``
shows a caller only its own tenant's series of the tenant-labelled metrics
(:func:`roiml.serving.metrics.render`), and the Prometheus scraper holding
``ROIML_METRICS_TOKEN`` every tenant's.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from roiml.serving.dependencies import (
    MetricsViewer,
    PublicPrincipal,
    ServiceHealthDep,
    ServingDep,
)
from roiml.serving.health import PublicHealth, public_health
from roiml.serving.metrics import CONTENT_TYPE_LATEST, render
from roiml.serving.schemas import ErrorBody, ServiceHealth
from roiml.serving.security import Scope

__all__ = ["router"]

router = APIRouter(tags=["service"])

_HEALTH_RESPONSES: dict[int | str, dict[str, object]] = {
    503: {"model": PublicHealth | ServiceHealth},
    401: {"model": ErrorBody},
    429: {"model": ErrorBody},
}


@router.get(
    "/health",
    response_model=PublicHealth | ServiceHealth,
    responses=_HEALTH_RESPONSES,
    # Open to anyone; a token only adds detail. OpenAPI says "optional" as an empty
    # requirement beside the bearer; FastAPI lists the bearer alone (required) and appends
    # this list to its own.
    openapi_extra={"security": [{}]},
)
async def health(
    health: ServiceHealthDep, serving: ServingDep, principal: PublicPrincipal
) -> Response:
    """200 when every part is ok, else 503; the full report only with the ``admin`` scope."""
    report = health.cached()
    if report is None:
        report = await run_in_threadpool(health.get)
    public = public_health(report)
    status = 200 if public.status == "ok" else 503
    if principal is not None and Scope.ADMIN in principal.scopes:
        # The models are the caller's tenant's (an in-memory read), not the default tenant's.
        models = serving.parts.models.status(principal.tenant_id)
        body = report.model_copy(update={"models": models}).model_dump(mode="json")
        return JSONResponse(body, status_code=status)
    return JSONResponse(public.model_dump(mode="json"), status_code=status)


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(serving: ServingDep, viewer: MetricsViewer) -> Response:
    """The Prometheus exposition: the service's series, and the caller's tenant's (every
    tenant's for the scraper's token, ``ROIML_METRICS_TOKEN``)."""
    parts = serving.parts
    if viewer == "scraper":
        body = render(parts.metrics, parts.multiprocess_dir, None, all_tenants=True)
    else:
        tenant = viewer.tenant_id if viewer is not None else None
        body = render(parts.metrics, parts.multiprocess_dir, tenant)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
