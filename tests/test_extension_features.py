"""A tenant's declared columns on ``properties`` as features: catalog entries, values from the
``attributes`` JSON of the home owned as of the date, one row equal to the batch, and the SQL
store's rows read back (SQLite)."""

from __future__ import annotations

import json
from datetime import datetime
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from sqlalchemy import Engine, insert

from roiml.db import Base
from roiml.db.engine import make_engine
from roiml.db.enums import DataType, FeatureCategory
from roiml.db.migrate import upgrade
from roiml.errors import FeatureError
from roiml.features.catalog import CATALOG
from roiml.features.catalog_doc import render_catalog
from roiml.features.declared import declared_features, load_tenant_catalog, tenant_catalog
from roiml.features.engine import FeatureEngine, entity_frame
from roiml.features.sources import SourceTables, load_sources
from roiml.features.validation import validate_frame
from roiml.ingest.contract import Kind, table_contract
from roiml.ingest.extensions import (
    ColumnRole,
    ExtensionColumn,
    TenantContract,
    save_tenant_contract,
)
from roiml.monitoring.reference import align_reference, relations_of
from roiml.store.online_sqlite import SqliteOnlineStore
from roiml.store.vectors import PredictionVectors

AS_OF = datetime(2024, 6, 1)
COLUMNS = (
    ExtensionColumn(
        "properties",
        "grade",
        Kind.INTEGER,
        ColumnRole.NUMERIC,
        minimum=1,
        maximum=13,
        description="King County building grade",
    ),
    ExtensionColumn(
        "properties", "basement_sqft", Kind.FLOAT, ColumnRole.NUMERIC, unit="sqft", minimum=0
    ),
    ExtensionColumn(
        "properties",
        "view",
        Kind.STRING,
        ColumnRole.CATEGORICAL,
        allowed_values=("none", "fair", "good", "it's great"),
    ),
    ExtensionColumn("properties", "waterfront", Kind.BOOLEAN, ColumnRole.CATEGORICAL),
    ExtensionColumn("properties", "renovated_on", Kind.DATE, ColumnRole.NUMERIC),
    # No stable code for free text; and a column of another table is not a home's feature.
    ExtensionColumn("properties", "zipcode", Kind.STRING, ColumnRole.CATEGORICAL, max_length=5),
    ExtensionColumn("users", "segment", Kind.STRING, ColumnRole.CATEGORICAL),
)
CONTRACT = TenantContract("t", extensions=COLUMNS)
DECLARED = [
    "property_x_grade",
    "property_x_basement_sqft",
    "property_x_view",
    "property_x_waterfront",
    "property_x_renovated_on",
]


def test_declared_columns_become_catalog_entries() -> None:
    catalog = tenant_catalog(CONTRACT)
    assert [f.name for f in declared_features(CONTRACT)] == DECLARED
    assert catalog.feature_set("property")[-len(DECLARED) :] == tuple(DECLARED)
    assert len(catalog.features) == len(CATALOG.features) + len(DECLARED)
    assert "property_x_grade" not in CATALOG.features  # the built-in catalog is untouched
    grade = catalog.get("property_x_grade")
    assert grade.category is FeatureCategory.PROPERTY and grade.sub_category == "declared"
    assert (grade.valid_min, grade.valid_max, grade.dtype) == (1, 13, DataType.INTEGER)
    assert "King County building grade" in grade.description
    assert "(sqft)" in catalog.get("property_x_basement_sqft").description
    view = catalog.get("property_x_view")
    assert (view.valid_min, view.valid_max) == (0, 3)
    assert "0 none, 1 fair, 2 good, 3 it's great" in view.description
    assert catalog.get("property_x_renovated_on").time_relation.value == "CLOCK"
    assert "`property_x_view`" in render_catalog(catalog)
    assert tenant_catalog(TenantContract("other")) is CATALOG
    assert tenant_catalog(CONTRACT) is catalog  # one object per declaration: plans are cached


def _properties(rows: list[dict[str, object]]) -> pa.Table:
    schema = table_contract("properties").arrow_schema()
    fields = [f for f in schema if f.name not in ("tenant_id", "attributes")]
    schema = pa.schema([*fields, pa.field("attributes", pa.string())])
    return pa.Table.from_pylist(rows, schema=schema)


def _home(user: str, prop: str, attributes: dict[str, object] | None, **more: object) -> dict:
    return {
        "property_id": prop,
        "owner_user_id": user,
        "market_id": "m",
        "is_primary_residence": True,
        "property_type": "SINGLE_FAMILY",
        "sqft": 1500,
        "purchased_at": datetime(2020, 1, 1),
        "purchase_price": 400_000.0,
        "attributes": None if attributes is None else json.dumps(attributes),
        **more,
    }


def _sources() -> SourceTables:
    users = [{"user_id": u, "created_at": datetime(2019, 1, 1), "market_id": "m"} for u in "abcde"]
    homes = [
        _home(
            "a",
            "pa",
            {
                "grade": 8,
                "basement_sqft": 420.5,
                "view": "it's great",
                "waterfront": True,
                "renovated_on": "2014-06-01",
                "zipcode": "98103",
            },
        ),
        _home("b", "pb", {"grade": 11, "view": "none", "waterfront": False}),
        _home("c", "pc", None),
        # Sold before the date: no home, no values.
        _home("d", "pd", {"grade": 5}, sold_at=datetime(2024, 1, 1)),
        # Bought after the date: not yet the owner's home; the earlier one is.
        _home("e", "pe1", {"grade": 6}),
        _home("e", "pe2", {"grade": 12}, purchased_at=datetime(2024, 7, 1)),
    ]
    users_table = table_contract("users").arrow_schema()
    users_schema = pa.schema([f for f in users_table if f.name not in ("tenant_id", "attributes")])
    return SourceTables(
        tables={
            "users": pa.Table.from_pylist(users, schema=users_schema),
            "properties": _properties(homes),
        }
    )


