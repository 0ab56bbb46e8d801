"""BEHAVIORAL / engagement_timing: *when* the homeowner engages (8), for the contact-timing model.

All eight aggregate the ``engagement`` window group: every timestamped act of the homeowner's own
(a document view, an email open, a portal session, an alert click) in the 90 days before as-of.
The "top" hour and weekday break ties towards the smaller value, and the circular means are
rounded to 12 decimals, so a value never depends on the order DuckDB's threads add rows in
(a rerun of a day must store the same bits).
"""

from __future__ import annotations

from dataclasses import replace

from roiml.db.enums import DataType, FeatureCategory
from roiml.features.definition import FeatureDefinition, TimeRelation

__all__ = ["ENGAGEMENT_TIMING"]

_B = FeatureCategory.BEHAVIORAL
_SUB = "engagement_timing"
_GROUP = "engagement"
_INT, _FLOAT = DataType.INTEGER, DataType.FLOAT
_HOUR = "(hour(e.ts) + minute(e.ts) / 60.0)"
_DOW = "(isodow(e.ts) - 1)"


def _top(part: str) -> str:
    # histogram() gives {value: count}; the smallest (-count, value) pair is the most frequent
    # value with ties to the smaller one, encoded as one integer so list_min can pick it.
    return (
        f"list_min(list_transform(map_entries(histogram({part})), "
        "x -> (1000000 - x.value) * 100 + x.key)) % 100"
    )


def _top_share(part: str) -> str:
    return (
        f"(1000000 - list_min(list_transform(map_entries(histogram({part})), "
        "x -> (1000000 - x.value) * 100 + x.key)) // 100) / CAST(count(*) AS DOUBLE)"
    )


def _feature(
    name: str,
    description: str,
    dtype: DataType,
    expression: str,
    low: float,
    high: float,
    null_rate: float = 0.6,
    fill: float | None = None,
) -> FeatureDefinition:
    return FeatureDefinition(
        name,
        _B,
        _SUB,
        description,
        dtype,
        _GROUP,
        expression,
        window_days=90,
        valid_min=low,
        valid_max=high,
        max_null_rate=null_rate,
        fill=fill,
    )


ENGAGEMENT_TIMING: tuple[FeatureDefinition, ...] = (
    _feature(
        "engagement_events_90d",
        "Timestamped engagements (document views, email opens, sessions, alert clicks) in the "
        "90 days before as-of.",
        _INT,
        "count(*)",
        0,
        100000,
        null_rate=0.0,
        fill=0,
    ),
    _feature(
        "engagement_top_hour_90d",
        "Hour of day (0-23, UTC) of most of the homeowner's engagements in the last 90 days.",
        _INT,
        _top("hour(e.ts)"),
        0,
        23,
    ),
    _feature(
        "engagement_top_hour_share_90d",
        "Share of the last 90 days' engagements that fell in the top hour.",
        _FLOAT,
        _top_share("hour(e.ts)"),
        0,
        1,
    ),
    _feature(
        "engagement_top_weekday_90d",
        "Weekday (0 = Monday) of most of the homeowner's engagements in the last 90 days.",
        _INT,
        _top(_DOW),
        0,
        6,
    ),
    _feature(
        "engagement_top_weekday_share_90d",
        "Share of the last 90 days' engagements that fell on the top weekday.",
        _FLOAT,
        _top_share(_DOW),
        0,
        1,
    ),
    _feature(
        "engagement_hour_sin_90d",
        "Mean sine of the engagement time of day (a 24-hour circle), last 90 days.",
        _FLOAT,
        f"round(avg(sin(2 * pi() * {_HOUR} / 24)), 12)",
        -1,
        1,
    ),
    _feature(
        "engagement_hour_cos_90d",
        "Mean cosine of the engagement time of day (a 24-hour circle), last 90 days; with the "
        "sine, its direction is the habitual hour and its length how habitual.",
        _FLOAT,
        f"round(avg(cos(2 * pi() * {_HOUR} / 24)), 12)",
        -1,
        1,
    ),
    # A send that falls on a weekend (the 15th's home-value email on a Sunday) is opened by many
    # homeowners that weekend: everyone's weekend share moves with the tenant's calendar.
    replace(
        _feature(
            "engagement_weekend_share_90d",
            "Share of the last 90 days' engagements on Saturday or Sunday.",
            _FLOAT,
            f"count(*) FILTER (WHERE {_DOW} >= 5) / CAST(count(*) AS DOUBLE)",
            0,
            1,
        ),
        time_relation=TimeRelation.TENANT_EVENTS,
    ),
)
