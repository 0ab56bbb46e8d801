"""Request and response shapes of the prediction API (the seed's, validated field by field)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from roiml.db.enums import EntityType, PredictionType
from roiml.jsonformat import UtcDatetime

__all__ = [
    "MAX_BATCH",
    "BatchItem",
    "BatchItemError",
    "BatchRequest",
    "BatchResponse",
    "ErrorBody",
    "FeedbackRequest",
    "FeedbackResponse",
    "ModelHealth",
    "PredictionRequest",
    "PredictionResponse",
    "ServiceHealth",
    "TopFeature",
]

MAX_BATCH = 1000

EntityId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@-]+$"),
]
FeatureName = Annotated[str, StringConstraints(min_length=1, max_length=128)]
FeatureSource = Literal["online", "warm", "computed", "given", "mixed"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PredictionRequest(_Strict):
    """One prediction. Without ``features`` the API reads them from the feature store."""

    entity_id: EntityId = Field(description="The homeowner's id.", examples=["user_123"])
    entity_type: EntityType = Field(default=EntityType.USER, description="Only USER is served.")
    prediction_type: PredictionType | None = Field(
        default=None, description="Optional; must match the route when given."
    )
    features: dict[FeatureName, float | None] | None = Field(
        default=None,
        description="The model's exact feature vector (every feature, no other); null = missing.",
        max_length=512,
    )
    as_of_date: datetime | None = Field(
        default=None, description="Predict as of this past instant (features computed then)."
    )
    horizon_months: float | None = Field(
        default=None, ge=0, le=12, description="Property value only: months ahead (default 6)."
    )


class TopFeature(BaseModel):
    """One feature's exact SHAP contribution to this prediction's raw score."""

    feature_name: str
    contribution: float
    value: float | None


class PredictionResponse(BaseModel):
    """The seed's response, plus where the features came from and class probabilities."""

    prediction_id: str
    entity_id: str
    prediction_type: PredictionType
    predicted_value: float
    predicted_class: str | None
    confidence: float
    top_features: list[TopFeature]
    prediction_date: UtcDatetime
    model_version: str
    latency_ms: float
    feature_source: FeatureSource
    probabilities: dict[str, float] | None = None
    details: dict[str, float | int | str] | None = None


class BatchItem(PredictionRequest):
    """One request of a batch: ``prediction_type`` says which model."""

    prediction_type: PredictionType


class BatchRequest(_Strict):
    """Up to 1000 requests, any mix of models."""

    requests: list[BatchItem] = Field(min_length=1, max_length=MAX_BATCH)


class BatchItemError(BaseModel):
    """Why one item of a batch got no prediction; the others are unaffected."""

    index: int
    entity_id: str
    prediction_type: PredictionType
    status_code: int
    detail: str


class BatchResponse(BaseModel):
    """Predictions and errors, each tagged with the index of its request."""

    predictions: list[PredictionResponse]
    prediction_indexes: list[int]
    errors: list[BatchItemError]
    latency_ms: float


class FeedbackRequest(_Strict):
    """The real outcome of a prediction, for realised performance."""

    actual_value: float | None = Field(default=None, description="The observed value, if numeric.")
    actual_class: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = Field(
        default=None, description="The observed class (e.g. HIGH/LOW outcome, BUY, MON-19)."
    )
    observed_at: datetime | None = Field(default=None, description="When it was observed.")


class FeedbackResponse(BaseModel):
    """The prediction the feedback was recorded on."""

    prediction_id: str
    recorded: bool
    feedback_at: UtcDatetime


class ModelHealth(BaseModel):
    """The seed's model health, from live counters, the prediction log and monitoring."""

    model_name: str
    model_version: str | None
    status: Literal["DEPLOYED", "NOT_DEPLOYED", "UNAVAILABLE"]
    deployed_at: UtcDatetime | None
    prediction_count: int
    avg_latency_ms: float | None
    error_rate: float | None
    drift_detected: bool
    last_prediction_at: UtcDatetime | None


class ServiceHealth(BaseModel):
    """Every dependency's state; 200 when all are up, 503 naming the ones that are not."""

    status: Literal["ok", "degraded"]
    database: str
    redis: str
    registry: str
    prediction_log: dict[str, float | int | str | bool | None]
    models: dict[str, str]


class ErrorBody(BaseModel):
    """Every error: what was wrong and what to do about it."""

    detail: str | list[dict[str, object]]