def test_values_come_from_the_home_owned_as_of_the_date() -> None:
    engine = FeatureEngine(tenant_catalog(CONTRACT))
    out = engine.compute(entity_frame(list("abcde"), AS_OF), DECLARED, _sources()).to_pylist()
    a, b, c, d, e = out
    assert a["property_x_grade"] == 8 and a["property_x_basement_sqft"] == 420.5
    assert a["property_x_view"] == 3 and a["property_x_waterfront"] == 1
    assert a["property_x_renovated_on"] == pytest.approx(
        (AS_OF - datetime(2014, 6, 1)).days / 365.25
    )
    assert b["property_x_grade"] == 11 and b["property_x_view"] == 0
    assert b["property_x_waterfront"] == 0 and b["property_x_basement_sqft"] is None
    assert all(c[name] is None for name in DECLARED)
    assert all(d[name] is None for name in DECLARED)
    assert e["property_x_grade"] == 6
    # A vector of one (the API's shape) equals the batch's row.
    for index, user in enumerate("abcde"):
        one = engine.compute(entity_frame([user], AS_OF), DECLARED, _sources()).to_pylist()[0]
        assert one == out[index]
    # The gate takes them: in range, whole where declared whole, null allowed.
    frame = engine.compute(entity_frame(list("abcde"), AS_OF), DECLARED, _sources())
    assert validate_frame(frame, catalog=engine.catalog).issues == []


def _stored(tmp_path: Path) -> Engine:
    """A SQLite store holding ``_sources()``'s rows for tenant ``t``, its contract saved."""
    if "attributes" not in Base.metadata.tables["properties"].columns:
        pytest.skip("properties has no attributes column yet (migration 0009)")
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade(engine)
    save_tenant_contract(tmp_path, CONTRACT)
    source = _sources()
    with engine.begin() as conn:
        users = source.tables["users"].to_pylist()
        conn.execute(
            insert(Base.metadata.tables["users"]),
            [u | {"tenant_id": "t", "email_opt_in": True, "is_active": True} for u in users],
        )
        homes = source.tables["properties"].to_pylist()
        for home in homes:
            home["attributes"] = json.loads(home["attributes"]) if home["attributes"] else None
            home["tenant_id"] = "t"
        conn.execute(insert(Base.metadata.tables["properties"]), homes)
    return engine


def test_the_sql_store_holds_and_returns_them(tmp_path: Path) -> None:
    engine = _stored(tmp_path)
    catalog = load_tenant_catalog(tmp_path, "t")
    assert "property_x_view" in catalog.features
    expected = FeatureEngine(catalog).compute(
        entity_frame(list("abcde"), AS_OF), DECLARED, _sources()
    )
    plan = FeatureEngine(catalog).plan(DECLARED)
    for ids in (None, ["a"], ["e", "c"]):
        loaded = load_sources(engine, "t", plan.lookback_days, AS_OF, AS_OF, ids)
        wanted = list("abcde") if ids is None else ids
        got = FeatureEngine(catalog).compute(entity_frame(wanted, AS_OF), DECLARED, loaded)
        rows = {r["entity_id"]: r for r in expected.to_pylist()}
        assert got.to_pylist() == [rows[user] for user in wanted]
    assert np.isfinite(expected["property_x_grade"].to_numpy(zero_copy_only=False)[0])


def test_the_api_reads_a_tenants_declared_features(tmp_path: Path) -> None:
    """The prediction vectors of a tenant with declared columns hold their features: computed
    on demand through the tenant's catalog, while another tenant keeps the built-in one."""
    engine = _stored(tmp_path)
    vectors = PredictionVectors(
        engine,
        SqliteOnlineStore(tmp_path / "online.db"),
        catalogs=partial(load_tenant_catalog, tmp_path),
    )
    read = vectors.read("t", ["property_x_grade", "property_x_view"], ["a", "b"], now=AS_OF)
    assert read.errors == {}
    assert read.values.tolist() == [[8.0, 3.0], [11.0, 0.0]]
    assert read.sources() == ["computed", "computed"]
    # A tenant without a contract has no such feature: the read says so, it does not guess.
    with pytest.raises(FeatureError, match="unknown feature 'property_x_grade'"):
        vectors.read("other", ["property_x_grade"], ["a"], now=AS_OF)


def test_monitoring_judges_a_declared_input_by_its_definition() -> None:
    """Drift of a tenant's model: a declared column is a model input the tenant's catalog
    defines, not a request parameter whose reference values were drawn (as it would be under
    the built-in catalog alone)."""
    names = ["property_x_basement_sqft", "property_x_renovated_on"]
    rows = np.column_stack([np.full(50, 400.0), np.full(50, 12.0)])
    at = np.full(50, np.datetime64("2024-06-01", "us"))
    instant = int(np.datetime64("2024-06-03", "us").astype(np.int64))
    catalog = tenant_catalog(CONTRACT)
    _, built_in = align_reference(rows, at, names, rows, instant, drawn_inputs=True)
    assert set(built_in) == set(names)
    aligned, unjudged = align_reference(rows, at, names, rows, instant, catalog, drawn_inputs=True)
    assert unjudged == {}
    # A clock moves on with the days: two days later the renovation is two days older.
    assert aligned[0, 1] == pytest.approx(12.0 + 2 / 365.25, abs=1e-3)
    assert relations_of(names, catalog)["property_x_renovated_on"].value == "CLOCK"
