"""A prediction's feature vectors: the one way anything gets them.

For a group of entities and one model's inputs (the feature list its artifact records), each
entity's vector comes, per feature set, from the online store, else the warm store (neither
older than the TTL), else computed through the feature engine as of now; an entity asked
about at a past instant is computed as of then. The online store is read once per group, the
warm store only for the sets that read missed, and each group's computations are one engine
call. An entity the tenant does not have, or whose features the engine cannot compute, gets
an error of its own; the rest of the group is served.

A dependency that fails degrades the read by the same order: with the online store down (an
error, a timeout, its breaker open) every set goes to the warm store, then the engine; with the
database down the rows that needed it get an ``unavailable`` error each (the API's 503) and the
rows the online store served are still served. Database calls go through a breaker of their
own, so a dead database costs a timeout a few times, then microseconds.

The API calls :meth:`PredictionVectors.read` once per request group (a single prediction is a
group of one); :meth:`roiml.store.retrieval.FeatureStore.create_prediction_features` is the
same read for one entity.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Literal, TypeVar

import numpy as np
import numpy.typing as npt
import psycopg
from sqlalchemy import Engine, bindparam, select
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from roiml.db.base import as_naive_utc, utcnow
from roiml.db.engine import statement_deadline, tenant_session
from roiml.db.enums import EntityType
from roiml.db.source_models import User
from roiml.errors import DatabaseUnavailableError, FeatureError
from roiml.features.catalog import CATALOG, Catalog
from roiml.features.engine import FeatureEngine, entity_frame
from roiml.features.sources import load_sources
from roiml.store import warm
from roiml.store.breaker import CircuitBreaker, DependencyUnavailableError
from roiml.store.online import DEFAULT_TTL, OnlineFeatureSet, OnlineStore

__all__ = [
    "DATABASE_FAILURES",
    "TIERS",
    "FeatureSource",
    "PredictionVectors",
    "VectorError",
    "Vectors",
    "known_users",
]

FeatureSource = Literal["online", "warm", "computed"]
# A set's tier as a small integer (its index here): the slower, the larger.
TIERS: tuple[FeatureSource, ...] = ("online", "warm", "computed")
_WARM = 1
_COMPUTED = 2
# What a database outage raises: refused, reset or shut-down connections, a statement past its
# timeout, no pooled connection in time.
DATABASE_FAILURES: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    # The driver's own, from a COPY on its connection (roiml.features.sources).
    psycopg.OperationalError,
    psycopg.InterfaceError,
    PoolTimeoutError,
    DatabaseUnavailableError,
    OSError,
)
T = TypeVar("T")
# A bounded read is given up this long after its statement deadline: the server's own cancel,
# or the engine's watchdog, should have ended it by then.
_READ_MARGIN = 0.05


@dataclass(frozen=True, slots=True)
class VectorError:
    """Why one entity has no vector: ``unknown_entity`` (not a user of the tenant),
    ``features`` (the engine could not compute its features) or ``unavailable`` (a store it
    needed is down; ``retry_after`` seconds); ``detail`` says what to do."""

    reason: Literal["unknown_entity", "features", "unavailable"]
    detail: str
    retry_after: float = 0.0


@dataclass(frozen=True)
class Vectors:
    """A group's vectors: row ``i`` is entity ``i`` of the read, column ``j`` feature ``j``.

    ``values`` is float64, NaN where a value is missing and in the rows of ``errors``;
    ``tiers`` gives, per row and feature set (``feature_sets``), the index in :data:`TIERS` of
    where that set came from.
    """

    feature_names: tuple[str, ...]
    feature_sets: tuple[str, ...]
    values: npt.NDArray[np.float64]
    tiers: npt.NDArray[np.int8]
    errors: dict[int, VectorError]

    def sources(self) -> list[FeatureSource]:
        """Per row, the slowest tier it used (computed > warm > online)."""
        if not self.feature_sets:
            return ["online"] * len(self.values)
        return [TIERS[t] for t in self.tiers.max(axis=1).tolist()]

    def set_sources(self, row: int) -> dict[str, FeatureSource]:
        """Row ``row``'s tier per feature set."""
        return {
            name: TIERS[t]
            for name, t in zip(self.feature_sets, self.tiers[row].tolist(), strict=True)
        }


