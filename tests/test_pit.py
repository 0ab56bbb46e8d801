"""point_in_time_join: a property test against a naive reference, every edge case, every input
kind, and every bad input."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, DateTime, Float, Integer, MetaData, String, Table, create_engine

from roiml.errors import FeatureError
from roiml.store.pit import SqlTable, point_in_time_join

T0 = datetime(2024, 1, 1)
HOUR = timedelta(hours=1)
TS = pa.timestamp("us")


def at(hours: float) -> datetime:
    return T0 + hours * HOUR


@dataclass(frozen=True)
class Row:
    """One feature-table row."""

    entity: str | None
    event: datetime | None
    created: datetime | None
    value: float | None


def entity_frame(rows: Sequence[tuple[str | None, datetime | None]]) -> pa.Table:
    return pa.table(
        {
            "entity_id": pa.array([e for e, _ in rows], pa.string()),
            "event_timestamp": pa.array([t for _, t in rows], TS),
            "row": pa.array(range(len(rows)), pa.int64()),
        }
    )


def feature_table(rows: Sequence[Row]) -> pa.Table:
    return pa.table(
        {
            "entity_id": pa.array([r.entity for r in rows], pa.string()),
            "event_timestamp": pa.array([r.event for r in rows], TS),
            "created_timestamp": pa.array([r.created for r in rows], TS),
            "f": pa.array([r.value for r in rows], pa.float64()),
            "g": pa.array([None if r.value is None else -r.value for r in rows], pa.float64()),
        }
    )


def reference(
    entities: Sequence[tuple[str | None, datetime | None]],
    rows: Sequence[Row],
    ttl: timedelta | None,
    known_only: bool,
) -> list[float | None]:
    """The rule, written as plainly as possible: scan every feature row for every entity row."""
    chosen: list[float | None] = []
    for entity, moment in entities:
        best: tuple[tuple[datetime, bool, datetime], float | None] | None = None
        for row in rows:
            if entity is None or moment is None or row.entity != entity or row.event is None:
                continue
            if row.event > moment or (ttl is not None and row.event < moment - ttl):
                continue
            if known_only and (row.created is None or row.created > moment):
                continue
            # A null created timestamp loses every tie on the event timestamp.
            rank = (row.event, row.created is not None, row.created or datetime.min)
            if best is None or rank > best[0]:
                best = (rank, row.value)
        chosen.append(None if best is None else best[1])
    return chosen


def values(result: pa.Table, name: str = "f") -> list[float | None]:
    return list(result.column(name).to_pylist())


# --- the property ---------------------------------------------------------------------------

ENTITIES = st.sampled_from(["a", "b", "c", "nobody"])  # "nobody" never has feature rows
HOURS = st.integers(min_value=0, max_value=12)


@st.composite
def feature_rows(draw: st.DrawFn) -> list[Row]:
    drafts = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["a", "a", "b", "c", None]),
                st.one_of(HOURS.map(at), HOURS.map(at), HOURS.map(at), st.none()),
                st.one_of(st.integers(-2, 4), st.none()),
                st.one_of(st.integers(-5, 5).map(float), st.none()),
            ),
            max_size=25,
        )
    )
    # Rows sharing (entity, event, created) must agree (else the input is ambiguous, an error
    # tested on its own), so the first drawn value of a key is used for all its copies.
    first: dict[tuple[object, ...], float | None] = {}
    rows = []
    for entity, event, created_offset, value in drafts:
        created = None if event is None or created_offset is None else event + created_offset * HOUR
        value = first.setdefault((entity, event, created), value)
        rows.append(Row(entity, event, created, value))
    return rows


entity_rows = st.lists(
    st.tuples(
        st.one_of(ENTITIES, st.none()),
        st.one_of(st.integers(-1, 15).map(at), st.none()),
    ),
    max_size=20,
)


@pytest.mark.parametrize("known_only", [False, True])
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    entities=entity_rows,
    rows=feature_rows(),
    ttl=st.sampled_from([None, timedelta(0), HOUR, 2 * HOUR, 5 * HOUR]),
    repeat=st.integers(0, 3),
)
def test_matches_the_naive_reference(
    known_only: bool,
    entities: list[tuple[str | None, datetime | None]],
    rows: list[Row],
    ttl: timedelta | None,
    repeat: int,
) -> None:
    entities = entities + entities[:repeat]  # duplicated entity rows, not always adjacent
    result = point_in_time_join(
        entity_frame(entities), feature_table(rows), ttl, only_known_at_event_time=known_only
    )
    expected = reference(entities, rows, ttl, known_only)
    assert result.num_rows == len(entities)
    assert result.column("row").to_pylist() == list(range(len(entities)))
    assert values(result) == expected
    assert values(result, "g") == [None if v is None else -v for v in expected]


# --- the rule, case by case -----------------------------------------------------------------


def join(
    entities: Sequence[tuple[str | None, datetime | None]],
    rows: Sequence[Row],
    ttl: timedelta | None = 10 * HOUR,
    known_only: bool = False,
) -> list[float | None]:
    table = point_in_time_join(
        entity_frame(entities), feature_table(rows), ttl, only_known_at_event_time=known_only
    )
    return values(table)


def test_latest_row_at_or_before_the_entity_time_wins() -> None:
    rows = [Row("a", at(1), at(1), 1.0), Row("a", at(3), at(3), 3.0), Row("a", at(5), at(5), 5.0)]
    assert join([("a", at(0)), ("a", at(1)), ("a", at(4)), ("a", at(9))], rows) == [
        None,
        1.0,
        3.0,
        5.0,
    ]


def test_ttl_is_inclusive_and_none_means_no_bound() -> None:
    rows = [Row("a", at(0), at(0), 7.0)]
    exactly = ("a", at(2))
    just_past = ("a", at(2) + timedelta(microseconds=1))
    assert join([exactly, just_past], rows, ttl=2 * HOUR) == [7.0, None]
    assert join([("a", at(0))], rows, ttl=timedelta(0)) == [7.0]
    assert join([("a", at(10_000))], rows, ttl=None) == [7.0]


def test_ties_on_event_time_go_to_the_latest_created() -> None:
    rows = [
        Row("a", at(1), at(2), 1.0),
        Row("a", at(1), at(4), 2.0),  # correction written later
        Row("a", at(1), None, 3.0),  # unknown created time loses the tie
    ]
    assert join([("a", at(5))], rows) == [2.0]


def test_known_at_event_time_skips_values_written_later() -> None:
    rows = [
        Row("a", at(1), at(1), 1.0),
        Row("a", at(1), at(5), 2.0),  # backfilled correction of the same event
        Row("a", at(2), at(6), 9.0),  # backfilled later event
    ]
    moments = [("a", at(3)), ("a", at(5)), ("a", at(6))]
    assert join(moments, rows) == [9.0, 9.0, 9.0]  # the default ignores when rows were written
    # A global de-duplication to the latest created row per event would lose 1.0 at hour 3.
    assert join(moments, rows, known_only=True) == [1.0, 2.0, 9.0]


def test_known_at_event_time_prefers_the_later_event_among_known_rows() -> None:
    rows = [Row("a", at(1), at(10), 1.0), Row("a", at(5), at(6), 5.0)]
    moments = [("a", at(5.5)), ("a", at(7)), ("a", at(11))]
    assert join(moments, rows, known_only=True) == [None, 5.0, 5.0]


def test_known_at_event_time_drops_rows_without_a_created_time() -> None:
    rows = [Row("a", at(1), None, 1.0)]
    assert join([("a", at(2))], rows, known_only=True) == [None]
    assert join([("a", at(2))], rows) == [1.0]


def test_order_count_and_duplicates_are_kept() -> None:
    rows = [Row("a", at(1), at(1), 1.0), Row("b", at(1), at(1), 2.0)]
    entities = [("b", at(2)), ("a", at(2)), ("b", at(2)), ("nobody", at(2)), ("a", at(0))]
    assert join(entities, rows) == [2.0, 1.0, 2.0, None, None]


def test_nulls_in_keys_never_match() -> None:
    rows = [Row("a", None, at(1), 1.0), Row(None, at(1), at(1), 2.0)]
    assert join([("a", at(2)), (None, at(2)), ("a", None)], rows) == [None, None, None]


def test_other_columns_pass_through_and_features_follow() -> None:
    entities = entity_frame([("a", at(2)), ("b", at(2))]).append_column(
        "label", pa.array([True, None])
    )
    result = point_in_time_join(
        entities, feature_table([Row("a", at(1), at(1), 1.0)]), None, features=["g", "f"]
    )
    assert result.column_names == ["entity_id", "event_timestamp", "row", "label", "g", "f"]
    assert result.column("label").to_pylist() == [True, None]
    assert result.schema.field("f").type == pa.float64()
    assert values(result) == [1.0, None]


def test_empty_entity_frame_returns_the_right_schema() -> None:
    result = point_in_time_join(
        entity_frame([]), feature_table([Row("a", at(1), at(1), 1.0)]), HOUR
    )
    assert result.num_rows == 0
    assert result.column_names == ["entity_id", "event_timestamp", "row", "f", "g"]
    assert result.schema.field("event_timestamp").type == TS
    assert result.schema.field("g").type == pa.float64()


def test_empty_feature_table_gives_nulls() -> None:
    assert join([("a", at(1))], []) == [None]


def test_time_zones_and_units_are_normalised_to_naive_utc_microseconds() -> None:
    new_york = pa.timestamp("ns", tz="America/New_York")
    entities = pa.table(
        {
            "entity_id": ["a", "a"],
            # Held as 06:30 and 07:30 New York time: 11:30 and 12:30 UTC.
            "event_timestamp": pa.array([at(11.5), at(12.5)], pa.timestamp("us", tz="UTC")).cast(
                new_york
            ),
        }
    )
    features = pa.table(
        {
            "entity_id": ["a", "a"],
            "event_timestamp": pa.array([at(11), at(12)], pa.timestamp("s")),
            "created_timestamp": pa.array([at(11), at(12)], pa.timestamp("ms", tz="UTC")),
            "f": [11.0, 12.0],
        }
    )
    result = point_in_time_join(entities, features, HOUR)
    assert result.schema.field("event_timestamp").type == TS
    assert result.column("event_timestamp").to_pylist() == [at(11.5), at(12.5)]
    assert values(result) == [11.0, 12.0]


def test_integer_entity_ids_of_different_widths_join() -> None:
    entities = pa.table(
        {"entity_id": pa.array([1, 2], pa.int32()), "event_timestamp": pa.array([at(2)] * 2, TS)}
    )
    features = pa.table(
        {
            "entity_id": pa.array([2], pa.int64()),
            "event_timestamp": pa.array([at(1)], TS),
            "created_timestamp": pa.array([at(1)], TS),
            "f": [2.0],
        }
    )
    assert values(point_in_time_join(entities, features, None)) == [None, 2.0]


def test_dictionary_entity_ids_join_plain_ones() -> None:
    entities = entity_frame([("a", at(2))])
    entities = entities.set_column(0, "entity_id", entities.column("entity_id").dictionary_encode())
    result = point_in_time_join(entities, feature_table([Row("a", at(1), at(1), 1.0)]), None)
    assert values(result) == [1.0]


def test_custom_column_names_and_no_created_column() -> None:
    entities = pa.table({"user": ["a"], "when": pa.array([at(3)], TS)})
    features = pa.table(
        {"user": ["a", "a"], "as_of": pa.array([at(1), at(2)], TS), "score": [1.0, 2.0]}
    )
    result = point_in_time_join(
        entities,
        features,
        None,
        entity_column="user",
        event_timestamp_column="when",
        feature_event_timestamp_column="as_of",
        created_timestamp_column=None,
    )
    assert result.column_names == ["user", "when", "score"]
    assert values(result, "score") == [2.0]


def test_exact_duplicate_feature_rows_are_fine() -> None:
    row = Row("a", at(1), at(1), 1.0)
    assert join([("a", at(2))], [row, row, row]) == [1.0]
    assert join([("a", at(2))], [row, row], known_only=True) == [1.0]


def test_rows_differing_only_in_an_unrequested_feature_are_not_ambiguous() -> None:
    features = feature_table([Row("a", at(1), at(1), 1.0), Row("a", at(1), at(1), 1.0)])
    features = features.set_column(4, "g", pa.array([1.0, 2.0]))
    result = point_in_time_join(entity_frame([("a", at(2))]), features, None, features=["f"])
    assert values(result) == [1.0]


# --- input kinds ----------------------------------------------------------------------------

ENTITIES_FIXED = [("a", at(2)), ("b", at(5)), ("a", at(9)), ("c", at(3))]
ROWS_FIXED = [
    Row("a", at(1), at(1), 1.0),
    Row("a", at(1), at(2), 1.5),
    Row("b", at(4), at(4), 4.0),
    Row("a", at(8), at(8), 8.0),
]
EXPECTED_FIXED = [1.5, 4.0, 8.0, None]


def test_parquet_paths_and_globs(tmp_path: Path) -> None:
    pq.write_table(entity_frame(ENTITIES_FIXED[:2]), tmp_path / "entities-0.parquet")
    pq.write_table(entity_frame(ENTITIES_FIXED[2:]), tmp_path / "entities-1.parquet")
    pq.write_table(feature_table(ROWS_FIXED), tmp_path / "features.parquet")
    result = point_in_time_join(
        str(tmp_path / "entities-*.parquet"), tmp_path / "features.parquet", None
    )
    assert values(result) == EXPECTED_FIXED
    assert result.column("row").to_pylist() == [0, 1, 0, 1]
    one_file = point_in_time_join(
        tmp_path / "entities-1.parquet", str(tmp_path / "features.parquet"), None
    )
    assert values(one_file) == EXPECTED_FIXED[2:]
    (tmp_path / "broken.parquet").write_text("not parquet")
    with pytest.raises(FeatureError, match="entity frame: cannot read Parquet"):
        point_in_time_join(tmp_path / "broken.parquet", tmp_path / "features.parquet", None)


def test_sql_tables(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    metadata = MetaData()
    features = Table(
        "features",
        metadata,
        Column("entity_id", String),
        Column("event_timestamp", DateTime),
        Column("created_timestamp", DateTime),
        Column("f", Float),
        Column("g", Float),
    )
    entities = Table(
        "entities",
        metadata,
        Column("entity_id", String),
        Column("event_timestamp", DateTime),
        Column("row", Integer),
    )
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(features.insert(), feature_table(ROWS_FIXED).to_pylist())
        conn.execute(entities.insert(), entity_frame(ENTITIES_FIXED).to_pylist())
    try:
        result = point_in_time_join(
            SqlTable(engine, "entities"), SqlTable(engine, "features"), None
        )
        assert values(result) == EXPECTED_FIXED
        assert result.column("row").to_pylist() == [0, 1, 2, 3]
        with pytest.raises(FeatureError, match="no table 'missing'"):
            point_in_time_join(SqlTable(engine, "entities"), SqlTable(engine, "missing"), None)
    finally:
        engine.dispose()


def test_duckdb_relations_and_table_names() -> None:
    with duckdb.connect() as connection:
        connection.register("entities_arrow", entity_frame(ENTITIES_FIXED))
        connection.execute("CREATE TABLE entities AS SELECT * FROM entities_arrow")
        features = connection.from_arrow(feature_table(ROWS_FIXED))
        by_name = point_in_time_join("entities", features, None, connection=connection)
        assert values(by_name) == EXPECTED_FIXED
        with pytest.raises(FeatureError, match="no table or view 'nothing'"):
            point_in_time_join("nothing", features, None, connection=connection)
    other = duckdb.connect()
    relation = other.from_arrow(entity_frame(ENTITIES_FIXED))
    assert values(point_in_time_join(relation, feature_table(ROWS_FIXED), None)) == (EXPECTED_FIXED)
    other.close()


# --- bad input ------------------------------------------------------------------------------

GOOD_ENTITIES = entity_frame([("a", at(2))])
GOOD_FEATURES = feature_table([Row("a", at(1), at(1), 1.0)])


@pytest.mark.parametrize(
    ("entities", "features", "options", "message"),
    [
        (
            GOOD_ENTITIES.drop_columns(["entity_id"]),
            GOOD_FEATURES,
            {},
            r"entity frame has no column 'entity_id' \(columns: \['event_timestamp', 'row'\]\)",
        ),
        (
            GOOD_ENTITIES,
            GOOD_FEATURES.drop_columns(["created_timestamp"]),
            {},
            r"feature table has no column 'created_timestamp' \(columns: \['entity_id', ",
        ),
        (
            GOOD_ENTITIES,
            GOOD_FEATURES,
            {"feature_event_timestamp_column": "as_of"},
            "feature table has no column 'as_of'",
        ),
        (
            GOOD_ENTITIES.set_column(1, "event_timestamp", pa.array(["2024-01-01"])),
            GOOD_FEATURES,
            {},
            "entity frame column 'event_timestamp' is string, expected a timestamp",
        ),
        (
            GOOD_ENTITIES,
            GOOD_FEATURES.set_column(2, "created_timestamp", pa.array([1])),
            {},
            "feature table column 'created_timestamp' is int64, expected a timestamp",
        ),
        (
            GOOD_ENTITIES,
            GOOD_FEATURES.set_column(1, "event_timestamp", pa.array([at(1).date()], pa.date32())),
            {},
            "feature table column 'event_timestamp' is date32",
        ),
        (GOOD_ENTITIES, GOOD_FEATURES, {"ttl": -HOUR}, "ttl must not be negative"),
        (GOOD_ENTITIES, GOOD_FEATURES, {"ttl": 3600}, "ttl must be a datetime.timedelta"),
        (
            GOOD_ENTITIES,
            GOOD_FEATURES,
            {"features": ["f", "nope"]},
            r"feature table has no feature 'nope' \(features: \['f', 'g'\]\)",
        ),
        (GOOD_ENTITIES, GOOD_FEATURES, {"features": "f"}, "a list of column names"),
        (GOOD_ENTITIES, GOOD_FEATURES, {"features": ["f", "f"]}, "lists a name twice"),
        (
            GOOD_ENTITIES,
            GOOD_FEATURES,
            {"features": ["created_timestamp"]},
            "key columns of the feature table",
        ),
        (
            GOOD_ENTITIES.append_column("f", pa.array([0.0])),
            GOOD_FEATURES,
            {},
            r"features \['f'\] are also columns of the entity frame",
        ),
        (
            GOOD_ENTITIES,
            GOOD_FEATURES.drop_columns(["created_timestamp"]),
            {"created_timestamp_column": None, "only_known_at_event_time": True},
            "only_known_at_event_time needs a created timestamp column",
        ),
        (
            GOOD_ENTITIES.set_column(0, "entity_id", pa.array([1])),
            GOOD_FEATURES,
            {},
            "entity id types differ: int64 in the entity frame, string in the feature table",
        ),
        (
            GOOD_ENTITIES,
            feature_table([Row("a", at(1), at(1), 1.0), Row("a", at(1), at(1), 2.0)]),
            {},
            r"same key \{'entity_id': 'a', 'event_timestamp': datetime.datetime\(2024, 1, 1, 1, "
            r"0\), 'created_timestamp': datetime.datetime\(2024, 1, 1, 1, 0\)\} but different",
        ),
        (
            GOOD_ENTITIES,
            feature_table([Row("a", at(1), None, 1.0), Row("a", at(1), None, None)]),
            {},
            "'created_timestamp': None} but different values",
        ),
        (
            GOOD_ENTITIES,
            feature_table([Row("a", at(1), at(1), 1.0), Row("a", at(1), at(2), 2.0)]).drop_columns(
                ["created_timestamp"]
            ),
            {"created_timestamp_column": None},
            r"same key \{'entity_id': 'a', 'event_timestamp': datetime.datetime\(2024, 1, 1, 1, "
            r"0\)\} but different",
        ),
        (GOOD_ENTITIES, 42, {}, "feature table must be an Arrow table, a Parquet path"),
        (GOOD_ENTITIES, "/no/such/dir/*.parquet", {}, "feature table: cannot read Parquet"),
    ],
)
def test_bad_input_is_a_feature_error(
    entities: object, features: object, options: dict[str, object], message: str
) -> None:
    # The parametrize dict is shared by every run of this case: read it, never pop from it.
    ttl = options.get("ttl", HOUR)
    rest = {key: value for key, value in options.items() if key != "ttl"}
    with pytest.raises(FeatureError, match=message):
        point_in_time_join(entities, features, ttl, **rest)  # type: ignore[arg-type]


def test_features_may_share_names_with_internal_columns() -> None:
    features = feature_table([Row("a", at(1), at(1), 1.0), Row("a", at(1), at(1), 1.0)])
    features = features.rename_columns(
        ["entity_id", "event_timestamp", "created_timestamp", "e", "rid"]
    )
    result = point_in_time_join(entity_frame([("a", at(2))]), features, None)
    assert result.column("e").to_pylist() == [1.0]
    assert result.column("rid").to_pylist() == [-1.0]


def test_ambiguous_rows_are_an_error_in_both_modes() -> None:
    rows = [Row("b", at(3), at(4), 1.0), Row("b", at(3), at(4), float("nan"))]
    for known_only in (False, True):
        with pytest.raises(FeatureError, match="'entity_id': 'b'"):
            join([("a", at(1))], rows, known_only=known_only)
