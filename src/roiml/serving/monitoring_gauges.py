"""Drift, decay and feature freshness as Prometheus gauges, read from the database in the
background and rendered from memory at scrape.

What is read, per tenant the API serves (its own ``ROIML_TENANT_ID`` and every tenant it has
loaded a model for), every :data:`REFRESH_SECONDS`:

* each model's newest ``ml_monitoring`` row (what ``roiml monitor run`` wrote for its latest
  period): whether it drifts, how many inputs drift, the :data:`TOP_FEATURES` inputs with the
  highest drift score (the drifting ones first), whether its performance decayed, its realised,
  estimated and registered metrics, and the end of the period it judged;
* the newest ``as_of`` of each feature set in the warm store (``ml_feature_values``: every
  materialised day is written there), one index lookup per set.

A scrape reads none of it from the database: it renders the last read, and the ages
(``..._age_seconds``, ``roiml_feature_freshness_seconds``) are computed then against the
serving clock. A failed read keeps the previous values (logged); a tenant never read has no
series. Every series carries ``tenant``, so :func:`roiml.serving.metrics.render` shows a
caller only its own tenant's.

Cardinality, per tenant: 4 models x (4 model gauges + :data:`TOP_FEATURES` feature scores +
at most :data:`MAX_METRICS` x 3 metric values) + one freshness series per feature set.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, literal, select, union_all
from sqlalchemy.orm import aliased

from roiml.db.engine import tenant_session
from roiml.db.ml_tables import MLFeatureValue, MLModel, MLMonitoring
from roiml.features.declared import load_tenant_catalog
from roiml.monitoring.dashboard.parse import drift_features, performance_metrics
from roiml.monitoring.dashboard.queries import NOT_JUDGED

__all__ = [
    "GAUGES",
    "MAX_METRICS",
    "REFRESH_SECONDS",
    "TOP_FEATURES",
    "ModelState",
    "MonitoringGauges",
    "TenantState",
    "database_gauges",
    "read_tenant",
]

log = logging.getLogger(__name__)

# Monitoring judges a day at a time and the pipeline materialises a day at a time: a minute
# behind the database is as good as current, and costs a few small statements a minute.
REFRESH_SECONDS = 60.0
# Per model, the drift scores exported: a model has ~100 inputs, a series each per tenant
# would be most of the API's series. The drifting ones come first, then the highest scores.
TOP_FEATURES = 10
# Per model, the performance metrics exported (each as realised, estimated, registered).
MAX_METRICS = 8

# name -> (help, labels): the families the collector renders (tests/test_deploy.py checks
# every dashboard and alert expression against them).
GAUGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "roiml_model_drifting": (
        "1 when the model's newest judged monitoring period found drift (an input or its "
        "predictions), else 0; no series while monitoring has not judged the model.",
        ("tenant", "model", "model_version"),
    ),
    "roiml_model_drifted_features": (
        "Inputs of the model found drifting in its newest judged monitoring period.",
        ("tenant", "model", "model_version"),
    ),
    "roiml_feature_drift_score": (
        f"Drift score (statistic over its threshold: above 1 drifts) of the model's "
        f"{TOP_FEATURES} most drifted inputs in its newest judged period.",
        ("tenant", "model", "feature"),
    ),
    "roiml_model_decayed": (
        "1 when the model's newest monitoring period found its performance decayed against "
        "the registered figures, else 0; no series when it was not judged.",
        ("tenant", "model", "model_version"),
    ),
    "roiml_model_performance": (
        "The model's performance metrics in its newest monitoring period: realised (from "
        "feedback), estimated (from calibrated probabilities) and registered (at training).",
        ("tenant", "model", "model_version", "metric", "kind"),
    ),
    "roiml_model_monitoring_age_seconds": (
        "Seconds since the end of the newest period monitoring wrote for the model.",
        ("tenant", "model", "model_version"),
    ),
    "roiml_feature_freshness_seconds": (
        "Seconds since the as-of instant of the newest materialised day of the feature set "
        "(warm store).",
        ("tenant", "feature_set"),
    ),
}


@dataclass(frozen=True)
class ModelState:
    """What the newest monitoring row of one model says."""

    model: str
    version: str
    period_end: datetime
    judged: bool
    drifting: bool
    drifted_features: int
    # (feature, score), at most TOP_FEATURES, most drifted first.
    features: tuple[tuple[str, float], ...] = ()
    decayed: bool | None = None
    # (metric, kind, value).
    performance: tuple[tuple[str, str, float], ...] = ()


@dataclass(frozen=True)
class TenantState:
    """One tenant's last read."""

    models: tuple[ModelState, ...] = ()
    # feature set -> newest materialised as_of (naive UTC).
    features_as_of: dict[str, datetime] = field(default_factory=dict)


