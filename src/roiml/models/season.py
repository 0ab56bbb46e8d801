"""The calendar's own effect on each feature: a fixed panel's daily means over the data's last year.

Monitoring compares a day's traffic with the week served before it. Some moves between the two
are the season's: in February homeowners open their tax statements, and a 7-day count of
document reads rises for everyone within a week. The snapshot grid (one every 14 days) cannot
show a move that takes a week, so training also computes, through the same feature engine, the
features of a fixed panel of homeowners as of *every* midnight of the data's last
:data:`SEASON_DAYS` days, and keeps the panel's daily mean of each feature. Monitoring reads it
a year back (:func:`year_earlier`) to ask whether the same dates moved the same way then.

The panel is the same people every day (signed up before the first day), so a day-to-day
change in its mean is the calendar's and the panel's own lives, not the population's growth.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa

from roiml.features.catalog import Catalog
from roiml.features.definition import TimeRelation
from roiml.features.engine import FeatureEngine
from roiml.features.frame import AS_OF, ENTITY_ID
from roiml.features.sources import SourceTables

__all__ = ["PANEL_USERS", "SEASON_DAYS", "seasonal_names", "seasonal_profile", "year_earlier"]

# A year and the served week before its first day, with a margin.
SEASON_DAYS = 380
# The panel's size. The season's move is a difference of the panel's means a few days apart;
# at 400 homeowners its noise was as large as the moves judged: in the year replay, the
# expected move of a rare 7-day count (document reads, mean 0.1) over the days of February came
# out 0.05-0.13 std where 1,500 homeowners gave 0.08-0.13, and the day with 0.05 raised a false
# alert. Its cost is fixed, whatever the tenant's size (about 5 s for the ORDINARY features).
PANEL_USERS = 1500
# Fewer homeowners present for the whole year than this: no profile (a young tenant).
_MIN_PANEL = 50


def seasonal_profile(
    sources: SourceTables,
    live: datetime,
    names: Sequence[str],
    engine: FeatureEngine,
    seed: int = 0,
) -> pa.Table | None:
    """``as_of`` (every midnight of the :data:`SEASON_DAYS` up to ``live``) and, per feature of
    ``names``, the panel's mean that day; None when fewer than 50 homeowners were signed up
    before the first day (then monitoring has no season to consult)."""
    first = live - timedelta(days=SEASON_DAYS)
    users = sources.tables["users"]
    con = duckdb.connect()
    try:
        con.execute("SET threads = 2")
        con.register("users", users)
        # A hash of the id with the seed picks the panel: the same homeowners for the same data
        # however the table is ordered.
        panel = con.execute(
            "SELECT user_id FROM users WHERE created_at < ? "
            "ORDER BY hash(user_id::VARCHAR || ?::VARCHAR) LIMIT ?",
            [first, str(seed), PANEL_USERS],
        ).to_arrow_table()
        if panel.num_rows < _MIN_PANEL:
            return None
        days = pa.array(
            [first + timedelta(days=d) for d in range(SEASON_DAYS + 1)], pa.timestamp("us")
        )
        con.register("panel", panel)
        con.register("days", pa.table({AS_OF: days}))
        frame = con.execute(
            f"SELECT p.user_id AS {ENTITY_ID}, d.{AS_OF} FROM panel p CROSS JOIN days d "
            f"ORDER BY d.{AS_OF}, p.user_id"
        ).to_arrow_table()
        computed = engine.compute(frame, list(names), sources)
        con.register("computed", computed)
        means = ", ".join(f'AVG("{n}"::DOUBLE) AS "{n}"' for n in names)
        return con.execute(
            f"SELECT {AS_OF}, {means} FROM computed GROUP BY {AS_OF} ORDER BY {AS_OF}"
        ).to_arrow_table()
    finally:
        con.close()


def seasonal_names(catalog: Catalog) -> list[str]:
    """The features a profile is kept for: the ORDINARY ones. The others have their own rule
    for time (a calendar value, a clock moved on, a shared step, the send calendar)."""
    return [
        name
        for name, definition in catalog.features.items()
        if definition.time_relation is TimeRelation.ORDINARY
    ]


def year_earlier(days: np.ndarray, years: int = 1) -> np.ndarray:
    """The same calendar date ``years`` earlier (datetime64[D]); 29 February becomes 1 March."""
    days = np.asarray(days, dtype="datetime64[D]")
    months = days.astype("datetime64[M]")
    return (months - 12 * years).astype("datetime64[D]") + (days - months.astype("datetime64[D]"))
