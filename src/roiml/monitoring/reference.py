"""What a day's traffic should look like: the drift reference of one model and period.

A day of predictions is not a sample of the training window. It has one weekday and one month,
every "days since" clock is further on than in the training rows, and a weekly rate or a month
of market figures is one value for everyone. Compared with the pooled training inputs, such a
day always "drifts" (all four models paged on an unchanged world). So the reference is, first,
the model's own served traffic of the days just before (``monitoring_reference_days``); until
those days hold enough predictions (the first days of a deployment), the population as of the
model's latest snapshot (what it looked like when the model was trained; training rows end a
purge gap of a horizon or more earlier, and the world moved on since). Either is then *aligned* to
the period by each feature's :class:`~roiml.features.definition.TimeRelation`:

* CALENDAR columns take the period's own value (they are not judged, but the model's expected
  answers on the reference must be computed for the same weekday and month);
* CLOCK columns are moved on by their ``clock_per_day`` times the days from each reference
  row's instant to the period's, so only what the clock does not explain is compared; a
  reference without instants (a model trained before they were kept) leaves them unjudged;
* TENANT_EVENTS columns follow the tenant's send calendar: a count of sends is the calendar's
  and is not judged; rates over sends (and clocks their opens restart) are judged on their mean
  (:func:`follows_sends`);
* SHARED and ORDINARY columns stay as they are; a SHARED step is measured in ``scales``: how
  far the value moves by itself over the days between the reference and the period (its
  snapshot-to-snapshot moves in training, per root day), since a week of one shared value has
  no spread of its own and the spread of a short training window says little.

An ORDINARY column's mean also gets its *seasonal move* (``seasonal``): how far the model's
seasonal profile (:mod:`roiml.models.season`, a panel's daily means) moved between the same
dates a year earlier. The drift policy does not call a move drift when the season accounts for
it (in February the 7-day count of document reads rises for everyone as tax statements arrive).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from roiml.db.enums import DataType
from roiml.features.catalog import CATALOG, Catalog
from roiml.features.definition import FeatureDefinition, TimeRelation
from roiml.features.frame import AS_OF
from roiml.models.artifact import REFERENCE_LATEST, REFERENCE_PART, REFERENCE_TRAIN, ModelArtifact
from roiml.models.season import year_earlier
from roiml.monitoring.period import PeriodPredictions

__all__ = [
    "DriftReference",
    "align_reference",
    "drift_reference",
    "follows_sends",
    "most_common",
    "relations_of",
    "seasonal_moves",
]

SERVED, LATEST, TRAINING = "served", "latest_snapshot", "training"
_DAY_US = 86_400e6
# A shared value's own moves are judged at this many root-mean-square moves: a random walk's
# four-sigma move over the days between (by chance once in some 16,000 checks).
_OWN_MOVE_SIGMAS = 4.0


@dataclass
class DriftReference:
    """The reference rows of one model and period, aligned to the period."""

    matrix: np.ndarray  # rows x the model's features
    source: str  # SERVED or TRAINING
    description: str
    # per feature: the training rows' standard deviation; for a SHARED one, how far it moves
    # by itself over the time between the reference and the day
    scales: np.ndarray | None
    unjudged: dict[str, str] = field(default_factory=dict)
    relations: dict[str, TimeRelation] = field(default_factory=dict)
    by_mean: list[str] = field(default_factory=list)  # features the tenant's sends shape
    # per ORDINARY feature: the move of its mean from the reference's days to the period's
    # the same dates a year earlier (the season's), in the feature's units
    seasonal: dict[str, float] = field(default_factory=dict)

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
    *,
    drawn_inputs: bool = False,
) -> tuple[np.ndarray, dict[str, str]]:
    """``matrix`` (reference rows as of ``at``, datetime64[us]) as of ``instant``: calendar
    columns set to ``current``'s most common value, clocks moved on (``instant``: microseconds
    since the epoch). Returns the aligned copy
    and the features that cannot be judged, with why (``drawn_inputs``: the rows' model inputs
    outside the catalog were drawn, not observed)."""
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
            if drawn_inputs:
                unjudged[name] = (
                    "a model input that is no homeowner feature (a request parameter): the "
                    "latest snapshot has none, so the reference's values are drawn"
                )
            continue
        if (
            definition.time_relation is TimeRelation.TENANT_EVENTS
            and definition.dtype is DataType.INTEGER
        ):
            unjudged[name] = (
                "a count of the tenant's sends: its level is the send calendar (the daily gate "
                "judges its data, paired, beyond the step everyone takes)"
            )
            # Not judged, but the model reads it: the reference takes the step everyone took
            # since (a send that entered the window), so that the model's answers on it (the
            # score's drift, the estimated metrics' baseline) are a day with today's sends.
            # Without it, the 15th's home-value email moved the contact-timing model's score
            # 0.16 std against the days before on an unchanged world.
            step = _median(current[:, i]) - _median(aligned[:, i]) if current.size else np.nan
            if np.isfinite(step):
                aligned[:, i] = np.maximum(aligned[:, i] + round(step), 0.0)
        elif definition.time_relation is TimeRelation.CALENDAR:
            today = most_common(current[:, i]) if current.size else np.nan
            aligned[:, i] = np.where(np.isnan(aligned[:, i]), np.nan, today)
        elif definition.time_relation is TimeRelation.CLOCK and not definition.restarts:
            # An age moves on with the calendar; a clock restarted by frequent events (days
            # since the last session) has a population that does not grow, compared as it is.
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
    least ``minimum`` predictions; else the population at the model's latest snapshot (the
    first days after a deployment); else its training rows of the latest 30 days; None
    without any."""
    names = artifact.feature_names
    training, latest = _parts(artifact.reference)
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
    elif latest is not None and latest.num_rows >= max(minimum, 1):
        matrix, at = artifact.matrix(latest), _instants(latest)
        description = (
            f"{latest.num_rows:,} homeowners as of the model's latest snapshot "
            f"({_day(int(np.nanmax(at.astype(np.int64))))}), moved to {_day(instant)}"
            if at is not None
            else f"{latest.num_rows:,} homeowners as of the model's latest snapshot"
        )
        source = LATEST
    elif training is not None and training.num_rows:
        matrix, at = artifact.matrix(training), _instants(training)
        matrix, at, span = _latest(matrix, at, minimum)
        description = f"{len(matrix):,} training rows{span}, moved to {_day(instant)}"
        source = TRAINING
    else:
        return None
    aligned, unjudged = align_reference(
        matrix, at, names, current_matrix, instant, catalog, drawn_inputs=source == LATEST
    )
    if scales is not None and training is not None:
        scales = _shared_scales(artifact, training, names, scales, at, instant, catalog)
    return DriftReference(
        aligned,
        source,
        description,
        scales,
        unjudged,
        relations_of(names, catalog),
        [n for n in names if follows_sends(catalog.features.get(n))],
        seasonal_moves(artifact.season, names, at, instant, catalog),
    )


