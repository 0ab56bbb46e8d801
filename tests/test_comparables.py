"""Comparable-sales features: a hand-computed case, point in time as a property, the batch and
single-entity shapes agreeing, and the few-entity load bringing the neighbours' sales."""

from __future__ import annotations

import math
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, insert

from roiml.db import Base
from roiml.db.engine import make_engine
from roiml.db.migrate import upgrade
from roiml.features.catalog import CATALOG
from roiml.features.definitions.comparables import (
    COMPARABLE_MONTHS,
    EARTH_RADIUS_KM,
    MIN_COMPARABLES,
    NEAREST,
    RADIUS_KM,
)
from roiml.features.engine import FeatureEngine, entity_frame
from roiml.features.sources import SourceTables, load_sources
from roiml.features.validation import validate_frame
from roiml.ingest.contract import table_contract
from roiml.world.config import WorldConfig
from roiml.world.generate import generate_world

COMPS = [n for n, f in CATALOG.features.items() if f.sub_category == "comparables"]
AS_OF = datetime(2024, 3, 1)
KM = math.pi / 180 * EARTH_RADIUS_KM  # km per degree of latitude
HOME_LAT, HOME_LON = 47.6, -122.3


def _table(table: str, rows: list[dict[str, object]]) -> pa.Table:
    schema = table_contract(table).arrow_schema()
    schema = pa.schema([f for f in schema if f.name != "tenant_id"])
    return pa.Table.from_pylist(rows, schema=schema)


def _north(km: float) -> tuple[float, float]:
    return HOME_LAT + km / KM, HOME_LON


def _east(km: float) -> tuple[float, float]:
    return HOME_LAT, HOME_LON + km / (KM * math.cos(math.radians(HOME_LAT)))


class _World:
    """Users, homes and sales built by hand: one homeowner ``u0`` in home ``p0``."""

    def __init__(self) -> None:
        self.users: list[dict[str, object]] = []
        self.homes: list[dict[str, object]] = []
        self.sales: list[dict[str, object]] = []
        self.home("u0", "p0", "m1", (HOME_LAT, HOME_LON), 2000, datetime(2015, 1, 1))

    def home(
        self,
        user: str,
        prop: str,
        market: str,
        where: tuple[float, float] | None,
        sqft: int,
        bought: datetime,
    ) -> None:
        self.users.append(
            {"user_id": user, "created_at": datetime(2010, 1, 1), "market_id": market}
        )
        lat, lon = where if where else (None, None)
        self.homes.append(
            {
                "property_id": prop,
                "owner_user_id": user,
                "market_id": market,
                "is_primary_residence": True,
                "property_type": "SINGLE_FAMILY",
                "sqft": sqft,
                "purchased_at": bought,
                "purchase_price": 1.0,
                "latitude": lat,
                "longitude": lon,
            }
        )

    def sale(
        self,
        prop: str,
        when: datetime,
        price: float,
        kind: str = "SELL",
        user: str | None = None,
    ) -> None:
        owner = next(h["owner_user_id"] for h in self.homes if h["property_id"] == prop)
        self.sales.append(
            {
                "user_id": user or owner,
                "property_id": prop,
                "transaction_type": kind,
                "opened_at": when - timedelta(days=30),
                "closed_at": when,
                "price": price,
            }
        )

    def neighbour(
        self, n: int, market: str, where: tuple[float, float] | None, sqft: int = 1000
    ) -> str:
        prop = f"p{n}"
        self.home(f"u{n}", prop, market, where, sqft, datetime(2010, 6, 1))
        return prop

    def sources(self) -> SourceTables:
        return SourceTables(
            tables={
                "users": _table("users", self.users),
                "properties": _table("properties", self.homes),
                "transactions": _table("transactions", self.sales),
            }
        )


def _values(sources: SourceTables, entities: list[str], as_of: datetime = AS_OF) -> pa.Table:
    return FeatureEngine().compute(entity_frame(entities, as_of), COMPS, sources)


