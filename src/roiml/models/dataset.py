"""Snapshots: every user as of every grid day, with every feature, computed point in time.

A training row is a (user, snapshot) pair. Its features come from the feature engine as of the
snapshot's midnight (only source rows stamped strictly before it), and its label from what
happened strictly after it (:mod:`roiml.models.labels`). The grid is shared by the four models,
so the features are computed once per tenant and cached as Parquet next to the other data.

The split is by snapshot date, with a purge gap: a training or validation row's label window
ends before the first test snapshot, so nothing the test period reveals was seen in training.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import Engine

from roiml.errors import TrainingError
from roiml.features.catalog import CATALOG, Catalog
from roiml.features.engine import FeatureEngine
from roiml.features.frame import AS_OF, ENTITY_ID
from roiml.features.sources import SourceTables, load_sources
from roiml.models.config import SplitConfig
from roiml.models.season import PANEL_USERS, seasonal_names, seasonal_profile

__all__ = [
    "LOOKBACK_DAYS",
    "Snapshots",
    "Split",
    "load_snapshots",
    "sale_periods",
    "split_by_time",
]

# The first snapshot waits this long after the data starts, so 90-day windows are full.
LOOKBACK_DAYS = 90
_SLICE_ROWS = 400_000
_ALL_TABLES: dict[str, int | None] = {
    "users": None,
    "properties": None,
    "transactions": None,
    "document_access_events": None,
    "email_events": None,
    "platform_sessions": None,
    "alerts": None,
    "searches": None,
    "agents": None,
    "market_statistics": None,
    "economic_indicators": None,
}


@dataclass
class Snapshots:
    """Source rows, the snapshot grid and the feature frame over it."""

    sources: SourceTables
    data_start: datetime
    data_end: datetime
    every_days: int
    features: pa.Table  # entity_id, as_of, one float64 column per catalog feature
    # Every user as of the first midnight at or after the data's end: the population the model
    # meets on its first served day (monitoring's reference until it has served traffic).
    latest: pa.Table | None = None
    # A fixed panel's daily feature means over the data's last year (roiml.models.season):
    # what the calendar alone does to each feature, for monitoring.
    season: pa.Table | None = None
    # The features there are: the built-in catalog, plus the tenant's declared columns.
    catalog: Catalog = CATALOG

    @property
    def grid(self) -> list[datetime]:
        """The snapshot instants, oldest first."""
        return sorted(pc.unique(self.features[AS_OF]).to_pylist())

    def connection(self) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with the source tables and ``snapshots`` registered."""
        con = duckdb.connect()
        con.execute("SET threads = 2")
        self.sources.register(con)
        con.register("snapshots", self.features.select([ENTITY_ID, AS_OF]))
        return con


