"""Feature engine: batch (all features, all users, one as-of), backfill (daily as-ofs) and the
on-demand single-entity path, each timed in its own child process with its peak RSS.

    python -m bench features --url URL --tenant T [--as-of 2024-06-01] [--backfill-days 90]

The world must exist (``roiml world generate``). Loading from the SQL store and computing are
reported apart: the daily pipeline reads a Parquet extract instead of the SQL store.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

from bench._child import run_measured

RESULTS = Path(__file__).with_name("results")


def _child(kind: str, url: str, tenant: str, as_of: str, days: int, limit: int | None) -> None:
    from roiml.db.engine import make_engine
    from roiml.features.catalog import CATALOG
    from roiml.features.engine import FeatureEngine, entity_frame
    from roiml.features.engineer import as_of_midnight
    from roiml.features.sources import load_sources

    engine = make_engine(url)
    features = FeatureEngine()
    names = list(CATALOG.features)
    plan = features.plan(names)
    moment = datetime.fromisoformat(as_of)
    out: dict[str, object] = {"kind": kind}
    if kind in ("batch", "backfill"):
        first = moment - timedelta(days=days - 1) if kind == "backfill" else moment
        started = time.perf_counter()
        sources = load_sources(engine, tenant, plan.lookback_days, first, moment)
        out["load_seconds"] = round(time.perf_counter() - started, 2)
        out["source_rows"] = sum(t.num_rows for t in sources.tables.values())
        ids = sources.tables["users"]["user_id"].to_pylist()[:limit]
        out["entities"] = len(ids)
        dates = [
            as_of_midnight(first + timedelta(days=i))
            for i in range(days if kind == "backfill" else 1)
        ]
        started = time.perf_counter()
        rows = 0
        per_slice = max(1, 500_000 // len(ids))
        for offset in range(0, len(dates), per_slice):
            chunk = dates[offset : offset + per_slice]
            frame = entity_frame([e for _ in chunk for e in ids], [d for d in chunk for _ in ids])
            rows += features.compute(frame, names, sources).num_rows
        out["compute_seconds"] = round(time.perf_counter() - started, 2)
        out["rows"] = rows
    else:
        users = load_sources(engine, tenant, {"users": None}, moment, moment).tables["users"]
        ids = users["user_id"].to_pylist()[: limit or 200]
        load_ms, compute_ms, cpu_ms = [], [], []
        for entity in ids[:200]:
            started, cpu_started = time.perf_counter(), time.process_time()
            sources = load_sources(engine, tenant, plan.lookback_days, moment, moment, [entity])
            middle = time.perf_counter()
            features.compute(entity_frame([entity], moment), names, sources)
            done, cpu_done = time.perf_counter(), time.process_time()
            load_ms.append((middle - started) * 1000)
            compute_ms.append((done - middle) * 1000)
            cpu_ms.append((cpu_done - cpu_started) * 1000)
        total = sorted(a + b for a, b in zip(load_ms, compute_ms, strict=True))
        out.update(
            requests=len(total),
            features=len(plan.features),
            load_ms_p50=round(statistics.median(load_ms), 1),
            compute_ms_p50=round(statistics.median(compute_ms), 1),
            total_ms_p50=round(statistics.median(total), 1),
            total_ms_p95=round(total[int(0.95 * (len(total) - 1))], 1),
            # CPU time of this process per request: on a shared machine wall time mostly
            # measures the neighbours; this does not (the database server's time is not in it).
            cpu_ms_p50=round(statistics.median(cpu_ms), 1),
        )
    print(json.dumps(out))


def _measure(args: list[str]) -> dict[str, object]:
    measured = run_measured([sys.executable, "-m", "bench.feature_engine", "--child", *args])
    result: dict[str, object] = json.loads(measured.stdout.strip().splitlines()[-1])
    result["wall_seconds"] = measured.seconds
    result["peak_rss_mib"] = measured.peak_rss_mib
    return result


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench features")
    parser.add_argument("--url", default="sqlite:///data/roiml.db", help="database with the world")
    parser.add_argument("--tenant", default="demo")
    parser.add_argument("--as-of", default="2024-06-01")
    parser.add_argument("--backfill-days", type=int, default=90)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N users")
    parser.add_argument("--skip", nargs="*", default=[], choices=["batch", "backfill", "single"])
    args = parser.parse_args(argv)
    results = []
    for kind in ("batch", "backfill", "single"):
        if kind in args.skip:
            continue
        common = [
            kind,
            args.url,
            args.tenant,
            args.as_of,
            str(args.backfill_days),
            str(args.limit or 0),
        ]
        result = _measure(common)
        results.append(result)
        print(json.dumps(result), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"feature_engine_{args.tenant}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    if sys.argv[1] == "--child":
        kind, url, tenant, as_of, days, limit = sys.argv[2:8]
        _child(kind, url, tenant, as_of, int(days), int(limit) or None)
    else:
        main(sys.argv[1:])
