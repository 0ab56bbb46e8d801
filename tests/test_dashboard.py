"""The monitoring dashboard: SQL aggregates over a seeded database, the JSON and the page, auth,
empty states, and the page loaded in headless Chromium with every chart drawn from the data.

The browser test drives Debian's ``chromium`` over the DevTools protocol (with ``websockets``,
which uvicorn[standard] already brings): it reads each chart's marks and their rendered boxes
from the live DOM and saves a full-page screenshot. Without chromium it skips locally and
fails under ``CI=true``. ``UPDATE_DOCS_SCREENSHOT=1`` also copies the screenshot to
docs/img/dashboard.png.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import numpy as np
import pytest
import schemathesis
import uvicorn
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from prometheus_client import CollectorRegistry
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import Engine, insert

from roiml.db.engine import make_engine
from roiml.db.enums import (
    DataType,
    EntityType,
    FeatureCategory,
    FeatureType,
    ModelStatus,
    ModelType,
    PredictionType,
)
from roiml.db.migrate import upgrade
from roiml.db.ml_tables import MLFeature, MLModel, MLMonitoring, MLPrediction, PipelineRun
from roiml.monitoring.dashboard import DashboardData, load_dashboard, render_page
from roiml.monitoring.dashboard.parse import drift_features, performance_metrics
from roiml.monitoring.dashboard.queries import NOT_JUDGED, TOP_DISTRIBUTIONS
from roiml.monitoring.dashboard.schemas import ModelDrift, ModelPerformance
from roiml.monitoring.drift import distribution_summary
from roiml.serving.app import asgi
from roiml.serving.components import Components
from roiml.serving.metrics import ServingMetrics
from roiml.serving.model_cache import ModelCache, ModelUnavailableError
from roiml.serving.prediction_log import PredictionLog
from roiml.serving.ratelimit import MemoryRateLimiter
from roiml.settings import Settings
from roiml.store.online_sqlite import SqliteOnlineStore

ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
TENANT = "acme"
OTHER_TENANT = "globex"
NOW = datetime(2026, 11, 20, 15, 30)
DAYS = 14
SECRET = "dashboard-test-secret-" + "0123456789abcdef" * 3
MODELS = {
    "move_probability_model": (PredictionType.MOVE_PROBABILITY, ["LOW", "MEDIUM", "HIGH"]),
    "transaction_type_model": (
        PredictionType.TRANSACTION_TYPE,
        ["SELL", "BUY", "REFINANCE", "INVESTMENT"],
    ),
    "contact_timing_model": (
        PredictionType.CONTACT_TIMING,
        [f"{d}_{h}" for d in ("TUE", "WED", "THU", "MON") for h in (9, 18)],
    ),
    "property_value_model": (PredictionType.PROPERTY_VALUE, []),
}


@dataclass
class Seeded:
    """The seeded database and the figures the dashboard must show for TENANT."""

    settings: Settings
    engine: Engine
    counts: dict[str, dict[str, int]]  # model -> ISO day -> predictions
    classes: dict[str, dict[str, int]]  # model -> class -> predictions
    features: list[str]


Counts = dict[str, dict[str, int]]


def _predictions(rng: np.random.Generator) -> tuple[list[dict[str, Any]], Counts, Counts]:
    rows: list[dict[str, Any]] = []
    counts: dict[str, dict[str, int]] = {}
    classes: dict[str, dict[str, int]] = {}
    first_day = NOW.date() - timedelta(days=DAYS - 1)
    for index, (model, (kind, labels)) in enumerate(MODELS.items()):
        # Volume grows over the fortnight; the value model starts a week in.
        base = rng.integers(8, 20, size=DAYS) + np.arange(DAYS) * (index + 1)
        if model == "property_value_model":
            base[:7] = 0
        base[DAYS - 4] = 0 if model == "contact_timing_model" else base[DAYS - 4]
        for offset, n in enumerate(base.tolist()):
            day = first_day + timedelta(days=offset)
            if n:
                counts.setdefault(model, {})[day.isoformat()] = n
            shares = np.linspace(3, 1, num=len(labels)) if labels else None
            chosen = rng.choice(labels, size=n, p=shares / shares.sum()) if labels else [None] * n
            for i, label in enumerate(chosen):
                if label is not None:
                    classes.setdefault(model, {}).setdefault(str(label), 0)
                    classes[model][str(label)] += 1
                rows.append(
                    {
                        "tenant_id": TENANT,
                        "prediction_id": f"{model[:4]}-{offset}-{i}",
                        "model_name": model,
                        "model_version": "3",
                        "prediction_type": kind,
                        "entity_type": EntityType.USER,
                        "entity_id": f"user_{i}",
                        "features": {},
                        "predicted_value": float(rng.random()),
                        "predicted_class": None if label is None else str(label),
                        "latency_ms": float(4 + index * 2 + rng.gamma(2.0, 1.5)),
                        "predicted_at": datetime.combine(day, datetime.min.time())
                        + timedelta(minutes=int(rng.integers(0, NOW.hour * 60))),
                    }
                )
    return rows, counts, classes


# One batch call of the value model today: BATCH_SIZE items logged with the group's whole time,
# BATCH_MS (what the API logs for every item of a group).
BATCH_SIZE, BATCH_MS = 40, 200.0


def _batch(counts: Counts) -> list[dict[str, Any]]:
    model = "property_value_model"
    day = NOW.date().isoformat()
    counts[model][day] = counts[model].get(day, 0) + BATCH_SIZE
    answered = NOW - timedelta(hours=1, microseconds=250)
    return [
        {
            "tenant_id": TENANT,
            "prediction_id": f"batch-{i}",
            "model_name": model,
            "model_version": "3",
            "prediction_type": PredictionType.PROPERTY_VALUE,
            "entity_type": EntityType.USER,
            "entity_id": f"user_{i}",
            "features": {},
            "predicted_value": 300_000.0 + i,
            "predicted_class": None,
            "latency_ms": BATCH_MS,
            # The service stamps each item as it builds its answer: microseconds apart.
            "predicted_at": answered + timedelta(microseconds=5 * i),
        }
        for i in range(BATCH_SIZE)
    ]


def _shapes(shift: float) -> dict[str, Any] | None:
    """Both sides' stored shapes (as the monitoring job writes them) for a move of ``shift``."""
    rng = np.random.default_rng(int(shift * 100))
    return distribution_summary(rng.normal(10, 2, 4000), rng.normal(10 + shift, 2, 800))


