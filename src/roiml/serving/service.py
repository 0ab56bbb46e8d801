"""From requests to explained predictions: features, one predict call per model, the log.

Single and batch routes both come here. A batch is grouped by model; each group reads its
features in one online-store round trip, predicts and explains in one call per booster, and
every item that cannot be served becomes an error entry of its own.
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
from sqlalchemy import Engine, bindparam, select

from roiml.db.base import as_naive_utc, utcnow
from roiml.db.engine import tenant_session
from roiml.db.enums import EntityType, ModelType, PredictionType
from roiml.db.source_models import User
from roiml.errors import FeatureError, RoimlError
from roiml.features.catalog import CATALOG
from roiml.features.engine import FeatureEngine, entity_frame
from roiml.features.sources import load_sources
from roiml.models.artifact import HORIZON_FEATURE, MODEL_NAMES
from roiml.models.explain import top_features
from roiml.models.predict import Predictions, predict
from roiml.serving.model_cache import LoadedModel, ModelCache
from roiml.serving.schemas import PredictionRequest, PredictionResponse
from roiml.store.online import DEFAULT_TTL, OnlineFeatureSet, OnlineStore
from roiml.store.retrieval import FeatureStore

__all__ = ["ItemError", "PredictionService", "ServedPrediction"]

TOP_K = 5
DEFAULT_HORIZON_MONTHS = 6.0
# Below this many items a batch is served on the calling thread: handing groups to the pool
# costs more than the overlap saves.
_PARALLEL_ITEMS = 64
# A client clock slightly ahead of ours is not "the future".
_CLOCK_SKEW = timedelta(minutes=5)


@dataclass
class ItemError(Exception):
    """One request that cannot be served: an HTTP status and what to fix."""

    status_code: int
    detail: str


@dataclass(frozen=True)
class _Layout:
    """Where a model's stored inputs come from: the online sets to read, each input's column in
    the model's matrix and its position in the online read."""

    sets: list[OnlineFeatureSet]
    columns: np.ndarray
    picks: np.ndarray


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


