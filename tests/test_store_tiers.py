"""store_day: cold, warm and hot in order; a second write changes nothing; a crash recovers."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import redis
from sqlalchemy import Engine, text

from roiml.errors import FeatureError
from roiml.store import cold, tiers, warm
from roiml.store.online import OnlineFeatureSet, OnlineStore
from roiml.store.online_redis import RedisOnlineStore
from roiml.store.online_sqlite import SqliteOnlineStore

# Redis expires keys by its own clock, so the day is anchored to the real present.
AS_OF = datetime.now(UTC).replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
NAMES = ("visits_7d", "opens_30d", "score")
HOT = OnlineFeatureSet("engagement", NAMES)
IDS = [f"u{i}" for i in range(50)]


def day_frame() -> pa.Table:
    values: dict[str, Any] = {
        name: pa.array([None if i % 7 == k else i * 1.5 + k for i in range(len(IDS))], pa.float64())
        for k, name in enumerate(NAMES)
    }
    return pa.table(
        {
            "entity_id": pa.array(IDS, pa.string()),
            "as_of": pa.array([AS_OF] * len(IDS), pa.timestamp("us")),
            **values,
        }
    )


@dataclass
class Tiers:
    data_dir: Path
    database: Engine
    online: OnlineStore


@pytest.fixture(
    params=[
        "sqlite+embedded",
        pytest.param("postgres+redis", marks=[pytest.mark.postgres, pytest.mark.redis]),
    ]
)
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Tiers]:
    data_dir = tmp_path / "data"
    if request.param == "sqlite+embedded":
        embedded = SqliteOnlineStore(data_dir / "online.db")
        yield Tiers(data_dir, request.getfixturevalue("sqlite_engine"), embedded)
        embedded.close()
        return
    namespace = f"roiml_test_{uuid.uuid4().hex[:10]}"
    client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
    on_redis = RedisOnlineStore(client, namespace=namespace, write_chunk=16)
    yield Tiers(data_dir, request.getfixturevalue("postgres_engine"), on_redis)
    leftovers = list(client.scan_iter(match=f"{namespace}:*"))
    if leftovers:
        client.delete(*leftovers)
    on_redis.close()


def store(tiers_: Tiers, tenant: str, frame: pa.Table | None = None) -> tiers.StoredDay:
    return tiers.store_day(
        day_frame() if frame is None else frame,
        tenant,
        "USER",
        "engagement",
        NAMES,
        data_dir=tiers_.data_dir,
        database=tiers_.database,
        online=tiers_.online,
    )


def snapshot(tiers_: Tiers, tenant: str) -> dict[str, Any]:
    """Everything each tier holds for the tenant, in comparable form."""
    files = sorted(tiers_.data_dir.joinpath("features").rglob("*"))
    query = text(
        'SELECT id, entity_id, as_of, "values", created_at FROM ml_feature_values '
        "WHERE tenant_id = :t ORDER BY entity_id"
    )
    with tiers_.database.connect() as conn:
        rows = [tuple(row) for row in conn.execute(query, {"t": tenant})]
    vectors = tiers_.online.get_vectors(tenant, "USER", IDS, [HOT])
    return {
        "cold": [(path, path.read_bytes() if path.is_file() else None) for path in files],
        "warm": rows,
        "hot": [None if row[0] is None else row[0].tobytes() for row in vectors],
    }


def test_a_day_lands_in_every_tier_with_the_same_values(stores: Tiers, tenant: str) -> None:
    stored = store(stores, tenant)
    assert (stored.as_of, stored.rows, stored.warm_changed, stored.hot_written) == (
        AS_OF,
        50,
        50,
        50,
    )
    expected = cold.check_day(day_frame(), tenant, "engagement", NAMES).frame
    assert cold.read(tenant, "engagement", data_dir=stores.data_dir).equals(expected)
    from_warm = warm.read_range(stores.database, tenant, "USER", "engagement", NAMES)
    assert from_warm.equals(expected)
    vectors = stores.online.get_vectors(tenant, "USER", ["u7", "u8"], [HOT])
    assert [row[0].tolist() if row[0] is not None else None for row in vectors] == [
        pytest.approx([float("nan"), 11.5, 12.5], nan_ok=True),
        pytest.approx([12.0, float("nan"), 14.0], nan_ok=True),
    ]


def test_writing_a_day_twice_leaves_every_tier_as_after_one_write(
    stores: Tiers, tenant: str
) -> None:
    store(stores, tenant)
    once = snapshot(stores, tenant)
    again = store(stores, tenant, day_frame().take(list(reversed(range(len(IDS))))))
    assert again.warm_changed == 0
    assert snapshot(stores, tenant) == once
    cold_files = [path.name for path, content in once["cold"] if content is not None]
    assert cold_files == ["part-0.parquet"]
    assert len(once["warm"]) == len(IDS)
    assert all(vector is not None for vector in once["hot"])


def test_a_failing_warm_write_leaves_every_tier_untouched_and_a_rerun_completes(
    stores: Tiers, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*args: object, **kwargs: object) -> int:
        raise ConnectionError("database went away")

    with monkeypatch.context() as patched:
        patched.setattr(warm, "write_day", crash)
        with pytest.raises(ConnectionError):
            store(stores, tenant)
    state = snapshot(stores, tenant)
    # The staged cold file was discarded: no tier shows any part of the day.
    assert cold.list_dates(tenant, "engagement", data_dir=stores.data_dir) == []
    assert state["warm"] == [] and set(state["hot"]) == {None}
    assert not any(stores.data_dir.rglob("*.tmp"))

    store(stores, tenant)
    recovered = snapshot(stores, tenant)
    assert cold.list_dates(tenant, "engagement", data_dir=stores.data_dir) == [AS_OF.date()]
    assert len(recovered["warm"]) == len(IDS)
    assert None not in recovered["hot"]


def test_bad_input_writes_nothing_to_any_tier(stores: Tiers, tenant: str) -> None:
    mixed = day_frame().set_column(
        1, "as_of", pa.array([AS_OF] * 49 + [AS_OF - timedelta(days=1)], pa.timestamp("us"))
    )
    with pytest.raises(FeatureError, match="one as_of"):
        store(stores, tenant, mixed)
    with pytest.raises(FeatureError, match="unknown entity type"):
        tiers.store_day(
            day_frame(),
            tenant,
            "HOUSE",
            "engagement",
            NAMES,
            data_dir=stores.data_dir,
            database=stores.database,
            online=stores.online,
        )
    state = snapshot(stores, tenant)
    assert state == {"cold": [], "warm": [], "hot": [None] * len(IDS)}


def test_warm_values_are_json_objects_in_declared_order(stores: Tiers, tenant: str) -> None:
    store(stores, tenant)
    with stores.database.connect() as conn:
        raw: Any = conn.execute(
            text('SELECT "values" FROM ml_feature_values WHERE tenant_id = :t AND entity_id = :e'),
            {"t": tenant, "e": "u0"},
        ).scalar_one()
    values = json.loads(raw) if isinstance(raw, str) else raw
    assert values == {"visits_7d": None, "opens_30d": 1.0, "score": 2.0}
