"""PROPERTY / comparables: what homes near the entity's home, and in its market, sold for
(and, as sub-category ``location``, where the home is).

A *sale* is a priced BUY, SELL or INVESTMENT transaction of a home with a living area, one per
(home, closing instant) however many parties of it the tenant recorded, valued as price per
square foot of that home. For a home at ``as_of`` t the comparables are the sales closed in the
:data:`COMPARABLE_MONTHS` months before t (``closed_at < t``), never a sale of the home itself:

* *radius*: sales of homes within :data:`RADIUS_KM` km (haversine) of the home's
  latitude/longitude; nothing when the home has no coordinates;
* *market*: sales of homes of the home's market (``market_id``).

Each gives a count, the median and the interquartile range (IQR: the 75th minus the 25th
percentile, linearly interpolated as DuckDB's ``quantile_cont``) of price per square foot, the
radius's of its :data:`NEAREST` nearest sales (ties by price: which of two sales at the same
distance and price is taken changes nothing); the median and IQR
are null below :data:`MIN_COMPARABLES` sales.

Vectorised in one DuckDB query. Radius: the earth is cut in cells half a radius high and (at
the most poleward latitude a neighbour can have) half a radius wide; each home looks in its own
cell only, and each sale is copied into the 5 x 5 cells around it, so the join is an equality on
the cell; a latitude/longitude box, then the haversine distance and the time window filter the
candidates. Market: the sales of each (market, as-of) are ranked once; a home's quantiles are
read at the ranks that remain once its own sales are taken out (a removed sale of rank r_i, the
i-th removed, shifts every later reduced rank from ``r_i - i`` on by one), so no home joins its
whole market.
Homes near the antimeridian do not see sales across it.
"""

from __future__ import annotations

import math

from roiml.db.enums import DataType, FeatureCategory
from roiml.features.definition import (
    CONTEXT,
    DERIVED,
    ComputedGroup,
    FeatureDefinition,
    TimeRelation,
)

__all__ = [
    "COMPARABLES",
    "COMPARABLES_GROUP",
    "COMPARABLE_BOX_DEGREES",
    "COMPARABLE_LOOKBACK_DAYS",
    "COMPARABLE_MONTHS",
    "EARTH_RADIUS_KM",
    "MIN_COMPARABLES",
    "NEAREST",
    "RADIUS_KM",
    "SALE_TYPES",
]

COMPARABLE_MONTHS = 12
RADIUS_KM = 1.5
# The radius's median and IQR are of the nearest this many sales in it: in a dense city a radius
# holds hundreds, and the nearest say the most (and bound what each home holds in memory).
NEAREST = 25
MIN_COMPARABLES = 5
EARTH_RADIUS_KM = 6371.0088
SALE_TYPES = ("BUY", "SELL", "INVESTMENT")
_KM_PER_DEGREE = EARTH_RADIUS_KM * math.pi / 180
# Cells are a radius over this many high: a home looks this many rows and columns either way
# (5 x 5 cells of half a radius hold 6.25 r^2 of candidates where 3 x 3 of a radius hold 9 r^2).
_CELLS_PER_RADIUS = 2
_RADIUS_DEGREES = RADIUS_KM / _KM_PER_DEGREE
_CELL_DEGREES = _RADIUS_DEGREES / _CELLS_PER_RADIUS
# Degrees of latitude (a margin over the radius) a few-entity load reads around each home.
COMPARABLE_BOX_DEGREES = 1.05 * _RADIUS_DEGREES
# Margin on widths for the haversine's curvature (under 0.1 % at a radius of kilometres).
_WIDTH_MARGIN = 1.01
_QUANTILES = ((1, 0.25), (2, 0.5), (3, 0.75))
# Each sale is copied into the cells up to _CELLS_PER_RADIUS rows and columns around its own.
_STEPS = ", ".join(f"({d})" for d in range(-_CELLS_PER_RADIUS, _CELLS_PER_RADIUS + 1))
# Months of history the group reads: the window, plus a month for the calendar's longest month.
COMPARABLE_LOOKBACK_DAYS = 31 * (COMPARABLE_MONTHS + 1)
_WINDOW = f"INTERVAL {COMPARABLE_MONTHS} MONTH"


