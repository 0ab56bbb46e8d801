"""Dashboard cost: one page's figures over a large prediction log, aggregated in SQL, beside the
same figures computed by fetching the rows and aggregating them in Python.

Seeds ``--rows`` predictions (4 models, spread evenly over 30 days, classes, latencies) for one
tenant with a single set-based INSERT per backend (SQLite in a temporary file, and PostgreSQL when
``--postgres URL`` or ``ROIML_TEST_POSTGRES_URL`` names a server: a scratch database is created
and dropped), then times, ``--repeat`` times each:

- ``load_dashboard`` (every query of the page, SQL GROUP BY) and ``render_page``;
- the alternative the dashboard avoids: SELECT the window's rows and count per day and model in
  Python.

Prints medians and their ratio and writes ``bench/results/dashboard.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select, text

from roiml.db.engine import make_engine, tenant_session
from roiml.db.migrate import upgrade
from roiml.db.ml_tables import MLPrediction
from roiml.monitoring.dashboard import load_dashboard, render_page

__all__ = ["main"]

RESULTS = Path(__file__).with_name("results")
TENANT = "bench"
NOW = datetime(2026, 11, 20, 12, 0)
DAYS = 30
# The dashboard's window: from midnight DAYS - 1 days before NOW (12:00) up to NOW.
SPAN_SECONDS = (DAYS - 1) * 86400 + 12 * 3600

_MODELS = (
    "('move_probability_model','transaction_type_model',"
    "'contact_timing_model','property_value_model')"
)
_SQLITE_SEED = f"""
WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < :rows - 1)
INSERT INTO ml_predictions (tenant_id, prediction_id, model_name, model_version, prediction_type,
  entity_type, entity_id, features, predicted_value, predicted_class, latency_ms, predicted_at)
SELECT :tenant, 'p' || i,
  CASE i % 4 WHEN 0 THEN 'move_probability_model' WHEN 1 THEN 'transaction_type_model'
             WHEN 2 THEN 'contact_timing_model' ELSE 'property_value_model' END,
  '1',
  CASE i % 4 WHEN 0 THEN 'MOVE_PROBABILITY' WHEN 1 THEN 'TRANSACTION_TYPE'
             WHEN 2 THEN 'CONTACT_TIMING' ELSE 'PROPERTY_VALUE' END,
  'USER', 'user_' || (i % 50000), '{{}}', (i % 97) / 97.0,
  CASE WHEN i % 4 = 3 THEN NULL ELSE 'C' || ((i / 4) % 5) END,
  3 + (i % 13) * 0.7,
  datetime(:now, '-' || (i * {SPAN_SECONDS} / :rows) || ' seconds')
FROM seq
"""
_POSTGRES_SEED = f"""
INSERT INTO ml_predictions (tenant_id, prediction_id, model_name, model_version, prediction_type,
  entity_type, entity_id, features, predicted_value, predicted_class, latency_ms, predicted_at)
SELECT :tenant, 'p' || i,
  (ARRAY{_MODELS.replace("(", "[").replace(")", "]")})[i % 4 + 1],
  '1',
  (ARRAY['MOVE_PROBABILITY','TRANSACTION_TYPE','CONTACT_TIMING','PROPERTY_VALUE'])[i % 4 + 1],
  'USER', 'user_' || (i % 50000), '{{}}'::jsonb, (i % 97) / 97.0,
  CASE WHEN i % 4 = 3 THEN NULL ELSE 'C' || ((i / 4) % 5) END,
  3 + (i % 13) * 0.7,
  CAST(:now AS timestamp) - make_interval(secs => (i::bigint * {SPAN_SECONDS} / :rows))
FROM generate_series(0, :rows - 1) AS i
"""


def _seed(engine: Engine, rows: int) -> float:
    started = time.perf_counter()
    statement = _POSTGRES_SEED if engine.dialect.name == "postgresql" else _SQLITE_SEED
    with engine.begin() as conn:
        conn.execute(text(statement), {"rows": rows, "tenant": TENANT, "now": NOW.isoformat(" ")})
        if engine.dialect.name == "postgresql":
            conn.execute(text("ANALYZE ml_predictions"))
    return time.perf_counter() - started


def _python_aggregate(engine: Engine) -> dict[tuple[str, str], int]:
    """What the dashboard does not do: every row of the window into Python, then count."""
    counts: dict[tuple[str, str], int] = defaultdict(int)
    since = NOW - timedelta(seconds=SPAN_SECONDS)
    with tenant_session(engine, TENANT) as session:
        result = session.execute(
            select(MLPrediction.predicted_at, MLPrediction.model_name, MLPrediction.latency_ms)
            .where(MLPrediction.tenant_id == TENANT, MLPrediction.predicted_at >= since)
            .execution_options(yield_per=50_000)
        )
        for predicted_at, model_name, _latency in result:
            counts[(predicted_at.date().isoformat(), model_name)] += 1
    return counts


def _median_seconds(function: Callable[[], Any], repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def _measure(name: str, engine: Engine, rows: int, repeat: int) -> dict[str, Any]:
    upgrade(engine)
    seed_seconds = _seed(engine, rows)
    data = load_dashboard(engine, TENANT, NOW, DAYS)
    served = sum(point.predictions for point in data.traffic)
    assert served == rows, f"{name}: the dashboard counted {served} of {rows} predictions"
    sql = _median_seconds(lambda: load_dashboard(engine, TENANT, NOW, DAYS), repeat)
    page = _median_seconds(lambda: render_page(data, base_path="/api/ml/dashboard"), repeat)
    python = _median_seconds(lambda: _python_aggregate(engine), max(1, repeat // 2))
    return {
        "backend": name,
        "rows": rows,
        "seed_seconds": round(seed_seconds, 2),
        "load_dashboard_ms": round(sql * 1000, 1),
        "render_page_ms": round(page * 1000, 2),
        "python_rows_ms": round(python * 1000, 1),
        "python_over_sql": round(python / sql, 1),
        "html_kib": round(len(render_page(data, base_path="/x")) / 1024, 1),
    }


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print/write its results."""
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--postgres", default=os.environ.get("ROIML_TEST_POSTGRES_URL"))
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        engine = make_engine(f"sqlite:///{scratch}/bench.db")
        try:
            results.append(_measure("sqlite", engine, args.rows, args.repeat))
        finally:
            engine.dispose()
    if args.postgres:
        name = f"roiml_bench_dashboard_{os.getpid()}"
        admin = make_engine(args.postgres, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        engine = make_engine(admin.url.set(database=name).render_as_string(hide_password=False))
        try:
            results.append(_measure("postgresql", engine, args.rows, args.repeat))
        finally:
            engine.dispose()
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    header = f"{'backend':<11}{'rows':>10}{'page SQL ms':>13}{'render ms':>11}"
    header += f"{'rows→Python ms':>16}{'ratio':>8}{'HTML KiB':>10}"
    print(header)
    for r in results:
        print(
            f"{r['backend']:<11}{r['rows']:>10,}{r['load_dashboard_ms']:>13}"
            f"{r['render_page_ms']:>11}{r['python_rows_ms']:>16}{r['python_over_sql']:>8}"
            f"{r['html_kib']:>10}"
        )
    RESULTS.mkdir(exist_ok=True)
    report = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "days": DAYS,
        "repeat": args.repeat,
        "results": results,
    }
    (RESULTS / "dashboard.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
