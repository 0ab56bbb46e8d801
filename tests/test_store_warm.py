"""Warm tier: idempotent upserts into ml_feature_values, reads, prune to cold, and RLS."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from sqlalchemy import Engine, text

from roiml.db.engine import tenant_session
from roiml.errors import FeatureError
from roiml.store import cold, warm

DAY1 = datetime(2024, 3, 1)
DAY2 = datetime(2024, 3, 2)
NAMES = ("visits_7d", "opens_30d")


def day_frame(as_of: datetime, rows: Mapping[str, Sequence[float | None]]) -> pa.Table:
    ids = list(rows)
    data: dict[str, Any] = {
        "entity_id": pa.array(ids, pa.string()),
        "as_of": pa.array([as_of] * len(ids), pa.timestamp("us")),
    }
    for index, name in enumerate(NAMES):
        data[name] = pa.array([rows[i][index] for i in ids], pa.float64())
    return pa.table(data)


ROWS = {"u1": (1.0, 2.0), "u2": (3.5, None), "u3": (float("nan"), 0.0)}


def stored_rows(engine: Engine, tenant: str) -> list[dict[str, Any]]:
    """Every column of the tenant's rows, read as the owner (RLS does not apply to it)."""
    query = text(
        'SELECT id, entity_type, entity_id, feature_set, as_of, "values", created_at '
        "FROM ml_feature_values WHERE tenant_id = :t ORDER BY feature_set, as_of, entity_id"
    )
    with engine.connect() as conn:
        rows = [dict(row._mapping) for row in conn.execute(query, {"t": tenant})]
    for row in rows:  # SQLite hands JSON back as text on a raw query
        if isinstance(row["values"], str):
            row["values"] = json.loads(row["values"])
        if isinstance(row["as_of"], str):
            row["as_of"] = datetime.fromisoformat(row["as_of"])
    return rows


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest) -> Engine:
    """The migrated SQL store on each backend (PostgreSQL as the owner: no RLS)."""
    backend: Engine = request.getfixturevalue(f"{request.param}_engine")
    return backend


def write(engine: Engine, frame: pa.Table, tenant: str, feature_set: str = "engagement") -> int:
    return warm.write_day(engine, frame, tenant, "USER", feature_set, NAMES)


def test_write_stores_one_json_row_per_entity(engine: Engine, tenant: str) -> None:
    assert write(engine, day_frame(DAY1, ROWS), tenant) == 3
    rows = stored_rows(engine, tenant)
    assert [(r["entity_type"], r["entity_id"], r["feature_set"], r["as_of"]) for r in rows] == [
        ("USER", "u1", "engagement", DAY1),
        ("USER", "u2", "engagement", DAY1),
        ("USER", "u3", "engagement", DAY1),
    ]
    # NaN is not JSON: it is stored as null, like a missing value.
    assert [r["values"] for r in rows] == [
        {"visits_7d": 1.0, "opens_30d": 2.0},
        {"visits_7d": 3.5, "opens_30d": None},
        {"visits_7d": None, "opens_30d": 0.0},
    ]


def test_writing_a_day_twice_leaves_identical_rows(engine: Engine, tenant: str) -> None:
    write(engine, day_frame(DAY1, ROWS), tenant)
    before = stored_rows(engine, tenant)
    assert write(engine, day_frame(DAY1, ROWS), tenant) == 0
    assert stored_rows(engine, tenant) == before  # ids, values and created_at alike
    assert len(before) == 3


def test_rewriting_with_new_values_updates_in_place(engine: Engine, tenant: str) -> None:
    write(engine, day_frame(DAY1, ROWS), tenant)
    before = {r["entity_id"]: r for r in stored_rows(engine, tenant)}
    changed = dict(ROWS, u2=(4.0, 4.0))
    assert write(engine, day_frame(DAY1, changed), tenant) == 1
    after = {r["entity_id"]: r for r in stored_rows(engine, tenant)}
    assert after["u2"]["values"] == {"visits_7d": 4.0, "opens_30d": 4.0}
    assert after["u2"]["id"] == before["u2"]["id"]
    assert after["u1"] == before["u1"]
    assert len(after) == 3


def test_write_joins_the_callers_transaction(engine: Engine, tenant: str) -> None:
    with engine.connect() as conn:
        warm.write_day(conn, day_frame(DAY1, ROWS), tenant, "USER", "engagement", NAMES)
        conn.rollback()
    assert stored_rows(engine, tenant) == []
    with engine.begin() as conn:
        warm.write_day(conn, day_frame(DAY1, ROWS), tenant, "USER", "engagement", NAMES)
    assert len(stored_rows(engine, tenant)) == 3


