"""The dashboard's SQL: every figure aggregated in the database (GROUP BY day, model, class,
step), so the page costs a handful of small result sets however many predictions were served.

All reads run in one :func:`~roiml.db.engine.tenant_session`: row-level security on PostgreSQL
and an explicit ``tenant_id`` filter on every statement keep one tenant's figures its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, case, func, literal_column, select
from sqlalchemy.orm import Session

from roiml.db.engine import tenant_session
from roiml.db.ml_tables import MLFeature, MLModel, MLMonitoring, MLPrediction, PipelineRun
from roiml.monitoring.dashboard.parse import (
    LOWER_IS_BETTER,
    distribution,
    drift_entry,
    drift_features,
    main_metric,
    performance_metrics,
)
from roiml.monitoring.dashboard.schemas import (
    ClassCount,
    DailyTraffic,
    DashboardData,
    FeatureNullRate,
    FeatureSetFreshness,
    ModelDrift,
    ModelPerformance,
    ModelTrend,
    PipelineDay,
    PipelineStep,
    TrendPoint,
)
from roiml.monitoring.job import NO_PREDICTIONS, NO_REFERENCE, TOO_FEW_PREDICTIONS
from roiml.monitoring.period import answered_second

__all__ = [
    "MAX_DAYS",
    "NOT_JUDGED",
    "TOP_DISTRIBUTIONS",
    "TREND_PERIODS",
    "load_dashboard",
    "window",
]

MAX_DAYS = 366
# Features per model whose reference and current distributions are carried (the most drifted):
# each is a few dozen numbers, and a page of a hundred histograms per model reads as none.
TOP_DISTRIBUTIONS = 6
# Monitoring periods per model the trend draws at most (the newest): a year of daily periods
# would be 366 points on a 640-pixel line.
TREND_PERIODS = 90
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
        dialect = session.get_bind().dialect.name
        return DashboardData(
            tenant_id=tenant_id,
            days=days,
            since=since,
            until=until,
            generated_at=now,
            traffic=_traffic(session, tenant_id, since, until, dialect),
            classes=_classes(session, tenant_id, since, until),
            drift=[_drift(row) for row in latest],
            trends=_trends(session, tenant_id, since, until, dialect),
            performance=[_performance(row, registered) for row in latest],
            null_rates=_null_rates(session, tenant_id),
            feature_sets=_feature_sets(session, tenant_id),
            pipeline_steps=_pipeline_steps(session, tenant_id, now),
            pipeline_days=_pipeline_days(session, tenant_id, since, until),
        )


def _traffic(
    session: Session, tenant: str, since: datetime, until: datetime, dialect: str
) -> list[DailyTraffic]:
    """Volume and latency per day and model; an item's own latency is its group's time over
    the group's size.

    The log has no batch id: every item of one predict call carries the same logged time to the
    microsecond and was answered within the same second, so (model, version, logged time,
    second) finds the group. Two separate single calls of a model matching all four would be
    taken for a group of two (their per-item time halved): rare at microsecond resolution; a
    group answered across a second's boundary counts as two (their per-item time doubled).
    """
    second = answered_second(MLPrediction.predicted_at, dialect)
    # One GROUP BY to the groups, then one to the days: cheaper than a window over every row.
    groups = (
        select(
            func.min(func.date(MLPrediction.predicted_at)).label("day"),
            MLPrediction.model_name.label("model_name"),
            MLPrediction.latency_ms.label("latency"),
            func.count().label("size"),
        )
        .where(
            MLPrediction.tenant_id == tenant,
            MLPrediction.predicted_at >= since,
            MLPrediction.predicted_at <= until,
        )
        .group_by(
            MLPrediction.model_name, MLPrediction.model_version, MLPrediction.latency_ms, second
        )
        .subquery()
    )
    latency, size = groups.c.latency, groups.c.size
    timed = latency.is_not(None)
    single = and_(timed, size == 1)
    batch = and_(timed, size > 1)
    rows: Sequence[Any] = session.execute(
        select(
            groups.c.day,
            groups.c.model_name,
            func.sum(size),
            # Means over items: a group of n items weighs n.
            func.sum(case((timed, latency * size))) / func.sum(case((timed, size))),
            func.max(latency),
            # An item's own time is latency / n, n times over: the group adds its latency once.
            func.sum(case((timed, latency))) / func.sum(case((timed, size))),
            func.sum(case((single, 1), else_=0)),
            func.avg(case((single, latency))),
            func.sum(case((batch, size), else_=0)),
            func.sum(case((batch, 1), else_=0)),
            func.sum(case((batch, latency))) / func.sum(case((batch, size))),
        )
        .group_by(groups.c.day, groups.c.model_name)
        .order_by(groups.c.day, groups.c.model_name)
    ).all()
    return [
        DailyTraffic(
            day=_day(row[0]),
            model_name=row[1],
            predictions=int(row[2]),
            mean_latency_ms=_float(row[3]),
            max_latency_ms=_float(row[4]),
            item_latency_ms=_float(row[5]),
            single_predictions=int(row[6] or 0),
            single_latency_ms=_float(row[7]),
            batch_predictions=int(row[8] or 0),
            batch_groups=int(row[9] or 0),
            batch_item_latency_ms=_float(row[10]),
        )
        for row in rows
    ]


def _float(value: Any) -> float | None:
    return float(value) if value is not None else None


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


def _drift_counts(dialect: str) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    """Per ``ml_monitoring`` row, its drifted features and its judged ones, counted in the
    database: the entries carry both sides' histograms (tens of kB a row), which the trend
    need not read to count verdicts."""
    column = "ml_monitoring.feature_drift"
    if dialect == "postgresql":
        each = (
            f"jsonb_each(CASE WHEN jsonb_typeof({column}) = 'object' THEN {column} "
            "ELSE '{}'::jsonb END) AS e"
        )
        drifted = f"(SELECT count(*) FROM {each} WHERE e.value ->> 'drifted' = 'true')"
        judged = (
            f"(SELECT count(*) FROM {each} "
            "WHERE coalesce(e.value ->> 'method', '') <> 'not_judged')"
        )
    else:
        each = f"json_each(CASE WHEN json_type({column}) = 'object' THEN {column} ELSE '{{}}' END)"
        drifted = f"(SELECT count(*) FROM {each} WHERE json_extract(value, '$.drifted') = 1)"
        judged = (
            f"(SELECT count(*) FROM {each} "
            "WHERE coalesce(json_extract(value, '$.method'), '') <> 'not_judged')"
        )
    return literal_column(drifted), literal_column(judged)


def _trends(
    session: Session, tenant: str, since: datetime, until: datetime, dialect: str
) -> list[ModelTrend]:
    """Each model's monitoring periods in the window (the newest ``TREND_PERIODS``): drifted
    share, the score's drift and the main metric, oldest first."""
    drifted, judged = _drift_counts(dialect)
    rows: Sequence[Any] = session.execute(
        select(
            MLMonitoring.model_name,
            MLMonitoring.model_version,
            MLMonitoring.period_start,
            MLMonitoring.status,
            MLMonitoring.performance_metrics,
            drifted,
            judged,
        )
        .where(
            MLMonitoring.tenant_id == tenant,
            MLMonitoring.period_start >= since,
            MLMonitoring.period_start <= until,
        )
        # Newest write first: on two rows of one period (a promotion that day) the later wins.
        .order_by(MLMonitoring.model_name, MLMonitoring.period_start, MLMonitoring.id.desc())
    ).all()
    periods: dict[str, dict[date, tuple[Any, ...]]] = {}
    for row in rows:
        periods.setdefault(row[0], {}).setdefault(_day(row[2]), tuple(row))
    trends = []
    for name, by_day in periods.items():
        kept = [by_day[day] for day in sorted(by_day)][-TREND_PERIODS:]
        metric = next(
            (
                found[0]
                for *_, performance, _, _ in reversed(kept)
                if (found := main_metric(performance)) is not None
            ),
            None,
        )
        points = []
        for _, version, start, status, performance, n_drifted, n_judged in kept:
            metrics = performance if isinstance(performance, dict) else {}
            verdict = status not in NOT_JUDGED
            value = main_metric(metrics, metric) if metric else None
            score = metrics.get("prediction_score")
            points.append(
                TrendPoint(
                    day=_day(start),
                    model_version=version,
                    status=status,
                    judged=verdict,
                    feature_count=int(n_judged or 0),
                    drifted_count=int(n_drifted or 0),
                    # No verdict, no share: 0 % of an unjudged period would read "stable".
                    drifted_share=int(n_drifted or 0) / n_judged if verdict and n_judged else None,
                    prediction_drift_score=(
                        drift_entry("prediction score", score).score
                        if verdict and score is not None
                        else None
                    ),
                    # A metric of an unjudged period is over too few rows to plot.
                    metric=value[1] if value and verdict else None,
                    metric_estimated=bool(value and verdict and value[2]),
                )
            )
        trends.append(
            ModelTrend(
                model_name=name,
                metric=metric,
                lower_is_better=bool(metric and metric.lower() in LOWER_IS_BETTER),
                points=points,
            )
        )
    return trends


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
    stored = row.feature_drift if isinstance(row.feature_drift, dict) else {}
    for feature in [f for f in features if f.score is not None][:TOP_DISTRIBUTIONS]:
        feature.distribution = distribution(stored.get(feature.feature))
    performance = row.performance_metrics if isinstance(row.performance_metrics, dict) else {}
    score_entry = performance.get("prediction_score")
    prediction_score = (
        drift_entry("prediction score", score_entry) if score_entry is not None else None
    )
    if prediction_score is not None:
        prediction_score.distribution = distribution(score_entry)
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
        prediction_score=prediction_score,
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
