"""The dashboard's SQL: every figure aggregated in the database (GROUP BY day, model, class,
step), so the page costs a handful of small result sets however many predictions were served.

All reads run in one :func:`~roiml.db.engine.tenant_session`: row-level security on PostgreSQL
and an explicit ``tenant_id`` filter on every statement keep one tenant's figures its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, case, func, select
from sqlalchemy.orm import Session

from roiml.db.engine import tenant_session
from roiml.db.ml_tables import MLFeature, MLModel, MLMonitoring, MLPrediction, PipelineRun
from roiml.monitoring.dashboard.parse import drift_entry, drift_features, performance_metrics
from roiml.monitoring.dashboard.schemas import (
    ClassCount,
    DailyTraffic,
    DashboardData,
    FeatureNullRate,
    FeatureSetFreshness,
    ModelDrift,
    ModelPerformance,
    PipelineDay,
    PipelineStep,
)
from roiml.monitoring.job import NO_PREDICTIONS, NO_REFERENCE, TOO_FEW_PREDICTIONS

__all__ = ["MAX_DAYS", "NOT_JUDGED", "load_dashboard", "window"]

MAX_DAYS = 366
# Statuses of a period monitoring gave no verdict on (roiml.monitoring.job): drift and decay
# were not computed, so "0 drifting" would be a claim the data cannot make.
NOT_JUDGED = frozenset({NO_PREDICTIONS, TOO_FEW_PREDICTIONS, NO_REFERENCE, "FAILED"})
# The step name under which the pipeline records a whole day's run (roiml.pipeline.steps).
_WHOLE_RUN = "run"


def window(now: datetime, days: int) -> tuple[datetime, datetime]:
    """``[midnight days-1 days before now, now]``: ``days`` calendar days, today included."""
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be between 1 and {MAX_DAYS}, not {days}")
    today = datetime.combine(now.date(), datetime.min.time())
    return today - timedelta(days=days - 1), now


def _day(value: Any) -> date:
    # SQL date() of a timestamp: a date on PostgreSQL, 'YYYY-MM-DD' text on SQLite.
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def load_dashboard(engine: Engine, tenant_id: str, now: datetime, days: int = 30) -> DashboardData:
    """Every figure of the dashboard for ``tenant_id`` over the ``days`` days ending ``now``."""
    since, until = window(now, days)
    with tenant_session(engine, tenant_id) as session:
        latest = _latest_monitoring(session, tenant_id, until)
        registered = _registered_metrics(session, tenant_id, latest)
        return DashboardData(
            tenant_id=tenant_id,
            days=days,
            since=since,
            until=until,
            generated_at=now,
            traffic=_traffic(session, tenant_id, since, until),
            classes=_classes(session, tenant_id, since, until),
            drift=[_drift(row) for row in latest],
            performance=[_performance(row, registered) for row in latest],
            null_rates=_null_rates(session, tenant_id),
            feature_sets=_feature_sets(session, tenant_id),
            pipeline_steps=_pipeline_steps(session, tenant_id, now),
            pipeline_days=_pipeline_days(session, tenant_id, since, until),
        )


def _traffic(session: Session, tenant: str, since: datetime, until: datetime) -> list[DailyTraffic]:
    day = func.date(MLPrediction.predicted_at)
    rows: Sequence[Any] = session.execute(
        select(
            day,
            MLPrediction.model_name,
            func.count(),
            func.avg(MLPrediction.latency_ms),
            func.max(MLPrediction.latency_ms),
        )
        .where(
            MLPrediction.tenant_id == tenant,
            MLPrediction.predicted_at >= since,
            MLPrediction.predicted_at <= until,
        )
        .group_by(day, MLPrediction.model_name)
        .order_by(day, MLPrediction.model_name)
    ).all()
    return [
        DailyTraffic(
            day=_day(row[0]),
            model_name=row[1],
            predictions=int(row[2]),
            mean_latency_ms=float(row[3]) if row[3] is not None else None,
            max_latency_ms=float(row[4]) if row[4] is not None else None,
        )
        for row in rows
    ]


def _classes(session: Session, tenant: str, since: datetime, until: datetime) -> list[ClassCount]:
    rows: Sequence[Any] = session.execute(
        select(MLPrediction.model_name, MLPrediction.predicted_class, func.count())
        .where(
            MLPrediction.tenant_id == tenant,
            MLPrediction.predicted_at >= since,
            MLPrediction.predicted_at <= until,
            MLPrediction.predicted_class.is_not(None),
        )
        .group_by(MLPrediction.model_name, MLPrediction.predicted_class)
        .order_by(MLPrediction.model_name, func.count().desc(), MLPrediction.predicted_class)
    ).all()
    return [ClassCount(model_name=m, predicted_class=c, count=int(n)) for m, c, n in rows]


def _latest_monitoring(session: Session, tenant: str, until: datetime) -> list[MLMonitoring]:
    """Each model's newest monitoring row (newest period; the newest write on a tie)."""
    newest = (
        select(
            MLMonitoring.model_name,
            func.max(MLMonitoring.period_start).label("period_start"),
        )
        .where(MLMonitoring.tenant_id == tenant, MLMonitoring.period_start <= until)
        .group_by(MLMonitoring.model_name)
        .subquery()
    )
    rows = session.scalars(
        select(MLMonitoring)
        .join(
            newest,
            and_(
                MLMonitoring.model_name == newest.c.model_name,
                MLMonitoring.period_start == newest.c.period_start,
            ),
        )
        .where(MLMonitoring.tenant_id == tenant)
        .order_by(MLMonitoring.model_name, MLMonitoring.id.desc())
    ).all()
    # Two versions monitored for the same period (a promotion that day): the later row wins.
    by_model: dict[str, MLMonitoring] = {}
    for row in rows:
        by_model.setdefault(row.model_name, row)
    return list(by_model.values())