def _drift_entry(statistic: float, threshold: float, method: str = "wasserstein") -> dict[str, Any]:
    return {
        "kind": "numeric",
        "method": method,
        "statistic": statistic,
        "threshold": threshold,
        "drifted": statistic > threshold,
        "score": statistic / threshold,
        "psi": statistic * 1.4,
        "n_reference": 20000,
        "n_current": 800,
    }


FEATURES = [
    "mortgage_rate_spread",
    "email_open_rate_30d",
    "days_since_last_login",
    "document_views_90d",
    "home_equity_ratio",
    "years_owned",
    "market_inventory_months",
    "search_count_30d",
    "alert_click_rate_90d",
    "session_minutes_30d",
    "listing_price_change_pct",
    "refinance_rate_gap",
]


def _monitoring_row(values: dict[str, Any]) -> dict[str, Any]:
    """Every column (a multi-row INSERT needs the same keys in each row), defaults filled in."""
    defaults: dict[str, Any] = {
        "status": "OK",
        "prediction_count": 0,
        "avg_latency_ms": None,
        "p95_latency_ms": None,
        "error_count": 0,
        "error_rate": None,
        "performance_metrics": {},
        "feature_drift": {},
        "prediction_drift": None,
        "drift_detected": False,
        "alert_triggered": False,
        "alerts": [],
    }
    return defaults | values


