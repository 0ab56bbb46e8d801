"""roiml: the predictive-analytics engine of a real-estate customer-engagement platform.

The public Python API is what this module exports; ``tests/test_public_api.py`` pins it, so a
change to it is always deliberate.

The exports are loaded on first use (PEP 562): every ``import roiml.<anything>`` runs this file
first, and importing SQLAlchemy, Alembic, pandas and NumPy here would make ``roiml --help`` (and
every light module) pay seconds for names it never touches.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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

# Exported name -> (module, name there).
_EXPORTS: dict[str, tuple[str, str]] = {
    "Settings": ("roiml.settings", "Settings"),
    "WorldConfig": ("roiml.world", "WorldConfig"),
    "WorldReport": ("roiml.world", "WorldReport"),
    "generate_world": ("roiml.world", "generate_world"),
    "get_settings": ("roiml.settings", "get_settings"),
    "import_file": ("roiml.ingest", "import_file"),
    "make_engine": ("roiml.db.engine", "make_engine"),
    "tenant_session": ("roiml.db.engine", "tenant_session"),
    "upgrade_database": ("roiml.db.migrate", "upgrade"),
    "world_stats": ("roiml.world", "world_stats"),
}


def __getattr__(name: str) -> object:
    """Import an exported name on first access and keep it, so later accesses are plain."""
    try:
        module, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
