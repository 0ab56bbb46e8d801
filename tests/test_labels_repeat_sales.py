"""Repeat sales in a sales file: every priced sale is a value label, each seen as its own buyer
bought the home, and nothing of a later sale reaches an earlier sale's features."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from sqlalchemy import Engine

from roiml.features.engine import FeatureEngine
from roiml.features.frame import AS_OF, ENTITY_ID
from roiml.ingest import import_file
from roiml.ingest.real_sales import RealSalesSource, load_sales, sales_to_tables
from roiml.models.dataset import load_snapshots
from roiml.models.labels import purchase_labels
from roiml.models.ownership import purchase_history

TENANT = "repeat"
# King County parcels: sold three times (115,000, 124,000, 157,000), and twice.
THRICE = "0795000620"
TWICE = ("6021501535", "4139480200", "7520000520")


def _con(properties: pa.Table, transactions: pa.Table) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.register("properties", properties)
    con.register("transactions", transactions)
    return con


def _ts(*days: str) -> pa.Array:
    return pa.array([datetime.fromisoformat(d) for d in days], pa.timestamp("us"))


HOMES = pa.table(
    {
        "property_id": ["a", "b", "c"],
        "owner_user_id": ["a3", "b2", "c1"],
        "sqft": [1000, 2000, 1500],
        "purchased_at": _ts("2020-09-01", "2020-06-01", "2020-02-01"),
        "purchase_price": [300.0, 500.0, 250.0],
        "sold_at": pa.array([None, None, None], pa.timestamp("us")),
        "mortgage_amount": [240.0, 400.0, None],
    }
)
SALES = pa.table(
    {
        "user_id": ["a1", "a2", "a3", "b1", "b2", "c1", "x1", "a0"],
        "property_id": ["a", "a", "a", "b", "b", "c", "c", "a"],
        "transaction_type": ["BUY", "BUY", "BUY", "BUY", "INVESTMENT", "BUY", "REFINANCE", "BUY"],
        "closed_at": _ts(
            "2020-01-15 10:00",
            "2020-05-01",
            "2020-09-01",
            "2020-03-01",
            "2020-06-01",
            "2020-02-01",
            "2020-07-01",
            "2019-12-01",
        ),
        # a0's purchase has no price: no label, and it begins no ownership on record.
        "price": [100.0, 200.0, 300.0, 400.0, 500.0, 250.0, 0.0, None],
    }
)


def test_every_priced_purchase_is_a_row_as_of_the_midnight_after_it() -> None:
    rows = purchase_labels(_con(HOMES, SALES)).to_pylist()
    by_buyer = {r["entity_id"]: r for r in rows}
    assert sorted(by_buyer) == ["a1", "a2", "a3", "b1", "b2", "c1"]
    assert [by_buyer[b]["price"] for b in ("a1", "a2", "a3")] == [100.0, 200.0, 300.0]
    assert by_buyer["a1"][AS_OF] == datetime(2020, 1, 16)
    assert by_buyer["a1"]["sold_at"] == datetime(2020, 1, 15, 10)
    assert all(r["horizon_months"] == 0.0 for r in rows)
    assert [r[AS_OF] for r in rows] == sorted(r[AS_OF] for r in rows)


def test_purchase_history_gives_each_buyer_the_home_until_the_next_purchase() -> None:
    history = purchase_history(_sources(HOMES, SALES)).tables["properties"]
    assert history.schema == HOMES.schema
    spells = {r["owner_user_id"]: r for r in history.to_pylist()}
    assert sorted(spells) == ["a1", "a2", "a3", "b1", "b2", "c1"]
    assert spells["a1"]["purchase_price"] == 100.0
    assert spells["a1"]["sold_at"] == datetime(2020, 5, 1)
    assert spells["a2"]["sold_at"] == datetime(2020, 9, 1)
    # The current owner keeps the home's own row: not sold, its mortgage.
    assert spells["a3"]["sold_at"] is None and spells["a3"]["mortgage_amount"] == 240.0
    # An earlier owner does not inherit the current owner's loan.
    assert spells["a1"]["mortgage_amount"] is None and spells["b1"]["mortgage_amount"] is None
    assert {r["sqft"] for r in history.to_pylist() if r["property_id"] == "a"} == {1000}


def _sources(properties: pa.Table, transactions: pa.Table) -> object:
    from roiml.features.sources import SourceTables

    return SourceTables(tables={"properties": properties, "transactions": transactions})


@pytest.fixture
def repeat_sales(sqlite_engine: Engine, tmp_path: Path) -> Engine:
    """King County homes sold once, twice and three times, through the converter and importer."""
    sales = load_sales(RealSalesSource.KC_HOUSE_SALES)
    repeat = pc.is_in(sales["parcel_id"], value_set=pa.array([THRICE, *TWICE]))
    once = pc.invert(repeat)
    chosen = pa.concat_tables([sales.filter(repeat), sales.filter(once).slice(0, 40)])
    tables = sales_to_tables(chosen, RealSalesSource.KC_HOUSE_SALES)
    for name, table in tables.by_name().items():
        path = tmp_path / f"{name}.parquet"
        pq.write_table(table, path)
        import_file(sqlite_engine, name, path, TENANT)
    return sqlite_engine


def test_homes_sold_two_and_three_times_give_every_sale_its_own_features(
    repeat_sales: Engine, tmp_path: Path
) -> None:
    snapshots = load_snapshots(repeat_sales, TENANT, tmp_path / "cache", every_days=90)
    con = snapshots.connection()
    labels = purchase_labels(con)
    con.close()
    assert labels.num_rows == 40 + 3 + 2 * len(TWICE)
    names = ["purchase_price", "property_sqft", "property_bedrooms", "ownership_years"]
    history = purchase_history(snapshots.sources)
    features = FeatureEngine(threads=1).compute(labels.select([ENTITY_ID, AS_OF]), names, history)
    rows = labels.append_column("fp", features["purchase_price"])
    for name in names[1:]:
        rows = rows.append_column(name, features[name])

    thrice = rows.filter(pc.equal(rows["property_id"], f"kc-{THRICE}")).to_pylist()
    assert [r["price"] for r in thrice] == [115_000.0, 124_000.0, 157_000.0]
    assert [r[AS_OF] for r in thrice] == [
        datetime(2014, 9, 25),
        datetime(2014, 12, 16),
        datetime(2015, 3, 12),
    ]
    # Each sale's home is the one its buyer bought: its own price, never a later one.
    assert [r["fp"] for r in thrice] == [115_000.0, 124_000.0, 157_000.0]
    assert len({r["property_sqft"] for r in thrice}) == 1 and thrice[0]["property_sqft"] > 0
    assert all(r["ownership_years"] < 0.01 for r in thrice)

    # Over every row: features are known (not the nulls an earlier buyer had before) and no
    # earlier sale's features hold a later sale's price.
    assert pc.all(pc.is_valid(rows["property_sqft"])).as_py()
    assert rows["fp"].to_pylist() == rows["price"].to_pylist()
    for home in (THRICE, *TWICE):
        sold = rows.filter(pc.equal(rows["property_id"], f"kc-{home}")).to_pylist()
        for i, earlier in enumerate(sold[:-1]):
            later_prices = {r["price"] for r in sold[i + 1 :]}
            values = {earlier[n] for n in ("fp", *names[1:])}
            assert not values & later_prices, (home, earlier)
    assert np.all(np.diff(rows[AS_OF].to_numpy().astype("int64")) >= 0)
