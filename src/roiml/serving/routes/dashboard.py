"""The dashboard's routes: ``GET /api/ml/dashboard`` (the page) and ``GET
/api/ml/dashboard/data`` (the same figures as JSON), both for the caller's tenant.

With auth on, both need the ``admin`` scope: the page shows every model's drift, performance
and pipeline state of the tenant, which is more than a prediction client needs to see. A
browser reaches it through a proxy that adds the bearer token (docs/MONITORING.md).

The figures and the page are :mod:`roiml.monitoring.dashboard`'s; this is their HTTP face.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from roiml.monitoring.dashboard import DashboardData, load_dashboard, render_page
from roiml.monitoring.dashboard.queries import MAX_DAYS
from roiml.serving.dependencies import AdminPrincipal, ComponentsDep
from roiml.serving.routes.common import BASE
from roiml.serving.schemas import ErrorBody
from roiml.serving.security import Scope

__all__ = ["DASHBOARD_PATH", "DASHBOARD_SCOPE", "router"]

DASHBOARD_PATH = f"{BASE}/dashboard"
# What AdminPrincipal checks.
DASHBOARD_SCOPE = Scope.ADMIN

_ERROR_STATUSES = (401, 403, 422, 429)
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in _ERROR_STATUSES
}
# The page's errors are JSON like every route's; with "model", FastAPI would document them in
# the page's own media type (text/html).
_PAGE_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {
        "description": HTTPStatus(status).phrase,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }
    for status in _ERROR_STATUSES
}
Days = Annotated[
    int,
    Query(ge=1, le=MAX_DAYS, description="Calendar days to show, today included."),
]

router = APIRouter(tags=["monitoring"])


@router.get(DASHBOARD_PATH, response_class=HTMLResponse, responses=_PAGE_ERRORS)
async def dashboard_page(
    parts: ComponentsDep, principal: AdminPrincipal, days: Days = 30
) -> HTMLResponse:
    """The monitoring dashboard: traffic and latency per item, class mix, drift with reference
    against current distributions, trends over days, performance, data freshness."""
    data = await run_in_threadpool(
        load_dashboard, parts.engine, principal.tenant_id, parts.clock(), days
    )
    return HTMLResponse(
        render_page(data, base_path=DASHBOARD_PATH),
        headers={"Cache-Control": "no-store"},
    )


@router.get(f"{DASHBOARD_PATH}/data", response_model=DashboardData, responses=_ERRORS)
async def dashboard_data(
    parts: ComponentsDep, principal: AdminPrincipal, days: Days = 30
) -> DashboardData:
    """The dashboard's figures as JSON, aggregated per day, model, class and feature."""
    return await run_in_threadpool(
        load_dashboard, parts.engine, principal.tenant_id, parts.clock(), days
    )