def test_read_latest_skips_expired_and_future_rows(engine: Engine, tenant: str) -> None:
    write(engine, day_frame(DAY1, {"u1": (1.0, 1.0)}), tenant)
    write(engine, day_frame(DAY2, {"u1": (2.0, 2.0)}), tenant)
    write(engine, day_frame(DAY1, {"u1": (5.0, 5.0)}), tenant, "profile")
    now = DAY2 + timedelta(hours=6)
    latest = warm.read_latest(
        engine,
        tenant,
        "USER",
        "u1",
        ["engagement", "profile", "nothing"],
        timedelta(days=7),
        now=now,
    )
    assert latest == {
        "engagement": (DAY2, {"visits_7d": 2.0, "opens_30d": 2.0}),
        "profile": (DAY1, {"visits_7d": 5.0, "opens_30d": 5.0}),
    }
    # Older than max_age counts as missing; a later as_of is not known yet at ``now``.
    one_day = warm.read_latest(
        engine, tenant, "USER", "u1", ["engagement", "profile"], timedelta(days=1), now=now
    )
    assert one_day == {"engagement": (DAY2, {"visits_7d": 2.0, "opens_30d": 2.0})}
    before_day2 = warm.read_latest(
        engine,
        tenant,
        "USER",
        "u1",
        ["engagement"],
        timedelta(days=7),
        now=DAY2 - timedelta(hours=1),
    )
    assert before_day2 == {"engagement": (DAY1, {"visits_7d": 1.0, "opens_30d": 1.0})}
    assert warm.read_latest(engine, tenant, "AGENT", "u1", ["profile"], timedelta(days=7)) == {}
    aware = now.replace(tzinfo=UTC)  # an aware "now" means the same instant
    assert warm.read_latest(
        engine, tenant, "USER", "u1", ["engagement"], timedelta(1), now=aware
    ) == {"engagement": (DAY2, {"visits_7d": 2.0, "opens_30d": 2.0})}


def test_read_range_returns_a_feature_frame(engine: Engine, tenant: str) -> None:
    first, second = day_frame(DAY1, ROWS), day_frame(DAY2, {"u1": (7.0, 8.0), "u4": (0.5, 0.5)})
    write(engine, first, tenant)
    write(engine, second, tenant)
    frame = warm.read_range(engine, tenant, "USER", "engagement", NAMES)
    assert frame.schema == first.schema
    # As written, except that NaN reads back as null (the canonical form of a day).
    canonical = [cold.check_day(day, tenant, "engagement", NAMES).frame for day in (first, second)]
    assert frame.to_pylist() == pa.concat_tables(canonical).to_pylist()
    only = warm.read_range(
        engine, tenant, "USER", "engagement", ("opens_30d",), DAY2, date(2024, 3, 2), ["u1", "u9"]
    )
    assert only.to_pydict() == {"entity_id": ["u1"], "as_of": [DAY2], "opens_30d": [8.0]}
    assert warm.read_range(engine, tenant, "USER", "engagement", NAMES, end=DAY1).num_rows == 3
    # A feature the stored rows lack (added to the definition since) reads as null.
    grown = warm.read_range(engine, tenant, "USER", "engagement", ("opens_30d", "new"), DAY2)
    assert grown.to_pydict() == {
        "entity_id": ["u1", "u4"],
        "as_of": [DAY2, DAY2],
        "opens_30d": [8.0, 0.5],
        "new": [None, None],
    }
    assert warm.read_range(engine, tenant, "AGENT", "engagement", NAMES).num_rows == 0
    by_json = warm.read_range(engine, tenant, "USER", "engagement", start=DAY2)
    assert sorted(by_json.column_names) == sorted(["entity_id", "as_of", *NAMES])


def test_prune_moves_old_rows_to_cold_then_deletes_them(
    engine: Engine, tenant: str, tmp_path: Path
) -> None:
    write(engine, day_frame(DAY1, ROWS), tenant)
    write(engine, day_frame(DAY2, {"u1": (7.0, 8.0)}), tenant)
    recent = DAY1 + timedelta(days=40)
    write(engine, day_frame(recent, {"u1": (9.0, 9.0)}), tenant)
    # DAY1 is already in cold for u1 (with the values cold keeps); u2 and u3 are not.
    cold.write_day(
        day_frame(DAY1, {"u1": (1.0, 2.0)}), tenant, "engagement", NAMES, data_dir=tmp_path
    )

    now = recent + timedelta(days=1)
    result = warm.prune(engine, tenant, data_dir=tmp_path, keep_days=30, now=now)
    assert result == warm.PruneResult(copied_to_cold=3, deleted=4, partitions=2)
    assert [r["as_of"] for r in stored_rows(engine, tenant)] == [recent]
    archived = cold.read(tenant, "engagement", data_dir=tmp_path)
    assert archived.select(["entity_id", "as_of", *NAMES]).to_pylist() == [
        {"entity_id": "u1", "as_of": DAY1, "visits_7d": 1.0, "opens_30d": 2.0},
        {"entity_id": "u2", "as_of": DAY1, "visits_7d": 3.5, "opens_30d": None},
        {"entity_id": "u3", "as_of": DAY1, "visits_7d": None, "opens_30d": 0.0},
        {"entity_id": "u1", "as_of": DAY2, "visits_7d": 7.0, "opens_30d": 8.0},
    ]
    again = warm.prune(engine, tenant, data_dir=tmp_path, keep_days=30, now=now)
    assert again == warm.PruneResult(copied_to_cold=0, deleted=0, partitions=0)


