"""The dashboard page: :class:`DashboardData` in, one self-contained HTML document out (inline
CSS and SVG, no script, nothing fetched), so it renders offline and behind any proxy."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from functools import cache
from html import escape
from importlib import resources
from urllib.parse import quote

from roiml.monitoring.dashboard.queries import TOP_DISTRIBUTIONS
from roiml.monitoring.dashboard.schemas import (
    DashboardData,
    DriftFeature,
    ModelDrift,
    ModelPerformance,
    ModelTrend,
)
from roiml.monitoring.dashboard.svg import (
    BAD,
    GOOD,
    MUTED,
    PALETTE,
    WARN,
    Bar,
    Comparison,
    Distribution,
    Segment,
    Series,
    StackRow,
    TrendPanel,
    bar_chart,
    day_strip,
    distribution_chart,
    dumbbell_chart,
    fmt,
    line_chart,
    stacked_chart,
    trend_chart,
)

__all__ = ["render_page"]

# The four models always get the same colour on every chart; any other model the next one.
_KNOWN_MODELS = (
    "move_probability_model",
    "transaction_type_model",
    "contact_timing_model",
    "property_value_model",
)
_TOP_DRIFT = 15
_TOP_NULL_RATES = 20
_TOP_CLASSES = 5
# Daily pipeline: data a day old is expected; two days old means a run was missed.
_FRESH_HOURS, _STALE_HOURS = 30.0, 54.0
_RANGES = (7, 30, 90)
# Why a period got no verdict, as the drift tile says it (statuses of roiml.monitoring.job).
_NOT_JUDGED_WHY = {
    "TOO_FEW_PREDICTIONS": "too few predictions",
    "NO_PREDICTIONS": "no predictions",
    "NO_REFERENCE": "no training reference",
    "FAILED": "monitoring failed",
}
NOT_JUDGED_BADGE = "not judged"


@cache
def _stylesheet() -> str:
    return resources.files(__package__).joinpath("dashboard.css").read_text(encoding="utf-8")


def _model_colours(names: set[str]) -> dict[str, str]:
    ordered = [name for name in _KNOWN_MODELS if name in names]
    ordered += sorted(names - set(_KNOWN_MODELS))
    return {name: PALETTE[index % len(PALETTE)] for index, name in enumerate(ordered)}


def _days(since: datetime, until: datetime) -> list[date]:
    count = (until.date() - since.date()).days + 1
    return [since.date() + timedelta(days=offset) for offset in range(count)]


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment is not None else "never"


def _ago(hours: float | None) -> str:
    if hours is None:
        return "never"
    return f"{hours:.0f} h" if hours < 72 else f"{hours / 24:.1f} days"


def render_page(data: DashboardData, *, base_path: str) -> str:
    """The whole page for ``data``; ``base_path`` is the dashboard's own URL (for the links)."""
    models = {t.model_name for t in data.traffic} | {c.model_name for c in data.classes}
    models |= {d.model_name for d in data.drift}
    colours = _model_colours(models)
    days = _days(data.since, data.until)
    sections = [
        _tiles(data),
        _section(
            "Traffic", "Served predictions from the prediction log.", _traffic(data, days, colours)
        ),
        _section("Class mix", "What the classifiers answered in the period.", [_class_mix(data)]),
        _section(
            "Drift",
            "Each model's latest monitoring period: input features against what the day "
            "should look like (the model's served traffic of the days before, else the "
            "population it was trained on), most drifted first. Scores are the effect over its "
            "line, so 1 is the alert line whatever the method; calendar values are not judged.",
            [chart for model in data.drift for chart in (_drift(model), _distributions(model))]
            or [_no_monitoring("feature-drift")],
        ),
        _section(
            "Trend",
            "Each model's monitoring periods in the window, each measure on its own scale: the "
            "share of judged features that drifted, the drift of the model's own score (1 is "
            "its alert line) and its main metric (hollow: estimated before labels arrive).",
            [_trend(trend, days) for trend in data.trends] or [_no_monitoring("trend")],
        ),
        _section(
            "Realised against registered performance",
            "From feedback in the latest monitoring period, beside the metrics the version was "
            "registered with; the estimate comes from the calibrated probabilities before labels "
            "arrive.",
            [_performance(model) for model in data.performance] or [_no_monitoring("performance")],
        ),
        _section(
            "Features and pipeline",
            "Null rates from the latest feature statistics; freshness from the pipeline's run "
            "records.",
            [_null_rates(data), _freshness(data), _pipeline_days(data, days)],
            extra=_feature_set_table(data),
        ),
    ]
    current = ' aria-current="page"'
    links = " · ".join(
        f'<a href="{escape(base_path)}?days={n}"{current if n == data.days else ""}>{n} days</a>'
        for n in _RANGES
    )
    json_link = f"{escape(base_path)}/data?days={data.days}"
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>roiml monitoring · {escape(data.tenant_id)}</title>"
        f"<style>{_stylesheet()}</style></head><body>"
        '<header class="page-header"><div>'
        "<h1>Model monitoring</h1>"
        f'<p class="subtitle">Tenant <strong>{escape(data.tenant_id)}</strong> · '
        f"{data.since:%Y-%m-%d} to {data.until:%Y-%m-%d} ({data.days} days) · "
        f"generated {_when(data.generated_at)}</p></div>"
        f'<nav class="ranges">{links} · <a href="{json_link}">JSON</a> · '
        f'<a href="{escape(quote(base_path.rsplit("/", 1)[0]))}/docs">API</a></nav></header>'
        f"<main>{''.join(sections)}</main></body></html>\n"
    )


