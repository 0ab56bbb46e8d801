"""What every CLI verb shares: settings, engine, and turning RoimlError into a clean exit."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from typer import _click
from typer.core import TyperCommand

from roiml.errors import ConfigurationError, RoimlError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from roiml.settings import Settings

__all__ = [
    "JSON_OPTION",
    "TENANT_OPTION",
    "ProgressReporter",
    "aliases",
    "console",
    "err_console",
    "handle_errors",
    "open_engine",
    "print_json",
    "progress",
    "set_global_options",
    "settings_or_exit",
]

console = Console()
err_console = Console(stderr=True)

# The options every verb spells the same way (issue 21).
TENANT_OPTION: Any = typer.Option(
    None, "--tenant", help="Tenant id (default: roiml --tenant, else ROIML_TENANT_ID)."
)
JSON_OPTION: Any = typer.Option(
    False, "--json", help="Print one JSON document on stdout (notices go to stderr)."
)

# Set by the root command from `roiml --data-dir D --tenant T VERB`; applied to the settings by
# settings_or_exit(), so every verb sees them through the one Settings object.
_overrides: dict[str, object] = {}

P = ParamSpec("P")
R = TypeVar("R")


def set_global_options(data_dir: Path | None, tenant: str | None) -> None:
    """Remember the root's ``--data-dir`` and ``--tenant`` for :func:`settings_or_exit`.

    Called on every run of the root command, so values of an earlier run in the same process
    (tests invoke the app many times) never leak into the next one.
    """
    _overrides.clear()
    if data_dir is not None:
        _overrides["data_dir"] = data_dir
    if tenant is not None:
        _overrides["tenant_id"] = tenant


def global_overrides() -> dict[str, str]:
    """The root's options as ROIML_* variables, for processes a verb starts (API workers read
    their settings from the environment)."""
    names = {"data_dir": "ROIML_DATA_DIR", "tenant_id": "ROIML_TENANT_ID"}
    return {names[key]: str(value) for key, value in _overrides.items()}


def settings_or_exit() -> Settings:
    """The settings (with the root's ``--data-dir`` and ``--tenant`` applied), or a readable
    message and exit 2 if they are invalid."""
    # Imported here, as everything heavier than typer and rich in the CLI is: `roiml --help`
    # and each verb's --help import only what printing the help needs (issue 17).
    from pydantic import ValidationError

    from roiml.settings import get_settings

    try:
        settings = get_settings()
    except ValidationError as exc:
        err_console.print(
            f"[red]error:[/red] invalid settings: {escape(str(exc))}", highlight=False
        )
        raise typer.Exit(2) from exc
    if not _overrides:
        return settings
    try:
        # Validated as the environment's values are (e.g. the tenant id's rule).
        return type(settings).model_validate(settings.model_dump() | _overrides)
    except ValidationError as exc:
        options = {"data_dir": "--data-dir", "tenant_id": "--tenant"}
        why = "; ".join(
            f"roiml {options.get(str(e['loc'][0]), e['loc'][0])}: "
            + str(e["msg"]).removeprefix("Value error, ")
            for e in exc.errors()
        )
        err_console.print(f"[red]error:[/red] {escape(why)}", highlight=False, soft_wrap=True)
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


def print_json(data: object) -> None:
    """``data`` as one JSON document on stdout: plain, so that no wrapping or colour gets in."""
    typer.echo(json.dumps(data, indent=2, default=str))


class _AliasedCommand(TyperCommand):
    """A command that still accepts old option names, hidden from its help: each is rewritten
    to its new name before parsing, with a one-line deprecation notice on stderr."""

    aliases: ClassVar[Mapping[str, str]] = {}

    def parse_args(self, ctx: _click.Context, args: list[str]) -> list[str]:
        """Rename the deprecated options in ``args`` (up to a ``--``), then parse as usual."""
        rewritten: list[str] = []
        for index, arg in enumerate(args):
            if arg == "--":
                rewritten.extend(args[index:])
                break
            name, equals, value = arg.partition("=")
            new = self.aliases.get(name)
            if new is not None:
                typer.echo(f"warning: {name} is deprecated; use {new}", err=True)
                arg = f"{new}{equals}{value}"
            rewritten.append(arg)
        return super().parse_args(ctx, rewritten)


def aliases(renamed: Mapping[str, str]) -> type[TyperCommand]:
    """A command class (``app.command(cls=aliases({"--period": "--date"}))``) accepting each
    old option name of ``renamed`` as its new one."""
    return type("AliasedCommand", (_AliasedCommand,), {"aliases": dict(renamed)})


ProgressReporter = Callable[[str, int, int], None]
"""A progress callback: (what is being done, steps done, steps in all)."""


@contextmanager
def progress(
    label: str, total: int | None = None, *, quiet: bool = False
) -> Iterator[ProgressReporter]:
    """A progress bar (or, without ``total``, a live status) on stderr while the block runs.

    Yields a callback ``report(description, done, total)`` for the library's long loops. Silent
    (the callback does nothing) with ``quiet`` (``--json``) or when stderr is not a terminal,
    so that logs and pipes get no control codes.
    """
    if quiet or not err_console.is_terminal:
        yield lambda _description, _done, _total: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        SpinnerColumn(),
        TextColumn(f"[bold]{escape(label)}[/bold] {{task.description}}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task("", total=total)

        def report(description: str, done: int, in_all: int) -> None:
            bar.update(task, description=escape(description), completed=done, total=in_all)

        yield report