def _cell_row(latitude: str) -> str:
    return f"CAST(floor({latitude} / {_CELL_DEGREES!r}) AS BIGINT)"


def _cell_col(longitude: str, row: str) -> str:
    """The cell column of ``longitude`` in cell row ``row``: cells are as wide as their height
    at the most poleward latitude a sale within the radius of a home of that row can have, so
    such a sale is at most ``_CELLS_PER_RADIUS`` columns away."""
    k, height = _CELLS_PER_RADIUS, _CELL_DEGREES
    edge = f"greatest(abs(({row} - {k}) * {height!r}), abs(({row} + {k + 1}) * {height!r}))"
    width = (
        f"least(360.0, {RADIUS_KM / k * _WIDTH_MARGIN!r} / "
        f"({_KM_PER_DEGREE!r} * cos(radians(least({edge}, 89.0)))))"
    )
    return f"CAST(floor({longitude} / {width}) AS BIGINT)"


def _within_box(a: str, b: str) -> str:
    """A cheap bound before the haversine: ``b`` within the radius's latitude span of ``a``,
    and within its longitude span at the most poleward latitude the two can have."""
    poleward = f"least(abs({a}.lat) + {_RADIUS_DEGREES!r}, 89.0)"
    half_width = f"{RADIUS_KM * _WIDTH_MARGIN!r} / ({_KM_PER_DEGREE!r} * cos(radians({poleward})))"
    return (
        f"abs({b}.lat - {a}.lat) <= {_RADIUS_DEGREES * _WIDTH_MARGIN!r} "
        f"AND abs({b}.lon - {a}.lon) <= {half_width}"
    )


def _haversine_km(a: str, b: str) -> str:
    """Great-circle distance in km between the ``lat``/``lon`` of relations ``a`` and ``b``."""
    return (
        f"2 * {EARTH_RADIUS_KM!r} * asin(sqrt("
        f"pow(sin(radians({b}.lat - {a}.lat) / 2), 2) + cos(radians({a}.lat)) * "
        f"cos(radians({b}.lat)) * pow(sin(radians({b}.lon - {a}.lon) / 2), 2)))"
    )


def _list_quantile(values: str, q: float) -> str:
    """Quantile ``q`` of the sorted list ``values``, interpolated as ``quantile_cont``."""
    h = f"((len({values}) - 1) * {q!r})"
    lo = f"CAST(floor({h}) AS BIGINT) + 1"
    hi = f"least(CAST(floor({h}) AS BIGINT) + 2, len({values}))"
    return f"({values}[{lo}] + ({h} - floor({h})) * ({values}[{hi}] - {values}[{lo}]))"