def _newest_rows(engine: Engine, tenant: str) -> list[tuple[MLMonitoring, dict[str, object]]]:
    """Each model's newest monitoring row (newest period; the newest write on a tie), with the
    registered metrics of its version."""
    later = aliased(MLMonitoring)
    newest_period = (
        select(func.max(later.period_start))
        .where(later.tenant_id == tenant, later.model_name == MLMonitoring.model_name)
        .scalar_subquery()
    )
    with tenant_session(engine, tenant) as session:
        rows = session.scalars(
            select(MLMonitoring)
            .where(MLMonitoring.tenant_id == tenant, MLMonitoring.period_start == newest_period)
            .order_by(MLMonitoring.id.desc())
        ).all()
        by_model: dict[str, MLMonitoring] = {}
        for row in rows:
            by_model.setdefault(row.model_name, row)
        registered: dict[tuple[str, str], dict[str, object]] = {}
        if by_model:
            for name, version, metrics in session.execute(
                select(MLModel.name, MLModel.version, MLModel.metrics).where(
                    MLModel.tenant_id == tenant, MLModel.name.in_(by_model)
                )
            ):
                registered[str(name), str(version)] = metrics if isinstance(metrics, dict) else {}
        session.expunge_all()
    return [
        (row, registered.get((row.model_name, row.model_version), {})) for row in by_model.values()
    ]


def _model_state(row: MLMonitoring, registered: dict[str, object]) -> ModelState:
    judged = row.status not in NOT_JUDGED
    features = drift_features(row.feature_drift) if judged else []
    scored = tuple(
        (f.feature, f.score) for f in features if f.score is not None and math.isfinite(f.score)
    )[:TOP_FEATURES]
    performance = row.performance_metrics if isinstance(row.performance_metrics, dict) else {}
    decayed = performance.get("decayed")
    values: list[tuple[str, str, float]] = []
    for metric in performance_metrics(performance, registered)[:MAX_METRICS]:
        for kind in ("realised", "estimated", "registered"):
            value = getattr(metric, kind)
            if value is not None:
                values.append((metric.metric, kind, float(value)))
    return ModelState(
        model=row.model_name,
        version=row.model_version,
        period_end=row.period_end,
        judged=judged,
        drifting=bool(row.drift_detected),
        drifted_features=sum(f.drifted for f in features),
        features=scored,
        decayed=decayed if isinstance(decayed, bool) and judged else None,
        performance=tuple(values),
    )


def _features_as_of(engine: Engine, tenant: str, sets: Sequence[str]) -> dict[str, datetime]:
    """The newest ``as_of`` of each of ``sets`` in the warm store: one statement, each part
    a lookup of the ``(tenant_id, feature_set, as_of)`` index."""
    if not sets:
        return {}
    table = MLFeatureValue.__table__
    parts = [
        select(literal(name).label("feature_set"), func.max(table.c.as_of).label("as_of")).where(
            table.c.tenant_id == tenant, table.c.feature_set == name
        )
        for name in sets
    ]
    with tenant_session(engine, tenant) as session:
        rows = session.execute(union_all(*parts)).all()
    out: dict[str, datetime] = {}
    for name, value in rows:
        if value is None:
            continue
        # SQLite's MAX in a union loses the column's type: the instant comes back as text.
        as_of = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        out[str(name)] = as_of.replace(tzinfo=None)
    return out


