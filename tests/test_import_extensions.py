"""Imports with the tenant's contract: declared columns stored in attributes, built-in limits,
references between files and against the database, coarse datetimes; SQLite and PostgreSQL."""

from __future__ import annotations

import json
import string
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text
from tests.conftest import application_role
from tests.test_import import count

from roiml.db.engine import make_engine
from roiml.db.migrate import upgrade
from roiml.errors import ImportValidationError
from roiml.ingest import import_file
from roiml.ingest.contract import ColumnContract, Kind, Precision
from roiml.ingest.extensions import ColumnRole, ExtensionColumn, TenantContract
from roiml.ingest.importer import import_files
from roiml.ingest.parse import parse_column

USERS = "user_id,market_id,created_at,email_opt_in,is_active\n"
PROPERTIES = "property_id,owner_user_id,market_id,property_type,purchased_at,purchase_price"
TRANSACTIONS = "user_id,property_id,transaction_type,opened_at,closed_at,price\n"

CONTRACT = TenantContract("any").with_columns(
    [
        ExtensionColumn(
            "properties", "grade", Kind.INTEGER, ColumnRole.NUMERIC, minimum=1, maximum=13
        ),
        ExtensionColumn(
            "properties",
            "view",
            Kind.INTEGER,
            ColumnRole.CATEGORICAL,
            allowed_values=("0", "1", "2", "3", "4"),
        ),
        ExtensionColumn("properties", "zipcode", Kind.STRING, ColumnRole.CATEGORICAL, max_length=5),
        ExtensionColumn("properties", "waterfront", Kind.BOOLEAN, ColumnRole.CATEGORICAL),
        ExtensionColumn(
            "properties", "sqft_basement", Kind.FLOAT, ColumnRole.NUMERIC, unit="sqft", minimum=0
        ),
        ExtensionColumn("properties", "renovated_on", Kind.DATE, ColumnRole.NUMERIC),
        ExtensionColumn(
            "transactions",
            "sale_kind",
            Kind.STRING,
            ColumnRole.CATEGORICAL,
            allowed_values=("arms_length", "foreclosure"),
        ),
    ]
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest) -> Engine:
    fixture = "sqlite_engine" if request.param == "sqlite" else "postgres_engine"
    result: Engine = request.getfixturevalue(fixture)
    return result


def write(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


def attributes(engine: Engine, table: str, key: str, tenant: str) -> dict[str, Any]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(f"SELECT {key}, attributes FROM {table} WHERE tenant_id = :t ORDER BY {key}"),
            {"t": tenant},
        ).all()
    # PostgreSQL hands JSONB back decoded, SQLite as the JSON text.
    return {str(k): (json.loads(v) if isinstance(v, str) else v) for k, v in rows}


def users_file(tmp_path: Path, ids: list[str]) -> Path:
    rows = "".join(f"{u},m,2014-01-01,true,true\n" for u in ids)
    return write(tmp_path, "users.csv", USERS + rows)


def test_declared_columns_are_stored_typed_in_attributes(
    engine: Engine, tmp_path: Path, tenant: str
) -> None:
    header = f"{PROPERTIES},grade,view,zipcode,waterfront,sqft_basement,renovated_on\n"
    body = (
        "p1,u1,m,SINGLE_FAMILY,2014-05-01,300000,7,0,98001,true,400,2001-05-03\n"
        "p2,u2,m,CONDO,2014-06-01,400000,,4,,no,0,\n"
        "p3,u2,m,CONDO,2014-06-01,400000,,,,,,\n"
    )
    files = [
        ("users", users_file(tmp_path, ["u1", "u2"])),
        ("properties", write(tmp_path, "properties.csv", header + body)),
    ]
    assert import_files(engine, files, tenant, extensions=CONTRACT) == [2, 3]
    stored = attributes(engine, "properties", "property_id", tenant)
    assert stored["p1"] == {
        "grade": 7,
        "view": 0,
        "zipcode": "98001",
        "waterfront": True,
        "sqft_basement": 400.0,
        "renovated_on": "2001-05-03",
    }
    assert isinstance(stored["p1"]["sqft_basement"], float)
    assert stored["p2"] == {"view": 4, "waterfront": False, "sqft_basement": 0.0}
    assert stored["p3"] is None  # no declared value: no object at all
    assert attributes(engine, "users", "user_id", tenant) == {"u1": None, "u2": None}