# Years back the seasonal profile is read: a model serves a year or two before it is retrained.
_SEASON_YEARS = (1, 2, 3)


def seasonal_moves(
    season: pa.Table | None,
    names: Sequence[str],
    at: np.ndarray | None,
    instant: int,
    catalog: Catalog = CATALOG,
) -> dict[str, float]:
    """Per ORDINARY feature of ``names`` in ``season``: its profile's mean on the period's date
    less its mean over the reference rows' dates (``at``), both read the same number of years
    earlier (the fewest that the profile covers). Empty without a profile, reference instants,
    or a year that covers the period's and the reference's dates."""
    if season is None or season.num_rows == 0 or at is None or len(at) == 0:
        return {}
    stamps = np.asarray(at, dtype="datetime64[us]")
    stamps = stamps[~np.isnat(stamps)]
    if stamps.size == 0:
        return {}
    days, counts = np.unique(stamps.astype("datetime64[D]"), return_counts=True)
    today = np.array([np.datetime64(instant, "us")]).astype("datetime64[D]")
    profile_days = np.asarray(
        season[AS_OF].to_numpy(zero_copy_only=False), dtype="datetime64[us]"
    ).astype("datetime64[D]")
    for years in _SEASON_YEARS:
        then = _positions(profile_days, year_earlier(today, years))
        before = _positions(profile_days, year_earlier(days, years))
        if then is not None and before is not None:
            break
    else:
        return {}
    moves: dict[str, float] = {}
    for name in names:
        definition = catalog.features.get(name)
        if (
            definition is None
            or definition.time_relation is not TimeRelation.ORDINARY
            or name not in season.column_names
        ):
            continue
        means = season[name].cast(pa.float64()).to_numpy(zero_copy_only=False)
        move = float(means[then[0]]) - float(np.average(means[before], weights=counts))
        if np.isfinite(move):
            moves[name] = move
    return moves