def comparables_sql(context: str, lo: str, hi: str) -> str:
    """Per home of ``context`` (``row_id``, ``as_of``, the ``home_*`` columns): ``located``,
    ``radius_n`` and ``radius_q1`` to ``radius_q3`` (quartiles of the :data:`NEAREST` nearest),
    ``market_n``, ``market_q1`` to ``market_q3``. ``lo``/``hi`` bound the frame's as-ofs: sales
    outside cannot count."""
    types = ", ".join(f"'{t}'" for t in SALE_TYPES)
    quantiles = ", ".join(f"({i}, {q!r})" for i, q in _QUANTILES)
    pick = ", ".join(
        f"max(a + (h - floor(h)) * (b - a)) FILTER (WHERE i = {i}) AS market_q{i}"
        for i, _ in _QUANTILES
    )
    return f"""
WITH sales AS MATERIALIZED (
    SELECT t.property_id, t.closed_at AS ts, p.market_id, p.latitude AS lat,
           p.longitude AS lon, max(t.price) / p.sqft AS ppsf
    FROM transactions t JOIN properties p ON p.property_id = t.property_id
    WHERE t.transaction_type IN ({types}) AND t.price > 0 AND p.sqft > 0
      AND t.closed_at < {hi} AND t.closed_at >= {lo} - {_WINDOW}
    GROUP BY t.property_id, t.closed_at, p.market_id, p.latitude, p.longitude, p.sqft
),
homes AS MATERIALIZED (
    SELECT row_id, as_of, home_property_id AS pid, home_market_id AS market_id,
           home_latitude AS lat, home_longitude AS lon
    FROM {context} WHERE home_property_id IS NOT NULL
),
located AS (
    SELECT *, {_cell_col("lon", "cell_row")} AS cell_col
    FROM (SELECT *, {_cell_row("lat")} AS cell_row FROM homes
          WHERE lat IS NOT NULL AND lon IS NOT NULL)
),
near AS (
    SELECT s.property_id, s.ts, s.lat, s.lon, s.ppsf, s.cell_row,
           {_cell_col("s.lon", "s.cell_row")} + dc.d AS cell_col
    FROM (SELECT sales.*, {_cell_row("lat")} + dr.d AS cell_row
          FROM sales, (VALUES {_STEPS}) dr(d)
          WHERE lat IS NOT NULL AND lon IS NOT NULL) s,
         (VALUES {_STEPS}) dc(d)
),
pairs AS (
    SELECT h.row_id, s.ppsf, {_haversine_km("h", "s")} AS km
    FROM located h JOIN near s
      ON s.cell_row = h.cell_row AND s.cell_col = h.cell_col
     AND s.ts < h.as_of AND s.ts >= h.as_of - {_WINDOW} AND s.property_id <> h.pid
     AND {_within_box("h", "s")}
),
radius AS (
    SELECT row_id, count(*) AS n,
           list_sort(min_by(ppsf, (km, ppsf), {NEAREST})) AS nearest
    FROM pairs WHERE km <= {RADIUS_KM!r}
    GROUP BY row_id
),
pool AS MATERIALIZED (
    SELECT k.market_id, k.as_of, s.property_id, s.ppsf,
           row_number() OVER (PARTITION BY k.market_id, k.as_of
                              ORDER BY s.ppsf, s.property_id, s.ts) - 1 AS r
    FROM (SELECT DISTINCT market_id, as_of FROM homes WHERE market_id IS NOT NULL) k
    JOIN sales s ON s.market_id = k.market_id AND s.ts < k.as_of
     AND s.ts >= k.as_of - {_WINDOW}
),
own AS MATERIALIZED (
    SELECT h.row_id, p.r - (row_number() OVER (PARTITION BY h.row_id ORDER BY p.r) - 1) AS gap
    FROM homes h JOIN pool p
      ON p.market_id = h.market_id AND p.as_of = h.as_of AND p.property_id = h.pid
),
kept AS (
    SELECT h.row_id, h.market_id, h.as_of, z.n - coalesce(o.k, 0) AS m
    FROM homes h
    JOIN (SELECT market_id, as_of, count(*) AS n FROM pool GROUP BY market_id, as_of) z
      ON z.market_id = h.market_id AND z.as_of = h.as_of
    LEFT JOIN (SELECT row_id, count(*) AS k FROM own GROUP BY row_id) o ON o.row_id = h.row_id
),
wanted AS (
    SELECT k.row_id, k.market_id, k.as_of, q.i, (k.m - 1) * q.q AS h, d.d,
           least(CAST(floor((k.m - 1) * q.q) AS BIGINT) + d.d, k.m - 1) AS p
    FROM kept k, (VALUES {quantiles}) q(i, q), (VALUES (0), (1)) d(d)
    WHERE k.m > 0
),
shift AS (
    SELECT w.row_id, w.i, w.d, count(*) AS s
    FROM wanted w JOIN own o ON o.row_id = w.row_id AND o.gap <= w.p
    GROUP BY w.row_id, w.i, w.d
),
quartiles AS (
    SELECT w.row_id, w.i, any_value(w.h) AS h,
           max(p.ppsf) FILTER (WHERE w.d = 0) AS a, max(p.ppsf) FILTER (WHERE w.d = 1) AS b
    FROM wanted w LEFT JOIN shift USING (row_id, i, d)
    JOIN pool p ON p.market_id = w.market_id AND p.as_of = w.as_of
     AND p.r = w.p + coalesce(shift.s, 0)
    GROUP BY w.row_id, w.i
),
market AS (SELECT row_id, {pick} FROM quartiles GROUP BY row_id)
SELECT h.row_id, h.lat IS NOT NULL AND h.lon IS NOT NULL AS located,
       r.n AS radius_n, {_list_quantile("r.nearest", 0.25)} AS radius_q1,
       {_list_quantile("r.nearest", 0.5)} AS radius_q2,
       {_list_quantile("r.nearest", 0.75)} AS radius_q3,
       CASE WHEN h.market_id IS NOT NULL THEN coalesce(k.m, 0) END AS market_n,
       m.market_q1, m.market_q2, m.market_q3
FROM homes h
LEFT JOIN radius r ON r.row_id = h.row_id
LEFT JOIN kept k ON k.row_id = h.row_id
LEFT JOIN market m ON m.row_id = h.row_id
"""


