"""Baselines of the value model, from the tenant's own sales, known before each row's sale.

Three estimates a buyer, an appraiser or a repeat-sales index would make without a model:

* ``market_median``: the median price per square foot of the market's sales in the year before,
  times the home's size (the neighbourhood median at the market_id's grain);
* ``area_median``: the same over the home's location cell (0.01 degree of latitude and longitude,
  about 1.1 x 0.75 km at Seattle's latitude), where the home has a location;
* ``repeat_sale``: the home's previous sale price, indexed by the market's median price per
  square foot since then (180-day medians; the tenant's when the market has too few sales).
  Null for a home with no earlier sale: the share of test rows it covers is reported beside it.

Every estimate of a row uses sales closed strictly before ``min(as_of, the sale's day)``, so the
row's own sale (and any later one) never reaches it. All in DuckDB, one query per baseline.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa

from roiml.features.frame import AS_OF
from roiml.features.sources import SourceTables
from roiml.models.metrics import regression_metrics

__all__ = ["BASELINE_NAMES", "score_baselines", "value_baselines"]

BASELINE_NAMES = ("market_median", "area_median", "repeat_sale")
_CELL_DEGREES = 0.01
_NEIGHBOURHOOD_DAYS = 365
_INDEX_DAYS = 180
_MIN_SALES = 5  # a median of fewer sales is not a neighbourhood's
_MIN_INDEX_SALES = 10

_SALES = """
    SELECT s.property_id, s.closed_at, s.price, p.market_id,
           s.price / nullif(p.sqft, 0) AS ppsf, {cell} AS cell
    FROM (
        SELECT property_id, closed_at, max(price) AS price FROM transactions
        WHERE transaction_type IN ('BUY', 'SELL', 'INVESTMENT') AND price > 0
        GROUP BY property_id, closed_at
    ) s
    JOIN homes p ON p.property_id = s.property_id
"""


def _cell(alias: str, located: bool) -> str:
    if not located:
        return "CAST(NULL AS VARCHAR)"
    return (
        f"CASE WHEN {alias}.latitude IS NOT NULL AND {alias}.longitude IS NOT NULL THEN "
        f"CAST(floor({alias}.latitude / {_CELL_DEGREES}) AS VARCHAR) || ':' || "
        f"CAST(floor({alias}.longitude / {_CELL_DEGREES}) AS VARCHAR) END"
    )


def value_baselines(rows: pa.Table, sources: SourceTables) -> dict[str, np.ndarray]:
    """Per baseline, the estimated price of each row of ``rows`` (``property_id``, ``as_of``,
    ``sold_at``), NaN where it is undefined."""
    properties = sources.tables["properties"]
    located = {"latitude", "longitude"} <= set(properties.column_names)
    keep = ["property_id", "market_id", "sqft", *(["latitude", "longitude"] if located else [])]
    con = duckdb.connect()
    con.execute("SET threads = 2")
    con.register("properties", properties.select(keep))
    con.register("transactions", sources.tables["transactions"])
    con.register(
        "row_keys",
        pa.table(
            {
                "i": pa.array(np.arange(rows.num_rows), pa.int64()),
                "property_id": rows["property_id"],
                AS_OF: rows[AS_OF],
                "sold_at": rows["sold_at"],
            }
        ),
    )
    con.execute(
        "CREATE TEMP TABLE homes AS SELECT DISTINCT ON (property_id) * FROM properties "
        "ORDER BY property_id"
    )
    con.execute(f"CREATE TEMP TABLE sales AS {_SALES.format(cell=_cell('p', located))}")
    con.execute(
        f"""
        CREATE TEMP TABLE r AS
        SELECT k.i, k.property_id, least(k.{AS_OF}, date_trunc('day', k.sold_at)) AS cutoff,
               h.market_id, h.sqft, {_cell("h", located)} AS cell
        FROM row_keys k LEFT JOIN homes h ON h.property_id = k.property_id
        """
    )
    out = {
        "market_median": _neighbourhood(con, "market_id", rows.num_rows),
        "area_median": _neighbourhood(con, "cell", rows.num_rows),
        "repeat_sale": _repeat_sale(con, rows.num_rows),
    }
    con.close()
    return out


def _neighbourhood(con: duckdb.DuckDBPyConnection, key: str, n: int) -> np.ndarray:
    """Median price per square foot of the key's sales in the year before, times the size."""
    result = con.execute(
        f"""
        WITH keys AS (SELECT DISTINCT {key} AS k, cutoff FROM r WHERE {key} IS NOT NULL),
        medians AS (
            SELECT keys.k, keys.cutoff, median(s.ppsf) AS ppsf
            FROM keys JOIN sales s
              ON s.{key} = keys.k AND s.closed_at < keys.cutoff
             AND s.closed_at >= keys.cutoff - INTERVAL {_NEIGHBOURHOOD_DAYS} DAY
            WHERE s.ppsf IS NOT NULL
            GROUP BY keys.k, keys.cutoff
            HAVING count(*) >= {_MIN_SALES}
        )
        SELECT r.i, m.ppsf * r.sqft AS estimate
        FROM r JOIN medians m ON m.k = r.{key} AND m.cutoff = r.cutoff
        WHERE r.sqft > 0
        """
    ).fetchnumpy()
    return _scatter(result, n)