@dataclass(frozen=True)
class Split:
    """Snapshot date ranges, ``[start, end]`` inclusive, of the three parts."""

    train: tuple[datetime, datetime]
    valid: tuple[datetime, datetime]
    test: tuple[datetime, datetime]

    def as_dict(self) -> dict[str, str]:
        """For the model's metadata: ``train_start`` ... ``test_end`` as ISO dates."""
        out: dict[str, str] = {}
        for part in ("train", "valid", "test"):
            start, end = getattr(self, part)
            out[f"{part}_start"] = start.date().isoformat()
            out[f"{part}_end"] = end.date().isoformat()
        return out

    def part_of(self, as_of: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """``"train"``, ``"valid"``, ``"test"`` or ``""`` (unused) per timestamp."""
        times = np.asarray(pc.cast(as_of, pa.timestamp("us")).to_numpy(zero_copy_only=False))
        out = np.full(len(times), "", dtype=object)
        for part in ("train", "valid", "test"):
            start, end = getattr(self, part)
            inside = (times >= np.datetime64(start, "us")) & (times <= np.datetime64(end, "us"))
            out[inside] = part
        return out


def split_by_time(
    data_end: datetime, first_snapshot: datetime, horizon_days: int, config: SplitConfig
) -> Split:
    """Train / validation / test snapshot ranges for labels ``horizon_days`` long.

    Test snapshots run from ``config.test_from`` (else the last ``test_days`` whose label window
    still ends inside the data) to the last whose label window does; train and validation
    snapshots end ``horizon_days`` before the first test snapshot (the purge gap), validation
    starting at ``config.valid_from`` (else being their last ``valid_days``).
    """
    last_usable = data_end - timedelta(days=horizon_days)
    if config.test_from is not None:
        test_start = _midnight_of(config.test_from)
        if test_start > last_usable:
            raise TrainingError(
                f"--test-from {config.test_from} leaves no test snapshot whose {horizon_days}-day "
                f"label ends inside the data (the data end {data_end:%Y-%m-%d}); pick a date on "
                f"or before {last_usable:%Y-%m-%d}"
            )
    else:
        test_start = last_usable - timedelta(days=config.test_days)
    fit_end = test_start - timedelta(days=horizon_days)
    if config.valid_from is not None:
        valid_start = _midnight_of(config.valid_from)
        if valid_start >= fit_end:
            raise TrainingError(
                f"--valid-from {config.valid_from} is not before {fit_end:%Y-%m-%d}, where the "
                f"{horizon_days}-day purge gap before the test period starts; pick an earlier date"
            )
        if valid_start <= first_snapshot:
            raise TrainingError(
                f"--valid-from {config.valid_from} leaves no training snapshot (the first is "
                f"{first_snapshot:%Y-%m-%d}); pick a later date"
            )
    else:
        valid_start = fit_end - timedelta(days=config.valid_days)
        if valid_start - first_snapshot < timedelta(days=config.valid_days):
            span = (data_end - first_snapshot).days
            raise TrainingError(
                f"{span} days of snapshots are too few for a {horizon_days}-day label, "
                f"{config.test_days} test days and {config.valid_days} validation days with "
                "purge gaps; generate or import a longer history, shorten the split in the "
                "config, or give --test-from / --valid-from"
            )
    return Split(
        train=(first_snapshot, valid_start - timedelta(seconds=1)),
        valid=(valid_start, fit_end),
        test=(test_start, last_usable),
    )


def sale_periods(data_end: datetime, config: SplitConfig) -> tuple[datetime, datetime]:
    """``(valid_start, test_start)`` of the value model, whose rows are split by sale date:
    from ``config.valid_from`` / ``test_from`` where given, else ``valid_days`` / ``test_days``
    back from the data's end."""
    if config.test_from is not None:
        test_start = _midnight_of(config.test_from)
        if test_start >= data_end:
            raise TrainingError(
                f"--test-from {config.test_from} is at or after the data's end "
                f"({data_end - timedelta(days=1):%Y-%m-%d} is its last day); pick an earlier date"
            )
    else:
        test_start = data_end - timedelta(days=config.test_days)
    if config.valid_from is not None:
        valid_start = _midnight_of(config.valid_from)
        if valid_start >= test_start:
            raise TrainingError(
                f"--valid-from {config.valid_from} is not before the test period's start "
                f"{test_start:%Y-%m-%d}; pick an earlier date"
            )
    else:
        valid_start = test_start - timedelta(days=config.valid_days)
    return valid_start, test_start


def _midnight_of(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)


def load_snapshots(
    engine: Engine,
    tenant_id: str,
    cache_dir: Path,
    every_days: int = 14,
    feature_engine: FeatureEngine | None = None,
    until: datetime | None = None,
    catalog: Catalog = CATALOG,
    *,
    grid: bool = True,
) -> Snapshots:
    """Every user as of every ``every_days``-th midnight, with every feature of ``catalog``
    (the built-in one, or a tenant's with its declared columns).

    ``grid=False`` leaves the grid empty (the latest population and the season are still
    computed): for models whose rows are computed at their own instants (the value model of a
    sales file, one row per purchase), the grid of every user every ``every_days`` days was
    most of the training's time and memory and was never read.

    Features are computed through the one engine (so they equal the daily batch's) and cached
    under ``cache_dir``, keyed by the data's extent and the catalog, so the four models share
    one computation. ``until`` trains as of that instant on data that goes on past it: only
    rows stamped before it are read, and an email opened or clicked at or after it counts as
    not (yet) opened or clicked.
    """
    far_past, far_future = datetime(1900, 1, 1), until or datetime(2200, 1, 1)
    sources = load_sources(engine, tenant_id, _ALL_TABLES, far_past, far_future, None)
    if until is not None:
        sources = _as_known_at(sources, until)
    users = sources.tables["users"]
    if users.num_rows == 0:
        raise TrainingError(f"tenant {tenant_id!r} has no users; generate or import data first")
    data_start, data_end = _data_extent(sources)
    if until is not None:
        data_end = min(data_end, until)
    first = _midnight(data_start) + timedelta(days=LOOKBACK_DAYS)
    instants: list[datetime] = []
    day = first
    while grid and day < data_end:
        instants.append(day)
        day += timedelta(days=every_days)
    if grid and not instants:
        raise TrainingError(
            f"the data spans {data_start:%Y-%m-%d} to {data_end:%Y-%m-%d}: less than the "
            f"{LOOKBACK_DAYS}-day look-back, so there is no snapshot to train on"
        )
    names = list(catalog.features)
    key = _cache_key(tenant_id, every_days, data_start, data_end, sources, catalog)
    path = cache_dir / f"snapshots-{key}.parquet"
    computer = feature_engine or FeatureEngine(catalog, threads=2)
    live = _midnight(data_end)
    live += timedelta(days=1) if live < data_end else timedelta(0)
    latest = _cached(
        cache_dir / f"latest-{key}.parquet", lambda: _compute(sources, [live], names, computer)
    )
    features = (
        _cached(path, lambda: _compute(sources, instants, names, computer))
        if grid
        else latest.slice(0, 0)
    )
    season = _cached(
        cache_dir / f"season-{key}-{PANEL_USERS}.parquet",
        lambda: (
            seasonal_profile(sources, live, seasonal_names(catalog), computer)
            or pa.table({AS_OF: pa.array([], pa.timestamp("us"))})
        ),
    )
    return Snapshots(
        sources,
        data_start,
        data_end,
        every_days,
        features,
        latest,
        season if season.num_rows else None,
        catalog,
    )


def _as_known_at(sources: SourceTables, until: datetime) -> SourceTables:
    """``sources`` as known at ``until``: a later answer to an earlier email is not known."""
    tables = dict(sources.tables)
    emails = tables.get("email_events")
    if emails is not None:
        for column in ("opened_at", "clicked_at"):
            if column not in emails.column_names:
                continue
            index = emails.schema.get_field_index(column)
            values = emails[column]
            later = pc.fill_null(pc.greater_equal(values, pa.scalar(until, values.type)), False)
            emails = emails.set_column(
                index, column, pc.if_else(later, pa.scalar(None, values.type), values)
            )
        tables["email_events"] = emails
    return SourceTables(tables=tables)


def _cached(path: Path, compute: Callable[[], pa.Table]) -> pa.Table:
    """``compute()``'s table, read from ``path`` when an earlier run wrote it."""
    if path.exists():
        return pq.read_table(path)
    table = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".tmp")
    pq.write_table(table, staging, compression="zstd")
    staging.replace(path)
    return table


