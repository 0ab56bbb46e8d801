"""What every CLI verb shares: settings, engine, and turning RoimlError into a clean exit."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from roiml.errors import ConfigurationError, RoimlError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from roiml.settings import Settings

__all__ = ["console", "err_console", "handle_errors", "open_engine", "settings_or_exit"]

console = Console()
err_console = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")


def settings_or_exit() -> Settings:
    """The settings, or a readable message and exit 2 if they are invalid."""
    # Imported here, as everything heavier than typer and rich in the CLI is: `roiml --help`
    # and each verb's --help import only what printing the help needs (issue 17).
    from pydantic import ValidationError

    from roiml.settings import get_settings

    try:
        return get_settings()
    except ValidationError as exc:
        err_console.print(
            f"[red]error:[/red] invalid settings: {escape(str(exc))}", highlight=False
        )
        raise typer.Exit(2) from exc


@contextmanager
def open_engine(
    settings: Settings, url: str | None = None, *, require_schema: bool = True
) -> Iterator[Engine]:
    """An engine on ``url`` (default: the settings' database), checked reachable and (unless
    ``require_schema`` is off, as for ``roiml db``) migrated to the newest schema; disposed after.
    """
    from roiml.db.engine import check_connection, make_engine
    from roiml.db.revision import current_revision, head_revision

    target = url or settings.resolved_database_url
    if require_schema:
        _refuse_a_missing_sqlite_file(target)
    engine = make_engine(target)
    try:
        check_connection(engine)
        if require_schema:
            revision = current_revision(engine)
            if revision != head_revision():
                shown = engine.url.render_as_string(hide_password=True)
                raise ConfigurationError(
                    f"the database at {shown} is at schema revision {revision or 'none'}, "
                    f"not {head_revision()}; run `roiml db upgrade` first"
                )
        yield engine
    finally:
        engine.dispose()


def _refuse_a_missing_sqlite_file(url: str) -> None:
    """A verb that reads must not create the database it was pointed at: connecting would
    leave an empty file (and its folder) behind a mistyped ROIML_DATA_DIR."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return  # make_engine says what is wrong with it
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return
    if database.startswith("file:") or Path(database).exists():
        return
    raise ConfigurationError(
        f"there is no database at {database}; create one with `roiml db upgrade` (or `roiml "
        "demo`), or point ROIML_DATA_DIR / ROIML_DATABASE_URL at yours"
    )


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Print a :class:`RoimlError` as one line on stderr and exit with its code, no traceback."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except RoimlError as exc:
            # Messages carry URLs and "[...]" from drivers: print them literally, not as markup.
            err_console.print(
                f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(exc.exit_code) from exc

    return wrapper