@pytest.mark.parametrize(
    ("column", "value", "fragment"),
    [
        ("grade", "14", "'14' is above the maximum 13"),
        ("grade", "seven", "'seven' is not an integer"),
        ("view", "5", "'5' is not one of 0, 1, 2, 3, 4"),
        ("zipcode", "980011", "is longer than 5 characters"),
        ("waterfront", "maybe", "is not a boolean"),
        ("sqft_basement", "-1", "'-1' is below the minimum 0"),
        ("renovated_on", "2001-02-30", "is not a valid date"),
    ],
)
def test_declared_values_are_validated_like_built_in_ones(
    sqlite_engine: Engine, tmp_path: Path, tenant: str, column: str, value: str, fragment: str
) -> None:
    import_file(sqlite_engine, "users", users_file(tmp_path, ["u1"]), tenant)
    rows = f"p1,u1,m,CONDO,2014-05-01,1,\np2,u1,m,CONDO,2014-05-01,1,{value}\n"
    path = write(tmp_path, "properties.csv", f"{PROPERTIES},{column}\n{rows}")
    with pytest.raises(ImportValidationError) as caught:
        import_file(sqlite_engine, "properties", path, tenant, extensions=CONTRACT)
    message = str(caught.value)
    assert f"properties.csv line 3, column {column}: " in message and fragment in message
    assert count(sqlite_engine, "properties", tenant) == 0


def test_undeclared_column_names_the_verb(
    sqlite_engine: Engine, tmp_path: Path, tenant: str
) -> None:
    path = write(
        tmp_path, "properties.csv", f"{PROPERTIES},condition\np1,u1,m,CONDO,2014-05-01,1,3\n"
    )
    with pytest.raises(ImportValidationError) as caught:
        import_file(sqlite_engine, "properties", path, tenant, extensions=CONTRACT)
    assert "unknown column(s) condition" in str(caught.value)
    assert "roiml data contract add properties condition --type" in str(caught.value)
    # A file cannot write the attributes column itself.
    path = write(tmp_path, "p.csv", f"{PROPERTIES},attributes\np1,u1,m,CONDO,2014-05-01,1,{{}}\n")
    with pytest.raises(ImportValidationError, match="unknown column"):
        import_file(sqlite_engine, "properties", path, tenant, extensions=CONTRACT)


@pytest.mark.parametrize(
    ("column", "value", "fragment"),
    [
        ("bedrooms", "51", "'51' is above the maximum 50"),
        ("latitude", "91.5", "'91.5' is above the maximum 90"),
        ("longitude", "-180.5", "'-180.5' is below the minimum -180"),
        ("purchase_price", "0", "'0' must be greater than 0"),
        ("sqft", "-3", "'-3' must be greater than 0"),
    ],
)
def test_built_in_limits_are_enforced(
    sqlite_engine: Engine, tmp_path: Path, tenant: str, column: str, value: str, fragment: str
) -> None:
    import_file(sqlite_engine, "users", users_file(tmp_path, ["u1"]), tenant)
    header = "property_id,owner_user_id,market_id,property_type,purchased_at"
    header += "" if column == "purchase_price" else ",purchase_price"
    good = "p1,u1,m,CONDO,2014-05-01" + ("" if column == "purchase_price" else ",1")
    path = write(
        tmp_path,
        "properties.csv",
        f"{header},{column}\n{good},1\n{good.replace('p1', 'p2')},{value}\n",
    )
    with pytest.raises(ImportValidationError) as caught:
        import_file(sqlite_engine, "properties", path, tenant)
    assert f"line 3, column {column}: {fragment}" in str(caught.value)


