"""Model health (from the prediction log, monitoring and the registry mirror) and feedback."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import HTTPException
from sqlalchemy import func, select, update

from roiml.db.base import as_naive_utc, utcnow
from roiml.db.engine import tenant_session
from roiml.db.enums import ModelType
from roiml.db.ml_models import MLModel, MLMonitoring, MLPrediction
from roiml.models.artifact import MODEL_NAMES
from roiml.serving.model_cache import ModelUnavailableError
from roiml.serving.schemas import FeedbackRequest, FeedbackResponse, ModelHealth

if TYPE_CHECKING:
    from roiml.serving.app import Components

__all__ = ["model_health", "record_feedback"]


def model_health(parts: Components, tenant: str, model_type: ModelType) -> ModelHealth:
    """The seed's health fields for one model of ``tenant``."""
    name = MODEL_NAMES[model_type]
    try:
        loaded = parts.models.get(tenant, model_type)
        version: str | None = loaded.version
        status = "DEPLOYED"
    except ModelUnavailableError:
        version, status = None, "NOT_DEPLOYED"
    # Predictions still queued for the log count too: health must not lag the traffic.
    parts.prediction_log.flush(timeout=2.0)
    with tenant_session(parts.engine, tenant) as session:
        served = session.execute(
            select(
                func.count(),
                func.avg(MLPrediction.latency_ms),
                func.max(MLPrediction.predicted_at),
            ).where(MLPrediction.tenant_id == tenant, MLPrediction.model_name == name)
        ).one()
        monitoring = session.execute(
            select(MLMonitoring.drift_detected, MLMonitoring.error_rate)
            .where(MLMonitoring.tenant_id == tenant, MLMonitoring.model_name == name)
            .order_by(MLMonitoring.period_end.desc())
            .limit(1)
        ).first()
        deployed_at = None
        if version is not None:
            deployed_at = session.execute(
                select(MLModel.deployed_at).where(
                    MLModel.tenant_id == tenant,
                    MLModel.name == name,
                    MLModel.version == version,
                )
            ).scalar()
    count = int(served[0] or 0)
    errors = _error_count(parts, name)
    error_rate = (
        monitoring.error_rate
        if monitoring is not None and monitoring.error_rate is not None
        else (errors / (count + errors) if count + errors else None)
    )
    return ModelHealth(
        model_name=name,
        model_version=version,
        status=status,
        deployed_at=deployed_at,
        prediction_count=count,
        avg_latency_ms=float(served[1]) if served[1] is not None else None,
        error_rate=error_rate,
        drift_detected=bool(monitoring.drift_detected) if monitoring is not None else False,
        last_prediction_at=served[2],
    )


def _error_count(parts: Components, name: str) -> float:
    total = 0.0
    for metric in parts.metrics.prediction_errors.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels.get("model") == name:
                total += sample.value
    return total


def record_feedback(
    parts: Components, tenant: str, prediction_id: str, body: FeedbackRequest
) -> FeedbackResponse:
    """Store the real outcome on the tenant's prediction; 404 if there is no such prediction."""
    now = utcnow()
    observed = as_naive_utc(body.observed_at) if body.observed_at else now
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
