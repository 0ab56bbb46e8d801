"""roiml: the predictive-analytics engine of a real-estate customer-engagement platform.

The public Python API is what this module exports; ``tests/test_public_api.py`` pins it, so a
change to it is always deliberate.

The exports are loaded on first use (PEP 562): every ``import roiml.<anything>`` runs this file
first, and importing SQLAlchemy, Alembic, pandas and NumPy here would make ``roiml --help`` (and
every light module) pay seconds for names it never touches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from roiml.lazy import lazy_exports

if TYPE_CHECKING:
    from roiml.client import ApiError, Client
    from roiml.db.engine import make_engine, tenant_session
    from roiml.db.migrate import upgrade as upgrade_database
    from roiml.ingest import import_file
    from roiml.registry import ModelRegistry
    from roiml.settings import Settings, get_settings
    from roiml.store.retrieval import FeatureStore
    from roiml.world import WorldConfig, WorldReport, generate_world, world_stats

__all__ = [
    "ApiError",
    "Client",
    "FeatureStore",
    "ModelRegistry",
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

# Exported name -> "module:name there" (the same name when there is no ":").
__getattr__, __dir__ = lazy_exports(
    globals(),
    {
        "ApiError": "roiml.client",
        "Client": "roiml.client",
        "FeatureStore": "roiml.store.retrieval",
        "ModelRegistry": "roiml.registry",
        "Settings": "roiml.settings",
        "WorldConfig": "roiml.world",
        "WorldReport": "roiml.world",
        "generate_world": "roiml.world",
        "get_settings": "roiml.settings",
        "import_file": "roiml.ingest",
        "make_engine": "roiml.db.engine",
        "tenant_session": "roiml.db.engine",
        "upgrade_database": "roiml.db.migrate:upgrade",
        "world_stats": "roiml.world",
    },
)