def test_dangling_references_name_the_line_and_write_nothing(
    engine: Engine, tmp_path: Path, tenant: str
) -> None:
    import_file(engine, "users", users_file(tmp_path, ["u1", "u2"]), tenant)
    props = write(
        tmp_path,
        "properties.csv",
        f"{PROPERTIES}\np1,u1,m,CONDO,2014-05-01,1\n"
        "p2,u9,m,CONDO,2014-05-01,1\np3,u8,m,CONDO,2014-05-01,1\n",
    )
    with pytest.raises(ImportValidationError) as caught:
        import_file(engine, "properties", props, tenant)
    message = str(caught.value)
    assert "properties.csv line 3, column owner_user_id: 'u9' names no row of users" in message
    assert "1 more problem in the file" in message and "import users first" in message
    assert (caught.value.line, caught.value.column) == (3, "owner_user_id")
    assert count(engine, "properties", tenant) == 0

    props = write(tmp_path, "properties.csv", f"{PROPERTIES}\np1,u1,m,CONDO,2014-05-01,1\n")
    import_file(engine, "properties", props, tenant)
    sales = write(
        tmp_path,
        "transactions.csv",
        TRANSACTIONS + "u1,p1,BUY,2014-05-01,2014-05-02,10\nu2,p7,BUY,2014-05-01,2014-05-02,10\n",
    )
    with pytest.raises(
        ImportValidationError, match=r"line 3, column property_id: 'p7' names no row of properties"
    ):
        import_file(engine, "transactions", sales, tenant)
    # Another tenant's rows do not count.
    with pytest.raises(ImportValidationError, match="column user_id: 'u1' names no row of users"):
        import_file(engine, "transactions", sales, f"{tenant}_other")
    assert count(engine, "transactions", tenant) == 0


def test_one_import_of_several_files_is_all_or_nothing(
    engine: Engine, tmp_path: Path, tenant: str
) -> None:
    users = users_file(tmp_path, ["u1"])
    props = write(tmp_path, "properties.csv", f"{PROPERTIES}\np1,u1,m,CONDO,2014-05-01,1\n")
    bad_sales = write(tmp_path, "bad.csv", TRANSACTIONS + "u1,p2,BUY,2014-05-01,2014-05-02,10\n")
    with pytest.raises(ImportValidationError, match=r"bad\.csv line 2, column property_id: 'p2'"):
        import_files(
            engine, [("transactions", bad_sales), ("users", users), ("properties", props)], tenant
        )
    assert [count(engine, t, tenant) for t in ("users", "properties", "transactions")] == [0, 0, 0]
    sales = write(tmp_path, "sales.csv", TRANSACTIONS + "u1,p1,BUY,2014-05-01,2014-05-02,10\n")
    # References name rows of earlier files of the same import, whatever the order given.
    written = import_files(
        engine, [("transactions", sales), ("properties", props), ("users", users)], tenant
    )
    assert written == [1, 1, 1]


def test_coarse_datetimes_are_the_periods_last_microsecond(
    engine: Engine, tmp_path: Path, tenant: str
) -> None:
    contract = (
        TenantContract(tenant)
        .with_precision("transactions", "closed_at", Precision.MONTH)
        .with_precision("transactions", "opened_at", Precision.DAY)
    )
    import_file(engine, "users", users_file(tmp_path, ["u1"]), tenant)
    props = write(tmp_path, "properties.csv", f"{PROPERTIES}\np1,u1,m,CONDO,2014-05-01,1\n")
    import_file(engine, "properties", props, tenant)
    sales = write(
        tmp_path,
        "sales.csv",
        TRANSACTIONS + "u1,p1,BUY,2014-05-10,2014-05,10\nu1,p1,SELL,2016-02-01,2016-02,20\n",
    )
    assert import_file(engine, "transactions", sales, tenant, extensions=contract) == 2
    with engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT opened_at, closed_at FROM transactions WHERE tenant_id = :t ORDER BY price"
            ),
            {"t": tenant},
        ).all()
    as_dt = [
        [v if isinstance(v, datetime) else datetime.fromisoformat(v) for v in r] for r in found
    ]
    assert as_dt == [
        [datetime(2014, 5, 10, 23, 59, 59, 999999), datetime(2014, 5, 31, 23, 59, 59, 999999)],
        [datetime(2016, 2, 1, 23, 59, 59, 999999), datetime(2016, 2, 29, 23, 59, 59, 999999)],
    ]
    # More precise than declared is refused: the file must not mix the two meanings.
    sales = write(tmp_path, "sales.csv", TRANSACTIONS + "u1,p1,BUY,2014-05-10,2014-05-03,10\n")
    with pytest.raises(ImportValidationError, match="'2014-05-03' is not a month"):
        import_file(engine, "transactions", sales, tenant, extensions=contract)
    sales = write(tmp_path, "sales.csv", TRANSACTIONS + "u1,p1,BUY,2014-05-10 10:00,2014-05,10\n")
    with pytest.raises(ImportValidationError, match=r"is not a date .*\(precision day\)"):
        import_file(engine, "transactions", sales, tenant, extensions=contract)


