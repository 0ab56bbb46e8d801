"""Training configuration: one YAML file per model, per recipe.

The shipped files are read-only defaults inside the package, one folder per recipe
(``roiml/models/recipes/<recipe>/<model>.yaml``): ``homeowners`` for a platform tenant or the
simulated world, ``sales-records`` for a sales file without homeowner activity. A file a user
edits lives outside the package: ``<data_dir>/configs/<tenant>/<model>.yaml`` is read when it
exists (``roiml models config init`` writes a copy there to start from), and ``--config-dir``
overrides both for an experiment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from roiml.errors import TrainingError

__all__ = [
    "RECIPE_MODELS",
    "ClassCuts",
    "LoadedConfig",
    "Recipe",
    "SplitConfig",
    "TrainingConfig",
    "load_config",
    "resolve_config",
    "shipped_config_text",
    "tenant_config_dir",
]


class Recipe(StrEnum):
    """Which shipped defaults (and labels) fit the tenant's data."""

    HOMEOWNERS = "homeowners"  # homeowners with activity and sale histories (platform, world)
    SALES_RECORDS = "sales-records"  # a sales file: priced purchases, no activity, no sellers


# The models a recipe can train: a sales file has no activity to learn moves, types or timing from.
RECIPE_MODELS: dict[Recipe, tuple[str, ...]] = {
    Recipe.HOMEOWNERS: (
        "move_probability_model",
        "transaction_type_model",
        "contact_timing_model",
        "property_value_model",
    ),
    Recipe.SALES_RECORDS: ("property_value_model",),
}


class SplitConfig(BaseModel):
    """How the usable rows are cut into train / validation / test by date.

    ``test_from`` / ``valid_from`` (dates, ``--test-from`` / ``--valid-from``) override the day
    counts: the test period starts at ``test_from``, validation at ``valid_from`` and runs up to
    the test period (less the purge gap for the snapshot models).
    """

    model_config = ConfigDict(extra="forbid")

    test_days: int = Field(120, ge=7)
    valid_days: int = Field(35, ge=7)
    test_from: date | None = None
    valid_from: date | None = None

    @model_validator(mode="after")
    def _valid_before_test(self) -> SplitConfig:
        if self.test_from and self.valid_from and self.valid_from >= self.test_from:
            raise ValueError(
                f"valid_from {self.valid_from} is not before test_from {self.test_from}; "
                "validation comes before the test period"
            )
        return self


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
    # Value model only: once early stopping has chosen the rounds on validation, fit again on
    # train + validation with the rounds scaled by the rows added (docs/MODELS.md, "Refit").
    refit_with_valid: bool = True


@dataclass(frozen=True)
class LoadedConfig:
    """A config and where it came from (a path, or the shipped recipe's file)."""

    config: TrainingConfig
    source: str
    origin: Literal["--config-dir", "tenant", "shipped"]


def tenant_config_dir(data_dir: Path, tenant_id: str) -> Path:
    """Where a tenant's own, editable configs live: ``<data_dir>/configs/<tenant>/``."""
    return data_dir / "configs" / tenant_id


def _folder(recipe: Recipe) -> str:
    return recipe.value.replace("-", "_")


def shipped_config_text(model_name: str, recipe: Recipe = Recipe.HOMEOWNERS) -> str:
    """The YAML text of the shipped (read-only) config of ``model_name`` under ``recipe``."""
    if model_name not in RECIPE_MODELS[recipe]:
        raise TrainingError(
            f"the {recipe.value} recipe has no {model_name} (it trains "
            f"{', '.join(RECIPE_MODELS[recipe])}); pass --recipe homeowners for it"
        )
    resource = resources.files("roiml.models") / "recipes" / _folder(recipe) / f"{model_name}.yaml"
    return resource.read_text()


def _parse(text: str, where: str) -> TrainingConfig:
    try:
        return TrainingConfig.model_validate(yaml.safe_load(text))
    except (yaml.YAMLError, ValidationError) as exc:
        raise TrainingError(f"{where} is not a valid training config: {exc}") from exc


def resolve_config(
    model_name: str,
    recipe: Recipe = Recipe.HOMEOWNERS,
    *,
    config_dir: Path | None = None,
    tenant_dir: Path | None = None,
) -> LoadedConfig:
    """``model_name``'s config: from ``config_dir`` (which must hold it), else the tenant's own
    file in ``tenant_dir`` when there is one, else the shipped file of ``recipe``."""
    file_name = f"{model_name}.yaml"
    if config_dir is not None:
        path = config_dir / file_name
        if not path.exists():
            raise TrainingError(
                f"no {file_name} in {config_dir}; write one with "
                f"`roiml models config init --dir {config_dir}`"
            )
        return LoadedConfig(_parse(path.read_text(), str(path)), str(path), "--config-dir")
    if tenant_dir is not None and (tenant_dir / file_name).exists():
        path = tenant_dir / file_name
        return LoadedConfig(_parse(path.read_text(), str(path)), str(path), "tenant")
    where = f"roiml/models/recipes/{_folder(recipe)}/{file_name}"
    return LoadedConfig(_parse(shipped_config_text(model_name, recipe), where), where, "shipped")


def load_config(
    model_name: str, config_dir: Path | None = None, recipe: Recipe = Recipe.HOMEOWNERS
) -> TrainingConfig:
    """The training config of ``model_name`` from ``config_dir`` or the shipped defaults."""
    return resolve_config(model_name, recipe, config_dir=config_dir).config
