"""Point-in-time join: median wall time and peak memory, both modes, Arrow and Parquet inputs.

The data set: 100k entities with one feature row a day for 10 days (20 float features, created
up to 36 h after the event) plus 5 % corrections (same entity and day, created an hour later),
and 1M entity rows at random times from two days before the first feature row to four days
after the last, 2 % of them for entities with no feature row. TTL 30 days.

Each measurement runs in a fresh child process that loads the inputs and times one call, so its
peak RSS (from ``wait4``) is that call's alone; the resident set just before the call (Python,
libraries and, for Arrow, the loaded inputs) is reported beside it.
"Arrow" times the join on in-memory tables; "Parquet" passes file paths, so it includes reading.
Results go to ``bench/results/pit_join.json`` and one summary line on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["generate", "main"]

RESULTS = Path(__file__).with_name("results")
ROOT = Path(__file__).resolve().parent.parent
DAY_US = 86_400_000_000
START = np.datetime64("2024-01-01T00:00:00", "us")


def generate(folder: Path, entities: int, rows: int, days: int, features: int, seed: int) -> None:
    """Write ``entities.parquet`` and ``features.parquet`` of the benchmark data set."""
    rng = np.random.default_rng(seed)
    ids = pa.array([f"user-{i:07d}" for i in range(entities + entities // 50)])
    owner = np.repeat(np.arange(entities), days)
    event = START + (np.tile(np.arange(days), entities) * DAY_US).astype("timedelta64[us]")
    created = event + rng.integers(0, DAY_US * 3 // 2, event.size).astype("timedelta64[us]")
    corrected = rng.choice(event.size, event.size // 20, replace=False)
    owner = np.concatenate([owner, owner[corrected]])
    event = np.concatenate([event, event[corrected]])
    created = np.concatenate([created, created[corrected] + np.timedelta64(3600_000_000, "us")])
    columns: dict[str, pa.Array] = {
        "entity_id": ids.take(pa.array(owner)),
        "event_timestamp": pa.array(event),
        "created_timestamp": pa.array(created),
    }
    for index in range(features):
        columns[f"f{index:02d}"] = pa.array(rng.standard_normal(event.size))
    pq.write_table(pa.table(columns), folder / "features.parquet")
    # Ids past ``entities`` have no feature rows.
    who = rng.integers(0, len(ids), rows)
    span = (days + 6) * DAY_US
    when = START + (rng.integers(0, span, rows) - 2 * DAY_US).astype("timedelta64[us]")
    frame = {
        "entity_id": ids.take(pa.array(who)),
        "event_timestamp": pa.array(when),
        "label": pa.array(rng.integers(0, 2, rows)),
    }
    pq.write_table(pa.table(frame), folder / "entities.parquet")


def _child(folder: Path, mode: str, source: str) -> None:
    from roiml.store.pit import Source, point_in_time_join

    entities_path, features_path = folder / "entities.parquet", folder / "features.parquet"
    if source == "arrow":
        entities: Source = pq.read_table(entities_path)
        features: Source = pq.read_table(features_path)
    else:
        entities, features = entities_path, features_path
    loaded_mib = _current_rss_mib()
    started = time.perf_counter()
    ttl = timedelta(days=30)
    result = point_in_time_join(entities, features, ttl, only_known_at_event_time=mode == "known")
    seconds = time.perf_counter() - started
    matched = result.num_rows - result.column("f00").null_count
    report = {"seconds": seconds, "rows": result.num_rows, "matched": matched}
    print(json.dumps({**report, "loaded_mib": loaded_mib}))


def _current_rss_mib() -> float:
    # The resident set now, not the peak: reading Parquet peaks well above what it keeps.
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _measure(folder: Path, mode: str, source: str) -> dict[str, float]:
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.pit_join", "--child", str(folder), mode, source],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    # wait4 gives this child's own peak RSS (RUSAGE_CHILDREN would keep the largest so far).
    _, status, usage = os.wait4(child.pid, 0)
    assert child.stdout is not None and child.stderr is not None
    if status != 0:
        raise RuntimeError(child.stderr.read().decode())
    report: dict[str, float] = json.loads(child.stdout.read())
    report["peak_mib"] = usage.ru_maxrss / 1024
    return report


def main(argv: list[str]) -> None:
    """Run the benchmark (``python -m bench pit`` once registered) and write its results."""
    parser = argparse.ArgumentParser(prog="python -m bench pit")
    parser.add_argument("--entities", type=int, default=100_000, help="entities with features")
    parser.add_argument("--rows", type=int, default=1_000_000, help="entity-frame rows")
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sources", nargs="+", default=["arrow", "parquet"])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(Path(args.child[0]), args.child[1], args.child[2])
        return
    results = []
    with tempfile.TemporaryDirectory(prefix="roiml-bench-pit-") as scratch:
        folder = Path(scratch)
        generate(folder, args.entities, args.rows, args.days, args.features, args.seed)
        feature_rows = pq.read_metadata(folder / "features.parquet").num_rows
        for source in args.sources:
            for mode in ("default", "known"):
                runs = [_measure(folder, mode, source) for _ in range(args.runs)]
                results.append(
                    {
                        "mode": mode,
                        "source": source,
                        "entity_rows": args.rows,
                        "feature_rows": feature_rows,
                        "features": args.features,
                        "ttl_days": 30,
                        "matched_rows": runs[0]["matched"],
                        "median_seconds": round(statistics.median(r["seconds"] for r in runs), 3),
                        "seconds": [round(r["seconds"], 3) for r in runs],
                        "peak_rss_mib": round(max(r["peak_mib"] for r in runs)),
                        "rss_before_join_mib": round(max(r["loaded_mib"] for r in runs)),
                        "cpus": os.cpu_count(),
                    }
                )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "pit_join.json").write_text(json.dumps(results, indent=2))
    print(
        f"pit_join {args.rows:,} entity rows x {feature_rows:,} feature rows x "
        f"{args.features} features, ttl 30d, median of {args.runs}: "
        + "; ".join(
            f"{r['mode']}/{r['source']} {r['median_seconds']} s, peak {r['peak_rss_mib']} MiB"
            for r in results
        ),
        flush=True,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