def _seed(engine: Engine) -> tuple[Counts, Counts]:
    rng = np.random.default_rng(7)
    rows, counts, classes = _predictions(rng)
    # Another tenant's traffic: must never show on TENANT's dashboard.
    foreign = [dict(row, tenant_id=OTHER_TENANT, prediction_id="x" + row["prediction_id"])
               for row in rows[:500]]  # fmt: skip
    period = datetime.combine(NOW.date() - timedelta(days=1), datetime.min.time())
    statistics = [0.31, 0.22, 0.16, 0.09, 0.08, 0.07, 0.05, 0.04, 0.03, 0.02, 0.012, 0.01]
    drift = {
        name: _drift_entry(s, 0.1) | {"distribution": _shapes(20 * s)}
        for name, s in zip(FEATURES, statistics, strict=True)
    }
    drift["refinance_rate_gap"] = {"kind": "categorical", "method": "chi2", "statistic": 0.5,
                                   "threshold": 0.01, "drifted": False, "score": 0.02}  # fmt: skip
    monitoring = [
        {
            "tenant_id": TENANT,
            "model_name": "move_probability_model",
            "model_version": "3",
            "period_start": period,
            "period_end": period + timedelta(days=1),
            "status": "DRIFT_DECAY",
            "prediction_count": 120,
            "avg_latency_ms": 6.1,
            "p95_latency_ms": 11.0,
            "error_count": 1,
            "error_rate": 1 / 121,
            "performance_metrics": {
                "kind": "classifier",
                "labelled": 64,
                "label_coverage": 0.53,
                "realised": {
                    "auc": 0.69,
                    "accuracy": 0.9,
                    "precision": 0.41,
                    "recall": 0.33,
                    "f1": 0.37,
                },
                "estimated": {
                    "auc": 0.74,
                    "accuracy": 0.91,
                    "precision": 0.44,
                    "recall": 0.31,
                    "f1": 0.36,
                },
                "registered": {
                    "auc": 0.76,
                    "accuracy": 0.89,
                    "precision": 0.45,
                    "recall": 0.35,
                    "f1": 0.39,
                },
                "decay": {"auc": -0.07},
                "decayed": True,
                "prediction_score": _drift_entry(0.04, 0.1) | {"distribution": _shapes(0.1)},
                "notes": [],
            },
            "feature_drift": drift,
            "prediction_drift": 0.04,
            "drift_detected": True,
            "alert_triggered": True,
            "alerts": [
                {
                    "kind": "feature_drift",
                    "subject": "mortgage_rate_spread",
                    "message": "mortgage_rate_spread drifted (wasserstein 0.31 > 0.1)",
                }
            ],
        },
        # An older period: the dashboard shows each model's newest row only.
        {
            "tenant_id": TENANT,
            "model_name": "move_probability_model",
            "model_version": "3",
            "period_start": period - timedelta(days=1),
            "period_end": period,
            "status": "OK",
            "feature_drift": {"old_feature": _drift_entry(0.9, 0.1)},
            "performance_metrics": {},
        },
        # Periods before, for the trend: the share drifting grows, the AUC falls; the oldest
        # is written twice (the later write wins), one got no verdict.
        *[
            {
                "tenant_id": TENANT,
                "model_name": "move_probability_model",
                "model_version": version,
                "period_start": period - timedelta(days=back),
                "period_end": period - timedelta(days=back - 1),
                "status": status,
                "prediction_count": 100,
                "feature_drift": {
                    name: _drift_entry(0.2 if i < drifting else 0.05, 0.1)
                    for i, name in enumerate(FEATURES[:4])
                }
                | {"calendar_month": {"method": "not_judged", "drifted": False}},
                "performance_metrics": {
                    "realised": {"auc": auc},
                    "prediction_score": _drift_entry(score, 0.1),
                },
            }
            for back, version, status, drifting, auc, score in (
                # v2 then v3 monitored the same day (a promotion): the later row counts.
                (5, "2", "OK", 3, 0.5, 0.9),
                (5, "3", "OK", 0, 0.79, 0.02),
                (4, "3", "TOO_FEW_PREDICTIONS", 4, 0.1, 0.9),
                (3, "3", "DRIFT", 1, 0.75, 0.05),
                (2, "3", "DRIFT", 2, 0.72, 0.12),
            )
        ],
        {
            "tenant_id": TENANT,
            "model_name": "property_value_model",
            "model_version": "2",
            "period_start": period,
            "period_end": period + timedelta(days=1),
            "status": "OK",
            "prediction_count": 40,
            "performance_metrics": {
                "kind": "regressor",
                "realised": {"mae": 41000.0, "mape": 0.12, "r2": 0.81},
                "registered": {"mae": 38000.0, "mape": 0.11, "r2": 0.84},
                "estimated": {},
            },
            "feature_drift": {
                name: _drift_entry(0.02 + 0.005 * i, 0.1) for i, name in enumerate(FEATURES[4:9])
            },
            "drift_detected": False,
        },
        {
            "tenant_id": TENANT,
            "model_name": "transaction_type_model",
            "model_version": "1",
            "period_start": period,
            "period_end": period + timedelta(days=1),
            "status": "NO_REFERENCE",
            "prediction_count": 30,
            "performance_metrics": {
                "kind": "classifier",
                "realised": {},
                "registered": {},
                "notes": ["no feedback yet: realised metrics are null"],
            },
            "feature_drift": {},
        },
        # Judged on one prediction: no verdict, so neither "stable" nor "drifting".
        {
            "tenant_id": TENANT,
            "model_name": "contact_timing_model",
            "model_version": "4",
            "period_start": period,
            "period_end": period + timedelta(days=1),
            "status": "TOO_FEW_PREDICTIONS",
            "prediction_count": 1,
            "performance_metrics": {"kind": None, "notes": ["1 predictions ..., fewer than 50"]},
            "feature_drift": {},
        },
        {
            "tenant_id": OTHER_TENANT,
            "model_name": "move_probability_model",
            "model_version": "9",
            "period_start": period,
            "period_end": period + timedelta(days=1),
            "feature_drift": {"foreign_feature": _drift_entry(5.0, 0.1)},
            "performance_metrics": {},
        },
    ]
    null_rates = [0.0, 0.01, 0.02, 0.35, 0.05, 0.0, 0.12, 0.08, 0.5, 0.03, 0.0, 0.01]
    features = [
        {
            "tenant_id": TENANT,
            "name": name,
            "description": name.replace("_", " "),
            "category": FeatureCategory.BEHAVIORAL,
            "feature_type": FeatureType.BATCH,
            "data_type": DataType.FLOAT,
            "entity_type": EntityType.USER,
            "feature_set": "user_engagement" if index % 2 else "property_market",
            "max_null_rate": 0.3,
            "null_rate": rate,
            "last_updated": NOW - timedelta(hours=14 + index),
        }
        for index, (name, rate) in enumerate(zip(FEATURES, null_rates, strict=True))
    ]
    runs = []
    for offset in range(1, DAYS):
        day = datetime.combine(NOW.date() - timedelta(days=offset), datetime.min.time())
        outcome = "FAILED" if offset == 5 else "SUCCESS"
        started = day + timedelta(days=1, hours=2)
        for step in ("run", "extract", "compute_behavioral", "validate", "store"):
            runs.append(
                {
                    "tenant_id": TENANT,
                    "run_date": day,
                    "step": step,
                    "started_at": started,
                    "ended_at": started + timedelta(minutes=20),
                    "rows": 5000,
                    "outcome": outcome,
                }
            )
    model_rows = [
        {
            "tenant_id": TENANT,
            "name": "move_probability_model",
            "version": "3",
            "model_type": ModelType.MOVE_PROBABILITY,
            "status": ModelStatus.DEPLOYED,
            "metrics": {"auc": 0.76},
        }
    ]
    with engine.begin() as conn:
        conn.execute(insert(MLPrediction), rows + foreign + _batch(counts))
        conn.execute(insert(MLMonitoring), [_monitoring_row(row) for row in monitoring])
        conn.execute(insert(MLFeature), features)
        conn.execute(insert(PipelineRun), runs)
        conn.execute(insert(MLModel), model_rows)
    return counts, classes


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    data_dir = tmp_path_factory.mktemp("dashboard") / "data"
    settings = Settings(_env_file=None, data_dir=data_dir, tenant_id=TENANT)
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    counts, classes = _seed(engine)
    yield Seeded(settings, engine, counts, classes, FEATURES)
    engine.dispose()


def _components(settings: Settings) -> Components:
    def unavailable(tenant: str, name: str) -> Any:
        raise ModelUnavailableError(f"{name}: no model in the dashboard test")

    engine = make_engine(settings.resolved_database_url)
    return Components(
        settings=settings,
        engine=engine,
        online=SqliteOnlineStore(settings.online_store_path),
        models=ModelCache(unavailable, lambda tenant, name: None, poll_seconds=3600),
        prediction_log=PredictionLog(settings, engine),
        rate_limiter=MemoryRateLimiter(per_minute=60_000, burst=1_000),
        metrics=ServingMetrics(CollectorRegistry()),
        clock=lambda: NOW,
    )


@pytest.fixture(scope="module")
def client(seeded: Seeded) -> Iterator[TestClient]:
    with TestClient(asgi(seeded.settings, _components(seeded.settings))) as test_client:
        yield test_client


# --- the figures ------------------------------------------------------------------------------


