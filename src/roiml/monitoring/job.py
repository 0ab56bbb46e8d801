"""``roiml monitor run``: one ``ml_monitoring`` row per model version and day, and its alerts.

The thin adapter around the pure maths: it reads the period's predictions and the models'
artifacts, calls :mod:`roiml.monitoring.drift` and :mod:`roiml.monitoring.evaluate`, and
upserts the rows. Nothing a model or a period lacks stops the job: a period without
predictions, a model without a reference, an unreachable webhook each end as a status on the
row and a log line.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Engine, func, select

from roiml.db.base import utcnow
from roiml.db.engine import tenant_session
from roiml.db.enums import ModelStatus, ModelType
from roiml.db.ml_tables import MLModel, MLMonitoring, MLPrediction
from roiml.db.rejected_predictions import read_rejected_records
from roiml.errors import ConfigurationError
from roiml.features.catalog import Catalog
from roiml.features.declared import load_tenant_catalog
from roiml.models.artifact import MODEL_NAMES, ModelArtifact
from roiml.models.predict import Predictions, predict
from roiml.monitoring.alerts import Alert, WebhookConfig, already_sent, deliver, store_alerts
from roiml.monitoring.archive import archive_dir, archived_models
from roiml.monitoring.drift import DriftPolicy, FeatureDrift, detect_drift
from roiml.monitoring.evaluate import (
    EstimateBaseline,
    Labels,
    assess_performance,
    estimate,
    registered_metrics,
)
from roiml.monitoring.outcomes import first_transactions
from roiml.monitoring.period import PeriodPredictions, per_item_latency
from roiml.monitoring.reference import LATEST, DriftReference, drift_reference, most_common
from roiml.settings import Settings

__all__ = ["ArtifactLoader", "ModelPeriodResult", "run_monitoring"]

log = logging.getLogger(__name__)

ArtifactLoader = Callable[[str, str], ModelArtifact]

OK, DRIFT, DECAY, DRIFT_DECAY = "OK", "DRIFT", "DECAY", "DRIFT_DECAY"
NO_PREDICTIONS, NO_REFERENCE = "NO_PREDICTIONS", "NO_REFERENCE"
TOO_FEW_PREDICTIONS = "TOO_FEW_PREDICTIONS"
_PREDICTION = "prediction"


@dataclass
class ModelPeriodResult:
    """What the job wrote for one model version (the CLI prints it)."""

    model_name: str
    model_version: str
    status: str
    prediction_count: int
    drifted_features: list[str] = field(default_factory=list)
    prediction_drift: float | None = None
    decayed_metrics: list[str] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def run_monitoring(
    settings: Settings,
    engine: Engine,
    tenant_id: str,
    period: date,
    *,
    load_artifact: ArtifactLoader | None = None,
    now: datetime | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[ModelPeriodResult]:
    """Monitor every model of ``tenant_id`` over the day ``period`` (UTC); rows are upserted.

    ``load_artifact(name, version)`` returns a model version's artifact (default: from the
    registry); ``now`` bounds which outcomes have arrived (default: the wall clock).
    """
    archived = archived_models(settings.data_dir, tenant_id, period)
    if archived:
        # Its rows left ml_predictions: scored again, the day would look like one without any.
        raise ConfigurationError(
            f"predictions of {period} ({', '.join(archived)}) were archived to "
            f"{archive_dir(settings.data_dir, tenant_id)}; that day's monitoring rows stand as "
            "written before, and it cannot be monitored again"
        )
    start = datetime.combine(period, datetime.min.time())
    end = start + timedelta(days=1)
    loader = load_artifact or _registry_loader(settings, engine, tenant_id)
    moment = now or utcnow()
    policy = DriftPolicy.from_settings(settings)
    webhook = WebhookConfig.from_settings(settings)
    rejected = _rejected_counts(settings.prediction_buffer_dir, start, end)
    # The tenant's declared columns are model inputs like the built-in features: judged by
    # their definitions, not taken for request parameters.
    catalog = load_tenant_catalog(settings.data_dir, tenant_id)
    results: list[ModelPeriodResult] = []
    for model_type, name in MODEL_NAMES.items():
        versions = _versions_served(engine, tenant_id, name, start, end)
        if not versions:
            version = _current_version(engine, tenant_id, name)
            if version is None:
                log.info("monitoring %s: not registered for tenant %s; skipped", name, tenant_id)
                continue
            versions = [version]
        for version in versions:
            context = _Context(
                settings, engine, tenant_id, model_type, name, version, start, end, moment, catalog
            )
            try:
                result = _monitor_one(context, loader, policy, webhook, rejected, sleep)
            except Exception as exc:  # one model's failure must not hide the others' health
                log.exception("monitoring %s v%s failed", name, version)
                result = _write_failure(context, exc)
            results.append(result)
    return results


@dataclass
class _Context:
    settings: Settings
    engine: Engine
    tenant_id: str
    model_type: ModelType
    name: str
    version: str
    start: datetime
    end: datetime
    now: datetime
    catalog: Catalog


def _monitor_one(
    ctx: _Context,
    loader: ArtifactLoader,
    policy: DriftPolicy,
    webhook: WebhookConfig,
    rejected: dict[tuple[str, str], int],
    sleep: Callable[[float], None],
) -> ModelPeriodResult:
    period = _load_predictions(ctx)
    errors = rejected.get((ctx.name, ctx.version), 0)
    row: dict[str, Any] = {
        "prediction_count": period.count,
        "avg_latency_ms": _finite_mean(period.latency_ms),
        "p95_latency_ms": _finite_quantile(period.latency_ms, 0.95),
        "error_count": errors,
        "error_rate": errors / (period.count + errors) if period.count + errors else None,
        "feature_drift": {},
        "prediction_drift": None,
        "drift_detected": False,
    }
    result = ModelPeriodResult(ctx.name, ctx.version, OK, period.count)
    minimum = ctx.settings.monitoring_min_predictions
    if period.count < minimum:
        # A handful of rows from one day always "drifts" from a reference spanning the whole
        # training window (one day has one mortgage rate), and a metric over them is noise:
        # the volume and latency are recorded, no verdict is given.
        if period.count == 0:
            result.status = NO_PREDICTIONS
            result.notes.append(f"no predictions of {ctx.name} v{ctx.version} in the period")
        else:
            result.status = TOO_FEW_PREDICTIONS
            result.notes.append(
                f"{period.count} predictions of {ctx.name} v{ctx.version} in the period, fewer "
                f"than ROIML_MONITORING_MIN_PREDICTIONS ({minimum}): drift and decay not judged"
            )
        log.warning("monitoring %s v%s: %s", ctx.name, ctx.version, result.notes[-1])
        metrics = {"kind": None, "notes": result.notes}
        _upsert(ctx, row | {"performance_metrics": metrics, "status": result.status}, [])
        return result

    artifact, why = _artifact(loader, ctx.name, ctx.version)
    if why:
        result.notes.append(why)
    classes = artifact.classes if artifact else []
    labels = _labels(ctx, period, artifact)
    registered = registered_metrics(ctx.model_type, _registered_source(ctx, artifact))
    reference = artifact.reference if artifact is not None else None
    basis: DriftReference | None = None
    current_matrix = np.empty((0, 0))
    if artifact is not None and reference is not None and reference.num_rows:
        current_matrix = period.matrix(artifact.feature_names)
        served = _served_before(ctx) if ctx.settings.monitoring_reference_days else None
        basis = drift_reference(artifact, served, period, current_matrix, minimum, ctx.catalog)
    expected = (
        predict(artifact, basis.matrix, explain=False)
        if artifact is not None and basis is not None and basis.matrix.shape[0]
        else None
    )
    performance, decayed = assess_performance(
        ctx.model_type,
        period,
        labels,
        classes,
        registered,
        ctx.settings.monitoring_decay_tolerance,
        ctx.settings.monitoring_min_labels,
        baseline=_estimate_baseline(ctx, artifact, basis, current_matrix, expected),
    )
    alerts: list[Alert] = []
    drifted: list[str] = []
    if artifact is None or basis is None:
        result.status = NO_REFERENCE
        if artifact is not None:
            result.notes.append(
                f"{ctx.name} v{ctx.version} has no reference distribution (reference.parquet); "
                "drift is not computed: retrain it to get one"
            )
        log.warning("monitoring %s v%s: %s", ctx.name, ctx.version, result.notes[-1])
    else:
        names = artifact.feature_names
        drift = detect_drift(
            basis.matrix,
            current_matrix,
            names,
            policy,
            ctx.settings.monitoring_threads,
            relations=basis.relations,
            scales=basis.scales,
            unjudged=basis.unjudged,
            by_mean=basis.by_mean,
            seasonal=basis.seasonal,
        )
        performance["drift_reference"] = {"source": basis.source, "rows": basis.rows}
        result.notes.append(f"drift against {basis.description}")
        row["feature_drift"] = {name: d.as_json() for name, d in drift.items()}
        drifted = [name for name, d in drift.items() if d.drifted]
        score = _score_drift(expected, period, policy)
        performance["prediction_score"] = score.as_json() if score else None
        row["prediction_drift"] = score.statistic if score else None
        prediction_drifted = bool(score and score.drifted)
        row["drift_detected"] = bool(drifted) or prediction_drifted
        alerts += [_drift_alert(ctx, name, drift[name]) for name in drifted]
        if score is not None and prediction_drifted:
            alerts.append(_drift_alert(ctx, _PREDICTION, score, kind="prediction_drift"))
        result.prediction_drift = _finite(score.statistic) if score else None
    for metric in decayed:
        alerts.append(_decay_alert(ctx, metric, performance))
    if result.status != NO_REFERENCE:
        result.status = {
            (False, False): OK,
            (True, False): DRIFT,
            (False, True): DECAY,
            (True, True): DRIFT_DECAY,
        }[(bool(row["drift_detected"]), bool(decayed))]
    elif decayed:
        result.notes.append("performance decayed (see decayed_metrics)")
    performance["notes"] = list(performance.get("notes", [])) + result.notes
    result.drifted_features, result.decayed_metrics = drifted, decayed
    _send_and_record(ctx, alerts, webhook, sleep, result.status)
    row |= {
        "performance_metrics": performance,
        "status": result.status,
    }
    _upsert(ctx, row, alerts)
    result.alerts = [a.as_json() for a in alerts]
    log.info(
        "monitoring %s v%s %s: %d predictions, %d drifted feature(s), decayed %s, %d alert(s)",
        ctx.name,
        ctx.version,
        ctx.start.date(),
        period.count,
        len(drifted),
        decayed or "none",
        len(alerts),
    )
    return result


# ------------------------------------------------------------------------------ reads


def _versions_served(
    engine: Engine, tenant_id: str, name: str, start: datetime, end: datetime
) -> list[str]:
    with tenant_session(engine, tenant_id) as session:
        rows = session.execute(
            select(MLPrediction.model_version)
            .where(
                MLPrediction.tenant_id == tenant_id,
                MLPrediction.model_name == name,
                MLPrediction.predicted_at >= start,
                MLPrediction.predicted_at < end,
            )
            .distinct()
        ).all()
    return sorted(str(r[0]) for r in rows)


def _current_version(engine: Engine, tenant_id: str, name: str) -> str | None:
    """The deployed version, else the newest registered one."""
    with tenant_session(engine, tenant_id) as session:
        rows = session.execute(
            select(MLModel.version, MLModel.status, MLModel.created_at).where(
                MLModel.tenant_id == tenant_id, MLModel.name == name
            )
        ).all()
    if not rows:
        return None
    deployed = [r for r in rows if r.status == ModelStatus.DEPLOYED]
    pick = max(deployed or rows, key=lambda r: (r.created_at, _version_number(r.version)))
    return str(pick.version)


def _version_number(version: str) -> int:
    return int(version) if version.isdigit() else -1


def _served_before(ctx: _Context) -> PeriodPredictions:
    """The model's predictions (any version) of the ``monitoring_reference_days`` before the
    period: what its traffic looked like just before."""
    days = timedelta(days=ctx.settings.monitoring_reference_days)
    return _load_predictions(ctx, ctx.start - days, ctx.start, version=None)


def _load_predictions(
    ctx: _Context,
    start: datetime | None = None,
    end: datetime | None = None,
    version: str | None = "",
) -> PeriodPredictions:
    """Predictions of ``ctx``'s model in [start, end) (default: the period), of ``version``
    (default: the context's; None: any)."""
    start, end = start or ctx.start, end or ctx.end
    wanted = ctx.version if version == "" else version
    columns = (
        MLPrediction.entity_id,
        MLPrediction.as_of_date,
        MLPrediction.predicted_at,
        MLPrediction.features,
        MLPrediction.predicted_value,
        MLPrediction.predicted_class,
        MLPrediction.probabilities,
        MLPrediction.confidence,
        MLPrediction.latency_ms,
        MLPrediction.actual_value,
        MLPrediction.actual_class,
    )
    with tenant_session(ctx.engine, ctx.tenant_id) as session:
        rows = session.execute(
            select(*columns)
            .where(
                MLPrediction.tenant_id == ctx.tenant_id,
                MLPrediction.model_name == ctx.name,
                MLPrediction.predicted_at >= start,
                MLPrediction.predicted_at < end,
                *([] if wanted is None else [MLPrediction.model_version == wanted]),
            )
            .order_by(MLPrediction.predicted_at, MLPrediction.prediction_id)
        ).all()
    cols = list(zip(*rows, strict=True)) if rows else [()] * len(columns)

    def floats(values: tuple[Any, ...]) -> np.ndarray:
        return np.array(values, dtype=np.float64) if values else np.empty(0)

    at_of = np.array(cols[1], dtype="datetime64[us]") if rows else np.empty(0, "datetime64[us]")
    at_pred = np.array(cols[2], dtype="datetime64[us]") if rows else np.empty(0, "datetime64[us]")
    return PeriodPredictions(
        entity_id=[str(v) for v in cols[0]],
        at=np.where(np.isnat(at_of), at_pred, at_of),
        features=[v or {} for v in cols[3]],
        predicted_value=floats(cols[4]),
        predicted_class=list(cols[5]),
        probabilities=list(cols[6]),
        confidence=floats(cols[7]),
        # Per item: a batch's items were logged with their group's whole time.
        latency_ms=per_item_latency(floats(cols[8]), at_pred),
        actual_value=floats(cols[9]),
        actual_class=list(cols[10]),
    )


def _artifact(
    loader: ArtifactLoader, name: str, version: str
) -> tuple[ModelArtifact | None, str | None]:
    try:
        return loader(name, version), None
    except Exception as exc:
        why = (
            f"{name} v{version} could not be loaded ({type(exc).__name__}: {exc}); drift is not "
            "computed: check the registry (roiml models show)"
        )
        return None, why


def _registered_source(ctx: _Context, artifact: ModelArtifact | None) -> dict[str, Any]:
    if artifact is not None and artifact.metrics:
        return dict(artifact.metrics)
    with tenant_session(ctx.engine, ctx.tenant_id) as session:
        metrics = session.execute(
            select(MLModel.metrics).where(
                MLModel.tenant_id == ctx.tenant_id,
                MLModel.name == ctx.name,
                MLModel.version == ctx.version,
            )
        ).scalar()
    return dict(metrics or {})


def _labels(ctx: _Context, period: PeriodPredictions, artifact: ModelArtifact | None) -> Labels:
    """Feedback first; for the move and transaction-type models, closings after the horizon."""
    value = period.actual_value.copy()
    cls = list(period.actual_class)
    from_outcomes = 0
    horizon = artifact.extra.get("horizon_days") if artifact is not None else None
    if ctx.model_type in (ModelType.MOVE_PROBABILITY, ModelType.TRANSACTION_TYPE) and horizon:
        kinds, ended = first_transactions(
            ctx.engine, ctx.tenant_id, period.entity_id, period.at, int(horizon), ctx.now
        )
        found = np.array(kinds, dtype=object)
        given = np.array(cls, dtype=object)
        fill = ~np.isfinite(value) & _nulls(cls) & ended
        if ctx.model_type is ModelType.MOVE_PROBABILITY:
            moved = np.isin(found, ["SELL", "BUY"])
            value = np.where(fill, moved.astype(np.float64), value)
        else:
            # A transaction-type prediction is only judged when a transaction did happen.
            fill &= ~_nulls(kinds)
            cls = np.where(fill, found, given).tolist()
        from_outcomes = int(fill.sum())
    return Labels(value=value, cls=cls, from_outcomes=from_outcomes)


def _rejected_counts(directory: Path, start: datetime, end: datetime) -> dict[tuple[str, str], int]:
    """Prediction-log rows the database refused, per model and version, predicted in the period."""
    counts: dict[tuple[str, str], int] = {}
    for record in read_rejected_records(directory):
        try:
            at = datetime.fromisoformat(str(record.get("predicted_at")))
        except ValueError:
            continue
        if start <= at.replace(tzinfo=None) < end:
            key = (str(record.get("model_name")), str(record.get("model_version")))
            counts[key] = counts.get(key, 0) + 1
    return counts


def _registry_loader(settings: Settings, engine: Engine, tenant_id: str) -> ArtifactLoader:
    cache: dict[tuple[str, str], ModelArtifact] = {}

    def load(name: str, version: str) -> ModelArtifact:
        key = (name, version)
        if key not in cache:
            from roiml.registry import ModelRegistry  # MLflow takes seconds to import

            cache[key] = ModelRegistry(settings, engine, tenant_id).load_model(name, version)
        return cache[key]

    return load


# ------------------------------------------------------------------------------ maths glue


def _estimate_baseline(
    ctx: _Context,
    artifact: ModelArtifact | None,
    basis: DriftReference | None,
    current: np.ndarray,
    expected: Predictions | None,
) -> EstimateBaseline | None:
    """The model's estimated metrics over its own answers on the drift reference's rows:
    what a day like this one should estimate. A model input that is no homeowner feature (a
    request parameter such as the horizon) takes the period's most common value, since the
    latest snapshot's are drawn."""
    if artifact is None or basis is None or expected is None:
        return None
    drawn = [i for i, name in enumerate(artifact.feature_names) if name not in ctx.catalog.features]
    if drawn and basis.source == LATEST and current.shape[0]:
        matrix = np.array(basis.matrix, copy=True)
        for i in drawn:
            value = most_common(current[:, i])
            if np.isfinite(value):
                matrix[:, i] = value
        expected = predict(artifact, matrix, explain=False)
    metrics = estimate(
        ctx.model_type,
        expected.predicted_value,
        expected.predicted_class,
        expected.probabilities,
        expected.confidence,
        artifact.classes,
    )
    known = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(v)}
    return EstimateBaseline(known, basis.description) if known else None


