"""roiml monitor run against real databases: rows, idempotent reruns, alerts, bad input."""

from __future__ import annotations

import json
import logging
import os
from datetime import date, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine, select

from monitoring_fixtures import (
    MOVE,
    Receiver,
    closed_port_url,
    log_predictions,
    move_artifact,
    register,
)
from roiml.db.engine import make_engine, tenant_session
from roiml.db.enums import ModelType
from roiml.db.migrate import upgrade
from roiml.db.ml_tables import MLMonitoring, MonitoringAlert
from roiml.models.artifact import ModelArtifact
from roiml.models.predict import predict
from roiml.monitoring.job import ModelPeriodResult, run_monitoring
from roiml.serving.health import model_health
from roiml.settings import Settings

DAY = date(2024, 6, 3)
# A week later: the move model's 180-day outcomes have not arrived (feedback only).
NOW = datetime(2024, 6, 10)
NAMES = ["rate_gap", "email_open_rate", "sqft", "has_pool"]


def _reference(rng: np.random.Generator, rows: int) -> np.ndarray:
    return np.column_stack(
        [
            rng.normal(0, 1, rows),
            rng.beta(3, 5, rows),
            rng.normal(1800, 400, rows),
            (rng.random(rows) < 0.2).astype(float),
        ]
    )


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, settings: Settings) -> Engine:
    if request.param == "sqlite":
        db = make_engine(settings.resolved_database_url)
        upgrade(db)
    else:
        db = make_engine(request.getfixturevalue("postgres_url"))
    request.addfinalizer(db.dispose)
    return db


def _settings(tmp_path: Path, **extra: Any) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "data", **extra)


def _row(engine: Engine, tenant: str) -> MLMonitoring:
    with tenant_session(engine, tenant) as session:
        rows = session.scalars(select(MLMonitoring).where(MLMonitoring.tenant_id == tenant)).all()
    assert len(rows) == 1
    return rows[0]


def _alerts(engine: Engine, tenant: str) -> list[MonitoringAlert]:
    with tenant_session(engine, tenant) as session:
        return list(
            session.scalars(
                select(MonitoringAlert)
                .where(MonitoringAlert.tenant_id == tenant)
                .order_by(MonitoringAlert.subject)
            ).all()
        )


def _world(engine: Engine, tenant: str, shift: bool) -> ModelArtifact:
    rng = np.random.default_rng(1)
    artifact = move_artifact(_reference(rng, 4000), NAMES)
    current = _reference(rng, 600)
    if shift:
        current[:, 0] += 1.0  # a rate shock
        current[:, 1] = rng.beta(2, 7, 600)  # fewer opens
    register(engine, tenant)
    log_predictions(engine, tenant, artifact, current, datetime(2024, 6, 3, 8))
    return artifact


