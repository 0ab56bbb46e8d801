"""Reading features back: training sets from the cold store (point in time), and the vector
for one prediction (:mod:`roiml.store.vectors`: online, else warm, else computed on demand
through the same engine)."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Engine, delete

from roiml.db.base import utcnow
from roiml.db.engine import make_engine, tenant_session
from roiml.db.enums import ModelType
from roiml.db.ml_tables import MLFeatureValue
from roiml.errors import FeatureError
from roiml.features.catalog import Catalog
from roiml.features.declared import load_tenant_catalog
from roiml.features.engine import FeatureEngine
from roiml.features.engineer import FeatureEngineer
from roiml.features.frame import AS_OF, ENTITY_ID
from roiml.settings import Settings
from roiml.store import cold
from roiml.store.online import DEFAULT_TTL, OnlineFeatureSet, OnlineStore, open_online_store
from roiml.store.online_read import OnlineFeatures, read_online
from roiml.store.pit import point_in_time_join
from roiml.store.vectors import FeatureSource, PredictionVectors

__all__ = [
    "FeatureSource",
    "FeatureStore",
    "OnlineFeatures",
    "PredictionFeatures",
]


@dataclass(frozen=True)
class PredictionFeatures:
    """One entity's vector for a model, and where each feature set came from."""

    entity_id: str
    values: dict[str, float | None]
    sources: dict[str, FeatureSource]  # feature set -> tier

    @property
    def feature_source(self) -> FeatureSource:
        """The slowest tier used: computed > warm > online."""
        for tier in ("computed", "warm", "online"):
            if tier in self.sources.values():
                return tier
        return "online"


