"""``POST /v1/predictions/{prediction_id}/feedback``: the real outcome of a prediction."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from starlette.concurrency import run_in_threadpool

from roiml.serving.dependencies import ComponentsDep, FeedbackPrincipal
from roiml.serving.feedback import record_feedback
from roiml.serving.routes.common import BASE, ERRORS
from roiml.serving.schemas import FeedbackRequest, FeedbackResponse

__all__ = ["router"]

router = APIRouter(tags=["predictions"])


@router.post(
    f"{BASE}/v1/predictions/{{prediction_id}}/feedback",
    response_model=FeedbackResponse,
    responses=ERRORS,
)
async def feedback(
    prediction_id: str, body: FeedbackRequest, parts: ComponentsDep, principal: FeedbackPrincipal
) -> FeedbackResponse:
    """Record the real outcome of a prediction (for realised performance)."""
    if body.actual_value is None and body.actual_class is None:
        raise HTTPException(422, "give actual_value, actual_class or both")
    return await run_in_threadpool(record_feedback, parts, principal.tenant_id, prediction_id, body)