@dataclass(frozen=True)
class _Layout:
    """How a feature list maps onto the online sets: resolved once per list (rebuilding it per
    request cost ~0.1 ms)."""

    names: tuple[str, ...]
    sets: tuple[OnlineFeatureSet, ...]
    # Each feature's position in an online read of ``sets``.
    picks: npt.NDArray[np.int64]
    # Per set, the columns (indexes in the feature list) of its features.
    members: tuple[npt.NDArray[np.int64], ...]


class PredictionVectors:
    """Reads prediction vectors for any tenant from the three tiers, or computes them."""

    def __init__(
        self,
        engine: Engine,
        online: OnlineStore,
        *,
        catalog: Catalog = CATALOG,
        catalogs: Callable[[str], Catalog] | None = None,
        ttl: timedelta = DEFAULT_TTL,
        feature_engine: FeatureEngine | None = None,
        database_breaker: CircuitBreaker | None = None,
        engine_guarded: bool = False,
        read_timeout: float | None = None,
    ) -> None:
        """Read through ``online``, then ``engine``'s warm store, then compute.

        ``catalogs``, when given, is each tenant's catalog (its declared columns' features
        beside the built-in ones: ``roiml.features.declared.load_tenant_catalog``); otherwise
        every tenant has ``catalog``. ``database_breaker``: the database's; the calls go
        through it, unless ``engine_guarded`` (the engine's events already do, see
        :func:`~roiml.store.breaker.guard_engine`). ``read_timeout`` (seconds) bounds the
        existence and warm reads, connects included.
        """
        self.catalogs = catalogs
        self._per_catalog: dict[Catalog, _PerCatalog] = {}
        self._per_catalog_lock = threading.Lock()
        self.engine = engine
        self.database_breaker = database_breaker
        self.engine_guarded = engine_guarded
        self.read_timeout = read_timeout
        self._reader = ThreadPoolExecutor(4, thread_name_prefix="roiml-db-read")
        self.online = online
        self.catalog = catalog
        self.ttl = ttl
        # One thread: a request's computation is small, and the API's cores are its requests'.
        self.features = feature_engine or FeatureEngine(catalog, threads=1)
        self._per_catalog[catalog] = _PerCatalog(catalog, self.features, ttl)

    def read(
        self,
        tenant: str,
        feature_names: Sequence[str],
        entity_ids: Sequence[str],
        as_of: Sequence[datetime | None] | None = None,
        now: datetime | None = None,
    ) -> Vectors:
        """The vectors of ``entity_ids`` over ``feature_names`` (catalog features, in the
        model's order). ``as_of[i]``, when given and not None, asks for entity ``i`` as of that
        past instant (computed); every other entity is read as of ``now`` (default: the clock).
        """
        names = feature_names if isinstance(feature_names, tuple) else tuple(feature_names)
        moment = as_naive_utc(now) if now is not None else utcnow()
        read = _Read(self, tenant, self._of(tenant).layout(names), entity_ids, moment)
        if as_of is None:
            read.current(list(range(len(entity_ids))))
        else:
            current = [i for i, t in enumerate(as_of) if t is None]
            past = [(i, as_naive_utc(t)) for i, t in enumerate(as_of) if t is not None]
            if current:
                read.current(current)
            if past:
                read.past(past)
        return read.vectors

    def database(self, fn: Callable[[], T], *, read: bool = False) -> T:
        """``fn()`` (a database call) through the breaker; a short read (``read``) runs on a
        reader thread and is given up after ``read_timeout``; any failure is
        :class:`DependencyUnavailableError`."""
        breaker = self.database_breaker
        seconds = self.read_timeout
        call = fn
        if read and seconds is not None:
            call = partial(self._bounded_read, fn, seconds)
        if read:
            call = partial(_again_if_dropped, call)
        if breaker is not None and not self.engine_guarded:
            return breaker.call(call, DATABASE_FAILURES)
        try:
            return call()
        except DATABASE_FAILURES as exc:
            if breaker is not None and not isinstance(exc, (OperationalError, InterfaceError)):
                # The engine's events count what SQLAlchemy sees; not a read given up (the
                # stuck statement fails later, and a request waiting for that would pay the
                # whole timeout) nor the driver's own errors.
                breaker.failure(exc)
            raise DependencyUnavailableError("database", type(exc).__name__) from exc

    def _bounded_read(self, fn: Callable[[], T], seconds: float) -> T:
        # On a thread of its own: a connect to a server that stopped answering takes libpq's
        # connect timeout (2 s at least), and a prediction served on the event loop must not
        # hold it that long.
        def bounded() -> T:
            with statement_deadline(seconds):
                return fn()

        future = self._reader.submit(bounded)
        try:
            return future.result(timeout=seconds + _READ_MARGIN)
        except FutureTimeoutError:
            future.cancel()
            raise TimeoutError(f"no answer from the database in {seconds:.3f} s") from None

    def close(self) -> None:
        """Stop the reader threads."""
        self._reader.shutdown(wait=False, cancel_futures=True)

    def online_sets(self, tenant: str) -> dict[str, OnlineFeatureSet]:
        """``tenant``'s feature sets as the online store holds them (its catalog's)."""
        return self._of(tenant).online_sets

    def existing(self, tenant: str, entity_ids: Sequence[str]) -> set[str]:
        """Which of ``entity_ids`` are users of ``tenant``."""
        return known_users(self.engine, tenant, entity_ids)

    def compute(
        self, tenant: str, names: list[str], entity_ids: list[str], times: list[datetime]
    ) -> npt.NDArray[np.float64]:
        """``names`` of each (entity, time) pair through the feature engine, one row each."""
        features = self._of(tenant).features
        plan = features.plan(names)
        sources = load_sources(
            self.engine,
            tenant,
            plan.lookback_days,
            min(times),
            max(times),
            list(dict.fromkeys(entity_ids)),
        )
        computed = features.compute(entity_frame(entity_ids, times), names, sources)
        return np.column_stack(
            [computed[n].to_numpy(zero_copy_only=False).astype(np.float64) for n in names]
        )

    def _of(self, tenant: str) -> _PerCatalog:
        """What reads ``tenant``'s vectors: its catalog's engine, online sets and layouts."""
        catalog = self.catalogs(tenant) if self.catalogs is not None else self.catalog
        found = self._per_catalog.get(catalog)
        if found is None:
            with self._per_catalog_lock:
                found = self._per_catalog.get(catalog)
                if found is None:
                    # One thread: a request's computation is small (as for the default).
                    found = _PerCatalog(catalog, FeatureEngine(catalog, threads=1), self.ttl)
                    self._per_catalog[catalog] = found
        return found


