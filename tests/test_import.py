"""``roiml data import``: whole-file validation with line numbers, then all-or-nothing writes."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import Connection, Engine, Table, insert, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

import roiml.ingest.importer as importer_module
from roiml.cli.main import app
from roiml.db import User
from roiml.db.engine import make_engine
from roiml.db.roles import grant_app_role
from roiml.errors import ImportValidationError
from roiml.ingest import import_file
from roiml.ingest.contract import TableContract
from roiml.ingest.keys import ExistingKeys, find_existing
from roiml.settings import get_settings

USERS_HEADER = (
    "user_id,agent_id,market_id,created_at,birth_year,household_size,income_band,"
    "email_opt_in,is_active"
)
USERS_ROWS = [
    "u1,a1,austin,2024-01-02T10:11:12,1980,3,2,true,yes",
    "u2,,austin,2024-01-03 08:00:00.250,,,,FALSE,0",
    "u3,a2,denver,2024-01-04T12:00:00+02:00,1975,1,5,1,No",
    "u4,a2,denver,2024-01-05 09:30Z,1990,2,3,no,true",
]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest) -> Engine:
    """The migrated SQLite database, or the shared PostgreSQL one (tests isolate by tenant)."""
    fixture = "sqlite_engine" if request.param == "sqlite" else "postgres_engine"
    result: Engine = request.getfixturevalue(fixture)
    return result


def write_csv(tmp_path: Path, name: str, header: str, rows: list[str]) -> Path:
    path = tmp_path / name
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def count(engine: Engine, table: str, tenant: str) -> int:
    with engine.connect() as conn:
        found: int = conn.execute(
            text(f"SELECT count(*) FROM {table} WHERE tenant_id = :t"), {"t": tenant}
        ).scalar_one()
    return found


def rows_of(engine: Engine, query: str, tenant: str) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(text(query), {"t": tenant}).all())


def as_datetime(value: Any) -> datetime:
    """SQLite hands raw SQL timestamps back as text; PostgreSQL as datetime."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


# --- happy paths -------------------------------------------------------------------------------


def test_csv_into_users(engine: Engine, tmp_path: Path, tenant: str) -> None:
    path = write_csv(tmp_path, "users.csv", USERS_HEADER, USERS_ROWS)
    assert import_file(engine, "users", path, tenant) == 4
    found = rows_of(
        engine,
        "SELECT user_id, agent_id, created_at, birth_year, email_opt_in, is_active "
        "FROM users WHERE tenant_id = :t ORDER BY user_id",
        tenant,
    )
    assert [r[0] for r in found] == ["u1", "u2", "u3", "u4"]
    assert found[1][1] is None and found[1][3] is None
    assert [as_datetime(r[2]) for r in found] == [
        datetime(2024, 1, 2, 10, 11, 12),
        datetime(2024, 1, 3, 8, 0, 0, 250000),
        datetime(2024, 1, 4, 10, 0, 0),  # +02:00 converted to UTC
        datetime(2024, 1, 5, 9, 30),
    ]
    assert [bool(r[4]) for r in found] == [True, False, True, False]
    assert [bool(r[5]) for r in found] == [True, False, False, True]


def test_parquet_into_market_statistics(engine: Engine, tmp_path: Path, tenant: str) -> None:
    path = tmp_path / "markets.parquet"
    pq.write_table(
        pa.table(
            {
                "market_id": ["austin", "austin", "denver"],
                "month": pa.array([date(2024, 1, 1), date(2024, 2, 1), date(2024, 1, 1)]),
                "published_at": pa.array(
                    [datetime(2024, 2, 15), datetime(2024, 3, 15), datetime(2024, 2, 15, 12)],
                    pa.timestamp("ms", tz="UTC"),
                ),
                "median_price": [410_000.0, 415_000.0, 560_000.0],
                "price_index": [101.2, 101.9, 99.5],
                "inventory": pa.array([1200, 1250, 800], pa.int64()),
                "new_listings": [300, 320, 150],
                "closed_sales": [280, 290, 140],
                "days_on_market": [35, 33, 40],
                "months_supply": [2.1, 2.0, 3.3],
                "list_to_sale_ratio": [0.98, 0.99, 0.97],
                "tenant_id": [tenant] * 3,
            }
        ),
        path,
    )
    assert import_file(engine, "market_statistics", path, tenant) == 3
    assert count(engine, "market_statistics", tenant) == 3