def test_prune_refuses_a_feature_set_shared_by_entity_types(
    engine: Engine, tenant: str, tmp_path: Path
) -> None:
    write(engine, day_frame(DAY1, ROWS), tenant)
    warm.write_day(engine, day_frame(DAY1, ROWS), tenant, "AGENT", "engagement", NAMES)
    with pytest.raises(FeatureError, match="entity types"):
        warm.prune(engine, tenant, data_dir=tmp_path, now=DAY1 + timedelta(days=90))
    assert len(stored_rows(engine, tenant)) == 6
    assert cold.list_dates(tenant, "engagement", data_dir=tmp_path) == []


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("tenant", "tenant 'x y' is not valid"),
        ("entity_type", "unknown entity type 'HOUSE'"),
        ("mixed_as_of", "one as_of"),
        ("names", "do not match the frame"),
        ("ints", "features are float64"),
        ("no_as_of", "no 'as_of' column"),
    ],
)
def test_bad_input_is_refused_and_nothing_written(
    engine: Engine, tenant: str, case: str, message: str
) -> None:
    frame, target, kind, names = day_frame(DAY1, ROWS), tenant, "USER", NAMES
    if case == "tenant":
        target = "x y"
    elif case == "entity_type":
        kind = "HOUSE"
    elif case == "mixed_as_of":
        frame = frame.set_column(1, "as_of", pa.array([DAY1, DAY1, DAY2], pa.timestamp("us")))
    elif case == "names":
        names = ("visits_7d", "clicks")
    elif case == "ints":
        frame = frame.set_column(2, "visits_7d", pa.array([1, 2, 3], pa.int64()))
    else:
        frame = frame.drop_columns(["as_of"])
    with pytest.raises(FeatureError, match=message):
        warm.write_day(engine, frame, target, kind, "engagement", names)
    assert stored_rows(engine, tenant) == []


# --------------------------------------------------------------------------- RLS


@pytest.mark.postgres
def test_app_role_writes_reads_and_prunes_its_own_tenant_only(
    app_engine: Engine, postgres_engine: Engine, tenant: str, tmp_path: Path
) -> None:
    other = f"{tenant}_other"
    assert write(app_engine, day_frame(DAY1, ROWS), tenant) == 3
    assert write(app_engine, day_frame(DAY1, ROWS), tenant) == 0
    write(app_engine, day_frame(DAY1, {"u1": (0.0, 0.0)}), other)
    assert len(stored_rows(postgres_engine, tenant)) == 3
    frame = warm.read_range(app_engine, tenant, "USER", "engagement", NAMES)
    assert frame.column("entity_id").to_pylist() == ["u1", "u2", "u3"]
    latest = warm.read_latest(
        app_engine, tenant, "USER", "u1", ["engagement"], timedelta(days=3), now=DAY2
    )
    assert latest == {"engagement": (DAY1, {"visits_7d": 1.0, "opens_30d": 2.0})}
    result = warm.prune(app_engine, tenant, data_dir=tmp_path, now=DAY1 + timedelta(days=60))
    assert result == warm.PruneResult(copied_to_cold=3, deleted=3, partitions=1)
    assert stored_rows(postgres_engine, tenant) == []
    assert len(stored_rows(postgres_engine, other)) == 1  # untouched by the other tenant's prune


@pytest.mark.postgres
def test_a_connection_scoped_to_another_tenant_is_refused(
    app_engine: Engine, postgres_engine: Engine, tenant: str
) -> None:
    with (
        pytest.raises(FeatureError, match="scoped to tenant"),
        tenant_session(app_engine, f"{tenant}_other") as session,
    ):
        warm.write_day(session.connection(), day_frame(DAY1, ROWS), tenant, "USER", "s", NAMES)
    # Inside a session for the same tenant it joins the session's transaction.
    with tenant_session(app_engine, tenant) as session:
        warm.write_day(session.connection(), day_frame(DAY1, ROWS), tenant, "USER", "s", NAMES)
    assert len(stored_rows(postgres_engine, tenant)) == 3


@pytest.mark.postgres
def test_without_the_tenant_setting_rls_would_refuse_the_rows(
    app_engine: Engine, tenant: str
) -> None:
    # The premise: the application role really is under RLS, so write_day's set_config matters.
    with pytest.raises(Exception, match="row-level security"), app_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO ml_feature_values (tenant_id, entity_type, entity_id, feature_set, "
                "as_of, \"values\", created_at) VALUES (:t, 'USER', 'u', 's', now(), '{}', now())"
            ),
            {"t": tenant},
        )