def test_data_counts_predictions_per_day_and_model(client: TestClient, seeded: Seeded) -> None:
    response = client.get("/api/ml/dashboard/data", params={"days": DAYS})
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["tenant_id"] == TENANT and data["days"] == DAYS
    got: dict[str, dict[str, int]] = {}
    for point in data["traffic"]:
        got.setdefault(point["model_name"], {})[point["day"]] = point["predictions"]
        assert point["mean_latency_ms"] > 0
    assert got == seeded.counts, "another tenant's predictions leaked in, or days were lost"
    mix: dict[str, dict[str, int]] = {}
    for row in data["classes"]:
        mix.setdefault(row["model_name"], {})[row["predicted_class"]] = row["count"]
    assert mix == seeded.classes
    assert "property_value_model" not in mix, "a regressor has no classes"


def test_the_window_cuts_older_days(client: TestClient, seeded: Seeded) -> None:
    data = client.get("/api/ml/dashboard/data", params={"days": 3}).json()
    days = {point["day"] for point in data["traffic"]}
    expected = {(NOW.date() - timedelta(days=n)).isoformat() for n in range(3)}
    assert days == expected & {d for c in seeded.counts.values() for d in c}
    assert data["since"] == f"{NOW.date() - timedelta(days=2)}T00:00:00+00:00"


def test_drift_is_the_latest_period_most_drifted_first(client: TestClient) -> None:
    data = client.get("/api/ml/dashboard/data").json()
    drift = {model["model_name"]: model for model in data["drift"]}
    assert set(drift) == {
        "move_probability_model",
        "property_value_model",
        "transaction_type_model",
        "contact_timing_model",
    }
    judged = {name: model["judged"] for name, model in drift.items()}
    assert judged == {
        "move_probability_model": True,
        "property_value_model": True,
        "transaction_type_model": False,  # NO_REFERENCE
        "contact_timing_model": False,  # TOO_FEW_PREDICTIONS
    }
    move = drift["move_probability_model"]
    names = [feature["feature"] for feature in move["features"]]
    assert "old_feature" not in names and "foreign_feature" not in names
    assert names[:3] == ["mortgage_rate_spread", "email_open_rate_30d", "days_since_last_login"]
    assert move["drifted_count"] == 3 and move["feature_count"] == len(FEATURES)
    scores = [feature["score"] for feature in move["features"]]
    assert scores == sorted(scores, reverse=True)
    assert move["prediction_score"]["method"] == "wasserstein"
    assert move["alerts"] == ["mortgage_rate_spread drifted (wasserstein 0.31 > 0.1)"]
    assert drift["transaction_type_model"]["features"] == []


def test_performance_reads_realised_registered_and_estimated(client: TestClient) -> None:
    data = client.get("/api/ml/dashboard/data").json()
    performance = {model["model_name"]: model for model in data["performance"]}
    move = performance["move_probability_model"]
    assert move["labelled"] == 64 and move["decayed"] is True
    assert move["metrics"][0] == {
        "metric": "auc",
        "realised": 0.69,
        "registered": 0.76,
        "estimated": 0.74,
        "estimated_reference": None,  # a row written before estimates had a baseline
        "lower_is_better": False,
    }
    value = {m["metric"]: m for m in performance["property_value_model"]["metrics"]}
    assert value["mae"]["lower_is_better"] and value["mae"]["realised"] == 41000.0
    assert performance["transaction_type_model"]["metrics"] == []
    assert performance["transaction_type_model"]["notes"] == [
        "no feedback yet: realised metrics are null"
    ]


def test_features_and_pipeline_freshness(client: TestClient) -> None:
    data = client.get("/api/ml/dashboard/data").json()
    rates = [row["null_rate"] for row in data["null_rates"]]
    assert rates == sorted(rates, reverse=True) and len(rates) == len(FEATURES)
    sets = {row["feature_set"]: row for row in data["feature_sets"]}
    assert sets["user_engagement"]["over_null_limit"] == 1  # 0.5 > 0.3 (odd index)
    assert sets["property_market"]["over_null_limit"] == 1  # 0.35 > 0.3
    steps = {row["step"]: row for row in data["pipeline_steps"]}
    assert data["pipeline_steps"][0]["step"] == "run"
    run = steps["run"]
    assert run["last_outcome"] == "SUCCESS"
    assert run["last_success_run_date"] == f"{NOW.date() - timedelta(days=1)}T00:00:00+00:00"
    assert run["age_hours"] == pytest.approx(15.5)
    outcomes = {(row["day"], row["outcome"]) for row in data["pipeline_days"]}
    assert (str(NOW.date() - timedelta(days=5)), "FAILED") in outcomes


def _chart(html: str, chart_id: str) -> str:
    """The markup of one chart's figure on a rendered page."""
    return html.split(f'data-chart="{chart_id}"', 1)[1].split("</figure>", 1)[0]


def _marks(html: str, tag: str, css_class: str) -> list[dict[str, str]]:
    """The attributes of every ``<tag class="css_class ...">`` in ``html``."""
    found = re.findall(rf'<{tag} class="{css_class}[" ][^>]*>', html)
    return [dict(re.findall(r'([\w-]+)="([^"]*)"', mark)) for mark in found]


def test_batch_items_are_timed_per_item_not_with_their_groups_time(
    client: TestClient, seeded: Seeded
) -> None:
    data = client.get("/api/ml/dashboard/data", params={"days": DAYS}).json()
    today = NOW.date().isoformat()
    point = next(
        p
        for p in data["traffic"]
        if p["model_name"] == "property_value_model" and p["day"] == today
    )
    assert point["predictions"] == seeded.counts["property_value_model"][today]
    assert point["batch_predictions"] == BATCH_SIZE and point["batch_groups"] == 1
    assert point["batch_item_latency_ms"] == pytest.approx(BATCH_MS / BATCH_SIZE)
    singles = point["predictions"] - BATCH_SIZE
    assert point["single_predictions"] == singles and point["single_latency_ms"] < 30
    # The logged mean counts the group's 200 ms forty times; the item mean counts 5 ms.
    expected = (point["single_latency_ms"] * singles + BATCH_MS) / point["predictions"]
    assert point["item_latency_ms"] == pytest.approx(expected)
    assert point["mean_latency_ms"] > 3 * point["item_latency_ms"]
    others = [p for p in data["traffic"] if p is not point]
    assert all(p["batch_predictions"] == 0 for p in others), "single calls are not grouped"
    assert all(p["item_latency_ms"] == pytest.approx(p["mean_latency_ms"]) for p in others)
    html = client.get("/api/ml/dashboard", params={"days": DAYS}).text
    _, value, note = _tile(html, "latency")
    assert float(value.removesuffix(" ms")) < 20, "not the batch's 200 ms"
    assert f"batch 5 ms an item ({BATCH_SIZE} in 1 group)" in note


