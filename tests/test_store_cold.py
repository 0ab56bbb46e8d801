"""Cold tier: hive-style Parquet per day, atomic replacement, reads, and day validation."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from roiml.errors import FeatureError
from roiml.store import cold

DAY1 = datetime(2024, 3, 1)
DAY2 = datetime(2024, 3, 2)
NAMES = ("visits_7d", "emails_opened_30d")


def day_frame(
    as_of: datetime | list[datetime],
    ids: list[str],
    columns: dict[str, list[float | None]] | None = None,
) -> pa.Table:
    """A feature frame; default features are NAMES with values derived from the row."""
    stamps = as_of if isinstance(as_of, list) else [as_of] * len(ids)
    if columns is None:
        columns = {name: [float(i + k) for i in range(len(ids))] for k, name in enumerate(NAMES)}
    data: dict[str, Any] = {
        "entity_id": pa.array(ids, pa.string()),
        "as_of": pa.array(stamps, pa.timestamp("us")),
    }
    data.update({name: pa.array(values, pa.float64()) for name, values in columns.items()})
    return pa.table(data)


def write(frame: pa.Table, root: Path, names: tuple[str, ...] = NAMES, tenant: str = "t1") -> Path:
    return cold.write_day(frame, tenant, "engagement", names, data_dir=root)


def files_under(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


def test_layout_is_hive_style_and_the_file_holds_only_frame_columns(tmp_path: Path) -> None:
    path = write(day_frame(DAY1, ["u2", "u1"]), tmp_path)
    expected = tmp_path / "features/cold/tenant=t1/feature_set=engagement/date=2024-03-01"
    assert path == expected / "part-0.parquet"
    stored = pq.ParquetFile(path).read()
    assert stored.column_names == ["entity_id", "as_of", *NAMES]
    assert stored.column("entity_id").to_pylist() == ["u1", "u2"]  # sorted: canonical bytes


def test_read_round_trips_and_turns_nan_into_null(tmp_path: Path) -> None:
    frame = day_frame(DAY1, ["u1", "u2"], {"visits_7d": [1.5, None], "emails": [float("nan"), 2]})
    write(frame, tmp_path, ("visits_7d", "emails"))
    table = cold.read("t1", "engagement", data_dir=tmp_path)
    assert table.schema == pa.schema(
        [
            ("entity_id", pa.string()),
            ("as_of", pa.timestamp("us")),
            ("visits_7d", pa.float64()),
            ("emails", pa.float64()),
        ]
    )
    assert table.to_pylist() == [
        {"entity_id": "u1", "as_of": DAY1, "visits_7d": 1.5, "emails": None},
        {"entity_id": "u2", "as_of": DAY1, "visits_7d": None, "emails": 2.0},
    ]


def test_writing_a_day_twice_leaves_one_identical_file(tmp_path: Path) -> None:
    frame = day_frame(DAY1, ["u1", "u2", "u3"])
    first = write(frame, tmp_path).read_bytes()
    write(frame.take([2, 0, 1]), tmp_path)  # row order does not matter either
    assert files_under(tmp_path) == [write(frame, tmp_path)]
    assert files_under(tmp_path)[0].read_bytes() == first
    assert cold.read("t1", "engagement", data_dir=tmp_path).num_rows == 3


def test_rewriting_a_day_replaces_its_values(tmp_path: Path) -> None:
    write(day_frame(DAY1, ["u1", "u2"]), tmp_path)
    write(day_frame(DAY1, ["u3"], {"visits_7d": [9.0], "emails_opened_30d": [8.0]}), tmp_path)
    table = cold.read("t1", "engagement", data_dir=tmp_path)
    assert table.column("entity_id").to_pylist() == ["u3"]
    assert table.column("visits_7d").to_pylist() == [9.0]


def test_a_crash_mid_write_leaves_the_old_file_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(day_frame(DAY1, ["u1"]), tmp_path)
    before = path.read_bytes()

    def crash(table: pa.Table, sink: Any, **kwargs: Any) -> None:
        sink.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", crash)  # cold looks it up at call time
    with pytest.raises(OSError, match="disk full"):
        write(day_frame(DAY1, ["u1", "u2"]), tmp_path)
    assert path.read_bytes() == before
    assert files_under(tmp_path) == [path]  # the temporary file is gone too


def test_read_filters_dates_and_entities(tmp_path: Path) -> None:
    write(day_frame(DAY1, ["u1", "u2"]), tmp_path)
    write(day_frame(DAY2, ["u1", "u2", "u3"]), tmp_path)
    write(day_frame(datetime(2024, 3, 5), ["u1"]), tmp_path)
    assert cold.list_dates("t1", "engagement", data_dir=tmp_path) == [
        date(2024, 3, 1),
        date(2024, 3, 2),
        date(2024, 3, 5),
    ]
    both = cold.read("t1", "engagement", start=date(2024, 3, 2), data_dir=tmp_path)
    assert both.column("as_of").to_pylist() == [DAY2] * 3 + [datetime(2024, 3, 5)]
    some = cold.read(
        "t1", "engagement", DAY1, date(2024, 3, 2), entity_ids=["u2", "u9"], data_dir=tmp_path
    )
    assert list(zip(some["entity_id"].to_pylist(), some["as_of"].to_pylist(), strict=True)) == [
        ("u2", DAY1),
        ("u2", DAY2),
    ]
    assert cold.read("t1", "engagement", end=date(2024, 2, 1), data_dir=tmp_path).num_rows == 0
    assert cold.read("t1", "other_set", data_dir=tmp_path).column_names == ["entity_id", "as_of"]
    assert cold.list_dates("t2", "engagement", data_dir=tmp_path) == []


def test_read_unifies_days_written_under_different_definitions(tmp_path: Path) -> None:
    write(day_frame(DAY1, ["u1"], {"a": [1.0]}), tmp_path, ("a",))
    write(day_frame(DAY2, ["u1"], {"a": [2.0], "b": [3.0]}), tmp_path, ("a", "b"))
    table = cold.read("t1", "engagement", data_dir=tmp_path)
    assert table.to_pydict() == {
        "entity_id": ["u1", "u1"],
        "as_of": [DAY1, DAY2],
        "a": [1.0, 2.0],
        "b": [None, 3.0],
    }


def test_other_tools_read_the_partitions(tmp_path: Path) -> None:
    write(day_frame(DAY1, ["u1", "u2"]), tmp_path)
    glob = str(tmp_path / "features/cold/**/*.parquet")
    rows = duckdb.sql(
        f"SELECT tenant, feature_set, date, count(*) FROM read_parquet('{glob}', "
        "hive_partitioning = true) GROUP BY ALL"
    ).fetchall()
    assert [(t, f, str(d), n) for t, f, d, n in rows] == [("t1", "engagement", "2024-03-01", 2)]


def test_add_missing_rows_keeps_stored_values_and_adds_the_rest(tmp_path: Path) -> None:
    write(day_frame(DAY1, ["u1"], {"a": [1.0]}), tmp_path, ("a",))
    later = datetime(2024, 3, 1, 12)
    rows = day_frame([DAY1, DAY1, later], ["u1", "u2", "u1"], {"a": [100.0, 2.0, 3.0]})
    added = cold.add_missing_rows(rows, "t1", "engagement", DAY1.date(), data_dir=tmp_path)
    assert added == 2
    table = cold.read("t1", "engagement", data_dir=tmp_path)
    assert table.to_pylist() == [
        {"entity_id": "u1", "as_of": DAY1, "a": 1.0},
        {"entity_id": "u2", "as_of": DAY1, "a": 2.0},
        {"entity_id": "u1", "as_of": later, "a": 3.0},
    ]
    assert cold.add_missing_rows(rows, "t1", "engagement", DAY1.date(), data_dir=tmp_path) == 0


def without(frame: pa.Table, name: str) -> pa.Table:
    return frame.drop_columns([name])


GOOD = day_frame(DAY1, ["u1", "u2"])
BAD_DAYS: dict[str, tuple[pa.Table, str, tuple[str, ...], str]] = {
    "no entity_id": (without(GOOD, "entity_id"), "t1", NAMES, "no 'entity_id' column"),
    "no as_of": (without(GOOD, "as_of"), "t1", NAMES, "no 'as_of' column"),
    "mixed as_of": (day_frame([DAY1, DAY2], ["u1", "u2"]), "t1", NAMES, "one as_of"),
    "null as_of": (day_frame([DAY1, None], ["u1", "u2"]), "t1", NAMES, "null as_of"),  # type: ignore[list-item]
    "path tenant": (GOOD, "../escape", NAMES, "tenant '../escape' is not valid"),
    "empty tenant": (GOOD, "", NAMES, "tenant '' is not valid"),
    "colon tenant": (GOOD, "a:b", NAMES, "tenant 'a:b' is not valid"),
    "int feature": (
        GOOD.set_column(2, "visits_7d", pa.array([1, 2], pa.int64())),
        "t1",
        NAMES,
        "features are float64",
    ),
    "missing name": (GOOD, "t1", (*NAMES, "extra"), r"missing from the frame \['extra'\]"),
    "extra column": (GOOD, "t1", NAMES[:1], r"not in the feature set \['emails_opened_30d'\]"),
    "no names": (GOOD, "t1", (), "non-empty list"),
    "repeated name": (GOOD, "t1", (*NAMES, NAMES[0]), "twice"),
    "duplicate ids": (day_frame(DAY1, ["u1", "u1"]), "t1", NAMES, "repeats entity ids.*'u1'"),
    "null id": (day_frame(DAY1, ["u1", None]), "t1", NAMES, "null ids"),  # type: ignore[list-item]
    "long id": (day_frame(DAY1, ["u" * 65]), "t1", NAMES, "65 characters"),
    "no rows": (GOOD.slice(0, 0), "t1", NAMES, "no rows"),
    "infinite": (
        day_frame(DAY1, ["u1"], {"visits_7d": [float("inf")], "emails_opened_30d": [1.0]}),
        "t1",
        NAMES,
        "'visits_7d' of 'engagement' has infinite values",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_DAYS))
def test_bad_days_are_refused_and_nothing_is_written(tmp_path: Path, case: str) -> None:
    frame, tenant, names, message = BAD_DAYS[case]
    with pytest.raises(FeatureError, match=message):
        write(frame, tmp_path, names, tenant)
    assert files_under(tmp_path) == []


def test_not_a_table_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FeatureError, match="pyarrow Table, not dict"):
        cold.write_day({"entity_id": []}, "t1", "s", ("a",), data_dir=tmp_path)


def test_bad_feature_set_name_and_entity_type_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FeatureError, match="feature set 'a/b' is not valid"):
        cold.write_day(GOOD, "t1", "a/b", NAMES, data_dir=tmp_path)
    with pytest.raises(FeatureError, match="unknown entity type 'USERS'; expected one of USER"):
        cold.check_entity_type("USERS")


def test_created_time_is_kept_on_an_identical_rewrite_and_renewed_on_a_change(
    tmp_path: Path,
) -> None:
    from datetime import datetime as _dt

    from roiml.store.cold import read, write_day

    day = pa.table(
        {
            "entity_id": ["u1", "u2"],
            "as_of": pa.array([_dt(2024, 3, 1)] * 2, pa.timestamp("us")),
            "x": [1.0, 2.0],
        }
    )
    write_day(day, "t", "s", ["x"], data_dir=tmp_path, created_at=_dt(2024, 3, 1, 2))
    write_day(day, "t", "s", ["x"], data_dir=tmp_path, created_at=_dt(2024, 3, 5))
    stored = read("t", "s", data_dir=tmp_path, with_created=True)
    assert stored["created_at"].to_pylist() == [_dt(2024, 3, 1, 2)] * 2
    changed = day.set_column(2, "x", pa.array([1.0, 3.0]))
    write_day(changed, "t", "s", ["x"], data_dir=tmp_path, created_at=_dt(2024, 3, 5))
    stored = read("t", "s", data_dir=tmp_path, with_created=True)
    assert stored["created_at"].to_pylist() == [_dt(2024, 3, 5)] * 2
    assert stored["x"].to_pylist() == [1.0, 3.0]