class _PerCatalog:
    """A catalog's engine, online feature sets and the layouts of the feature lists read."""

    def __init__(self, catalog: Catalog, features: FeatureEngine, ttl: timedelta) -> None:
        self.catalog = catalog
        self.features = features
        self.online_sets = {
            name: OnlineFeatureSet(name, names, ttl) for name, names in catalog.feature_sets.items()
        }
        self.layouts: dict[tuple[str, ...], _Layout] = {}

    def layout(self, names: tuple[str, ...]) -> _Layout:
        """How ``names`` map onto the online sets (resolved once per list)."""
        layout = self.layouts.get(names)
        if layout is None:
            set_names = list(dict.fromkeys(self.catalog.get(n).feature_set for n in names))
            sets = tuple(self.online_sets[s] for s in set_names)
            position: dict[str, int] = {}
            offset = 0
            for feature_set in sets:
                for j, name in enumerate(feature_set.feature_names):
                    position[name] = offset + j
                offset += len(feature_set.feature_names)
            set_of = {s: k for k, s in enumerate(set_names)}
            columns: list[list[int]] = [[] for _ in sets]
            for c, name in enumerate(names):
                columns[set_of[self.catalog.get(name).feature_set]].append(c)
            layout = _Layout(
                names,
                sets,
                np.array([position[n] for n in names], dtype=np.int64),
                tuple(np.array(c, dtype=np.int64) for c in columns),
            )
            self.layouts[names] = layout
        return layout


