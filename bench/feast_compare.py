"""Row-for-row comparison of point_in_time_join with Feast's get_historical_features.

``python -m bench.feast_compare --feast-python /tmp/feast-venv/bin/python`` builds one random
data set with every awkward case (ties on the event time, duplicated entity rows, rows exactly
TTL old and one second past it, rows at the entity time, future and backfilled rows, entities
with no feature rows), runs Feast on it in a child process with the *other* Python (Feast is
never imported here: the two sides exchange Parquet files), runs point_in_time_join, and
classifies every entity row on which they differ. Feast runs with its file (Dask) offline store
and its DuckDB (Ibis) offline store, each with and without ``filter_by_created_timestamp``,
which is compared with ``only_known_at_event_time``.

Every entity row carries a ``row_id`` and every feature row a unique feature ``fid``, so each
output row says which entity row it is and which feature row it took. Results go to
``bench/results/feast_compare.json`` and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["compare", "generate", "main"]

RESULTS = Path(__file__).with_name("results")
TTL = timedelta(days=2)
START = datetime(2024, 1, 1)
FEATURES = ["fid", "f1", "f2"]

# Run by the Feast interpreter: argv = folder, offline store type, "filter" or "plain".
FEAST_CHILD = r"""
import sys, warnings
from datetime import timedelta
from pathlib import Path

warnings.filterwarnings("ignore")
import feast
import pandas as pd
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, RepoConfig, ValueType
from feast.types import Float64

