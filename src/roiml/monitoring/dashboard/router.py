"""The dashboard's routes: ``GET /api/ml/dashboard`` (the page) and ``GET
/api/ml/dashboard/data`` (the same figures as JSON), both for the caller's tenant.

With auth on, both need the ``admin`` scope: the page shows every model's drift, performance
and pipeline state of the tenant, which is more than a prediction client needs to see. A
browser reaches it through a proxy that adds the bearer token (docs/MONITORING.md).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from roiml.db.base import utcnow
from roiml.monitoring.dashboard.queries import MAX_DAYS, load_dashboard
from roiml.monitoring.dashboard.render import render_page
from roiml.monitoring.dashboard.schemas import DashboardData
from roiml.serving.ratelimit import limited
from roiml.serving.schemas import ErrorBody
from roiml.serving.security import Principal, Scope

__all__ = ["DASHBOARD_PATH", "DASHBOARD_SCOPE", "dashboard_router"]

DASHBOARD_PATH = "/api/ml/dashboard"
DASHBOARD_SCOPE = Scope.ADMIN

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (401, 403, 422, 429)
}
Days = Annotated[
    int,
    Query(ge=1, le=MAX_DAYS, description="Calendar days to show, today included."),
]


def dashboard_router(engine: Engine, clock: Callable[[], datetime] = utcnow) -> APIRouter:
    """The dashboard routes over ``engine``; ``clock`` is the serving clock ("today")."""
    router = APIRouter(tags=["monitoring"])
    # A default, not Annotated[...]: the annotations are strings (PEP 563) that FastAPI resolves
    # in the module's globals, where this local would not be found.
    reader = limited(DASHBOARD_SCOPE)

    @router.get(DASHBOARD_PATH, response_class=HTMLResponse, responses=_ERRORS)
    async def dashboard_page(
        days: Days = 30, principal: Principal = Depends(reader)
    ) -> HTMLResponse:
        """The monitoring dashboard: traffic, class mix, drift, performance, data freshness."""
        data = await run_in_threadpool(load_dashboard, engine, principal.tenant_id, clock(), days)
        return HTMLResponse(
            render_page(data, base_path=DASHBOARD_PATH),
            headers={"Cache-Control": "no-store"},
        )

    @router.get(f"{DASHBOARD_PATH}/data", response_model=DashboardData, responses=_ERRORS)
    async def dashboard_data(
        days: Days = 30, principal: Principal = Depends(reader)
    ) -> DashboardData:
        """The dashboard's figures as JSON, aggregated per day, model, class and feature."""
        return await run_in_threadpool(load_dashboard, engine, principal.tenant_id, clock(), days)

    return router
