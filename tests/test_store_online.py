"""Hot tier: both backends (embedded SQLite, real Redis) behind one interface."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import redis

from roiml.errors import FeatureError
from roiml.settings import Settings
from roiml.store import online_records
from roiml.store.online import DEFAULT_TTL, OnlineFeatureSet, OnlineStore, open_online_store
from roiml.store.online_records import HEADER, decode_records, schema_hash, to_epoch_us
from roiml.store.online_redis import RedisOnlineStore
from roiml.store.online_sqlite import SqliteOnlineStore

# Redis expires keys by its own clock, so days are anchored to the real present.
NOW = datetime.now(UTC).replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
TODAY = NOW - timedelta(hours=1)
YESTERDAY = TODAY - timedelta(days=1)
PROFILE = OnlineFeatureSet("profile", ("age_days", "visits_7d", "score"))
ACTIVITY = OnlineFeatureSet("activity", ("opens_30d",), ttl=timedelta(days=2))


def frame(
    as_of: datetime, rows: Mapping[str, Sequence[float | None]], names: tuple[str, ...]
) -> pa.Table:
    ids = list(rows)
    data = {"entity_id": pa.array(ids), "as_of": pa.array([as_of] * len(ids), pa.timestamp("us"))}
    for index, name in enumerate(names):
        data[name] = pa.array([rows[i][index] for i in ids], pa.float64())
    return pa.table(data)


@pytest.fixture(
    params=["embedded", pytest.param("redis", marks=pytest.mark.redis)],
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineStore]:
    """Each backend; on Redis a namespace unique to the test, whose keys are deleted after."""
    if request.param == "embedded":
        embedded = SqliteOnlineStore(tmp_path / "online.db")
        yield embedded
        embedded.close()
        return
    url: str = request.getfixturevalue("redis_url")
    namespace = f"roiml_test_{uuid.uuid4().hex[:10]}"
    # A small write chunk makes even these few rows cross chunk and round-trip boundaries.
    on_redis = RedisOnlineStore(
        redis.Redis.from_url(url), namespace=namespace, write_chunk=2, chunks_per_round_trip=2
    )
    yield on_redis
    client = redis.Redis.from_url(url)
    leftovers = list(client.scan_iter(match=f"{namespace}:*"))
    if leftovers:
        client.delete(*leftovers)
    client.close()
    on_redis.close()


def as_list(vector: object) -> list[float] | None:
    return None if vector is None else np.asarray(vector).tolist()


def test_round_trip_keeps_order_and_turns_null_into_nan(store: OnlineStore, tenant: str) -> None:
    rows: dict[str, list[float | None]] = {
        "u1": [1.0, None, 0.5],
        "u2": [2.0, 3.0, float("nan")],
        "u3": [4.0, 5.0, 6.0],
    }
    assert store.write_day(frame(TODAY, rows, PROFILE.feature_names), tenant, "USER", PROFILE) == 3
    store.write_day(frame(TODAY, {"u2": [7.0]}, ACTIVITY.feature_names), tenant, "USER", ACTIVITY)
    got = store.get_vectors(tenant, "USER", ["u2", "nobody", "u1"], [ACTIVITY, PROFILE], now=NOW)
    assert [[as_list(v) for v in row] for row in got] == [
        [[7.0], [2.0, 3.0, pytest.approx(float("nan"), nan_ok=True)]],
        [None, None],
        [None, [1.0, pytest.approx(float("nan"), nan_ok=True), 0.5]],
    ]
    vector = got[0][1]
    assert vector is not None and vector.dtype == np.float64
    assert store.get_vectors(tenant, "USER", [], [PROFILE]) == []
    # Another tenant or entity type sees nothing.
    assert store.get_vectors(f"{tenant}x", "USER", ["u1"], [PROFILE], now=NOW) == [[None]]
    assert store.get_vectors(tenant, "AGENT", ["u1"], [PROFILE], now=NOW) == [[None]]


def test_get_matrix_puts_all_sets_of_an_entity_in_one_row(store: OnlineStore, tenant: str) -> None:
    profile = frame(TODAY, {"u1": [1.0, 2.0, 3.0]}, PROFILE.feature_names)
    store.write_day(profile, tenant, "USER", PROFILE)
    store.write_day(frame(TODAY, {"u2": [7.0]}, ACTIVITY.feature_names), tenant, "USER", ACTIVITY)
    values, found = store.get_matrix(tenant, "USER", ["u1", "u2", "u3"], [PROFILE, ACTIVITY], NOW)
    assert values.shape == (3, 4) and values.dtype == np.float64
    assert found.tolist() == [[True, False], [False, True], [False, False]]
    np.testing.assert_array_equal(
        values,
        [[1.0, 2.0, 3.0, np.nan], [np.nan, np.nan, np.nan, 7.0], [np.nan] * 4],
    )
    empty = store.get_matrix(tenant, "USER", [], [PROFILE, ACTIVITY])
    assert empty.values.shape == (0, 4) and empty.found.shape == (0, 2)


def test_a_stamped_read_gives_each_found_vectors_as_of(store: OnlineStore, tenant: str) -> None:
    """The online read a person makes shows how old each set is: one round trip, the same
    values and found flags as get_matrix, each found vector's as-of from its header."""
    store.write_day(
        frame(YESTERDAY, {"u1": [1.0, 2.0, 3.0]}, PROFILE.feature_names), tenant, "USER", PROFILE
    )
    store.write_day(
        frame(TODAY, {"u1": [7.0], "u2": [8.0]}, ACTIVITY.feature_names), tenant, "USER", ACTIVITY
    )
    ids, sets = ["u1", "u2", "u3"], [PROFILE, ACTIVITY]
    stamped = store.get_stamped(tenant, "USER", ids, sets, NOW)
    plain = store.get_matrix(tenant, "USER", ids, sets, NOW)
    np.testing.assert_array_equal(stamped.values, plain.values)
    assert (
        stamped.found.tolist()
        == plain.found.tolist()
        == [[True, True], [False, True], [False, False]]
    )
    assert stamped.as_of_us[0].tolist() == [to_epoch_us(YESTERDAY), to_epoch_us(TODAY)]
    assert stamped.as_of_us[1, 1] == to_epoch_us(TODAY)
    # Past ACTIVITY's two-day TTL it is not found, so its stamp is not read.
    later = store.get_stamped(tenant, "USER", ["u1"], sets, TODAY + timedelta(days=3))
    assert later.found.tolist() == [[True, False]]