def _registered_metrics(
    session: Session, tenant: str, latest: Sequence[MLMonitoring]
) -> dict[tuple[str, str], Mapping[str, Any]]:
    if not latest:
        return {}
    names = {row.model_name for row in latest}
    rows: Sequence[Any] = session.execute(
        select(MLModel.name, MLModel.version, MLModel.metrics).where(
            MLModel.tenant_id == tenant, MLModel.name.in_(names)
        )
    ).all()
    return {(name, version): metrics or {} for name, version, metrics in rows}


def _drift(row: MLMonitoring) -> ModelDrift:
    features = drift_features(row.feature_drift)
    performance = row.performance_metrics if isinstance(row.performance_metrics, dict) else {}
    score_entry = performance.get("prediction_score")
    alerts = row.alerts if isinstance(row.alerts, list) else []
    return ModelDrift(
        model_name=row.model_name,
        model_version=row.model_version,
        period_start=row.period_start,
        period_end=row.period_end,
        status=row.status,
        judged=row.status not in NOT_JUDGED,
        prediction_count=row.prediction_count,
        error_rate=row.error_rate,
        p95_latency_ms=row.p95_latency_ms,
        drift_detected=row.drift_detected,
        prediction_drift=row.prediction_drift,
        prediction_score=(
            drift_entry("prediction score", score_entry) if score_entry is not None else None
        ),
        alert_count=len(alerts),
        alerts=[
            str(alert.get("message") or alert.get("kind") or alert)
            if isinstance(alert, dict)
            else str(alert)
            for alert in alerts[:5]
        ],
        feature_count=len(features),
        drifted_count=sum(feature.drifted for feature in features),
        features=features,
    )


def _performance(
    row: MLMonitoring, registered: Mapping[tuple[str, str], Mapping[str, Any]]
) -> ModelPerformance:
    performance = row.performance_metrics if isinstance(row.performance_metrics, dict) else {}
    labelled = performance.get("labelled")
    coverage = performance.get("label_coverage")
    decayed = performance.get("decayed")
    notes = performance.get("notes")
    return ModelPerformance(
        model_name=row.model_name,
        model_version=row.model_version,
        period_start=row.period_start,
        period_end=row.period_end,
        status=row.status,
        judged=row.status not in NOT_JUDGED,
        labelled=labelled if isinstance(labelled, int) and not isinstance(labelled, bool) else None,
        label_coverage=float(coverage) if isinstance(coverage, int | float) else None,
        decayed=decayed if isinstance(decayed, bool) else None,
        notes=[str(note) for note in notes] if isinstance(notes, list) else [],
        metrics=performance_metrics(
            performance, registered.get((row.model_name, row.model_version))
        ),
    )