def _score_drift(
    expected: Predictions | None,
    period: PeriodPredictions,
    policy: DriftPolicy,
) -> FeatureDrift | None:
    """Drift of the served scores against the model's own answers on its reference rows."""
    if expected is None:
        return None
    drift = detect_drift(
        np.asarray(expected.predicted_value, dtype=np.float64).reshape(-1, 1),
        period.predicted_value.reshape(-1, 1),
        [_PREDICTION],
        policy,
    )
    return drift[_PREDICTION]


def _drift_alert(
    ctx: _Context, subject: str, drift: FeatureDrift, kind: str = "feature_drift"
) -> Alert:
    comparison = "<" if drift.method in ("ks", "chi2") else ">"
    return Alert(
        kind=kind,
        subject=subject,
        value=_finite(drift.statistic),
        threshold=drift.threshold,
        message=(
            f"{ctx.name} v{ctx.version} {ctx.start.date()}: {subject} drifted "
            f"({drift.method} {_fmt(drift.statistic)} {comparison} {_fmt(drift.threshold)})"
        ),
    )


def _decay_alert(ctx: _Context, metric: str, performance: dict[str, Any]) -> Alert:
    source = performance.get("decay_source") or "realised"
    now = (performance.get(source) or {}).get(metric)
    baseline = performance.get("estimated_reference") if source == "estimated" else None
    if baseline:
        then, what = baseline["metrics"].get(metric), f"over {baseline['over']}"
    else:
        then, what = performance["registered"].get(metric), "at registration"
    return Alert(
        kind="performance_decay",
        subject=metric,
        value=now,
        threshold=then,
        message=(
            f"{ctx.name} v{ctx.version} {ctx.start.date()}: {source} {metric} {_fmt(now)} is "
            f"more than {ctx.settings.monitoring_decay_tolerance:.0%} worse than {what} "
            f"({_fmt(then)})"
        ),
    )


