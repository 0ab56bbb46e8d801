"""Migrations: idempotent upgrade, models and migrations agree, downgrade and re-upgrade work."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, Enum, inspect, text

from roiml.db import (
    ML_TABLES,
    MONITORING_TABLES,
    PIPELINE_TABLES,
    REGISTRY_TABLES,
    SOURCE_TABLES,
    Base,
)
from roiml.db.engine import make_engine
from roiml.db.migrate import alembic_config, alembic_head, current_revision, upgrade
from roiml.db.revision import head_revision

ALL_TABLES = (
    set(ML_TABLES)
    | set(SOURCE_TABLES)
    | set(PIPELINE_TABLES)
    | set(REGISTRY_TABLES)
    | set(MONITORING_TABLES)
)


def schema_snapshot(engine: Engine) -> dict[str, Any]:
    """Everything the inspector knows about every table, plus RLS state on PostgreSQL."""
    inspector = inspect(engine)
    snapshot: dict[str, Any] = {}
    for table in sorted(inspector.get_table_names()):
        snapshot[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                for c in inspector.get_columns(table)
            ],
            "pk": inspector.get_pk_constraint(table),
            "fks": inspector.get_foreign_keys(table),
            "indexes": sorted(
                (i["name"] or "", tuple(i["column_names"]), bool(i["unique"]))
                for i in inspector.get_indexes(table)
            ),
            "uniques": sorted(
                (u["name"] or "", tuple(u["column_names"]))
                for u in inspector.get_unique_constraints(table)
            ),
            "checks": sorted(
                (c["name"] or "", c["sqltext"]) for c in inspector.get_check_constraints(table)
            ),
        }
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            snapshot["__policies__"] = sorted(
                tuple(row)
                for row in conn.execute(
                    text(
                        "SELECT tablename, policyname, cmd, qual, with_check FROM pg_policies "
                        "WHERE schemaname = 'public'"
                    )
                )
            )
            snapshot["__rls__"] = sorted(tuple(row) for row in conn.execute(text(RLS_QUERY)))
    return snapshot


RLS_QUERY = (
    "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = 'public' AND c.relkind = 'r'"
)


def model_differences(engine: Engine) -> list[Any]:
    """Alembic's autogenerate diff between the live database and ``Base.metadata``."""
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        diff: list[Any] = compare_metadata(context, Base.metadata)
    return diff


def enum_checks_in_database(engine: Engine) -> dict[tuple[str, str], set[str]]:
    """(table, CHECK name) -> the quoted values the database's CHECK constraint allows."""
    inspector = inspect(engine)
    found: dict[tuple[str, str], set[str]] = {}
    for table in ALL_TABLES:
        for check in inspector.get_check_constraints(table):
            if check["name"] and check["name"].endswith("_values"):
                found[(table, check["name"])] = set(re.findall(r"'([^']*)'", check["sqltext"]))
    return found


def enum_checks_in_models() -> dict[tuple[str, str], set[str]]:
    expected: dict[tuple[str, str], set[str]] = {}
    for table in Base.metadata.sorted_tables:
        for column in table.columns:
            if isinstance(column.type, Enum):
                name = f"ck_{table.name}_{column.type.name}"
                expected[(table.name, name)] = set(column.type.enums)
    return expected


def downgrade(engine: Engine, revision: str) -> None:
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