def test_drifted_features_show_reference_against_current(client: TestClient) -> None:
    data = client.get("/api/ml/dashboard/data").json()
    move = next(m for m in data["drift"] if m["model_name"] == "move_probability_model")
    shown = [f["feature"] for f in move["features"] if f["distribution"] is not None]
    assert shown == FEATURES[:TOP_DISTRIBUTIONS], "the most drifted few, not all"
    first = move["features"][0]["distribution"]
    assert len(first["edges"]) == len(first["reference"]) + 1 == len(first["current"]) + 1
    assert move["prediction_score"]["distribution"]["current"]
    figure = _chart(client.get("/api/ml/dashboard").text, "distributions-move_probability_model")
    panels = _marks(figure, "g", "distribution")
    assert [p["data-feature"] for p in panels] == [
        *FEATURES[:TOP_DISTRIBUTIONS],
        "prediction score",
    ]
    assert panels[0]["data-drifted"] == "true" and panels[3]["data-drifted"] == "false"
    spread = figure.split('data-feature="mortgage_rate_spread"', 1)[1]
    spread = spread.split('<g class="distribution"', 1)[0]
    reference = _marks(spread, "rect", "bin reference")
    current = _marks(spread, "rect", "bin current")
    assert len(reference) == len(current) == int(panels[0]["data-bins"]) > 5
    assert sum(float(r["data-share"]) for r in reference) == pytest.approx(1, abs=0.01)
    # The current sample moved 6.2 to the right: its mass sits in the upper bins, its median
    # strip right of the reference's.
    half = len(current) // 2
    assert sum(float(c["data-share"]) for c in current[half:]) > 0.8
    assert sum(float(r["data-share"]) for r in reference[half:]) < 0.2
    medians = {m["class"]: float(m["data-median"]) for m in _marks(spread, "g", "quantiles")}
    assert medians["quantiles current"] - medians["quantiles reference"] == pytest.approx(
        6.2, abs=0.4
    )
    assert 'class="current-outline"' in spread
    unjudged = _chart(client.get("/api/ml/dashboard").text, "distributions-contact_timing_model")
    assert "Not judged" in unjudged and 'class="distribution"' not in unjudged


def test_the_trend_follows_each_models_periods(client: TestClient) -> None:
    data = client.get("/api/ml/dashboard/data", params={"days": DAYS}).json()
    trends = {t["model_name"]: t for t in data["trends"]}
    move = trends["move_probability_model"]
    assert move["metric"] == "auc" and not move["lower_is_better"]
    period = NOW.date() - timedelta(days=1)
    points = {p["day"]: p for p in move["points"]}
    assert list(points) == [(period - timedelta(days=n)).isoformat() for n in range(5, -1, -1)]
    got = [
        (
            p["model_version"],
            p["judged"],
            p["drifted_share"],
            p["prediction_drift_score"],
            p["metric"],
        )
        for p in points.values()
    ]
    assert got == [
        ("3", True, 0.0, pytest.approx(0.2), 0.79),  # the later of two rows that day
        ("3", False, None, None, None),  # no verdict: nothing drawn
        ("3", True, 0.25, pytest.approx(0.5), 0.75),  # 1 of 4 judged, the calendar one not
        ("3", True, 0.5, pytest.approx(1.2), 0.72),
        ("3", True, 1.0, None, None),
        ("3", True, 0.25, pytest.approx(0.4), 0.69),
    ]
    assert trends["property_value_model"]["metric"] == "mape"
    assert trends["property_value_model"]["lower_is_better"]
    figure = _chart(client.get("/api/ml/dashboard", params={"days": DAYS}).text,
                    "trend-move_probability_model")  # fmt: skip
    panels = {p["data-panel"]: p for p in _marks(figure, "g", "panel")}
    assert {k: int(p["data-points"]) for k, p in panels.items()} == {
        "drifted-share": 5,
        "prediction-drift": 4,
        "metric": 4,
    }
    # Each measure on its own axis: a share, a ratio to its line, a 0-1 metric.
    assert panels["prediction-drift"]["data-axis"] == "0-2"
    assert panels["metric"]["data-axis"] == "0-1"
    dots = _marks(figure.split('data-panel="metric"', 1)[1], "circle", "point")
    assert [(d["data-day"], float(d["data-value"])) for d in dots] == [
        (day, p["metric"]) for day, p in points.items() if p["metric"] is not None
    ]


def test_money_metrics_get_their_own_axis(client: TestClient) -> None:
    html = client.get("/api/ml/dashboard").text
    value = _chart(html, "performance-property_value_model")
    axes = {m["data-label"]: m["data-axis"] for m in _marks(value, "g", "metric")}
    assert axes == {"mae": "0-60000", "mape": "0-1", "r2": "0-1"}, "MAE never on a 0-1 axis"
    assert ">60,000</text>" in value and ">40,000</text>" in value
    move = _chart(html, "performance-move_probability_model")
    assert {m["data-axis"] for m in _marks(move, "g", "metric")} == {"0-1"}