def test_a_hand_computed_neighbourhood() -> None:
    world = _World()
    near_ppsf = [400.0, 500.0, 550.0, 600.0, 800.0, 1000.0]
    spots = [_north(0.5), _east(1.0), _north(-1.4), _east(-0.3), _north(1.2), _east(1.45)]
    for i, (ppsf, spot) in enumerate(zip(near_ppsf, spots, strict=True), start=1):
        world.sale(world.neighbour(i, "m1", spot), datetime(2023, 9, i), ppsf * 1000)
    # Farther than the radius, same market: the market's only.
    world.sale(world.neighbour(20, "m1", _north(1.6)), datetime(2024, 1, 5), 300_000.0)
    world.sale(world.neighbour(21, "m1", _east(5.0)), datetime(2024, 2, 5), 2_000_000.0)
    # Near, another market: the radius's only (and a BUY of the same closing counts once).
    world.sale(world.neighbour(22, "m2", _north(0.2)), datetime(2024, 2, 20), 700_000.0)
    world.sale("p22", datetime(2024, 2, 20), 700_000.0, kind="BUY", user="u0")
    # Never counted: too old, at or after the as-of, the home's own sale, no price, no location.
    old = AS_OF.replace(year=AS_OF.year - 1) - timedelta(days=1)
    assert COMPARABLE_MONTHS == 12
    world.sale(world.neighbour(30, "m1", _north(0.1)), old, 123_000.0)
    world.sale(world.neighbour(31, "m1", _north(0.1)), AS_OF, 999_000.0)
    world.sale("p0", datetime(2024, 2, 1), 5_000_000.0, kind="BUY")
    world.sale(world.neighbour(32, "m1", _north(0.1)), datetime(2024, 1, 1), 0.0)
    world.sale("p31", datetime(2024, 1, 9), 450_000.0, kind="REFINANCE")
    world.sale(world.neighbour(33, "m9", None), datetime(2024, 1, 9), 450_000.0)

    row = _values(world.sources(), ["u0"]).to_pylist()[0]
    radius = np.array([*near_ppsf, 700.0])
    market = np.array([*near_ppsf, 300.0, 2000.0])
    q1, q2, q3 = np.percentile(radius, [25, 50, 75])
    m1, m2, m3 = np.percentile(market, [25, 50, 75])
    assert row["property_has_location"] == 1.0
    assert row["comps_radius_count"] == 7.0
    assert row["comps_radius_median_ppsf"] == pytest.approx(q2)
    assert row["comps_radius_iqr_ppsf"] == pytest.approx(q3 - q1)
    assert row["comps_radius_value_estimate"] == pytest.approx(q2 * 2000)
    assert row["comps_market_count"] == 8.0
    assert row["comps_market_median_ppsf"] == pytest.approx(m2)
    assert row["comps_market_iqr_ppsf"] == pytest.approx(m3 - m1)
    assert row["comps_market_value_estimate"] == pytest.approx(m2 * 2000)


def test_the_radius_median_is_of_the_nearest_sales() -> None:
    """Past NEAREST sales in the radius, the median and IQR are of the nearest; the count is of
    all of them. Farther sales here sold dearer, so taking any of them would move the median."""
    world = _World()
    ppsf = []
    for i in range(1, NEAREST + 11):
        km = 0.04 * i
        world.sale(world.neighbour(i, "m1", _east(km)), datetime(2023, 12, 1), 100_000.0 * i)
        ppsf.append(100.0 * i)
    row = _values(world.sources(), ["u0"]).to_pylist()[0]
    nearest = np.array(ppsf[:NEAREST])
    q1, q2, q3 = np.percentile(nearest, [25, 50, 75])
    assert row["comps_radius_count"] == NEAREST + 10
    assert row["comps_radius_median_ppsf"] == pytest.approx(q2)
    assert row["comps_radius_iqr_ppsf"] == pytest.approx(q3 - q1)
    assert row["comps_market_median_ppsf"] == pytest.approx(np.median(ppsf))


def test_too_few_or_no_location_is_null() -> None:
    world = _World()
    for i in range(1, MIN_COMPARABLES):
        world.sale(world.neighbour(i, "m1", _north(0.1 * i)), datetime(2023, 12, i), 400_000.0)
    world.home("u9", "p9", "m1", None, 1500, datetime(2012, 1, 1))
    out = _values(world.sources(), ["u0", "u9", "nobody"]).to_pylist()
    assert out[0]["comps_radius_count"] == MIN_COMPARABLES - 1
    assert out[0]["comps_radius_median_ppsf"] is None
    assert out[0]["comps_market_count"] == MIN_COMPARABLES - 1
    assert out[0]["comps_market_median_ppsf"] is None
    # No coordinates: no radius figures, but the market's.
    assert out[1]["property_has_location"] == 0.0 and out[1]["comps_radius_count"] is None
    assert out[1]["comps_market_count"] == MIN_COMPARABLES - 1
    # No home at all: nothing.
    assert all(out[2][name] is None for name in COMPS)


def _random_world(seed: int, homes: int) -> tuple[_World, list[str]]:
    rng = np.random.default_rng(seed)
    world = _World()
    props = ["p0"]
    for i in range(1, homes):
        spot = (HOME_LAT + rng.normal(0, 2.0) / KM, HOME_LON + rng.normal(0, 2.0) / KM)
        market = "m1" if rng.random() < 0.8 else "m2"
        props.append(world.neighbour(i, market, spot, int(rng.integers(600, 4000))))
    days = (AS_OF - datetime(2022, 6, 1)).days
    for _ in range(homes * 2):
        prop = props[int(rng.integers(0, len(props)))]
        when = datetime(2022, 6, 1) + timedelta(days=float(rng.uniform(0, days)))
        world.sale(prop, when, float(rng.lognormal(13, 0.4)))
    return world, [f"u{i}" for i in range(homes)]


