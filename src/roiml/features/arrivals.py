"""The arrival check: did a source table receive a usual day's rows?

A half-loaded table moves few features on its first day (half of one day's sessions changes a
few homeowners' 7-day counts by one), so the feature gate cannot see it; the rows themselves
can. For each table whose rows arrive as a steady daily flow (homeowners acting), the count of
rows stamped on the day the pipeline reads for the first time is compared with the days before
it, in the extract the pipeline already holds: no second query to the store.

A day fails when its count is short in both size and evidence, against both baselines:

- size: below ``1 - ARRIVAL_EFFECT`` times the baseline (a lost half);
- evidence: more than ``ARRIVAL_Z`` spreads away, the spread being the larger of the Poisson
  one (sqrt of the baseline) and the days' own (1.4826 x their median absolute deviation);
- baselines: the median of the ``ARRIVAL_HISTORY_DAYS`` days before, and the median of the
  same weekday in those weeks, so a quiet Sunday is not a lost Sunday.

Only a shortfall fails: a surplus is as often a real surge (homeowners reading in the tax
season) as a table loaded twice, and a row loaded twice is the source keys' to refuse.

A table is judged only once its rows span the whole history window (a new tenant's first
weeks are not) and its baseline is at least ``ARRIVAL_MIN_DAILY_ROWS`` a day: below that, a
lost half is within chance and no line separates the two.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import date, datetime, timedelta

import duckdb
import numpy as np

from roiml.features.sources import DAILY_FLOW_TABLES, TIME_COLUMNS, SourceTables
from roiml.features.validation import ValidationIssue

__all__ = [
    "ARRIVAL_EFFECT",
    "ARRIVAL_HISTORY_DAYS",
    "ARRIVAL_MIN_DAILY_ROWS",
    "ARRIVAL_RULE",
    "ARRIVAL_Z",
    "Arrival",
    "check_arrivals",
    "judge_arrival",
]

ARRIVAL_HISTORY_DAYS = 28
# Losing 40% of a day (or a day loaded 1.67 times over) is the size a partial or double load
# has; the busiest table of a 2,000-homeowner world moves 25% at most over half a year.
ARRIVAL_EFFECT = 0.4
ARRIVAL_Z = 3.0
ARRIVAL_MIN_DAILY_ROWS = 20
ARRIVAL_RULE = "daily row arrivals"


@dataclass(frozen=True)
class Arrival:
    """One table's verdict for one day."""

    table: str
    day: date
    rows: int
    median: float  # of the history days
    weekday_median: float  # of the same weekday in the history days
    low: int  # the fewest rows that pass
    judged: bool
    reason: str = ""  # why not judged

    @property
    def passed(self) -> bool:
        """Whether the day's count is usual (or was not judged)."""
        return not self.judged or self.rows >= self.low

    def as_json(self) -> dict[str, object]:
        """The verdict for the validation report file."""
        out = asdict(self)
        out["day"] = self.day.isoformat()
        return out

    def issue(self) -> ValidationIssue:
        """The failed rule, worded for the gate's report."""
        return ValidationIssue(
            self.table,
            ARRIVAL_RULE,
            f"{self.rows} rows stamped {self.day} (a partial load?)",
            f">= {self.low} (median of the {ARRIVAL_HISTORY_DAYS} days before {self.median:g}, "
            f"of the same weekday {self.weekday_median:g})",
        )


def _lowest(baseline: float, spread: float) -> float:
    """The fewest rows that pass against one baseline: fewer is both ``ARRIVAL_EFFECT`` short
    in size and ``ARRIVAL_Z`` spreads short."""
    sd = max(np.sqrt(baseline), spread)
    return float(min(baseline * (1 - ARRIVAL_EFFECT), baseline - ARRIVAL_Z * sd))


def judge_arrival(table: str, day: date, counts: np.ndarray, first_row: date | None) -> Arrival:
    """The verdict on ``counts[-1]`` (rows stamped on ``day``) given ``counts[:-1]``, the
    ``ARRIVAL_HISTORY_DAYS`` days before it in order (zeros included); ``first_row`` is the
    table's earliest stamped day in the extract."""
    history, rows = counts[:-1].astype(np.float64), int(counts[-1])
    if history.size < ARRIVAL_HISTORY_DAYS:
        raise ValueError(f"{ARRIVAL_HISTORY_DAYS} history days expected, got {history.size}")
    median = float(np.median(history))
    same_weekday = history[::-1][6::7]  # 7, 14, 21, 28 days before
    weekday_median = float(np.median(same_weekday))
    start = day - timedelta(days=ARRIVAL_HISTORY_DAYS)
    reason = ""
    if first_row is None or first_row > start:
        reason = f"rows start {first_row or 'nowhere'}: less than {ARRIVAL_HISTORY_DAYS} days"
    elif median < ARRIVAL_MIN_DAILY_ROWS:
        reason = f"{median:g} rows a day: too few to tell a partial load from chance"
    if reason:
        return Arrival(table, day, rows, median, weekday_median, 0, False, reason)
    spread = 1.4826 * float(np.median(np.abs(history - median)))
    # A day fails only short of both baselines: it passes if it reaches either.
    low = int(np.ceil(min(_lowest(median, spread), _lowest(weekday_median, spread))))
    return Arrival(table, day, rows, median, weekday_median, low, True)


def check_arrivals(
    sources: SourceTables,
    as_of: datetime,
    accept: Collection[str] = (),
    tables: Collection[str] = DAILY_FLOW_TABLES,
) -> Mapping[str, Arrival]:
    """Per daily-flow table in ``sources``, the verdict on the rows stamped the day before
    ``as_of`` (those a computation as of ``as_of`` reads first). A table in ``accept`` is
    reported but not judged (a real quiet day the operator vouched for)."""
    day = (as_of - timedelta(days=1)).date()
    start = day - timedelta(days=ARRIVAL_HISTORY_DAYS)
    verdicts: dict[str, Arrival] = {}
    with duckdb.connect() as con:
        for table in sorted(set(tables) & sources.names):
            sources.register(con, [table])
            column = TIME_COLUMNS[table][0]
            found = con.execute(
                f"SELECT CAST({column} AS DATE) AS day, count(*) AS n FROM {table} "
                f"WHERE {column} >= ? AND {column} < ? GROUP BY ALL",
                [datetime.combine(start, datetime.min.time()), as_of],
            ).fetchnumpy()
            first = con.execute(f"SELECT min(CAST({column} AS DATE)) FROM {table}").fetchone()
            counts = np.zeros(ARRIVAL_HISTORY_DAYS + 1, dtype=np.int64)
            offsets = (found["day"].astype("datetime64[D]") - np.datetime64(start, "D")).astype(
                np.int64
            )
            counts[offsets] = found["n"]
            verdict = judge_arrival(table, day, counts, first[0] if first else None)
            if table in accept and verdict.judged:
                verdict = replace(verdict, judged=False, reason="accepted by the operator")
            verdicts[table] = verdict
    return verdicts
