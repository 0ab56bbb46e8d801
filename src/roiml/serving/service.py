"""From requests to explained predictions: features, one predict call per model, the log.

Single and batch routes both come here. A batch is grouped by model; each group gets its
feature vectors in one read (:mod:`roiml.store.vectors`, over the inputs the model's artifact
records), predicts and explains in one call per booster, and every item that cannot be served
becomes an error entry of its own. An answer for a day past the tenant's data says by how
many days it extrapolates, and past the limit is refused (:mod:`roiml.serving.extrapolation`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from roiml.db.base import as_naive_utc, utcnow
from roiml.db.enums import EntityType, ModelType, PredictionType
from roiml.errors import RoimlError
from roiml.models.artifact import HORIZON_FEATURE, MODEL_NAMES
from roiml.models.explain import top_features
from roiml.models.predict import Predictions, predict
from roiml.serving.extrapolation import DataEnds, extrapolation_days, refusal, tenant_data_end
from roiml.serving.model_cache import LoadedModel, ModelCache
from roiml.serving.schemas import PredictionRequest, PredictionResponse
from roiml.store.breaker import DependencyUnavailableError
from roiml.store.vectors import PredictionVectors, Vectors

__all__ = ["ItemError", "PredictionService", "ServedPrediction"]

TOP_K = 5
DEFAULT_HORIZON_MONTHS = 6.0
# Days past the tenant's data an answer may reach before it is refused: a year covers a load
# that paused or a monthly import that is late, and refuses an answer resting on a market a
# year or more old (docs/API.md, "Extrapolation"). ROIML_API_MAX_EXTRAPOLATION_DAYS sets it.
DEFAULT_MAX_EXTRAPOLATION_DAYS = 365
# Below this many items a batch is served on the calling thread: handing groups to the pool
# costs more than the overlap saves.
_PARALLEL_ITEMS = 64
# A client clock slightly ahead of ours is not "the future".
_CLOCK_SKEW = timedelta(minutes=5)


@dataclass
class ItemError(Exception):
    """One request that cannot be served: an HTTP status and what to fix; a 503 (a store it
    needed is down) says when to try again, ``retry_after`` seconds."""

    status_code: int
    detail: str
    retry_after: float | None = None


@dataclass(frozen=True)
class _Inputs:
    """A model's inputs as the feature store sees them, resolved once per input list: the
    stored ones (all but the request's horizon), their columns in the model's matrix, and the
    horizon's column (None when the model has none)."""

    stored: tuple[str, ...]
    columns: npt.NDArray[np.int64]
    horizon: int | None


@dataclass
class ServedPrediction:
    """A response body and the row the prediction log keeps.

    ``body`` is the :class:`PredictionResponse` as JSON-ready values, field for field: the API
    writes it with orjson, since building and serialising the pydantic model cost as much as
    the prediction itself. :attr:`response` validates it into the model.
    """

    body: dict[str, Any]
    log_record: dict[str, Any] = field(repr=False)

    @property
    def response(self) -> PredictionResponse:
        """The body as the validated response model."""
        return PredictionResponse.model_validate(self.body)


@dataclass
class _Group:
    model: LoadedModel
    indexes: list[int]
    requests: list[PredictionRequest]
    # Per request, the days its answer extrapolates past the tenant's data (None: it does not).
    gaps: list[int | None] = field(default_factory=list)


@dataclass
class _GroupInputs:
    """A group's model matrix as it is filled: one row per request, where each row's values
    came from, and the requests that cannot be served."""

    matrix: npt.NDArray[np.float64]
    sources: list[str]
    errors: dict[int, ItemError]

    def place(self, rows: list[int], inputs: _Inputs, vectors: Vectors) -> None:
        """The read ``vectors`` of ``rows`` into their stored inputs' columns; a row the read
        could not serve becomes its error (404: not the tenant's; 422: not computable)."""
        self.matrix[np.ix_(np.asarray(rows), inputs.columns)] = vectors.values
        for k, (i, source) in enumerate(zip(rows, vectors.sources(), strict=True)):
            error = vectors.errors.get(k)
            if error is None:
                self.sources[i] = source
            elif error.reason == "unavailable":
                self.errors[i] = ItemError(503, error.detail, error.retry_after)
            else:
                status = 404 if error.reason == "unknown_entity" else 422
                self.errors[i] = ItemError(status, error.detail)

    def set_horizons(
        self, rows: list[int], requests: list[PredictionRequest], inputs: _Inputs
    ) -> None:
        """Each request's horizon (months) into the model's horizon input, if it has one."""
        if inputs.horizon is None:
            return
        for i, request in zip(rows, requests, strict=True):
            horizon = request.horizon_months
            self.matrix[i, inputs.horizon] = (
                horizon if horizon is not None else DEFAULT_HORIZON_MONTHS
            )


@dataclass(frozen=True, slots=True)
class _Answered:
    """One group's predict call: what each of its responses is built from. ``inputs``,
    ``answer`` and ``tops`` hold the served rows only, in order."""

    tenant: str
    model_type: ModelType
    model: LoadedModel
    inputs: npt.NDArray[np.float64]
    answer: Predictions
    tops: list[list[dict[str, Any]]]
    latency_ms: float


class PredictionService:
    """Serves predictions for any tenant from the registry's production models."""

    def __init__(
        self,
        vectors: PredictionVectors,
        models: ModelCache,
        *,
        clock: Callable[[], datetime] = utcnow,
        batch_threads: int = 1,
        max_extrapolation_days: int = DEFAULT_MAX_EXTRAPOLATION_DAYS,
        data_ends: DataEnds | None = None,
    ) -> None:
        """Serve from ``vectors`` and ``models``; "now" is ``clock()``. ``data_ends``: each
        tenant's data end (default: read through ``vectors``' database and breaker); an answer
        past it by more than ``max_extrapolation_days`` is refused."""
        self.vectors = vectors
        self.models = models
        self.clock = clock
        self.max_extrapolation_days = max_extrapolation_days
        self.data_ends = data_ends or DataEnds(
            lambda tenant: vectors.database(lambda: tenant_data_end(vectors.engine, tenant))
        )
        self._inputs: dict[tuple[str, ...], _Inputs] = {}
        # A batch mixing models serves each model's group on its own thread: LightGBM, the
        # explanation's NumPy and SciPy work and the online read release the GIL.
        self._pool = (
            ThreadPoolExecutor(batch_threads, thread_name_prefix="roiml-batch")
            if batch_threads > 1
            else None
        )

    def close(self) -> None:
        """Stop the batch threads and the data ends' refresh."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self.data_ends.close()

    # ------------------------------------------------------------------ public

    def predict(
        self, tenant: str, items: Sequence[tuple[PredictionType, PredictionRequest]]
    ) -> list[ServedPrediction | ItemError]:
        """One answer per item, in order: a prediction, or the error of that item alone."""
        started = time.perf_counter()
        results: list[ServedPrediction | ItemError | None] = [None] * len(items)
        groups: dict[ModelType, _Group] = {}
        now = self.clock()
        data_end: datetime | None = None
        if any(request.features is None for _, request in items):
            data_end = self.data_ends.get(tenant)
        for index, (kind, request) in enumerate(items):
            try:
                self._check_request(kind, request, now)
                gap = self._extrapolation(tenant, request, now, data_end)
                model_type = ModelType(kind.value)
                group = groups.get(model_type)
                if group is None:
                    group = _Group(self.models.get(tenant, model_type), [], [])
                    groups[model_type] = group
                group.indexes.append(index)
                group.requests.append(request)
                group.gaps.append(gap)
            except ItemError as exc:
                results[index] = exc
            except RoimlError as exc:
                results[index] = ItemError(503, str(exc))
        pool = self._pool
        if pool is not None and len(groups) > 1 and len(items) >= _PARALLEL_ITEMS:
            served = list(
                pool.map(
                    lambda pair: self._serve_group(tenant, pair[0], pair[1], started),
                    groups.items(),
                )
            )
        else:
            served = [self._serve_group(tenant, t, g, started) for t, g in groups.items()]
        for group, outcomes in zip(groups.values(), served, strict=True):
            for index, outcome in zip(group.indexes, outcomes, strict=True):
                results[index] = outcome
        return [r if r is not None else ItemError(500, "not served") for r in results]

    # ------------------------------------------------------------------ checks

    def _check_request(
        self, kind: PredictionType, request: PredictionRequest, now: datetime
    ) -> None:
        if request.prediction_type is not None and request.prediction_type != kind:
            raise ItemError(
                422,
                f"prediction_type {request.prediction_type.value} does not match this route "
                f"({kind.value}); call the route of that model or drop the field",
            )
        if request.entity_type is not EntityType.USER:
            raise ItemError(422, f"entity_type {request.entity_type.value} is not served; use USER")
        if request.as_of_date is not None:
            as_of = as_naive_utc(request.as_of_date)
            if as_of > now + _CLOCK_SKEW:
                raise ItemError(
                    422,
                    f"as_of_date {request.as_of_date.isoformat()} is in the future; give a past "
                    "instant or leave it out for now",
                )
        if request.horizon_months is not None and kind is not PredictionType.PROPERTY_VALUE:
            raise ItemError(422, "horizon_months applies to property-value predictions only")

    def _extrapolation(
        self, tenant: str, request: PredictionRequest, now: datetime, data_end: datetime | None
    ) -> int | None:
        """The days ``request``'s answer reaches past the tenant's data (None: it does not, or
        its features are given: they are the caller's, as fresh as the caller made them); an
        :class:`ItemError` (422) past the limit."""
        if request.features is not None or data_end is None:
            return None
        answered_for = as_naive_utc(request.as_of_date) if request.as_of_date else now
        gap = extrapolation_days(answered_for, data_end)
        if gap is not None and gap > self.max_extrapolation_days:
            raise ItemError(
                422, refusal(answered_for, data_end, gap, self.max_extrapolation_days, tenant)
            )
        return gap

    # ------------------------------------------------------------------ serving

    def _serve_group(
        self, tenant: str, model_type: ModelType, group: _Group, started: float
    ) -> list[ServedPrediction | ItemError]:
        try:
            return self._serve_group_of(tenant, model_type, group, started)
        except DependencyUnavailableError as exc:
            # The vectors degrade per row; this is anything else below that needed a store.
            unavailable = ItemError(503, str(exc), exc.retry_after)
            return [unavailable] * len(group.requests)

    def _serve_group_of(
        self, tenant: str, model_type: ModelType, group: _Group, started: float
    ) -> list[ServedPrediction | ItemError]:
        artifact = group.model.artifact
        names = artifact.feature_names
        inputs = self._inputs_of(names)
        count = len(group.requests)
        filled = _GroupInputs(np.full((count, len(names)), np.nan), [""] * count, {})
        read: list[int] = []
        for i, request in enumerate(group.requests):
            if request.features is None:
                read.append(i)
                continue
            try:
                filled.matrix[i] = self._given_vector(request.features, names)
                filled.sources[i] = "given"
            except ItemError as exc:
                filled.errors[i] = exc
        if read:
            requests = [group.requests[i] for i in read]
            filled.place(read, inputs, self._read_vectors(tenant, requests, inputs))
            filled.set_horizons(read, requests, inputs)
        errors = filled.errors
        good = [i for i in range(count) if i not in errors]
        outcomes: list[ServedPrediction | ItemError] = [
            errors.get(i, ItemError(500, "not served")) for i in range(count)
        ]
        if not good:
            return outcomes
        rows = filled.matrix[good]
        answer = predict(artifact, rows)
        tops: list[list[dict[str, Any]]] = [[] for _ in good]
        if answer.contributions is not None:
            tops = [
                [{"feature_name": n, "contribution": c, "value": v} for n, c, v in row]
                for row in top_features(answer.contributions.values, names, rows, TOP_K)
            ]
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        answered = _Answered(tenant, model_type, group.model, rows, answer, tops, latency_ms)
        for row, i in enumerate(good):
            outcomes[i] = self._response(
                answered, row, group.requests[i], filled.sources[i], group.gaps[i]
            )
        return outcomes

    def _read_vectors(
        self, tenant: str, requests: list[PredictionRequest], inputs: _Inputs
    ) -> Vectors:
        """The stored inputs of ``requests``, in one read for the group (online, warm or
        computed; past dates computed)."""
        as_of = (
            [r.as_of_date for r in requests]
            if any(r.as_of_date is not None for r in requests)
            else None
        )
        ids = [r.entity_id for r in requests]
        return self.vectors.read(tenant, inputs.stored, ids, as_of, self.clock())

    def _inputs_of(self, names: list[str]) -> _Inputs:
        key = tuple(names)
        inputs = self._inputs.get(key)
        if inputs is None:
            stored = tuple(n for n in names if n != HORIZON_FEATURE)
            column_of = {n: j for j, n in enumerate(names)}
            inputs = _Inputs(
                stored,
                np.array([column_of[n] for n in stored], dtype=np.int64),
                column_of.get(HORIZON_FEATURE),
            )
            self._inputs[key] = inputs
        return inputs

    def _given_vector(self, features: dict[str, float | None], names: list[str]) -> np.ndarray:
        missing = [n for n in names if n not in features]
        extra = sorted(set(features) - set(names))
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing {len(missing)}: {', '.join(missing[:10])}")
            if extra:
                parts.append(f"unknown {len(extra)}: {', '.join(extra[:10])}")
            raise ItemError(
                422,
                "features must be exactly the model's inputs (" + "; ".join(parts) + "); "
                "GET /v1/models/{model_name}/health names the version, and the model's "
                "signature in the registry lists its features",
            )
        return np.array(
            [np.nan if features[n] is None else float(features[n]) for n in names],  # type: ignore[arg-type]
            dtype=np.float64,
        )

    def _response(
        self,
        answered: _Answered,
        row: int,
        request: PredictionRequest,
        source: str,
        gap: int | None,
    ) -> ServedPrediction:
        answer = answered.answer
        names = answered.model.artifact.feature_names
        version = answered.model.version
        shap: dict[str, float] | None = None
        if answer.contributions is not None:
            values = answer.contributions.values[row]
            shap = {names[c]: v for c, v in enumerate(values.tolist()) if v != 0.0}
            shap["_base"] = float(answer.contributions.base[row])
        probabilities = None
        if answer.probabilities is not None and answer.classes:
            probabilities = {
                c: float(p) for c, p in zip(answer.classes, answer.probabilities[row], strict=True)
            }
        details: dict[str, float | int | str] | None = None
        if answer.details:
            details = {k: _plain(v[row]) for k, v in answer.details.items()}
        now = self.clock()
        prediction_id = f"pred_{uuid.uuid4().hex}"
        kind = PredictionType(answered.model_type.value)
        predicted_value = float(answer.predicted_value[row])
        predicted_class = answer.predicted_class[row]
        confidence = float(answer.confidence[row])
        latency_ms = answered.latency_ms
        # PredictionResponse's fields in its order (a test holds the two to the same bytes).
        body = {
            "prediction_id": prediction_id,
            "entity_id": request.entity_id,
            "prediction_type": kind.value,
            "predicted_value": predicted_value,
            "predicted_class": predicted_class,
            "confidence": confidence,
            "top_features": answered.tops[row],
            "prediction_date": now,
            "model_version": version,
            "latency_ms": latency_ms,
            "feature_source": source,
            "probabilities": probabilities,
            "details": details,
            "extrapolation_days": gap,
        }
        record = {
            "prediction_id": prediction_id,
            "tenant_id": answered.tenant,
            "model_name": MODEL_NAMES[answered.model_type],
            "model_version": version,
            "prediction_type": kind.value,
            "entity_type": EntityType.USER.value,
            "entity_id": request.entity_id,
            "features": {
                # v != v only for NaN: a missing input is logged as null.
                n: (None if v != v else v)
                for n, v in zip(names, answered.inputs[row].tolist(), strict=True)
            },
            "feature_source": source,
            "predicted_value": predicted_value,
            "predicted_class": predicted_class,
            "probabilities": probabilities,
            "confidence": confidence,
            "shap_values": shap,
            "latency_ms": latency_ms,
            "as_of_date": as_naive_utc(request.as_of_date) if request.as_of_date else None,
            "predicted_at": now,
            "extrapolation_days": None if gap is None else float(gap),
        }
        return ServedPrediction(body, record)


def _plain(value: Any) -> float | int | str:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value  # type: ignore[no-any-return]
