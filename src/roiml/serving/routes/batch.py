"""``POST /v1/predict/batch``: up to 1000 requests of any models in one call."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from roiml.db.enums import PredictionType
from roiml.serving.dependencies import PredictPrincipal, serving_of
from roiml.serving.routes.common import BASE, json_response
from roiml.serving.routes.predictions import BODY_ERRORS
from roiml.serving.schemas import (
    BatchRequest,
    BatchResponse,
    PredictionRequest,
    validate_batch_item,
)
from roiml.serving.service import ServedPrediction

__all__ = ["router"]

router = APIRouter(tags=["predictions"])


@router.post(f"{BASE}/v1/predict/batch", response_model=BatchResponse, responses=BODY_ERRORS)
async def predict_batch(
    batch: BatchRequest, response: Response, http: Request, principal: PredictPrincipal
) -> Response:
    """Up to 1000 requests of any models: one predict call per model, per-item errors (an
    item that is not a valid request is its own 422, so is one whose answer would extrapolate
    past ROIML_API_MAX_EXTRAPOLATION_DAYS; the others are served)."""
    started = time.perf_counter()
    serving = serving_of(http)
    items: list[tuple[PredictionType, PredictionRequest]] = []
    positions: list[int] = []
    errors: list[dict[str, Any]] = []
    for index, raw in enumerate(batch.requests):
        try:
            item = validate_batch_item(raw)
        except ValueError as exc:
            errors.append(_invalid(index, raw, str(exc)))
            continue
        items.append((item.prediction_type, item))  # type: ignore[arg-type]
        positions.append(index)
    # The log writer is woken once the response is sent, not while it is being written.
    outcomes = (
        await run_in_threadpool(serving.serve, principal.tenant_id, items, wake=False)
        if items
        else []
    )
    predictions, indexes = [], []
    for index, (kind, item), outcome in zip(positions, items, outcomes, strict=True):
        if isinstance(outcome, ServedPrediction):
            predictions.append(outcome.body)
            indexes.append(index)
        else:
            errors.append(
                {
                    "index": index,
                    "entity_id": item.entity_id,
                    "prediction_type": kind.value,
                    "status_code": outcome.status_code,
                    "detail": outcome.detail,
                }
            )
    if len(errors) > 1:
        errors.sort(key=lambda error: error["index"])
    body: dict[str, Any] = {
        "predictions": predictions,
        "prediction_indexes": indexes,
        "errors": errors,
        "latency_ms": round((time.perf_counter() - started) * 1000, 3),
    }
    wake = BackgroundTask(serving.parts.prediction_log.wake)
    return json_response(body, response, wake)


def _invalid(index: int, raw: object, detail: str) -> dict[str, Any]:
    """The error entry of an item that is not a valid request: what it named, if valid."""
    entity = raw.get("entity_id") if isinstance(raw, dict) else None
    kind = raw.get("prediction_type") if isinstance(raw, dict) else None
    return {
        "index": index,
        "entity_id": entity if isinstance(entity, str) and 0 < len(entity) <= 64 else None,
        "prediction_type": kind if isinstance(kind, str) and kind in _KINDS else None,
        "status_code": 422,
        "detail": f"requests[{index}]: {detail}",
    }


_KINDS = frozenset(kind.value for kind in PredictionType)