folder, store_type, flag = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "filter"
ttl_seconds = int(sys.argv[4])
repo = folder / f"repo-{store_type}-{sys.argv[3]}"
repo.mkdir()
config = RepoConfig(
    project="compare",
    provider="local",
    registry=str(repo / "registry.db"),
    repo_path=str(repo),
    offline_store={"type": store_type},
    online_store={"type": "sqlite", "path": str(repo / "online.db")},
    entity_key_serialization_version=3,
)
store = FeatureStore(config=config)
entity = Entity(name="entity", join_keys=["entity_id"], value_type=ValueType.STRING)
source = FileSource(
    path=str(folder / "features.parquet"),
    timestamp_field="event_timestamp",
    created_timestamp_column="created_timestamp",
)
view = FeatureView(
    name="fv",
    entities=[entity],
    ttl=timedelta(seconds=ttl_seconds),
    schema=[Field(name=name, dtype=Float64) for name in ("fid", "f1", "f2")],
    source=source,
)
store.apply([entity, view])
entity_df = pd.read_parquet(folder / "entities.parquet")
job = store.get_historical_features(
    entity_df=entity_df,
    features=["fv:fid", "fv:f1", "fv:f2"],
    filter_by_created_timestamp=flag,
)
frame = job.to_df()
frame = frame[["row_id", "entity_id", "fid", "f1", "f2"]]
frame.to_parquet(folder / f"feast-{store_type}-{sys.argv[3]}.parquet", index=False)
print(feast.__version__)
"""


def generate(folder: Path, entity_rows: int, seed: int) -> None:
    """Write ``entities.parquet`` and ``features.parquet``: about ``entity_rows`` of each."""
    rng = np.random.default_rng(seed)
    second = np.timedelta64(1, "s")
    entities = entity_rows // 10
    owner = np.repeat(np.arange(entities), 10)
    event = (
        np.datetime64(START, "s")
        + (np.tile(np.arange(10), entities) * 86_400 + rng.integers(0, 86_400, owner.size)) * second
    )
    # Created up to 30 h after the event: late rows are backfills.
    created = event + rng.integers(0, 30 * 3600, owner.size) * second
    tied = rng.choice(owner.size, owner.size // 10, replace=False)
    # Ties on the event time: a second version created before or after the first.
    shift = rng.choice([-1, 1], tied.size) * rng.integers(1, 20 * 3600, tied.size)
    owner = np.concatenate([owner, owner[tied]])
    event = np.concatenate([event, event[tied]])
    created = np.concatenate([created, created[tied] + shift * second])
    ids = np.array([f"e{i:05d}" for i in range(entities + entities // 20)])
    features = pa.table(
        {
            "entity_id": pa.array(ids[owner]),
            "event_timestamp": pa.array(event.astype("datetime64[us]")),
            "created_timestamp": pa.array(created.astype("datetime64[us]")),
            "fid": pa.array(np.arange(owner.size, dtype=np.float64)),
            "f1": pa.array(rng.standard_normal(owner.size)),
            "f2": pa.array(rng.standard_normal(owner.size)),
        }
    )
    pq.write_table(features, folder / "features.parquet")

    # Entity rows: random times (before, within and after the feature days), exact-TTL and
    # one-second-past-TTL rows, rows at a feature row's event time, unknown entities, then
    # duplicates of some rows.
    plain = entity_rows * 7 // 10
    who = rng.integers(0, len(ids), plain)
    when = np.datetime64(START, "s") + rng.integers(-86_400, 14 * 86_400, plain) * second
    probes = rng.choice(owner.size, entity_rows // 20, replace=False)
    ttl_s = int(TTL.total_seconds())
    who = np.concatenate([who, owner[probes], owner[probes], owner[probes]])
    when = np.concatenate(
        [
            when,
            event[probes] + ttl_s * second,
            event[probes] + (ttl_s + 1) * second,
            event[probes],
        ]
    )
    repeated = rng.choice(who.size, entity_rows - who.size, replace=True)
    who = np.concatenate([who, who[repeated]])
    when = np.concatenate([when, when[repeated]])
    order = rng.permutation(who.size)
    frame = pa.table(
        {
            "row_id": pa.array(np.arange(who.size)),
            "entity_id": pa.array(ids[who[order]]),
            "event_timestamp": pa.array(when[order].astype("datetime64[us]")),
        }
    )
    pq.write_table(frame, folder / "entities.parquet")


@dataclass(frozen=True)
class Comparison:
    """How one Feast output differs from ours, row by row."""

    feast_rows: int
    agree: int
    differences: dict[str, int]


def compare(ours: pa.Table, theirs: pa.Table, features: pa.Table, known_only: bool) -> Comparison:
    """Classify every entity row: same chosen feature row, or the kind of difference."""
    ours_fid = dict(
        zip(ours.column("row_id").to_pylist(), ours.column("fid").to_pylist(), strict=True)
    )
    keys = dict(
        zip(
            ours.column("row_id").to_pylist(),
            zip(
                ours.column("entity_id").to_pylist(),
                ours.column("event_timestamp").to_pylist(),
                strict=True,
            ),
            strict=True,
        )
    )
    feature_rows = {
        int(fid): (ev, cr)
        for fid, ev, cr in zip(
            features.column("fid").to_pylist(),
            features.column("event_timestamp").to_pylist(),
            features.column("created_timestamp").to_pylist(),
            strict=True,
        )
    }
    theirs_by_row: dict[int, list[float | None]] = {}
    for row_id, fid in zip(
        theirs.column("row_id").to_pylist(), theirs.column("fid").to_pylist(), strict=True
    ):
        theirs_by_row.setdefault(row_id, []).append(
            None if fid is None or fid != fid else fid  # pandas writes NaN for missing
        )
    kept_keys = Counter(keys[row_id] for row_id in theirs_by_row)
    differences: Counter[str] = Counter()
    agree = 0
    for row_id, mine in ours_fid.items():
        found = theirs_by_row.get(row_id)
        if found is None:
            kind = "collapsed duplicate" if kept_keys[keys[row_id]] else "dropped"
            differences[f"{kind} entity row (ours {'null' if mine is None else 'matched'})"] += 1
            continue
        if len(found) > 1:
            differences["entity row repeated in Feast output"] += 1
        other = found[0]
        if other == mine:
            agree += 1
        elif other is None:
            differences["Feast null, ours matched"] += 1
        elif mine is None:
            differences[_why_feast_matched(feature_rows[int(other)], keys[row_id][1])] += 1
        else:
            mine_ev, mine_cr = feature_rows[int(mine)]
            other_ev, other_cr = feature_rows[int(other)]
            if other_ev == mine_ev:
                kind = "tie on event time broken differently"
                kind += " (Feast took the earlier-created)" if other_cr < mine_cr else ""
            elif known_only and other_cr > keys[row_id][1]:
                kind = "Feast took a row created after the entity time"
            else:
                kind = "different feature row"
            differences[kind] += 1
    return Comparison(theirs.num_rows, agree, dict(differences))


def _why_feast_matched(chosen: tuple[datetime, datetime], moment: datetime) -> str:
    event, _ = chosen
    if event > moment:
        return "Feast matched a future row, ours null"
    if moment - event > TTL:
        return "Feast matched a row older than the TTL, ours null"
    return "Feast matched, ours null"


def _run_feast(python: str, folder: Path, store: str, flag: str) -> tuple[pa.Table, str]:
    script = folder / "feast_child.py"
    script.write_text(FEAST_CHILD)
    done = subprocess.run(
        [python, str(script), str(folder), store, flag, str(int(TTL.total_seconds()))],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"Feast ({store}, {flag}) failed:\n{done.stderr[-4000:]}")
    table = pq.read_table(folder / f"feast-{store}-{flag}.parquet")
    return table, done.stdout.strip().splitlines()[-1]


def main(argv: list[str]) -> None:
    """Run the comparison and print one line per Feast configuration."""
    parser = argparse.ArgumentParser(prog="python -m bench.feast_compare")
    parser.add_argument("--feast-python", required=True, help="a python with feast installed")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--stores", nargs="+", default=["file", "duckdb"])
    args = parser.parse_args(argv)

    from roiml.store.pit import point_in_time_join

    results = []
    with tempfile.TemporaryDirectory(prefix="roiml-feast-compare-") as scratch:
        folder = Path(scratch)
        generate(folder, args.rows, args.seed)
        features = pq.read_table(folder / "features.parquet")
        entities = pq.read_table(folder / "entities.parquet")
        for flag in ("plain", "filter"):
            known_only = flag == "filter"
            ours = point_in_time_join(entities, features, TTL, only_known_at_event_time=known_only)
            for store in args.stores:
                theirs, version = _run_feast(args.feast_python, folder, store, flag)
                outcome = compare(ours, theirs, features, known_only)
                results.append(
                    {
                        "feast": version,
                        "offline_store": store,
                        "filter_by_created_timestamp": known_only,
                        "entity_rows": entities.num_rows,
                        "feature_rows": features.num_rows,
                        "ours_matched": ours.num_rows - ours.column("fid").null_count,
                        "feast_rows": outcome.feast_rows,
                        "agree": outcome.agree,
                        "differ": entities.num_rows - outcome.agree,
                        "differences": outcome.differences,
                    }
                )
                print(
                    f"feast {version} {store:6s} filter_by_created={known_only!s:5s} "
                    f"rows in {entities.num_rows:,} out {outcome.feast_rows:,}: "
                    f"agree {outcome.agree:,}, differ {entities.num_rows - outcome.agree:,} "
                    f"{json.dumps(outcome.differences)}",
                    flush=True,
                )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "feast_compare.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
