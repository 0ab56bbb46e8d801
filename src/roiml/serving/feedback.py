"""Feedback: the real outcome of a served prediction, stored on its row of the prediction log
(``ml_predictions``), where realised performance reads it."""

from __future__ import annotations

from fastapi import HTTPException
from sqlalchemy import update

from roiml.db.base import as_naive_utc
from roiml.db.engine import tenant_session
from roiml.db.ml_tables import MLPrediction
from roiml.serving.components import Components
from roiml.serving.schemas import FeedbackRequest, FeedbackResponse

__all__ = ["record_feedback"]


def record_feedback(
    parts: Components, tenant: str, prediction_id: str, body: FeedbackRequest
) -> FeedbackResponse:
    """Store the real outcome on the tenant's prediction; 404 if there is no such prediction.

    Without ``observed_at`` the outcome is stamped by the serving clock, as the prediction was:
    with the product's today pinned (a demo, a replay) it lands on that day, not the wall's.
    """
    observed = as_naive_utc(body.observed_at) if body.observed_at else parts.clock()
    statement = (
        update(MLPrediction)
        .where(MLPrediction.tenant_id == tenant, MLPrediction.prediction_id == prediction_id)
        .values(
            actual_value=body.actual_value, actual_class=body.actual_class, feedback_at=observed
        )
    )
    for attempt in range(2):
        with tenant_session(parts.engine, tenant) as session:
            updated = session.execute(statement).rowcount  # type: ignore[attr-defined]
        if updated:
            return FeedbackResponse(
                prediction_id=prediction_id, recorded=True, feedback_at=observed
            )
        if attempt == 0:
            # It may still be on its way to the database: the log writes after responding.
            parts.prediction_log.flush(timeout=5.0)
    raise HTTPException(
        404,
        f"no prediction {prediction_id!r} for tenant {tenant!r}; use the prediction_id a "
        "prediction response returned",
    )
