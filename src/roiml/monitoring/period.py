"""One model version's predictions of one period, as arrays: what the monitoring maths reads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from sqlalchemy import ColumnElement, func

__all__ = ["PeriodPredictions", "answered_second", "per_item_latency"]


@dataclass
class PeriodPredictions:
    """Columns of the ``ml_predictions`` rows of one model version and period (row-aligned)."""

    entity_id: list[str]
    at: np.ndarray  # datetime64[us]: as_of_date if given, else predicted_at
    features: list[dict[str, Any]]
    predicted_value: np.ndarray
    predicted_class: list[str | None]
    probabilities: list[dict[str, Any] | None]
    confidence: np.ndarray
    latency_ms: np.ndarray
    actual_value: np.ndarray
    actual_class: list[str | None]

    @property
    def count(self) -> int:
        return len(self.entity_id)

    def matrix(self, names: Sequence[str]) -> np.ndarray:
        """The logged inputs as rows x ``names`` (a feature a row lacks is NaN).

        Arrow converts the JSON dicts column by column in C, not row by row in Python.
        """
        if not self.features or not names:
            return np.full((self.count, len(names)), np.nan)
        table = pa.Table.from_pylist(self.features)
        columns = []
        for name in names:
            if name in table.column_names:
                columns.append(
                    table[name].cast(pa.float64(), safe=False).to_numpy(zero_copy_only=False)
                )
            else:
                columns.append(np.full(self.count, np.nan))
        return np.column_stack(columns).astype(np.float64, copy=False)

    def probability_matrix(self, classes: Sequence[str]) -> np.ndarray | None:
        """Class probabilities as rows x ``classes``; None unless every row logged them."""
        if not classes or any(p is None for p in self.probabilities):
            return None
        table = pa.Table.from_pylist([p or {} for p in self.probabilities])
        if any(c not in table.column_names for c in classes):
            return None
        return np.column_stack(
            [table[c].cast(pa.float64()).to_numpy(zero_copy_only=False) for c in classes]
        )


def per_item_latency(latency_ms: np.ndarray, predicted_at: np.ndarray) -> np.ndarray:
    """Each logged prediction's own latency: its group's time over the group's size.

    Every item of one predict call (a batch's model group) is logged with the group's whole
    time, so a batch of 1,000 read as 1,000 predictions of ~300 ms each. The log has no batch
    id: the items of one call share their logged latency to the microsecond and the second
    they were answered in, which finds the group (in SQL: GROUP BY the latency and
    :func:`answered_second`, as the dashboard's traffic and the model health's roll-up do).
    ``predicted_at`` is datetime64; a NaN latency stays NaN.
    """
    out = np.full(latency_ms.shape, np.nan)
    timed = np.isfinite(latency_ms)
    if not timed.any():
        return out
    seconds = np.asarray(predicted_at, dtype="datetime64[s]").astype(np.int64)[timed]
    bits = np.ascontiguousarray(latency_ms[timed]).view(np.int64)
    _, inverse, counts = np.unique(
        np.stack([bits, seconds]), axis=1, return_inverse=True, return_counts=True
    )
    out[timed] = latency_ms[timed] / counts[inverse.ravel()]
    return out


def answered_second(column: Any, dialect: str) -> ColumnElement[Any]:
    """``column`` (a logged ``predicted_at``) cut to the second, in the database's spelling: with
    the logged latency, what finds a predict call's group in SQL (:func:`per_item_latency`)."""
    if dialect == "postgresql":
        return func.date_trunc("second", column)
    # SQLite keeps a DateTime as 'YYYY-MM-DD HH:MM:SS.ffffff' text: its first 19 characters.
    return func.substr(column, 1, 19)