def _section(title: str, lead: str, charts: list[str], extra: str = "") -> str:
    slug = title.lower().split()[0]
    return (
        f'<section id="{escape(slug)}"><h2>{escape(title)}</h2><p class="lead">{escape(lead)}</p>'
        f'<div class="grid">{"".join(charts)}</div>{extra}</section>'
    )


def _no_monitoring(chart_id: str) -> str:
    return (
        f'<figure class="chart" data-chart="{chart_id}" data-empty="true"><figcaption>'
        'No monitoring yet</figcaption><p class="empty-text">No <code>ml_monitoring</code> rows '
        "for this tenant: run <code>roiml monitor run --date YYYY-MM-DD</code> (the daily DAG "
        "does) to compute drift and realised performance.</p></figure>"
    )


def _tiles(data: DashboardData) -> str:
    served = sum(t.predictions for t in data.traffic)
    latency, latency_note = _latency(data)
    alerts = sum(model.alert_count for model in data.drift)
    run = next((step for step in data.pipeline_steps if step.step == "run"), None)
    freshness = run.age_hours if run is not None else None
    fresh_state = (
        "bad"
        if freshness is None or freshness > _STALE_HOURS
        else "warn"
        if freshness > _FRESH_HOURS
        else "good"
    )
    tiles = [
        ("predictions", "Predictions", fmt(served), f"in {data.days} days", "neutral"),
        ("latency", "Latency per item", fmt(latency, " ms"), latency_note, "neutral"),
        ("drift", "Models drifting", *_drifting(data.drift)),
        ("alerts", "Alerts", fmt(alerts), "in the latest periods", "bad" if alerts else "neutral"),
        (
            "freshness",
            "Features as of",
            f"{run.last_success_run_date:%Y-%m-%d}"
            if run and run.last_success_run_date
            else "no run",
            f"data {_ago(freshness)} old" if freshness is not None else "no successful run",
            fresh_state,
        ),
    ]
    return (
        '<section class="tiles">'
        + "".join(
            f'<div class="tile {state}" data-tile="{key}"><div class="tile-label">{escape(label)}'
            f'</div><div class="tile-value">{escape(value)}</div><div class="tile-note">'
            f"{escape(note)}</div></div>"
            for key, label, value, note, state in tiles
        )
        + "</section>"
    )


