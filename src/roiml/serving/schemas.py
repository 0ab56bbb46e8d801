"""Request and response shapes of the prediction API (the seed's, validated field by field).

The OpenAPI schema is generated from these models and says what the server accepts: each
prediction route has its own request model (its ``prediction_type``, its model's feature names,
``horizon_months`` for the value model only), numbers are finite JSON numbers, dates are
RFC 3339 instants from 1900 to 2200, and feedback classes are the models' classes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    Strict,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
    create_model,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from roiml.db.enums import EntityType, ModelType, PredictionType, TransactionType
from roiml.jsonformat import UtcDatetime

__all__ = [
    "DATE_WINDOW",
    "MAX_BATCH",
    "MODEL_CLASSES",
    "REQUEST_MODELS",
    "BatchItemError",
    "BatchRequest",
    "BatchResponse",
    "ErrorBody",
    "FeedbackRequest",
    "FeedbackResponse",
    "ModelHealth",
    "OnlineEntityFeatures",
    "OnlineFeaturesRequest",
    "OnlineFeaturesResponse",
    "OnlineSetValues",
    "PredictionRequest",
    "PredictionResponse",
    "ServiceHealth",
    "TopFeature",
    "describe_errors",
    "validate_batch_item",
]

MAX_BATCH = 1000

EntityId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@-]+$"),
]
FeatureName = Annotated[str, StringConstraints(min_length=1, max_length=128)]
FeatureSource = Literal["online", "warm", "computed", "given", "mixed"]

# A JSON number, finite: Python's JSON parser reads NaN and Infinity, which the schema (JSON)
# does not allow and a model or the prediction log cannot use; strict, so true and "1.5" are
# not numbers either.
Finite = Annotated[float, Strict(), Field(allow_inf_nan=False)]

# The instants the API takes: RFC 3339 with an offset (OpenAPI's date-time), years 1900 to
# 2200. Wider than any data the product holds, narrow enough that no date arithmetic on them
# overflows (year 1 minus a lookback did, a 500).
DATE_WINDOW = (1900, 2200)
_INSTANT = (
    r"^(19\d{2}|2[01]\d{2}|2200)-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"
    r"T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$"
)
_INSTANT_RE = re.compile(_INSTANT)


def _instant(value: object) -> object:
    """``value`` as a datetime if it is an RFC 3339 instant inside the window; ValueError
    saying what to send otherwise (numbers are not accepted as timestamps)."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _INSTANT_RE.match(value):
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise ValueError(
            f"{shown} is not an RFC 3339 instant from {DATE_WINDOW[0]} to {DATE_WINDOW[1]}; "
            "send one like 2024-06-01T00:00:00Z (with Z or an offset such as +02:00)"
        )
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{value!r} is not a calendar date; send a day that exists, like 2024-02-29"
        ) from None


Instant = Annotated[
    datetime,
    BeforeValidator(_instant),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": _INSTANT}),
]

# Each model's classes, as its predictions name them (models/trainers.py, models/predict.py).
_WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
MODEL_CLASSES: dict[PredictionType, tuple[str, ...]] = {
    PredictionType.MOVE_PROBABILITY: ("LOW", "MEDIUM", "HIGH"),
    PredictionType.TRANSACTION_TYPE: tuple(t.value for t in TransactionType),
    PredictionType.CONTACT_TIMING: tuple(f"{d}-{h:02d}" for d in _WEEKDAYS for h in range(24)),
    PredictionType.PROPERTY_VALUE: (),
}
_KINDS = frozenset(k.value for k in PredictionType)
_ANY_CLASS = frozenset(c for classes in MODEL_CLASSES.values() for c in classes)


def _a_class(value: str) -> str:
    if value not in _ANY_CLASS:
        raise ValueError(
            f"{value[:40]!r} is no model's class; give the observed class of the prediction's "
            "model: LOW, MEDIUM or HIGH (move probability), BUY, SELL, REFINANCE or INVESTMENT "
            "(transaction type), a weekday and hour like MON-19 (contact timing); a property "
            "value takes actual_value"
        )
    return value