class _Read:
    """One call of :meth:`PredictionVectors.read`: its arguments, and the :class:`Vectors` its
    steps fill (each step owns the rows it is given)."""

    def __init__(
        self,
        source: PredictionVectors,
        tenant: str,
        layout: _Layout,
        entity_ids: Sequence[str],
        now: datetime,
    ) -> None:
        self.source = source
        self.tenant = tenant
        self.layout = layout
        self.entity_ids = entity_ids
        self.now = now
        count = len(entity_ids)
        self.vectors = Vectors(
            layout.names,
            tuple(s.name for s in layout.sets),
            np.full((count, len(layout.names)), np.nan),
            np.zeros((count, len(layout.sets)), dtype=np.int8),
            {},
        )

    def current(self, rows: list[int]) -> None:
        """``rows`` as of now: online for all in one read; warm, then computed, for the sets
        that read missed."""
        layout, values = self.layout, self.vectors.values
        entity_ids = self.entity_ids
        source = self.source
        ids = entity_ids if len(rows) == len(entity_ids) else [entity_ids[i] for i in rows]
        try:
            read = source.online.get_matrix(
                self.tenant, EntityType.USER, ids, layout.sets, self.now
            )
        except DependencyUnavailableError:
            # The online store is down: every set of every row from the next tiers.
            found = np.zeros((len(rows), len(layout.sets)), dtype=bool)
            partial = list(range(len(rows)))
        else:
            values[rows] = read.values[:, layout.picks]
            found = read.found
            partial = np.flatnonzero(~found.all(axis=1)).tolist()
        if not partial:
            return
        misses = [rows[k] for k in partial]
        asked = [entity_ids[i] for i in misses]
        try:
            known = source.database(lambda: source.existing(self.tenant, asked), read=True)
        except DependencyUnavailableError as exc:
            for i in misses:
                self._fail(i, _unavailable(exc))
            return
        unfilled: list[tuple[int, list[int]]] = []  # (row, sets still missing)
        for k, i in zip(partial, misses, strict=True):
            if entity_ids[i] not in known:
                self._fail(i, _unknown(entity_ids[i], self.tenant))
                continue
            missing = [s for s in range(len(layout.sets)) if not found[k, s]]
            try:
                still = self._warm(i, missing)
            except DependencyUnavailableError as exc:
                self._fail(i, _unavailable(exc))
                continue
            if still:
                unfilled.append((i, still))
        if unfilled:
            self._compute_now(unfilled)

    def past(self, rows: list[tuple[int, datetime]]) -> None:
        """Every feature of each row computed as of its own past instant."""
        entity_ids = self.entity_ids
        source = self.source
        asked = [entity_ids[i] for i, _ in rows]
        try:
            known = source.database(lambda: source.existing(self.tenant, asked), read=True)
        except DependencyUnavailableError as exc:
            for i, _ in rows:
                self._fail(i, _unavailable(exc))
            return
        ok = []
        for i, moment in rows:
            if entity_ids[i] in known:
                ok.append((i, moment))
            else:
                self._fail(i, _unknown(entity_ids[i], self.tenant))
        if not ok:
            return
        indexes = [i for i, _ in ok]
        try:
            computed = source.database(
                lambda: source.compute(
                    self.tenant,
                    list(self.layout.names),
                    [entity_ids[i] for i in indexes],
                    [moment for _, moment in ok],
                )
            )
        except FeatureError as exc:
            for i in indexes:
                self._fail(i, VectorError("features", str(exc)))
            return
        except DependencyUnavailableError as exc:
            for i in indexes:
                self._fail(i, _unavailable(exc))
            return
        self.vectors.values[indexes] = computed
        self.vectors.tiers[indexes] = _COMPUTED

    def _warm(self, row: int, missing: list[int]) -> list[int]:
        """Row ``row``'s ``missing`` sets from the warm store; the ones it has not either."""
        layout, vectors, source = self.layout, self.vectors, self.source
        latest = source.database(
            lambda: warm.read_latest(
                source.engine,
                self.tenant,
                EntityType.USER,
                self.entity_ids[row],
                [layout.sets[s].name for s in missing],
                source.ttl,
                now=self.now,
            ),
            read=True,
        )
        still = []
        for s in missing:
            stored = latest.get(layout.sets[s].name)
            if stored is None:
                still.append(s)
                continue
            stored_values = stored[1]
            columns = layout.members[s]
            vectors.values[row, columns] = [
                _float(stored_values.get(layout.names[c])) for c in columns.tolist()
            ]
            vectors.tiers[row, s] = _WARM
        return still

    def _compute_now(self, unfilled: list[tuple[int, list[int]]]) -> None:
        """The sets each row still misses, computed as of now in one engine call."""
        layout, vectors = self.layout, self.vectors
        sets = sorted({s for _, missing in unfilled for s in missing})
        columns = np.concatenate([layout.members[s] for s in sets]).tolist()
        rows = [i for i, _ in unfilled]
        source = self.source
        try:
            computed = source.database(
                lambda: source.compute(
                    self.tenant,
                    [layout.names[c] for c in columns],
                    [self.entity_ids[i] for i in rows],
                    [self.now] * len(rows),
                )
            )
        except FeatureError as exc:
            for i in rows:
                self._fail(i, VectorError("features", str(exc)))
            return
        except DependencyUnavailableError as exc:
            for i in rows:
                self._fail(i, _unavailable(exc))
            return
        position = {c: j for j, c in enumerate(columns)}
        for k, (i, missing) in enumerate(unfilled):
            for s in missing:
                members = layout.members[s]
                vectors.values[i, members] = computed[k, [position[c] for c in members.tolist()]]
                vectors.tiers[i, s] = _COMPUTED

    def _fail(self, row: int, error: VectorError) -> None:
        self.vectors.errors[row] = error
        self.vectors.values[row] = np.nan


