"""``roiml train``: snapshots → labels → fit → test-period metrics → artifact (→ registry)."""

from __future__ import annotations

import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine

from roiml.db.base import utcnow
from roiml.db.enums import ModelType
from roiml.models.artifact import MODEL_NAMES
from roiml.models.config import load_config
from roiml.models.dataset import Snapshots, load_snapshots
from roiml.models.trainers import TRAINERS, TrainedModel
from roiml.settings import Settings
from roiml.world import truth_dir

__all__ = ["TrainingReport", "train_models"]


@dataclass
class TrainingReport:
    """What one model's training produced and cost."""

    model_name: str
    trained: TrainedModel
    artifact_dir: Path
    seconds: float
    peak_rss_mib: float
    snapshot_seconds: float = 0.0
    registered_version: str | None = None


def train_models(
    settings: Settings,
    engine: Engine,
    tenant_id: str,
    models: Sequence[ModelType],
    *,
    config_dir: Path | None = None,
    every_days: int = 14,
    snapshots: Snapshots | None = None,
    until: datetime | None = None,
) -> list[TrainingReport]:
    """Train ``models`` on the tenant's data (known before ``until``, default all of it); each
    artifact is written under ``<data_dir>/models/<tenant>/<model>/<UTC timestamp>/``.
    Registering is the caller's step."""
    configs = {model: load_config(MODEL_NAMES[model], config_dir) for model in models}
    started = time.perf_counter()
    if snapshots is None:
        snapshots = load_snapshots(
            engine,
            tenant_id,
            settings.data_dir / "training" / tenant_id,
            every_days,
            until=until,
        )
    snapshot_seconds = time.perf_counter() - started
    truth = truth_dir(settings.data_dir, tenant_id)
    reports = []
    for model_type, config in configs.items():
        began = time.perf_counter()
        trained = TRAINERS[model_type](snapshots, config, truth if truth.is_dir() else None)
        seconds = time.perf_counter() - began
        stamp = utcnow().strftime("%Y%m%dT%H%M%S%f")
        target = settings.data_dir / "models" / tenant_id / trained.artifact.name / stamp
        trained.artifact.save(target)
        reports.append(
            TrainingReport(
                model_name=trained.artifact.name,
                trained=trained,
                artifact_dir=target,
                seconds=seconds,
                peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                snapshot_seconds=snapshot_seconds,
            )
        )
    return reports
