"""Prediction-log rows ``ml_predictions`` refused: the ``rejected-*.jsonl`` files' one definition.

The prediction log (``roiml.serving.prediction_log``) writes a row the table refuses (a NOT NULL
or CHECK violation, a value the driver cannot send) to one of these files beside its spool, so it
is kept rather than lost; monitoring (``roiml.monitoring.job``) reads them back to count each
model's errors in a period. The format lives here, below both, so neither depends on the other
and a change to it is made once.

One file per UTC day and process, ``rejected-<YYYYMMDD>-<pid>.jsonl`` (processes sharing one
directory never append to the same file), one JSON object per line::

    {"rejected_at": <when it was refused>, "error": <why>, "record": <the row as submitted>}

``record`` is whatever the API submitted, so it need not be an object with the table's columns.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

__all__ = ["REJECTED_GLOB", "read_rejected_records", "rejected_entry", "rejected_file"]

log = logging.getLogger(__name__)

REJECTED_GLOB = "rejected-*.jsonl"


def rejected_file(directory: Path, rejected_at: datetime, pid: int | None = None) -> Path:
    """The file in ``directory`` that rows refused at ``rejected_at`` by process ``pid`` (this
    process by default) are appended to."""
    return directory / f"rejected-{rejected_at:%Y%m%d}-{os.getpid() if pid is None else pid}.jsonl"


def rejected_entry(record: Any, error: str, rejected_at: datetime) -> dict[str, Any]:
    """One line's object: the refused ``record`` as submitted, ``error`` saying why, and when."""
    return {"rejected_at": rejected_at, "error": error, "record": record}


def read_rejected_records(directory: Path) -> Iterator[Mapping[str, Any]]:
    """Every refused row that is an object, from every rejected file in ``directory``, oldest
    file name first.

    Lines that are not JSON, not an entry, or whose row is not an object (a submitted value that
    was not a mapping) are skipped, and so is a file that cannot be read (with a warning): a
    reader counts what it can, and the files are evidence, never an input that must parse.
    """
    if not directory.is_dir():
        return
    for path in sorted(directory.glob(REJECTED_GLOB)):
        try:
            lines = path.read_bytes().splitlines()
        except OSError as exc:
            log.warning("cannot read %s (%s); its refused rows are skipped", path, exc)
            continue
        for line in lines:
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            record = entry.get("record") if isinstance(entry, dict) else None
            if isinstance(record, dict):
                yield record