@pytest.fixture
def fresh_sqlite(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    yield engine
    engine.dispose()


@pytest.fixture
def fresh_postgres(postgres_empty_url: str) -> Iterator[Engine]:
    engine = make_engine(postgres_empty_url)
    yield engine
    engine.dispose()


def test_head_is_the_newest_revision() -> None:
    assert head_revision() == "0010"
    # The start-up check reads file names, not Alembic: both must name the same head, so a
    # migration file named off the NNNN_name.py pattern breaks here, not in production.
    assert head_revision() == alembic_head()


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_upgrade_twice_changes_nothing(backend: str, request: pytest.FixtureRequest) -> None:
    engine: Engine = request.getfixturevalue(f"fresh_{backend}")
    assert current_revision(engine) is None
    assert upgrade(engine) == head_revision()
    first = schema_snapshot(engine)
    assert set(first) - {"__policies__", "__rls__"} == ALL_TABLES | {"alembic_version"}

    assert upgrade(engine) == head_revision()
    assert schema_snapshot(engine) == first
    with engine.connect() as conn:
        versions: Sequence[str] = (
            conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        )
    assert versions == [head_revision()]


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_models_and_migrations_agree(backend: str, request: pytest.FixtureRequest) -> None:
    engine: Engine = request.getfixturevalue(f"fresh_{backend}")
    upgrade(engine)
    assert model_differences(engine) == []


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_enum_checks_match_the_models(backend: str, request: pytest.FixtureRequest) -> None:
    # Autogenerate does not compare CHECK constraints; the migration spells enum values out.
    engine: Engine = request.getfixturevalue(f"fresh_{backend}")
    upgrade(engine)
    assert enum_checks_in_database(engine) == enum_checks_in_models()


def test_upgrade_keeps_existing_rows(fresh_sqlite: Engine) -> None:
    upgrade(fresh_sqlite)
    with fresh_sqlite.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO agents (agent_id, tenant_id, name, market_id, hired_at) "
                "VALUES ('a1', 't', 'Ann', 'm1', '2020-01-01 00:00:00')"
            )
        )
    upgrade(fresh_sqlite)
    with fresh_sqlite.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM agents")).scalar_one() == 1


def test_sqlite_downgrade_and_upgrade_again(fresh_sqlite: Engine) -> None:
    upgrade(fresh_sqlite)
    first = schema_snapshot(fresh_sqlite)
    downgrade(fresh_sqlite, "base")
    assert current_revision(fresh_sqlite) is None
    assert set(inspect(fresh_sqlite).get_table_names()) == {"alembic_version"}
    upgrade(fresh_sqlite)
    assert schema_snapshot(fresh_sqlite) == first


@pytest.mark.postgres
def test_postgres_downgrade_to_base_and_upgrade_again(fresh_postgres: Engine) -> None:
    upgrade(fresh_postgres)
    first = schema_snapshot(fresh_postgres)

    downgrade(fresh_postgres, "0001")
    assert current_revision(fresh_postgres) == "0001"
    after_0001 = schema_snapshot(fresh_postgres)
    assert after_0001["__policies__"] == []
    assert all(not rls for _name, rls, _force in after_0001["__rls__"])

    downgrade(fresh_postgres, "base")
    assert current_revision(fresh_postgres) is None
    assert set(inspect(fresh_postgres).get_table_names()) == {"alembic_version"}

    assert upgrade(fresh_postgres) == head_revision()
    assert schema_snapshot(fresh_postgres) == first
    assert model_differences(fresh_postgres) == []


@pytest.mark.postgres
def test_postgres_rls_covers_every_table(fresh_postgres: Engine) -> None:
    upgrade(fresh_postgres)
    snapshot = schema_snapshot(fresh_postgres)
    rls = {name: enabled for name, enabled, _force in snapshot["__rls__"]}
    assert {name for name, enabled in rls.items() if enabled} == ALL_TABLES
    assert rls["alembic_version"] is False
    policies = {row[0]: row for row in snapshot["__policies__"]}
    assert set(policies) == ALL_TABLES
    for table, policy, cmd, using, with_check in policies.values():
        assert policy == "tenant_isolation", table
        assert cmd == "ALL"
        for condition in (using, with_check):
            assert "current_setting('app.tenant_id'" in condition
            assert "tenant_id" in condition


@pytest.mark.postgres
def test_postgres_step_by_step_upgrade(fresh_postgres: Engine) -> None:
    assert upgrade(fresh_postgres, "0001") == "0001"
    assert not any(enabled for _n, enabled, _f in schema_snapshot(fresh_postgres)["__rls__"])
    assert upgrade(fresh_postgres, "0002") == "0002"
    assert upgrade(fresh_postgres, "0004") == "0004"
    assert upgrade(fresh_postgres) == "0010"
    assert upgrade(fresh_postgres) == "0010"