def _unknown(entity: str, tenant: str) -> VectorError:
    return VectorError(
        "unknown_entity", f"entity {entity!r} is not a user of tenant {tenant!r}; check the id"
    )


def _unavailable(exc: DependencyUnavailableError) -> VectorError:
    return VectorError("unavailable", str(exc), exc.retry_after)


def _float(value: float | None) -> float:
    return np.nan if value is None else float(value)


def known_users(engine: Engine, tenant: str, entity_ids: Sequence[str]) -> set[str]:
    """Which of ``entity_ids`` are users of ``tenant`` (the API's 404, the CLI's refusal)."""
    query = select(User.user_id).where(
        User.tenant_id == tenant, User.user_id.in_(bindparam("ids", expanding=True))
    )
    with tenant_session(engine, tenant) as session:
        return set(session.execute(query, {"ids": list(entity_ids)}).scalars())


def _again_if_dropped(read: Callable[[], T]) -> T:
    """``read()``, once more if its pooled connection had been dropped by the server.

    The API's engine does not pre-ping (SQLAlchemy's ping is a statement no event bounds, so a
    hung server would hold it), so the first statement after a database restart meets a dead
    pooled connection; SQLAlchemy then invalidates the whole pool. A read is safe to repeat, and
    the second attempt connects afresh, so a restart costs no request a 503.
    """
    try:
        return read()
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        return read()