def read_tenant(engine: Engine, tenant: str, feature_sets: Sequence[str]) -> TenantState:
    """``tenant``'s monitoring verdicts and feature freshness, from the database."""
    models = tuple(
        _model_state(row, registered) for row, registered in _newest_rows(engine, tenant)
    )
    return TenantState(models, _features_as_of(engine, tenant, feature_sets))


class MonitoringGauges(Collector):
    """The gauges of :data:`GAUGES`: a Prometheus collector over the last read of each tenant,
    kept fresh by a background thread (:meth:`start`) every ``refresh_seconds``."""

    def __init__(
        self,
        read: Callable[[str], TenantState],
        tenants: Callable[[], Iterable[str]],
        clock: Callable[[], datetime],
        *,
        refresh_seconds: float = REFRESH_SECONDS,
    ) -> None:
        """``read(tenant)`` reads one tenant (a database call; may raise); ``tenants()`` says
        which to read; ``clock()`` is the serving clock (naive UTC) the ages count to."""
        self._read = read
        self._tenants = tenants
        self._clock = clock
        self.refresh_seconds = refresh_seconds
        self._states: dict[str, TenantState] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> None:
        """Read every tenant now; one that fails keeps its previous values."""
        for tenant in sorted(set(self._tenants())):
            try:
                self._states[tenant] = self._read(tenant)
            except Exception as exc:  # the database away must not stop the others
                log.warning("monitoring gauges of tenant %r not read (%s)", tenant, exc)

    def start(self) -> None:
        """Read now and then every ``refresh_seconds``, on a daemon thread."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name="roiml-monitoring-gauges", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop the background reads."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        self.refresh()
        while not self._stop.wait(self.refresh_seconds):
            self.refresh()

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The families, without samples (the registry's check for duplicate names)."""
        for name, (text, labels) in GAUGES.items():
            yield GaugeMetricFamily(name, text, labels=labels)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Every family with the last read's samples; ages as of now."""
        families = {
            name: GaugeMetricFamily(name, text, labels=labels)
            for name, (text, labels) in GAUGES.items()
        }
        now = self._clock()
        for tenant, state in sorted(self._states.items()):
            for model in state.models:
                versioned = [tenant, model.model, model.version]
                families["roiml_model_monitoring_age_seconds"].add_metric(
                    versioned, max(0.0, (now - model.period_end).total_seconds())
                )
                for metric, kind, value in model.performance:
                    families["roiml_model_performance"].add_metric(
                        [*versioned, metric, kind], value
                    )
                if model.decayed is not None:
                    families["roiml_model_decayed"].add_metric(versioned, float(model.decayed))
                if not model.judged:
                    continue
                families["roiml_model_drifting"].add_metric(versioned, float(model.drifting))
                families["roiml_model_drifted_features"].add_metric(
                    versioned, float(model.drifted_features)
                )
                for feature, score in model.features:
                    families["roiml_feature_drift_score"].add_metric(
                        [tenant, model.model, feature], score
                    )
            for feature_set, as_of in sorted(state.features_as_of.items()):
                families["roiml_feature_freshness_seconds"].add_metric(
                    [tenant, feature_set], max(0.0, (now - as_of).total_seconds())
                )
        yield from families.values()


def database_gauges(
    engine: Engine,
    data_dir: Path,
    tenants: Callable[[], Iterable[str]],
    clock: Callable[[], datetime],
) -> MonitoringGauges:
    """The gauges over ``engine``: each tenant's monitoring rows and the feature sets of its
    catalog (the built-in ones and those its declared columns add)."""

    def read(tenant: str) -> TenantState:
        sets = list(load_tenant_catalog(data_dir, tenant).feature_sets)
        return read_tenant(engine, tenant, sets)

    return MonitoringGauges(read, tenants, clock)