def test_parquet_into_event_table_fills_defaults(
    engine: Engine, tmp_path: Path, tenant: str
) -> None:
    path = tmp_path / "emails.pq"
    pq.write_table(
        pa.table(
            {
                "user_id": ["u1", "u2"],
                "campaign_id": ["c1", "c1"],
                "email_type": pa.array(["NEWSLETTER", "HOME_VALUE"]).dictionary_encode(),
                "sent_at": ["2024-01-01T09:00:00", "2024-01-01 09:00:05"],
                "opened_at": [None, "2024-01-02T10:00:00"],
            }
        ),
        path,
    )
    assert import_file(engine, "email_events", path, tenant) == 2
    found = rows_of(
        engine,
        "SELECT user_id, unsubscribed, opened_at FROM email_events "
        "WHERE tenant_id = :t ORDER BY user_id",
        tenant,
    )
    assert [bool(r[1]) for r in found] == [False, False]
    assert found[0][2] is None


def test_format_option_overrides_suffix(engine: Engine, tmp_path: Path, tenant: str) -> None:
    path = write_csv(tmp_path, "users.txt", USERS_HEADER, USERS_ROWS[:1])
    with pytest.raises(ImportValidationError, match="--format"):
        import_file(engine, "users", path, tenant)
    assert import_file(engine, "users", path, tenant, "csv") == 1


def test_header_only_writes_nothing(engine: Engine, tmp_path: Path, tenant: str) -> None:
    path = write_csv(tmp_path, "users.csv", USERS_HEADER, [])
    assert import_file(engine, "users", path, tenant) == 0


# --- validation: nothing written ---------------------------------------------------------------


def expect_error(
    engine: Engine, table: str, path: Path, tenant: str, *fragments: str, rows_before: int = 0
) -> ImportValidationError:
    """Import fails with every fragment in the message, and the table is as it was."""
    with pytest.raises(ImportValidationError) as caught:
        import_file(engine, table, path, tenant)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, message
    assert count(engine, table, tenant) == rows_before
    return caught.value


def test_bad_timestamp_names_line_and_column(engine: Engine, tmp_path: Path, tenant: str) -> None:
    rows = [*USERS_ROWS[:3], "u5,a1,austin,2024-02-30T10:00:00,1980,3,2,true,yes"]
    path = write_csv(tmp_path, "users.csv", USERS_HEADER, rows)
    error = expect_error(
        engine,
        "users",
        path,
        tenant,
        "users.csv line 5, column created_at: '2024-02-30T10:00:00' is not an ISO-8601 timestamp",
        "nothing was written",
    )
    assert (error.line, error.column) == (5, "created_at")


def test_bad_values_report_first_and_count_the_rest(
    sqlite_engine: Engine, tmp_path: Path, tenant: str
) -> None:
    rows = [
        *USERS_ROWS,
        "u5,a1,austin,2024-01-01,1980,3,2,true,yes",
        "u6,a1,austin,2024-01-01,abc,3,2,true,yes",
        "u7,a1,austin,2024-01-01,1980,3,2,x,yes",
        "u8,a1,austin,2024-01-01,1.5,3,2,1,1",
    ]
    path = write_csv(tmp_path, "users.csv", USERS_HEADER, rows)
    expect_error(
        sqlite_engine,
        "users",
        path,
        tenant,
        "users.csv line 7, column birth_year: 'abc' is not an integer",
        "(2 more problems in the file; nothing was written)",
    )
    del rows[5]
    path = write_csv(tmp_path, "users.csv", USERS_HEADER, rows)
    expect_error(
        sqlite_engine,
        "users",
        path,
        tenant,
        "users.csv line 7, column email_opt_in: 'x' is not a boolean (true/false, 1/0 or yes/no)",
        "(1 more problem in the file;",
    )


def test_out_of_range_and_too_long(sqlite_engine: Engine, tmp_path: Path, tenant: str) -> None:
    path = write_csv(
        tmp_path, "users.csv", USERS_HEADER, ["u1,a1,austin,2024-01-01,99999999999,1,1,1,1"]
    )
    expect_error(sqlite_engine, "users", path, tenant, "line 2, column birth_year", "out of range")
    long_id = "x" * 65
    path = write_csv(
        tmp_path, "users.csv", USERS_HEADER, [f"{long_id},a1,austin,2024-01-01,,,,1,1"]
    )
    expect_error(
        sqlite_engine, "users", path, tenant, "column user_id", "longer than 64 characters"
    )


def test_empty_required_value(engine: Engine, tmp_path: Path, tenant: str) -> None:
    rows = [*USERS_ROWS[:2], "u3,a1,,2024-01-01,,,,1,1"]
    path = write_csv(tmp_path, "users.csv", USERS_HEADER, rows)
    expect_error(
        engine, "users", path, tenant, "users.csv line 4, column market_id: is empty, but a value"
    )


