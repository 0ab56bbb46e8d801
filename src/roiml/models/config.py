"""Training configuration: one YAML file per model, shipped in ``roiml/models/configs/``.

Hyper-parameters and the dataset's horizons live in these files, not in code; a directory of
files with the same names (``--config-dir``) overrides them for an experiment.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from roiml.errors import TrainingError

__all__ = ["ClassCuts", "SplitConfig", "TrainingConfig", "load_config"]


class SplitConfig(BaseModel):
    """How the usable snapshots are cut into train / validation / test by date."""

    model_config = ConfigDict(extra="forbid")

    test_days: int = Field(120, ge=7)
    valid_days: int = Field(35, ge=7)


class ClassCuts(BaseModel):
    """HIGH / MEDIUM / LOW by the share of validation scores above each cut."""

    model_config = ConfigDict(extra="forbid")

    high_top_share: float = Field(0.05, gt=0, lt=1)
    medium_top_share: float = Field(0.20, gt=0, lt=1)


class TrainingConfig(BaseModel):
    """One model's training recipe."""

    model_config = ConfigDict(extra="forbid")

    horizon_days: int = Field(ge=1, le=730)
    feature_sets: list[str]
    split: SplitConfig = SplitConfig()
    min_positive_labels: int = Field(200, ge=1)
    max_train_rows: int = Field(1_500_000, ge=1000)
    events_per_snapshot: int = Field(4, ge=1)
    classes: ClassCuts = ClassCuts()
    interval: tuple[float, float] = (0.1, 0.9)
    # Value model only. "sellers": each sale of a primary residence, seen from the seller's
    # snapshots before it (the world, and any tenant whose homeowners sell). "buyers": each
    # priced purchase, seen from the buyer the day after closing at horizon 0 (sales records
    # without owner histories, as in public data sets).
    sale_rows: Literal["sellers", "buyers"] = "sellers"
    exclude_features: list[str] = Field(default_factory=list)
    lightgbm: dict[str, Any]
    num_boost_round: int = Field(400, ge=1)
    early_stopping_rounds: int = Field(40, ge=1)


def load_config(model_name: str, config_dir: Path | None = None) -> TrainingConfig:
    """The training config of ``model_name`` from ``config_dir`` or the shipped defaults."""
    file_name = f"{model_name}.yaml"
    if config_dir is not None:
        path = config_dir / file_name
        if not path.exists():
            raise TrainingError(
                f"no {file_name} in {config_dir}; copy it from roiml/models/configs"
            )
        text = path.read_text()
        where = str(path)
    else:
        resource = resources.files("roiml.models") / "configs" / file_name
        text = resource.read_text()
        where = f"roiml/models/configs/{file_name}"
    try:
        raw = yaml.safe_load(text)
        return TrainingConfig.model_validate(raw)
    except (yaml.YAMLError, ValidationError) as exc:
        raise TrainingError(f"{where} is not a valid training config: {exc}") from exc