def test_parquet_dates_for_a_day_precision_column(
    sqlite_engine: Engine, tmp_path: Path, tenant: str
) -> None:
    contract = TenantContract(tenant).with_precision("users", "created_at", Precision.DAY)
    path = tmp_path / "users.parquet"
    pq.write_table(
        pa.table(
            {
                "user_id": ["u1", "u2"],
                "market_id": ["m", "m"],
                "created_at": pa.array([date(2014, 5, 1), date(2014, 5, 2)]),
                "email_opt_in": [True, False],
                "is_active": [True, True],
            }
        ),
        path,
    )
    assert import_file(sqlite_engine, "users", path, tenant, extensions=contract) == 2
    with sqlite_engine.connect() as conn:
        first: object = conn.execute(
            text("SELECT min(created_at) FROM users WHERE tenant_id = :t"), {"t": tenant}
        ).scalar_one()
    assert str(first) == "2014-05-01 23:59:59.999999"


@pytest.mark.postgres
def test_attributes_under_row_level_security(
    postgres_url: str, tmp_path: Path, tenant: str
) -> None:
    """The application role (RLS applies) writes attributes through the staging path, reads only
    its own tenant's, and cannot reference another tenant's rows."""
    owner = make_engine(postgres_url)
    with application_role(postgres_url) as (app_engine, _role):
        files = [
            ("users", users_file(tmp_path, ["u1"])),
            (
                "properties",
                write(
                    tmp_path,
                    "properties.csv",
                    f"{PROPERTIES},grade,zipcode\np1,u1,m,CONDO,2014-05-01,1,9,98001\n",
                ),
            ),
        ]
        assert import_files(app_engine, files, tenant, extensions=CONTRACT) == [1, 1]
        assert import_files(owner, files, f"{tenant}_b", extensions=CONTRACT) == [1, 1]
        with app_engine.begin() as conn:
            conn.execute(text("SELECT set_config('app.tenant_id', :t, true)"), {"t": tenant})
            seen = conn.execute(text("SELECT tenant_id, attributes FROM properties")).all()
        assert seen == [(tenant, {"grade": 9, "zipcode": "98001"})]
        # Tenant b's u1 exists, but under RLS tenant c's import cannot see it.
        sales = write(tmp_path, "t.csv", TRANSACTIONS + "u1,p1,BUY,2014-05-01,2014-05-02,1\n")
        with pytest.raises(ImportValidationError, match="'u1' names no row of users"):
            import_file(app_engine, "transactions", sales, f"{tenant}_c")
    owner.dispose()


# --- properties --------------------------------------------------------------------------------

_text = st.text(alphabet=string.ascii_letters + string.digits + " \"\\,'\t\néü-", max_size=5)
_rows = st.lists(
    st.tuples(
        st.none() | st.integers(1, 13),
        st.none() | st.sampled_from(["0", "1", "2", "3", "4"]),
        st.none() | _text.filter(lambda s: s.strip() == s and s != ""),
        st.none() | st.booleans(),
        st.none() | st.floats(0, 1e12, allow_nan=False, allow_infinity=False),
        st.none() | st.dates(date(1900, 1, 1), date(2100, 1, 1)),
    ),
    min_size=1,
    max_size=20,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=_rows)