class PredictionService:
    """Serves predictions for any tenant from the registry's production models."""

    def __init__(
        self,
        engine: Engine,
        online: OnlineStore,
        models: ModelCache,
        data_dir: Any,
        feature_engine: FeatureEngine | None = None,
        clock: Callable[[], datetime] = utcnow,
        batch_threads: int = 1,
    ) -> None:
        self.engine = engine
        self.online = online
        self.models = models
        self.data_dir = data_dir
        self.features = feature_engine or FeatureEngine(threads=1)
        self.clock = clock
        self._stores: dict[str, FeatureStore] = {}
        self._online_sets = {
            name: OnlineFeatureSet(name, names, DEFAULT_TTL)
            for name, names in CATALOG.feature_sets.items()
        }
        self._layouts: dict[tuple[tuple[str, ...], tuple[str, ...]], _Layout] = {}
        # A batch mixing models serves each model's group on its own thread: LightGBM, the
        # explanation's NumPy and SciPy work and the online read release the GIL.
        self._pool = (
            ThreadPoolExecutor(batch_threads, thread_name_prefix="roiml-batch")
            if batch_threads > 1
            else None
        )

    def close(self) -> None:
        """Stop the batch threads."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    # ------------------------------------------------------------------ public

    def predict(
        self, tenant: str, items: Sequence[tuple[PredictionType, PredictionRequest]]
    ) -> list[ServedPrediction | ItemError]:
        """One answer per item, in order: a prediction, or the error of that item alone."""
        started = time.perf_counter()
        results: list[ServedPrediction | ItemError | None] = [None] * len(items)
        groups: dict[ModelType, _Group] = {}
        for index, (kind, request) in enumerate(items):
            try:
                self._check_request(kind, request)
                model_type = ModelType(kind.value)
                group = groups.get(model_type)
                if group is None:
                    group = _Group(self.models.get(tenant, model_type), [], [])
                    groups[model_type] = group
                group.indexes.append(index)
                group.requests.append(request)
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

    def entity_exists(self, tenant: str, entity_ids: Sequence[str]) -> set[str]:
        """Which of ``entity_ids`` are users of ``tenant``."""
        query = select(User.user_id).where(
            User.tenant_id == tenant, User.user_id.in_(bindparam("ids", expanding=True))
        )
        with tenant_session(self.engine, tenant) as session:
            return set(session.execute(query, {"ids": list(entity_ids)}).scalars())

    # ------------------------------------------------------------------ checks

    def _check_request(self, kind: PredictionType, request: PredictionRequest) -> None:
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
            if as_of > self.clock() + _CLOCK_SKEW:
                raise ItemError(
                    422,
                    f"as_of_date {request.as_of_date.isoformat()} is in the future; give a past "
                    "instant or leave it out for now",
                )
        if request.horizon_months is not None and kind is not PredictionType.PROPERTY_VALUE:
            raise ItemError(422, "horizon_months applies to property-value predictions only")

    # ------------------------------------------------------------------ serving

    def _serve_group(
        self, tenant: str, model_type: ModelType, group: _Group, started: float
    ) -> list[ServedPrediction | ItemError]:
        artifact = group.model.artifact
        names = artifact.feature_names
        count = len(group.requests)
        matrix = np.full((count, len(names)), np.nan)
        sources: list[str] = ["" for _ in range(count)]
        errors: dict[int, ItemError] = {}
        stored = [n for n in names if n != HORIZON_FEATURE]

        given = [i for i, r in enumerate(group.requests) if r.features is not None]
        for i in given:
            try:
                matrix[i] = self._given_vector(group.requests[i].features or {}, names)
                sources[i] = "given"
            except ItemError as exc:
                errors[i] = exc
        past = [
            i
            for i, r in enumerate(group.requests)
            if r.features is None and r.as_of_date is not None
        ]
        if past:
            self._fill_computed(tenant, group, past, stored, names, matrix, sources, errors)
        current = [
            i for i, r in enumerate(group.requests) if r.features is None and r.as_of_date is None
        ]
        if current:
            self._fill_current(
                tenant, model_type, group, current, stored, names, matrix, sources, errors
            )
        if HORIZON_FEATURE in names:
            column = names.index(HORIZON_FEATURE)
            for i, request in enumerate(group.requests):
                if request.features is None:
                    matrix[i, column] = (
                        request.horizon_months
                        if request.horizon_months is not None
                        else DEFAULT_HORIZON_MONTHS
                    )
        good = [i for i in range(count) if i not in errors]
        outcomes: list[ServedPrediction | ItemError] = [
            errors.get(i, ItemError(500, "not served")) for i in range(count)
        ]
        if not good:
            return outcomes
        inputs = matrix[good]
        answer = predict(artifact, inputs)
        tops: list[list[dict[str, Any]]] = [[] for _ in good]
        if answer.contributions is not None:
            tops = [
                [{"feature_name": n, "contribution": c, "value": v} for n, c, v in row]
                for row in top_features(answer.contributions.values, names, inputs, TOP_K)
            ]
        elapsed_ms = (time.perf_counter() - started) * 1000
        for row, i in enumerate(good):
            outcomes[i] = self._response(
                tenant,
                model_type,
                group,
                i,
                row,
                answer,
                tops[row],
                inputs[row],
                sources[i],
                elapsed_ms,
            )
        return outcomes

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

    def _layout(self, stored: list[str], names: list[str]) -> _Layout:
        # Resolved once per model input list: rebuilding it (names.index per feature) cost
        # ~0.1 ms a request.
        key = (tuple(stored), tuple(names))
        layout = self._layouts.get(key)
        if layout is None:
            set_names = list(dict.fromkeys(CATALOG.get(n).feature_set for n in stored))
            sets = [self._online_sets[s] for s in set_names]
            position: dict[str, int] = {}
            offset = 0
            for feature_set in sets:
                for j, name in enumerate(feature_set.feature_names):
                    position[name] = offset + j
                offset += len(feature_set.feature_names)
            column_of = {n: j for j, n in enumerate(names)}
            layout = _Layout(
                sets,
                np.array([column_of[n] for n in stored], dtype=np.int64),
                np.array([position[n] for n in stored], dtype=np.int64),
            )
            self._layouts[key] = layout
        return layout

    def _fill_current(
        self,
        tenant: str,
        model_type: ModelType,
        group: _Group,
        rows: list[int],
        stored: list[str],
        names: list[str],
        matrix: np.ndarray,
        sources: list[str],
        errors: dict[int, ItemError],
    ) -> None:
        layout = self._layout(stored, names)
        columns, picks = layout.columns, layout.picks
        ids = [group.requests[i].entity_id for i in rows]
        now = self.clock()
        read = self.online.get_matrix(tenant, EntityType.USER, ids, layout.sets, now)
        complete = read.found.all(axis=1)
        hit_rows = [rows[k] for k in np.flatnonzero(complete)]
        if hit_rows:
            matrix[np.ix_(np.asarray(hit_rows), columns)] = read.values[np.flatnonzero(complete)][
                :, picks
            ]
            for i in hit_rows:
                sources[i] = "online"
        misses = [rows[k] for k in np.flatnonzero(~complete)]
        if not misses:
            return
        known = self.entity_exists(tenant, [group.requests[i].entity_id for i in misses])
        store = self._store(tenant)
        for i in misses:
            entity = group.requests[i].entity_id
            if entity not in known:
                errors[i] = ItemError(
                    404, f"entity {entity!r} is not a user of tenant {tenant!r}; check the id"
                )
                continue
            try:
                found = store.create_prediction_features(
                    entity, model_type, feature_names=stored, now=now
                )
            except FeatureError as exc:
                errors[i] = ItemError(422, str(exc))
                continue
            matrix[i, columns] = [
                np.nan if found.values[n] is None else found.values[n] for n in stored
            ]
            sources[i] = found.feature_source

    def _fill_computed(
        self,
        tenant: str,
        group: _Group,
        rows: list[int],
        stored: list[str],
        names: list[str],
        matrix: np.ndarray,
        sources: list[str],
        errors: dict[int, ItemError],
    ) -> None:
        ids = [group.requests[i].entity_id for i in rows]
        known = self.entity_exists(tenant, ids)
        for i in rows:
            if group.requests[i].entity_id not in known:
                errors[i] = ItemError(
                    404,
                    f"entity {group.requests[i].entity_id!r} is not a user of tenant "
                    f"{tenant!r}; check the id",
                )
        ok = [i for i in rows if i not in errors]
        if not ok:
            return
        times = [as_naive_utc(group.requests[i].as_of_date) for i in ok]
        plan = self.features.plan(stored)
        sources_rows = load_sources(
            self.engine,
            tenant,
            plan.lookback_days,
            min(times),
            max(times),
            list(dict.fromkeys(group.requests[i].entity_id for i in ok)),
        )
        frame = entity_frame([group.requests[i].entity_id for i in ok], times)
        computed = self.features.compute(frame, stored, sources_rows)
        columns = self._layout(stored, names).columns
        values = np.column_stack(
            [computed[n].to_numpy(zero_copy_only=False).astype(np.float64) for n in stored]
        )
        matrix[np.ix_(np.asarray(ok), columns)] = values
        for i in ok:
            sources[i] = "computed"

    def _response(
        self,
        tenant: str,
        model_type: ModelType,
        group: _Group,
        i: int,
        row: int,
        answer: Predictions,
        top: list[dict[str, Any]],
        inputs: np.ndarray,
        source: str,
        elapsed_ms: float,
    ) -> ServedPrediction:
        request = group.requests[i]
        artifact = group.model.artifact
        names = artifact.feature_names
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
        kind = PredictionType(model_type.value)
        predicted_value = float(answer.predicted_value[row])
        predicted_class = answer.predicted_class[row]
        confidence = float(answer.confidence[row])
        latency_ms = round(elapsed_ms, 3)
        # PredictionResponse's fields in its order (a test holds the two to the same bytes).
        body = {
            "prediction_id": prediction_id,
            "entity_id": request.entity_id,
            "prediction_type": kind.value,
            "predicted_value": predicted_value,
            "predicted_class": predicted_class,
            "confidence": confidence,
            "top_features": top,
            "prediction_date": now,
            "model_version": group.model.version,
            "latency_ms": latency_ms,
            "feature_source": source,
            "probabilities": probabilities,
            "details": details,
        }
        record = {
            "prediction_id": prediction_id,
            "tenant_id": tenant,
            "model_name": MODEL_NAMES[model_type],
            "model_version": group.model.version,
            "prediction_type": kind.value,
            "entity_type": EntityType.USER.value,
            "entity_id": request.entity_id,
            "features": {
                # v != v only for NaN: a missing input is logged as null.
                n: (None if v != v else v)
                for n, v in zip(names, inputs.tolist(), strict=True)
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
        }
        return ServedPrediction(body, record)

    # ------------------------------------------------------------------ stores

    def _store(self, tenant: str) -> FeatureStore:
        store = self._stores.get(tenant)
        if store is None:
            store = FeatureStore(self.engine, tenant, self.data_dir, self.online)
            self._stores[tenant] = store
        return store


def _plain(value: Any) -> float | int | str:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value  # type: ignore[no-any-return]
