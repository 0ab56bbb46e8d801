"""The ``rejected-*.jsonl`` contract end to end: what the prediction log writes for a refused row
is what monitoring counts as that model's error, and a damaged file costs only its bad lines."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from roiml.db.rejected_predictions import REJECTED_GLOB, read_rejected_records
from roiml.monitoring.job import _rejected_counts
from roiml.serving.prediction_log import _RejectFile

DAY = datetime(2024, 12, 30)


def _row(model: str, version: str, predicted_at: str) -> dict[str, str]:
    return {"model_name": model, "model_version": version, "predicted_at": predicted_at}


def test_rows_the_log_rejects_are_counted_by_monitoring_per_model_in_the_period(
    tmp_path: Path,
) -> None:
    rejects = _RejectFile(tmp_path)
    rejects.write(
        [
            (_row("move", "1", "2024-12-30T08:00:00"), "NOT NULL"),
            (_row("move", "1", "2024-12-30T23:59:59+00:00"), "CHECK"),
            (_row("move", "2", "2024-12-30T12:00:00"), "CHECK"),
            (_row("move", "1", "2024-12-31T00:00:00"), "next day"),
            ("not a mapping", "not a mapping but str"),
        ]
    )
    assert len(list(tmp_path.glob(REJECTED_GLOB))) == 1
    # A damaged line and an unparseable time in a second process's file are skipped.
    (tmp_path / "rejected-20241230-1.jsonl").write_bytes(
        b'{"record": {"predicted_at": "yesterday"}}\n{not json\n[1, 2]\n'
    )
    assert len(list(read_rejected_records(tmp_path))) == 5
    assert _rejected_counts(tmp_path, DAY, datetime(2024, 12, 31)) == {
        ("move", "1"): 2,
        ("move", "2"): 1,
    }


def test_no_directory_means_no_rejected_rows(tmp_path: Path) -> None:
    assert list(read_rejected_records(tmp_path / "absent")) == []
    assert _rejected_counts(tmp_path / "absent", DAY, datetime(2024, 12, 31)) == {}
