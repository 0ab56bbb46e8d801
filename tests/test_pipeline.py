"""The daily pipeline: steps through files, sharding, reruns, a kill during store, bad input."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from roiml.cli.main import app
from roiml.db.engine import make_engine
from roiml.db.migrate import upgrade
from roiml.errors import PipelineError
from roiml.features.catalog import CATALOG
from roiml.pipeline import PipelineContext, parse_shard, run_day, run_step
from roiml.pipeline.runs import list_runs
from roiml.settings import get_settings
from roiml.store import cold
from roiml.store.online_sqlite import SqliteOnlineStore
from roiml.store.retrieval import FeatureStore
from roiml.world.config import WorldConfig
from roiml.world.generate import generate_world

DAY = date(2024, 3, 5)
WARM_ROWS = """
    SELECT entity_id, feature_set, as_of, "values", created_at FROM ml_feature_values
    WHERE tenant_id = 'p' ORDER BY id
"""
WARM_PER_SET = """
    SELECT feature_set, count(*) FROM ml_feature_values WHERE tenant_id = 'p' GROUP BY feature_set
"""
COMPUTE = (
    "compute_behavioral",
    "compute_property",
    "compute_market",
    "compute_transactional",
    "compute_temporal",
)
NOW = datetime(2024, 3, 5, 3)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pipeline")
    engine = make_engine(f"sqlite:///{root / 'world.db'}")
    upgrade(engine)
    config = WorldConfig(
        users=300, start=date(2023, 6, 1), end=date(2024, 6, 1), seed=4, tenant_id="p"
    )
    generate_world(engine, root / "seed", config)
    engine.dispose()
    return root


def _store(root: Path, data: str) -> FeatureStore:
    engine = make_engine(f"sqlite:///{root / 'world.db'}")
    return FeatureStore(engine, "p", root / data, SqliteOnlineStore(root / data / "online.db"))


def _cold_day(store: FeatureStore) -> dict[str, object]:
    return {
        name: pq.ParquetFile(cold.partition_dir(store.data_dir, "p", name, DAY) / cold.PART_FILE)
        .read()
        .to_pydict()
        for name in CATALOG.feature_sets
    }


def test_shards_together_equal_one_run(world: Path) -> None:
    single = _store(world, "single")
    run_day(PipelineContext(single, DAY, now=NOW, on_time=True))
    sharded = _store(world, "sharded")
    ctx = PipelineContext(sharded, DAY, now=NOW, on_time=True)
    run_step(ctx, "extract")
    for step in COMPUTE:
        for index in range(3):
            run_step(ctx, step, parse_shard(f"{index}/3"))
    for step in ("validate", "store", "update_statistics"):
        run_step(ctx, step)
    assert _cold_day(single) == _cold_day(sharded)


def test_a_missing_shard_stops_validation(world: Path) -> None:
    store = _store(world, "partial")
    ctx = PipelineContext(store, DAY, now=NOW, on_time=True)
    run_step(ctx, "extract")
    for step in COMPUTE:
        run_step(ctx, step, parse_shard("0/2"))
    with pytest.raises(PipelineError, match="incomplete"):
        run_step(ctx, "validate")
    with pytest.raises(PipelineError, match="has not passed validation"):
        run_step(ctx, "store")
    assert not (store.data_dir / "features").exists()
    outcomes = [(r.step, r.outcome) for r in list_runs(store.engine, "p", 3)]
    assert outcomes[0] == ("store", "FAILED") and outcomes[1] == ("validate", "FAILED")


def test_running_a_day_twice_leaves_every_tier_as_once(world: Path) -> None:
    store = _store(world, "twice")
    run_day(PipelineContext(store, DAY, now=NOW, on_time=True))
    cold_before = _cold_day(store)
    with store.engine.connect() as conn:
        warm_before = conn.execute(text(WARM_ROWS)).all()
    hot_before = store.create_prediction_features("user_1", "MOVE_PROBABILITY", now=NOW)
    run_day(PipelineContext(store, DAY, now=NOW, on_time=True))
    with store.engine.connect() as conn:
        warm_after = conn.execute(text(WARM_ROWS)).all()
    assert _cold_day(store) == cold_before
    assert warm_after == warm_before
    assert store.create_prediction_features("user_1", "MOVE_PROBABILITY", now=NOW) == hot_before


_KILLABLE = """
import sys, time
from datetime import date, datetime
from pathlib import Path
import roiml.store.warm as w
from roiml.db.engine import make_engine
from roiml.pipeline import PipelineContext, run_step
from roiml.store.online_sqlite import SqliteOnlineStore
from roiml.store.retrieval import FeatureStore
root, data = sys.argv[1], sys.argv[2]
real = w.write_day
calls = []
def slow(*args, **kwargs):
    calls.append(1)
    if len(calls) == 3:  # cold staged, two sets written to warm, the third under way
        print("storing", flush=True)
        time.sleep(60)
    return real(*args, **kwargs)
