"""End to end on a small world: materialize days into the three tiers, then read them back for
training (point in time, from cold) and for prediction (online, warm, or computed)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from sqlalchemy import Engine, text

from roiml.db.engine import make_engine
from roiml.db.migrate import upgrade
from roiml.errors import FeatureError
from roiml.features.catalog import CATALOG
from roiml.features.engineer import FeatureEngineer
from roiml.store import cold
from roiml.store.materialize import FeatureValidationError, materialize_day
from roiml.store.online_sqlite import SqliteOnlineStore
from roiml.store.retrieval import FeatureStore
from roiml.world.config import WorldConfig
from roiml.world.generate import generate_world

DAYS = [date(2024, 3, 4), date(2024, 3, 5)]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> FeatureStore:
    tmp = tmp_path_factory.mktemp("retrieval")
    engine = make_engine(f"sqlite:///{tmp / 'world.db'}")
    upgrade(engine)
    config = WorldConfig(
        users=200, start=date(2023, 6, 1), end=date(2024, 6, 1), seed=9, tenant_id="r"
    )
    generate_world(engine, tmp / "data", config)
    feature_store = FeatureStore(engine, "r", tmp / "data", SqliteOnlineStore(tmp / "online.db"))
    for day in DAYS:
        materialize_day(feature_store, day, now=datetime.combine(day, time(2)), on_time=True)
    return feature_store


def _count(engine: Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


def test_a_day_lands_in_every_tier(store: FeatureStore) -> None:
    for name in CATALOG.feature_sets:
        assert cold.list_dates("r", name, data_dir=store.data_dir) == DAYS
    assert _count(store.engine, "SELECT count(*) FROM ml_feature_values") == 200 * 2 * 5
    assert _count(
        store.engine, "SELECT count(*) FROM ml_features WHERE null_rate IS NOT NULL"
    ) == len(CATALOG.features)
    features = store.create_prediction_features(
        "user_7", "MOVE_PROBABILITY", now=datetime(2024, 3, 5, 9)
    )
    assert features.feature_source == "online"
    assert len(features.values) == len(CATALOG.features)


def test_materializing_a_day_twice_changes_nothing(store: FeatureStore) -> None:
    day = DAYS[-1]
    before_cold = {
        n: (cold.partition_dir(store.data_dir, "r", n, day) / cold.PART_FILE).read_bytes()
        for n in CATALOG.feature_sets
    }
    with store.engine.connect() as conn:
        before_warm = conn.execute(text("SELECT * FROM ml_feature_values ORDER BY id")).all()
    materialize_day(store, day, now=datetime.combine(day, time(2)), on_time=True)
    after_cold = {
        n: (cold.partition_dir(store.data_dir, "r", n, day) / cold.PART_FILE).read_bytes()
        for n in CATALOG.feature_sets
    }
    with store.engine.connect() as conn:
        after_warm = conn.execute(text("SELECT * FROM ml_feature_values ORDER BY id")).all()
    assert before_cold == after_cold
    assert before_warm == after_warm


def test_training_rows_get_the_vector_of_their_time(store: FeatureStore) -> None:
    frame = pa.table(
        {
            "entity_id": ["user_1", "user_1", "user_2", "user_1", "user_3"],
            "event_timestamp": pa.array(
                [
                    datetime(2024, 3, 4, 12),
                    datetime(2024, 3, 5, 1),
                    datetime(2024, 3, 5, 23),
                    datetime(2024, 3, 3),
                    datetime(2024, 3, 20),
                ],
                pa.timestamp("us"),
            ),
            "label": [1, 0, 1, 0, 1],
        }
    )
    dataset = store.create_training_dataset(
        entity_frame=frame, feature_sets=["behavioral", "property"]
    )
    assert dataset.column("label").to_pylist() == [1, 0, 1, 0, 1]
    assert dataset.num_rows == 5
    engineer = FeatureEngineer(store.engine, "r")
    for row, day in ((0, DAYS[0]), (1, DAYS[1]), (2, DAYS[1])):
        expected = engineer.compute_feature_set(
            ["behavioral", "property"],
            dataset["entity_id"][row].as_py(),
            as_of_date=datetime.combine(day, time()),
        )
        got = {name: dataset[name][row].as_py() for name in expected}
        for name, value in expected.items():
            assert (value is None and got[name] is None) or np.isclose(value, got[name]), name
    # Before any stored day, and past the TTL: nulls, the row kept.
    assert dataset["session_count_30d"][3].as_py() is None
    assert dataset["session_count_30d"][4].as_py() is None


def test_values_created_after_the_row_are_not_used_for_training(
    store: FeatureStore, tmp_path: Path
) -> None:
    # Rewrite day 1 with other values, created "now": a training row on day 1 must not see them.
    late = FeatureStore(store.engine, "r", tmp_path, store.online)
    names = CATALOG.feature_set("temporal")
    day = DAYS[0]
    frame = pa.table(
        {
            "entity_id": ["user_1"],
            "as_of": pa.array([datetime.combine(day, time())], pa.timestamp("us")),
            **{name: pa.array([1.0]) for name in names},
        }
    )
    cold.write_day(
        frame, "r", "temporal", names, data_dir=tmp_path, created_at=datetime(2024, 5, 1)
    )
    rows = pa.table(
        {
            "entity_id": ["user_1", "user_1"],
            "event_timestamp": pa.array(
                [datetime(2024, 3, 4, 12), datetime(2024, 5, 2)], pa.timestamp("us")
            ),
        }
    )
    strict = late.create_training_dataset(
        entity_frame=rows, feature_sets=["temporal"], ttl=timedelta(days=90)
    )
    assert strict["day_of_week"].to_pylist() == [None, 1.0]
    lenient = late.create_training_dataset(
        entity_frame=rows,
        feature_sets=["temporal"],
        ttl=timedelta(days=90),
        only_known_at_event_time=False,
    )
    assert lenient["day_of_week"].to_pylist() == [1.0, 1.0]


def test_prediction_falls_back_from_online_to_warm_to_computed(
    store: FeatureStore, tmp_path: Path
) -> None:
    empty_online = FeatureStore(
        store.engine, "r", store.data_dir, SqliteOnlineStore(tmp_path / "none.db")
    )
    warm = empty_online.create_prediction_features(
        "user_3", "PROPERTY_VALUE", now=datetime(2024, 3, 6, 8)
    )
    assert set(warm.sources.values()) == {"warm"}
    computed = empty_online.create_prediction_features(
        "user_3", "PROPERTY_VALUE", now=datetime(2024, 4, 20)
    )
    assert set(computed.sources.values()) == {"computed"}
    online = store.create_prediction_features(
        "user_3", "PROPERTY_VALUE", now=datetime(2024, 3, 6, 8)
    )
    assert online.values == warm.values


def test_a_day_failing_validation_is_stored_nowhere(
    store: FeatureStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from roiml.features import catalog as catalog_module

    fresh = FeatureStore(store.engine, "r", tmp_path, SqliteOnlineStore(tmp_path / "o.db"))
    strict = dict(catalog_module.CATALOG.features)
    from dataclasses import replace

    strict["session_count_30d"] = replace(strict["session_count_30d"], valid_max=0)
    monkeypatch.setattr(fresh.catalog, "features", strict)
    with pytest.raises(FeatureValidationError, match="session_count_30d: valid range"):
        materialize_day(fresh, DAYS[0], entity_ids=["user_1", "user_2", "user_9"])
    assert not (tmp_path / "features").exists()


def test_bad_retrieval_requests(store: FeatureStore) -> None:
    with pytest.raises(FeatureError, match="entity_ids"):
        store.create_training_dataset(feature_sets=["behavioral"])
    with pytest.raises(FeatureError, match="lacks"):
        store.create_training_dataset(
            entity_frame=pa.table({"entity_id": ["u"]}), feature_sets=["behavioral"]
        )
    with pytest.raises(FeatureError, match="unknown feature set"):
        store.create_training_dataset(["user_1"], ["behavioural"], datetime(2024, 3, 5))


def test_a_future_day_is_refused(store: FeatureStore) -> None:
    with pytest.raises(FeatureError, match="in the future"):
        materialize_day(store, date(2024, 6, 1), now=datetime(2024, 5, 31))


def test_one_read_serves_a_mixed_group_as_one_entity_at_a_time(
    store: FeatureStore, tmp_path: Path
) -> None:
    # The serving path: one group, online hits, an unknown entity and a past instant together;
    # each row as create_prediction_features (one entity) and the engine (as of then) give it.
    from roiml.store.vectors import PredictionVectors

    names = [*CATALOG.feature_set("property"), *CATALOG.feature_set("behavioral")[:3]]
    now, past = datetime(2024, 3, 6, 8), datetime(2024, 3, 5, 12)
    vectors = PredictionVectors(store.engine, store.online)
    read = vectors.read(
        "r", names, ["user_3", "user_4", "nobody", "user_5"], [None] * 3 + [past], now
    )
    assert read.sources()[:2] == ["online", "online"] and read.sources()[3] == "computed"
    assert set(read.errors) == {2} and read.errors[2].reason == "unknown_entity"
    assert np.isnan(read.values[2]).all()
    one = store.create_prediction_features("user_4", feature_names=names, now=now)
    assert one.feature_source == "online"
    np.testing.assert_array_equal(
        read.values[1], [np.nan if v is None else v for v in one.values.values()]
    )
    then = FeatureEngineer(store.engine, "r").compute_feature_set(names, "user_5", as_of_date=past)
    np.testing.assert_allclose(
        read.values[3], [np.nan if then[n] is None else then[n] for n in names], rtol=1e-12
    )
    # Nothing online: the warm tier has the same vector; past the TTL, computed as of now.
    empty = PredictionVectors(store.engine, SqliteOnlineStore(tmp_path / "none.db"))
    warm = empty.read("r", names, ["user_3"], now=now)
    assert warm.sources() == ["warm"] and warm.set_sources(0) == {
        "property": "warm",
        "behavioral": "warm",
    }
    np.testing.assert_array_equal(warm.values[0], read.values[0])
    late = datetime(2024, 4, 20)
    computed = empty.read("r", names, ["user_3"], now=late)
    assert computed.sources() == ["computed"]
    fresh = FeatureEngineer(store.engine, "r").compute_feature_set(names, "user_3", as_of_date=late)
    np.testing.assert_allclose(
        computed.values[0], [np.nan if fresh[n] is None else fresh[n] for n in names], rtol=1e-12
    )