def _weighted(pairs: list[tuple[float | None, float]]) -> float | None:
    """The mean of values weighted by counts, over the pairs with a value."""
    weight = sum(count for value, count in pairs if value is not None)
    total = sum(value * count for value, count in pairs if value is not None)
    return total / weight if weight else None


def _latency(data: DashboardData) -> tuple[float | None, str]:
    """The latency tile's value (mean latency per item) and its note (single calls against
    batch items). A batch item is logged with its whole group's time; the query divides it by
    the group's size, so a batch of 1,000 answered in 300 ms reads 0.3 ms an item, not 300."""
    item = _weighted(
        [(t.item_latency_ms, t.single_predictions + t.batch_predictions) for t in data.traffic]
    )
    single_n = sum(t.single_predictions for t in data.traffic)
    batch_n = sum(t.batch_predictions for t in data.traffic)
    groups = sum(t.batch_groups for t in data.traffic)
    single = _weighted([(t.single_latency_ms, t.single_predictions) for t in data.traffic])
    batch = _weighted([(t.batch_item_latency_ms, t.batch_predictions) for t in data.traffic])
    parts = []
    if single_n:
        parts.append(f"single calls {fmt(single, ' ms')} ({fmt(single_n)})")
    if batch_n:
        parts.append(
            f"batch {fmt(batch, ' ms')} an item ({fmt(batch_n)} in "
            f"{fmt(groups)} group{'' if groups == 1 else 's'})"
        )
    return item, " · ".join(parts) or "no timed predictions"


def _drifting(models: list[ModelDrift]) -> tuple[str, str, str]:
    """The drift tile's value, note and state. Green only when every model's latest period got a
    verdict and none drifted: a period judged on too few predictions (or none, or without a
    reference) says nothing about drift, and reads "not judged", never "0 drifting"."""
    if not models:
        return "0 of 0", "no monitoring yet", "neutral"
    judged = [model for model in models if model.judged]
    drifting = sum(model.drift_detected for model in judged)
    unjudged = [model for model in models if not model.judged]
    why = ", ".join(
        f"{count} {_NOT_JUDGED_WHY.get(status, status.lower())}"
        for status, count in Counter(model.status for model in unjudged).most_common()
    )
    if not judged:
        return "not judged", f"{len(unjudged)} of {len(models)} models: {why}", "unjudged"
    if not unjudged:
        return (
            f"{drifting} of {len(judged)}",
            "latest monitoring period",
            ("bad" if drifting else "good"),
        )
    value = f"{drifting} of {len(judged)} judged"
    note = f"{len(unjudged)} not judged: {why}"
    return value, note, "bad" if drifting else "unjudged"


def _predictions(count: int) -> str:
    return f"{fmt(count)} prediction{'' if count == 1 else 's'}"


def _not_judged(status: str, count: int) -> str:
    """Why a model's latest period has no verdict, for its charts."""
    if status == "TOO_FEW_PREDICTIONS":
        return f"Not judged: {_predictions(count)}, too few for a verdict"
    if status == "NO_PREDICTIONS":
        return "Not judged: no predictions in the period"
    if status == "NO_REFERENCE":
        return "Not judged: the version has no training reference to compare with"
    return f"Not judged: monitoring gave no verdict ({status})"


def _traffic(data: DashboardData, days: list[date], colours: dict[str, str]) -> list[str]:
    counts: dict[str, dict[date, int]] = defaultdict(dict)
    latency: dict[str, dict[date, float]] = defaultdict(dict)
    for point in data.traffic:
        counts[point.model_name][point.day] = point.predictions
        if point.item_latency_ms is not None:
            latency[point.model_name][point.day] = point.item_latency_ms
    names = [name for name in colours if name in counts]
    # A day without predictions is a real zero for volume, but has no latency to draw.
    volume = [
        Series(name, [float(counts[name].get(day, 0)) for day in days], colours[name])
        for name in names
    ]
    speed = [
        Series(name, [latency[name].get(day) for day in days], colours[name]) for name in names
    ]
    return [
        line_chart(
            "predictions-per-day",
            "Predictions per day",
            days,
            volume,
            y_label="predictions",
            empty_message="No predictions in this period",
        ),
        line_chart(
            "latency-per-day",
            "Mean latency per item per day (ms; a batch group's time over its size)",
            days,
            speed,
            y_label="milliseconds",
            unit=" ms",
            empty_message="No predictions in this period",
        ),
    ]


