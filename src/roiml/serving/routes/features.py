"""``POST /v1/features/online``: what the online store holds for a few homeowners (Feast's
online read; :func:`roiml.store.online_read.read_online`), scoped to the caller's tenant."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from starlette.concurrency import run_in_threadpool

from roiml.errors import FeatureError
from roiml.serving.dependencies import ReadPrincipal, ServingDep
from roiml.serving.routes.common import BASE, ERRORS
from roiml.serving.schemas import (
    OnlineEntityFeatures,
    OnlineFeaturesRequest,
    OnlineFeaturesResponse,
    OnlineSetValues,
)
from roiml.store.online_read import read_online

__all__ = ["router"]

router = APIRouter(tags=["features"])


@router.post(f"{BASE}/v1/features/online", response_model=OnlineFeaturesResponse, responses=ERRORS)
async def online_features(
    body: OnlineFeaturesRequest, serving: ServingDep, principal: ReadPrincipal
) -> OnlineFeaturesResponse:
    """The online store's vectors of each homeowner, per feature set, with how old each is.

    No fallback: a set the store does not hold fresh is null (predictions would read it from
    the warm store or compute it). An id that is no homeowner of the tenant is a 404 item.
    """
    tenant = principal.tenant_id
    try:
        read = await run_in_threadpool(
            read_online,
            serving.service.vectors,
            tenant,
            body.entity_ids,
            body.feature_sets,
            serving.parts.clock(),
        )
    except FeatureError as exc:
        raise HTTPException(422, str(exc)) from exc
    results = [
        OnlineEntityFeatures(
            entity_id=entity.entity_id,
            status=200 if entity.known else 404,
            detail=None if entity.known else f"no homeowner {entity.entity_id!r} in this tenant",
            feature_sets={
                name: None
                if found is None
                else OnlineSetValues(
                    as_of=found.as_of, age_seconds=found.age_seconds, features=found.values
                )
                for name, found in entity.sets.items()
            },
        )
        for entity in read
    ]
    names = list(read[0].sets) if read else []
    return OnlineFeaturesResponse(tenant_id=tenant, feature_sets=names, results=results)