class FeatureStore:
    """One tenant's feature store: the three tiers and retrieval, resolved once."""

    def __init__(
        self,
        engine: Engine,
        tenant_id: str,
        data_dir: Path,
        online: OnlineStore,
        catalog: Catalog | None = None,
        ttl: timedelta = DEFAULT_TTL,
    ) -> None:
        self.engine = engine
        self.tenant_id = tenant_id
        self.data_dir = data_dir
        self.online = online
        # The tenant's own: the built-in features plus those of its declared columns.
        self.catalog = catalog if catalog is not None else load_tenant_catalog(data_dir, tenant_id)
        catalog = self.catalog
        self.ttl = ttl
        self.engineer = FeatureEngineer(engine, tenant_id, FeatureEngine(catalog))
        self.online_sets = {
            name: OnlineFeatureSet(name, names, ttl) for name, names in catalog.feature_sets.items()
        }
        self._vectors: PredictionVectors | None = None

    @classmethod
    def from_settings(cls, settings: Settings, tenant_id: str | None = None) -> FeatureStore:
        """The feature store the settings describe (their database and online store), for
        ``tenant_id`` (default: the settings' tenant): what a notebook opens with
        ``FeatureStore.from_settings(roiml.get_settings())``."""
        return cls(
            make_engine(settings.resolved_database_url),
            tenant_id or settings.tenant_id,
            settings.data_dir,
            open_online_store(settings),
        )

    def clear(self) -> None:
        """Delete every stored feature of this tenant, in all three tiers."""
        shutil.rmtree(cold.tenant_dir(self.data_dir, self.tenant_id), ignore_errors=True)
        with tenant_session(self.engine, self.tenant_id) as session:
            session.execute(
                delete(MLFeatureValue).where(MLFeatureValue.tenant_id == self.tenant_id)
            )
        self.online.delete_tenant(self.tenant_id)

    def create_training_dataset(
        self,
        entity_ids: Sequence[str] | None = None,
        feature_sets: Sequence[str] = ("behavioral", "temporal"),
        as_of_date: datetime | None = None,
        *,
        entity_frame: pa.Table | None = None,
        ttl: timedelta | None = None,
        only_known_at_event_time: bool = True,
    ) -> pa.Table:
        """Features for each (entity, timestamp) row, point in time, from the cold store.

        Give ``entity_ids`` with one ``as_of_date``, or an ``entity_frame`` with ``entity_id``
        and ``event_timestamp`` (extra columns, such as labels, are kept). Each row gets, per
        feature set, the latest stored vector with as-of <= its timestamp and within ``ttl``;
        by default only vectors already *created* by then (a later backfill cannot leak in).
        Rows keep their order and count.
        """
        frame = self._entity_frame(entity_ids, as_of_date, entity_frame)
        window = ttl if ttl is not None else self.ttl
        times = frame["event_timestamp"]
        first = pc.min(times).as_py()
        last = pc.max(times).as_py()
        ids = pc.unique(frame[ENTITY_ID]).to_pylist()
        result = frame
        for set_name in dict.fromkeys(feature_sets):
            names = self.catalog.feature_set(set_name)
            stored = cold.read(
                self.tenant_id,
                set_name.lower(),
                (first - window).date() if first else None,
                last.date() if last else None,
                ids,
                data_dir=self.data_dir,
                with_created=True,
            )
            stored = stored.rename_columns(
                [
                    "event_timestamp"
                    if c == AS_OF
                    else "created_timestamp"
                    if c == cold.CREATED_AT
                    else c
                    for c in stored.column_names
                ]
            )
            # A set never stored (or stored before a feature existed) yields nulls, not errors.
            for missing in (n for n in names if n not in stored.column_names):
                stored = stored.append_column(missing, pa.nulls(stored.num_rows, pa.float64()))
            joined = point_in_time_join(
                frame.select([ENTITY_ID, "event_timestamp"]),
                stored,
                window,
                features=list(names),
                only_known_at_event_time=only_known_at_event_time,
            )
            for name in names:
                result = result.append_column(name, joined[name])
        return result

    def create_prediction_features(
        self,
        entity_id: str,
        model_type: ModelType | str | None = None,
        *,
        feature_names: Sequence[str] | None = None,
        now: datetime | None = None,
    ) -> PredictionFeatures:
        """The vector for one prediction, as the API reads it (:mod:`roiml.store.vectors`): per
        feature set, the online store, else the warm store (both never older than the TTL),
        else computed now through the same engine.

        ``feature_names`` are the model's inputs, the list its artifact records; without them,
        every catalog feature. ``model_type`` only names the model in an error: the inputs
        are the artifact's, not a list kept per model type here.
        """
        wanted = (
            list(feature_names)
            if feature_names is not None
            else [name for names in self.catalog.feature_sets.values() for name in names]
        )
        unknown = [name for name in wanted if name not in self.catalog.features]
        if unknown:
            model = f"{model_type} " if model_type is not None else ""
            raise FeatureError(f"{model}inputs {unknown} are not features of the catalog")
        vectors = self._prediction_vectors().read(self.tenant_id, wanted, [entity_id], now=now)
        error = vectors.errors.get(0)
        if error is not None:
            raise FeatureError(error.detail)
        values = {
            name: (None if value != value else value)  # NaN (only NaN != itself) is None
            for name, value in zip(wanted, vectors.values[0].tolist(), strict=True)
        }
        return PredictionFeatures(entity_id, values, vectors.set_sources(0))

    def get_online_features(
        self,
        entity_ids: Sequence[str],
        feature_sets: Sequence[str] | None = None,
        *,
        now: datetime | None = None,
    ) -> list[OnlineFeatures]:
        """What the online store holds for ``entity_ids`` (Feast's ``get_online_features``):
        per feature set (default: all), the stored vector with its as-of and age, or None
        where the store holds none fresh; no fallback to the warm store or to computing
        (that is :meth:`create_prediction_features`). See
        :func:`roiml.store.online_read.read_online`.
        """
        return read_online(
            self._prediction_vectors(), self.tenant_id, entity_ids, feature_sets, now
        )

    def _prediction_vectors(self) -> PredictionVectors:
        if self._vectors is None:
            self._vectors = PredictionVectors(
                self.engine, self.online, catalog=self.catalog, ttl=self.ttl
            )
        return self._vectors

    def _entity_frame(
        self,
        entity_ids: Sequence[str] | None,
        as_of_date: datetime | None,
        entity_frame: pa.Table | None,
    ) -> pa.Table:
        if entity_frame is not None:
            if entity_ids is not None:
                raise FeatureError("give entity_ids or entity_frame, not both")
            missing = [
                c for c in (ENTITY_ID, "event_timestamp") if c not in entity_frame.column_names
            ]
            if missing:
                raise FeatureError(
                    f"entity frame lacks {missing}; it needs entity_id and event_timestamp "
                    f"(has {entity_frame.column_names})"
                )
            return entity_frame
        if not entity_ids:
            raise FeatureError("give entity_ids (with as_of_date) or an entity_frame")
        moment = as_of_date or utcnow()
        return pa.table(
            {
                ENTITY_ID: pa.array(list(entity_ids), pa.string()),
                "event_timestamp": pa.array([moment] * len(entity_ids), pa.timestamp("us")),
            }
        )
