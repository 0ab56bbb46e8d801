"""``POST /v1/predictions/{prediction_id}/feedback``: the real outcome of a prediction."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from roiml.serving.dependencies import ComponentsDep, FeedbackPrincipal
from roiml.serving.feedback import record_feedback
from roiml.serving.routes.common import BASE
from roiml.serving.routes.predictions import BODY_ERRORS
from roiml.serving.schemas import ErrorBody, FeedbackRequest, FeedbackResponse

__all__ = ["router"]

router = APIRouter(tags=["predictions"])

_RESPONSES: dict[int | str, dict[str, Any]] = {
    **BODY_ERRORS,
    409: {
        "model": ErrorBody,
        "description": "actual_class is not one of the prediction's model's classes.",
    },
}


@router.post(
    f"{BASE}/v1/predictions/{{prediction_id}}/feedback",
    response_model=FeedbackResponse,
    responses=_RESPONSES,
)
async def feedback(
    prediction_id: str, body: FeedbackRequest, parts: ComponentsDep, principal: FeedbackPrincipal
) -> FeedbackResponse:
    """Record the real outcome of a prediction (for realised performance)."""
    return await run_in_threadpool(record_feedback, parts, principal.tenant_id, prediction_id, body)
