"""Prediction-log retention: old predictions move from ml_predictions to Parquet whole days at a
time, nothing is lost or archived twice (a crash half-way included), and monitoring refuses a
day whose rows have left the table. On SQLite and on PostgreSQL with row-level security."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, insert, select

from roiml.db.engine import make_engine, tenant_session
from roiml.db.ml_tables import MLPrediction
from roiml.errors import ConfigurationError
from roiml.monitoring import archive
from roiml.monitoring.archive import (
    archive_predictions,
    archived_models,
    longest_horizon_days,
    read_archive,
)
from roiml.monitoring.job import run_monitoring
from roiml.settings import Settings

NOW = datetime(2026, 3, 10, 15, 30)
KEEP = 400
CUTOFF = datetime(2025, 2, 3)  # midnight of NOW - 400 days: whole days move


def _prediction(tenant: str, index: int, at: datetime, model: str) -> dict[str, Any]:
    return {
        "prediction_id": f"{tenant}-{model}-{index:05d}",
        "tenant_id": tenant,
        "model_name": model,
        "model_version": "2",
        "prediction_type": "MOVE_PROBABILITY",
        "entity_type": "USER",
        "entity_id": f"user_{index}",
        "features": {"tenure_days": 800.0 + index, "email_opens_30d": None},
        "feature_source": "online",
        "predicted_value": index / 1000,
        "predicted_class": None,
        "probabilities": None,
        "confidence": 0.8,
        "shap_values": {"tenure_days": 0.1, "_base": 0.3},
        "latency_ms": 1.5,
        "as_of_date": None,
        "predicted_at": at,
        "actual_value": 1.0 if index % 7 == 0 else None,
    }


def _seed(engine: Engine, tenant: str) -> list[dict[str, Any]]:
    """Two models' predictions every 6 hours from 5 days before the cut-off to 2 days after."""
    rows = []
    start = CUTOFF - timedelta(days=5)
    for i in range(7 * 4):
        for model in ("move_probability_model", "property_value_model"):
            rows.append(_prediction(tenant, i, start + timedelta(hours=6 * i, minutes=i), model))
    with tenant_session(engine, tenant) as session:
        session.execute(insert(MLPrediction), rows)
    return rows


def _stored_ids(engine: Engine, tenant: str) -> list[str]:
    with tenant_session(engine, tenant) as session:
        query = select(MLPrediction.prediction_id).where(MLPrediction.tenant_id == tenant)
        return sorted(session.execute(query).scalars())


def _check_archive(engine: Engine, tenant: str, data_dir: Path) -> None:
    rows = _seed(engine, tenant)
    old = sorted(r["prediction_id"] for r in rows if r["predicted_at"] < CUTOFF)
    young = sorted(r["prediction_id"] for r in rows if r["predicted_at"] >= CUTOFF)
    assert old and young

    dry = archive_predictions(
        engine, tenant, data_dir=data_dir, keep_days=KEEP, now=NOW, dry_run=True
    )
    assert (dry.deleted, dry.cutoff, dry.partitions) == (len(old), CUTOFF, 10)
    assert _stored_ids(engine, tenant) == sorted(old + young)
    assert read_archive(data_dir, tenant).num_rows == 0

    result = archive_predictions(engine, tenant, data_dir=data_dir, keep_days=KEEP, now=NOW)
    assert (result.archived, result.deleted, result.partitions) == (len(old), len(old), 10)
    assert _stored_ids(engine, tenant) == young
    stored = read_archive(data_dir, tenant)
    assert sorted(stored["prediction_id"].to_pylist()) == old
    # Every column as it was: JSON as its text, enums as their values, times to the microsecond.
    by_id = {r["prediction_id"]: r for r in rows}
    for got in stored.to_pylist():
        want = by_id[got["prediction_id"]]
        for column, value in want.items():
            if column in ("features", "shap_values", "probabilities"):
                assert (orjson.loads(got[column]) if got[column] else None) == value, column
            else:
                assert got[column] == value, column
    one_day = read_archive(data_dir, tenant, "move_probability_model", date(2025, 1, 30))
    assert one_day.num_rows == 4
    assert archived_models(data_dir, tenant, date(2025, 1, 30)) == [
        "move_probability_model",
        "property_value_model",
    ]
    assert archived_models(data_dir, tenant, CUTOFF.date()) == []

    again = archive_predictions(engine, tenant, data_dir=data_dir, keep_days=KEEP, now=NOW)
    assert (again.archived, again.deleted, again.partitions) == (0, 0, 0)

    # A later run moves the next day; nothing archived before is written again.
    later = archive_predictions(
        engine, tenant, data_dir=data_dir, keep_days=KEEP, now=NOW + timedelta(days=1)
    )
    assert later.partitions == 2 and later.archived == later.deleted == 8
    assert read_archive(data_dir, tenant).num_rows == len(old) + 8


