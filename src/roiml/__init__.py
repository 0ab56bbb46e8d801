"""roiml: the predictive-analytics engine of a real-estate customer-engagement platform.

The public Python API is what this module exports; ``tests/test_public_api.py`` pins it, so a
change to it is always deliberate.
"""

from roiml.db.engine import make_engine, tenant_session
from roiml.db.migrate import upgrade as upgrade_database
from roiml.ingest import import_file
from roiml.settings import Settings, get_settings
from roiml.world import WorldConfig, WorldReport, generate_world, world_stats

__all__ = [
    "Settings",
    "WorldConfig",
    "WorldReport",
    "generate_world",
    "get_settings",
    "import_file",
    "make_engine",
    "tenant_session",
    "upgrade_database",
    "world_stats",
]
__version__ = "0.1.0"
