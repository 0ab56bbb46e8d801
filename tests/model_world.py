"""A small trained world shared by the model and serving tests (built once per session)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path

from bench.replay import small_configs  # the replay sizes its models for a small world too

from roiml.db.engine import make_engine
from roiml.db.enums import ModelType
from roiml.db.migrate import upgrade
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