COMPARABLES_GROUP = ComputedGroup(
    name="comparables",
    build=comparables_sql,
    lookback_days={"transactions": COMPARABLE_LOOKBACK_DAYS, "properties": None},
    needs=("home",),
)

_P = FeatureCategory.PROPERTY
_SUB = "comparables"
_LOCATED = "property_has_location"
_ENOUGH_NEAR = f"e.located AND e.radius_n >= {MIN_COMPARABLES}"
_ENOUGH_MARKET = f"e.market_n >= {MIN_COMPARABLES}"
_WINDOW_TEXT = f"in the {COMPARABLE_MONTHS} months before the date, the home's own sales excluded"
_NEAR_TEXT = f"of homes within {RADIUS_KM:g} km sold {_WINDOW_TEXT}"
_MARKET_TEXT = f"of homes of the home's market sold {_WINDOW_TEXT}"
_FEW = f"null below {MIN_COMPARABLES} sales"


def _comparable(
    name: str,
    description: str,
    expression: str,
    dtype: DataType = DataType.FLOAT,
    hi: float = 1e5,
    nulls: float = 0.3,
    among: tuple[str, float] | None = None,
    relation: TimeRelation = TimeRelation.ORDINARY,
) -> FeatureDefinition:
    return FeatureDefinition(
        name,
        _P,
        _SUB,
        description,
        dtype,
        "comparables",
        expression,
        window_days=31 * COMPARABLE_MONTHS,
        valid_min=0,
        valid_max=hi,
        max_null_rate=nulls,
        null_rate_among=among[0] if among else None,
        null_rate_among_min=among[1] if among else 1.0,
        needs=("home",),
        time_relation=relation,
    )


def _coordinate(axis: str, positive: str, bound: float) -> FeatureDefinition:
    """``property_<axis>``: the home's coordinate in degrees; null without a location."""
    return FeatureDefinition(
        name=f"property_{axis}",
        category=_P,
        sub_category="location",
        description=f"The home's {axis} in degrees (WGS84, positive {positive}); null when the "
        "home has no location.",
        dtype=DataType.FLOAT,
        scope=CONTEXT,
        expression=f"c.home_{axis}",
        valid_min=-bound,
        valid_max=bound,
        max_null_rate=0.0,
        null_rate_among=_LOCATED,
        null_rate_among_min=1.0,
        needs=("home",),
    )


def _estimate(
    scope: str,
    whose: str,
    relation: TimeRelation = TimeRelation.ORDINARY,
) -> FeatureDefinition:
    """``comps_<scope>_value_estimate``: the home's size times the median price per sqft;
    null where the home's size is unknown, as ``property_sqft`` may be."""
    median = f"comps_{scope}_median_ppsf"
    return FeatureDefinition(
        name=f"comps_{scope}_value_estimate",
        category=_P,
        sub_category=_SUB,
        description=f"The home's living area times the median price per square foot of {whose} "
        f"({median}).",
        dtype=DataType.FLOAT,
        scope=DERIVED,
        expression=f"{median} * property_sqft",
        valid_min=0,
        valid_max=1e10,
        max_null_rate=0.3,
        null_rate_among=f"comps_{scope}_count",
        null_rate_among_min=MIN_COMPARABLES,
        needs=(median, "property_sqft"),
        time_relation=relation,
    )


