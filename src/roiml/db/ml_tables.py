"""The six ``ml_*`` tables of the seed: feature definitions and values, models, experiments,
predictions and monitoring. Every row carries ``tenant_id``; timestamps are naive UTC."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from roiml.db.base import Base, BigIntPK, CreatedAtMixin, JSONType, TenantMixin, enum_column, utcnow
from roiml.db.enums import (
    DataType,
    EntityType,
    FeatureCategory,
    FeatureType,
    ModelStatus,
    ModelType,
    PredictionType,
)

__all__ = [
    "MLExperiment",
    "MLFeature",
    "MLFeatureValue",
    "MLModel",
    "MLMonitoring",
    "MLPrediction",
    "ModelAliasEvent",
    "MonitoringAlert",
    "PipelineRun",
]


class MLFeature(TenantMixin, CreatedAtMixin, Base):
    """A feature definition synced from code, with its latest statistics."""

    __tablename__ = "ml_features"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False)
    category: Mapped[FeatureCategory] = enum_column(FeatureCategory, nullable=False)
    sub_category: Mapped[str | None] = mapped_column(String(64))
    feature_type: Mapped[FeatureType] = enum_column(FeatureType, nullable=False)
    data_type: Mapped[DataType] = enum_column(DataType, nullable=False)
    entity_type: Mapped[EntityType] = enum_column(EntityType, nullable=False)
    feature_set: Mapped[str] = mapped_column(String(64), nullable=False)
    window_days: Mapped[int | None] = mapped_column(Integer)
    computation: Mapped[str | None] = mapped_column(Text, doc="SQL or Python reference")
    valid_min: Mapped[float | None] = mapped_column(Float)
    valid_max: Mapped[float | None] = mapped_column(Float)
    max_null_rate: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    is_deprecated: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    min_value: Mapped[float | None] = mapped_column(Float)
    max_value: Mapped[float | None] = mapped_column(Float)
    mean_value: Mapped[float | None] = mapped_column(Float)
    std_dev: Mapped[float | None] = mapped_column(Float)
    null_rate: Mapped[float | None] = mapped_column(Float)
    importance: Mapped[float | None] = mapped_column(Float)
    last_updated: Mapped[datetime] = mapped_column(
        DateTime(), nullable=False, default=utcnow, onupdate=utcnow
    )

    __table_args__ = (UniqueConstraint("tenant_id", "name", "version"),)


class MLFeatureValue(TenantMixin, Base):
    """Warm store: one feature vector per (tenant, entity, feature set, as-of), values in JSON."""

    __tablename__ = "ml_feature_values"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    entity_type: Mapped[EntityType] = enum_column(EntityType, nullable=False)
    entity_id: Mapped[str] = mapped_column(String(64), nullable=False)
    feature_set: Mapped[str] = mapped_column(String(64), nullable=False)
    as_of: Mapped[datetime] = mapped_column(DateTime(), nullable=False)
    values: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(), nullable=False, default=utcnow)

    __table_args__ = (
        # The unique key makes every write an idempotent upsert and serves entity+time look-ups.
        UniqueConstraint("tenant_id", "entity_type", "entity_id", "feature_set", "as_of"),
        Index("ix_ml_feature_values_tenant_set_asof", "tenant_id", "feature_set", "as_of"),
    )


class MLModel(TenantMixin, CreatedAtMixin, Base):
    """A registered model version, mirrored from the MLflow registry."""

    __tablename__ = "ml_models"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    version: Mapped[str] = mapped_column(String(32), nullable=False)
    model_type: Mapped[ModelType] = enum_column(ModelType, nullable=False)
    status: Mapped[ModelStatus] = enum_column(ModelStatus, nullable=False)
    algorithm: Mapped[str | None] = mapped_column(String(64))
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    mlflow_model_uri: Mapped[str | None] = mapped_column(String(512))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    feature_names: Mapped[list[str]] = mapped_column(JSONType, nullable=False, default=list)
    accuracy: Mapped[float | None] = mapped_column(Float)
    precision: Mapped[float | None] = mapped_column(Float)
    recall: Mapped[float | None] = mapped_column(Float)
    f1_score: Mapped[float | None] = mapped_column(Float)
    auc: Mapped[float | None] = mapped_column(Float)
    mse: Mapped[float | None] = mapped_column(Float)
    mae: Mapped[float | None] = mapped_column(Float)
    r2: Mapped[float | None] = mapped_column(Float)
    training_start: Mapped[datetime | None] = mapped_column(DateTime())
    training_end: Mapped[datetime | None] = mapped_column(DateTime())
    deployed_at: Mapped[datetime | None] = mapped_column(DateTime())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(), nullable=False, default=utcnow, onupdate=utcnow
    )

    __table_args__ = (UniqueConstraint("tenant_id", "name", "version"),)


class MLExperiment(TenantMixin, Base):
    """One MLflow training run."""

    __tablename__ = "ml_experiments"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    model_type: Mapped[ModelType] = enum_column(ModelType, nullable=False)
    mlflow_experiment_id: Mapped[str | None] = mapped_column(String(64))
    mlflow_run_id: Mapped[str] = mapped_column(String(64), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    artifacts: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    started_at: Mapped[datetime] = mapped_column(DateTime(), nullable=False, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime())

    __table_args__ = (UniqueConstraint("tenant_id", "mlflow_run_id"),)


class MLPrediction(TenantMixin, Base):
    """A served prediction, its inputs and explanation, and the real outcome once fed back."""

    __tablename__ = "ml_predictions"

    prediction_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_name: Mapped[str] = mapped_column(String(128), nullable=False)
    model_version: Mapped[str] = mapped_column(String(32), nullable=False)
    prediction_type: Mapped[PredictionType] = enum_column(PredictionType, nullable=False)
    entity_type: Mapped[EntityType] = enum_column(EntityType, nullable=False)
    entity_id: Mapped[str] = mapped_column(String(64), nullable=False)
    features: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    feature_source: Mapped[str | None] = mapped_column(String(16))
    predicted_value: Mapped[float | None] = mapped_column(Float)
    predicted_class: Mapped[str | None] = mapped_column(String(32))
    probabilities: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    confidence: Mapped[float | None] = mapped_column(Float)
    shap_values: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    as_of_date: Mapped[datetime | None] = mapped_column(DateTime())
    extrapolation_days: Mapped[float | None] = mapped_column(
        Float, doc="days past the entity's last fresh data the answer reached; null if none"
    )
    predicted_at: Mapped[datetime] = mapped_column(DateTime(), nullable=False, default=utcnow)
    actual_value: Mapped[float | None] = mapped_column(Float)
    actual_class: Mapped[str | None] = mapped_column(String(32))
    feedback_at: Mapped[datetime | None] = mapped_column(DateTime())

    __table_args__ = (
        Index("ix_ml_predictions_tenant_model_time", "tenant_id", "model_name", "predicted_at"),
        Index("ix_ml_predictions_tenant_entity_time", "tenant_id", "entity_id", "predicted_at"),
    )


class MLMonitoring(TenantMixin, CreatedAtMixin, Base):
    """Health of one model version over one period: volume, latency, quality, drift, alerts."""

    __tablename__ = "ml_monitoring"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(128), nullable=False)
    model_version: Mapped[str] = mapped_column(String(32), nullable=False)
    period_start: Mapped[datetime] = mapped_column(DateTime(), nullable=False)
    period_end: Mapped[datetime] = mapped_column(DateTime(), nullable=False)
    status: Mapped[str] = mapped_column(String(32), nullable=False, default="OK")
    prediction_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    avg_latency_ms: Mapped[float | None] = mapped_column(Float)
    p95_latency_ms: Mapped[float | None] = mapped_column(Float)
    error_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    error_rate: Mapped[float | None] = mapped_column(Float)
    performance_metrics: Mapped[dict[str, Any]] = mapped_column(
        JSONType, nullable=False, default=dict
    )
    feature_drift: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    prediction_drift: Mapped[float | None] = mapped_column(Float)
    drift_detected: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    alert_triggered: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    alerts: Mapped[list[Any]] = mapped_column(JSONType, nullable=False, default=list)

    __table_args__ = (UniqueConstraint("tenant_id", "model_name", "model_version", "period_start"),)


class PipelineRun(TenantMixin, Base):
    """One step of one daily pipeline run (or the whole run, ``step = 'run'``)."""

    __tablename__ = "pipeline_runs"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    run_date: Mapped[datetime] = mapped_column(DateTime(), nullable=False)
    step: Mapped[str] = mapped_column(String(64), nullable=False)
    shard: Mapped[str | None] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(DateTime(), nullable=False, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime())
    rows: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(16), nullable=False, default="RUNNING")
    message: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_pipeline_runs_tenant_date", "tenant_id", "run_date", "started_at"),)


class ModelAliasEvent(TenantMixin, Base):
    """One move of a registry alias (``staging``, ``production``, ``archived``) of one model.

    MLflow keeps only where an alias points now; this log answers which version held it at any
    past moment. ``from_version`` is None when the alias was unset before, ``to_version`` None
    when the move removed it.
    """

    __tablename__ = "model_alias_events"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(128), nullable=False)
    alias: Mapped[str] = mapped_column(String(64), nullable=False)
    from_version: Mapped[str | None] = mapped_column(String(32))
    to_version: Mapped[str | None] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(128), nullable=False)
    moved_at: Mapped[datetime] = mapped_column(DateTime(), nullable=False, default=utcnow)

    __table_args__ = (
        # version_at() reads the newest event at or before a moment for one model and alias.
        Index(
            "ix_model_alias_events_tenant_model_alias_time",
            "tenant_id",
            "model_name",
            "alias",
            "moved_at",
        ),
    )


class MonitoringAlert(TenantMixin, Base):
    """One alert raised by ``roiml monitor run``: what crossed which threshold, and its delivery.

    One row per model version, period, kind and subject: a rerun of the period updates the row
    (and does not post the webhook again once it was delivered).
    """

    __tablename__ = "monitoring_alerts"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(128), nullable=False)
    model_version: Mapped[str] = mapped_column(String(32), nullable=False)
    period_start: Mapped[datetime] = mapped_column(DateTime(), nullable=False)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    subject: Mapped[str] = mapped_column(String(128), nullable=False)
    value: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    message: Mapped[str] = mapped_column(Text, nullable=False)
    delivery: Mapped[str] = mapped_column(String(32), nullable=False, default="PENDING")
    delivery_detail: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    raised_at: Mapped[datetime] = mapped_column(DateTime(), nullable=False, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime())

    __table_args__ = (
        # Named explicitly: the conventional name is longer than PostgreSQL's 63 characters.
        UniqueConstraint(
            "tenant_id",
            "model_name",
            "model_version",
            "period_start",
            "kind",
            "subject",
            name="uq_monitoring_alerts_key",
        ),
        Index("ix_monitoring_alerts_tenant_time", "tenant_id", "raised_at"),
    )