def test_bad_days_are_refused(client: TestClient) -> None:
    for days in (0, 367, "x"):
        assert client.get("/api/ml/dashboard/data", params={"days": days}).status_code == 422


def test_a_tenant_without_data_gets_empty_states(seeded: Seeded) -> None:
    settings = seeded.settings.model_copy(update={"tenant_id": "newcomer"})
    with TestClient(asgi(settings, _components(settings))) as fresh:
        page = fresh.get("/api/ml/dashboard")
    assert page.status_code == 200
    html = page.text
    assert html.count('data-empty="true"') == 9, "every chart shows its empty state"
    assert "No predictions in this period" in html
    assert "roiml monitor run" in html


def test_auth_on_needs_an_admin_token_of_the_tenant(seeded: Seeded) -> None:
    settings = Settings(
        _env_file=None,
        data_dir=seeded.settings.data_dir,
        tenant_id=TENANT,
        auth_enabled=True,
        jwt_secret=SECRET,
    )

    def token(scope: str, tenant: str = TENANT) -> dict[str, str]:
        claims = {"sub": "owner", "tenant_id": tenant, "scope": scope, "exp": int(time.time()) + 60}
        return {"Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}

    with TestClient(asgi(settings, _components(settings))) as secured:
        assert secured.get("/api/ml/dashboard").status_code == 401
        assert secured.get("/api/ml/dashboard", headers=token("predict")).status_code == 403
        page = secured.get("/api/ml/dashboard", headers=token("admin"))
        assert page.status_code == 200 and "mortgage_rate_spread" in page.text
        foreign = secured.get("/api/ml/dashboard/data", headers=token("admin", OTHER_TENANT))
        assert foreign.status_code == 200
        drift = foreign.json()["drift"]
        assert [f["feature"] for model in drift for f in model["features"]] == ["foreign_feature"]


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_rounded(item) for item in value]
    return value


@pytest.mark.postgres
def test_postgres_gives_the_same_figures(seeded: Seeded, postgres_empty_url: str) -> None:
    """The same seed on PostgreSQL: date(), MAX(CASE ...) and the JSON columns come back as
    other types there; the dashboard's figures must not change."""
    engine = make_engine(postgres_empty_url)
    try:
        upgrade(engine)
        _seed(engine)
        on_postgres = load_dashboard(engine, TENANT, NOW, DAYS).model_dump()
    finally:
        engine.dispose()
    on_sqlite = load_dashboard(seeded.engine, TENANT, NOW, DAYS).model_dump()
    assert on_postgres["traffic"] and on_postgres["pipeline_steps"]
    assert _rounded(on_postgres) == _rounded(on_sqlite)


@pytest.fixture(scope="module")
def dashboard_schema(seeded: Seeded) -> Iterator[schemathesis.BaseSchema]:
    components = _components(seeded.settings)
    app = asgi(seeded.settings, components)
    yield schemathesis.openapi.from_asgi("/api/ml/openapi.json", app).include(
        path_regex="^/api/ml/dashboard"
    )
    components.prediction_log.close()
    components.engine.dispose()


def test_the_dashboard_answers_as_documented(dashboard_schema: schemathesis.BaseSchema) -> None:
    """Whatever ``days`` a client sends: no 5xx, and the documented status, type and body.

    Driven through Hypothesis directly: schemathesis' pytest plugin (``from_fixture``) reads a
    private pytest attribute this pytest no longer has."""
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    operations = [result.ok() for result in dashboard_schema.get_all_operations()]
    assert len(operations) == 2
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=15,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=checks)

        check()


# --- periods without a verdict --------------------------------------------------------------------


def _period(name: str, status: str, count: int, drifted: bool = False) -> ModelDrift:
    start = datetime.combine(NOW.date(), datetime.min.time())
    return ModelDrift(
        model_name=name,
        model_version="1",
        period_start=start,
        period_end=start + timedelta(days=1),
        status=status,
        judged=status not in NOT_JUDGED,
        prediction_count=count,
        drift_detected=drifted,
    )


def _tile(html: str, key: str) -> tuple[str, str, str]:
    """The (state, value, note) of the tile ``key`` on a rendered page."""
    tail = html.split(f'data-tile="{key}"', 1)[1]
    state = html.split(f'data-tile="{key}"', 1)[0].rsplit('class="tile ', 1)[1].split('"')[0]
    value = tail.split('<div class="tile-value">', 1)[1].split("</div>", 1)[0]
    note = tail.split('<div class="tile-note">', 1)[1].split("</div>", 1)[0]
    return state, value, note


def _page(*periods: ModelDrift) -> str:
    data = DashboardData(
        tenant_id=TENANT,
        days=7,
        since=NOW - timedelta(days=6),
        until=NOW,
        generated_at=NOW,
        drift=list(periods),
        performance=[
            ModelPerformance(
                model_name=period.model_name,
                model_version=period.model_version,
                period_start=period.period_start,
                period_end=period.period_end,
                status=period.status,
                judged=period.judged,
            )
            for period in periods
        ],
    )
    return render_page(data, base_path="/api/ml/dashboard")


def test_periods_judged_on_too_few_predictions_are_not_green() -> None:
    # What the demo showed before it scored the population: one prediction per model.
    names = list(MODELS)
    html = _page(*(_period(name, "TOO_FEW_PREDICTIONS", 1) for name in names))
    state, value, note = _tile(html, "drift")
    assert (state, value) == ("unjudged", "not judged"), "never a green 0 of 4"
    assert note == "4 of 4 models: 4 too few predictions"
    for name in names:
        figure = html.split(f'data-chart="drift-{name}"', 1)[1].split("</figure>", 1)[0]
        assert 'data-badge="not judged"' in figure
        assert "Not judged: 1 prediction, too few for a verdict" in figure
        assert "features drifted" not in figure, "no clean bill of health per model either"
        performance = html.split(f'data-chart="performance-{name}"', 1)[1].split("</figure>")[0]
        assert 'data-badge="not judged"' in performance
    none = _page(_period(names[0], "NO_PREDICTIONS", 0), _period(names[1], "NO_REFERENCE", 80))
    state, value, note = _tile(none, "drift")
    assert (state, value) == ("unjudged", "not judged")
    assert "1 no predictions" in note and "1 no training reference" in note
    assert "Not judged: no predictions in the period" in none


