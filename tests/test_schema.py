"""The relational schema: every table is tenant-scoped, indexed for the feature engine's access
path, and carries the seed's enums."""

from __future__ import annotations

from enum import StrEnum

import pytest
from sqlalchemy import Engine, Enum, Index, Table, UniqueConstraint, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import conv

from roiml.db import (
    ML_TABLES,
    MONITORING_TABLES,
    PIPELINE_TABLES,
    REGISTRY_TABLES,
    SOURCE_TABLES,
    Base,
)
from roiml.db.enums import (
    DataType,
    EntityType,
    FeatureCategory,
    FeatureType,
    ModelStatus,
    ModelType,
    PredictionType,
)

TABLES = Base.metadata.tables

# Event table -> (its time column, the index the feature engine reads it through).
EVENT_INDEXES: dict[str, tuple[str, str]] = {
    "document_access_events": ("occurred_at", "ix_document_access_events_tenant_user_time"),
    "email_events": ("sent_at", "ix_email_events_tenant_user_time"),
    "platform_sessions": ("started_at", "ix_platform_sessions_tenant_user_time"),
    "alerts": ("sent_at", "ix_alerts_tenant_user_time"),
    "searches": ("searched_at", "ix_searches_tenant_user_time"),
    "transactions": ("closed_at", "ix_transactions_tenant_user_time"),
}


def test_the_six_ml_tables_and_eleven_source_tables_exist() -> None:
    assert len(ML_TABLES) == 6
    assert len(SOURCE_TABLES) == 11
    assert len(set(ML_TABLES) | set(SOURCE_TABLES)) == 17
    assert all(name.startswith("ml_") for name in ML_TABLES)
    every = set(ML_TABLES) | set(SOURCE_TABLES) | set(PIPELINE_TABLES) | set(REGISTRY_TABLES)
    every |= set(MONITORING_TABLES)
    assert set(TABLES) == every


def test_migrated_database_has_exactly_the_model_tables(sqlite_engine: Engine) -> None:
    names = set(inspect(sqlite_engine).get_table_names())
    expected = set(ML_TABLES) | set(SOURCE_TABLES) | set(PIPELINE_TABLES) | set(REGISTRY_TABLES)
    expected |= set(MONITORING_TABLES)
    assert names == expected | {"alembic_version"}


@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_table_has_a_non_nullable_tenant_id(name: str) -> None:
    column = TABLES[name].c.get("tenant_id")
    assert column is not None, f"{name} has no tenant_id"
    assert column.nullable is False
    assert column.type.length == 64  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_key_includes_the_tenant_or_is_surrogate(name: str) -> None:
    # Natural keys are per tenant; only surrogate ids/prediction ids may stand alone.
    table = TABLES[name]
    pk = [c.name for c in table.primary_key.columns]
    assert "tenant_id" in pk or pk in (["id"], ["prediction_id"]), pk
    for constraint in table.constraints:
        if isinstance(constraint, UniqueConstraint):
            assert next(iter(constraint.columns)).name == "tenant_id", constraint.name


def test_every_user_event_table_is_covered() -> None:
    # A new event table (surrogate id + user_id) must join EVENT_INDEXES and get its index.
    event_tables = {
        name for name in SOURCE_TABLES if "user_id" in TABLES[name].c and "id" in TABLES[name].c
    }
    assert event_tables == set(EVENT_INDEXES)


def _index_named(table: Table, name: str) -> Index:
    for index in table.indexes:
        if index.name == name:
            return index
    raise AssertionError(f"{table.name} has no index {name}: {[i.name for i in table.indexes]}")


@pytest.mark.parametrize(("name", "expected"), sorted(EVENT_INDEXES.items()))
def test_event_tables_have_tenant_user_time_index(name: str, expected: tuple[str, str]) -> None:
    time_column, index_name = expected
    index = _index_named(TABLES[name], index_name)
    # Named in the model code, not derived from the naming convention.
    assert isinstance(index.name, str)
    assert not isinstance(index.name, conv)
    assert [c.name for c in index.columns][:3] == ["tenant_id", "user_id", time_column]
    assert not index.unique


