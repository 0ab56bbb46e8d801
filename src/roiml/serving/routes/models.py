"""``GET /v1/models/{model_name}/health``: one model's deployment, traffic, errors and drift,
for the caller's tenant, from the roll-up (:class:`roiml.serving.health.ModelHealthRollup`)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from starlette.concurrency import run_in_threadpool

from roiml.errors import RoimlError
from roiml.models.artifact import model_type_of
from roiml.serving.dependencies import HealthRollupDep, ReadPrincipal
from roiml.serving.routes.common import BASE, ERRORS
from roiml.serving.schemas import ModelHealth

__all__ = ["router"]

router = APIRouter(tags=["models"])


@router.get(f"{BASE}/v1/models/{{model_name}}/health", response_model=ModelHealth, responses=ERRORS)
async def health_of_model(
    model_name: str, rollup: HealthRollupDep, principal: ReadPrincipal
) -> ModelHealth:
    """The model's deployment, traffic, latency, errors and drift (traffic at most ~2 s old)."""
    try:
        model_type = model_type_of(model_name)
    except RoimlError as exc:
        raise HTTPException(404, str(exc)) from exc
    tenant = principal.tenant_id
    cached = rollup.cached(tenant, model_type)
    if cached is not None:
        return cached
    return await run_in_threadpool(rollup.get, tenant, model_type)