def test_duplicate_key_names_both_lines(engine: Engine, tmp_path: Path, tenant: str) -> None:
    rows = [*USERS_ROWS, USERS_ROWS[1].replace("austin", "boston"), USERS_ROWS[1]]
    path = write_csv(tmp_path, "users.csv", USERS_HEADER, rows)
    expect_error(
        engine,
        "users",
        path,
        tenant,
        "users.csv line 6, column user_id: duplicate primary key (user_id='u2'); first on line 3",
        "1 more problem in the file",
    )


def test_duplicate_composite_key_in_parquet(engine: Engine, tmp_path: Path, tenant: str) -> None:
    path = tmp_path / "indicators.parquet"
    days = [date(2024, 1, 5), date(2024, 1, 12), date(2024, 1, 5)]
    pq.write_table(
        pa.table(
            {
                "observed_on": days,
                **{
                    name: [6.5, 6.6, 6.7]
                    for name in (
                        "mortgage_rate_30y",
                        "mortgage_rate_15y",
                        "fed_funds_rate",
                        "unemployment_rate",
                        "cpi_yoy",
                        "consumer_confidence",
                    )
                },
            }
        ),
        path,
    )
    expect_error(
        engine,
        "economic_indicators",
        path,
        tenant,
        "indicators.parquet row 3, column observed_on: duplicate primary key",
        "first on row 1",
    )


def test_key_already_in_database(engine: Engine, tmp_path: Path, tenant: str) -> None:
    first = write_csv(tmp_path, "users.csv", USERS_HEADER, USERS_ROWS[:2])
    assert import_file(engine, "users", first, tenant) == 2
    second = write_csv(tmp_path, "more.csv", USERS_HEADER, USERS_ROWS[2:] + USERS_ROWS[1:2])
    expect_error(
        engine,
        "users",
        second,
        tenant,
        "more.csv line 4, column user_id: user_id='u2' already exists in users for tenant",
        rows_before=2,
    )
    # The same keys belong to nobody else: another tenant imports them freely.
    assert import_file(engine, "users", second, f"{tenant}_b") == 3


def test_unknown_table(engine: Engine, tmp_path: Path, tenant: str) -> None:
    path = write_csv(tmp_path, "users.csv", USERS_HEADER, USERS_ROWS)
    with pytest.raises(ImportValidationError, match=r"unknown table 'ml_models'.*agents, users"):
        import_file(engine, "ml_models", path, tenant)


def test_missing_required_column(engine: Engine, tmp_path: Path, tenant: str) -> None:
    header = USERS_HEADER.replace(",market_id", "")
    rows = [row.replace(",austin", "").replace(",denver", "") for row in USERS_ROWS]
    path = write_csv(tmp_path, "users.csv", header, rows)
    expect_error(engine, "users", path, tenant, "missing required column(s) market_id")


def test_unknown_and_surrogate_columns(engine: Engine, tmp_path: Path, tenant: str) -> None:
    path = write_csv(
        tmp_path, "users.csv", USERS_HEADER + ",colour", [r + ",red" for r in USERS_ROWS]
    )
    expect_error(engine, "users", path, tenant, "unknown column(s) colour")
    header = "id,user_id,alert_type,sent_at"
    path = write_csv(tmp_path, "alerts.csv", header, ["1,u1,RATE_DROP,2024-01-01"])
    expect_error(engine, "alerts", path, tenant, "column id: surrogate keys are assigned by the")


def test_wrong_tenant_value(engine: Engine, tmp_path: Path, tenant: str) -> None:
    rows = [f"{row},{tenant}" for row in USERS_ROWS]
    rows[2] = rows[2].replace(tenant, "someone_else")
    path = write_csv(tmp_path, "users.csv", USERS_HEADER + ",tenant_id", rows)
    expect_error(
        engine, "users", path, tenant, "users.csv line 4, column tenant_id: 'someone_else' is not"
    )
    rows[2] = rows[2].replace("someone_else", tenant)
    path = write_csv(tmp_path, "users.csv", USERS_HEADER + ",tenant_id", rows)
    assert import_file(engine, "users", path, tenant) == 4


def test_enum_violation(engine: Engine, tmp_path: Path, tenant: str) -> None:
    header = "user_id,alert_type,sent_at,clicked_at"
    rows = ["u1,RATE_DROP,2024-01-01T00:00:00,", "u1,rate_drop,2024-01-02T00:00:00,"]
    path = write_csv(tmp_path, "alerts.csv", header, rows)
    expect_error(
        engine,
        "alerts",
        path,
        tenant,
        "alerts.csv line 3, column alert_type: 'rate_drop' is not one of PRICE_CHANGE",
    )


