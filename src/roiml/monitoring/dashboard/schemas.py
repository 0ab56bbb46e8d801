"""What the dashboard shows, as typed values: the JSON endpoint's schema and the page's input.

Every figure here is already aggregated (per day and model, per model and class, per feature):
the page and the JSON carry tens to hundreds of numbers, never the prediction log itself.
"""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field

from roiml.jsonformat import UtcDatetime

__all__ = [
    "ClassCount",
    "DailyTraffic",
    "DashboardData",
    "DriftFeature",
    "FeatureDistribution",
    "FeatureNullRate",
    "FeatureSetFreshness",
    "ModelDrift",
    "ModelPerformance",
    "ModelTrend",
    "PerformanceMetric",
    "PipelineDay",
    "PipelineStep",
    "TrendPoint",
]


class DailyTraffic(BaseModel):
    """Predictions served by one model on one day (UTC).

    The log gives every item of a batch its group's whole time (one predict call serves the
    group), so the logged mean overstates batch traffic by the group's size. The group is
    recovered from the log (its items share the model version, the exact logged time and the
    second they were answered in); an item's own latency is the group's time over its size.
    """

    day: date
    model_name: str
    predictions: int
    mean_latency_ms: float | None = Field(
        None, description="Mean of the logged latency: a batch item carries its group's time."
    )
    max_latency_ms: float | None = None
    item_latency_ms: float | None = Field(
        None, description="Mean latency per item: a batch group's time over its size."
    )
    single_predictions: int = Field(0, description="Items answered alone (a group of one).")
    single_latency_ms: float | None = Field(None, description="Mean latency of those calls.")
    batch_predictions: int = Field(0, description="Items answered in a group of several.")
    batch_groups: int = Field(0, description="How many such groups (predict calls).")
    batch_item_latency_ms: float | None = Field(
        None, description="Mean per-item latency of batch items (group time / group size)."
    )


class ClassCount(BaseModel):
    """How often one model predicted one class in the period."""

    model_name: str
    predicted_class: str
    count: int


class FeatureDistribution(BaseModel):
    """Reference against current for one feature, as the monitoring job summarised them.

    Numeric: ``edges`` of shared bins and each side's share per bin, with quantiles (``p``);
    categorical: ``levels`` and each side's share per level.
    """

    edges: list[float] | None = None
    levels: list[float] | None = None
    reference: list[float]
    current: list[float]
    p: list[float] = Field(default_factory=list)
    reference_quantiles: list[float] = Field(default_factory=list)
    current_quantiles: list[float] = Field(default_factory=list)


class DriftFeature(BaseModel):
    """One feature's drift in a model's latest monitoring period.

    ``score`` is ``statistic / threshold``: methods differ in scale (PSI 0.2, KS 0.1, …), the
    ratio puts them on one axis where 1 is the alert line.
    """

    feature: str
    method: str | None = None
    statistic: float | None = None
    threshold: float | None = None
    score: float | None = None
    drifted: bool = False
    status: str | None = None
    distribution: FeatureDistribution | None = Field(
        None, description="Set on the most drifted few features of each model only."
    )


class ModelDrift(BaseModel):
    """A model's latest ``ml_monitoring`` row, its features most drifted first."""

    model_name: str
    model_version: str
    period_start: UtcDatetime
    period_end: UtcDatetime
    status: str
    judged: bool = Field(
        True,
        description="Whether monitoring gave this period a verdict; false when it had no or too "
        "few predictions, no training reference, or the run failed (drift is then unknown, "
        "not absent).",
    )
    prediction_count: int
    error_rate: float | None = None
    p95_latency_ms: float | None = None
    drift_detected: bool
    prediction_drift: float | None = None
    prediction_score: DriftFeature | None = Field(
        None, description="Drift of the model's own score (performance_metrics.prediction_score)."
    )
    alert_count: int = 0
    alerts: list[str] = Field(default_factory=list, description="The row's alert messages.")
    feature_count: int = 0
    drifted_count: int = 0
    features: list[DriftFeature] = Field(default_factory=list)


class PerformanceMetric(BaseModel):
    """One metric of one model: realised from feedback, at registration, and estimated."""

    metric: str
    realised: float | None = None
    registered: float | None = None
    estimated: float | None = None
    # The same estimate over the rows the period's drift is judged against (the week of served
    # traffic before, else the model's latest snapshot): what an estimate's decay is judged by.
    estimated_reference: float | None = None
    lower_is_better: bool = False


class ModelPerformance(BaseModel):
    """Realised against registered performance of a model in its latest monitoring period."""

    model_name: str
    model_version: str
    period_start: UtcDatetime
    period_end: UtcDatetime
    status: str | None = None
    judged: bool = Field(True, description="As for drift: whether the period got a verdict.")
    labelled: int | None = None
    label_coverage: float | None = None
    decayed: bool | None = None
    notes: list[str] = Field(default_factory=list)
    metrics: list[PerformanceMetric] = Field(default_factory=list)


class TrendPoint(BaseModel):
    """One monitoring period of a model, reduced to the figures its trend draws."""

    day: date
    model_version: str
    status: str
    judged: bool = True
    feature_count: int = Field(0, description="Features given a verdict.")
    drifted_count: int = 0
    drifted_share: float | None = None
    prediction_drift_score: float | None = Field(
        None, description="The model score's drift, statistic over threshold (1 is the line)."
    )
    metric: float | None = Field(None, description="The model's main metric in the period.")
    metric_estimated: bool = Field(False, description="The metric is the label-free estimate.")


class ModelTrend(BaseModel):
    """A model's last monitoring periods in the window, oldest first."""

    model_name: str
    metric: str | None = None
    lower_is_better: bool = False
    points: list[TrendPoint] = Field(default_factory=list)


class FeatureNullRate(BaseModel):
    """A feature's null rate in its latest statistics, beside the rate its definition allows."""

    feature: str
    feature_set: str
    null_rate: float
    max_null_rate: float | None = None
    last_updated: UtcDatetime | None = None


class FeatureSetFreshness(BaseModel):
    """When a feature set's statistics were last refreshed by the pipeline."""

    feature_set: str
    features: int
    last_updated: UtcDatetime | None = None
    over_null_limit: int = 0


class PipelineStep(BaseModel):
    """The pipeline's latest record of one step, and its latest success."""

    step: str
    last_outcome: str
    last_started_at: UtcDatetime
    last_success_run_date: UtcDatetime | None = None
    last_success_ended_at: UtcDatetime | None = None
    age_hours: float | None = Field(
        None, description="Hours from the latest successful run's data day to now."
    )
    rows: int | None = None


class PipelineDay(BaseModel):
    """Whole-pipeline runs (``step = 'run'``) recorded for one data day, by outcome."""

    day: date
    outcome: str
    runs: int


class DashboardData(BaseModel):
    """Everything the dashboard page draws, for one tenant and one window of days."""

    tenant_id: str
    days: int
    since: UtcDatetime
    until: UtcDatetime
    generated_at: UtcDatetime
    traffic: list[DailyTraffic] = Field(default_factory=list)
    classes: list[ClassCount] = Field(default_factory=list)
    drift: list[ModelDrift] = Field(default_factory=list)
    trends: list[ModelTrend] = Field(default_factory=list)
    performance: list[ModelPerformance] = Field(default_factory=list)
    null_rates: list[FeatureNullRate] = Field(default_factory=list)
    feature_sets: list[FeatureSetFreshness] = Field(default_factory=list)
    pipeline_steps: list[PipelineStep] = Field(default_factory=list)
    pipeline_days: list[PipelineDay] = Field(default_factory=list)
