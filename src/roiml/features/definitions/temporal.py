"""TEMPORAL: time since the homeowner's own milestones, and calendar encodings (8)."""

from __future__ import annotations

from dataclasses import replace

from roiml.db.enums import DataType, FeatureCategory
from roiml.features.definition import CONTEXT, DERIVED, FeatureDefinition, TimeRelation
from roiml.features.definitions._sql import PER_DAY, days_since

__all__ = ["TEMPORAL"]

_T = FeatureCategory.TEMPORAL
_INT, _FLOAT, _BOOL = DataType.INTEGER, DataType.FLOAT, DataType.BOOLEAN
# ISO day of week 1..7 (Monday = 1) -> 0..6
_DOW = "(isodow(c.as_of) - 1)"


def _cyclic(name: str, description: str, expression: str) -> FeatureDefinition:
    return FeatureDefinition(
        name, _T, "cyclical", description, _FLOAT, CONTEXT, expression, valid_min=-1, valid_max=1
    )


_TEMPORAL: tuple[FeatureDefinition, ...] = (
    # time-based (4)
    FeatureDefinition(
        "days_since_signup",
        _T,
        "time_based",
        "Days since the homeowner joined the platform.",
        _FLOAT,
        CONTEXT,
        f"CASE WHEN c.user_created_at < c.as_of THEN {days_since('c.user_created_at')} END",
        valid_min=0,
        valid_max=40000,
        max_null_rate=0.05,
    ),
    FeatureDefinition(
        "days_since_last_activity",
        _T,
        "time_based",
        "Days since the homeowner last did anything: a document view, email open, session or "
        "alert click.",
        _FLOAT,
        DERIVED,
        "least(days_since_last_doc_access, days_since_last_email_open, days_since_last_session, "
        "days_since_last_alert_click)",
        valid_min=0,
        valid_max=40000,
        max_null_rate=0.3,
        needs=(
            "days_since_last_doc_access",
            "days_since_last_email_open",
            "days_since_last_session",
            "days_since_last_alert_click",
        ),
    ),
    FeatureDefinition(
        "day_of_week",
        _T,
        "time_based",
        "Day of week of as-of, 0 = Monday.",
        _INT,
        CONTEXT,
        _DOW,
        valid_min=0,
        valid_max=6,
    ),
    FeatureDefinition(
        "is_weekend",
        _T,
        "time_based",
        "1 on Saturday and Sunday.",
        _BOOL,
        CONTEXT,
        f"CAST({_DOW} >= 5 AS INTEGER)",
        valid_min=0,
        valid_max=1,
    ),
    # cyclical encodings (4)
    _cyclic("day_of_week_sin", "sin(2 pi day_of_week / 7).", f"sin(2 * pi() * {_DOW} / 7)"),
    _cyclic("day_of_week_cos", "cos(2 pi day_of_week / 7).", f"cos(2 * pi() * {_DOW} / 7)"),
    _cyclic(
        "month_sin", "sin(2 pi (month - 1) / 12).", "sin(2 * pi() * (month(c.as_of) - 1) / 12)"
    ),
    _cyclic(
        "month_cos", "cos(2 pi (month - 1) / 12).", "cos(2 * pi() * (month(c.as_of) - 1) / 12)"
    ),
)
# Every temporal feature is a clock or a calendar: it moves from one day to the next by design.
# The latest of four activity clocks restarts whenever any of them does.
_CLOCKS = {"days_since_signup": False, "days_since_last_activity": True}
TEMPORAL = tuple(
    replace(
        feature,
        time_relation=TimeRelation.CLOCK,
        clock_per_day=PER_DAY,
        restarts=_CLOCKS[feature.name],
    )
    if feature.name in _CLOCKS
    else replace(feature, time_relation=TimeRelation.CALENDAR)
    for feature in _TEMPORAL
)