# The null rates are judged where a value can exist: a radius count among homes with a
# location, a median or IQR among homes with enough comparables (there it is never null). A
# sparse area or a tenant without coordinates is then no data fault; a value missing where it
# could be computed is.
_LOCATED_ROWS = (_LOCATED, 1.0)
_ENOUGH_NEAR_ROWS = ("comps_radius_count", float(MIN_COMPARABLES))
_ENOUGH_MARKET_ROWS = ("comps_market_count", float(MIN_COMPARABLES))
# Both kinds step for many homes at once as a sale enters or leaves the window: the market's
# for every home of the market, the radius figures for every home near the sale (its
# neighbours share their nearest sales). Judged as ORDINARY, one sale in a sparse area moved a
# day's distribution enough for a two-sample test to call it drift (the 35-day replay of
# tests/test_replay.py, 1,200 homeowners); a shared step is judged on its size against the
# spread the model knew.
_SHARED = TimeRelation.SHARED

COMPARABLES: tuple[FeatureDefinition, ...] = (
    FeatureDefinition(
        _LOCATED,
        _P,
        _SUB,
        "1 if the home has a latitude and longitude (comparable sales within a radius need "
        "them), 0 if not.",
        DataType.BOOLEAN,
        CONTEXT,
        "CASE WHEN c.home_property_id IS NULL THEN NULL "
        "WHEN c.home_latitude IS NOT NULL AND c.home_longitude IS NOT NULL THEN 1 ELSE 0 END",
        valid_min=0,
        valid_max=1,
        max_null_rate=0.3,
        needs=("home",),
    ),
    # The coordinates themselves: a valuation learns from where a home is what the comparables
    # summarise only in part (a block's view, a school boundary). On King County's sales the
    # plain LightGBM given raw latitude/longitude beat roiml's comparables-only value model.
    _coordinate("latitude", "north", 90),
    _coordinate("longitude", "east", 180),
    _comparable(
        "comps_radius_count",
        f"Sales {_NEAR_TEXT}; null when the home has no location.",
        "CASE WHEN e.located THEN coalesce(e.radius_n, 0) END",
        DataType.INTEGER,
        hi=1e7,
        nulls=0.0,
        among=_LOCATED_ROWS,
        relation=_SHARED,
    ),
    _comparable(
        "comps_radius_median_ppsf",
        f"Median price per square foot of the {NEAREST} nearest sales {_NEAR_TEXT}; {_FEW}.",
        f"CASE WHEN {_ENOUGH_NEAR} THEN e.radius_q2 END",
        nulls=0.0,
        among=_ENOUGH_NEAR_ROWS,
        relation=_SHARED,
    ),
    _comparable(
        "comps_radius_iqr_ppsf",
        f"Interquartile range (75th minus 25th percentile) of price per square foot of the "
        f"{NEAREST} nearest sales {_NEAR_TEXT}; {_FEW}.",
        f"CASE WHEN {_ENOUGH_NEAR} THEN e.radius_q3 - e.radius_q1 END",
        nulls=0.0,
        among=_ENOUGH_NEAR_ROWS,
        relation=_SHARED,
    ),
    _comparable(
        "comps_market_count",
        f"Sales {_MARKET_TEXT}.",
        "e.market_n",
        DataType.INTEGER,
        hi=1e8,
        relation=_SHARED,
    ),
    _comparable(
        "comps_market_median_ppsf",
        f"Median price per square foot of the sales {_MARKET_TEXT}; {_FEW}.",
        f"CASE WHEN {_ENOUGH_MARKET} THEN e.market_q2 END",
        nulls=0.0,
        among=_ENOUGH_MARKET_ROWS,
        relation=_SHARED,
    ),
    _comparable(
        "comps_market_iqr_ppsf",
        f"Interquartile range (75th minus 25th percentile) of price per square foot of the "
        f"sales {_MARKET_TEXT}; {_FEW}.",
        f"CASE WHEN {_ENOUGH_MARKET} THEN e.market_q3 - e.market_q1 END",
        nulls=0.0,
        among=_ENOUGH_MARKET_ROWS,
        relation=_SHARED,
    ),
    _estimate("radius", "the sales nearby", _SHARED),
    _estimate("market", "the market's sales", _SHARED),
)
