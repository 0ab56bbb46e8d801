"""export_frame: Parquet round-trips exactly; CSV and JSON lines read back to the same values."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from roiml.errors import FeatureError
from roiml.store.export import export_frame

FRAME = pa.table(
    {
        "entity_id": pa.array(["u1", 'u2, "quoted"', None]),
        "as_of": pa.array(
            [datetime(2024, 1, 31, 9, 30, 0, 123456), datetime(1999, 12, 31), None],
            pa.timestamp("us"),
        ),
        "zoned": pa.array(
            [datetime(2024, 6, 1, 12, tzinfo=UTC)] * 2 + [None],
            pa.timestamp("us", tz="UTC"),
        ).cast(pa.timestamp("us", tz="Europe/Paris")),
        "score": pa.array([0.1 + 0.2, -1e300, None], pa.float64()),
        "count": pa.array([1, None, 3], pa.int64()),
        "flag": pa.array([True, False, None]),
    }
)


def test_parquet_round_trips_exactly(tmp_path: Path) -> None:
    written = export_frame(FRAME, tmp_path / "out" / "frame.parquet")
    assert written == tmp_path / "out" / "frame.parquet"
    assert pq.read_table(written).equals(FRAME, check_metadata=False)
    assert pq.read_table(written).schema == FRAME.schema


def test_csv_reads_back_with_the_same_values(tmp_path: Path) -> None:
    written = export_frame(FRAME, tmp_path / "frame.csv")
    text = written.read_text()
    assert "2024-01-31T09:30:00.123456" in text
    assert "2024-06-01T12:00:00.000000Z" in text  # zoned instants are written in UTC
    schema = FRAME.schema.set(2, pa.field("zoned", pa.timestamp("us", tz="UTC")))
    back = pcsv.read_csv(
        written,
        convert_options=pcsv.ConvertOptions(
            column_types=schema, strings_can_be_null=True, quoted_strings_can_be_null=False
        ),
    )
    assert back.equals(FRAME.cast(schema))


def test_json_lines_read_back_with_the_same_values(tmp_path: Path) -> None:
    written = export_frame(FRAME, tmp_path / "frame.txt", format="json")
    rows = [json.loads(line) for line in written.read_text().splitlines()]
    assert len(rows) == FRAME.num_rows
    assert rows[0]["as_of"] == "2024-01-31T09:30:00.123456"
    assert rows[0]["zoned"] == "2024-06-01T12:00:00.000000Z"
    expected = FRAME.to_pylist()
    for row, want in zip(rows, expected, strict=True):
        assert list(row) == FRAME.column_names
        for name in ("entity_id", "score", "count", "flag"):
            assert row[name] == want[name]
        for name in ("as_of", "zoned"):
            moment = None if row[name] is None else datetime.fromisoformat(row[name])
            assert moment == want[name]


def test_json_writes_non_finite_floats_as_null(tmp_path: Path) -> None:
    frame = pa.table({"x": pa.array([float("nan"), float("inf"), 1.5])})
    written = export_frame(frame, tmp_path / "frame.jsonl")
    assert [json.loads(line)["x"] for line in written.read_text().splitlines()] == [
        None,
        None,
        1.5,
    ]


@pytest.mark.parametrize(
    ("name", "format", "reader"),
    [
        ("a.pq", None, pq.read_table),
        ("a.data", "PARQUET", pq.read_table),
        ("a.CSV", None, pcsv.read_csv),
        ("a.ndjson", None, None),
        ("a.out", "jsonl", None),
    ],
)
def test_format_from_suffix_or_argument(
    tmp_path: Path, name: str, format: str | None, reader: object
) -> None:
    frame = pa.table({"x": [1, 2]})
    written = export_frame(frame, tmp_path / name, format=format)
    if callable(reader):
        assert reader(written).column("x").to_pylist() == [1, 2]
    else:
        assert written.read_text().splitlines() == ['{"x":1}', '{"x":2}']


def test_an_existing_file_is_replaced(tmp_path: Path) -> None:
    target = tmp_path / "frame.csv"
    target.write_text("old")
    export_frame(pa.table({"x": [1]}), target)
    assert target.read_text().splitlines() == ['"x"', "1"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["frame.csv"]


@pytest.mark.parametrize(
    ("name", "format", "message"),
    [
        ("frame.xlsx", None, "cannot tell the export format of .* from its suffix"),
        ("frame", None, "cannot tell the export format"),
        ("frame.csv", "xml", r"unknown export format 'xml'; use one of \['parquet', 'csv', "),
    ],
)
def test_unknown_formats_are_a_feature_error(
    tmp_path: Path, name: str, format: str | None, message: str
) -> None:
    with pytest.raises(FeatureError, match=message):
        export_frame(pa.table({"x": [1]}), tmp_path / name, format=format)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_targets_and_non_tables_are_a_feature_error(tmp_path: Path) -> None:
    (tmp_path / "taken.csv").mkdir()
    with pytest.raises(FeatureError, match="cannot write csv file"):
        export_frame(pa.table({"x": [1]}), tmp_path / "taken.csv")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["taken.csv"]
    with pytest.raises(FeatureError, match="needs an Arrow table, not dict"):
        export_frame({"x": [1]}, tmp_path / "frame.csv")