def _class_mix(data: DashboardData) -> str:
    by_model: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for row in data.classes:
        by_model[row.model_name].append((row.predicted_class, row.count))
    rows = []
    for name in _model_colours(set(by_model)):
        # The query returns each model's classes most frequent first.
        classes = by_model[name]
        top = classes[:_TOP_CLASSES]
        rest = classes[_TOP_CLASSES:]
        segments = [
            Segment(label, float(count), PALETTE[index % len(PALETTE)])
            for index, (label, count) in enumerate(top)
        ]
        if rest:
            segments.append(
                Segment(f"{len(rest)} others", float(sum(count for _, count in rest)), MUTED)
            )
        rows.append(StackRow(name, segments))
    return stacked_chart(
        "class-mix",
        "Predicted classes per model",
        rows,
        empty_message="No predictions in this period",
    )


def _drift(model: ModelDrift) -> str:
    scored = [f for f in model.features if f.score is not None]
    bars = [
        Bar(
            label=feature.feature,
            value=feature.score or 0.0,
            colour=BAD if feature.drifted else WARN if (feature.score or 0) >= 0.75 else GOOD,
            text=f"{fmt(feature.score)}\u00d7",  # the multiplication sign
            tooltip=(
                f"{feature.feature}: {feature.method or 'drift'} {fmt(feature.statistic)} "
                f"(threshold {fmt(feature.threshold)}) — "
                + ("drifted" if feature.drifted else "stable")
            ),
            data={"drifted": str(feature.drifted).lower(), "method": feature.method or ""},
        )
        for feature in scored[:_TOP_DRIFT]
    ]
    note = f"v{model.model_version} · period {model.period_start:%Y-%m-%d} · status {model.status}"
    if model.judged:
        note += f" · {model.drifted_count} of {model.feature_count} features drifted"
    else:
        # No verdict: "0 of 0 features drifted" would read as a clean bill of health.
        note += f" · {_predictions(model.prediction_count)}"
    if len(scored) > _TOP_DRIFT:
        note += f" · top {_TOP_DRIFT} shown"
    if len(scored) < model.feature_count:
        note += f" · {model.feature_count - len(scored)} not scored"
    score = model.prediction_score
    if score is not None and score.statistic is not None:
        verdict = "drifted" if score.drifted else "stable"
        note += f" · prediction score {score.method or ''} {fmt(score.statistic)} ({verdict})"
    if model.alerts:
        note += " · alerts: " + "; ".join(model.alerts)
    if model.judged:
        empty = f"No feature drift computed ({model.status})"
    else:
        empty = _not_judged(model.status, model.prediction_count)
    return bar_chart(
        f"drift-{model.model_name}",
        f"Drift · {model.model_name}",
        bars,
        x_label="drift score (statistic ÷ threshold)",
        empty_message=empty,
        reference=1.0,
        reference_label="threshold",
        legend=[("drifted", BAD), ("near (≥ 0.75)", WARN), ("stable", GOOD)],
        note=note,
        badge="" if model.judged else NOT_JUDGED_BADGE,
    )


def _distribution(feature: DriftFeature) -> Distribution | None:
    shape = feature.distribution
    if shape is None:
        return None
    caption = f"{fmt(feature.score)}\u00d7" if feature.score is not None else ""
    if feature.drifted:
        caption += " drifted"
    return Distribution(
        label=feature.feature,
        reference=shape.reference,
        current=shape.current,
        edges=shape.edges,
        levels=shape.levels,
        p=shape.p,
        reference_quantiles=shape.reference_quantiles,
        current_quantiles=shape.current_quantiles,
        drifted=feature.drifted,
        caption=caption,
    )