def test_expiry_is_checked_at_read_time(store: OnlineStore, tenant: str) -> None:
    store.write_day(frame(TODAY, {"u1": [1.0]}, ACTIVITY.feature_names), tenant, "USER", ACTIVITY)
    just_valid = TODAY + ACTIVITY.ttl
    assert store.get_vectors(tenant, "USER", ["u1"], [ACTIVITY], now=just_valid)[0][0] is not None
    # The key still exists in the backend, but its value is older than the set's TTL.
    expired = just_valid + timedelta(microseconds=1)
    assert store.get_vectors(tenant, "USER", ["u1"], [ACTIVITY], now=expired) == [[None]]
    # The reader's TTL governs, not the writer's: a stricter reader sees it as missing.
    strict = OnlineFeatureSet(ACTIVITY.name, ACTIVITY.feature_names, ttl=timedelta(minutes=30))
    assert store.get_vectors(tenant, "USER", ["u1"], [strict], now=NOW) == [[None]]


def test_an_older_day_never_replaces_a_newer_one(store: OnlineStore, tenant: str) -> None:
    names = PROFILE.feature_names
    store.write_day(frame(TODAY, {"u1": [1.0, 1.0, 1.0]}, names), tenant, "USER", PROFILE)
    backfill = frame(YESTERDAY, {"u1": [9.0, 9.0, 9.0], "u2": [2.0, 2.0, 2.0]}, names)
    assert store.write_day(backfill, tenant, "USER", PROFILE) == 1  # only u2, which had nothing
    got = store.get_vectors(tenant, "USER", ["u1", "u2"], [PROFILE], now=NOW)
    assert [as_list(row[0]) for row in got] == [[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]]
    # The same day again is allowed (idempotent), and a newer day replaces.
    store.write_day(frame(TODAY, {"u1": [1.0, 1.0, 1.0]}, names), tenant, "USER", PROFILE)
    store.write_day(frame(NOW, {"u1": [5.0, 5.0, 5.0]}, names), tenant, "USER", PROFILE)
    assert as_list(store.get_vectors(tenant, "USER", ["u1"], [PROFILE], now=NOW)[0][0]) == [5.0] * 3