w.write_day = slow
engine = make_engine(f"sqlite:///{root}/world.db")
folder = Path(root) / data
store = FeatureStore(engine, "p", folder, SqliteOnlineStore(folder / "online.db"))
ctx = PipelineContext(store, date(2024, 3, 5), now=datetime(2024, 3, 5, 3), on_time=True)
run_step(ctx, "store")
"""


def test_sigkill_during_store_then_rerun_completes(world: Path, tmp_path: Path) -> None:
    # The warm tier lives in world.db, shared by this module's stores: this test empties it, so
    # it works on its own copy of the database and leaves the module's untouched.
    own = tmp_path / "world"
    own.mkdir()
    with (
        contextlib.closing(sqlite3.connect(world / "world.db")) as source,
        contextlib.closing(sqlite3.connect(own / "world.db")) as copy,
    ):
        source.backup(copy)
    store = _store(own, "killed")
    ctx = PipelineContext(store, DAY, now=NOW, on_time=True)
    for step in ("extract", *COMPUTE, "validate"):
        run_step(ctx, step)
    with store.engine.begin() as conn:  # rows earlier tests stored for the day
        conn.execute(text("DELETE FROM ml_feature_values WHERE tenant_id = 'p'"))
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLABLE, str(own), "killed"], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "storing"
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    child.stdout.close()
    # Killed before the warm commit: no tier shows any part of the day.
    sets = list(CATALOG.feature_sets)
    assert [name for name in sets if cold.list_dates("p", name, data_dir=store.data_dir)] == []
    with store.engine.connect() as conn:
        assert dict(conn.execute(text(WARM_PER_SET)).all()) == {}
    assert store.create_prediction_features("user_1", "MOVE_PROBABILITY", now=NOW).sources == {
        name: "computed"
        for name in ("behavioral", "property", "transactional", "market", "temporal")
    }
    run_step(ctx, "store")
    reference = _store(own, "single-ref")
    run_day(PipelineContext(reference, DAY, now=NOW, on_time=True))
    assert _cold_day(store) == _cold_day(reference)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["step", "compute_market", "--date", "2024-03-05", "--shard", "3/2"], "must be in 0..1"),
        (["step", "compute_market", "--date", "2024-03-05", "--shard", "two"], "of the form i/N"),
        (["step", "validate", "--date", "2024-03-05", "--shard", "0/2"], "not sharded"),
        (["step", "extract", "--date", "2999-01-01"], "in the future"),
        (["step", "extract", "--date", "1990-01-01"], "before any data"),
        (["step", "nonsense", "--date", "2024-03-05"], "unknown step"),
        (["run", "--date", "2024-13-01"], "not a date"),
        (["backfill", "--start", "2024-03-05", "--end", "2024-03-01"], "before --start"),
    ],
)
def test_bad_input_is_refused_with_a_message(
    world: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.setenv("ROIML_DATABASE_URL", f"sqlite:///{world / 'world.db'}")
    monkeypatch.setenv("ROIML_DATA_DIR", str(world / "cli"))
    monkeypatch.setenv("ROIML_TENANT_ID", "p")
    (world / "cli").mkdir(exist_ok=True)
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["pipeline", *args])
    get_settings.cache_clear()
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (world / "cli" / "features").exists()


def test_missing_data_directory_and_database_down(
    world: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROIML_DATABASE_URL", f"sqlite:///{world / 'world.db'}")
    monkeypatch.setenv("ROIML_DATA_DIR", str(world / "does-not-exist"))
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["pipeline", "run", "--date", "2024-03-05"])
    assert result.exit_code != 0 and "does not exist" in result.output
    monkeypatch.setenv("ROIML_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/nope")
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["pipeline", "run", "--date", "2024-03-05"])
    get_settings.cache_clear()
    assert result.exit_code == 3 and "cannot reach the database" in result.output