# ------------------------------------------------------------------------------ writes


def _send_and_record(
    ctx: _Context,
    alerts: list[Alert],
    webhook: WebhookConfig,
    sleep: Callable[[float], None],
    status: str,
) -> None:
    if not alerts:
        return
    with tenant_session(ctx.engine, ctx.tenant_id) as session:
        sent = already_sent(session, ctx.tenant_id, ctx.name, ctx.version, ctx.start)
    fresh = [a for a in alerts if (a.kind, a.subject[:128]) not in sent]
    for alert in alerts:
        if alert not in fresh:
            alert.delivery = "SENT"
    header = {
        "tenant_id": ctx.tenant_id,
        "model_name": ctx.name,
        "model_version": ctx.version,
        "period_start": ctx.start.isoformat(),
        "period_end": ctx.end.isoformat(),
        "status": status,
    }
    delivery = deliver(webhook, header, fresh, sleep)
    with tenant_session(ctx.engine, ctx.tenant_id) as session:
        store_alerts(session, ctx.tenant_id, ctx.name, ctx.version, ctx.start, fresh, delivery)


def _upsert(ctx: _Context, values: dict[str, Any], alerts: list[Alert]) -> None:
    """Insert or update the row of (tenant, model, version, period_start): reruns replace it."""
    values = values | {
        "period_end": ctx.end,
        "alerts": [a.as_json() for a in alerts],
        "alert_triggered": bool(alerts),
    }
    with tenant_session(ctx.engine, ctx.tenant_id) as session:
        row = session.scalars(
            select(MLMonitoring).where(
                MLMonitoring.tenant_id == ctx.tenant_id,
                MLMonitoring.model_name == ctx.name,
                MLMonitoring.model_version == ctx.version,
                MLMonitoring.period_start == ctx.start,
            )
        ).first()
        if row is None:
            row = MLMonitoring(
                tenant_id=ctx.tenant_id,
                model_name=ctx.name,
                model_version=ctx.version,
                period_start=ctx.start,
            )
            session.add(row)
        for key, value in values.items():
            setattr(row, key, _json_safe(value))