def test_a_changed_definition_reads_as_missing_and_is_logged(
    store: OnlineStore, tenant: str, caplog: pytest.LogCaptureFixture
) -> None:
    store.write_day(
        frame(TODAY, {"u1": [1.0, 2.0, 3.0]}, PROFILE.feature_names), tenant, "USER", PROFILE
    )
    reordered = OnlineFeatureSet(PROFILE.name, ("visits_7d", "age_days", "score"))
    grown = OnlineFeatureSet(PROFILE.name, (*PROFILE.feature_names, "new_feature"))
    with caplog.at_level(logging.WARNING, logger="roiml.store.online_records"):
        assert store.get_vectors(tenant, "USER", ["u1"], [reordered], now=NOW) == [[None]]
        assert store.get_vectors(tenant, "USER", ["u1"], [grown], now=NOW) == [[None]]
    assert "another definition" in caplog.text
    assert store.get_vectors(tenant, "USER", ["u1"], [PROFILE], now=NOW)[0][0] is not None


def test_a_day_already_expired_writes_nothing(store: OnlineStore, tenant: str) -> None:
    old = frame(NOW - timedelta(days=30), {"u1": [1.0]}, ACTIVITY.feature_names)
    assert store.write_day(old, tenant, "USER", ACTIVITY) == 0
    assert store.get_vectors(tenant, "USER", ["u1"], [ACTIVITY], now=NOW - timedelta(days=29)) == [
        [None]
    ]


def test_delete_tenant_removes_only_that_tenant(store: OnlineStore, tenant: str) -> None:
    one = frame(TODAY, {"u1": [1.0], "u2": [2.0]}, ACTIVITY.feature_names)
    store.write_day(one, tenant, "USER", ACTIVITY)
    store.write_day(one, f"{tenant}_other", "USER", ACTIVITY)
    assert store.delete_tenant(tenant) == 2
    assert store.get_vectors(tenant, "USER", ["u1"], [ACTIVITY], now=NOW) == [[None]]
    assert (
        store.get_vectors(f"{tenant}_other", "USER", ["u1"], [ACTIVITY], now=NOW)[0][0] is not None
    )
    assert store.delete_tenant(f"{tenant}_other") == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("tenant", "tenant 'no/such' is not valid"),
        ("entity_type", "unknown entity type 'HOUSE'"),
        ("mixed", "one as_of"),
        ("names", "do not match the frame"),
        ("no_id", "no 'entity_id' column"),
        ("ints", "features are float64"),
    ],
)
def test_bad_input_is_refused_and_nothing_written(
    store: OnlineStore, tenant: str, change: str, message: str
) -> None:
    good = frame(TODAY, {"u1": [1.0], "u2": [2.0]}, ACTIVITY.feature_names)
    target, kind, feature_set = tenant, "USER", ACTIVITY
    if change == "tenant":
        target = "no/such"
    elif change == "entity_type":
        kind = "HOUSE"
    elif change == "mixed":
        good = good.set_column(1, "as_of", pa.array([TODAY, YESTERDAY], pa.timestamp("us")))
    elif change == "names":
        feature_set = OnlineFeatureSet(ACTIVITY.name, ("opens_30d", "clicks_30d"))
    elif change == "no_id":
        good = good.drop_columns(["entity_id"])
    else:
        good = good.set_column(2, "opens_30d", pa.array([1, 2], pa.int64()))
    with pytest.raises(FeatureError, match=message):
        store.write_day(good, target, kind, feature_set)
    assert store.get_vectors(tenant, "USER", ["u1", "u2"], [ACTIVITY], now=NOW) == [[None], [None]]