ActualClass = Annotated[
    str,
    Strict(),
    AfterValidator(_a_class),
    WithJsonSchema({"type": "string", "enum": sorted(_ANY_CLASS)}),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PredictionRequest(_Strict):
    """One prediction. Without ``features`` the API reads them from the feature store.

    The base of each route's request model (:data:`REQUEST_MODELS`), which narrows
    ``prediction_type``, ``features`` and ``horizon_months`` to its model."""

    entity_id: EntityId = Field(description="The homeowner's id.", examples=["user_123"])
    entity_type: Literal[EntityType.USER] = Field(
        default=EntityType.USER, description="Only USER is served."
    )
    prediction_type: PredictionType | None = Field(
        default=None, description="Optional; must match the route when given."
    )
    features: dict[FeatureName, Finite | None] | None = Field(
        default=None,
        description="The model's exact feature vector (every feature, no other); null = missing.",
        max_length=512,
    )
    as_of_date: Instant | None = Field(
        default=None,
        description="Predict as of this past instant (features computed then); RFC 3339, "
        f"years {DATE_WINDOW[0]} to {DATE_WINDOW[1]}, not after now.",
    )
    horizon_months: Finite | None = Field(
        default=None, ge=0, le=12, description="Property value only: months ahead (default 6)."
    )

    @field_validator("entity_type", mode="before")
    @classmethod
    def _only_users(cls, value: object) -> object:
        if value != EntityType.USER.value:
            raise ValueError(f"entity_type {str(value)[:20]!r} is not served; use USER")
        return value


@cache
def _inputs_of(kind: PredictionType) -> tuple[str, ...]:
    """The inputs of ``kind``'s model as the shipped training configs define them (what a
    model trained on other configs takes, its health route's version names in the registry)."""
    from roiml.features.catalog import CATALOG
    from roiml.models.artifact import HORIZON_FEATURE, MODEL_NAMES
    from roiml.models.config import load_config

    config = load_config(MODEL_NAMES[ModelType(kind.value)])
    names = [n for n in CATALOG.expand(config.feature_sets) if n not in config.exclude_features]
    if kind is PredictionType.PROPERTY_VALUE:
        names.append(HORIZON_FEATURE)
    return tuple(names)


def _features_schema(kind: PredictionType) -> dict[str, Any]:
    names = _inputs_of(kind)
    value = {"anyOf": [{"type": "number"}, {"type": "null"}]}
    return {
        "anyOf": [
            {
                "type": "object",
                "properties": dict.fromkeys(names, value),
                "required": list(names),
                "additionalProperties": False,
            },
            {"type": "null"},
        ],
        "description": "The model's exact feature vector: every input named, no other; "
        "null = missing. Omit it to have the features read from the feature store.",
    }


@dataclass(frozen=True)
class _ModelInputs:
    """``features``' JSON schema for ``kind``'s model, written when a schema is generated:
    the names come from the training configs, which import the models package (LightGBM,
    seconds), so not when this module is imported."""

    kind: PredictionType

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return _features_schema(self.kind)


def _route_model(kind: PredictionType, *, item: bool) -> type[PredictionRequest]:
    """The request model of ``kind``'s route (``item``: as an item of a batch, where
    ``prediction_type`` is required)."""
    kind_type: Any = Literal[kind]
    features: Any = Annotated[dict[FeatureName, Finite | None] | None, _ModelInputs(kind)]
    fields: dict[str, Any] = {
        "prediction_type": (
            (kind_type, Field(description="Which model."))
            if item
            else (kind_type | None, Field(default=None, description="Optional: the route's."))
        ),
        "features": (features, Field(default=None, max_length=512)),
    }
    if kind is not PredictionType.PROPERTY_VALUE:
        fields["horizon_months"] = (
            None,
            Field(default=None, description="Property value only; null or absent here."),
        )
    route = kind.value.lower().replace("_", "-")

    def match_route(value: object) -> object:
        if isinstance(value, str) and value != kind.value and value in _KINDS:
            raise ValueError(
                f"prediction_type {value} does not match this route ({kind.value}); call the "
                "route of that model or drop the field"
            )
        return value

    def no_horizon(value: object) -> object:
        if value is not None:
            raise ValueError(
                f"horizon_months applies to property-value predictions only; drop it from "
                f"this {route} request"
            )
        return value

    validators: dict[str, Any] = {
        "_match_route": field_validator("prediction_type", mode="before")(match_route)
    }
    if "horizon_months" in fields:
        validators["_no_horizon"] = field_validator("horizon_months", mode="before")(no_horizon)
    name = "".join(part.title() for part in kind.value.split("_")) + ("Item" if item else "Request")
    model: type[PredictionRequest] = create_model(
        name, __base__=PredictionRequest, __validators__=validators, **fields
    )
    model.__doc__ = (
        f"One {route.replace('-', ' ')} request of a batch."
        if item
        else f"One {route.replace('-', ' ')} prediction. Without ``features`` the API reads them "
        "from the feature store."
    )
    return model


# Each prediction route's request model, and the batch's item model per prediction type.
REQUEST_MODELS: dict[PredictionType, type[PredictionRequest]] = {
    kind: _route_model(kind, item=False) for kind in PredictionType
}
_ITEM_MODELS: dict[PredictionType, type[PredictionRequest]] = {
    kind: _route_model(kind, item=True) for kind in PredictionType
}


def describe_errors(exc: ValidationError, prefix: str = "") -> str:
    """A validation error's messages as one line: where, what was wrong (and what to do)."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in (prefix, *error["loc"]) if p != "")
        parts.append(f"{where or 'item'}: {error['msg']}")
    return "; ".join(parts)


def validate_batch_item(raw: object) -> PredictionRequest:
    """One item of a batch as its model's request; ValueError saying what is wrong with it."""
    if not isinstance(raw, dict):
        raise ValueError(
            f"an item is an object (a prediction route's body with prediction_type), not "
            f"{type(raw).__name__ if raw is not None else 'null'}"
        )
    kind = raw.get("prediction_type")
    if not isinstance(kind, str) or kind not in _KINDS:
        raise ValueError(
            "prediction_type: give the item's model, one of "
            + ", ".join(k.value for k in PredictionType)
        )
    try:
        return _ITEM_MODELS[PredictionType(kind)].model_validate(raw)
    except ValidationError as exc:
        raise ValueError(describe_errors(exc)) from None


class TopFeature(BaseModel):
    """One feature's exact SHAP contribution to this prediction's raw score."""

    feature_name: str
    contribution: float
    value: float | None


class PredictionResponse(BaseModel):
    """The seed's response, plus where the features came from, class probabilities and how far
    the answer extrapolates past the tenant's data."""

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
    extrapolation_days: int | None = Field(
        default=None,
        ge=1,
        description="Days between the day answered for (as_of_date, else today) and the last "
        "day the tenant's data are fresh through (the day after its latest recorded event): "
        "the answer extrapolates that far. Null when it does not, and when the request gave "
        "its features. Past ROIML_API_MAX_EXTRAPOLATION_DAYS the request is refused (422, "
        "naming the gap, the limit and the setting).",
    )


class BatchRequest(_Strict):
    """Up to 1000 requests, any mix of models.

    Each item is checked on its own: an item that is not a valid request of its
    ``prediction_type``'s route (that route's request body, ``prediction_type`` required) is
    that item's 422 in ``errors``, never the whole batch's."""

    # Any JSON per item in the schema too: an item that is not a valid request (not even an
    # object) is answered in errors, so no item can make the batch itself invalid.
    requests: list[Any] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        description="Each an object: the body of one prediction route with prediction_type "
        "naming its model. An item that is not a valid request is answered in errors, "
        "with what is wrong; the others are served.",
    )


