"""How fast the prediction log's writer drains a backlog, on SQLite and PostgreSQL.

    python -m bench log-drain [--url postgresql://postgres@127.0.0.1:5432/postgres]
                              [--records 50000] [--runs 3]

After a database outage the journals hold what was answered meanwhile (up to
``ROIML_PREDICTION_LOG_BUFFER_MAX_MB``), and ``/health`` says ``refusing`` while they are at their
bound; how soon it says ``ok`` again is the bound over the writer's drain rate, less the rate new
predictions arrive. Per run and backend, a scratch database gets ``--records`` predictions
(92 features and their explanation, ~5 kB each) journaled with the writer held back, as during
an outage; then the writer is woken and timed until every record is in ``ml_predictions``.
Reported side by side: median seconds, records and journal MB per second, and the time a full
default spool (512 MB) would take. Results go to ``bench/results/prediction_log_drain.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.prediction_archive import _rows, _scratch_database

RESULTS = Path(__file__).with_name("results")


def _drain(url: str, records: int, workdir: Path) -> dict[str, float]:
    from sqlalchemy import func, select

    from roiml.db.engine import make_engine, tenant_session
    from roiml.db.migrate import upgrade
    from roiml.db.ml_tables import MLPrediction
    from roiml.serving.prediction_log import PredictionLog
    from roiml.settings import Settings

    engine = make_engine(url)
    upgrade(engine)
    # A flush interval longer than the run: nothing is written until the drain is timed.
    settings = Settings(
        _env_file=None,
        data_dir=workdir,
        database_url=url,
        prediction_log_flush_seconds=60,
        prediction_log_batch_size=records + 1,
    )
    rows = _rows(records)
    log = PredictionLog(settings, engine)
    try:
        for offset in range(0, records, 1000):
            log.submit(rows[offset : offset + 1000], wake=False)
        spooled = sum(p.stat().st_size for p in settings.prediction_buffer_dir.glob("*"))
        started = time.perf_counter()
        if not log.flush(timeout=600):
            raise SystemExit("the log did not drain in 600 s")
        seconds = time.perf_counter() - started
    finally:
        log.close()
    with tenant_session(engine, "bench") as session:
        written = session.execute(select(func.count()).select_from(MLPrediction)).scalar_one()
    engine.dispose()
    if written != records:
        raise SystemExit(f"{written} of {records} records reached ml_predictions")
    return {"seconds": seconds, "spool_mb": spooled / 2**20}


def main(argv: list[str]) -> None:
    """Run the benchmark (``python -m bench log-drain``) and write its results."""
    parser = argparse.ArgumentParser(prog="python -m bench log-drain")
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"records": args.records}
    with tempfile.TemporaryDirectory() as workdir:
        for backend, server in (("sqlite", None), ("postgresql", args.url)):
            runs = []
            for run in range(args.runs):
                url, drop = _scratch_database(server, Path(workdir))
                try:
                    runs.append(_drain(url, args.records, Path(workdir) / f"{backend}-{run}"))
                finally:
                    drop()
            seconds = statistics.median(r["seconds"] for r in runs)
            spool_mb = statistics.median(r["spool_mb"] for r in runs)
            results[backend] = {
                "seconds": [round(r["seconds"], 2) for r in runs],
                "median_seconds": round(seconds, 2),
                "records_per_s": round(args.records / seconds),
                "journal_mb_per_s": round(spool_mb / seconds, 1),
                "full_512_mb_spool_drains_in_s": round(512 / (spool_mb / seconds), 1),
            }
    sqlite, postgres = results["sqlite"], results["postgresql"]
    results["postgresql_over_sqlite_seconds"] = round(
        postgres["median_seconds"] / sqlite["median_seconds"], 2
    )
    print(json.dumps(results, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "prediction_log_drain.json").write_text(json.dumps(results, indent=2))
