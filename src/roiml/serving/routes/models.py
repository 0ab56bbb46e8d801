"""The caller's tenant's models: ``GET /v1/models`` (what is served), ``GET
/v1/models/{model_name}/features`` (a model's feature service: the inputs its served version
reads) and ``GET /v1/models/{model_name}/health`` (deployment, traffic, errors and drift, from the
roll-up, :class:`roiml.serving.health.ModelHealthRollup`)."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, HTTPException
from starlette.concurrency import run_in_threadpool

from roiml.db.enums import PredictionType
from roiml.errors import RoimlError
from roiml.features.catalog import CATALOG
from roiml.models.artifact import HORIZON_FEATURE, MODEL_NAMES, model_type_of
from roiml.serving.dependencies import HealthRollupDep, ReadPrincipal, ServingDep
from roiml.serving.model_cache import ModelUnavailableError
from roiml.serving.routes.common import BASE, ERRORS
from roiml.serving.schemas import FeatureInfo, FeatureService, ModelHealth, ModelList, ServedModel

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


@router.get(f"{BASE}/v1/models", response_model=ModelList, responses=ERRORS)
async def list_models(serving: ServingDep, principal: ReadPrincipal) -> ModelList:
    """The four models as the caller's tenant is served them: version, when it was loaded and
    how many inputs it reads, or why it is not served."""
    tenant = principal.tenant_id
    cache = serving.parts.models
    loaded = cache.loaded()
    status = cache.status(tenant)
    models = []
    for model_type, name in MODEL_NAMES.items():
        kind = PredictionType(model_type.value)
        served = loaded.get((tenant, model_type))
        if served is None:
            models.append(
                ServedModel(
                    name=name,
                    prediction_type=kind,
                    status="UNAVAILABLE",
                    version=None,
                    loaded_at=None,
                    feature_count=None,
                    detail=status[name],
                )
            )
            continue
        models.append(
            ServedModel(
                name=name,
                prediction_type=kind,
                status="SERVING",
                version=served.version,
                loaded_at=served.loaded_at,
                feature_count=len(_stored_inputs(served.artifact.feature_names)),
                detail=None,
            )
        )
    return ModelList(tenant_id=tenant, models=models)


@router.get(
    f"{BASE}/v1/models/{{model_name}}/features", response_model=FeatureService, responses=ERRORS
)
async def features_of_model(
    model_name: str, serving: ServingDep, principal: ReadPrincipal
) -> FeatureService:
    """The model's feature service: the inputs of its served version, in the order a request's
    ``features`` gives them, each described by the catalog."""
    try:
        model_type = model_type_of(model_name)
    except RoimlError as exc:
        raise HTTPException(404, str(exc)) from exc
    try:
        served = await run_in_threadpool(serving.parts.models.get, principal.tenant_id, model_type)
    except ModelUnavailableError as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "30"}) from exc
    features = []
    for name in _stored_inputs(served.artifact.feature_names):
        definition = CATALOG.features.get(name)
        features.append(
            FeatureInfo(
                name=name,
                category=definition.category.value if definition else None,
                dtype=definition.dtype.value if definition else None,
                description=definition.description if definition else None,
            )
        )
    return FeatureService(name=model_name, version=served.version, features=features)


def _stored_inputs(names: Sequence[str]) -> list[str]:
    """The stored features a model reads, in its order (the value model's horizon is the
    request's own ``horizon_months``, not a stored feature)."""
    return [name for name in names if name != HORIZON_FEATURE]