class BatchItemError(BaseModel):
    """Why one item of a batch got no prediction; the others are unaffected."""

    index: int
    entity_id: str | None = Field(description="The item's entity_id, if it gave a valid one.")
    prediction_type: PredictionType | None = Field(
        description="The item's prediction_type, if it gave a valid one."
    )
    status_code: int = Field(
        description="The item's own status: 404 an unknown entity; 422 not a valid request, "
        "or an answer that would extrapolate past ROIML_API_MAX_EXTRAPOLATION_DAYS; 503 a "
        "store it needed is away."
    )
    detail: str


class BatchResponse(BaseModel):
    """Predictions and errors, each tagged with the index of its request."""

    predictions: list[PredictionResponse]
    prediction_indexes: list[int]
    errors: list[BatchItemError]
    latency_ms: float


class FeedbackRequest(_Strict):
    """The real outcome of a prediction, for realised performance: ``actual_value``,
    ``actual_class`` or both (a class of the prediction's own model)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [
                {"required": ["actual_value"], "properties": {"actual_value": {"type": "number"}}},
                {"required": ["actual_class"], "properties": {"actual_class": {"type": "string"}}},
            ]
        },
    )

    actual_value: Finite | None = Field(
        default=None, description="The observed value, if numeric (e.g. 1: moved, a sale price)."
    )
    actual_class: ActualClass | None = Field(
        default=None,
        description="The observed class, one of the prediction's model's classes (HIGH / "
        "MEDIUM / LOW, BUY / SELL / REFINANCE / INVESTMENT, MON-19); another model's is a 409.",
    )
    observed_at: Instant | None = Field(
        default=None,
        description=f"When it was observed: RFC 3339, years {DATE_WINDOW[0]} to "
        f"{DATE_WINDOW[1]}; default now.",
    )

    @model_validator(mode="after")
    def _says_something(self) -> FeedbackRequest:
        if self.actual_value is None and self.actual_class is None:
            raise ValueError("give actual_value, actual_class or both")
        return self


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
    # The server's processes as its supervisor last wrote them: "one process" (no supervisor),
    # "2 of 2 alive", or who died and when; a worker cannot otherwise see its sibling's death.
    workers: str = "one process"
    workers_ok: bool = True  # every worker alive and none died in the last minute


class ErrorBody(BaseModel):
    """Every error: what was wrong and what to do about it."""

    detail: str | list[dict[str, object]]


class ServedModel(BaseModel):
    """One of the four models as this tenant is served it."""

    name: str
    prediction_type: PredictionType
    status: Literal["SERVING", "UNAVAILABLE"]
    version: str | None = Field(description="The production version served; null if none.")
    loaded_at: UtcDatetime | None
    feature_count: int | None = Field(description="Inputs of the served version (its service).")
    detail: str | None = Field(description="Why the model is not served, when it is not.")


class ModelList(BaseModel):
    """Every model of the caller's tenant: what ``/v1/predict/...`` answers with now."""

    tenant_id: str
    models: list[ServedModel]


