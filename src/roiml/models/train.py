"""``roiml train``: snapshots → labels → fit → test-period metrics → artifact (→ registry)."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy import Engine

from roiml.db.base import utcnow
from roiml.db.enums import ModelType
from roiml.errors import TrainingError
from roiml.features.declared import load_tenant_catalog
from roiml.models.artifact import MODEL_NAMES
from roiml.models.config import (
    RECIPE_MODELS,
    LoadedConfig,
    Recipe,
    SplitConfig,
    resolve_config,
    tenant_config_dir,
)
from roiml.models.dataset import Snapshots, load_snapshots
from roiml.models.recipe import RecipeChoice, choose_recipe, read_shape
from roiml.models.trainers import TRAINERS, TrainedModel
from roiml.settings import Settings
from roiml.world import truth_dir

__all__ = ["TrainingPlan", "TrainingReport", "needs_grid", "plan_training", "train_models"]


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
    config_source: str = ""


@dataclass(frozen=True)
class TrainingPlan:
    """The recipe taken (and why), each model's config (and where from), the models left out."""

    recipe: RecipeChoice
    configs: dict[ModelType, LoadedConfig]
    left_out: tuple[str, ...] = ()


def plan_training(
    settings: Settings,
    engine: Engine,
    tenant_id: str,
    models: Sequence[ModelType] | None = None,
    *,
    recipe: Recipe | None = None,
    config_dir: Path | None = None,
    test_from: date | None = None,
    valid_from: date | None = None,
) -> TrainingPlan:
    """Which recipe fits the tenant's data (``recipe`` when given, else read from the data:
    :mod:`roiml.models.recipe`) and each model's config: ``config_dir``'s file, else the
    tenant's own (``<data_dir>/configs/<tenant>/``), else the recipe's shipped one; ``test_from``
    and ``valid_from`` override every config's split. ``models=None`` is every model the recipe
    trains. A data set the recipe cannot be read from is an error only where a shipped config
    is needed."""
    truth = truth_dir(settings.data_dir, tenant_id)
    undecided: TrainingError | None = None
    if recipe is not None:
        choice = RecipeChoice(recipe, "given by --recipe")
    else:
        try:
            choice = choose_recipe(read_shape(engine, tenant_id, truth))
        except TrainingError as exc:
            choice, undecided = RecipeChoice(Recipe.HOMEOWNERS, "not decided"), exc
    wanted = list(models) if models is not None else list(ModelType)
    trainable = RECIPE_MODELS[choice.recipe]
    left_out: tuple[str, ...] = ()
    if models is None:
        left_out = tuple(MODEL_NAMES[m] for m in wanted if MODEL_NAMES[m] not in trainable)
        wanted = [m for m in wanted if MODEL_NAMES[m] in trainable]
    tenant_dir = tenant_config_dir(settings.data_dir, tenant_id)
    configs = {}
    for model in wanted:
        name = MODEL_NAMES[model]
        own = config_dir is not None or (tenant_dir / f"{name}.yaml").exists()
        if undecided is not None and not own:
            raise undecided
        loaded = resolve_config(name, choice.recipe, config_dir=config_dir, tenant_dir=tenant_dir)
        configs[model] = _with_periods(loaded, test_from, valid_from)
    return TrainingPlan(choice, configs, left_out)


def _with_periods(
    loaded: LoadedConfig, test_from: date | None, valid_from: date | None
) -> LoadedConfig:
    if test_from is None and valid_from is None:
        return loaded
    split = loaded.config.split.model_dump()
    if test_from is not None:
        split["test_from"] = test_from
    if valid_from is not None:
        split["valid_from"] = valid_from
    try:
        checked = SplitConfig.model_validate(split)
    except ValidationError as exc:
        message = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise TrainingError(f"{message} (--valid-from, --test-from)") from exc
    config = loaded.config.model_copy(update={"split": checked})
    return LoadedConfig(config, loaded.source, loaded.origin)


def needs_grid(plan: TrainingPlan) -> bool:
    """Whether a planned model trains on the snapshot grid: all do but the value model of a
    sales file, whose rows are its purchases, each computed as of the day after closing."""
    return any(
        model is not ModelType.PROPERTY_VALUE or loaded.config.sale_rows != "buyers"
        for model, loaded in plan.configs.items()
    )


def train_models(
    settings: Settings,
    engine: Engine,
    tenant_id: str,
    models: Sequence[ModelType] | None = None,
    *,
    config_dir: Path | None = None,
    every_days: int = 14,
    snapshots: Snapshots | None = None,
    until: datetime | None = None,
    plan: TrainingPlan | None = None,
    on_model: Callable[[str, int, int], None] | None = None,
) -> list[TrainingReport]:
    """Train ``models`` on the tenant's data (known before ``until``, default all of it) by
    ``plan`` (default: :func:`plan_training` of ``models`` and ``config_dir``); each artifact is
    written under ``<data_dir>/models/<tenant>/<model>/<UTC timestamp>/``. Registering is the
    caller's step.

    ``on_model(step, models_done, models)`` is told each step as it starts ("snapshots", then
    each model's name; e.g. a progress bar's): a model takes from seconds to minutes.
    """
    if plan is None:
        plan = plan_training(settings, engine, tenant_id, models, config_dir=config_dir)
    report_step = on_model or (lambda _step, _done, _total: None)
    started = time.perf_counter()
    if snapshots is None:
        report_step("loading snapshots", 0, len(plan.configs))
        snapshots = load_snapshots(
            engine,
            tenant_id,
            settings.data_dir / "training" / tenant_id,
            every_days,
            until=until,
            # The tenant's declared columns are features of its catalog (roiml data contract).
            catalog=load_tenant_catalog(settings.data_dir, tenant_id),
            grid=needs_grid(plan),
        )
    snapshot_seconds = time.perf_counter() - started
    truth = truth_dir(settings.data_dir, tenant_id)
    reports = []
    for done, (model_type, loaded) in enumerate(plan.configs.items()):
        report_step(f"{model_type.value.lower()}_model", done, len(plan.configs))
        began = time.perf_counter()
        trained = TRAINERS[model_type](snapshots, loaded.config, truth if truth.is_dir() else None)
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
                config_source=loaded.source,
            )
        )
    report_step("done", len(plan.configs), len(plan.configs))
    return reports