@pytest.mark.redis
def test_redis_keys_records_and_expiry(redis_url: str, tenant: str) -> None:
    client = redis.Redis.from_url(redis_url)
    store = RedisOnlineStore(client, namespace="roiml_test")
    try:
        store.write_day(
            frame(TODAY, {"u1": [1.0, 2.0, 3.0]}, PROFILE.feature_names), tenant, "USER", PROFILE
        )
        key = f"roiml_test:v1:{tenant}:USER:profile:u1"
        record = client.get(key)
        assert isinstance(record, bytes) and len(record) == PROFILE.record_size == 16 + 3 * 8
        assert HEADER.unpack_from(record) == (
            to_epoch_us(TODAY),
            schema_hash(PROFILE.feature_names),
        )
        assert np.frombuffer(record, "<f8", offset=16).tolist() == [1.0, 2.0, 3.0]
        # The key dies ttl after its as_of (by Redis' clock), not ttl after the write.
        expires_ms = client.pexpiretime(key)
        assert expires_ms == (to_epoch_us(TODAY) + DEFAULT_TTL // timedelta(microseconds=1)) // 1000
    finally:
        store.delete_tenant(tenant)
        store.close()


def test_embedded_store_is_a_wal_sqlite_file(tmp_path: Path, tenant: str) -> None:
    path = tmp_path / "data" / "online.db"
    store = open_online_store(Settings(_env_file=None, data_dir=tmp_path / "data"))
    try:
        assert isinstance(store, SqliteOnlineStore)
        store.write_day(
            frame(TODAY, {"u1": [1.0]}, ACTIVITY.feature_names), tenant, "USER", ACTIVITY
        )
    finally:
        store.close()
    import sqlite3

    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        keys = connection.execute("SELECT key FROM online_vectors").fetchall()
    assert keys == [(f"roiml:v1:{tenant}:USER:activity:u1".encode(),)]
    # Reopening finds what was written.
    reopened = SqliteOnlineStore(path)
    try:
        assert reopened.get_vectors(tenant, "USER", ["u1"], [ACTIVITY], now=NOW)[0][0] is not None
    finally:
        reopened.close()


def test_settings_with_redis_url_open_the_redis_store(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path, redis_url="redis://127.0.0.1:1/0")
    store = open_online_store(settings)  # connecting is lazy: no server needed here
    assert isinstance(store, RedisOnlineStore)
    store.close()


def test_feature_set_spec_is_resolved_once() -> None:
    assert PROFILE.record_size == 40
    assert PROFILE.ttl_us == 7 * 86_400 * 1_000_000
    assert schema_hash(("a", "b")) != schema_hash(("b", "a"))
    assert schema_hash(("ab",)) != schema_hash(("a", "b"))
    with pytest.raises(FeatureError, match="feature set 'x:y' is not valid"):
        OnlineFeatureSet("x:y", ("a",))
    with pytest.raises(ValueError, match="tuple of feature names"):
        OnlineFeatureSet("x", ())


# --------------------------------------------------------------------------- fast decode path

NOW_US = to_epoch_us(NOW)
HOUR_US = 3_600_000_000
# A quiet NaN with a payload: only a bit-for-bit copy keeps it.
ODD_NAN = np.frombuffer((0x7FF8_0000_0000_BEEF).to_bytes(8, "little"), "<f8")[0]


def record(feature_set: OnlineFeatureSet, values: Sequence[float], as_of_us: int) -> bytes:
    return HEADER.pack(as_of_us, feature_set.schema_hash) + np.asarray(values, "<f8").tobytes()


def records_for(entities: int, sets: Sequence[OnlineFeatureSet]) -> list[bytes | None]:
    """Entity-major records, every value distinct so a misplaced one shows."""
    out: list[bytes | None] = []
    value = 0.0
    for _ in range(entities):
        for feature_set in sets:
            width = len(feature_set.feature_names)
            out.append(record(feature_set, np.arange(value, value + width), NOW_US - HOUR_US))
            value += width
    return out


def _missing(records: list[bytes | None]) -> None:
    records[1] = None


def _stale(records: list[bytes | None]) -> None:
    records[0] = record(PROFILE, [1.0, 2.0, 3.0], NOW_US - PROFILE.ttl_us - 1)


def _just_fresh(records: list[bytes | None]) -> None:
    records[0] = record(PROFILE, [1.0, 2.0, 3.0], NOW_US - PROFILE.ttl_us)


def _other_hash(records: list[bytes | None]) -> None:
    reordered = OnlineFeatureSet(ACTIVITY.name, ("opens_30d_v2",))
    records[1] = record(reordered, [9.0], NOW_US - HOUR_US)


def _later_entity_stale(records: list[bytes | None]) -> None:
    records[5] = record(ACTIVITY, [9.0], NOW_US - ACTIVITY.ttl_us - HOUR_US)


def _nan_values(records: list[bytes | None]) -> None:
    records[0] = record(PROFILE, [np.nan, ODD_NAN, -0.0], NOW_US - HOUR_US)
    records[1] = record(ACTIVITY, [np.nan], NOW_US - HOUR_US)


def _truncated(records: list[bytes | None]) -> None:
    first = records[0]
    assert first is not None
    records[0] = first[:-8]


def _shifted(records: list[bytes | None]) -> None:
    # One record short and the next long by as much: the total length is still right.
    first, second = records[0], records[1]
    assert first is not None and second is not None
    records[0], records[1] = first[:-8], first[-8:] + second


def _unchanged(records: list[bytes | None]) -> None:
    pass


@pytest.mark.parametrize(
    ("entities", "sets", "change", "fast"),
    [
        pytest.param(1, (PROFILE, ACTIVITY), _unchanged, True, id="all-present"),
        pytest.param(1, (PROFILE, ACTIVITY), _missing, False, id="one-missing"),
        pytest.param(1, (PROFILE, ACTIVITY), _stale, False, id="one-stale"),
        pytest.param(1, (PROFILE, ACTIVITY), _just_fresh, True, id="ttl-boundary"),
        pytest.param(1, (PROFILE, ACTIVITY), _other_hash, False, id="other-schema-hash"),
        pytest.param(4, (PROFILE, ACTIVITY), _unchanged, True, id="several-entities"),
        pytest.param(4, (PROFILE, ACTIVITY), _later_entity_stale, False, id="several-one-stale"),
        pytest.param(3, (PROFILE, ACTIVITY), _nan_values, True, id="nan-values"),
        pytest.param(2, (ACTIVITY, PROFILE), _unchanged, True, id="other-set-order"),
        pytest.param(1, (PROFILE, ACTIVITY), _truncated, False, id="truncated"),
        pytest.param(1, (PROFILE, ACTIVITY), _shifted, False, id="shifted"),
        pytest.param(0, (PROFILE, ACTIVITY), _unchanged, True, id="no-entities"),
    ],
)
def test_fast_decode_equals_the_general_path(
    entities: int,
    sets: tuple[OnlineFeatureSet, ...],
    change: Callable[[list[bytes | None]], None],
    fast: bool,
) -> None:
    records = records_for(entities, sets)
    if entities:
        change(records)
    assert (online_records._whole_rows(records, entities, sets, NOW_US) is not None) is fast
    warned_fast: set[tuple[str, int]] = set()
    warned_general: set[tuple[str, int]] = set()
    got = decode_records(records, entities, sets, NOW_US, warned_fast)
    want = online_records._per_set(records, entities, sets, NOW_US, warned_general)
    assert got.values.dtype == want.values.dtype == np.float64
    assert got.values.shape == want.values.shape
    # Bit for bit: NaN payloads and -0.0 included.
    assert got.values.tobytes() == want.values.tobytes()
    assert got.found.dtype == want.found.dtype == np.bool_
    assert got.found.tolist() == want.found.tolist()
    assert got.values.flags.c_contiguous and got.values.flags.writeable
    assert got.found.flags.writeable
    assert warned_fast == warned_general


def test_a_full_read_takes_the_fast_path(
    store: OnlineStore, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = {"u1": [1.0, None, 3.0], "u2": [4.0, 5.0, 6.0]}
    store.write_day(frame(TODAY, rows, PROFILE.feature_names), tenant, "USER", PROFILE)
    activity = frame(TODAY, {"u1": [7.0], "u2": [8.0]}, ACTIVITY.feature_names)
    store.write_day(activity, tenant, "USER", ACTIVITY)

    def refuse(*args: object) -> None:
        raise AssertionError("the general path ran for a read with nothing missing")

    monkeypatch.setattr(online_records, "_per_set", refuse)
    values, found = store.get_matrix(tenant, "USER", ["u2", "u1"], [ACTIVITY, PROFILE], NOW)
    assert found.all()
    np.testing.assert_array_equal(values, [[8.0, 4.0, 5.0, 6.0], [7.0, 1.0, np.nan, 3.0]])
    # Anything missing still goes the general way.
    with pytest.raises(AssertionError, match="general path"):
        store.get_matrix(tenant, "USER", ["u1", "nobody"], [ACTIVITY, PROFILE], NOW)
