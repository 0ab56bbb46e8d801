"""Tenancy: PostgreSQL row-level security isolates tenants for the application role, and
``tenant_session``'s ORM filter does the same for ORM queries on every backend."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import Engine, delete, func, insert, select, text, update
from sqlalchemy.exc import DBAPIError

from conftest import application_role
from roiml.db import EmailEvent, MLPrediction, User
from roiml.db.engine import make_engine, tenant_session
from roiml.db.roles import grant_app_role
from roiml.errors import ConfigurationError

T0 = datetime(2024, 3, 1, 12, 0, 0)

# Table -> how many rows each tenant gets. B has a different count so a leak would show.
ROWS = {"A": 3, "B": 2}
TABLES = ("users", "email_events", "ml_predictions")


def user_row(tenant: str, i: int) -> dict[str, Any]:
    return {
        "tenant_id": tenant,
        "user_id": f"u{i}",
        "market_id": "m1",
        "created_at": T0,
        "email_opt_in": True,
        "is_active": True,
    }


def email_row(tenant: str, i: int) -> dict[str, Any]:
    return {
        "tenant_id": tenant,
        "user_id": f"u{i}",
        "campaign_id": "c1",
        "email_type": "NEWSLETTER",
        "sent_at": T0,
        "unsubscribed": False,
    }


def prediction_row(tenant: str, i: int) -> dict[str, Any]:
    return {
        "tenant_id": tenant,
        "prediction_id": f"{tenant}-p{i}",
        "model_name": "move",
        "model_version": "1",
        "prediction_type": "MOVE_PROBABILITY",
        "entity_type": "USER",
        "entity_id": f"u{i}",
        "features": {},
        "predicted_at": T0,
    }


def seed(engine: Engine, tenants: dict[str, str]) -> None:
    """Insert ROWS[label] rows per table for each tenant (as the owner: RLS does not apply)."""
    with engine.begin() as conn:
        for label, tenant in tenants.items():
            for i in range(ROWS[label]):
                conn.execute(insert(User), user_row(tenant, i))
                conn.execute(insert(EmailEvent), email_row(tenant, i))
                conn.execute(insert(MLPrediction), prediction_row(tenant, i))


def tenant_ids(rows: Any) -> list[str]:
    return sorted(row.tenant_id for row in rows)


# --------------------------------------------------------------------------- no server needed


def test_grant_app_role_refuses_sqlite(sqlite_engine: Engine) -> None:
    with pytest.raises(ConfigurationError, match="PostgreSQL"):
        grant_app_role(sqlite_engine, "roiml_app")


@pytest.mark.parametrize(
    "role", ["", "Upper", "has-dash", "x; DROP TABLE users", 'q"uote', "1starts_digit", "a" * 64]
)
def test_grant_app_role_rejects_bad_names(role: str) -> None:
    # The name is checked before any connection is made, so no server is needed.
    engine = make_engine("postgresql://postgres@127.0.0.1:1/never_connected")
    try:
        with pytest.raises(ConfigurationError, match="role name"):
            grant_app_role(engine, role)
    finally:
        engine.dispose()


def test_orm_filter_hides_other_tenants_on_sqlite(sqlite_engine: Engine) -> None:
    tenants = {"A": "tenant_a", "B": "tenant_b"}
    seed(sqlite_engine, tenants)
    a, b = tenants["A"], tenants["B"]

    with tenant_session(sqlite_engine, a) as session:
        assert {u.tenant_id for u in session.scalars(select(User))} == {a}
        assert len(session.scalars(select(User)).all()) == ROWS["A"]
        assert len(session.scalars(select(EmailEvent)).all()) == ROWS["A"]
        assert session.scalar(select(func.count()).select_from(MLPrediction)) == ROWS["A"]
        # Even an explicit filter on the other tenant finds nothing.
        assert session.scalars(select(User).where(User.tenant_id == b)).all() == []
        assert session.get(User, ("u0", b)) is None
        # ORM-enabled UPDATE / DELETE touch only this tenant's rows.
        session.execute(update(User).values(market_id="changed"))
        session.execute(delete(EmailEvent))

    with sqlite_engine.connect() as conn:
        markets: dict[str, str] = dict(
            conn.execute(
                text("SELECT tenant_id, min(market_id) FROM users GROUP BY tenant_id")
            ).all()
        )
        emails: dict[str, int] = dict(
            conn.execute(
                text("SELECT tenant_id, count(*) FROM email_events GROUP BY tenant_id")
            ).all()
        )
    assert markets == {a: "changed", b: "m1"}
    assert emails == {b: ROWS["B"]}


def test_tenant_session_rolls_back_on_error(sqlite_engine: Engine) -> None:
    with pytest.raises(RuntimeError), tenant_session(sqlite_engine, "t1") as session:
        session.execute(insert(User), user_row("t1", 0))
        raise RuntimeError("boom")
    with sqlite_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM users")).scalar_one() == 0


# --------------------------------------------------------------------------- PostgreSQL RLS


@dataclass(frozen=True)
class RLSWorld:
    owner: Engine  # the superuser that owns the tables: RLS does not apply to it
    app: Engine  # connected as the application role: RLS applies
    role: str
    a: str
    b: str


@pytest.fixture(scope="module")
def rls(postgres_url: str) -> Iterator[RLSWorld]:
    owner = make_engine(postgres_url)
    suffix = uuid.uuid4().hex[:8]
    world_tenants = {"A": f"rls_a_{suffix}", "B": f"rls_b_{suffix}"}
    seed(owner, world_tenants)
    # pool_size=1: every test reuses one server session, which proves the tenant setting does
    # not survive its transaction.
    with application_role(postgres_url, pool_size=1, max_overflow=0) as (app, role):
        try:
            yield RLSWorld(owner, app, role, world_tenants["A"], world_tenants["B"])
        finally:
            owner.dispose()


def counts_by_tenant(engine: Engine, table: str, tenants: tuple[str, str]) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                f"SELECT tenant_id, count(*) AS n FROM {table} "
                "WHERE tenant_id IN (:a, :b) GROUP BY tenant_id"
            ),
            {"a": tenants[0], "b": tenants[1]},
        )
        return {row.tenant_id: row.n for row in rows}


@pytest.mark.postgres
def test_app_role_is_not_privileged(rls: RLSWorld) -> None:
    with rls.owner.connect() as conn:
        row = conn.execute(
            text(
                "SELECT rolsuper, rolbypassrls, rolcanlogin, rolcreaterole, rolcreatedb "
                "FROM pg_roles WHERE rolname = :role"
            ),
            {"role": rls.role},
        ).one()
        owned: int = conn.execute(
            text("SELECT count(*) FROM pg_tables WHERE tableowner = :role"), {"role": rls.role}
        ).scalar_one()
    assert row.rolsuper is False
    assert row.rolbypassrls is False
    assert row.rolcanlogin is True
    assert row.rolcreaterole is False
    assert row.rolcreatedb is False
    assert owned == 0  # table owners bypass RLS; the role must own nothing
    with rls.app.connect() as conn:
        assert conn.execute(text("SELECT current_user")).scalar_one() == rls.role


@pytest.mark.postgres
@pytest.mark.parametrize("table", TABLES)
def test_owner_sees_both_tenants(rls: RLSWorld, table: str) -> None:
    # The premise of the isolation tests: the rows are really there.
    assert counts_by_tenant(rls.owner, table, (rls.a, rls.b)) == {
        rls.a: ROWS["A"],
        rls.b: ROWS["B"],
    }


@pytest.mark.postgres
@pytest.mark.parametrize("table", TABLES)
def test_raw_sql_sees_only_the_session_tenant(rls: RLSWorld, table: str) -> None:
    for tenant, label in ((rls.a, "A"), (rls.b, "B")):
        with tenant_session(rls.app, tenant) as session:
            rows = session.execute(text(f"SELECT * FROM {table}")).all()
            assert tenant_ids(rows) == [tenant] * ROWS[label]
            other = rls.b if tenant == rls.a else rls.a
            where = text(f"SELECT count(*) FROM {table} WHERE tenant_id = :t")
            assert session.execute(where, {"t": other}).scalar_one() == 0


@pytest.mark.postgres
def test_orm_select_sees_only_the_session_tenant(rls: RLSWorld) -> None:
    with tenant_session(rls.app, rls.a) as session:
        assert tenant_ids(session.scalars(select(User))) == [rls.a] * ROWS["A"]
        assert tenant_ids(session.scalars(select(EmailEvent))) == [rls.a] * ROWS["A"]
        assert tenant_ids(session.scalars(select(MLPrediction))) == [rls.a] * ROWS["A"]
        assert session.get(User, ("u0", rls.b)) is None


@pytest.mark.postgres
def test_rls_alone_filters_without_the_orm(rls: RLSWorld) -> None:
    # A plain connection that sets app.tenant_id itself: only the policies are at work.
    with rls.app.begin() as conn:
        conn.execute(text("SELECT set_config('app.tenant_id', :t, true)"), {"t": rls.b})
        rows = conn.execute(text("SELECT tenant_id FROM users")).all()
    assert tenant_ids(rows) == [rls.b] * ROWS["B"]


@pytest.mark.postgres
@pytest.mark.parametrize("table", TABLES)
def test_without_tenant_setting_nothing_is_visible(rls: RLSWorld, table: str) -> None:
    # The pooled server session has been used by tenant sessions before (pool_size=1): the
    # setting was transaction-local, so it is gone now.
    with tenant_session(rls.app, rls.a) as session:
        session.execute(text("SELECT 1"))
    with rls.app.connect() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() == 0
    fresh = make_engine(rls.app.url.render_as_string(hide_password=False))
    try:
        with fresh.connect() as conn:
            assert conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() == 0
    finally:
        fresh.dispose()


ROW_FACTORIES = {"users": user_row, "email_events": email_row, "ml_predictions": prediction_row}
MODELS = {"users": User, "email_events": EmailEvent, "ml_predictions": MLPrediction}


@pytest.mark.postgres
@pytest.mark.parametrize("table", TABLES)
def test_insert_for_another_tenant_is_refused(rls: RLSWorld, table: str) -> None:
    row = ROW_FACTORIES[table](rls.b, 100)
    with (
        pytest.raises(DBAPIError, match="row-level security"),
        tenant_session(rls.app, rls.a) as session,
    ):
        session.execute(insert(MODELS[table]), row)
    assert counts_by_tenant(rls.owner, table, (rls.a, rls.b))[rls.b] == ROWS["B"]


@pytest.mark.postgres
def test_insert_for_own_tenant_is_allowed(rls: RLSWorld) -> None:
    own = f"{rls.a}_own"
    with tenant_session(rls.app, own) as session:
        session.execute(insert(EmailEvent), email_row(own, 0))
        assert session.scalar(select(func.count()).select_from(EmailEvent)) == 1
    with tenant_session(rls.app, own) as session:
        session.execute(delete(EmailEvent))
    with rls.owner.connect() as conn:
        query = text("SELECT count(*) FROM email_events WHERE tenant_id = :t")
        assert conn.execute(query, {"t": own}).scalar_one() == 0


@pytest.mark.postgres
def test_moving_a_row_to_another_tenant_is_refused(rls: RLSWorld) -> None:
    with (
        pytest.raises(DBAPIError, match="row-level security"),
        tenant_session(rls.app, rls.a) as session,
    ):
        session.execute(
            text("UPDATE users SET tenant_id = :b WHERE tenant_id = :a"), {"a": rls.a, "b": rls.b}
        )


@pytest.mark.postgres
@pytest.mark.parametrize("table", TABLES)
def test_update_and_delete_of_other_tenant_touch_nothing(rls: RLSWorld, table: str) -> None:
    column = "user_id" if table != "ml_predictions" else "model_version"
    with tenant_session(rls.app, rls.a) as session:
        updated = session.execute(
            text(f"UPDATE {table} SET {column} = 'hacked' WHERE tenant_id = :b"), {"b": rls.b}
        )
        deleted = session.execute(text(f"DELETE FROM {table} WHERE tenant_id = :b"), {"b": rls.b})
        assert updated.rowcount == 0  # type: ignore[attr-defined]
        assert deleted.rowcount == 0  # type: ignore[attr-defined]
        everything = session.execute(
            text(f"DELETE FROM {table} WHERE tenant_id <> :a"), {"a": rls.a}
        )
        assert everything.rowcount == 0  # type: ignore[attr-defined]
    with rls.owner.connect() as conn:
        query = text(f"SELECT count(*) FROM {table} WHERE tenant_id = :b AND {column} = 'hacked'")
        assert conn.execute(query, {"b": rls.b}).scalar_one() == 0
    assert counts_by_tenant(rls.owner, table, (rls.a, rls.b)) == {
        rls.a: ROWS["A"],
        rls.b: ROWS["B"],
    }


@pytest.mark.postgres
def test_app_role_reads_but_cannot_change_migration_bookkeeping(rls: RLSWorld) -> None:
    with rls.app.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    with pytest.raises(DBAPIError, match="permission denied"), rls.app.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'x'"))


@pytest.mark.postgres
def test_cli_works_as_the_application_role(rls: RLSWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from roiml.cli.main import app
    from roiml.settings import get_settings

    monkeypatch.setenv("ROIML_DATABASE_URL", rls.app.url.render_as_string(hide_password=False))
    monkeypatch.setenv("ROIML_TENANT_ID", rls.a)
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["pipeline", "status"])
    get_settings.cache_clear()
    assert result.exit_code == 0, result.output


@pytest.mark.postgres
def test_grant_app_role_is_idempotent(rls: RLSWorld) -> None:
    grant_app_role(rls.owner, rls.role)
    grant_app_role(rls.owner, rls.role, password="it's a secret")
    with rls.owner.connect() as conn:
        count: int = conn.execute(
            text("SELECT count(*) FROM pg_roles WHERE rolname = :r"), {"r": rls.role}
        ).scalar_one()
    assert count == 1
    with tenant_session(rls.app, rls.a) as session:
        assert len(session.execute(text("SELECT * FROM users")).all()) == ROWS["A"]
