"""The feature engine on a generated world: catalog shape, point-in-time properties, and the
single-entity path agreeing with the batch path."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from roiml.db.engine import make_engine
from roiml.db.migrate import upgrade
from roiml.errors import FeatureError
from roiml.features.catalog import CATALOG
from roiml.features.catalog_doc import render_catalog
from roiml.features.engine import FeatureEngine, entity_frame
from roiml.features.engineer import FeatureEngineer
from roiml.features.sources import TIME_COLUMNS, SourceTables, load_sources
from roiml.ingest.contract import table_contract
from roiml.world.config import WorldConfig
from roiml.world.generate import generate_world

START, END = date(2023, 1, 1), date(2024, 7, 1)
START_AT, END_AT = datetime(2023, 1, 1), datetime(2024, 7, 1)
ALL_SETS = list(CATALOG.feature_sets)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world_engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    tmp = tmp_path_factory.mktemp("features")
    engine = make_engine(f"sqlite:///{tmp / 'world.db'}")
    upgrade(engine)
    generate_world(
        engine, tmp / "data", WorldConfig(users=300, start=START, end=END, seed=3, tenant_id="f")
    )
    return engine


@pytest.fixture(scope="module")
def all_sources(world_engine: Engine) -> SourceTables:
    plan = FeatureEngine().plan(ALL_SETS)
    return load_sources(
        world_engine, "f", plan.lookback_days, datetime(2023, 1, 1), datetime(2024, 7, 1)
    )


def test_catalog_has_the_seed_categories() -> None:
    counts = Counter((f.category.value, f.sub_category) for f in CATALOG.features.values())
    assert len(CATALOG.features) >= 84
    assert counts == {
        ("BEHAVIORAL", "document_access"): 7,
        ("BEHAVIORAL", "email_engagement"): 6,
        ("BEHAVIORAL", "platform_engagement"): 6,
        ("BEHAVIORAL", "alert_interaction"): 4,
        ("BEHAVIORAL", "search_browse"): 4,
        ("BEHAVIORAL", "engagement_timing"): 8,
        ("PROPERTY", "characteristics"): 8,
        ("PROPERTY", "financial"): 7,
        ("PROPERTY", "market_context"): 5,
        ("PROPERTY", "lifecycle"): 3,
        ("PROPERTY", "comparables"): 9,
        ("PROPERTY", "location"): 2,
        ("TRANSACTIONAL", "history"): 5,
        ("TRANSACTIONAL", "patterns"): 5,
        ("TRANSACTIONAL", "agent_relationship"): 3,
        ("MARKET", "conditions"): 5,
        ("MARKET", "economic"): 3,
        ("MARKET", "seasonal"): 5,
        ("TEMPORAL", "time_based"): 4,
        ("TEMPORAL", "cyclical"): 4,
    }
    for feature in CATALOG.features.values():
        assert feature.description and feature.version >= 1
        assert 0 <= feature.max_null_rate <= 1


def test_feature_catalog_doc_is_fresh() -> None:
    written = (ROOT / "docs" / "FEATURE_CATALOG.md").read_text()
    assert written == render_catalog(), "run `roiml features catalog` to regenerate it"


def test_every_feature_computes_with_plausible_values(world_engine: Engine) -> None:
    frame = FeatureEngineer(world_engine, "f").compute_batch(ALL_SETS, None, datetime(2024, 3, 1))
    assert frame.num_rows == 300 and frame.num_columns == 2 + len(CATALOG.features)
    for name in frame.column_names[2:]:
        column = frame[name]
        assert column.null_count < frame.num_rows, f"{name} is always null"
        assert pa.types.is_float64(column.type)


def _equal(left: pa.Table, right: pa.Table) -> None:
    assert left.column_names == right.column_names
    for name in left.column_names[2:]:
        a = left[name].to_numpy(zero_copy_only=False).astype(float)
        b = right[name].to_numpy(zero_copy_only=False).astype(float)
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=name)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(user=st.integers(0, 299), offset_hours=st.integers(24 * 40, 24 * 540))
def test_single_entity_equals_batch(world_engine: Engine, user: int, offset_hours: int) -> None:
    as_of = datetime(2023, 1, 1) + timedelta(hours=offset_hours, minutes=17)
    engineer = FeatureEngineer(world_engine, "f")
    batch = engineer.compute_batch(ALL_SETS, None, as_of)
    row = batch.filter(pc.equal(batch["entity_id"], f"user_{user}"))
    single = engineer.compute_batch(ALL_SETS, [f"user_{user}"], as_of)
    _equal(row, single)


def _future_copies(
    sources: SourceTables, as_of: datetime, rng: np.random.Generator
) -> SourceTables:
    """Every table plus rows stamped at or after ``as_of`` (copies of real rows, moved later)."""
    out: dict[str, pa.Table] = {}
    limit = np.datetime64(as_of, "us")
    for name, table in sources.tables.items():
        picked = table.take(rng.integers(0, table.num_rows, min(table.num_rows, 200)))
        shift = rng.integers(0, 60 * 86400 * 10**6, picked.num_rows).astype("timedelta64[us]")
        columns = {}
        for field in picked.schema:
            values = picked[field.name]
            if pa.types.is_timestamp(field.type) and (
                field.name in TIME_COLUMNS.get(name, ())
                or name in ("users", "market_statistics")
                or field.name in ("purchased_at", "sold_at", "mortgage_started_at", "opened_at")
            ):
                values = pa.array(limit + shift, pa.timestamp("us"))
            columns[field.name] = values
        if name == "users":  # new homeowners joining later (user ids are unique)
            columns["user_id"] = pc.binary_join_element_wise("future_", picked["user_id"], "")
        if name == "market_statistics":
            last = pc.max(table["month"]).as_py()
            columns["month"] = pa.array(
                [last + timedelta(days=31 * (i + 1)) for i in range(picked.num_rows)]
            )
        if name == "economic_indicators":
            last = pc.max(table["observed_on"]).as_py()
            columns["observed_on"] = pa.array(
                [last + timedelta(days=7 * (i + 1)) for i in range(picked.num_rows)]
            )
        out[name] = pa.concat_tables([table, pa.table(columns, schema=table.schema)])
    return SourceTables(tables=out)


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**31), offset_days=st.integers(40, 540), hour=st.integers(0, 23))
def test_rows_stamped_at_or_after_as_of_change_nothing(
    all_sources: SourceTables, seed: int, offset_days: int, hour: int
) -> None:
    as_of = datetime(2023, 1, 1) + timedelta(days=offset_days, hours=hour)
    rng = np.random.default_rng(seed)
    users = [f"user_{i}" for i in rng.choice(300, 25, replace=False)]
    engine = FeatureEngine()
    frame = entity_frame(users, as_of)
    future = _future_copies(all_sources, as_of, rng)
    before = engine.compute(frame, ALL_SETS, all_sources)
    after = engine.compute(frame, ALL_SETS, future)
    _equal(before, after)
    # A single entity runs a plan prepared once and reused over both sets of rows.
    single = entity_frame(users[:1], as_of)
    _equal(engine.compute(single, ALL_SETS, future), before.slice(0, 1))
    _equal(engine.compute(single, ALL_SETS, all_sources), before.slice(0, 1))


def test_an_open_after_as_of_is_not_counted() -> None:
    _check_an_open_after_as_of(FeatureEngine())


def _check_an_open_after_as_of(engine: FeatureEngine) -> None:
    as_of = datetime(2024, 1, 10)
    users = pa.table(
        {
            "user_id": ["u"],
            "created_at": [datetime(2020, 1, 1)],
            "market_id": ["m"],
            "agent_id": pa.array([None], pa.string()),
        }
    )
    emails = pa.table(
        {
            "user_id": ["u", "u"],
            "sent_at": [datetime(2024, 1, 5), datetime(2024, 1, 6)],
            "opened_at": [datetime(2024, 1, 9), datetime(2024, 1, 11)],  # the second: after as-of
            "clicked_at": pa.array([None, None], pa.timestamp("us")),
        }
    )
    out = engine.compute(
        entity_frame(["u"], as_of),
        ["email_open_rate_30d", "emails_received_30d"],
        SourceTables(tables={"users": users, "email_events": emails}),
    )
    assert out["email_open_rate_30d"].to_pylist() == [0.5]
    assert out["emails_received_30d"].to_pylist() == [2.0]


def test_a_reused_plan_gets_what_planning_afresh_gets(
    world_engine: Engine, all_sources: SourceTables
) -> None:
    """Frames of a few rows run a statement prepared once per thread and query shape, over
    sources swapped per request; frames of more rows plan afresh. One engine, many requests in
    turn (other entities, times, sources, and a table of another schema in between): each
    single-row answer equals that row planned afresh."""
    engine = FeatureEngine()
    wide = 17  # more rows than a reused plan takes: planned afresh
    requests = [("user_3", datetime(2024, 3, 1)), ("user_250", datetime(2023, 6, 30, 5))]
    requests += [("user_3", datetime(2023, 2, 11, 13)), ("nobody", datetime(2024, 1, 1))]
    for index, (entity, as_of) in enumerate(requests):
        sources = all_sources
        if index % 2:  # the rows one entity's request loads, as at serving time
            sources = load_sources(
                world_engine, "f", engine.plan(ALL_SETS).lookback_days, as_of, as_of, [entity]
            )
        single = engine.compute(entity_frame([entity], as_of), ALL_SETS, sources)
        fresh = engine.compute(entity_frame([entity] * wide, as_of), ALL_SETS, sources)
        _equal(single, fresh.slice(0, 1))
        if index == 1:  # sources of another schema (fewer columns) under the same names
            _check_an_open_after_as_of(engine)


def _contract_table(table: str, rows: list[dict[str, object]]) -> pa.Table:
    schema = table_contract(table).arrow_schema()
    schema = pa.schema([f for f in schema if f.name != "tenant_id"])
    return pa.Table.from_pylist(rows, schema=schema)


def _tied_sources(reverse: bool) -> SourceTables:
    """One homeowner whose homes, loans and market figures tie on their timestamps."""
    home = {"owner_user_id": "u", "market_id": "m", "is_primary_residence": True}
    home |= {"purchased_at": datetime(2022, 5, 1), "purchase_price": 300_000.0}
    deal = {"user_id": "u", "property_id": "p2", "closed_at": datetime(2023, 3, 1)}
    month = {"market_id": "m", "published_at": datetime(2023, 3, 5)}
    tables = {
        "users": [{"user_id": "u", "created_at": datetime(2020, 1, 1), "market_id": "m"}],
        "properties": [
            home | {"property_id": "p1", "sqft": 1500},
            home | {"property_id": "p2", "sqft": 2500},
        ],
        "transactions": [
            deal | {"transaction_type": "BUY", "loan_amount": 3e5, "interest_rate": 6.5},
            deal | {"transaction_type": "REFINANCE", "loan_amount": 2.8e5, "interest_rate": 4.0},
        ],
        "market_statistics": [
            month | {"month": date(2023, 1, 1), "median_price": 400_000.0},
            month | {"month": date(2023, 2, 1), "median_price": 410_000.0},
        ],
    }
    return SourceTables(
        tables={
            name: _contract_table(name, rows[::-1] if reverse else rows)
            for name, rows in tables.items()
        }
    )


def test_rows_tied_on_their_time_are_picked_by_a_stated_order() -> None:
    """Context joins pick among rows with the same key and time by the join's ``ties``, in the
    batch shape (ASOF), the few-row shape and the one-row shape alike, whatever the row order:
    the greater property id, a refinance over the purchase it follows, the latest month."""
    engine = FeatureEngine()
    names = ["property_sqft", "current_mortgage_rate", "market_median_price"]
    as_of = datetime(2023, 6, 1)
    expected = {"property_sqft": 2500.0, "current_mortgage_rate": 4.0}
    expected["market_median_price"] = 410_000.0
    for reverse in (False, True):
        sources = _tied_sources(reverse)
        for rows in (1, 3, 17):
            out = engine.compute(entity_frame(["u"] * rows, as_of), names, sources)
            for name, value in expected.items():
                assert out[name].to_pylist() == [value] * rows, (name, rows, reverse)


def test_frame_rows_keep_order_and_duplicates(all_sources: SourceTables) -> None:
    frame = entity_frame(
        ["user_5", "user_1", "user_5", "nobody"],
        [datetime(2024, 2, 1)] * 2 + [datetime(2023, 9, 1)] * 2,
    )
    out = FeatureEngine().compute(frame, ["session_count_30d", "property_sqft"], all_sources)
    assert out["entity_id"].to_pylist() == ["user_5", "user_1", "user_5", "nobody"]
    assert out["session_count_30d"].to_pylist()[3] == 0.0
    assert out["property_sqft"].to_pylist()[3] is None


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda e: e.compute_feature("no_such_feature", "user_1"), "unknown feature"),
        (
            lambda e: e.compute_feature("doc_acces_count_7d", "user_1"),
            "did you mean doc_access_count_7d",
        ),
        (
            lambda e: e.compute_feature_set(["behavioral"], "user_1", "PROPERTY"),
            "USER entities only",
        ),
        (
            lambda e: e.compute_feature_set(["behavioral"], "user_1", "PLANET"),
            "unknown entity type",
        ),
        (
            lambda e: e.backfill_features(
                ["temporal"], ["user_1"], date(2024, 2, 1), date(2024, 1, 1)
            ),
            "before start date",
        ),
        (lambda e: e.compute_batch(["temporal"], []), "no entity ids"),
    ],
)
def test_bad_requests_say_what_is_wrong(world_engine: Engine, call: object, message: str) -> None:
    engineer = FeatureEngineer(world_engine, "f")
    with pytest.raises(FeatureError, match=message):
        call(engineer)  # type: ignore[operator]


def test_entity_frame_without_columns_is_refused(all_sources: SourceTables) -> None:
    with pytest.raises(FeatureError, match="lacks column"):
        FeatureEngine().compute(pa.table({"id": ["u"]}), ["temporal"], all_sources)


def test_backfill_is_the_batch_of_each_day(world_engine: Engine) -> None:
    engineer = FeatureEngineer(world_engine, "f")
    users = ["user_1", "user_2", "user_3"]
    backfill = engineer.backfill_features(["behavioral"], users, date(2024, 1, 1), date(2024, 1, 3))
    assert backfill.num_rows == 9
    day2 = engineer.compute_batch(["behavioral"], users, datetime(2024, 1, 2))
    _equal(backfill.slice(3, 3), day2)


def test_compiled_query_is_lean_and_ordered() -> None:
    plan = FeatureEngine().plan(ALL_SETS)
    ctes = dict(
        part.split(" AS (", 1)
        for part in plan.sql.removeprefix("WITH ").split("\nSELECT entity_id")[0].split(",\n")
    )
    # Groups that read only the frame's columns join the frame, not the chain of ASOF joins...
    assert " FROM frame c JOIN " in ctes["g_emails"]
    # ...and one that reads a context column (the home's value estimate) joins the context row.
    assert " FROM frame c JOIN " not in ctes["g_searches"]
    # Every context join comes after the joins it builds on.
    chain = [body.split(" FROM c")[0] for cte, body in ctes.items() if cte[1:].isdigit()]
    order = [
        next(name for name, join in CATALOG.joins.items() if join.columns[0] in select)
        for select in chain[1:]
    ]
    assert sorted(order) == sorted(CATALOG.joins)
    for name in order:
        for need in CATALOG.joins[name].needs:
            assert order.index(need) < order.index(name), (need, name)
    # The frame's time span is a parameter, not a subquery repeated per group.
    assert "$hi" in plan.sql and "min(as_of)" not in plan.sql
    assert plan.parameters == ("lo", "hi")
    assert FeatureEngine().plan(["property_sqft"]).parameters == ()  # no window group


def test_single_entities_from_postgres_equal_the_batch(
    postgres_engine: Engine, tenant: str, tmp_path: Path
) -> None:
    """The few-entity load (one pipelined round trip of per-table queries) on PostgreSQL gets
    the rows the bulk load gets, so a few entities - alone, or sharing an agent - match."""
    generate_world(
        postgres_engine,
        tmp_path,
        WorldConfig(users=150, start=START, end=END, seed=5, tenant_id=tenant),
    )
    engineer = FeatureEngineer(postgres_engine, tenant)
    users = load_sources(postgres_engine, tenant, {"users": None}, START_AT, END_AT).tables["users"]
    by_agent: dict[str, list[str]] = {}
    ids, agents = users["user_id"].to_pylist(), users["agent_id"].to_pylist()
    for user, agent in zip(ids, agents, strict=True):
        by_agent.setdefault(agent or "", []).append(user)
    shared = next(clients[:2] for agent, clients in by_agent.items() if agent and len(clients) > 1)
    for as_of, entities in (
        (datetime(2023, 9, 14, 8, 30), [ids[7]]),
        (datetime(2024, 5, 2), shared),
        (datetime(2024, 6, 30, 23), [*shared, ids[40]]),
    ):
        batch = engineer.compute_batch(ALL_SETS, None, as_of)
        rows = batch.filter(pc.is_in(batch["entity_id"], pa.array(entities)))
        few = engineer.compute_batch(ALL_SETS, entities, as_of)
        order = pc.index_in(rows["entity_id"], pa.array(few["entity_id"].to_pylist()))
        _equal(rows.take(pc.sort_indices(order)), few)