def test_ragged_csv_row(engine: Engine, tmp_path: Path, tenant: str) -> None:
    rows = [*USERS_ROWS[:2], "u3,a1,austin"]
    path = write_csv(tmp_path, "users.csv", USERS_HEADER, rows)
    expect_error(engine, "users", path, tenant, "users.csv line 4: expected 9 values, found 3")


# --- failures while writing leave nothing ------------------------------------------------------


def test_key_inserted_after_the_check_leaves_nothing(
    engine: Engine, tmp_path: Path, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def racing_find_existing(
        conn: Connection, contract: TableContract, rows: pa.Table, tenant_id: str
    ) -> ExistingKeys | None:
        found = find_existing(conn, contract, rows, tenant_id)
        # Another writer stores u3 between the check and the write.
        conn.execute(
            insert(User).values(
                user_id="u3",
                tenant_id=tenant_id,
                market_id="austin",
                created_at=datetime(2024, 1, 1),
                email_opt_in=True,
                is_active=True,
            )
        )
        return found

    monkeypatch.setattr("roiml.ingest.importer.find_existing", racing_find_existing)
    path = write_csv(tmp_path, "users.csv", USERS_HEADER, USERS_ROWS)
    expect_error(
        engine, "users", path, tenant, "the database refused the rows, nothing was written"
    )


def test_crash_after_writing_leaves_nothing(
    engine: Engine, tmp_path: Path, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = importer_module.bulk_insert

    def crashing_write(conn: Connection, table: Table, rows: pa.Table) -> int:
        assert real_write(conn, table, rows) == 3
        raise RuntimeError("connection lost")

    monkeypatch.setattr(importer_module, "bulk_insert", crashing_write)
    rows = ["u1,RATE_DROP,2024-01-01"] * 3
    path = write_csv(tmp_path, "alerts.csv", "user_id,alert_type,sent_at", rows)
    with pytest.raises(RuntimeError, match="connection lost"):
        import_file(engine, "alerts", path, tenant)
    assert count(engine, "alerts", tenant) == 0


@pytest.mark.postgres
def test_import_as_application_role_under_rls(
    postgres_engine: Engine, tmp_path: Path, tenant: str
) -> None:
    role = f"roiml_test_import_{uuid.uuid4().hex[:10]}"
    grant_app_role(postgres_engine, role)
    url = make_url(postgres_engine.url).set(username=role, password=None)
    app_engine = make_engine(url.render_as_string(hide_password=False))
    try:
        path = write_csv(tmp_path, "users.csv", USERS_HEADER, USERS_ROWS[:2])
        assert import_file(app_engine, "users", path, tenant) == 2
        # The existing-key check runs under RLS too, and sees the tenant's own rows.
        with pytest.raises(ImportValidationError, match="user_id='u1' already exists"):
            import_file(app_engine, "users", path, tenant)
        assert count(postgres_engine, "users", tenant) == 2
    finally:
        app_engine.dispose()
        with postgres_engine.begin() as conn:
            conn.execute(text(f'DROP OWNED BY "{role}"'))
            conn.execute(text(f'DROP ROLE "{role}"'))


# --- the command line --------------------------------------------------------------------------


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, sqlite_engine: Engine) -> Iterator[None]:
    """ROIML_* pointing the CLI at the test's SQLite database, and fresh cached settings."""
    for name in list(os.environ):
        if name.startswith("ROIML_") and not name.startswith("ROIML_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ROIML_DATABASE_URL", sqlite_engine.url.render_as_string())
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_cli_import_and_clean_failure(
    cli_env: None, sqlite_engine: Engine, tmp_path: Path, tenant: str
) -> None:
    runner = CliRunner()
    good = write_csv(tmp_path, "users.csv", USERS_HEADER, USERS_ROWS)
    result = runner.invoke(app, ["data", "import", "users", str(good), "--tenant", tenant])
    assert result.exit_code == 0, result.output
    assert "wrote 4 rows" in " ".join(result.stdout.split())

    rows = [*USERS_ROWS[:3], "u9,a1,austin,yesterday,1980,3,2,true,yes"]
    bad = write_csv(tmp_path, "late.csv", USERS_HEADER, rows)
    result = runner.invoke(
        app, ["data", "import", "users", str(bad), "--tenant", f"{tenant}_2", "--format", "csv"]
    )
    assert result.exit_code == 4, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert "late.csv line 5, column created_at: 'yesterday'" in result.stderr
    assert count(sqlite_engine, "users", f"{tenant}_2") == 0

    result = runner.invoke(app, ["data", "import", "nope", str(good)])
    assert result.exit_code == 4
    assert "unknown table 'nope'" in result.stderr and "Traceback" not in result.output