def _same(left: pa.Table, right: pa.Table) -> None:
    for name in COMPS:
        a = left[name].to_numpy(zero_copy_only=False).astype(float)
        b = right[name].to_numpy(zero_copy_only=False).astype(float)
        np.testing.assert_allclose(a, b, rtol=1e-9, equal_nan=True, err_msg=name)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    homes=st.integers(8, 40),
    later_days=st.floats(0, 400),
    own_days=st.floats(-500, 400),
    price=st.floats(1e4, 1e7),
    own=st.booleans(),
)
def test_later_sales_and_the_homes_own_change_nothing(
    seed: int, homes: int, later_days: float, own_days: float, price: float, own: bool
) -> None:
    """A sale closed at or after the as-of (of any home, anywhere), or any sale of the home
    itself, leaves every comparable value of that home as of that instant as it was."""
    world, users = _random_world(seed, homes)
    before = _values(world.sources(), users)
    target = int(np.random.default_rng(seed).integers(0, homes))
    rng = np.random.default_rng(seed + 1)
    if own:  # the home's own sale, before or after the as-of
        world.sale(f"p{target}", AS_OF + timedelta(days=own_days), price)
    for _ in range(5):  # sales at or after the as-of, near and far
        world.sale(f"p{int(rng.integers(0, homes))}", AS_OF + timedelta(days=later_days), price)
    after = _values(world.sources(), users)
    if own:
        _same(before.slice(target, 1), after.slice(target, 1))
    else:
        _same(before, after)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31), hours=st.integers(0, 24 * 300))
def test_single_entity_equals_batch(seed: int, hours: int) -> None:
    world, users = _random_world(seed, 30)
    as_of = AS_OF - timedelta(hours=hours)
    sources = world.sources()
    engine = FeatureEngine()
    batch = engine.compute(entity_frame(users, as_of), COMPS, sources)
    for index in (0, seed % 30):
        single = engine.compute(entity_frame([users[index]], as_of), COMPS, sources)
        _same(single, batch.slice(index, 1))


# ---- a generated world, through the SQL store ---------------------------------------------------

START, END = date(2023, 1, 1), date(2024, 7, 1)


@pytest.fixture(scope="module")
def world_engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    tmp: Path = tmp_path_factory.mktemp("comparables")
    engine = make_engine(f"sqlite:///{tmp / 'world.db'}")
    upgrade(engine)
    config = WorldConfig(users=400, start=START, end=END, seed=5, tenant_id="c")
    generate_world(engine, tmp / "data", config)
    return engine


def test_a_few_entity_load_brings_the_neighbours_sales(world_engine: Engine) -> None:
    """The API computes one homeowner's vector from a few-entity load: it must hold the other
    homeowners' sales the comparables read, so its values equal the full load's."""
    engine = FeatureEngine()
    plan = engine.plan(["property"])
    as_of = datetime(2024, 5, 1)
    full = load_sources(world_engine, "c", plan.lookback_days, as_of, as_of)
    users = full.tables["users"]["user_id"].to_pylist()
    batch = engine.compute(entity_frame(users, as_of), COMPS, full)
    counts = batch["comps_market_count"].to_numpy(zero_copy_only=False)
    assert np.nanmax(counts) >= MIN_COMPARABLES, "the world sold too little to test with"
    assert not np.isnan(batch["comps_radius_median_ppsf"].to_numpy(zero_copy_only=False)).all()
    for index in range(0, len(users), 37):
        few = load_sources(world_engine, "c", plan.lookback_days, as_of, as_of, [users[index]])
        single = engine.compute(entity_frame([users[index]], as_of), COMPS, few)
        _same(single, batch.slice(index, 1))
    # More entities than an IN list takes: filtered in Arrow, same values.
    many = load_sources(world_engine, "c", plan.lookback_days, as_of, as_of, users[:-1])
    _same(
        engine.compute(entity_frame(users[:-1], as_of), COMPS, many), batch.slice(0, len(users) - 1)
    )