def _null_rates(session: Session, tenant: str) -> list[FeatureNullRate]:
    rows: Sequence[Any] = session.execute(
        select(
            MLFeature.name,
            MLFeature.feature_set,
            MLFeature.null_rate,
            MLFeature.max_null_rate,
            MLFeature.last_updated,
        )
        .where(
            MLFeature.tenant_id == tenant,
            MLFeature.is_deprecated.is_(False),
            MLFeature.null_rate.is_not(None),
        )
        .order_by(MLFeature.null_rate.desc(), MLFeature.name)
    ).all()
    return [
        FeatureNullRate(
            feature=name,
            feature_set=feature_set,
            null_rate=float(null_rate),
            max_null_rate=float(max_null_rate) if max_null_rate is not None else None,
            last_updated=last_updated,
        )
        for name, feature_set, null_rate, max_null_rate, last_updated in rows
    ]


def _feature_sets(session: Session, tenant: str) -> list[FeatureSetFreshness]:
    over_limit = case((MLFeature.null_rate > MLFeature.max_null_rate, 1), else_=0)
    rows: Sequence[Any] = session.execute(
        select(
            MLFeature.feature_set,
            func.count(),
            func.max(MLFeature.last_updated),
            func.sum(over_limit),
        )
        .where(MLFeature.tenant_id == tenant, MLFeature.is_deprecated.is_(False))
        .group_by(MLFeature.feature_set)
        .order_by(MLFeature.feature_set)
    ).all()
    return [
        FeatureSetFreshness(
            feature_set=feature_set,
            features=int(count),
            last_updated=last_updated,
            over_null_limit=int(over or 0),
        )
        for feature_set, count, last_updated, over in rows
    ]


def _pipeline_steps(session: Session, tenant: str, now: datetime) -> list[PipelineStep]:
    success = PipelineRun.outcome == "SUCCESS"
    latest = (
        select(
            PipelineRun.step,
            func.max(PipelineRun.id).label("last_id"),
            func.max(case((success, PipelineRun.run_date))).label("success_day"),
            func.max(case((success, PipelineRun.ended_at))).label("success_end"),
        )
        .where(PipelineRun.tenant_id == tenant)
        .group_by(PipelineRun.step)
        .subquery()
    )
    rows: Sequence[Any] = session.execute(
        select(
            latest.c.step,
            PipelineRun.outcome,
            PipelineRun.started_at,
            PipelineRun.rows,
            latest.c.success_day,
            latest.c.success_end,
        )
        .join(PipelineRun, PipelineRun.id == latest.c.last_id)
        .where(PipelineRun.tenant_id == tenant)
    ).all()
    steps = []
    for step, outcome, started_at, row_count, success_day, success_end in rows:
        success_day = _as_datetime(success_day)
        # Freshness is the age of the data, not of the job: a run of day D holds data up to
        # the end of D, so the age counts from D + 1 day.
        age = (
            (now - (success_day + timedelta(days=1))).total_seconds() / 3600
            if success_day is not None
            else None
        )
        steps.append(
            PipelineStep(
                step=step,
                last_outcome=outcome,
                last_started_at=started_at,
                last_success_run_date=success_day,
                last_success_ended_at=_as_datetime(success_end),
                age_hours=max(age, 0.0) if age is not None else None,
                rows=row_count,
            )
        )
    return sorted(steps, key=lambda step: (step.step != _WHOLE_RUN, step.last_started_at))


def _as_datetime(value: Any) -> datetime | None:
    # MAX(CASE ...) loses the column type on SQLite: the value comes back as text.
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def _pipeline_days(
    session: Session, tenant: str, since: datetime, until: datetime
) -> list[PipelineDay]:
    day = func.date(PipelineRun.run_date)
    rows: Sequence[Any] = session.execute(
        select(day, PipelineRun.outcome, func.count())
        .where(
            PipelineRun.tenant_id == tenant,
            PipelineRun.step == _WHOLE_RUN,
            PipelineRun.run_date >= since,
            PipelineRun.run_date <= until,
        )
        .group_by(day, PipelineRun.outcome)
        .order_by(day, PipelineRun.outcome)
    ).all()
    return [PipelineDay(day=_day(d), outcome=outcome, runs=int(n)) for d, outcome, n in rows]