def _distributions(model: ModelDrift) -> str:
    """The most drifted features' reference and current distributions, then the model's own
    score's: what moved and where, beside the drift bars that say by how much."""
    features = [f for f in model.features if f.distribution is not None]
    if model.prediction_score is not None and model.prediction_score.distribution is not None:
        features.append(model.prediction_score)
    panels = [panel for f in features if (panel := _distribution(f)) is not None]
    if model.judged:
        empty = "No distributions stored for this period (monitored before they were kept)"
    else:
        empty = _not_judged(model.status, model.prediction_count)
    return distribution_chart(
        f"distributions-{model.model_name}",
        f"Reference vs current · {model.model_name}",
        panels,
        empty_message=empty,
        note=f"period {model.period_start:%Y-%m-%d} · the most drifted inputs (up to "
        f"{TOP_DISTRIBUTIONS}) and the model's score; bars: reference, outline: current, as shares "
        "of non-null values; strips: 5th, 25th, 50th, 75th and 95th percentiles",
        badge="" if model.judged else NOT_JUDGED_BADGE,
    )


def _trend(trend: ModelTrend, days: list[date]) -> str:
    by_day = {point.day: point for point in trend.points}
    points = [by_day.get(day) for day in days]
    panels = [
        TrendPanel(
            "drifted-share",
            "drifted features (% of judged)",
            [p.drifted_share if p else None for p in points],
            PALETTE[3],
            percent=True,
        ),
        TrendPanel(
            "prediction-drift",
            "prediction score drift (score \u00f7 threshold)",
            [p.prediction_drift_score if p else None for p in points],
            PALETTE[0],
            reference=1.0,
        ),
    ]
    if trend.metric:
        direction = "lower is better" if trend.lower_is_better else "higher is better"
        panels.append(
            TrendPanel(
                "metric",
                f"{trend.metric} ({direction})",
                [p.metric if p else None for p in points],
                PALETTE[2],
                hollow=[bool(p and p.metric_estimated) for p in points],
            )
        )
    unjudged = sum(not p.judged for p in trend.points)
    note = f"{len(trend.points)} period{'' if len(trend.points) == 1 else 's'}"
    if unjudged:
        note += f" · {unjudged} not judged (no point drawn)"
    versions = sorted({p.model_version for p in trend.points}, key=lambda v: (len(v), v))
    note += " · version" + ("s " if len(versions) > 1 else " ") + ", ".join(versions)
    return trend_chart(
        f"trend-{trend.model_name}",
        f"Trend · {trend.model_name}",
        days,
        panels,
        empty_message="No judged monitoring period in this window",
        note=note,
    )


def _performance(model: ModelPerformance) -> str:
    rows = [
        Comparison(
            m.metric,
            m.realised,
            m.registered,
            m.estimated,
            m.lower_is_better,
            m.estimated_reference,
        )
        for m in model.metrics
    ]
    note = f"v{model.model_version} · period {model.period_start:%Y-%m-%d}"
    if not model.judged and model.status:
        note += f" · status {model.status}"
    if model.labelled is not None:
        note += f" · {fmt(model.labelled)} labelled"
        if model.label_coverage is not None:
            note += f" ({model.label_coverage:.0%})"
    if model.decayed:
        note += " · DECAYED"
    if model.notes:
        note += " · " + "; ".join(model.notes)
    return dumbbell_chart(
        f"performance-{model.model_name}",
        f"Performance · {model.model_name}",
        rows,
        empty_message="No realised or registered metrics yet",
        note=note,
        badge="" if model.judged else NOT_JUDGED_BADGE,
    )


