"""Comparable-sales features at scale: median wall time and peak memory of computing them.

``python -m bench comparables [--homes 1000000] [--sales 3000000] [--runs 3]``

The data set: ``--homes`` homes, one homeowner each, over five metro areas (homes scattered
around each centre, normal with a 20 km standard deviation: ~80 homes per km2 at the centre),
and ``--sales`` priced sales of random homes spread evenly over five years (2020-2024), with a
price per square foot that falls with the distance from the centre. Two measurements:

* ``one date``: every homeowner as of 2025-01-01 (the last 12 months' sales are comparables);
* ``grid``: every homeowner as of four quarterly snapshots of 2024, computed in the training
  set's slices of 400,000 rows (``roiml.models.dataset``), as training computes them.

Each run is a fresh child process that reads the Parquet tables into Arrow, then times the
feature engine's call for the comparable-sales features (those of sub-category
``comparables``); its peak RSS comes from ``wait4``, and the resident set before the call is
reported beside it. Results go to ``bench/results/comparables.json`` and a line on stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench._child import run_measured

__all__ = ["generate", "main"]

RESULTS = Path(__file__).with_name("results")
_METROS = (  # centres of five metro areas: Seattle, Denver, Atlanta, Boston, Phoenix
    (47.61, -122.33),
    (39.74, -104.99),
    (33.75, -84.39),
    (42.36, -71.06),
    (33.45, -112.07),
)
_SPREAD_KM = 20.0
_KM_PER_DEGREE = 6371.0088 * math.pi / 180
_FIRST_SALE = np.datetime64("2020-01-01T00:00:00", "us")
_YEARS = 5
ONE_DATE = datetime(2025, 1, 1)
GRID = [datetime(2024, 1, 1), datetime(2024, 4, 1), datetime(2024, 7, 1), datetime(2024, 10, 1)]
# roiml.models.dataset computes the training grid in slices of this many rows.
SLICE_ROWS = 400_000


def _contract_table(table: str, columns: dict[str, pa.Array | np.ndarray]) -> pa.Table:
    """``columns`` as a table of the engine's schema of ``table``, other columns null."""
    from roiml.ingest.contract import table_contract

    schema = pa.schema([f for f in table_contract(table).arrow_schema() if f.name != "tenant_id"])
    rows = len(next(iter(columns.values())))
    arrays = [
        pa.array(columns[f.name], f.type) if f.name in columns else pa.nulls(rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def generate(folder: Path, homes: int, sales: int, seed: int, metros: int = len(_METROS)) -> None:
    """Write ``users``, ``properties`` and ``transactions`` Parquet files under ``folder``."""
    rng = np.random.default_rng(seed)
    metro = rng.integers(0, metros, homes)
    centre = np.array(_METROS)[metro]
    north, east = rng.normal(0, _SPREAD_KM, (2, homes))
    lat = centre[:, 0] + north / _KM_PER_DEGREE
    lon = centre[:, 1] + east / (_KM_PER_DEGREE * np.cos(np.radians(lat)))
    ids = np.char.add("h", np.arange(homes).astype(str))
    owners = np.char.add("u", np.arange(homes).astype(str))
    markets = np.char.add("metro_", metro.astype(str))
    sqft = np.clip(rng.lognormal(math.log(1800), 0.35, homes), 400, 12000).round()
    bought = np.datetime64("2012-01-01T00:00:00", "us") + rng.integers(
        0, 8 * 365 * 86_400, homes
    ).astype("timedelta64[s]")
    pq.write_table(
        _contract_table(
            "users",
            {
                "user_id": owners,
                "market_id": markets,
                "created_at": np.full(homes, np.datetime64("2011-01-01T00:00:00", "us")),
                "email_opt_in": np.ones(homes, bool),
                "is_active": np.ones(homes, bool),
            },
        ),
        folder / "users.parquet",
    )
    pq.write_table(
        _contract_table(
            "properties",
            {
                "property_id": ids,
                "owner_user_id": owners,
                "market_id": markets,
                "is_primary_residence": np.ones(homes, bool),
                "property_type": np.full(homes, "SINGLE_FAMILY"),
                "sqft": sqft.astype(np.int32),
                "purchased_at": bought,
                "purchase_price": sqft * 250.0,
                "latitude": lat.round(5),
                "longitude": lon.round(5),
            },
        ),
        folder / "properties.parquet",
    )
    sold = rng.integers(0, homes, sales)
    closed = _FIRST_SALE + rng.integers(0, _YEARS * 365 * 86_400, sales).astype("timedelta64[s]")
    distance = np.hypot(north, east)[sold]
    ppsf = 450.0 * np.exp(-distance / 40.0) * rng.lognormal(0, 0.2, sales)
    pq.write_table(
        _contract_table(
            "transactions",
            {
                "user_id": owners[sold],
                "property_id": ids[sold],
                "transaction_type": np.full(sales, "SELL"),
                "opened_at": closed.astype("datetime64[us]") - np.timedelta64(30 * 86_400, "s"),
                "closed_at": closed.astype("datetime64[us]"),
                "price": (ppsf * sqft[sold]).round(-2),
            },
        ),
        folder / "transactions.parquet",
    )


def _child(folder: Path, case: str) -> None:
    from roiml.features.catalog import CATALOG
    from roiml.features.engine import FeatureEngine, entity_frame
    from roiml.features.sources import SourceTables

    names = [n for n, f in CATALOG.features.items() if f.sub_category == "comparables"]
    tables = {
        t: pq.read_table(folder / f"{t}.parquet") for t in ("users", "properties", "transactions")
    }
    sources = SourceTables(tables=tables)
    users = tables["users"]["user_id"]
    dates = [ONE_DATE] if case == "one-date" else GRID
    frame = pa.concat_tables([entity_frame(users.to_pylist(), d) for d in dates])
    engine = FeatureEngine(threads=2)
    loaded = _current_rss_mib()
    cpu = time.process_time()
    started = time.perf_counter()
    parts = [
        engine.compute(frame.slice(offset, SLICE_ROWS), names, sources)
        for offset in range(0, frame.num_rows, SLICE_ROWS)
    ]
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu
    result = pa.concat_tables(parts)
    median = result["comps_radius_median_ppsf"]
    counts = result["comps_radius_count"].to_numpy(zero_copy_only=False)
    report = {
        "seconds": seconds,
        # CPU time of every thread: the machine is shared, and wall time counts the others too.
        "cpu_seconds": cpu_seconds,
        "load_average": os.getloadavg()[0],
        "rows": result.num_rows,
        "loaded_mib": loaded,
        "radius_median_non_null": 1 - median.null_count / result.num_rows,
        "radius_count_mean": float(np.nanmean(counts)),
    }
    print(json.dumps(report))


def _current_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _measure(folder: Path, case: str) -> dict[str, float]:
    measured = run_measured(
        [sys.executable, "-m", "bench.comparables", "--child", str(folder), case]
    )
    report: dict[str, float] = json.loads(measured.stdout)
    report["peak_mib"] = measured.peak_rss_mib
    return report


def main(argv: list[str]) -> None:
    """Run the benchmark and write its results."""
    parser = argparse.ArgumentParser(prog="python -m bench comparables")
    parser.add_argument("--homes", type=int, default=1_000_000)
    parser.add_argument("--sales", type=int, default=3_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--cases", default="one-date,grid")
    # Fewer metros at the same homes per metro keep the density (and the work per home): a
    # fraction of the homes over one metro measures a fraction of the full set's work.
    parser.add_argument("--metros", type=int, default=len(_METROS), choices=range(1, 6))
    args = parser.parse_args(argv)
    results: dict[str, object] = {
        "homes": args.homes,
        "sales": args.sales,
        "metros": args.metros,
        "runs": args.runs,
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        generate(folder, args.homes, args.sales, args.seed, args.metros)
        results["generate_seconds"] = round(time.perf_counter() - started, 1)
        for case in args.cases.split(","):
            runs = [_measure(folder, case) for _ in range(args.runs)]
            summary = {
                key: round(statistics.median(run[key] for run in runs), 3) for key in runs[0]
            }
            summary["seconds_all"] = [round(run["seconds"], 2) for run in runs]
            results[case] = summary
            print(
                f"comparables {case}: {summary['rows']:.0f} rows in {summary['seconds']:.1f} s "
                f"(median of {args.runs}: {summary['seconds_all']}; CPU "
                f"{summary.get('cpu_seconds', float('nan')):.1f} s, load average "
                f"{summary.get('load_average', float('nan')):.1f}), peak RSS "
                f"{summary['peak_mib']:.0f} MiB (loaded {summary['loaded_mib']:.0f} MiB), "
                f"radius median present on {summary['radius_median_non_null']:.0%} of rows, "
                f"{summary['radius_count_mean']:.0f} sales within the radius on average"
            )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "comparables.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        _child(Path(sys.argv[2]), sys.argv[3])
    else:
        main(sys.argv[1:])
