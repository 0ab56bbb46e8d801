"""What a day's traffic should look like: the drift reference of one model and period.

A day of predictions is not a sample of the training window. It has one weekday and one month,
every "days since" clock is further on than in the training rows, and a weekly rate or a month
of market figures is one value for everyone. Compared with the pooled training inputs, such a
day always "drifts" (all four models paged on an unchanged world). So the reference is, first,
the model's own served traffic of the days just before (``monitoring_reference_days``), and the
training reference only until those days hold enough predictions. Either is then *aligned* to
the period by each feature's :class:`~roiml.features.definition.TimeRelation`:

* CALENDAR columns take the period's own value (they are not judged, but the model's expected
  answers on the reference must be computed for the same weekday and month);
* CLOCK columns are moved on by their ``clock_per_day`` times the days from each reference
  row's instant to the period's, so only what the clock does not explain is compared; a
  reference without instants (a model trained before they were kept) leaves them unjudged;
* SHARED and ORDINARY columns stay as they are; a SHARED step is measured in ``scales``, the
  spread of the training reference, since a week of one shared value has no spread of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from roiml.features.catalog import CATALOG, Catalog
from roiml.features.definition import TimeRelation
from roiml.features.frame import AS_OF
from roiml.models.artifact import ModelArtifact
from roiml.monitoring.period import PeriodPredictions

__all__ = ["DriftReference", "align_reference", "drift_reference", "relations_of"]

SERVED, TRAINING = "served", "training"
_DAY_US = 86_400e6


@dataclass
class DriftReference:
    """The reference rows of one model and period, aligned to the period."""

    matrix: np.ndarray  # rows x the model's features
    source: str  # SERVED or TRAINING
    description: str
    scales: np.ndarray | None  # per feature: the training reference's standard deviation
    unjudged: dict[str, str] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        """Reference rows."""
        return int(self.matrix.shape[0])


def relations_of(names: Sequence[str], catalog: Catalog = CATALOG) -> dict[str, TimeRelation]:
    """Each name's relation to time (ORDINARY for a name the catalog does not know)."""
    return {
        name: catalog.features[name].time_relation
        if name in catalog.features
        else TimeRelation.ORDINARY
        for name in names
    }


def align_reference(
    matrix: np.ndarray,
    at: np.ndarray | None,
    names: Sequence[str],
    current: np.ndarray,
    instant: int,
    catalog: Catalog = CATALOG,
) -> tuple[np.ndarray, dict[str, str]]:
    """``matrix`` (reference rows as of ``at``, datetime64[us]) as of ``instant``: calendar
    columns set to ``current``'s most common value, clocks moved on (``instant``: microseconds
    since the epoch). Returns the aligned copy
    and the features that cannot be judged, with why."""
    aligned = np.array(matrix, dtype=np.float64, copy=True)
    unjudged: dict[str, str] = {}
    elapsed = None
    if at is not None and len(at) == aligned.shape[0]:
        stamps = np.asarray(at, dtype="datetime64[us]")
        elapsed = (instant - stamps.astype(np.int64)) / _DAY_US
        elapsed = np.where(np.isnat(stamps), np.nan, elapsed)
    for i, name in enumerate(names):
        definition = catalog.features.get(name)
        if definition is None:
            continue
        if definition.time_relation is TimeRelation.CALENDAR:
            today = _most_common(current[:, i]) if current.size else np.nan
            aligned[:, i] = np.where(np.isnan(aligned[:, i]), np.nan, today)
        elif definition.time_relation is TimeRelation.CLOCK:
            if elapsed is None:
                unjudged[name] = (
                    "a clock, and the reference rows carry no instant to move it on from "
                    "(retrain the model to keep them)"
                )
                continue
            aligned[:, i] += definition.clock_per_day * elapsed
    return aligned, unjudged


def drift_reference(
    artifact: ModelArtifact,
    served: PeriodPredictions | None,
    current: PeriodPredictions,
    current_matrix: np.ndarray,
    minimum: int,
    catalog: Catalog = CATALOG,
) -> DriftReference | None:
    """The reference for ``current``: ``served`` traffic of the days before when it holds at
    least ``minimum`` predictions, else the artifact's training reference; None without
    either."""
    names = artifact.feature_names
    training = artifact.reference
    scales: np.ndarray | None = None
    at: np.ndarray | None
    if training is not None and training.num_rows:
        scales = np.nanstd(artifact.matrix(training), axis=0) if names else np.empty(0)
    instant = _middle(current.at)
    if served is not None and served.count >= minimum:
        matrix, at = served.matrix(names), served.at
        stamps = np.asarray(served.at, dtype="datetime64[us]").astype(np.int64)
        description = (
            f"{served.count:,} predictions served {_day(int(stamps.min()))} to "
            f"{_day(int(stamps.max()))}, moved to {_day(instant)}"
        )
        source = SERVED
    elif training is not None and training.num_rows:
        matrix = artifact.matrix(training)
        at = (
            np.asarray(training[AS_OF].to_numpy(zero_copy_only=False), dtype="datetime64[us]")
            if AS_OF in training.column_names
            else None
        )
        description = f"{training.num_rows:,} training rows, moved to {_day(instant)}"
        source = TRAINING
    else:
        return None
    aligned, unjudged = align_reference(matrix, at, names, current_matrix, instant, catalog)
    return DriftReference(aligned, source, description, scales, unjudged)


def _most_common(column: np.ndarray) -> float:
    present = column[~np.isnan(column)]
    if present.size == 0:
        return np.nan
    values, counts = np.unique(present, return_counts=True)
    return float(values[np.argmax(counts)])


def _middle(at: np.ndarray) -> int:
    """The median instant of ``at`` in microseconds since the epoch."""
    stamps = np.sort(np.asarray(at, dtype="datetime64[us]").astype(np.int64))
    return int(stamps[len(stamps) // 2]) if stamps.size else 0


def _day(micros: int) -> str:
    return str(np.datetime64(micros, "us").astype("datetime64[D]"))