def _null_rates(data: DashboardData) -> str:
    over = [
        f for f in data.null_rates if f.max_null_rate is not None and f.null_rate > f.max_null_rate
    ]
    bars = [
        Bar(
            label=feature.feature,
            value=feature.null_rate * 100,
            colour=BAD
            if feature.max_null_rate is not None and feature.null_rate > feature.max_null_rate
            else PALETTE[0],
            text=f"{feature.null_rate:.1%}",
            tooltip=(
                f"{feature.feature} ({feature.feature_set}): {feature.null_rate:.2%} null, "
                f"allowed {fmt((feature.max_null_rate or 0) * 100)}%"
            ),
            marker=feature.max_null_rate * 100 if feature.max_null_rate is not None else None,
            data={"feature-set": feature.feature_set},
        )
        for feature in data.null_rates[:_TOP_NULL_RATES]
    ]
    note = f"{len(data.null_rates)} features · {len(over)} over their allowed null rate"
    if len(data.null_rates) > _TOP_NULL_RATES:
        note += f" · the {_TOP_NULL_RATES} highest shown"
    return bar_chart(
        "null-rates",
        "Feature null rates (%)",
        bars,
        x_label="null rate, % (tick: allowed by the definition)",
        empty_message="No feature statistics yet: run the pipeline (roiml pipeline run)",
        legend=[("within limit", PALETTE[0]), ("over limit", BAD)],
        note=note,
    )


def _freshness(data: DashboardData) -> str:
    bars = []
    for step in data.pipeline_steps:
        age = step.age_hours
        failed = step.last_outcome not in {"SUCCESS", "RUNNING"}
        colour = (
            BAD
            if failed or age is None or age > _STALE_HOURS
            else WARN
            if age > _FRESH_HOURS
            else GOOD
        )
        bars.append(
            Bar(
                label=step.step,
                value=age if age is not None else 0.0,
                colour=colour,
                text=f"{_ago(age)} · {step.last_outcome.lower()}",
                tooltip=(
                    f"{step.step}: last {step.last_outcome} started {_when(step.last_started_at)}"
                    f"; data of {step.last_success_run_date:%Y-%m-%d} "
                    if step.last_success_run_date
                    else f"{step.step}: never succeeded; last {step.last_outcome}"
                ),
                data={"outcome": step.last_outcome},
            )
        )
    return bar_chart(
        "pipeline-freshness",
        "Pipeline freshness (age of the data, hours)",
        bars,
        x_label="hours since the end of the latest successfully processed day",
        empty_message="No pipeline runs recorded",
        reference=_STALE_HOURS,
        reference_label="stale",
        legend=[("fresh", GOOD), ("late", WARN), ("stale or failing", BAD)],
    )


def _pipeline_days(data: DashboardData, days: list[date]) -> str:
    outcomes: dict[date, dict[str, int]] = defaultdict(dict)
    for row in data.pipeline_days:
        outcomes[row.day][row.outcome] = row.runs
    cells: dict[date, tuple[str, str, str]] = {}
    for day, by_outcome in outcomes.items():
        summary = ", ".join(f"{n} {o.lower()}" for o, n in sorted(by_outcome.items()))
        if "SUCCESS" in by_outcome:
            state, colour = ("success", GOOD)
            if len(by_outcome) > 1:
                state, colour = ("retried", WARN)
        elif "RUNNING" in by_outcome:
            state, colour = ("running", WARN)
        else:
            state, colour = ("failed", BAD)
        cells[day] = (colour, state, f"{day.isoformat()}: {summary}")
    return day_strip(
        "pipeline-runs",
        "Daily pipeline runs",
        days,
        cells,
        legend=[("succeeded", GOOD), ("retried or running", WARN), ("failed", BAD)],
        empty_message="No pipeline runs in this period",
    )


def _feature_set_table(data: DashboardData) -> str:
    if not data.feature_sets:
        return ""
    rows = "".join(
        f'<tr><td>{escape(s.feature_set)}</td><td class="num">{s.features}</td>'
        f'<td class="num{" bad" if s.over_null_limit else ""}">{s.over_null_limit}</td>'
        f"<td>{_when(s.last_updated)}</td></tr>"
        for s in data.feature_sets
    )
    return (
        '<table class="feature-sets"><caption>Feature sets: statistics last refreshed'
        "</caption><thead><tr><th>feature set</th><th>features</th><th>over null limit</th>"
        f"<th>statistics updated</th></tr></thead><tbody>{rows}</tbody></table>"
    )