@pytest.mark.parametrize(("name", "expected"), sorted(EVENT_INDEXES.items()))
def test_event_indexes_exist_after_migration(
    sqlite_engine: Engine, name: str, expected: tuple[str, str]
) -> None:
    time_column, index_name = expected
    found = {i["name"]: i["column_names"] for i in inspect(sqlite_engine).get_indexes(name)}
    assert index_name in found, found
    assert found[index_name][:3] == ["tenant_id", "user_id", time_column]


FEATURE_VALUES_KEY = ["tenant_id", "entity_type", "entity_id", "feature_set", "as_of"]


def test_feature_values_unique_key() -> None:
    uniques = [
        [c.name for c in constraint.columns]
        for constraint in TABLES["ml_feature_values"].constraints
        if isinstance(constraint, UniqueConstraint)
    ]
    assert FEATURE_VALUES_KEY in uniques


def test_feature_values_unique_key_is_enforced(sqlite_engine: Engine) -> None:
    uniques = inspect(sqlite_engine).get_unique_constraints("ml_feature_values")
    assert FEATURE_VALUES_KEY in [u["column_names"] for u in uniques]
    insert = text(
        "INSERT INTO ml_feature_values "
        '(tenant_id, entity_type, entity_id, feature_set, as_of, "values", created_at) '
        "VALUES ('t', 'USER', 'u1', 'fs', '2024-01-01 00:00:00', '{}', '2024-01-02 00:00:00')"
    )
    with sqlite_engine.begin() as conn:
        conn.execute(insert)
    with pytest.raises(IntegrityError), sqlite_engine.begin() as conn:
        conn.execute(insert)


SEED_ENUMS: dict[type[StrEnum], set[str]] = {
    FeatureType: {"BATCH", "ON_DEMAND", "STREAMING"},
    FeatureCategory: {"BEHAVIORAL", "PROPERTY", "TRANSACTIONAL", "MARKET", "TEMPORAL"},
    DataType: {"INTEGER", "FLOAT", "BOOLEAN", "STRING", "TIMESTAMP", "JSON"},
    EntityType: {"USER", "PROPERTY", "AGENT", "MARKET", "TRANSACTION"},
    ModelType: {"MOVE_PROBABILITY", "TRANSACTION_TYPE", "CONTACT_TIMING", "PROPERTY_VALUE"},
    ModelStatus: {"TRAINING", "TRAINED", "STAGING", "DEPLOYED", "ARCHIVED", "FAILED"},
    PredictionType: {"MOVE_PROBABILITY", "TRANSACTION_TYPE", "CONTACT_TIMING", "PROPERTY_VALUE"},
}


@pytest.mark.parametrize("enum_cls", list(SEED_ENUMS), ids=lambda e: e.__name__)
def test_enums_have_the_seed_members(enum_cls: type[StrEnum]) -> None:
    assert {m.value for m in enum_cls} == SEED_ENUMS[enum_cls]
    assert all(m.name == m.value for m in enum_cls)


def test_enum_columns_store_values_and_check_them() -> None:
    # Every enum column is a VARCHAR + CHECK over the enum's values, never a native type.
    seen: set[type[object]] = set()
    for table in TABLES.values():
        for column in table.columns:
            if isinstance(column.type, Enum):
                enum_cls = column.type.enum_class
                assert enum_cls is not None
                seen.add(enum_cls)
                assert column.type.native_enum is False
                assert column.type.create_constraint is True
                assert list(column.type.enums) == [m.value for m in enum_cls]
    assert set(SEED_ENUMS) <= seen


def test_enum_check_rejects_unknown_values(sqlite_engine: Engine) -> None:
    insert = text(
        "INSERT INTO ml_models (tenant_id, name, version, model_type, status, "
        "parameters, metrics, feature_names, updated_at) VALUES "
        "('t', 'm', :version, 'MOVE_PROBABILITY', :status, '{}', '{}', '[]', "
        "'2024-01-01 00:00:00')"
    )
    with sqlite_engine.begin() as conn:
        conn.execute(insert, {"version": "1", "status": ModelStatus.DEPLOYED.value})
    with pytest.raises(IntegrityError, match="CHECK"), sqlite_engine.begin() as conn:
        conn.execute(insert, {"version": "2", "status": "NOT_A_STATUS"})
