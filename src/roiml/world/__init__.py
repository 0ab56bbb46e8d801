"""The simulated world: a generative story that fills the source tables (docs/WORLD.md)."""

from roiml.world.config import WorldConfig
from roiml.world.generate import WorldReport, generate_world, truth_dir
from roiml.world.stats import world_stats

__all__ = ["WorldConfig", "WorldReport", "generate_world", "truth_dir", "world_stats"]
