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
from roiml.serving.routes.common import BASE, ERRORS, json_response
from roiml.serving.schemas import BatchRequest, BatchResponse, PredictionRequest
from roiml.serving.service import ServedPrediction

__all__ = ["router"]

router = APIRouter(tags=["predictions"])


@router.post(f"{BASE}/v1/predict/batch", response_model=BatchResponse, responses=ERRORS)
async def predict_batch(
    batch: BatchRequest, response: Response, http: Request, principal: PredictPrincipal
) -> Response:
    """Up to 1000 requests of any models: one predict call per model, per-item errors."""
    started = time.perf_counter()
    serving = serving_of(http)
    items: list[tuple[PredictionType, PredictionRequest]] = [
        (item.prediction_type, item) for item in batch.requests
    ]
    # The log writer is woken once the response is sent, not while it is being written.
    outcomes = await run_in_threadpool(serving.serve, principal.tenant_id, items, wake=False)
    predictions, indexes, errors = [], [], []
    for index, (item, outcome) in enumerate(zip(batch.requests, outcomes, strict=True)):
        if isinstance(outcome, ServedPrediction):
            predictions.append(outcome.body)
            indexes.append(index)
        else:
            errors.append(
                {
                    "index": index,
                    "entity_id": item.entity_id,
                    "prediction_type": item.prediction_type.value,
                    "status_code": outcome.status_code,
                    "detail": outcome.detail,
                }
            )
    body: dict[str, Any] = {
        "predictions": predictions,
        "prediction_indexes": indexes,
        "errors": errors,
        "latency_ms": round((time.perf_counter() - started) * 1000, 3),
    }
    wake = BackgroundTask(serving.parts.prediction_log.wake)
    return json_response(body, response, wake)