def test_the_drift_tile_counts_only_judged_periods() -> None:
    names = list(MODELS)
    all_ok = _page(*(_period(name, "OK", 3000) for name in names))
    assert _tile(all_ok, "drift") == ("good", "0 of 4", "latest monitoring period")
    assert "data-badge" not in all_ok
    half = _page(
        _period(names[0], "OK", 3000),
        _period(names[1], "OK", 3000),
        _period(names[2], "TOO_FEW_PREDICTIONS", 12),
        _period(names[3], "FAILED", 0),
    )
    state, value, note = _tile(half, "drift")
    assert (state, value) == ("unjudged", "0 of 2 judged"), "half unjudged is not all clear"
    assert note == "2 not judged: 1 too few predictions, 1 monitoring failed"
    drifting = _page(
        _period(names[0], "DRIFT", 3000, drifted=True), _period(names[1], "NO_PREDICTIONS", 0)
    )
    assert _tile(drifting, "drift")[:2] == ("bad", "1 of 1 judged")
    # A row marked drifted but without a verdict (an older job's shape) does not count.
    stale = _page(_period(names[0], "TOO_FEW_PREDICTIONS", 3, drifted=True))
    assert _tile(stale, "drift")[:2] == ("unjudged", "not judged")


# --- tolerant parsing -----------------------------------------------------------------------------


def test_parsers_skip_what_they_do_not_know() -> None:
    rows = drift_features(
        {
            "a": {"statistic": 0.3, "threshold": 0.1},
            "b": 0.05,
            "c": {"status": "NO_REFERENCE"},
            "d": {"method": "ks", "statistic": 1e-12, "threshold": 0.05, "drifted": True},
            "e": "garbage",
        }
    )
    assert [r.feature for r in rows] == ["d", "a", "b", "c", "e"]
    assert rows[0].score == 1e6  # p-value methods invert the ratio, capped as the job does
    assert drift_features(None) == [] and drift_features([1, 2]) == []
    metrics = performance_metrics(
        {"auc": {"realized": 0.7, "baseline": 0.8}, "mae": 3.0, "n_labelled": 50, "kind": "x"},
        registered_fallback={"mae": 2.5},
    )
    assert [(m.metric, m.realised, m.registered) for m in metrics] == [
        ("auc", 0.7, 0.8),
        ("mae", 3.0, 2.5),
    ]
    assert performance_metrics("nonsense") == []