def test_declared_values_round_trip(
    tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[Any, ...]]
) -> None:
    """Whatever valid values a Parquet file holds, each comes back from attributes equal and of
    its type, and an empty cell is absent."""
    folder = tmp_path_factory.mktemp("roundtrip")
    engine = make_engine(f"sqlite:///{folder / 'db.sqlite'}")
    upgrade(engine)
    names = ["grade", "view", "zipcode", "waterfront", "sqft_basement", "renovated_on"]
    columns = list(zip(*rows, strict=True))
    n = len(rows)
    table = pa.table(
        {
            "property_id": [f"p{i}" for i in range(n)],
            "owner_user_id": ["u1"] * n,
            "market_id": ["m"] * n,
            "property_type": ["CONDO"] * n,
            "purchased_at": ["2014-05-01"] * n,
            "purchase_price": [1.0] * n,
            **{
                name: pa.array(list(values))
                if name != "view"
                else pa.array(list(values), pa.string())
                for name, values in zip(names, columns, strict=True)
            },
        }
    )
    path = folder / "properties.parquet"
    pq.write_table(table, path)
    import_file(engine, "users", users_file(folder, ["u1"]), "t")
    assert import_file(engine, "properties", path, "t", extensions=CONTRACT) == n
    stored = attributes(engine, "properties", "property_id", "t")
    for i, row in enumerate(rows):
        expected = {
            name: (int(v) if name == "view" else v.isoformat() if isinstance(v, date) else v)
            for name, v in zip(names, row, strict=True)
            if v is not None
        }
        got = stored[f"p{i}"]
        assert (got or {}) == expected
        assert got is None or all(type(got[k]) is type(expected[k]) for k in expected)
    engine.dispose()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    known=st.sets(st.sampled_from("abcdef"), min_size=1),
    refs=st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=15),
)
def test_any_dangling_reference_writes_nothing(
    tmp_path_factory: pytest.TempPathFactory, known: set[str], refs: list[str]
) -> None:
    folder = tmp_path_factory.mktemp("dangling")
    engine = make_engine(f"sqlite:///{folder / 'db.sqlite'}")
    upgrade(engine)
    import_file(engine, "users", users_file(folder, sorted(known)), "t")
    body = "".join(f"p{i},{u},m,CONDO,2014-05-01,1\n" for i, u in enumerate(refs))
    path = write(folder, "properties.csv", f"{PROPERTIES}\n{body}")
    dangling = [i for i, u in enumerate(refs) if u not in known]
    if dangling:
        with pytest.raises(ImportValidationError) as caught:
            import_file(engine, "properties", path, "t")
        assert caught.value.line == dangling[0] + 2
        assert f"'{refs[dangling[0]]}' names no row of users" in str(caught.value)
        assert count(engine, "properties", "t") == 0
    else:
        assert import_file(engine, "properties", path, "t") == len(refs)
    engine.dispose()


@settings(max_examples=200, deadline=None)
@given(days=st.lists(st.dates(date(1900, 1, 1), date(2100, 12, 31)), min_size=1, max_size=30))
def test_a_coarse_value_is_the_last_microsecond_of_its_period(days: list[date]) -> None:
    """A day or a month is stored as the microsecond before the next one starts: never earlier
    than any moment of the period, never in the next one."""
    for precision, text_of, next_start in (
        (Precision.DAY, date.isoformat, lambda d: d + timedelta(days=1)),
        (
            Precision.MONTH,
            lambda d: d.strftime("%Y-%m"),
            lambda d: (d.replace(day=28) + timedelta(days=4)).replace(day=1),
        ),
    ):
        spec = ColumnContract(
            "at", Kind.DATETIME, pa.timestamp("us"), True, False, False, precision=precision
        )
        parsed = parse_column(pa.array([text_of(d) for d in days]), spec)
        assert not any(pc.any(check.mask).as_py() for check in parsed.checks)
        expected = [
            datetime.combine(next_start(d), datetime.min.time()) - timedelta(microseconds=1)
            for d in days
        ]
        assert parsed.values.to_pylist() == expected