def _shared_scales(
    artifact: ModelArtifact,
    training: pa.Table,
    names: Sequence[str],
    scales: np.ndarray,
    at: np.ndarray | None,
    instant: int,
    catalog: Catalog,
) -> np.ndarray:
    """``scales`` with each SHARED feature's replaced by the largest move it makes by itself
    over the time between the reference and the day: four times the root mean square of its
    (median) change from one training snapshot to the next, per root day, times the root of
    the days between (at least the snapshots' spacing). A weekly rate wanders; the spread of a
    short training window says little of how far."""
    instants = _instants(training)
    shared = [
        i
        for i, n in enumerate(names)
        if n in catalog.features and catalog.features[n].time_relation is TimeRelation.SHARED
    ]
    if instants is None or not shared or at is None or len(at) == 0:
        return scales
    stamps = instants.astype(np.int64)
    days, group = np.unique(stamps, return_inverse=True)
    if days.size < 3:
        return scales
    between = np.diff(days) / _DAY_US
    # A series published weekly or monthly can take a whole interval's move in one day: the
    # days between are at least the snapshots' own spacing.
    gap = (instant - float(np.median(at.astype(np.int64)))) / _DAY_US
    gap_days = max(gap, float(np.median(between)))
    matrix = artifact.matrix(training)
    out = scales.copy()
    for i in shared:  # a dozen columns; each a median per snapshot, not per row
        medians = np.array([_median(matrix[group == g, i]) for g in range(days.size)])
        per_root_day = np.diff(medians) / np.sqrt(between)
        per_root_day = per_root_day[np.isfinite(per_root_day)]
        if per_root_day.size:
            rms = float(np.sqrt(np.mean(per_root_day**2)))
            out[i] = _OWN_MOVE_SIGMAS * rms * np.sqrt(gap_days)
    return out


def _positions(sorted_days: np.ndarray, wanted: np.ndarray) -> np.ndarray | None:
    """The index of each of ``wanted`` in ``sorted_days``; None unless all are there."""
    at = np.searchsorted(sorted_days, wanted)
    found = (at < sorted_days.size) & (sorted_days[np.minimum(at, sorted_days.size - 1)] == wanted)
    return at if found.all() else None


def _median(column: np.ndarray) -> float:
    present = column[~np.isnan(column)]
    return float(np.median(present)) if present.size else np.nan


# The training rows nearest the served day: the snapshots of the last this many days of the
# training window (when they hold enough rows), not two years pooled.
_LATEST_TRAINING_DAYS = 30


def _latest(
    matrix: np.ndarray, at: np.ndarray | None, minimum: int
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """The rows of the latest ``_LATEST_TRAINING_DAYS`` of ``at`` when at least ``minimum``."""
    if at is None or len(at) == 0 or np.isnat(at).all():
        return matrix, at, ""
    stamps = at.astype(np.int64)
    newest = int(stamps[~np.isnat(at)].max())
    keep = ~np.isnat(at) & (stamps >= newest - _LATEST_TRAINING_DAYS * _DAY_US)
    if int(keep.sum()) < max(minimum, 1):
        return matrix, at, ""
    return matrix[keep], at[keep], f" as of {_day(int(stamps[keep].min()))} to {_day(newest)}"


def _parts(reference: pa.Table | None) -> tuple[pa.Table | None, pa.Table | None]:
    """(training rows, latest-snapshot rows) of an artifact's reference; a reference without
    parts (a model trained before they were kept) is all training rows."""
    if reference is None or REFERENCE_PART not in reference.column_names:
        return reference, None
    part = reference[REFERENCE_PART]
    latest = reference.filter(pc.equal(part, REFERENCE_LATEST))
    return reference.filter(pc.equal(part, REFERENCE_TRAIN)), latest if latest.num_rows else None


def _instants(table: pa.Table) -> np.ndarray | None:
    if AS_OF not in table.column_names:
        return None
    return np.asarray(table[AS_OF].to_numpy(zero_copy_only=False), dtype="datetime64[us]")


def follows_sends(definition: FeatureDefinition | None) -> bool:
    """Whether the tenant's send calendar shapes the feature: a rate over its sends, or a clock
    that their opens restart. Each send changes the denominators (opens over 3 emails, then
    over 4: another lattice of values) and restarts many clocks at once, so a day's values take
    the shape of its point in the calendar; their *mean* is what behaviour sets."""
    if definition is None:
        return False
    return definition.time_relation is TimeRelation.TENANT_EVENTS or (
        definition.time_relation is TimeRelation.CLOCK and definition.restarts
    )


def most_common(column: np.ndarray) -> float:
    """The most frequent non-NaN value of ``column`` (NaN when it has none)."""
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