class FeatureInfo(BaseModel):
    """One input of a model, described by the feature catalog (null where it says nothing)."""

    name: str
    category: str | None
    dtype: str | None
    description: str | None


class FeatureService(BaseModel):
    """A model's feature service: the named list of inputs its served version reads, in order
    (what ``features`` of a prediction request must hold)."""

    name: str
    version: str
    features: list[FeatureInfo]


# The catalog's feature sets (a tenant's declared columns join ``property``, adding none):
# named in the schema so a client, and a schema-driven fuzzer, knows the valid ones.
# test_api checks this list against the catalog.
FeatureSetName = Literal["behavioral", "property", "transactional", "market", "temporal"]


class OnlineFeaturesRequest(_Strict):
    """Which homeowners' stored features to read, and which feature sets."""

    entity_ids: list[EntityId] = Field(
        min_length=1,
        max_length=100,
        description="Up to 100 homeowner ids; the answers keep this order.",
        examples=[["user_1", "user_2"]],
    )
    feature_sets: list[FeatureSetName] | None = Field(
        default=None,
        max_length=16,
        description="Feature sets to read (behavioral, property, transactional, market, "
        "temporal); default: every set.",
        examples=[["property", "market"]],
    )


class OnlineSetValues(BaseModel):
    """One feature set's vector as the online store holds it."""

    as_of: UtcDatetime = Field(description="The instant the vector describes (UTC).")
    age_seconds: float = Field(description="How old it was when read.")
    features: dict[str, float | None] = Field(description="Each feature's value; null = null.")


class OnlineEntityFeatures(BaseModel):
    """One homeowner's stored vectors: a set the store holds none of (never written, past its
    TTL, written under another definition) is null."""

    entity_id: str
    status: Literal[200, 404] = Field(description="404: no homeowner of the tenant has this id.")
    detail: str | None = Field(default=None, description="Why the status is not 200.")
    feature_sets: dict[str, OnlineSetValues | None]


class OnlineFeaturesResponse(BaseModel):
    """The online store's answer for each asked homeowner, in the order asked."""

    tenant_id: str
    feature_sets: list[str]
    results: list[OnlineEntityFeatures]