def _repeat_sale(con: duckdb.DuckDBPyConnection, n: int) -> np.ndarray:
    """The home's previous sale, times the market index's change since (the tenant's index
    where the market's 180 days hold too few sales)."""
    result = con.execute(
        f"""
        WITH previous AS (
            SELECT r.i, r.market_id, r.cutoff,
                   arg_max(s.price, s.closed_at) AS price,
                   date_trunc('day', max(s.closed_at)) AS day
            FROM r JOIN sales s ON s.property_id = r.property_id AND s.closed_at < r.cutoff
            GROUP BY r.i, r.market_id, r.cutoff
        ),
        points AS (
            SELECT DISTINCT market_id, cutoff AS day FROM previous
            UNION SELECT DISTINCT market_id, day FROM previous
        ),
        local_idx AS (
            SELECT pt.market_id, pt.day, median(s.ppsf) AS ppsf, count(*) AS n
            FROM points pt JOIN sales s
              ON s.market_id = pt.market_id AND s.closed_at < pt.day
             AND s.closed_at >= pt.day - INTERVAL {_INDEX_DAYS} DAY
            WHERE s.ppsf IS NOT NULL
            GROUP BY pt.market_id, pt.day
        ),
        tenant_idx AS (
            SELECT d.day, median(s.ppsf) AS ppsf
            FROM (SELECT DISTINCT day FROM points) d JOIN sales s
              ON s.closed_at < d.day AND s.closed_at >= d.day - INTERVAL {_INDEX_DAYS} DAY
            WHERE s.ppsf IS NOT NULL
            GROUP BY d.day
        )
        SELECT p.i,
               p.price * CASE
                   WHEN la.n >= {_MIN_INDEX_SALES} AND lb.n >= {_MIN_INDEX_SALES}
                   THEN la.ppsf / lb.ppsf
                   ELSE ta.ppsf / tb.ppsf END AS estimate
        FROM previous p
        JOIN tenant_idx ta ON ta.day = p.cutoff
        JOIN tenant_idx tb ON tb.day = p.day
        LEFT JOIN local_idx la ON la.market_id = p.market_id AND la.day = p.cutoff
        LEFT JOIN local_idx lb ON lb.market_id = p.market_id AND lb.day = p.day
        """
    ).fetchnumpy()
    return _scatter(result, n)


def _scatter(result: dict[str, np.ndarray], n: int) -> np.ndarray:
    out = np.full(n, np.nan)
    # DuckDB hands NULLs back as a masked array: they are no estimate.
    estimate: np.ndarray = np.ma.filled(np.ma.asarray(result["estimate"], dtype=float), np.nan)
    out[np.asarray(result["i"], dtype=np.int64)] = estimate
    out[~np.isfinite(out) | (out <= 0)] = np.nan
    return out


def score_baselines(
    estimates: dict[str, np.ndarray],
    actual: np.ndarray,
    model: np.ndarray,
    calibrate: np.ndarray,
    test: np.ndarray,
    interval: tuple[float, float],
) -> dict[str, dict[str, float]]:
    """Each baseline's test metrics on the test rows it covers, with an interval from the
    quantiles of its log error on the ``calibrate`` rows (so it is scored like the model's),
    ``test_rows_covered`` (the share of test rows it estimates) and the model's RMSLE and MAPE
    on the same rows (``model_rmsle_same_rows``, ``model_mape_same_rows``)."""
    out: dict[str, dict[str, float]] = {}
    for name, estimate in estimates.items():
        covered = test[np.isfinite(estimate[test])]
        known = calibrate[np.isfinite(estimate[calibrate])]
        if len(covered) == 0:
            out[name] = {"test_rows_covered": 0.0}
            continue
        low = high = None
        if len(known) >= 20:
            errors = np.log(actual[known] / estimate[known])
            q_low, q_high = np.quantile(errors, interval)
            low, high = estimate[covered] * np.exp(q_low), estimate[covered] * np.exp(q_high)
        metrics = regression_metrics(actual[covered], estimate[covered], low, high)
        same = regression_metrics(actual[covered], model[covered])
        metrics["test_rows_covered"] = len(covered) / len(test)
        metrics["model_rmsle_same_rows"] = same["rmsle"]
        metrics["model_mape_same_rows"] = same["mape"]
        out[name] = metrics
    return out
