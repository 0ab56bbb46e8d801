"""Online read latency: the full vector (all feature sets) for 1 and for 100 entities.

Loads N entities x 5 feature sets (84 features split across them) into Redis and into the
embedded SQLite store, then times ``get_matrix`` (one MGET or one SQL query for all sets, decoded
into each entity's full float64 vector) with ``time.perf_counter_ns`` for random entities, both
backends in one run. Prints a
table and writes ``bench/results/online_read.json``. The bench's keys and files are removed
afterwards.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import redis

from roiml.store.online import OnlineFeatureSet, OnlineStore
from roiml.store.online_redis import RedisOnlineStore
from roiml.store.online_sqlite import SqliteOnlineStore

__all__ = ["main"]

RESULTS = Path(__file__).with_name("results")
# Targets for Redis (the production backend); the embedded store is reported, not judged.
TARGETS_MS = {1: 0.5, 100: 3.0}


def feature_sets(total_features: int, set_count: int) -> list[OnlineFeatureSet]:
    """``total_features`` split as evenly as possible over ``set_count`` sets."""
    sizes = [
        total_features // set_count + (i < total_features % set_count) for i in range(set_count)
    ]
    sets, first = [], 0
    for index, size in enumerate(sizes):
        names = tuple(f"f{first + k:03d}" for k in range(size))
        sets.append(OnlineFeatureSet(f"set{index}", names))
        first += size
    return sets


def day_frame(
    entity_ids: list[str], feature_set: OnlineFeatureSet, as_of: datetime, rng: np.random.Generator
) -> pa.Table:
    rows = len(entity_ids)
    columns: dict[str, pa.Array] = {
        "entity_id": pa.array(entity_ids, pa.string()),
        "as_of": pa.array([as_of] * rows, pa.timestamp("us")),
    }
    for name in feature_set.feature_names:
        values = rng.normal(size=rows)
        missing = rng.random(rows) < 0.05  # some nulls, as real features have
        columns[name] = pa.array(values, pa.float64(), mask=missing)
    return pa.table(columns)


def time_reads(
    read: Callable[[list[str]], object], batches: Sequence[list[str]], warmup: int
) -> dict[str, float]:
    for batch in batches[:warmup]:
        read(batch)
    gc.collect()
    samples = np.empty(len(batches), dtype=np.int64)
    clock = time.perf_counter_ns
    for index, batch in enumerate(batches):
        started = clock()
        read(batch)
        samples[index] = clock() - started
    ms = samples / 1e6
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 4),
        "p99_ms": round(float(np.percentile(ms, 99)), 4),
        "mean_ms": round(float(ms.mean()), 4),
        "max_ms": round(float(ms.max()), 4),
    }


def full_vector_reader(
    store: OnlineStore, tenant: str, sets: list[OnlineFeatureSet]
) -> Callable[[list[str]], object]:
    """What serving does per request: every set of every entity as one float64 matrix."""

    def read(entity_ids: list[str]) -> object:
        return store.get_matrix(tenant, "USER", entity_ids, sets)

    return read


def load(
    store: OnlineStore,
    tenant: str,
    sets: list[OnlineFeatureSet],
    frames: list[pa.Table],
) -> float:
    started = time.perf_counter()
    for feature_set, frame in zip(sets, frames, strict=True):
        written = store.write_day(frame, tenant, "USER", feature_set)
        if written != frame.num_rows:
            raise RuntimeError(f"{feature_set.name}: wrote {written} of {frame.num_rows} vectors")
    return time.perf_counter() - started


def main(argv: list[str]) -> None:
    """Run the benchmark; ``argv`` are its options (see ``--help``)."""
    parser = argparse.ArgumentParser(prog="python -m bench online")
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=84)
    parser.add_argument("--sets", type=int, default=5)
    parser.add_argument("--repetitions", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--backends", nargs="+", default=["redis", "embedded"])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(42)
    sets = feature_sets(args.features, args.sets)
    entity_ids = [f"user_{i:07d}" for i in range(args.entities)]
    as_of = datetime.now(UTC).replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
    frames = [day_frame(entity_ids, fs, as_of - timedelta(hours=1), rng) for fs in sets]
    picks = rng.integers(0, args.entities, size=(args.repetitions, args.batch))
    singles = [[entity_ids[row[0]]] for row in picks]
    batches = [[entity_ids[i] for i in row] for row in picks]
    tenant = f"bench_{uuid.uuid4().hex[:8]}"

    results: list[dict[str, object]] = []
    loads: dict[str, float] = {}
    scratch = Path(tempfile.mkdtemp(prefix="roiml-bench-online-"))
    try:
        for backend in args.backends:
            store: OnlineStore
            if backend == "redis":
                client = redis.Redis.from_url(args.redis_url)
                store = RedisOnlineStore(client, namespace="roiml_bench")
            else:
                store = SqliteOnlineStore(scratch / "online.db", namespace="roiml_bench")
            try:
                loads[backend] = round(load(store, tenant, sets, frames), 2)
                read = full_vector_reader(store, tenant, sets)
                for size, work in ((1, singles), (args.batch, batches)):
                    figures = time_reads(read, work, warmup=min(500, len(work)))
                    target = TARGETS_MS.get(size) if backend == "redis" else None
                    results.append(
                        {
                            "backend": backend,
                            "entities_per_read": size,
                            "keys_per_read": size * len(sets),
                            **figures,
                            "target_p99_ms": target,
                            "meets_target": None if target is None else figures["p99_ms"] <= target,
                        }
                    )
            finally:
                store.delete_tenant(tenant)
                store.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print(
        f"online read: {args.entities:,} entities x {len(sets)} sets ({args.features} features), "
        f"{args.repetitions:,} reads each; load seconds {loads}"
    )
    print(
        f"{'backend':9s} {'entities':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'mean ms':>8s} "
        f"{'max ms':>8s} {'target':>7s}"
    )
    for row in results:
        goal = "" if row["target_p99_ms"] is None else f"<={row['target_p99_ms']}"
        verdict = "" if row["meets_target"] is None else (" ok" if row["meets_target"] else " MISS")
        print(
            f"{row['backend']!s:9s} {row['entities_per_read']!s:>8s} {row['p50_ms']!s:>8s} "
            f"{row['p99_ms']!s:>8s} {row['mean_ms']!s:>8s} {row['max_ms']!s:>8s} "
            f"{goal:>7s}{verdict}",
            flush=True,
        )
    RESULTS.mkdir(exist_ok=True)
    report = {
        "entities": args.entities,
        "feature_sets": len(sets),
        "features": args.features,
        "repetitions": args.repetitions,
        "load_seconds": loads,
        "python": platform.python_version(),
        "results": results,
    }
    (RESULTS / "online_read.json").write_text(json.dumps(report, indent=2) + "\n")
