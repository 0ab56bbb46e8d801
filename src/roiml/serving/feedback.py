"""Feedback: the real outcome of a served prediction, stored on its row of the prediction log
(``ml_predictions``), where realised performance reads it."""

from __future__ import annotations

from fastapi import HTTPException
from sqlalchemy import select, update

from roiml.db.base import as_naive_utc
from roiml.db.engine import tenant_session
from roiml.db.enums import PredictionType
from roiml.db.ml_tables import MLPrediction
from roiml.serving.components import Components
from roiml.serving.schemas import MODEL_CLASSES, FeedbackRequest, FeedbackResponse

__all__ = ["record_feedback"]


def record_feedback(
    parts: Components, tenant: str, prediction_id: str, body: FeedbackRequest
) -> FeedbackResponse:
    """Store the real outcome on the tenant's prediction; 404 if there is no such prediction,
    409 (nothing stored) if ``actual_class`` is not one of its model's classes.

    Without ``observed_at`` the outcome is stamped by the serving clock, as the prediction was:
    with the product's today pinned (a demo, a replay) it lands on that day, not the wall's.
    """
    kind = _prediction_type(parts, tenant, prediction_id)
    if body.actual_class is not None and body.actual_class not in MODEL_CLASSES[kind]:
        classes = MODEL_CLASSES[kind]
        allowed = (
            f"one of {', '.join(classes)}"
            if len(classes) <= 8
            else f"a weekday and hour from {classes[0]} to {classes[-1]}"
        )
        raise HTTPException(
            409,
            f"actual_class {body.actual_class!r} is not a class of the model of prediction "
            f"{prediction_id!r} ({kind.value}); nothing was recorded; "
            + (
                f"give {allowed}"
                if classes
                else "it has no classes: give its observed value as actual_value"
            ),
        )
    observed = as_naive_utc(body.observed_at) if body.observed_at else parts.clock()
    statement = (
        update(MLPrediction)
        .where(MLPrediction.tenant_id == tenant, MLPrediction.prediction_id == prediction_id)
        .values(
            actual_value=body.actual_value, actual_class=body.actual_class, feedback_at=observed
        )
    )
    with tenant_session(parts.engine, tenant) as session:
        session.execute(statement)
    return FeedbackResponse(prediction_id=prediction_id, recorded=True, feedback_at=observed)


def _prediction_type(parts: Components, tenant: str, prediction_id: str) -> PredictionType:
    """What the tenant's prediction ``prediction_id`` predicted; HTTPException 404 if none."""
    query = select(MLPrediction.prediction_type).where(
        MLPrediction.tenant_id == tenant, MLPrediction.prediction_id == prediction_id
    )
    for attempt in range(2):
        with tenant_session(parts.engine, tenant) as session:
            found = session.execute(query).scalar()
        if found is not None:
            return PredictionType(found)
        if attempt == 0:
            # It may still be on its way to the database: the log writes after responding.
            parts.prediction_log.flush(timeout=5.0)
    raise HTTPException(
        404,
        f"no prediction {prediction_id!r} for tenant {tenant!r}; use the prediction_id a "
        "prediction response returned",
    )
