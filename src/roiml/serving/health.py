"""Health: one model's (from the prediction log, monitoring and the registry mirror) and the
service's (database, Redis, registry, prediction log, models)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, text

from roiml.db.engine import tenant_session
from roiml.db.enums import ModelType
from roiml.db.ml_tables import MLModel, MLMonitoring, MLPrediction
from roiml.models.artifact import MODEL_NAMES
from roiml.serving.components import Components
from roiml.serving.model_cache import ModelUnavailableError
from roiml.serving.schemas import ModelHealth, ServiceHealth

__all__ = ["model_health", "service_health"]


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
    errors = parts.metrics.error_count(name)
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


def service_health(parts: Components, redis_client: Any) -> ServiceHealth:
    """Database, Redis (through ``redis_client``, None when not configured), registry,
    prediction log and models; ``degraded`` when the database, Redis or every model is down."""
    database = "ok"
    try:
        with parts.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        database = f"down: {type(exc).__name__}"
    redis_state = "not configured"
    if redis_client is not None:
        try:
            redis_client.ping()
            redis_state = "ok"
        except Exception as exc:
            redis_state = f"down: {type(exc).__name__}"
    registry = "ok"
    models = parts.models.status(parts.settings.tenant_id)
    loaded = parts.models.loaded()
    if not loaded:
        registry = "no model loaded"
    log_stats = parts.prediction_log.stats()
    down = database != "ok" or redis_state.startswith("down") or not loaded
    return ServiceHealth(
        status="degraded" if down else "ok",
        database=database,
        redis=redis_state,
        registry=registry,
        prediction_log=dict(log_stats),
        models=models,
    )