def _write_failure(ctx: _Context, exc: Exception) -> ModelPeriodResult:
    note = f"monitoring failed: {type(exc).__name__}: {exc}"
    try:
        _upsert(ctx, {"status": "FAILED", "performance_metrics": {"notes": [note]}}, [])
    except Exception:
        log.exception("monitoring %s v%s: cannot record the failure", ctx.name, ctx.version)
    return ModelPeriodResult(ctx.name, ctx.version, "FAILED", 0, notes=[note])


def monitored_rows(engine: Engine, tenant_id: str, period: date) -> int:
    """How many ``ml_monitoring`` rows the tenant has for the day (for the CLI's summary)."""
    start = datetime.combine(period, datetime.min.time())
    with tenant_session(engine, tenant_id) as session:
        return int(
            session.execute(
                select(func.count()).where(
                    MLMonitoring.tenant_id == tenant_id, MLMonitoring.period_start == start
                )
            ).scalar()
            or 0
        )


# ------------------------------------------------------------------------------ small helpers


def _nulls(values: list[str | None]) -> np.ndarray:
    return np.asarray(
        pc.is_null(pa.array(values, pa.string())).to_numpy(zero_copy_only=False), dtype=bool
    )


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _finite_mean(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else None


def _finite_quantile(values: np.ndarray, q: float) -> float | None:
    finite = values[np.isfinite(values)]
    return float(np.quantile(finite, q)) if finite.size else None


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _json_safe(value: Any) -> Any:
    """NaN and inf become None (JSON has neither), recursively; numpy scalars become Python's."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
