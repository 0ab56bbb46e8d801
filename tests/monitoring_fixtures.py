"""Helpers of the monitoring tests: a small trained move model, logged predictions, a receiver."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import lightgbm as lgb
import numpy as np
import pyarrow as pa
from sqlalchemy import Engine

from roiml.db.engine import tenant_session
from roiml.db.enums import EntityType, ModelStatus, ModelType, PredictionType
from roiml.db.ml_tables import MLModel, MLPrediction
from roiml.models.artifact import MODEL_NAMES, ModelArtifact
from roiml.models.predict import predict

MOVE = MODEL_NAMES[ModelType.MOVE_PROBABILITY]


def move_artifact(
    reference: np.ndarray, names: list[str], seed: int = 0, as_of: datetime | None = None
) -> ModelArtifact:
    """A move-probability model trained on ``reference`` (label from the first column + noise);
    its reference rows are as of ``as_of`` when given (as a trained model's are)."""
    rng = np.random.default_rng(seed)
    score = np.nan_to_num(reference[:, 0]) + rng.normal(0, 1, len(reference))
    label = (score > np.quantile(score, 0.8)).astype(int)
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 7, "verbose": -1, "num_threads": 1, "seed": seed},
        lgb.Dataset(reference, label, feature_name=names),
        num_boost_round=15,
    )
    p = booster.predict(reference)
    return ModelArtifact(
        name=MOVE,
        model_type=ModelType.MOVE_PROBABILITY,
        feature_names=names,
        boosters={"main": booster},
        classes=["STAY", "MOVE"],
        metrics={"roc_auc": 0.8, "high_precision": 0.6},
        extra={
            "horizon_days": 180,
            "thresholds": {
                "HIGH": float(np.quantile(p, 0.95)),
                "MEDIUM": float(np.quantile(p, 0.8)),
            },
        },
        reference=pa.table(
            {
                **({} if as_of is None else {"as_of": pa.array([as_of] * len(reference))}),
                **{n: pa.array(reference[:, i]) for i, n in enumerate(names)},
            }
        ),
    )


def register(engine: Engine, tenant: str, version: str = "1") -> None:
    """The ml_models mirror row a registered, deployed version has."""
    with tenant_session(engine, tenant) as session:
        session.add(
            MLModel(
                tenant_id=tenant,
                name=MOVE,
                version=version,
                model_type=ModelType.MOVE_PROBABILITY,
                status=ModelStatus.DEPLOYED,
                metrics={"roc_auc": 0.8, "high_precision": 0.6},
                feature_names=[],
            )
        )


def log_predictions(
    engine: Engine,
    tenant: str,
    artifact: ModelArtifact,
    matrix: np.ndarray,
    day: datetime,
    version: str = "1",
    feedback: np.ndarray | None = None,
) -> list[float]:
    """ml_predictions rows for ``matrix`` served during ``day``, as the API logs them."""
    answer = predict(artifact, matrix, explain=False)
    rows = []
    for i in range(len(matrix)):
        rows.append(
            MLPrediction(
                prediction_id=f"pred_{tenant}_{day:%Y%m%d}_{i}",
                tenant_id=tenant,
                model_name=MOVE,
                model_version=version,
                prediction_type=PredictionType.MOVE_PROBABILITY,
                entity_type=EntityType.USER,
                entity_id=f"user_{i}",
                features={
                    n: (None if np.isnan(v) else float(v))
                    for n, v in zip(artifact.feature_names, matrix[i], strict=True)
                },
                predicted_value=float(answer.predicted_value[i]),
                predicted_class=answer.predicted_class[i],
                probabilities={"STAY": 1 - float(answer.predicted_value[i])},
                confidence=float(answer.confidence[i]),
                latency_ms=2.0 + i % 5,
                predicted_at=day + timedelta(seconds=30 * i),
                actual_value=None if feedback is None else float(feedback[i]),
            )
        )
    with tenant_session(engine, tenant) as session:
        session.add_all(rows)
    return [float(v) for v in answer.predicted_value]


class Receiver:
    """A webhook receiver on 127.0.0.1: records every JSON body; answers ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.status = status
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                receiver.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    @contextmanager
    def running(self) -> Iterator[Receiver]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (a port just freed)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_address[1]
    server.server_close()
    return f"http://127.0.0.1:{port}/hook"
