"""A trained model as one self-describing directory: boosters, feature list, metadata, reference.

The same directory is what MLflow stores as the model version's artifacts and what the API loads,
so nothing about a model lives only in process memory or only in the registry.

Layout::

    meta.json            name, model type, feature list, classes, parameters, metrics, window, extra
    booster-<part>.txt   one LightGBM text model per part ("main"; or "weekday"/"hour"; ...)
    reference.parquet    a sample of the training inputs and of the latest snapshot, with the
                         instant of each row: the reference distributions for drift
    season.parquet       a panel's daily feature means over the data's last year: what the
                         calendar alone does to each feature (roiml.models.season)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from roiml.db.enums import ModelType
from roiml.errors import ModelError

__all__ = [
    "HORIZON_FEATURE",
    "MODEL_NAMES",
    "REFERENCE_LATEST",
    "REFERENCE_PART",
    "REFERENCE_TRAIN",
    "ModelArtifact",
    "model_type_of",
]

FORMAT_VERSION = 1
# reference.parquet's column saying which sample a row belongs to: REFERENCE_TRAIN (the training
# inputs) or REFERENCE_LATEST (the population at the latest snapshot); with ``as_of``, the instant
# of each row. Training writes it, monitoring reads it: both take the names from here.
REFERENCE_PART = "part"
REFERENCE_TRAIN = "train"
REFERENCE_LATEST = "latest"
# The one input in a feature list that is not a stored feature: how many months ahead the value
# model is asked for. Training takes it from the labels (sale date - snapshot date); serving from
# the request. Both meet here, where a model's feature list is defined.
HORIZON_FEATURE = "horizon_months"

# The registered name of each model type, as in the seed.
MODEL_NAMES: dict[ModelType, str] = {
    ModelType.MOVE_PROBABILITY: "move_probability_model",
    ModelType.TRANSACTION_TYPE: "transaction_type_model",
    ModelType.CONTACT_TIMING: "contact_timing_model",
    ModelType.PROPERTY_VALUE: "property_value_model",
}


def model_type_of(name: str) -> ModelType:
    """The model type of a registered model name (``move_probability_model``) or type name."""
    for model_type, model_name in MODEL_NAMES.items():
        if name in (model_name, model_type.value, model_type.value.lower()):
            return model_type
    known = ", ".join(MODEL_NAMES.values())
    raise ModelError(f"unknown model {name!r}; known models: {known}")


@dataclass
class ModelArtifact:
    """Everything one trained model version needs to predict, explain and be monitored."""

    name: str
    model_type: ModelType
    feature_names: list[str]
    boosters: dict[str, lgb.Booster]
    classes: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    training_window: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    reference: pa.Table | None = None
    # A panel's daily feature means over the data's last year (roiml.models.season), which
    # monitoring reads to tell the season's moves from drift; None for a young tenant.
    season: pa.Table | None = None

    def matrix(self, rows: pa.Table) -> np.ndarray:
        """The model's input matrix from a table holding (at least) its features, in order."""
        missing = [name for name in self.feature_names if name not in rows.column_names]
        if missing:
            raise ModelError(
                f"{self.name}: the input lacks {len(missing)} of the model's features "
                f"(first: {', '.join(missing[:5])}); retrain or recompute the features"
            )
        columns = [
            rows[name].cast(pa.float64()).to_numpy(zero_copy_only=False)
            for name in self.feature_names
        ]
        if not columns:
            return np.empty((rows.num_rows, 0))
        return np.column_stack(columns).astype(np.float64, copy=False)

    def save(self, directory: Path) -> Path:
        """Write the artifact into ``directory`` (created); returns it."""
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "model_type": self.model_type.value,
            "feature_names": self.feature_names,
            "classes": self.classes,
            "parameters": self.parameters,
            "metrics": self.metrics,
            "training_window": self.training_window,
            "extra": self.extra,
            "parts": sorted(self.boosters),
        }
        (directory / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
        for part, booster in self.boosters.items():
            booster.save_model(str(directory / f"booster-{part}.txt"))
        if self.reference is not None:
            pq.write_table(self.reference, directory / "reference.parquet", compression="zstd")
        if self.season is not None:
            pq.write_table(self.season, directory / "season.parquet", compression="zstd")
        return directory

    @classmethod
    def load(cls, directory: Path) -> ModelArtifact:
        """Read an artifact written by :meth:`save`."""
        meta_path = directory / "meta.json"
        if not meta_path.exists():
            raise ModelError(f"{directory} holds no roiml model (meta.json is missing)")
        meta = json.loads(meta_path.read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ModelError(
                f"{directory}: model format {meta.get('format_version')} is not "
                f"{FORMAT_VERSION}; retrain the model with this version of roiml"
            )
        boosters = {
            part: lgb.Booster(model_file=str(directory / f"booster-{part}.txt"))
            for part in meta["parts"]
        }
        reference_path = directory / "reference.parquet"
        season_path = directory / "season.parquet"
        return cls(
            name=meta["name"],
            model_type=ModelType(meta["model_type"]),
            feature_names=list(meta["feature_names"]),
            boosters=boosters,
            classes=list(meta["classes"]),
            parameters=dict(meta["parameters"]),
            metrics={k: float(v) for k, v in meta["metrics"].items()},
            training_window=dict(meta["training_window"]),
            extra=dict(meta["extra"]),
            reference=pq.read_table(reference_path) if reference_path.exists() else None,
            season=pq.read_table(season_path) if season_path.exists() else None,
        )
