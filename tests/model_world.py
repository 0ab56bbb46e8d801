"""A small trained world shared by the model and serving tests (built once per session)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path

import yaml

from roiml.db.engine import make_engine
from roiml.db.enums import ModelType
from roiml.db.migrate import upgrade
from roiml.models.config import SplitConfig, load_config
from roiml.models.dataset import Snapshots, load_snapshots
from roiml.models.train import TrainingReport, train_models
from roiml.settings import Settings
from roiml.world import WorldConfig, generate_world

TENANT = "m"
WORLD_END = date(2024, 12, 1)
# The serving tests' "now": the morning after the last materialised day.
SERVING_NOW = datetime.combine(WORLD_END, time(9))


@dataclass
class World:
    """A generated world, its snapshots and small training configs."""

    settings: Settings
    config_dir: Path
    snapshots: Snapshots


def small_configs(target: Path) -> Path:
    """The shipped configs with label minimums and boosting rounds sized for a tiny world."""
    target.mkdir(parents=True, exist_ok=True)
    for model in ModelType:
        name = f"{model.value.lower()}_model"
        config = load_config(name)
        config.min_positive_labels = 3
        config.num_boost_round = 40
        config.early_stopping_rounds = 10
        config.split = SplitConfig(test_days=60, valid_days=28)
        config.max_train_rows = 20_000
        config.events_per_snapshot = 1
        # One thread: the suite shares two cores, and OpenMP threads spin when oversubscribed.
        config.lightgbm["num_threads"] = 1
        (target / f"{name}.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json")))
    return target


def build_world(root: Path) -> World:
    """Generate 1,500 homeowners over 23 months and compute 28-day snapshots."""
    settings = Settings(_env_file=None, data_dir=root / "data", tenant_id=TENANT)
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    generate_world(
        engine,
        settings.data_dir,
        WorldConfig(users=1500, start=date(2023, 1, 1), end=WORLD_END, seed=11, tenant_id=TENANT),
    )
    snapshots = load_snapshots(engine, TENANT, settings.data_dir / "training" / TENANT, 28)
    engine.dispose()
    return World(settings, small_configs(root / "config"), snapshots)


def train_all(world: World) -> dict[str, TrainingReport]:
    """The four models trained on ``world``, by name."""
    engine = make_engine(world.settings.resolved_database_url)
    reports = train_models(
        world.settings,
        engine,
        TENANT,
        list(ModelType),
        config_dir=world.config_dir,
        snapshots=world.snapshots,
    )
    engine.dispose()
    return {r.model_name: r for r in reports}
