"""Create or migrate a database to the current schema: ``roiml db upgrade``."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from roiml.db.revision import MIGRATIONS_DIR, current_revision

__all__ = ["alembic_config", "alembic_head", "current_revision", "upgrade"]


def alembic_config() -> Config:
    """An Alembic config pointing at the packaged migrations (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Migrate ``engine``'s database to ``revision``; a second call changes nothing.

    Returns the revision the database is at afterwards.
    """
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    return current_revision(engine)


def alembic_head() -> str | None:
    """The newest revision as Alembic reads the migrations (roiml.db.revision's answer without
    Alembic is held equal to it by the tests)."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