def test_old_predictions_move_to_parquet_whole_days_once(
    sqlite_engine: Engine, settings: Settings
) -> None:
    _check_archive(sqlite_engine, "t_archive", settings.data_dir)


def test_old_predictions_move_on_postgres_under_row_level_security(
    app_engine: Engine, postgres_engine: Engine, tenant: str, tmp_path: Path
) -> None:
    other = f"{tenant}_other"
    _seed(postgres_engine, other)
    _check_archive(app_engine, tenant, tmp_path)
    # The other tenant's rows are untouched and nothing of theirs was archived.
    assert len(_stored_ids(postgres_engine, other)) == 56
    assert read_archive(tmp_path, other).num_rows == 0


def test_a_crash_between_writing_and_deleting_loses_and_repeats_nothing(
    sqlite_engine: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = "t_crash"
    rows = _seed(sqlite_engine, tenant)
    old = sorted(r["prediction_id"] for r in rows if r["predicted_at"] < CUTOFF)
    monkeypatch.setattr(archive, "_CHUNK_ROWS", 3)
    written = 0
    real_write = archive._write_part

    def crash_after_two(folder: Path, table: Any) -> None:
        nonlocal written
        real_write(folder, table)
        written += 1
        if written == 2:  # the file is in place; the transaction deleting its rows never commits
            raise OSError("power cut")

    monkeypatch.setattr(archive, "_write_part", crash_after_two)
    with pytest.raises(OSError, match="power cut"):
        archive_predictions(sqlite_engine, tenant, data_dir=settings.data_dir, now=NOW)
    monkeypatch.setattr(archive, "_write_part", real_write)
    # The first chunk (3 rows) moved; the second (the day's last row) is in both places.
    assert len(_stored_ids(sqlite_engine, tenant)) == len(rows) - 3
    assert read_archive(settings.data_dir, tenant).num_rows == 4

    result = archive_predictions(sqlite_engine, tenant, data_dir=settings.data_dir, now=NOW)
    assert result.deleted == len(old) - 3 and result.archived == len(old) - 4
    assert sorted(read_archive(settings.data_dir, tenant)["prediction_id"].to_pylist()) == old


def test_keeping_less_than_the_longest_horizon_is_refused(
    sqlite_engine: Engine, settings: Settings
) -> None:
    _seed(sqlite_engine, "t_short")
    assert longest_horizon_days() == 365
    with pytest.raises(ConfigurationError, match="longest prediction horizon"):
        archive_predictions(
            sqlite_engine, "t_short", data_dir=settings.data_dir, keep_days=30, now=NOW
        )
    assert len(_stored_ids(sqlite_engine, "t_short")) == 56


def test_monitoring_refuses_an_archived_day(sqlite_engine: Engine, settings: Settings) -> None:
    tenant = "t_monitor"
    _seed(sqlite_engine, tenant)
    archive_predictions(sqlite_engine, tenant, data_dir=settings.data_dir, now=NOW)
    with pytest.raises(ConfigurationError, match="were archived"):
        run_monitoring(settings, sqlite_engine, tenant, date(2025, 1, 30), now=NOW)


@pytest.fixture
def cli_env(settings: Settings, isolated_env: pytest.MonkeyPatch) -> Iterator[Engine]:
    """The CLI on the test's data directory, whatever ``ROIML_*`` or ``.env`` the caller has."""
    isolated_env.setenv("ROIML_DATA_DIR", str(settings.data_dir))
    isolated_env.setenv("ROIML_TENANT_ID", "t_cli")
    engine = make_engine(settings.resolved_database_url)
    yield engine
    engine.dispose()


def test_cli_archives_and_says_what_it_did(
    cli_env: Engine, sqlite_engine: Engine, settings: Settings
) -> None:
    from typer.testing import CliRunner

    from roiml.cli.main import app

    rows = [
        _prediction("t_cli", i, datetime(2020, 1, 1) + timedelta(hours=i), "m") for i in range(5)
    ]
    with tenant_session(sqlite_engine, "t_cli") as session:
        session.execute(insert(MLPrediction), rows)
    runner = CliRunner()
    dry = runner.invoke(app, ["monitor", "archive-predictions", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would move 5 predictions" in dry.output
    done = runner.invoke(app, ["monitor", "archive-predictions"])
    assert done.exit_code == 0, done.output
    assert "moved 5 predictions" in done.output
    assert read_archive(settings.data_dir, "t_cli").num_rows == 5
    short = runner.invoke(app, ["monitor", "archive-predictions", "--keep-days", "10"])
    assert short.exit_code != 0
    assert "longest prediction horizon" in short.output
    assert "Traceback" not in short.output