def _compute(
    sources: SourceTables, grid: list[datetime], names: list[str], engine: FeatureEngine
) -> pa.Table:
    users = sources.tables["users"]
    con = duckdb.connect()
    con.register("users", users)
    con.register("grid", pa.table({AS_OF: pa.array(grid, pa.timestamp("us"))}))
    # A user enters the grid once signed up: before that there is nobody to predict for.
    frame = con.execute(
        f"SELECT u.user_id AS {ENTITY_ID}, g.{AS_OF} FROM users u JOIN grid g "
        f"ON u.created_at < g.{AS_OF} ORDER BY g.{AS_OF}, u.user_id"
    ).to_arrow_table()
    con.close()
    parts = [
        engine.compute(frame.slice(offset, _SLICE_ROWS), names, sources)
        for offset in range(0, frame.num_rows, _SLICE_ROWS)
    ]
    return pa.concat_tables(parts)


def _data_extent(sources: SourceTables) -> tuple[datetime, datetime]:
    # The activity tables bound what the data can tell: labels past their end are unknown.
    # Sales records alone (real data imported without any activity) are bounded by closings.
    stamps = [
        ("platform_sessions", "started_at"),
        ("document_access_events", "occurred_at"),
        ("email_events", "sent_at"),
    ]
    if all(sources.tables[table].num_rows == 0 for table, _ in stamps):
        stamps = [("transactions", "closed_at")]
    lows, highs = [], []
    for table, column in stamps:
        values = sources.tables[table][column]
        if len(values) and values.null_count < len(values):
            lows.append(pc.min(values).as_py())
            highs.append(pc.max(values).as_py())
    if not highs:
        raise TrainingError(
            "there is no activity (sessions, documents, emails) nor transactions to train on"
        )
    return min(lows), _midnight(max(highs)) + timedelta(days=1)


def _midnight(moment: datetime) -> datetime:
    return datetime(moment.year, moment.month, moment.day)


def _cache_key(
    tenant_id: str,
    every_days: int,
    start: datetime,
    end: datetime,
    sources: SourceTables,
    catalog: Catalog,
) -> str:
    described = {
        "tenant": tenant_id,
        "every": every_days,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "rows": {name: table.num_rows for name, table in sorted(sources.tables.items())},
        "features": [
            (n, catalog.get(n).expression, catalog.get(n).version) for n in catalog.features
        ],
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]