def test_world_homes_have_coordinates_near_their_market(world_engine: Engine) -> None:
    full = load_sources(
        world_engine, "c", {"properties": None}, datetime(2000, 1, 1), datetime(2030, 1, 1)
    )
    homes = full.tables["properties"]
    assert homes["latitude"].null_count == 0 and homes["longitude"].null_count == 0
    lat = homes["latitude"].to_numpy()
    assert ((lat > 25) & (lat < 50)).all()
    assert RADIUS_KM > 0


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_few_entity_load_reads_across_a_market_border(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A neighbour of another market is within the radius: the few-entity load reads a box
    around the home as well as its market, so the one-entity values equal the full load's.
    On both stores: the homes within reach are a UNION of two index-led reads (PostgreSQL's
    plan differs from SQLite's)."""
    world = _World()
    for i in range(1, 8):
        market, spot = ("m2", _east(0.2 * i)) if i % 2 else ("m1", _north(0.2 * i))
        world.sale(world.neighbour(i, market, spot), datetime(2023, 11, i), 300_000.0 + i)
    world.sale(world.neighbour(9, "m3", _north(40.0)), datetime(2023, 11, 9), 900_000.0)
    if backend == "postgres":
        engine = make_engine(request.getfixturevalue("postgres_url"))
        tenant = f"b{uuid.uuid4().hex[:8]}"
    else:
        engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
        upgrade(engine)
        tenant = "b"
    tables = Base.metadata.tables
    defaults = {"email_opt_in": True, "is_active": True}
    with engine.begin() as conn:
        conn.execute(
            insert(tables["users"]), [u | {"tenant_id": tenant} | defaults for u in world.users]
        )
        conn.execute(insert(tables["properties"]), [h | {"tenant_id": tenant} for h in world.homes])
        conn.execute(
            insert(tables["transactions"]), [t | {"tenant_id": tenant} for t in world.sales]
        )
    plan = FeatureEngine().plan(["property"])
    full = load_sources(engine, tenant, plan.lookback_days, AS_OF, AS_OF)
    users = [u["user_id"] for u in world.users]
    batch = _values(full, users)
    assert batch.to_pylist()[0]["comps_radius_count"] == 7
    for index, user in enumerate(users):
        few = load_sources(engine, tenant, plan.lookback_days, AS_OF, AS_OF, [user])
        _same(_values(few, [user]), batch.slice(index, 1))
    engine.dispose()


def test_the_gate_judges_null_rates_where_a_value_can_exist() -> None:
    """No coordinates or too few sales anywhere: nothing could be computed, the gate passes. A
    median missing where enough homes sold is a fault, and fails it."""
    rows = 40
    frame = {
        "entity_id": pa.array([f"u{i}" for i in range(rows)]),
        "as_of": pa.array([AS_OF] * rows, pa.timestamp("us")),
        "property_has_location": pa.array([0.0] * rows),
        "comps_radius_count": pa.nulls(rows, pa.float64()),
        "comps_radius_median_ppsf": pa.nulls(rows, pa.float64()),
        "comps_market_count": pa.array([3.0] * rows),
        "comps_market_median_ppsf": pa.nulls(rows, pa.float64()),
    }
    assert validate_frame(pa.table(frame)).issues == []
    frame["comps_market_count"] = pa.array([12.0] * rows)
    frame["comps_market_median_ppsf"] = pa.array([None] + [250.0] * (rows - 1), pa.float64())
    issues = validate_frame(pa.table(frame)).issues
    assert [(i.feature, i.rule) for i in issues] == [("comps_market_median_ppsf", "null rate")]
    assert "where comps_market_count >= 5" in str(issues[0])


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31), latitude=st.floats(-70, 70), spread_km=st.floats(0.3, 4))
def test_the_radius_count_equals_a_brute_force_count(
    seed: int, latitude: float, spread_km: float
) -> None:
    """The grid join misses no sale within the radius and counts none beyond it, at any
    latitude: every home's count equals a haversine over every pair, in NumPy."""
    rng = np.random.default_rng(seed)
    world = _World()
    world.homes[0]["latitude"], world.homes[0]["longitude"] = latitude, 10.0
    n = 60
    lat = latitude + rng.normal(0, spread_km, n) / KM
    lon = 10.0 + rng.normal(0, spread_km, n) / (KM * math.cos(math.radians(latitude)))
    for i in range(1, n):
        world.neighbour(i, "m1", (float(lat[i]), float(lon[i])))
    lat[0], lon[0] = latitude, 10.0
    sold = rng.integers(0, n, 3 * n)
    for k, home in enumerate(sold):
        world.sale(f"p{home}", AS_OF - timedelta(days=float(rng.uniform(1, 300)) + k * 1e-3), 1e5)
    out = _values(world.sources(), [f"u{i}" for i in range(n)])
    got = out["comps_radius_count"].to_numpy(zero_copy_only=False)
    p1, p2 = np.radians(lat)[:, None], np.radians(lat)[None, :]
    dlon = np.radians(lon)[None, :] - np.radians(lon)[:, None]
    h = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlon / 2) ** 2
    km = 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(h))
    sales_of = np.bincount(sold, minlength=n)
    within = (km <= RADIUS_KM) & ~np.eye(n, dtype=bool)
    np.testing.assert_array_equal(got, within @ sales_of)