def test_drift_is_flagged_for_the_shifted_features_only_and_reruns_replace_the_row(
    engine: Engine, tenant: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    artifact = _world(engine, tenant, shift=True)
    receiver = Receiver()
    settings = _settings(tmp_path, monitoring_webhook_url=receiver.url)
    with receiver.running(), caplog.at_level(logging.WARNING):
        first = _run(settings, engine, tenant, DAY, load_artifact=lambda n, v: artifact)
        again = _run(settings, engine, tenant, DAY, load_artifact=lambda n, v: artifact)
    assert [r.model_name for r in first] == [MOVE]
    assert set(first[0].drifted_features) == {"rate_gap", "email_open_rate"}
    assert first[0].status.startswith("DRIFT")
    assert again[0].drifted_features == first[0].drifted_features

    row = _row(engine, tenant)  # one row after two runs
    assert row.model_version == "1" and row.period_start == datetime(2024, 6, 3)
    assert row.period_end == datetime(2024, 6, 4)
    assert row.prediction_count == 600
    assert row.avg_latency_ms == pytest.approx(4.0)
    assert row.p95_latency_ms == pytest.approx(6.0)
    assert row.error_count == 0 and row.error_rate == 0.0
    assert row.drift_detected and row.alert_triggered
    drift = row.feature_drift
    assert set(drift) == set(NAMES)
    assert drift["rate_gap"]["drifted"] and drift["rate_gap"]["method"] == "ks"
    assert not drift["sqft"]["drifted"] and not drift["has_pool"]["drifted"]
    assert drift["has_pool"]["kind"] == "categorical"
    for entry in drift.values():
        assert {"statistic", "threshold", "score", "psi", "ks", "wasserstein"} <= set(entry)
    metrics = row.performance_metrics
    assert metrics["kind"] == "classifier" and metrics["labelled"] == 0
    assert metrics["realised"] == {}
    assert set(metrics["estimated"]) == {"auc", "accuracy", "precision", "recall", "f1"}
    assert metrics["registered"] == {"auc": 0.8, "precision": 0.6}
    assert metrics["prediction_score"]["method"] in {"ks", "wasserstein"}
    assert row.prediction_drift == metrics["prediction_score"]["statistic"]
    assert sum(metrics["class_mix"].values()) == pytest.approx(1.0)

    # Alerts: rows, log lines, and ONE webhook POST (the rerun does not post them again).
    subjects = {(a["kind"], a["subject"]) for a in row.alerts}
    assert {("feature_drift", "rate_gap"), ("feature_drift", "email_open_rate")} <= subjects
    stored = _alerts(engine, tenant)
    assert {(a.kind, a.subject) for a in stored} == subjects
    assert all(a.delivery == "SENT" and a.attempts == 1 for a in stored)
    assert len(receiver.bodies) == 1
    body = receiver.bodies[0]
    assert body["model_name"] == MOVE and body["period_start"] == "2024-06-03T00:00:00"
    assert {a["subject"] for a in body["alerts"]} == {s for _, s in subjects}
    assert "rate_gap drifted" in caplog.text

    # The model health route reads the row.
    parts = SimpleNamespace(
        models=SimpleNamespace(get=lambda t, m: SimpleNamespace(version="1")),
        prediction_log=SimpleNamespace(flush=lambda timeout: None),
        engine=engine,
        metrics=SimpleNamespace(error_count=lambda name: 0),
    )
    health = model_health(parts, tenant, ModelType.MOVE_PROBABILITY)  # type: ignore[arg-type]
    assert health.drift_detected is True and health.error_rate == 0.0


def test_a_stable_period_raises_nothing(engine: Engine, tenant: str, tmp_path: Path) -> None:
    artifact = _world(engine, tenant, shift=False)
    results = _run(_settings(tmp_path), engine, tenant, DAY, load_artifact=lambda n, v: artifact)
    assert results[0].status == "OK", results[0]
    row = _row(engine, tenant)
    assert not row.drift_detected and row.alerts == [] and not row.alert_triggered
    assert _alerts(engine, tenant) == []


def test_an_unreachable_webhook_is_a_status_not_a_crash(
    engine: Engine, tenant: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    artifact = _world(engine, tenant, shift=True)
    settings = _settings(
        tmp_path,
        monitoring_webhook_url=closed_port_url(),
        monitoring_webhook_retries=2,
        monitoring_webhook_timeout_seconds=1.0,
    )
    waits: list[float] = []
    with caplog.at_level(logging.ERROR):
        results = _run(
            settings, engine, tenant, DAY, load_artifact=lambda n, v: artifact, sleep=waits.append
        )
    assert results[0].status.startswith("DRIFT")
    assert waits == [0.5, 1.0]  # backoff doubles between the three attempts
    stored = _alerts(engine, tenant)
    assert stored and all(a.delivery.startswith("FAILED: ConnectError") for a in stored)
    assert all(
        a.attempts == 3 and "not reached after 3" in (a.delivery_detail or "") for a in stored
    )
    assert all(a["delivery"].startswith("FAILED") for a in _row(engine, tenant).alerts)
    assert "webhook delivery failed" in caplog.text
    # Once the receiver is back, a rerun delivers what was not delivered.
    receiver = Receiver()
    with receiver.running():
        _run(
            _settings(tmp_path, monitoring_webhook_url=receiver.url),
            engine,
            tenant,
            DAY,
            load_artifact=lambda n, v: artifact,
        )
    assert len(receiver.bodies) == 1
    assert all(a.delivery == "SENT" for a in _alerts(engine, tenant))


def test_a_period_without_predictions_gets_a_row_saying_so(
    engine: Engine, tenant: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    register(engine, tenant, version="4")
    with caplog.at_level(logging.WARNING):
        results = _run(_settings(tmp_path), engine, tenant, DAY, load_artifact=_no_loader)
    assert [(r.model_name, r.model_version, r.status) for r in results] == [
        (MOVE, "4", "NO_PREDICTIONS")
    ]
    row = _row(engine, tenant)
    assert row.status == "NO_PREDICTIONS" and row.prediction_count == 0
    assert row.feature_drift == {} and not row.drift_detected
    assert "no predictions" in row.performance_metrics["notes"][0]
    assert "no predictions" in caplog.text


def test_a_period_with_too_few_predictions_records_volume_and_judges_nothing(
    engine: Engine, tenant: str, tmp_path: Path
) -> None:
    # A shifted world: with 600 predictions it drifts; judged on its first 10 it must not.
    artifact = _world(engine, tenant, shift=True)
    settings = _settings(tmp_path, monitoring_min_predictions=601)
    results = _run(settings, engine, tenant, DAY, load_artifact=lambda n, v: artifact)
    assert results[0].status == "TOO_FEW_PREDICTIONS"
    assert results[0].drifted_features == [] and results[0].alerts == []
    row = _row(engine, tenant)
    assert row.status == "TOO_FEW_PREDICTIONS" and row.prediction_count == 600
    assert row.avg_latency_ms is not None
    assert row.feature_drift == {} and not row.drift_detected and not row.alert_triggered
    assert "ROIML_MONITORING_MIN_PREDICTIONS (601)" in row.performance_metrics["notes"][0]
    assert _alerts(engine, tenant) == []


def test_a_model_without_reference_or_artifact_is_monitored_without_drift(
    engine: Engine, tenant: str, tmp_path: Path
) -> None:
    artifact = _world(engine, tenant, shift=True)
    artifact.reference = None
    results = _run(_settings(tmp_path), engine, tenant, DAY, load_artifact=lambda n, v: artifact)
    assert results[0].status == "NO_REFERENCE"
    row = _row(engine, tenant)
    assert row.status == "NO_REFERENCE" and row.feature_drift == {}
    assert row.prediction_count == 600 and row.avg_latency_ms is not None
    assert any("no reference distribution" in n for n in row.performance_metrics["notes"])

    results = _run(_settings(tmp_path), engine, tenant, DAY, load_artifact=_no_loader)
    assert results[0].status == "NO_REFERENCE"
    assert any(
        "could not be loaded" in n for n in _row(engine, tenant).performance_metrics["notes"]
    )


def test_feedback_gives_realised_metrics_and_decay_alerts(
    engine: Engine, tenant: str, tmp_path: Path
) -> None:
    rng = np.random.default_rng(2)
    artifact = move_artifact(_reference(rng, 4000), NAMES)
    current = _reference(rng, 400)
    register(engine, tenant)
    # Outcomes unrelated to the scores: the model has decayed to a coin toss.
    feedback = (rng.random(400) < 0.2).astype(float)
    log_predictions(engine, tenant, artifact, current, datetime(2024, 6, 3, 8), feedback=feedback)
    results = _run(_settings(tmp_path), engine, tenant, DAY, load_artifact=lambda n, v: artifact)
    metrics = _row(engine, tenant).performance_metrics
    assert metrics["labelled"] == 400 and metrics["label_coverage"] == 1.0
    assert metrics["decay_source"] == "realised"
    assert metrics["realised"]["auc"] == pytest.approx(0.5, abs=0.1)
    assert "auc" in metrics["decayed_metrics"] and metrics["decayed"]
    assert results[0].status in {"DECAY", "DRIFT_DECAY"}
    assert any(
        a["kind"] == "performance_decay" and a["subject"] == "auc"
        for a in _row(engine, tenant).alerts
    )


def test_an_estimate_is_judged_against_the_same_estimate_over_the_reference(
    engine: Engine, tenant: str, tmp_path: Path
) -> None:
    rng = np.random.default_rng(5)
    reference = _reference(rng, 4000)
    artifact = move_artifact(reference, NAMES)
    register(engine, tenant)
    # The registered precision was measured on a test split with another mix of movers: far
    # above what the model's probabilities estimate on a population like its reference.
    artifact.metrics = {"roc_auc": 0.8, "high_precision": 0.99}
    log_predictions(engine, tenant, artifact, _reference(rng, 600), datetime(2024, 6, 3, 8))
    results = _run(_settings(tmp_path), engine, tenant, DAY, load_artifact=lambda n, v: artifact)
    metrics = _row(engine, tenant).performance_metrics
    assert metrics["decay_source"] == "estimated" and not metrics["decayed"], metrics
    baseline = metrics["estimated_reference"]
    assert "homeowners as of" in baseline["over"] or "training rows" in baseline["over"]
    assert baseline["metrics"]["precision"] < 0.9  # the registered 0.99 would have decayed
    assert results[0].status in {"OK", "DRIFT"}

    # The next day every homeowner scores just past the HIGH line: the model is as sure of each
    # as of its least certain HIGH before, and the estimate of its precision falls.
    line = artifact.extra["thresholds"]["HIGH"]
    scores = predict(artifact, reference, explain=False).predicted_value
    near = reference[np.argsort(np.abs(scores - line * 1.01))[:600]]
    log_predictions(engine, tenant, artifact, near, datetime(2024, 6, 4, 8))
    _run(_settings(tmp_path), engine, tenant, date(2024, 6, 4), load_artifact=lambda n, v: artifact)
    with tenant_session(engine, tenant) as session:
        row = session.scalars(
            select(MLMonitoring).where(
                MLMonitoring.tenant_id == tenant, MLMonitoring.period_start == datetime(2024, 6, 4)
            )
        ).one()
    decayed = row.performance_metrics
    assert decayed["decay_source"] == "estimated" and decayed["decayed"], decayed
    assert "served 2024-06-03" in decayed["estimated_reference"]["over"]
    alert = next(a for a in row.alerts if a["kind"] == "performance_decay")
    assert "worse than over 600 predictions served 2024-06-03" in alert["message"]


def _run(*args: Any, **kwargs: Any) -> list[ModelPeriodResult]:
    return run_monitoring(*args, now=NOW, **kwargs)


def _no_loader(name: str, version: str) -> ModelArtifact:
    raise FileNotFoundError(f"no artifact for {name} v{version}")


def test_cli_writes_rows_and_explains_a_model_it_cannot_load(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from roiml.cli.main import app
    from roiml.settings import get_settings

    for name in [n for n in os.environ if n.startswith("ROIML_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ROIML_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ROIML_TENANT_ID", "cli")
    get_settings.cache_clear()
    try:
        settings = get_settings()
        settings.data_dir.mkdir(parents=True)
        db = make_engine(settings.resolved_database_url)
        upgrade(db)
        _world(db, "cli", shift=True)  # predictions, but no model in the (empty) registry
        result = CliRunner().invoke(app, ["monitor", "run", "--date", "2024-06-03", "--json"])
        assert result.exit_code == 0, result.output
        (reported,) = json.loads(result.stdout[result.stdout.index("[") :])
        assert reported["status"] == "NO_REFERENCE"
        assert "could not be loaded" in reported["notes"][0]
        row = _row(db, "cli")
        assert row.prediction_count == 600 and row.status == "NO_REFERENCE"
        bad = CliRunner().invoke(app, ["monitor", "run", "--date", "June 3rd"])
        assert bad.exit_code == 2 and "YYYY-MM-DD" in bad.output
        db.dispose()
    finally:
        get_settings.cache_clear()


def test_model_health_counts_a_batch_items_latency_per_item(engine: Engine, tenant: str) -> None:
    """The health route's mean latency is per item: a batch of 40 logged at 200 ms (the whole
    call's time, on each item) adds 200 ms once, not 40 times."""
    from datetime import timedelta

    from roiml.db.enums import EntityType, PredictionType
    from roiml.db.ml_tables import MLPrediction

    _world(engine, tenant, shift=False)  # 600 single calls, 2-6 ms, mean 4 ms
    at = datetime(2024, 6, 3, 20, 0, 0, 250_000)
    with tenant_session(engine, tenant) as session:
        session.add_all(
            MLPrediction(
                prediction_id=f"pred_{tenant}_batch_{i}",
                tenant_id=tenant,
                model_name=MOVE,
                model_version="1",
                prediction_type=PredictionType.MOVE_PROBABILITY,
                entity_type=EntityType.USER,
                entity_id=f"user_{i}",
                features={},
                predicted_value=0.1,
                predicted_class="LOW",
                latency_ms=200.0,
                predicted_at=at + timedelta(microseconds=i),  # one second, one call
            )
            for i in range(40)
        )
    parts = SimpleNamespace(
        models=SimpleNamespace(get=lambda t, m: SimpleNamespace(version="1")),
        prediction_log=SimpleNamespace(flush=lambda timeout: None),
        engine=engine,
        metrics=SimpleNamespace(error_count=lambda tenant, name: 0),
    )
    health = model_health(parts, tenant, ModelType.MOVE_PROBABILITY)  # type: ignore[arg-type]
    assert health.prediction_count == 640
    assert health.avg_latency_ms == pytest.approx((600 * 4.0 + 200.0) / 640)


def test_a_batch_items_latency_is_its_groups_time_over_its_size() -> None:
    """A batch of 40 logged at 200 ms (its group's whole time) is 5 ms an item; single calls
    keep theirs; two singles in one second with different latencies stay apart."""
    from roiml.monitoring.period import per_item_latency

    at = np.array(
        ["2024-06-03T08:00:00.250"] * 40
        + ["2024-06-03T08:00:01.100", "2024-06-03T08:00:01.700", "2024-06-03T08:00:02"],
        dtype="datetime64[us]",
    )
    latency = np.array([200.0] * 40 + [3.0, 4.0, np.nan])
    items = per_item_latency(latency, at)
    assert items[:40].tolist() == [5.0] * 40
    assert items[40:42].tolist() == [3.0, 4.0] and np.isnan(items[42])
    # Monitoring's mean over items: (40 x 5 + 3 + 4) / 42, not (40 x 200 + 7) / 42.
    assert np.nanmean(items) == pytest.approx(207 / 42)
