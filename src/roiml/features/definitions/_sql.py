"""Small SQL builders shared by the definitions, so windows and day counts read the same way."""

from __future__ import annotations

__all__ = ["PER_DAY", "PER_YEAR", "days_since", "in_window", "owned", "ratio", "years_since"]

# How much a CLOCK feature grows a day, by its unit (FeatureDefinition.clock_per_day).
PER_DAY = 1.0
PER_YEAR = 1 / 365.25


def in_window(days: int) -> str:
    """Condition: the source row ``e`` lies within ``days`` before ``as_of`` (``e.ts < as_of`` is
    already enforced by the engine)."""
    return f"e.ts >= c.as_of - INTERVAL {days} DAY"


def days_since(column: str) -> str:
    """Fractional days from ``column`` to ``as_of``."""
    return f"date_diff('second', {column}, c.as_of) / 86400.0"


def years_since(column: str) -> str:
    """Fractional years from ``column`` to ``as_of``."""
    return f"date_diff('day', {column}, c.as_of) / 365.25"


def ratio(numerator: str, denominator: str) -> str:
    """``numerator / denominator`` as a float, null when the denominator is 0 or null."""
    return f"CAST({numerator} AS DOUBLE) / nullif({denominator}, 0)"


def owned(column: str) -> str:
    """A home column, null unless the home was still owned at ``as_of``."""
    return f"CASE WHEN j.sold_at IS NULL OR j.sold_at >= c.as_of THEN j.{column} END"
