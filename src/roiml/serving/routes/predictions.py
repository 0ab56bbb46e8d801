"""``POST /v1/predict/{model}``: one explained prediction of each of the four models."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from roiml.db.enums import PredictionType
from roiml.serving.dependencies import PredictPrincipal, serving_of
from roiml.serving.routes.common import BASE, ERRORS, json_response
from roiml.serving.schemas import REQUEST_MODELS, ErrorBody, PredictionRequest, PredictionResponse
from roiml.serving.service import ItemError

__all__ = ["BODY_ERRORS", "PREDICTION_ERRORS", "ROUTE_TYPES", "router"]

ROUTE_TYPES = {
    "move-probability": PredictionType.MOVE_PROBABILITY,
    "transaction-type": PredictionType.TRANSACTION_TYPE,
    "contact-timing": PredictionType.CONTACT_TIMING,
    "property-value": PredictionType.PROPERTY_VALUE,
}

# What a route with a JSON body may answer besides ERRORS: 400 for a body that is not text.
BODY_ERRORS: dict[int | str, dict[str, Any]] = {**ERRORS, 400: {"model": ErrorBody}}
# A prediction route's 422 also refuses an answer too far past the tenant's data.
PREDICTION_ERRORS: dict[int | str, dict[str, Any]] = {
    **BODY_ERRORS,
    422: {
        "model": ErrorBody,
        "description": "The request is not valid (detail says what to fix), or its answer would "
        "extrapolate more days past the tenant's data than ROIML_API_MAX_EXTRAPOLATION_DAYS "
        "allows (detail names the gap, the limit and the setting).",
    },
}

router = APIRouter(tags=["predictions"])


def _route(kind: PredictionType) -> Callable[..., Awaitable[Response]]:
    async def route(
        request: PredictionRequest, response: Response, http: Request, principal: PredictPrincipal
    ) -> Response:
        # The app's Serving straight off app.state, not through a dependency: FastAPI spends
        # more per dependency layer than this lookup costs, on the API's hottest path.
        serving = serving_of(http)
        if request.as_of_date is not None or not serving.online_ready:
            # Computing features as of a past instant reads SQL, and so does the fallback while
            # the online store's breaker is open: off the event loop, which must keep answering
            # /health and the requests the store can serve.
            outcome = (
                await run_in_threadpool(serving.serve, principal.tenant_id, [(kind, request)])
            )[0]
        else:
            outcome = serving.serve(principal.tenant_id, [(kind, request)])[0]
        if isinstance(outcome, ItemError):
            raise HTTPException(outcome.status_code, outcome.detail)
        return json_response(outcome.body, response)

    route.__doc__ = f"{kind.value.replace('_', ' ').title()}: an explained prediction."
    # The route's own request model (its prediction_type, feature names, horizon), which
    # FastAPI reads from the signature to validate the body and write the schema.
    route.__annotations__["request"] = REQUEST_MODELS[kind]
    return route


for _path, _kind in ROUTE_TYPES.items():
    router.post(
        f"{BASE}/v1/predict/{_path}",
        response_model=PredictionResponse,
        responses=PREDICTION_ERRORS,
        name=f"predict_{_kind.value.lower()}",
    )(_route(_kind))
