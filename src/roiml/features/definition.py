"""What a feature *is*: data describing it, plus one SQL expression the engine compiles.

A feature is computed for rows of an *entity frame* (``entity_id``, ``as_of``). Its expression
is DuckDB SQL over one of three scopes:

* ``context`` - scalar SQL over the context row ``c``: the frame row, the user's static columns
  and the latest-before-``as_of`` rows of context joins (home, loan, market, economy, agent).
* a window group (``emails``, ``sessions``, ...) - an *aggregate* over the group's source rows
  ``e`` of the same entity with ``e.ts < c.as_of`` (and within the group's lookback).
* ``derived`` - scalar SQL over other features, referenced by name.

Point in time is the engine's job, not the expression's, with one exception an author must mind:
a source row stamped before ``as_of`` may carry *later* timestamps (an email sent before ``as_of``
but opened after it). Such columns must be compared with ``c.as_of`` in the expression, and the
property tests check that nothing stamped at or after ``as_of`` changes a value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from roiml.db.enums import DataType, EntityType, FeatureCategory, FeatureType

__all__ = [
    "CONTEXT",
    "DERIVED",
    "ComputedGroup",
    "ContextJoin",
    "FeatureDefinition",
    "TimeRelation",
    "WindowGroup",
]

CONTEXT = "context"
DERIVED = "derived"


class TimeRelation(StrEnum):
    """How a feature's values move with the calendar when nothing about the entities changed.

    The daily gate and drift monitoring judge each kind its own way (docs/FEATURE_STORE.md,
    docs/MONITORING.md): a day's values are compared with what that day should look like, not
    with a pooled history.
    """

    # Moves only when the entity's own data moves: judged as it is.
    ORDINARY = "ORDINARY"
    # A function of the as-of date alone (weekday, month): one value per day for everyone, so a
    # day's traffic cannot be compared with a history of other days. Not judged.
    CALENDAR = "CALENDAR"
    # Grows with the clock at ``clock_per_day`` units a day (days since, years of tenure) until
    # an event resets it: judged on what the clock does not explain, values moved back to a
    # common instant.
    CLOCK = "CLOCK"
    # One value for many entities (everyone, every home of a market, every client of an agent)
    # that steps when a source publishes: a weekly rate, a month of market figures, an agent's
    # closed deal. A step all entities share is
    # the calendar, not a data fault; what is judged is the part of the move the entities do not
    # share, and the size of the shared step against the spread the model knew.
    SHARED = "SHARED"
    # A windowed count (or rate) of the tenant's own events that reach everyone at once: a
    # campaign send enters every homeowner's 30-day count the same day. Each entity has its own
    # value; the step everyone takes is the calendar, how differently they move is judged.
    TENANT_EVENTS = "TENANT_EVENTS"


@dataclass(frozen=True)
class WindowGroup:
    """Source rows aggregated per frame row: ``e.key = c.<frame_key>`` and ``e.ts < c.as_of``.

    ``relation`` is SQL over the source tables producing at least ``key`` and ``ts``.
    ``lookback_days`` bounds how far back rows are joined (None: all history).
    """

    name: str
    relation: str
    tables: tuple[str, ...]
    lookback_days: int | None
    frame_key: str = "entity_id"


@dataclass(frozen=True, eq=False)
class ComputedGroup:
    """Per frame row, columns from SQL the definition writes itself, for what a key equality
    cannot join (comparable sales: the homes near the entity's home, not the entity's rows).

    ``build(context, lo, hi)`` returns a SELECT over the context relation named ``context``
    (the context row's columns, ``row_id`` among them) and the source tables, producing
    ``row_id`` (at most one row per frame row) and the group's columns. ``lo`` and ``hi`` are SQL
    for the least and greatest ``as_of`` of the frame, to prune source rows; the SQL must be
    point in time on its own (only rows stamped before each row's ``as_of``). A feature in the
    group is scalar SQL over its output row ``e``; a frame row without an output row has
    ``e``'s columns null. ``needs`` are the context joins it reads; ``lookback_days`` how much
    history of each table it reads (None: all).
    """

    name: str
    build: Callable[[str, str, str], str]
    lookback_days: dict[str, int | None]
    needs: tuple[str, ...] = ()

    @property
    def tables(self) -> tuple[str, ...]:
        """The source tables the SQL reads."""
        return tuple(self.lookback_days)


@dataclass(frozen=True)
class ContextJoin:
    """A latest-row-before-``as_of`` join that adds columns to the context row ``c``.

    ``relation`` is SQL producing ``ts`` (and ``key`` unless ``key`` is None: one series for
    everyone, such as the economy); the join picks, per context row, the ``j`` row with
    ``j.key = <key>`` and the greatest ``j.ts`` strictly before ``<before>`` (an expression over
    ``c``, by default its ``as_of``). ``columns`` are the SELECT items it adds (named
    ``<join>_<column>``, over ``c`` and ``j``); ``needs`` the joins it builds on.
    """

    name: str
    relation: str
    columns: tuple[str, ...]
    tables: tuple[str, ...]
    key: str | None = "c.entity_id"
    before: str = "c.as_of"
    needs: tuple[str, ...] = ()
    lookback_days: int | None = None  # how much history of ``tables`` the join can reach
    # Among rows of one key stamped at the same ``ts``, the one that counts is the first in this
    # order: items ``<column of relation> ASC|DESC NULLS LAST``. An ASOF join alone picks any of
    # them, so a value could change with the order rows were loaded in; a relation whose
    # (key, ts) is unique, or whose columns read agree on ties, needs none.
    ties: tuple[str, ...] = ()

    @property
    def condition(self) -> str:
        """The ASOF join's condition: same key, stamped strictly before ``before``."""
        bound = f"{self.before} > j.ts"
        return bound if self.key is None else f"j.key = {self.key} AND {bound}"

    @property
    def ranked_relation(self) -> str:
        """``relation`` keeping, of rows with the same key and ``ts``, only the one ``ties``
        puts first: what an ASOF join may pick from without choosing arbitrarily."""
        if not self.ties:
            return self.relation
        partition = "ts" if self.key is None else "key, ts"
        return (
            f"SELECT * FROM ({self.relation}) r QUALIFY row_number() OVER "
            f"(PARTITION BY {partition} ORDER BY {', '.join(self.ties)}) = 1"
        )

    @property
    def latest_first(self) -> str:
        """ORDER BY items putting the row an ASOF join over ``ranked_relation`` picks first
        among ``j``'s matches."""
        return ", ".join(["j.ts DESC NULLS LAST", *(f"j.{item}" for item in self.ties)])


@dataclass(frozen=True)
class FeatureDefinition:
    """One feature: metadata for the catalog and validation, and its SQL expression."""

    name: str
    category: FeatureCategory
    sub_category: str
    description: str
    dtype: DataType
    scope: str  # CONTEXT, DERIVED or a window group's name
    expression: str
    window_days: int | None = None
    valid_min: float | None = None
    valid_max: float | None = None
    max_null_rate: float = 0.0
    # When set, the name of a feature: ``max_null_rate`` is judged among the rows where it is at
    # least ``null_rate_among_min`` (a radius count among homes with a location; a median among
    # homes with enough comparables), so a tenant whose data cannot feed the feature (no
    # coordinates, few sales) is not a data fault, while a value missing where it could be is.
    null_rate_among: str | None = None
    null_rate_among_min: float = 1.0
    fill: float | None = None  # value when a window group has no rows (counts: 0)
    needs: tuple[str, ...] = field(default=())  # context joins, or features for DERIVED
    entity_type: EntityType = EntityType.USER
    feature_type: FeatureType = FeatureType.BATCH
    version: int = 1
    deprecated: bool = False
    # How the values move with the calendar (see TimeRelation); a CLOCK grows by
    # ``clock_per_day`` of its unit each day (1 for days, 1 / 365.25 for years). A clock that
    # ``restarts`` at frequent events (days since the last session) has a population whose
    # values do not grow: monitoring compares it as it is and moves only the ages to a day.
    time_relation: TimeRelation = TimeRelation.ORDINARY
    clock_per_day: float = 0.0
    restarts: bool = False

    def __post_init__(self) -> None:
        clock = self.time_relation is TimeRelation.CLOCK
        if clock != (self.clock_per_day > 0):
            raise ValueError(
                f"feature {self.name}: a CLOCK feature needs clock_per_day > 0, and only a "
                f"CLOCK feature has one (got {self.time_relation}, {self.clock_per_day})"
            )
        if self.restarts and not clock:
            raise ValueError(f"feature {self.name}: only a CLOCK restarts")

    @property
    def feature_set(self) -> str:
        """The feature set (one per category) the feature is stored in."""
        return self.category.value.lower()