# --- in a real browser ----------------------------------------------------------------------------


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    message = "chromium is not installed (apt-get install -y chromium)"
    if IN_CI:
        pytest.fail(f"CI=true and {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def served(seeded: Seeded) -> Iterator[str]:
    """The app under uvicorn on a free port of 127.0.0.1, in a thread; its base URL."""
    app = asgi(seeded.settings, _components(seeded.settings))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


class DevTools:
    """A minimal Chrome DevTools Protocol client over one page's websocket."""

    def __init__(self, socket: Any) -> None:
        self.socket = socket
        self.next_id = 0

    def call(self, method: str, timeout: float = 15, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        return self.wait(lambda m: m.get("id") == self.next_id, timeout).get("result", {})

    def wait(self, match: Any, timeout: float = 15) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self.socket.recv(timeout=max(deadline - time.monotonic(), 0.01)))
            if "error" in message and message.get("id") == self.next_id:
                raise AssertionError(f"DevTools error: {message['error']}")
            if match(message):
                return dict(message)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[DevTools]:
    """Headless chromium with remote debugging; a DevTools client on its first page."""
    from websockets.sync.client import connect  # uvicorn[standard] brings websockets

    executable = _chromium()
    profile = tmp_path / "profile"
    process = subprocess.Popen(
        [
            executable,
            "--headless",
            "--no-sandbox",  # tests may run as root, where the sandbox refuses to start
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "--window-size=1440,1000",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 20
        while not (port_file.exists() and port_file.read_text().strip()):
            assert process.poll() is None, "chromium exited at start-up"
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        pages = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
        page = next(target for target in pages if target["type"] == "page")
        with connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10) as socket:
            yield DevTools(socket)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


# What the page drew, read from the live DOM after layout: every chart with its marks, sizes and
# the numbers the marks carry.
_INSPECT = """
JSON.stringify([...document.querySelectorAll('figure.chart')].map(figure => {
  const svg = figure.querySelector('svg');
  const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
  const marks = sel => [...figure.querySelectorAll(sel)];
  const sized = el => { const b = el.getBoundingClientRect(); return b.width > 0 && b.height > 0; };
  return {
    id: figure.dataset.chart,
    empty: figure.dataset.empty === 'true',
    width: box.width, height: box.height,
    series: marks('g.series').map(g => ({name: g.dataset.series, total: +g.dataset.total,
      points: g.querySelectorAll('circle.point').length,
      drawn: [...g.querySelectorAll('circle.point')].filter(sized).length})),
    bars: marks('g.bar').map(g => ({label: g.dataset.label, value: +g.dataset.value,
      width: g.querySelector('rect').getBoundingClientRect().width})),
    stacks: marks('g.stack').map(g => ({label: g.dataset.label, total: +g.dataset.total,
      segments: g.querySelectorAll('g.segment').length})),
    metrics: marks('g.metric').map(g => ({label: g.dataset.label, worse: g.dataset.worse,
      dots: g.querySelectorAll('circle').length})),
    days: marks('rect.day').map(r => r.dataset.state),
  };
}))
"""


def test_the_page_draws_every_chart_in_chromium(
    served: str, browser: DevTools, seeded: Seeded, tmp_path: Path
) -> None:
    browser.call("Page.enable")
    browser.call("Page.navigate", url=f"{served}/api/ml/dashboard?days={DAYS}")
    browser.wait(lambda m: m.get("method") == "Page.loadEventFired")
    result = browser.call("Runtime.evaluate", expression=_INSPECT, returnByValue=True)
    charts = {chart["id"]: chart for chart in json.loads(result["result"]["value"])}

    for chart in charts.values():
        assert chart["empty"] or (chart["width"] > 300 and chart["height"] > 60), chart["id"]
    volume = charts["predictions-per-day"]
    assert not volume["empty"]
    assert {s["name"]: s["total"] for s in volume["series"]} == {
        model: sum(days.values()) for model, days in seeded.counts.items()
    }
    for series in volume["series"]:
        assert series["points"] == DAYS == series["drawn"], "a dot per day, zeros included"
    latency = charts["latency-per-day"]
    assert {s["name"]: s["points"] for s in latency["series"]} == {
        model: len(days) for model, days in seeded.counts.items()
    }, "a latency dot per day with predictions"
    mix = {row["label"]: row for row in charts["class-mix"]["stacks"]}
    assert {name: row["total"] for name, row in mix.items()} == {
        model: sum(classes.values()) for model, classes in seeded.classes.items()
    }
    assert mix["contact_timing_model"]["segments"] == 6, "five classes and the rest"
    drift = charts["drift-move_probability_model"]["bars"]
    assert [bar["label"] for bar in drift[:3]] == seeded.features[:3]
    assert all(bar["width"] > 0 for bar in drift)
    assert drift[0]["width"] > drift[3]["width"] > drift[-1]["width"]
    assert charts["drift-transaction_type_model"]["empty"], "no reference: an empty state"
    assert charts["drift-contact_timing_model"]["empty"]
    tiles = browser.call(
        "Runtime.evaluate",
        expression="JSON.stringify([...document.querySelectorAll('.tile')].map(t => "
        "[t.dataset.tile, t.className, t.querySelector('.tile-value').textContent, "
        "getComputedStyle(t).borderLeftColor]))",
        returnByValue=True,
    )["result"]["value"]
    drawn = {key: (cls, value, colour) for key, cls, value, colour in json.loads(tiles)}
    assert drawn["drift"][:2] == ("tile bad", "1 of 2 judged")
    badges = browser.call(
        "Runtime.evaluate",
        expression="JSON.stringify([...document.querySelectorAll('figure[data-badge]')].map("
        "f => [f.dataset.chart, f.querySelector('.badge').getBoundingClientRect().width]))",
        returnByValue=True,
    )["result"]["value"]
    shown = dict(json.loads(badges))
    assert set(shown) == {
        f"{kind}-{name}"
        for kind in ("drift", "distributions", "performance")
        for name in ("transaction_type_model", "contact_timing_model")
    }
    assert all(width > 40 for width in shown.values()), "each badge is drawn, readable"
    metrics = {m["label"]: m for m in charts["performance-move_probability_model"]["metrics"]}
    assert metrics["auc"] == {"label": "auc", "worse": "true", "dots": 2}
    assert metrics["accuracy"]["worse"] == "false"
    assert len(charts["null-rates"]["bars"]) == len(FEATURES)
    assert charts["pipeline-freshness"]["bars"][0]["label"] == "run"
    assert charts["pipeline-runs"]["days"].count("failed") == 1
    assert charts["pipeline-runs"]["days"].count("success") == DAYS - 2

    height = browser.call(
        "Runtime.evaluate",
        expression="document.documentElement.scrollHeight",
        returnByValue=True,
    )["result"]["value"]
    browser.call(
        "Emulation.setDeviceMetricsOverride",
        width=1440,
        height=int(height),
        deviceScaleFactor=1,
        mobile=False,
    )
    shot = browser.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    png = base64.b64decode(shot["data"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000
    screenshot = tmp_path / "dashboard.png"
    screenshot.write_bytes(png)
    if os.environ.get("UPDATE_DOCS_SCREENSHOT") == "1":
        target = ROOT / "docs" / "img" / "dashboard.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(screenshot, target)
    # How long the page takes to draw in chromium: python -m bench fail-fast.


def test_the_public_surface_is_pinned() -> None:
    import roiml.monitoring.dashboard as dashboard
    import roiml.serving.routes.dashboard as routes

    # The figures and the page are monitoring's; the HTTP face (path, scope, routes) serving's.
    assert set(dashboard.__all__) | set(routes.__all__) == {
        "DASHBOARD_PATH",
        "DASHBOARD_SCOPE",
        "DashboardData",
        "router",
        "load_dashboard",
        "render_page",
    }
    assert set(routes.__all__) == {"DASHBOARD_PATH", "DASHBOARD_SCOPE", "router"}


def test_an_estimate_shows_the_baseline_it_is_judged_against() -> None:
    from roiml.monitoring.dashboard.parse import performance_metrics
    from roiml.monitoring.dashboard.svg import Comparison, dumbbell_chart

    metrics = performance_metrics(
        {
            "realised": {},
            "registered": {"precision": 0.31},
            "estimated": {"precision": 0.26, "recall": 0.33},
            "estimated_reference": {"metrics": {"precision": 0.27}, "over": "the week before"},
        }
    )
    precision = next(m for m in metrics if m.metric == "precision")
    assert (precision.estimated, precision.estimated_reference) == (0.26, 0.27)
    svg = dumbbell_chart(
        "p",
        "Performance",
        [Comparison("precision", None, 0.31, 0.26, False, 0.27)],
        empty_message="none",
    )
    assert "est. 0.26 · before 0.27" in svg
