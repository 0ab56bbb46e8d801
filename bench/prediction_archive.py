"""Prediction-log retention: moving old predictions from ``ml_predictions`` to Parquet.

    python -m bench archive [--url postgresql://postgres@127.0.0.1:5432/postgres] [--rows 100000]

Per run, a scratch database (a temporary SQLite file, or a database created beside ``--url``'s
and dropped after) gets ``--rows`` predictions over ten days, each with 92 features and their
explanation, written as the API's log writes them; then ``archive_predictions`` moves them all.
Logging and archiving each run in a child process, so the archive's peak RSS is its own.
Reported side by side: the archive's median seconds, its rows per second, and its time over the
time the same rows took to log. Results go to ``bench/results/prediction_archive.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench._child import run_measured

RESULTS = Path(__file__).with_name("results")
FEATURES = 92
DAYS = 10


def _rows(n: int) -> list[dict[str, Any]]:
    start = datetime(2024, 1, 1)
    step = timedelta(days=DAYS) / n
    return [
        {
            "prediction_id": f"p{i:09d}",
            "tenant_id": "bench",
            "model_name": "move_probability_model",
            "model_version": "3",
            "prediction_type": "MOVE_PROBABILITY",
            "entity_type": "USER",
            "entity_id": f"user_{i}",
            "features": {f"feature_{k}": (i * 7 + k) % 1000 / 7.0 for k in range(FEATURES)},
            "feature_source": "online",
            "predicted_value": (i % 1000) / 1000,
            "confidence": 0.8,
            "shap_values": {f"feature_{k}": ((i + k) % 200 - 100) / 1e4 for k in range(FEATURES)},
            "latency_ms": 1.2,
            "predicted_at": start + step * i,
        }
        for i in range(n)
    ]


def _log(url: str, rows: int) -> dict[str, float]:
    """Write ``rows`` predictions as the log's writer does (batched inserts in a tenant session)."""
    from sqlalchemy import insert

    from roiml.db.engine import make_engine, tenant_session
    from roiml.db.migrate import upgrade
    from roiml.db.ml_tables import MLPrediction

    engine = make_engine(url)
    upgrade(engine)
    records = _rows(rows)
    started = time.perf_counter()
    with tenant_session(engine, "bench") as session:
        for offset in range(0, rows, 5000):
            session.execute(insert(MLPrediction), records[offset : offset + 5000])
    engine.dispose()
    return {"log_seconds": time.perf_counter() - started}


def _archive(url: str, rows: int, data_dir: Path) -> dict[str, float]:
    """Move every prediction to ``data_dir``'s archive."""
    from roiml.db.engine import make_engine
    from roiml.monitoring.archive import archive_predictions

    engine = make_engine(url)
    started = time.perf_counter()
    result = archive_predictions(engine, "bench", data_dir=data_dir, now=datetime(2025, 6, 1))
    seconds = time.perf_counter() - started
    engine.dispose()
    if result.deleted != rows or result.archived != rows:
        raise SystemExit(f"moved {result.deleted} and wrote {result.archived} of {rows} rows")
    parquet = sum(p.stat().st_size for p in data_dir.rglob("*.parquet"))
    return {"archive_seconds": seconds, "parquet_bytes": parquet}


def _scratch_database(url: str | None, workdir: Path) -> tuple[str, Any]:
    """A database URL for one run and a function dropping it."""
    if url is None:
        path = workdir / f"{uuid.uuid4().hex}.db"
        return f"sqlite:///{path}", lambda: path.unlink(missing_ok=True)
    from sqlalchemy import make_url, text

    from roiml.db.engine import make_engine

    name = f"roiml_bench_{uuid.uuid4().hex[:10]}"
    admin = make_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(admin.url).set(database=name).render_as_string(hide_password=False), drop


def main(argv: list[str]) -> None:
    """Run the benchmark (``python -m bench archive``) and write its results."""
    parser = argparse.ArgumentParser(prog="python -m bench archive")
    parser.add_argument("--url", default=None, help="PostgreSQL server URL (default: SQLite)")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)  # step, url, rows, data dir
    args = parser.parse_args(argv)
    if args.child:
        step, url, rows, data_dir = args.child
        out = _log(url, int(rows)) if step == "log" else _archive(url, int(rows), Path(data_dir))
        json.dump(out, sys.stdout)
        return
    runs = []
    with tempfile.TemporaryDirectory() as workdir:
        for run in range(args.runs):
            url, drop = _scratch_database(args.url, Path(workdir))
            child = [sys.executable, "-m", "bench", "archive", "--child"]
            data_dir = str(Path(workdir) / f"data-{run}")
            try:
                logged = run_measured([*child, "log", url, str(args.rows), data_dir])
                moved = run_measured([*child, "archive", url, str(args.rows), data_dir])
            finally:
                drop()
            figures = json.loads(logged.stdout) | json.loads(moved.stdout)
            runs.append(figures | {"peak_rss_mib": moved.peak_rss_mib})
    seconds = statistics.median(r["archive_seconds"] for r in runs)
    logged = statistics.median(r["log_seconds"] for r in runs)
    result = {
        "backend": "postgresql" if args.url else "sqlite",
        "rows": args.rows,
        "features": FEATURES,
        "archive_seconds_median": round(seconds, 2),
        "rows_per_second": round(args.rows / seconds),
        "log_seconds_median": round(logged, 2),
        "archive_over_log": round(seconds / logged, 2),
        "parquet_mib": round(statistics.median(r["parquet_bytes"] for r in runs) / 2**20, 1),
        "peak_rss_mib_max": max(r["peak_rss_mib"] for r in runs),
        "runs": runs,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "prediction_archive.json").write_text(json.dumps(result, indent=2))
    print(
        f"archive {result['backend']}: {args.rows:,} predictions x {FEATURES} features, median of "
        f"{args.runs}: {seconds:.2f} s ({result['rows_per_second']:,} rows/s), "
        f"{result['archive_over_log']}x the time they took to log ({logged:.2f} s); "
        f"Parquet {result['parquet_mib']} MiB; peak RSS {result['peak_rss_mib_max']} MiB"
    )
